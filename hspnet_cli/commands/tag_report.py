"""What ``hspnet tag`` says after a run besides its summary line, for both output kinds (files and
Parquet folders)."""

from __future__ import annotations

from hspnet_cli.core.console import say


def say_accounting(summary) -> None:  # type: ignore[no-untyped-def]
    """One line each: files that are not images (by extension), and what the decoders said."""
    # Names left out by the rule for names (core.names) are counted under '(name ...)' keys.
    names = {k: n for k, n in summary.skipped.items() if k.startswith("(name")}
    other = {k: n for k, n in summary.skipped.items() if k not in names}
    if other:
        top = sorted(other.items(), key=lambda kv: (-kv[1], kv[0]))
        shown = ", ".join(f"{ext} {n:,}" for ext, n in top[:8]) + (", ..." if len(top) > 8 else "")
        say(f"skipped {sum(other.values()):,} file(s) that are not images Pillow opens: {shown}")
    for key, n in names.items():
        say(f"left out {n:,} file(s): {key.strip('()')} (rename them to include them)")
    if summary.decoder_messages:
        say(
            f"{summary.decoder_messages:,} decoder message(s) about {summary.decoder_images:,} image(s) in "
            f"{summary.outputs['decode_log']}"
        )
