"""Every label's probability for each tagged image, and the per-image figures selection ranks by.

Where the probabilities come from (:func:`open_probabilities`):

* ``tags.jsonl``: each row's ``probs`` (every label, 4 decimals);
* ``tags.csv`` with the model that tagged it (``--checkpoint``, or the checkpoint / export the
  manifest names when it still exists): recomputed from the stored embeddings as
  ``sigmoid(logit_scale * e @ T*)``, the tagger's own last step, so no image is read again. The
  model must be the one that tagged (its fingerprint is checked against the manifest);
* ``tags.csv`` alone: only the chosen labels' scores are known ("tags only"), which is enough
  for coverage and diversity but not for uncertainty.

:func:`image_stats` streams the probabilities in chunks and keeps only per-image numbers (a
few bytes each) and each label's best candidates, never the (images x labels) matrix: at a
million images and 80 labels that matrix would be 320 MB.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hspnet_cli.core.errors import UserError
from hspnet_cli.tagsfile.escape import split_list
from hspnet_cli.tagsfile.reader import TagsOutput
from hspnet_cli.tagsfile.writer import ENCODING

CHUNK = 16384  # rows a pass holds at once: ~10 (rows x labels) float32 temporaries, ~50 MB at 80 labels
_EPS = 1e-6
_DESCRIBED = re.compile(r"^(?:checkpoint|export) (.+) \(")


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _EPS, 1 - _EPS)
    return np.log(p) - np.log1p(-p)


@dataclass
class ProbSource:
    """Row-aligned label probabilities of one tag output.

    Attributes:
        tags: The tag output.
        kind: ``jsonl``, ``model`` (recomputed from embeddings) or ``tags`` (chosen labels only).
        detail: Where they came from, for the report.
        features: (C, D) unit label features (``model`` only).
        logit_scale: Temperature of the scores (``model`` only).
    """

    tags: TagsOutput
    kind: str
    detail: str
    features: np.ndarray | None = None
    logit_scale: float = 1.0

    @property
    def complete(self) -> bool:
        """True when every label's probability is known (uncertainty can be measured)."""
        return self.kind != "tags"

    def chunks(self, size: int = CHUNK) -> Iterator[tuple[int, np.ndarray]]:
        """``(first row, (b, C) float32 probabilities)`` over all rows, in order."""
        if self.kind == "model":
            emb = self.tags.embeddings()
            for start in range(0, self.tags.n, size):
                yield start, self._from_embeddings(np.asarray(emb[start : start + size]))
            return
        rows: list[np.ndarray] = []
        start = 0
        with open(self.tags.file, "rb") as fh:
            if self.tags.n:
                fh.seek(int(self.tags.offsets[0]))  # past a CSV header; then one sequential read
            for raw in fh:
                if not raw.strip():
                    continue  # blank lines are not rows (as the tags reader counts them)
                rows.append(self._parse(raw, start + len(rows)))
                if len(rows) == size:
                    yield start, np.stack(rows)
                    start, rows = start + size, []
        if rows:
            yield start, np.stack(rows)

    def rows(self, idx: np.ndarray) -> np.ndarray:
        """(len(idx), C) probabilities of the given rows."""
        idx = np.asarray(idx, dtype=np.int64)
        if self.kind == "model":
            out = np.zeros((len(idx), len(self.labels)), np.float32)
            if len(idx):
                order = np.argsort(idx, kind="stable")  # memmap reads in file order
                out[order] = self._from_embeddings(np.asarray(self.tags.embeddings()[idx[order]]))
            return out
        if not len(idx):
            return np.zeros((0, len(self.labels)), np.float32)
        with open(self.tags.file, "rb") as fh:
            return np.stack([self._parse(self.tags.line(fh, int(i)), int(i)) for i in idx])

    @property
    def labels(self) -> list[str]:
        return list(self.tags.manifest.get("labels") or [])

    def _from_embeddings(self, emb: np.ndarray) -> np.ndarray:
        assert self.features is not None
        logits = self.logit_scale * (emb.astype(np.float32, copy=False) @ self.features.T)
        return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)

    def _parse(self, raw: bytes, row: int) -> np.ndarray:
        text = raw.decode(*ENCODING)
        where = f"{self.tags.file}: row {row + 1} ({text[:40].strip()!r})"
        n = len(self.labels)
        if self.kind == "jsonl":
            try:
                probs = json.loads(text).get("probs")
            except (json.JSONDecodeError, AttributeError):
                raise UserError(f"{where}: not a JSON object; was the file edited?") from None
            if not isinstance(probs, list) or len(probs) != n:
                raise UserError(
                    f"{where}: 'probs' must list {n} probabilities (one per manifest label); was the file edited?"
                )
            return np.asarray(probs, dtype=np.float32)
        cells = next(csv.reader([text]), [])
        out = np.zeros(n, np.float32)
        if len(cells) < 3 or not cells[1]:
            return out
        # the tags cell is escaped (tagsfile.escape) in outputs that say so: '=circle' is written '\x3dcircle'
        names = split_list(cells[1]) if self.tags.manifest.get("text_escaping") else cells[1].split(";")
        scores = cells[2].split(";")
        index = self._index()
        if len(names) != len(scores) or any(name not in index for name in names):
            raise UserError(f"{where}: tags and scores do not match the manifest's labels; was the file edited?")
        try:
            out[[index[name] for name in names]] = [float(s) for s in scores]
        except ValueError:
            raise UserError(f"{where}: a score is not a number") from None
        return out

    def _index(self) -> dict[str, int]:
        if not hasattr(self, "_label_index"):
            self._label_index = {name: i for i, name in enumerate(self.labels)}
        return self._label_index


