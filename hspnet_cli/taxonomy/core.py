"""The taxonomy: labels in a fixed order, each in exactly one group.

A taxonomy is the label -> group hierarchy HSPNet learns from (paper eq. 1). Its ``labels``
order fixes the column order of every label matrix the project reads or writes, so it is kept
exactly as given. Optional per-label fields say what CLIP should read (``prompt``) and which
WordNet synset the label means (``wordnet``). A k-means taxonomy also stores its cluster
centres (``group_features``) so a model can use them as group features ("HSPNet-cluster").

File format (YAML)::

    name: voc
    labels:                       # label-index order
    - aeroplane
    - {name: diningtable, prompt: dining table, wordnet: dining_table.n.01}
    groups:                       # group -> member labels, in group order
      vehicles: [aeroplane, ...]
      household: [diningtable, ...]
    group_features:               # optional, k-means taxonomies
      source: kmeans over RN50/openai text features
      vectors: {vehicles: [0.01, ...], household: [...]}
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from hspnet_cli.core.errors import UserError
from hspnet_cli.core.io_utils import write_text_atomic
from hspnet_cli.taxonomy.yaml_lines import line_of

_TOP_KEYS = {"name", "description", "labels", "groups", "group_features"}
_LABEL_KEYS = {"name", "prompt", "wordnet"}
_SYNSET_RE = re.compile(r"^[^\s.][^\s]*\.[nvasr]\.\d{2}$")
_MAX_REPORTED = 12
_MAX_MESSAGE = 300
# In a label name these would make label lists ambiguous: ';' separates the names in tags.csv
# and image,labels cells, and line breaks or tabs break line- and cell-based files.
_FORBIDDEN_IN_LABELS = {
    ";": "';' (the separator of label lists in tags.csv and image,labels CSVs)",
    "\n": "a line break",
    "\r": "a line break",
    "\t": "a tab",
}


class TaxonomyError(UserError):
    """A taxonomy or label file that cannot be used; the message lists every problem found."""


@dataclass
class LabelSpec:
    """One label: its name, and optionally the prompt text CLIP reads and a pinned synset."""

    name: str
    prompt: str | None = None
    wordnet: str | None = None

    @property
    def text(self) -> str:
        """What a text encoder should read for this label."""
        return self.prompt or self.name


@dataclass
class Taxonomy:
    """Labels (in label-index order) and their groups.

    Attributes:
        name: A short identifier.
        labels: Label specs in label-index order.
        groups: Group name -> member label names, in group order.
        description: Free text (where it came from).
        group_features: Optional (num_groups, dim) float32 array in group order.
        group_features_source: What produced ``group_features``.
    """

    name: str
    labels: list[LabelSpec]
    groups: dict[str, list[str]]
    description: str = ""
    group_features: np.ndarray | None = None
    group_features_source: str = ""
    _index: dict[str, int] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self._index = {spec.name: i for i, spec in enumerate(self.labels)}

    @property
    def label_names(self) -> list[str]:
        """Label names in label-index order."""
        return [spec.name for spec in self.labels]

    @property
    def group_names(self) -> list[str]:
        """Group names in group order."""
        return list(self.groups)

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    @property
    def num_groups(self) -> int:
        return len(self.groups)

    def label_index(self, name: str) -> int:
        """Column of ``name`` in label matrices; raises KeyError for an unknown label."""
        return self._index[name]

    def group_of(self) -> dict[str, str]:
        """Label name -> its group name."""
        return {label: group for group, members in self.groups.items() for label in members}

    def group_index(self) -> np.ndarray:
        """(num_labels,) int64: the group index of each label, in label order."""
        owner = self.group_of()
        order = {g: i for i, g in enumerate(self.groups)}
        return np.array([order[owner[spec.name]] for spec in self.labels], dtype=np.int64)

    def to_dict(self) -> dict[str, Any]:
        """A plain mapping in the file format (see module docstring)."""
        labels: list[Any] = []
        for spec in self.labels:
            extra = {k: v for k, v in (("prompt", spec.prompt), ("wordnet", spec.wordnet)) if v}
            labels.append({"name": spec.name, **extra} if extra else spec.name)
        out: dict[str, Any] = {"name": self.name}
        if self.description:
            out["description"] = self.description
        out["labels"] = labels
        out["groups"] = {g: list(m) for g, m in self.groups.items()}
        if self.group_features is not None:
            out["group_features"] = {
                "source": self.group_features_source,
                "vectors": {g: [float(f"{x:.6g}") for x in row] for g, row in zip(self.groups, self.group_features)},
            }
        return out

    def to_yaml(self) -> str:
        """The taxonomy as YAML text: labels one a line, each group's members on one line."""
        data = self.to_dict()
        head = {k: data[k] for k in ("name", "description") if k in data}
        parts = [
            yaml.safe_dump(head, sort_keys=False, allow_unicode=True, width=100),
            "# label-index order: the column order of every label matrix\n",
            yaml.safe_dump(
                {"labels": data["labels"]}, sort_keys=False, allow_unicode=True, default_flow_style=None, width=100
            ),
            "# group -> member labels, in group order\n",
            yaml.safe_dump(
                {"groups": data["groups"]}, sort_keys=False, allow_unicode=True, default_flow_style=None, width=100
            ),
        ]
        if "group_features" in data:
            parts.append(
                yaml.safe_dump(
                    {"group_features": data["group_features"]}, sort_keys=False, default_flow_style=None, width=100
                )
            )
        return "".join(parts)

    def save(self, path: str | Path) -> None:
        """Write the taxonomy to ``path`` atomically, after checking it is valid."""
        taxonomy_from_dict(self.to_dict(), source=str(path))  # never write a file we would refuse to read
        write_text_atomic(path, self.to_yaml())


