"""``make_split``: full annotations in, a weak-label training split folder out.

Order of operations (each step's randomness has its own seeded stream, see
:mod:`hspnet_cli.data.protocols`): read and map onto the taxonomy -> validation split (before
any weakening, LargeLoss) -> training subset -> weaken train (and val with
``val_labels="observed"``) -> optional image check -> write everything into a hidden folder
beside ``out_dir`` and rename it into place, so a failed run leaves nothing half-written.

With several ``keep`` ratios (partial mode) every ratio gets its own self-contained folder
``keep-<p>/`` (train / val / test files and split.yaml), and the top ``split.yaml`` lists them.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hspnet_cli import __version__
from hspnet_cli.core.errors import UserError
from hspnet_cli.core.io_utils import output_errors, replace_dir, staging_dir
from hspnet_cli.data import protocols
from hspnet_cli.data.image_check import check_images
from hspnet_cli.data.labelset import POSITIVE, LabelSet, ReadReport
from hspnet_cli.data.readers import DIFFICULT_POLICIES, FORMATS, format_list, read_annotations
from hspnet_cli.data.split_io import (
    SPLIT_VERSION,
    SPLIT_YAML,
    format_split_csv,
    format_split_yaml,
    labels_sha256,
    sha256_files,
)
from hspnet_cli.taxonomy.core import Taxonomy

MODES = ("single-positive", "partial", "full")
VAL_LABELS = ("full", "observed")
OUT_FORMATS = ("csv", "list")
_SHOWN = 10


@dataclass
class SplitOptions:
    """Every choice of ``hspnet split`` besides input, taxonomy and output folder (see the CLI help)."""

    mode: str = "single-positive"
    keep: tuple[float, ...] = ()
    val_fraction: float = 0.0
    val_labels: str = "full"
    subset: float | None = None
    seed: int = 0
    input_format: str | None = None
    test_format: str | None = None
    voc_set: str | None = None
    test_voc_set: str | None = None
    voc_difficult: str = "ignore"
    label_sep: str = ";"
    absent: str = "auto"
    strict: bool = False
    out_format: str = "csv"
    check_images: Path | None = None
    check_test_images: Path | None = None
    check_images_deep: bool = False
    overwrite: bool = False
    exclude: tuple[Path, ...] = ()

    def validate(self) -> None:
        """Raise :class:`UserError` for an impossible combination of options."""
        choices = (
            (self.mode, MODES, "--mode"),
            (self.val_labels, VAL_LABELS, "--val-labels"),
            (self.out_format, OUT_FORMATS, "--out-format"),
            (self.voc_difficult, DIFFICULT_POLICIES, "--voc-difficult"),
        )
        for value, allowed, option in choices:
            if value not in allowed:
                raise UserError(f"{option} must be one of {', '.join(allowed)}, got '{value}'")
        for value in (self.input_format, self.test_format):
            if value is not None and value not in FORMATS:
                raise UserError(f"--format must be one of {', '.join(FORMATS)}, got '{value}'")
        if (self.mode == "partial") != bool(self.keep):
            raise UserError(
                "--mode partial needs --keep (e.g. --keep 0.5 or --keep 0.1,0.3,0.5), "
                "and --keep applies to --mode partial only"
            )
        if any(not 0 < p <= 1 for p in self.keep) or len(set(self.keep)) != len(self.keep):
            raise UserError(f"--keep ratios must be distinct and in (0, 1], got {list(self.keep)}")
        if not 0 <= self.val_fraction < 1:
            raise UserError(f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        if self.subset is not None and not 0 < self.subset <= 1:
            raise UserError(f"--subset must be in (0, 1], got {self.subset}")
        if not self.label_sep or any(c in self.label_sep for c in '"\r\n'):
            raise UserError(
                f"--label-sep must be a non-empty separator without quotes or line breaks, got {self.label_sep!r}"
            )
        if self.seed < 0:
            raise UserError(f"--seed must be >= 0, got {self.seed}")


@dataclass
class SplitResult:
    """What :func:`make_split` wrote: the folder, a JSON-ready summary and the warnings."""

    out_dir: Path
    summary: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


def _check_target(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir}: is a file; choose a folder for the split")
    if not out_dir.is_dir() or not any(out_dir.iterdir()):
        return
    if not (out_dir / SPLIT_YAML).is_file():
        # Never delete what we did not write, --overwrite or not.
        raise UserError(f"{out_dir}: already holds other files (no {SPLIT_YAML}); choose a new or empty folder")
    if not overwrite:
        raise UserError(
            f"{out_dir}: already holds a split ({out_dir / SPLIT_YAML}); "
            "pass --overwrite to replace it, or choose another folder"
        )


def _stats(full: LabelSet, observed: LabelSet, dropped: int) -> dict[str, Any]:
    n = max(observed.n_images, 1)
    return {
        "images": observed.n_images,
        "dropped_without_positive": dropped,
        "positives_per_image_full": round(float(full.positives_per_image().mean()) if full.n_images else 0.0, 4),
        "positives_per_image_observed": round(float(observed.positives_per_image().sum()) / n, 4),
        "observed_entries": round(float((observed.matrix != 0).mean()) if observed.matrix.size else 0.0, 4),
    }


def _weaken(
    labels: LabelSet, rows: np.ndarray, mode: str, keep: float | None, draws: dict[str, np.ndarray]
) -> tuple[LabelSet, LabelSet, int]:
    full = labels.take(rows)
    if mode == "full":
        return full, full, 0
    if mode == "partial":
        return full, full.with_matrix(protocols.partial(full.matrix, draws["partial"][rows], keep or 1.0)), 0
    matrix = protocols.single_positive(full.matrix, draws["positive"][rows])
    has = (matrix == POSITIVE).any(axis=1)
    return full, full.with_matrix(matrix).take(np.flatnonzero(has)), int((~has).sum())


def _input_meta(path: Path, report: ReadReport, labels: LabelSet) -> dict[str, Any]:
    return {
        "path": str(path),
        "format": report.format,
        "sha256": sha256_files(report.files, path),
        "images": labels.n_images,
        "images_without_positives": report.images_without_positives,
    }


def _render(name: str, labels: LabelSet, out_format: str) -> tuple[str, str, int]:
    """``(file name, text, images left out)`` of one part in the chosen output format."""
    if out_format == "list":
        text, left_out = format_list(labels)
        return f"{name}.txt", text, left_out
    return f"{name}.csv", format_split_csv(labels), 0


def _variant_warnings(summary: dict[str, Any]) -> list[str]:
    out = []
    where = "" if summary["dir"] == "." else f" ({summary['dir']})"
    names = summary["train_labels_without_positive"]
    if names:
        out.append(
            f"{len(names)} label(s) have no positive in train{where}: "
            f"{', '.join(names[:_SHOWN])}{' ...' if len(names) > _SHOWN else ''}"
        )
    for name, count in summary["left_out_of_list_files"].items():
        out.append(
            f"{count} {name} image(s) without a positive are left out of {name}.txt{where} "
            "(the published list format cannot hold them)"
        )
    return out


def _read_inputs(
    input_path: Path, test_path: Path | None, tax: Taxonomy, opts: SplitOptions
) -> tuple[LabelSet, LabelSet | None, list[ReadReport]]:
    labels, report = read_annotations(
        input_path,
        tax,
        fmt=opts.input_format,
        strict=opts.strict,
        voc_set=opts.voc_set,
        voc_difficult=opts.voc_difficult,
        label_sep=opts.label_sep,
        absent=opts.absent,
    )
    if test_path is None:
        return labels, None, [report]
    test, test_report = read_annotations(
        test_path,
        tax,
        fmt=opts.test_format or opts.input_format,
        strict=opts.strict,
        voc_set=opts.test_voc_set,
        voc_difficult=opts.voc_difficult,
        label_sep=opts.label_sep,
        absent=opts.absent,
    )
    where = dict(zip(labels.images, labels.origins))
    shared = [(image, origin) for image, origin in zip(test.images, test.origins) if image in where]
    if shared:  # a test image seen in training would inflate every score
        shown = "; ".join(f"{image} ({where[image]} and {origin})" for image, origin in shared[:5])
        raise UserError(
            f"{len(shared)} image(s) are in both the training and the test annotations: {shown}; "
            "train and test must not share images"
        )
    return labels, test, [report, test_report]


def _variants(
    labels: LabelSet,
    test: LabelSet | None,
    train_rows: np.ndarray,
    val_rows: np.ndarray,
    opts: SplitOptions,
    input_path: Path,
) -> list[dict[str, Any]]:
    """One variant per keep ratio (one in all other modes): part name -> (full, observed, dropped)."""
    draws = {"positive": protocols.positive_draws(labels.n_images, opts.seed)}
    if opts.mode == "partial":
        draws["partial"] = protocols.partial_draws(labels.n_images, labels.n_labels, opts.seed)
    variants = []
    for keep in opts.keep or (None,):
        parts = {"train": _weaken(labels, train_rows, opts.mode, keep, draws)}
        if parts["train"][1].n_images == 0:
            raise UserError(
                f"{input_path}: no training image has a positive label, so no single-positive "
                "split can be made; check that the taxonomy matches the data"
            )
        if len(val_rows):
            parts["val"] = _weaken(
                labels, val_rows, opts.mode if opts.val_labels == "observed" else "full", keep, draws
            )
        if test is not None:
            parts["test"] = (test, test, 0)
        variants.append({"dir": f"keep-{keep:g}" if len(opts.keep) > 1 else ".", "keep": keep, "parts": parts})
    return variants


def _check_variant_images(variants: list[dict[str, Any]], opts: SplitOptions) -> None:
    test_root = opts.check_test_images or opts.check_images
    for names, root in ((("train", "val"), opts.check_images), (("test",), test_root)):
        if root is not None:
            seen = {
                image: origin
                for v in variants
                for name in names
                if name in v["parts"]
                for image, origin in zip(v["parts"][name][1].images, v["parts"][name][1].origins)
            }
            check_images(sorted(seen.items()), Path(root), opts.check_images_deep)


def _common_meta(tax: Taxonomy, opts: SplitOptions, inputs: dict[str, Any], tax_source: str) -> dict[str, Any]:
    return {
        "hspnet_split": SPLIT_VERSION,
        "created_by": f"hspnet {__version__}",
        "encoding": "1=positive 0=unknown -1=negative",
        # source: the built-in name or absolute file the split was made with, so training can find it
        "taxonomy": {
            "name": tax.name,
            "source": tax_source,
            "labels": tax.num_labels,
            "labels_sha256": labels_sha256(tax.label_names),
        },
        "inputs": inputs,
        "seed": opts.seed,
        "options": {
            "mode": opts.mode,
            "keep": list(opts.keep),
            "val_fraction": opts.val_fraction,
            "val_labels": opts.val_labels,
            "subset": opts.subset,
            "voc_set": opts.voc_set,
            "test_voc_set": opts.test_voc_set,
            "voc_difficult": opts.voc_difficult,
            "label_sep": opts.label_sep,
            "absent": opts.absent,
            "strict": opts.strict,
            "out_format": opts.out_format,
            "random_streams": {k: f"SeedSequence([seed, {v}])" for k, v in protocols.STREAMS.items()},
        },
    }


def _summarise(
    variant: dict[str, Any], label_names: list[str], out_format: str, n_input: int, left_out_by_subset: int
) -> tuple[dict[str, Any], dict[str, str]]:
    """A variant's summary and its rendered files (file name -> text)."""
    files, counts, left_out, rendered = {}, {}, {}, {}
    for name, (full, observed, dropped) in variant["parts"].items():
        files[name], rendered[files[name]], left_out[name] = _render(name, observed, out_format)
        if left_out[name]:  # count what the list file holds: its images without a positive are gone too
            observed = observed.take(np.flatnonzero(observed.positives_per_image() > 0))
        counts[name] = _stats(full, observed, dropped + left_out[name])
    per_label = {n: int(c) for n, c in zip(label_names, variant["parts"]["train"][1].positive_counts())}
    summary = {
        "dir": variant["dir"],
        "keep": variant["keep"],
        "files": files,
        "counts": counts,
        "input_images": n_input,
        "left_out_by_subset": left_out_by_subset,
        "left_out_of_list_files": {k: v for k, v in left_out.items() if v},
        "train_label_positives": per_label,
        "train_labels_without_positive": [n for n, c in per_label.items() if c == 0],
    }
    return summary, rendered