def _manifest_fingerprint(tags: TagsOutput) -> str | None:
    model = tags.manifest.get("model")
    return model.get("fingerprint") if isinstance(model, dict) else None


def open_probabilities(tags: TagsOutput, model: str | Path | None = None) -> ProbSource:
    """Where this tag output's probabilities come from (see the module docstring).

    Args:
        tags: The tag output.
        model: The model that tagged it (checkpoint, run folder or export); None: a jsonl's own
            probabilities, else the model the manifest names if it is still there.

    Raises:
        UserError: ``model`` is missing or is not the model that wrote ``tags``.
    """
    labels = tags.manifest.get("labels")
    if not isinstance(labels, list) or not labels:
        raise UserError(f"{tags.file}: its manifest lists no labels; rerun hspnet tag with --overwrite")
    if model is None and tags.fmt == "jsonl":
        return ProbSource(tags, "jsonl", f"{tags.file.name}: every label's probability")
    named = False
    if model is None:
        found = _DESCRIBED.match(str(tags.model))
        if not found or not Path(found.group(1)).exists():
            return ProbSource(
                tags,
                "tags",
                f"{tags.file.name}: chosen labels only (the tagging model "
                f"'{tags.model}' was not found; pass --checkpoint)",
            )
        model, named = found.group(1), True
    if not Path(model).exists():
        raise UserError(f"{model}: model not found (give the checkpoint, run folder or export that tagged {tags.file})")
    from hspnet_cli.scoring.scorer import choose_scorer
    from hspnet_cli.tagging.run import scorer_fingerprint

    scorer = choose_scorer(model, device="cpu")
    if scorer.taxonomy.label_names != labels:
        raise UserError(f"{model}: its labels are not those of {tags.file} (pass the model that tagged it)")
    expected = _manifest_fingerprint(tags)
    if expected is not None and scorer_fingerprint(scorer) != expected:
        if named:
            return ProbSource(
                tags,
                "tags",
                f"{tags.file.name}: chosen labels only ({model} changed since it tagged; pass --checkpoint)",
            )
        raise UserError(
            f"{model}: is not the model that tagged {tags.file} (its label features differ from the "
            "manifest's fingerprint); pass the model given to hspnet tag, or tag again"
        )
    feats = scorer.label_features.detach().float().cpu().numpy()
    return ProbSource(
        tags,
        "model",
        f"recomputed from {tags.emb.name} with {model}",
        features=feats,
        logit_scale=float(scorer.logit_scale),
    )


