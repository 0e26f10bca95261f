"""The run folder of ``hspnet train``: which taxonomy a run uses, refusing or clearing an earlier
run, the ``metrics.jsonl`` log, and what to run after a failed write."""

from __future__ import annotations

import json
from pathlib import Path

from hspnet_cli.core.errors import UserError
from hspnet_cli.core.io_utils import write_text_atomic
from hspnet_cli.data.split_io import read_split_yaml
from hspnet_cli.taxonomy import Taxonomy, load_taxonomy
from hspnet_cli.train.results import EpochRecord
from hspnet_cli.train.thresholds import THRESHOLDS_FILE


def resolve_taxonomy(split_dir: Path, taxonomy: str | Path | None) -> Taxonomy:
    """The given taxonomy, else the one the split records (built-in name or file), checked
    against the split's digest of the label order."""
    from hspnet_cli.data.split_io import labels_sha256

    if taxonomy is not None:
        return load_taxonomy(taxonomy)
    recorded = read_split_yaml(split_dir).get("taxonomy") or {}
    source = recorded.get("source") or recorded.get("name")
    try:
        tax = load_taxonomy(source)
    except UserError:
        raise UserError(
            f"{split_dir}: pass --taxonomy (the split was made with '{source}', which is not found)"
        ) from None
    if recorded.get("labels_sha256") and labels_sha256(tax.label_names) != recorded["labels_sha256"]:
        raise UserError(
            f"{split_dir}: taxonomy '{source}' changed since the split was made (label order "
            "differs); pass --taxonomy with the one it was made with, or remake the split"
        )
    return tax


def check_run_dir(out_dir: Path, overwrite: bool) -> None:
    if (out_dir / "last.ckpt").exists() and not overwrite:
        raise UserError(f"{out_dir}: holds a run already; continue it with --resume {out_dir} or pass --overwrite")


def prepare_run_dir(out_dir: Path, overwrite: bool) -> None:
    """Create (or clear) the run folder; called only once the model, data and schedule are built,
    so a run refused or failing on the way leaves no folder behind."""
    check_run_dir(out_dir, overwrite)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in ("last.ckpt", "best.ckpt", "metrics.jsonl", THRESHOLDS_FILE):
        (out_dir / name).unlink(missing_ok=True)


def how_to_continue(out_dir: Path, resumed: bool) -> str:
    """What to run once the cause of a failed write is fixed."""
    if (out_dir / "last.ckpt").is_file():
        return f"continue from the last saved epoch with: hspnet train --resume {out_dir}"
    if resumed:
        return f"{out_dir}/last.ckpt is gone; start the run again with --overwrite"
    return "no checkpoint was written yet, so there is nothing to resume: rerun the same hspnet train command"


def append_metrics(path: Path, record: EpochRecord) -> None:
    """Rewrite metrics.jsonl atomically with one more line (a crash never leaves half a line)."""
    old = path.read_text() if path.exists() else ""
    write_text_atomic(path, old + json.dumps(record.to_dict()) + "\n")
