"""Progress of long runs: a rich bar (items/s, ETA) on a terminal, plain periodic lines off one
(log files, CI, nohup), where a redrawn bar shows nothing. Used by train, tag, index and eval."""

from __future__ import annotations

import time

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from hspnet_cli.core.console import err_console


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
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            RateColumn(unit),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=err_console,
            transient=True,
        )
        self.task = self.progress.add_task(description, total=total)

    def __enter__(self) -> ItemProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def advance(self, n: int) -> None:
        self.progress.advance(self.task, n)


class NoBar:
    """Stands in for a bar where none is wanted (``--quiet``, other ranks)."""

    def __enter__(self) -> NoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def advance(self, n: int) -> None:
        return None


class LineProgress:
    """Off a terminal (a log file, CI, nohup): a plain line every ``interval`` seconds and one at
    the end, with count, rate and ETA, instead of a redrawn bar that a log cannot show."""

    interval = 60.0  # seconds between lines

    def __init__(self, description: str, total: int, unit: str = "img/s") -> None:
        self.description, self.total, self.unit = description, total, unit
        self.done = 0
        self.start = self.last = 0.0

    def __enter__(self) -> LineProgress:
        self.start = self.last = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None and self.done and self.interval > 0 and time.monotonic() - self.start >= self.interval:
            self._line(time.monotonic())  # the final count, for a stage long enough to have had lines

    def advance(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= self.interval:
            self._line(now)

    def _line(self, now: float) -> None:
        self.last = now
        elapsed = max(now - self.start, 1e-9)
        rate = self.done / elapsed
        left = (self.total - self.done) / rate if rate > 0 and self.total > self.done else 0.0
        pct = 100.0 * self.done / self.total if self.total else 100.0
        err_console.print(
            f"{self.description}: {self.done:,}/{self.total:,} ({pct:.0f}%) {rate:,.1f} "
            f"{self.unit}, {_clock(elapsed)} elapsed, ETA {_clock(left)}",
            highlight=False,
            soft_wrap=True,
        )


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def epoch_progress(description: str, images: int) -> ItemProgress | LineProgress:
    """The progress of one long stage (a training epoch, a tagging run): images of this process's
    share, img/s, ETA. A bar on a terminal; off one, a plain line every minute."""
    return ItemProgress(description, images) if err_console.is_terminal else LineProgress(description, images)
