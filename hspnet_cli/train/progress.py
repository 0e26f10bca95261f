"""Rich progress bars (images/s and ETA) and per-epoch tables for long runs."""

from __future__ import annotations

from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)
from rich.table import Table
from rich.text import Text

from hspnet_cli.console import err_console


class RateColumn(ProgressColumn):
    """Items per second of a task (images/s)."""

    def __init__(self, unit: str = "img/s") -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} {self.unit}" if speed else f"- {self.unit}", style="cyan")


class ItemProgress:
    """A one-task progress bar on stderr: ``with ItemProgress(desc, total) as bar: bar.advance(n)``."""

    def __init__(self, description: str, total: int, unit: str = "img/s") -> None:
        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 RateColumn(unit), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                                 console=err_console, transient=True)
        self.task = self.progress.add_task(description, total=total)

    def __enter__(self) -> "ItemProgress":
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def advance(self, n: int) -> None:
        self.progress.advance(self.task, n)


class NoBar:
    """Stands in for a bar where none can be drawn (output is a file or pipe, not a terminal)."""

    def __enter__(self) -> "NoBar":
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def advance(self, n: int) -> None:
        return None


def epoch_progress(description: str, images: int) -> ItemProgress | NoBar:
    """The per-epoch bar of ``hspnet train``: images of this process's share, img/s, ETA.

    Only on a terminal: in a log file a redrawn bar is just noise (the per-epoch tables remain).
    """
    return ItemProgress(description, images) if err_console.is_terminal else NoBar()


def epoch_table(record) -> Table:  # type: ignore[no-untyped-def]
    """One epoch's figures as a small table."""
    table = Table(title=f"epoch {record.epoch + 1}", show_header=True, title_justify="left")
    for column in ("train loss", "val mAP raw", "val mAP EMA", "lr", "img/s", "s"):
        table.add_column(column, justify="right")
    ema = "-" if record.val_map_ema is None else f"{record.val_map_ema:.4f}"
    mark = " *" if record.best else ""
    table.add_row(f"{record.train_loss:.4f}", f"{record.val_map_raw:.4f}{mark}", ema, f"{record.lr:.2e}",
                  f"{record.images_per_second:,.0f}", f"{record.seconds:.1f}")
    return table
