"""``hspnet taxonomy build``: one entry point for the WordNet and k-means builders."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hspnet_cli.core.errors import UserError
from hspnet_cli.taxonomy.compare import Comparison, compare_taxonomies
from hspnet_cli.taxonomy.core import LabelSpec, Taxonomy
from hspnet_cli.taxonomy.loading import load_label_list, load_taxonomy

# Label specs -> ((num_labels, dim) unit features, what encoded them). The caller supplies it
# (hspnet_cli.model.clip_models.label_encoder for CLIP), so this layer never imports a model.
LabelEncoder = Callable[[list[LabelSpec]], tuple[np.ndarray, str]]


@dataclass
class BuildResult:
    """What a build produced.

    Attributes:
        taxonomy: The new taxonomy (already written to ``out``).
        out: Where it was written.
        method: ``wordnet`` or ``kmeans``.
        notes: Things the user should know (unknown labels, random encoder, ...).
        comparison: Agreement with a reference taxonomy, when one was given.
    """

    taxonomy: Taxonomy
    out: Path
    method: str
    notes: list[str] = field(default_factory=list)
    comparison: Comparison | None = None

    def summary(self) -> dict[str, Any]:
        """Machine-readable summary (``--json``)."""
        return {
            "out": str(self.out),
            "method": self.method,
            "name": self.taxonomy.name,
            "labels": self.taxonomy.num_labels,
            "groups": {g: list(m) for g, m in self.taxonomy.groups.items()},
            "notes": self.notes,
            "comparison": self.comparison.to_dict() if self.comparison else None,
        }


def build_taxonomy(
    labels: str | Path,
    out: str | Path,
    method: str,
    *,
    n_groups: int | None = None,
    depth: int | None = None,
    k: int | None = None,
    features: str | Path | None = None,
    encoder: LabelEncoder | None = None,
    seed: int = 0,
    center: bool = True,
    name: str | None = None,
    reference: str | Path | None = None,
    overwrite: bool = False,
) -> BuildResult:
    """Build a taxonomy from a label source and write it to ``out``.

    Args:
        labels: Label list source (text file, labels YAML, taxonomy YAML or built-in name).
        out: Output YAML path; refused if it exists unless ``overwrite``.
        method: ``"wordnet"`` or ``"kmeans"``.
        n_groups: WordNet: about this many groups.
        depth: WordNet: cut depth (exclusive with ``n_groups``).
        k: k-means: number of groups.
        features: k-means: ``.npy`` label features instead of encoding with a model.
        encoder: k-means without ``features``: encodes the labels, e.g.
            ``hspnet_cli.model.clip_models.label_encoder("RN50", "openai")``.
        seed: k-means: random seed.
        center: k-means: subtract the mean feature before clustering.
        name: Taxonomy name (default: the output file's stem).
        reference: Optional taxonomy to compare the result against.
        overwrite: Replace an existing ``out``.

    Returns:
        The build result.
    """
    out = Path(out)
    if out.suffix.lower() not in {".yaml", ".yml"}:
        raise UserError(f"{out}: the output taxonomy must be a .yaml file")
    if out.exists() and not overwrite:
        raise UserError(f"{out}: already exists; pass --overwrite to replace it")
    specs = load_label_list(labels)
    ref = load_taxonomy(reference) if reference is not None else None  # fail on a bad reference before work
    name = name or out.stem
    notes: list[str] = []
    if method == "wordnet":
        if k is not None or features is not None:
            raise UserError("-k and --features belong to --kmeans; use --groups or --depth with --wordnet")
        from hspnet_cli.taxonomy.wordnet_build import build_wordnet_taxonomy

        taxonomy, report = build_wordnet_taxonomy(specs, n_groups=n_groups, depth=depth, name=name)
        if report.unknown:
            notes.append(
                f"WordNet does not know {len(report.unknown)} label(s), put in their own group: "
                + ", ".join(report.unknown)
            )
        if report.uncertain_note():
            notes.append(report.uncertain_note())
        if report.attached_note():
            notes.append(report.attached_note())
    elif method == "kmeans":
        if n_groups is not None or depth is not None:
            raise UserError("--groups and --depth belong to --wordnet; use -k with --kmeans")
        from hspnet_cli.taxonomy import kmeans_build

        if features is not None:
            feats, source = kmeans_build.load_features(features, len(specs)), Path(features).name
        elif encoder is not None:
            feats, source = encoder(specs)
            if source.endswith("/random"):
                notes.append(
                    f"label features come from a randomly initialised {source.rsplit('/', 1)[0]}: the "
                    "grouping has no semantic meaning (use a pretrained model for real taxonomies)"
                )
        else:
            raise UserError("--kmeans needs label features: --features FILE.npy, or a CLIP model to encode them")
        taxonomy = kmeans_build.build_kmeans_taxonomy(
            specs, feats, k=k, seed=seed, center=center, name=name, namer=_wordnet_namer(), source=source
        )
    else:
        raise UserError(f"unknown build method '{method}'; use wordnet or kmeans")
    taxonomy.save(out)
    comparison = compare_taxonomies(taxonomy, ref) if ref is not None else None
    return BuildResult(taxonomy=taxonomy, out=out, method=method, notes=notes, comparison=comparison)


def _wordnet_namer():  # type: ignore[no-untyped-def]
    """WordNet's lowest common hypernym as a group namer, or None when WordNet is unavailable."""
    try:
        from hspnet_cli.taxonomy.wordnet_build import common_hypernym_name
        from hspnet_cli.taxonomy.wordnet_data import get_wordnet

        get_wordnet()
    except (UserError, ImportError):
        return None
    return common_hypernym_name
