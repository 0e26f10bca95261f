"""What a run folder's ``config.yaml`` records besides the config: the taxonomy it trained on.

A run trained with ``-t my.yaml`` must say which taxonomy that was, so that the folder alone
tells a reader (or a later ``eval -t``) what the score columns mean and whether a taxonomy file
on disk is still the one used: its source (built-in name or absolute path, with the file's
SHA-256), its name, and digests of its label order and of its groups.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

from hspnet_cli.config import RunConfig
from hspnet_cli.data.split_io import labels_sha256
from hspnet_cli.taxonomy import Taxonomy


def groups_sha256(taxonomy: Taxonomy) -> str:
    """SHA-256 of the groups in order with their members in order (equal digests, equal hierarchy)."""
    text = json.dumps([[g, list(m)] for g, m in taxonomy.groups.items()], ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def taxonomy_record(taxonomy: Taxonomy, source: str | None) -> dict[str, Any]:
    """How the run's taxonomy was given and digests that identify it.

    Args:
        taxonomy: The loaded taxonomy.
        source: What the user passed (``-t``), else what the split records; None if neither.
    """
    record: dict[str, Any] = {"name": taxonomy.name}
    if source is None:
        record["source"] = None
    elif Path(source).expanduser().is_file():
        path = Path(source).expanduser().resolve()
        record["source"] = str(path)
        record["file_sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    else:
        record["source"] = f"built-in {source}"
    record.update(
        {
            "labels": taxonomy.num_labels,
            "groups": taxonomy.num_groups,
            "labels_sha256": labels_sha256(taxonomy.label_names),
            "groups_sha256": groups_sha256(taxonomy),
        }
    )
    return record


def run_config_yaml(config: RunConfig, taxonomy: Taxonomy, source: str | None) -> str:
    """``config.yaml`` of a run: the resolved config, then the taxonomy record.

    The file stays a valid ``--config`` (the ``taxonomy`` section is read as a record there).
    """
    data = {**config.to_dict(), "taxonomy": taxonomy_record(taxonomy, source)}
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
