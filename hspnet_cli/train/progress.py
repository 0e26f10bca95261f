"""What ``hspnet train`` prints after each epoch: a table on a terminal, one plain line off one
(log files, CI, nohup). Progress bars within an epoch are :mod:`hspnet_cli.core.progress`'s."""

from __future__ import annotations

from rich.table import Table


def _maps(record) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """Raw and EMA validation mAP as shown, ``*`` on the one whose weights were saved as best."""
    raw = f"{record.val_map_raw:.4f}" + (" *" if record.best_weights == "raw" else "")
    ema = (
        "-"
        if record.val_map_ema is None
        else (f"{record.val_map_ema:.4f}" + (" *" if record.best_weights == "ema" else ""))
    )
    return raw, ema


def _title(record, epochs: int | None) -> str:  # type: ignore[no-untyped-def]
    return f"epoch {record.epoch}" + (f"/{epochs}" if epochs else "")


def epoch_line(record, epochs: int | None) -> str:  # type: ignore[no-untyped-def]
    """One epoch's figures as one plain line (for logs); ``*`` marks the weights saved as best."""
    raw, ema = _maps(record)
    return (
        f"{_title(record, epochs)}  train loss {record.train_loss:.4f}  val mAP raw {raw}  EMA {ema}  "
        f"lr {record.lr:.2e}  {record.images_per_second:,.0f} img/s  {record.seconds:.1f} s"
    )


def epoch_table(record, epochs: int | None = None) -> Table:  # type: ignore[no-untyped-def]
    """One epoch's figures as a small table; ``*`` marks the column whose weights were saved as best."""
    table = Table(title=_title(record, epochs), show_header=True, title_justify="left")
    for column in ("train loss", "val mAP raw", "val mAP EMA", "lr", "img/s", "s"):
        table.add_column(column, justify="right")
    raw, ema = _maps(record)
    table.add_row(
        f"{record.train_loss:.4f}",
        raw,
        ema,
        f"{record.lr:.2e}",
        f"{record.images_per_second:,.0f}",
        f"{record.seconds:.1f}",
    )
    return table


def epoch_reporter(epochs: int | None):  # type: ignore[no-untyped-def]
    """What ``hspnet train`` prints after each epoch: a table on a terminal, one plain line in a log."""
    from hspnet_cli.core.console import console, say

    if console.is_terminal:
        return lambda record: say(epoch_table(record, epochs))
    return lambda record: say(epoch_line(record, epochs), highlight=False, soft_wrap=True)