def _write_all(
    out_dir: Path,
    common: dict[str, Any],
    summaries: list[dict[str, Any]],
    texts: list[dict[str, str]],
    reader_warnings: list[str],
) -> None:
    with output_errors(out_dir, "split folder"):
        _write_staged(out_dir, common, summaries, texts, reader_warnings)


def _write_staged(
    out_dir: Path,
    common: dict[str, Any],
    summaries: list[dict[str, Any]],
    texts: list[dict[str, str]],
    reader_warnings: list[str],
) -> None:
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = staging_dir(out_dir)
    try:
        for summary, rendered in zip(summaries, texts):
            folder = tmp / summary["dir"]
            folder.mkdir(exist_ok=True)
            for file_name, text in rendered.items():
                (folder / file_name).write_text(text, encoding="utf-8", newline="")
            meta = {
                **common,
                **{k: v for k, v in summary.items() if k != "dir"},
                "warnings": reader_warnings + _variant_warnings(summary),
            }
            (folder / SPLIT_YAML).write_text(format_split_yaml(meta), encoding="utf-8", newline="")
        if len(summaries) > 1:
            top = {**common, "splits": [s["dir"] for s in summaries], "warnings": reader_warnings}
            (tmp / SPLIT_YAML).write_text(format_split_yaml(top), encoding="utf-8", newline="")
        replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def make_split(
    input_path: str | Path,
    taxonomy: Taxonomy | str | Path,
    out_dir: str | Path,
    test_path: str | Path | None = None,
    options: SplitOptions | None = None,
) -> SplitResult:
    """Turn full annotations into a weak-label training split folder (holding its output lock,
    :mod:`hspnet_cli.core.locks`; see :func:`_make_split` for the arguments)."""
    from hspnet_cli.core.locks import output_lock

    with output_lock(out_dir, "split folder"):
        return _make_split(input_path, taxonomy, out_dir, test_path, options)


