"""``hspnet demo``: generate the demo world, and run the whole pipeline on it."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from hspnet_cli.commands import options as opt
from hspnet_cli.core.console import print_json, say
from hspnet_cli.core.io_utils import write_text_atomic

app = opt.App(
    help="The built-in demo world: generated multi-label images with a known hierarchy.", no_args_is_help=True
)


@app.command("data")
def data_cmd(
    out_dir: Path = typer.Argument(..., help="Folder to write images/, annotations.csv, taxonomy.yaml."),
    images: int = typer.Option(1000, "--images", help="Number of images."),
    seed: int = typer.Option(0, "--seed", help="Random seed: same seed, byte-identical files."),
    size: int = typer.Option(64, "--size", help="Image side in pixels."),
    overwrite: bool = opt.overwrite("Replace an existing demo world."),
    as_json: bool = opt.as_json("Print a JSON summary."),
) -> None:
    """Generate a demo world of multi-label images."""
    from hspnet_cli.demo.world import generate_demo_world

    summary = generate_demo_world(out_dir, n_images=images, seed=seed, image_size=size, overwrite=overwrite)
    if as_json:
        print_json(summary.to_dict())
        return
    say(
        f"[green]wrote[/] {summary.n_images} images to {out_dir} ({summary.mean_labels_per_image:.2f} labels per image)"
    )


@app.command("run")
def run_cmd(
    out_dir: Path = typer.Argument(..., help="Folder for the demo world and every stage's output."),
    images: int = typer.Option(2000, "--images", help="Images in the demo world."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Training epochs (default: the demo preset's)."),
    overwrite: bool = opt.overwrite("Replace an earlier demo run in OUT_DIR."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the summary as JSON here."),
) -> None:
    """Run every built stage on a fresh demo world and print a summary table."""
    import json

    from hspnet_cli.core.console import is_quiet
    from hspnet_cli.core.progress import epoch_progress
    from hspnet_cli.demo.pipeline import run_demo

    summary = run_demo(
        out_dir,
        n_images=images,
        seed=seed,
        overwrite=overwrite,
        epochs=epochs,
        on_stage=lambda s: say(f"[green]done[/] {s.name} ({s.seconds:.1f}s)"),
        progress=None if is_quiet() else epoch_progress,
    )
    table = Table(title=f"hspnet demo: {out_dir}")
    table.add_column("stage")
    table.add_column("result")
    table.add_column("seconds", justify="right")
    for stage in summary.stages:
        table.add_row(stage.name, stage.result, f"{stage.seconds:.1f}")
    say(table)
    if json_out is not None:
        write_text_atomic(json_out, json.dumps(summary.to_dict(), indent=2) + "\n")
        say(f"[green]wrote[/] {json_out}")