@dataclass
class ImageStats:
    """Per-image figures over a whole tag output (arrays of length n) and per-label candidates.

    Attributes:
        margin: Smallest |logit(p) - logit(threshold)| over labels (0: exactly at a threshold).
        margin_label: The label that has it.
        group_doubt: exp(-(|z_a| + |z_b|) / 2) for the two members a, b of one group with the
            highest z = logit(p) - logit(threshold), maximised over groups: high when two
            siblings both sit near their thresholds (the model wavers between them).
        doubt_group: The group that has it (-1: no group with two members).
        doubt_pair: (n, 2) the two labels.
        positives: Labels at or above their threshold, per image.
        label_positives: (C,) images at or above each label's threshold.
        candidates: Per label, the eligible rows with its highest (non-zero) probabilities, best first.
    """

    margin: np.ndarray
    margin_label: np.ndarray
    group_doubt: np.ndarray
    doubt_group: np.ndarray
    doubt_pair: np.ndarray
    positives: np.ndarray
    label_positives: np.ndarray
    candidates: list[np.ndarray]

    @property
    def uncertainty(self) -> np.ndarray:
        """The uncertainty score in [0, 1]: mean of exp(-margin) and the group doubt."""
        return (0.5 * (np.exp(-self.margin) + self.group_doubt)).astype(np.float32)


def image_stats(
    source: ProbSource,
    thresholds: np.ndarray,
    group_members: list[np.ndarray],
    eligible: np.ndarray,
    keep_per_label: int,
    progress: Any = None,
) -> ImageStats:
    """One streaming pass over the probabilities (see :class:`ImageStats`).

    Args:
        source: The probabilities.
        thresholds: (C,) decision thresholds.
        group_members: Label indices of each group.
        eligible: (n,) bool, rows that may be picked (candidates are kept only among them).
        keep_per_label: How many candidates to keep per label.
        progress: Optional callable ``advance(rows)``.
    """
    n, c = source.tags.n, len(thresholds)
    t_logit = _logit(np.asarray(thresholds, np.float32))
    margin = np.zeros(n, np.float32)
    margin_label = np.zeros(n, np.int32)
    doubt = np.zeros(n, np.float32)
    doubt_group = np.full(n, -1, np.int32)
    pair = np.full((n, 2), -1, np.int32)
    positives = np.zeros(n, np.int32)
    label_pos = np.zeros(c, np.int64)
    best: list[tuple[np.ndarray, np.ndarray]] = [(np.zeros(0, np.float32), np.zeros(0, np.int64))] * c
    multi = [(g, m) for g, m in enumerate(group_members) if len(m) >= 2]
    for start, probs in source.chunks():
        stop = start + len(probs)
        z = _logit(probs) - t_logit
        absz = np.abs(z)
        margin_label[start:stop] = absz.argmin(axis=1)
        margin[start:stop] = absz[np.arange(len(z)), margin_label[start:stop]]
        above = probs >= thresholds
        positives[start:stop] = above.sum(axis=1)
        label_pos += above.sum(axis=0)
        for g, members in multi:
            zg = z[:, members]
            top2 = np.argsort(-zg, axis=1, kind="stable")[:, :2]
            rows = np.arange(len(zg))
            score = np.exp(-0.5 * (np.abs(zg[rows, top2[:, 0]]) + np.abs(zg[rows, top2[:, 1]])))
            better = score > doubt[start:stop]
            doubt[start:stop][better] = score[better]
            doubt_group[start:stop][better] = g
            pair[start:stop][better] = np.asarray(members)[top2[better]]
        ok = np.flatnonzero(eligible[start:stop])
        if len(ok) and keep_per_label > 0:
            sub = probs[ok]
            for j in range(c):
                has = sub[:, j] > 0  # tags only: a label not among an image's tags is no example of it
                vals = np.concatenate([best[j][0], sub[has, j]])
                ids = np.concatenate([best[j][1], ok[has] + start])
                keep = _top(vals, ids, keep_per_label)
                best[j] = (vals[keep], ids[keep])
        if progress is not None:
            progress(stop - start)
    return ImageStats(
        margin=margin,
        margin_label=margin_label,
        group_doubt=doubt,
        doubt_group=doubt_group,
        doubt_pair=pair,
        positives=positives,
        label_positives=label_pos,
        candidates=[ids for _, ids in best],
    )


def _top(values: np.ndarray, ids: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k highest values, best first; ties go to the lower row id (deterministic)."""
    if len(values) > k:
        part = np.argpartition(-values, k - 1)[:k]
        cut = values[part].min()
        part = np.flatnonzero(values >= cut)  # every tie at the cut, then the exact order below
    else:
        part = np.arange(len(values))
    order = np.lexsort((ids[part], -values[part]))
    return part[order][:k]