def _make_split(
    input_path: str | Path,
    taxonomy: Taxonomy | str | Path,
    out_dir: str | Path,
    test_path: str | Path | None = None,
    options: SplitOptions | None = None,
) -> SplitResult:
    """Turn full annotations into a weak-label training split folder.

    Args:
        input_path: Training annotations (any format of :mod:`hspnet_cli.data.readers`).
        taxonomy: A :class:`~hspnet_cli.taxonomy.Taxonomy`, a built-in name or a taxonomy YAML.
        out_dir: Folder to write (new, empty, or an earlier split with ``options.overwrite``).
        test_path: Optional separate test annotations, passed through with full labels.
        options: Protocol and output choices; defaults to single-positive, seed 0, CSV.

    Returns:
        The folder, a JSON-ready summary (split.yaml holds the same counts) and the warnings.

    Raises:
        UserError: Bad options, bad input (file and line), an image in both train and test,
            missing images with ``check_images``, an occupied ``out_dir``, or another process
            writing it.
    """
    from hspnet_cli.taxonomy import load_taxonomy

    opts = options or SplitOptions()
    opts.validate()
    out_dir, input_path = Path(out_dir), Path(input_path)
    test_path = Path(test_path) if test_path is not None else None
    _check_target(out_dir, opts.overwrite)
    tax = taxonomy if isinstance(taxonomy, Taxonomy) else load_taxonomy(taxonomy)
    tax_source = (
        tax.name if isinstance(taxonomy, Taxonomy) or not Path(taxonomy).is_file() else str(Path(taxonomy).resolve())
    )
    labels, test, reports = _read_inputs(input_path, test_path, tax, opts)
    excluded = 0
    if opts.exclude:  # e.g. hspnet dedup's non-keepers: never in any part of the split
        from hspnet_cli.data.exclude_list import drop_listed, listed_keys

        keys = listed_keys(opts.exclude, opts.check_images)
        labels, excluded = drop_listed(labels, keys)
        if test is not None:
            test, dropped = drop_listed(test, keys)
            excluded += dropped
        if labels.n_images == 0:
            raise UserError(f"{input_path}: every image is in the --exclude list(s); nothing left to split")

    n_input = labels.n_images
    train_rows, val_rows = protocols.val_split(n_input, opts.val_fraction, opts.seed)
    if opts.val_fraction > 0 and (len(train_rows) == 0 or len(val_rows) == 0):
        raise UserError(f"{input_path}: {n_input} image(s) are too few for --val-fraction {opts.val_fraction}")
    before_subset = len(train_rows)
    if opts.subset is not None:
        train_rows = protocols.subset_rows(train_rows, n_input, opts.subset, opts.seed)
    variants = _variants(labels, test, train_rows, val_rows, opts, input_path)
    if opts.check_images is not None or opts.check_test_images is not None:
        _check_variant_images(variants, opts)

    inputs = {"train": _input_meta(input_path, reports[0], labels)}
    if test is not None and test_path is not None:
        inputs["test"] = _input_meta(test_path, reports[1], test)
    summaries, texts = zip(
        *(_summarise(v, tax.label_names, opts.out_format, n_input, before_subset - len(train_rows)) for v in variants)
    )
    reader_warnings = [line for r in reports for line in r.warnings()]
    _write_all(out_dir, _common_meta(tax, opts, inputs, tax_source), list(summaries), list(texts), reader_warnings)
    warnings = reader_warnings + [line for s in summaries for line in _variant_warnings(s)]
    if opts.out_format == "list" and opts.mode == "partial":
        warnings.append(
            "list files hold positives only: the observed negatives of the partial labels are not "
            "written (use --out-format csv to keep them)"
        )
    summary = {
        "out_dir": str(out_dir),
        "mode": opts.mode,
        "seed": opts.seed,
        "taxonomy": tax.name,
        "out_format": opts.out_format,
        "inputs": inputs,
        "splits": list(summaries),
        "read_reports": [r.to_dict() for r in reports],
        "warnings": warnings,
        "excluded": excluded,
    }
    return SplitResult(out_dir, summary, warnings)