def _where(source: str, value: Any) -> str:
    line = line_of(value)
    return f"{source}:{line}" if line else source


class _Problems:
    """Collects every problem in a file so the user can fix them in one pass."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.items: list[str] = []

    def add(self, value: Any, message: str) -> None:
        if len(message) > _MAX_MESSAGE:  # a value quoted in full could be megabytes (a huge list, a bomb)
            message = message[:_MAX_MESSAGE] + "..."
        self.items.append(f"{_where(self.source, value)}: {message}")

    def raise_if_any(self) -> None:
        if not self.items:
            return
        shown = self.items[:_MAX_REPORTED]
        more = len(self.items) - len(shown)
        tail = [f"... and {more} more problem(s)"] if more else []
        raise TaxonomyError("\n".join(shown + tail))


def _clean_name(value: Any, what: str, problems: _Problems, holder: Any) -> str | None:
    if not isinstance(value, str):
        shown = repr(value)
        shown = shown if len(shown) <= 60 else shown[:60] + "..."
        problems.add(holder, f"{what} must be text, got {type(value).__name__} {shown}; quote it")
        return None
    name = value.strip()
    if not name:
        problems.add(value if line_of(value) else holder, f"{what} is empty; give it a name or remove it")
        return None
    return name


def _forbidden(name: str) -> str | None:
    """What in ``name`` would make a label list ambiguous (see :data:`_FORBIDDEN_IN_LABELS`), or None."""
    for char, what in _FORBIDDEN_IN_LABELS.items():
        if char in name:
            return what
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "a control character"
    return None


def parse_label_entries(entries: Any, problems: _Problems, holder: Any = None) -> list[LabelSpec]:
    """Parse a ``labels`` list: each entry a name or ``{name, prompt?, wordnet?}``.

    Checks non-empty names without ';', line breaks, tabs or other control characters (they would
    make label lists ambiguous), no duplicates (also none differing only in case, which CLIP's
    lower-casing tokenizer cannot tell apart) and well-formed synset ids.
    """
    if not isinstance(entries, list) or not entries:
        problems.add(holder, "'labels' must be a non-empty list of label names")
        return []
    specs: list[LabelSpec] = []
    seen: dict[str, Any] = {}
    for i, entry in enumerate(entries):
        if isinstance(entry, dict):
            unknown = set(entry) - _LABEL_KEYS
            if unknown:
                problems.add(
                    next(iter(unknown)),
                    f"label entry {i} has unknown field(s) {sorted(unknown)}; allowed: {sorted(_LABEL_KEYS)}",
                )
            if "name" not in entry:
                problems.add(next(iter(entry), holder), f"label entry {i} has no 'name'")
                continue
            raw = entry["name"]
            prompt, wordnet = entry.get("prompt"), entry.get("wordnet")
        else:
            raw, prompt, wordnet = entry, None, None
        name = _clean_name(raw, f"label {i}", problems, holder)
        if name is None:
            continue
        bad = _forbidden(name)
        if bad:
            problems.add(
                raw if line_of(raw) else holder,
                f"label {name[:80]!r} contains {bad}; rename it (e.g. 'rock and roll' for 'rock;roll')",
            )
            continue
        if prompt is not None:
            prompt = _clean_name(prompt, f"prompt of label '{name}'", problems, raw)
        if wordnet is not None:
            wordnet = _clean_name(wordnet, f"wordnet id of label '{name}'", problems, raw)
            if wordnet and not _SYNSET_RE.match(wordnet):
                problems.add(
                    raw,
                    f"wordnet id '{wordnet}' of label '{name}' is not of the form lemma.n.01 (e.g. traffic_light.n.01)",
                )
                wordnet = None
        key = name.casefold()
        if key in seen:
            first = seen[key]
            how = "is listed twice" if first == name else f"differs from label '{first}' only in case"
            problems.add(raw, f"label '{name}' {how} (first at line {line_of(first)}); labels must be unique")
            continue
        seen[key] = raw if isinstance(raw, str) else name
        specs.append(LabelSpec(name=name, prompt=prompt, wordnet=wordnet))
    return specs


def taxonomy_from_dict(data: Any, source: str = "<taxonomy>", require_groups: bool = True) -> Taxonomy:
    """Build and validate a :class:`Taxonomy` from a loaded YAML document.

    Args:
        data: The document (a mapping).
        source: File name used in messages.
        require_groups: If False, a labels-only document is accepted; every label is then put
            in one group named after the taxonomy.

    Returns:
        The taxonomy.

    Raises:
        TaxonomyError: Listing every problem: every label must be in exactly one group, no
            group may be empty, no name may repeat, every member must be a known label and
            no name may be empty.
    """
    problems = _Problems(source)
    if not isinstance(data, dict):
        raise TaxonomyError(f"{source}: a taxonomy file must be a YAML mapping with 'labels' and 'groups'")
    for key in set(data) - _TOP_KEYS:
        problems.add(key, f"unknown key '{key}'; allowed: {sorted(_TOP_KEYS)}")
    name = data.get("name", Path(source).stem)
    name = _clean_name(name, "'name'", problems, name) or Path(source).stem
    if "labels" not in data:
        raise TaxonomyError(f"{source}: no 'labels' list; list every label in label-index order")
    labels = parse_label_entries(data["labels"], problems, holder=next((k for k in data if k == "labels"), None))
    known = {spec.name for spec in labels}

    groups: dict[str, list[str]] = {}
    raw_groups = data.get("groups")
    if raw_groups is None:
        if require_groups:
            problems.add(
                None,
                "no 'groups' mapping; map each group name to its member labels (or build one: hspnet taxonomy build)",
            )
        else:
            groups = {str(name): [spec.name for spec in labels]}
    elif not isinstance(raw_groups, dict) or not raw_groups:
        problems.add(raw_groups, "'groups' must be a non-empty mapping of group name -> list of labels")
    else:
        owner: dict[str, Any] = {}
        for raw_group, members in raw_groups.items():
            group = _clean_name(raw_group, "group name", problems, raw_group)
            if group is None:
                continue
            if not isinstance(members, list) or not members:
                problems.add(raw_group, f"group '{group}' is empty; give it at least one label or remove it")
                groups[group] = []
                continue
            kept: list[str] = []
            for member in members:
                label = _clean_name(member, f"a member of group '{group}'", problems, raw_group)
                if label is None:
                    continue
                if label not in known:
                    problems.add(
                        member if line_of(member) else raw_group,
                        f"group '{group}' lists '{label}', which is not in 'labels'; "
                        "add it to 'labels' or fix the spelling",
                    )
                    continue
                if label in owner:
                    first_group, first_at = owner[label]
                    problems.add(
                        member if line_of(member) else raw_group,
                        f"label '{label}' is in group '{group}' and already in group "
                        f"'{first_group}' (line {line_of(first_at)}); a label belongs to exactly one group",
                    )
                    continue
                owner[label] = (group, member)
                kept.append(label)
            groups[group] = kept
        for spec in labels:
            if spec.name not in owner:
                problems.add(None, f"label '{spec.name}' is in no group; add it to one group")

    features, features_source = None, ""
    if data.get("group_features") is not None and groups:
        features, features_source = _parse_group_features(data["group_features"], list(groups), problems)
    problems.raise_if_any()
    description = data.get("description") or ""
    return Taxonomy(
        name=str(name),
        labels=labels,
        groups=groups,
        description=str(description),
        group_features=features,
        group_features_source=features_source,
    )


def _parse_group_features(raw: Any, group_order: list[str], problems: _Problems) -> tuple[np.ndarray | None, str]:
    if not isinstance(raw, dict) or not isinstance(raw.get("vectors"), dict):
        problems.add(raw, "'group_features' must hold 'vectors': group -> list of numbers")
        return None, ""
    vectors = raw["vectors"]
    missing = [g for g in group_order if g not in vectors]
    extra = [g for g in vectors if g not in group_order]
    if missing or extra:
        problems.add(
            next(iter(vectors), raw),
            f"'group_features' must have one vector per group (missing: {missing}, unknown: {extra})",
        )
        return None, ""
    try:
        rows = [np.asarray(vectors[g], dtype=np.float32) for g in group_order]
    except (TypeError, ValueError):
        problems.add(raw, "'group_features' vectors must be lists of numbers")
        return None, ""
    if len({r.shape for r in rows}) != 1 or rows[0].ndim != 1 or rows[0].size == 0:
        problems.add(raw, "'group_features' vectors must all have the same, non-zero length")
        return None, ""
    return np.stack(rows), str(raw.get("source", ""))
