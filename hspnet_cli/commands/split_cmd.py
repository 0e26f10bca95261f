"""``hspnet split``: full annotations in, single-positive / partial / few-shot training splits out."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

from hspnet_cli.commands import options as opt
from hspnet_cli.core.console import err_console, is_quiet, print_json, say
from hspnet_cli.core.errors import UserError

_TOP = 5


def parse_keep(text: Optional[str]) -> tuple[float, ...]:
    """``"0.1,0.5"`` -> ``(0.1, 0.5)``; None or empty -> ``()``."""
    if not text:
        return ()
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise UserError(f"--keep takes ratios separated by commas, e.g. 0.1,0.5; got '{text}'") from None


def _label_line(per_label: dict[str, int]) -> str:
    ranked = sorted(per_label.items(), key=lambda item: (-item[1], item[0]))
    top = ", ".join(f"{name} {count}" for name, count in ranked[:_TOP])
    bottom = ", ".join(f"{name} {count}" for name, count in ranked[-_TOP:][::-1])
    return f"most: {top}; fewest: {bottom}"


def _print_summary(summary: dict[str, Any]) -> None:
    table = Table(title=escape(f"hspnet split ({summary['mode']}, seed {summary['seed']}): {summary['out_dir']}"))
    table.add_column("file", no_wrap=True)
    for column in ("images", "dropped", "pos/img full", "pos/img kept", "kept entries"):
        table.add_column(column, justify="right")
    for split in summary["splits"]:
        prefix = "" if split["dir"] == "." else f"{split['dir']}/"
        for name, counts in split["counts"].items():
            table.add_row(
                prefix + split["files"][name],
                str(counts["images"]),
                str(counts["dropped_without_positive"]),
                f"{counts['positives_per_image_full']:.2f}",
                f"{counts['positives_per_image_observed']:.2f}",
                f"{counts['observed_entries']:.1%}",
            )
    say(table)
    for split in summary["splits"]:
        where = "" if split["dir"] == "." else f" ({split['dir']})"
        say(f"train positives per label{where}: {escape(_label_line(split['train_label_positives']))}", highlight=False)
        if split["left_out_by_subset"]:
            say(f"subset{where}: {split['left_out_by_subset']} training image(s) left out", highlight=False)


def split(
    input_path: Path = typer.Argument(
        ...,
        metavar="INPUT",
        help="Annotations: COCO JSON, VOC folder, CSV "
        "(image,labels or wide), JSONL, list file, an hspnet split CSV, a Label Studio, "
        "CVAT, Hugging Face or FiftyOne export, or hspnet tags.csv/jsonl.",
    ),
    taxonomy: str = typer.Option(
        ...,
        "--taxonomy",
        "-t",
        help="Built-in name (coco, voc, nuswide, cub) or taxonomy YAML; its label order is the column order.",
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write train/val/test files and split.yaml."),
    mode: str = typer.Option("single-positive", "--mode", help="single-positive | partial | full."),
    keep: Optional[str] = typer.Option(
        None,
        "--keep",
        help="partial: probability of keeping each label "
        "entry; a comma list (0.1,0.5) writes one keep-<p>/ folder per ratio.",
    ),
    val_fraction: float = typer.Option(
        0.0, "--val-fraction", help="Seeded validation fraction, taken before weakening (LargeLoss: 0.2)."
    ),
    val_labels: str = typer.Option("full", "--val-labels", help="full | observed: validation labels."),
    subset: Optional[float] = typer.Option(
        None, "--subset", help="Keep this seeded fraction of the training images (few-shot), after the val split."
    ),
    test: Optional[Path] = typer.Option(
        None, "--test", help="Separate test annotations, passed through with full labels."
    ),
    seed: int = typer.Option(0, "--seed", help="Random seed: same input and seed, byte-identical files."),
    input_format: Optional[str] = typer.Option(
        None,
        "--format",
        help="Force the input format: coco, voc, "
        "csv, wide, jsonl, list, split, labelstudio, cvat, hf, fiftyone, tags (default: detect).",
    ),
    test_format: Optional[str] = typer.Option(
        None, "--test-format", help="Force the --test format (default: --format, else detect)."
    ),
    voc_set: Optional[str] = typer.Option(None, "--voc-set", help="VOC: read ImageSets/Main/<set>.txt only."),
    test_voc_set: Optional[str] = typer.Option(None, "--test-voc-set", help="VOC: image set for --test."),
    voc_difficult: str = typer.Option(
        "ignore",
        "--voc-difficult",
        help="VOC: a class seen only as difficult "
        "objects is ignore (negative, the SPML protocol) | unknown | positive.",
    ),
    label_sep: str = typer.Option(
        ";",
        "--label-sep",
        help="image,labels CSV: what separates the label names in a cell (quote the cell in the CSV when it is ',').",
    ),
    absent: str = typer.Option(
        "auto",
        "--absent",
        help="What a label an image is not given means: negative "
        "(full annotations) | unknown (positives only) | auto (negative, but a label-tool "
        "export or tag file with exactly one label per image is single positives).",
    ),
    strict: bool = typer.Option(
        False,
        "--strict",
        help="Labels outside the taxonomy, or taxonomy labels "
        "absent from the data, are errors (default: warnings; unknown ones dropped).",
    ),
    out_format: str = typer.Option(
        "csv", "--out-format", help="csv (our split CSV) | list (published 'path.jpg,idx idx' lists, positives only)."
    ),
    check: Optional[Path] = typer.Option(
        None, "--check-images", help="Images folder: every referenced image must exist under it."
    ),
    check_test: Optional[Path] = typer.Option(
        None, "--check-test-images", help="Images folder for the --test images (default: --check-images)."
    ),
    deep: bool = typer.Option(False, "--check-images-deep", help="Also open every image with PIL (slow)."),
    exclude: list[Path] = typer.Option(
        [],
        "--exclude",
        "-x",
        help="List file of images to leave out (one path a line, e.g. hspnet dedup's STEM.exclude.txt); repeatable.",
    ),
    overwrite: bool = opt.overwrite("Replace an earlier split in --out."),
    as_json: bool = opt.as_json("Print the summary as JSON."),
) -> None:
    """Make a weak-label training split (single-positive, partial or full) from full annotations."""
    from hspnet_cli.data.split import SplitOptions, make_split

    if deep and check is None and check_test is None:
        raise UserError("--check-images-deep needs --check-images ROOT")
    options = SplitOptions(
        mode=mode,
        keep=parse_keep(keep),
        val_fraction=val_fraction,
        val_labels=val_labels,
        subset=subset,
        seed=seed,
        input_format=input_format,
        test_format=test_format,
        voc_set=voc_set,
        test_voc_set=test_voc_set,
        voc_difficult=voc_difficult,
        label_sep=label_sep,
        absent=absent,
        strict=strict,
        out_format=out_format,
        check_images=check,
        check_test_images=check_test,
        check_images_deep=deep,
        overwrite=overwrite,
        exclude=tuple(exclude),
    )
    result = make_split(input_path, taxonomy, out, test_path=test, options=options)
    if not is_quiet():
        for line in result.warnings:
            err_console.print(f"[yellow]warning:[/] {escape(line)}", highlight=False, soft_wrap=True)
    if as_json:
        print_json(result.summary)
        return
    _print_summary(result.summary)
    if result.summary.get("excluded"):
        say(f"left out {result.summary['excluded']} image(s) named by --exclude")
    say(f"[green]wrote[/] {out}")
