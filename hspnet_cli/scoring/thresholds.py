"""Per-label decision thresholds on disk: the file ``hspnet calibrate`` writes and tagging reads.

The format (JSON, documented in :mod:`hspnet_cli.evaluation.calibration`, which fits the
values) is read by everything that turns probabilities into tags: ``tag``, ``export`` (which
carries the thresholds into the export), ``select`` and ``export-labels``. Reading lives here,
below evaluation, so that using a model never needs the fitting code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from hspnet_cli.core.errors import UserError
from hspnet_cli.core.io_utils import write_text_atomic
from hspnet_cli.taxonomy import Taxonomy

FORMAT = "hspnet-thresholds"
VERSION = 1


def write_thresholds(path: str | Path, data: dict[str, Any]) -> None:
    """Write a thresholds file atomically, holding its output lock (:mod:`hspnet_cli.core.locks`)."""
    from hspnet_cli.core.locks import output_lock

    with output_lock(path, "thresholds file"):
        write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def load_thresholds(path: str | Path, taxonomy: Taxonomy) -> np.ndarray:
    """Read a thresholds file as a (C,) float32 array in ``taxonomy`` label order.

    Raises:
        UserError: Missing or malformed file, or a file made for other labels.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: thresholds file not found; make one with 'hspnet calibrate'")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as exc:  # also bad UTF-8, too-deep nesting, 5000-digit numbers
        raise UserError(
            f"{path}: not valid JSON ({str(exc)[:120] or 'nested too deeply'}); remake it with 'hspnet calibrate'"
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("thresholds"), dict):
        raise UserError(f"{path}: not an hspnet thresholds file; make one with 'hspnet calibrate'")
    table = data["thresholds"]
    names = taxonomy.label_names
    missing = [n for n in names if n not in table]
    extra = [n for n in table if n not in set(names)]
    if missing or extra:
        what = "; ".join(
            part
            for part in (
                f"no threshold for {len(missing)} label(s), e.g. '{missing[0]}'" if missing else "",
                f"{len(extra)} label(s) not in taxonomy '{taxonomy.name}', e.g. '{extra[0]}'" if extra else "",
            )
            if part
        )
        raise UserError(f"{path}: made for other labels ({what}); calibrate again with this model's taxonomy")
    out = np.empty(len(names), dtype=np.float32)
    for i, name in enumerate(names):
        value = table[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise UserError(
                f"{path}: threshold of '{name}' is {repr(value)[:40]}; thresholds are probabilities in [0, 1]"
            )
        out[i] = value
    return out


def uncalibrated_note(model: str | Path | None = None) -> str:
    """What to say when tags are cut at 0.5 because the model stores no fitted thresholds.

    A model trained on single positives puts most probabilities below 0.5 (on the demo world
    most images get no tag at 0.5), so the user must hear it and how to fix it.
    """
    where = str(model) if model else "MODEL"
    return (
        "uncalibrated: 0.5 for every label (the model stores no thresholds; training fits them only when "
        "the split's validation set is fully labelled). Fit them on a labelled split: hspnet calibrate --checkpoint "
        f"{where} --data val.csv --images DIR -o thresholds.json, then pass --thresholds thresholds.json"
    )


def stored_thresholds(table: dict[str, Any] | None, taxonomy: Taxonomy) -> tuple[np.ndarray, str] | None:
    """Per-label thresholds stored in a model (checkpoint or export) and a phrase saying what they are.

    Args:
        table: The stored entry: a thresholds document (``hspnet calibrate``'s format, which
            ``hspnet train`` stores) or a plain label -> value mapping (exports before that); None.
        taxonomy: The model's labels, whose order the array follows.

    Returns:
        (C,) float32 thresholds and their description, or None when nothing usable is stored.
    """
    if not table:
        return None
    values = table.get("thresholds", table) if table.get("format") == FORMAT else table
    if not isinstance(values, dict) or any(name not in values for name in taxonomy.label_names):
        return None
    out = np.asarray([float(values[name]) for name in taxonomy.label_names], dtype=np.float32)
    source = table.get("source") if isinstance(table.get("source"), dict) else {}
    if source.get("fitted_by") == "hspnet train":
        what = (
            f"calibrated per label on the validation split ({source.get('images')} images, "
            f"{source.get('data')}) when training kept this model"
        )
    else:
        what = "per-label thresholds stored in the model" + (
            f" (fitted on {source['data']})" if source.get("data") else ""
        )
    return out, what
