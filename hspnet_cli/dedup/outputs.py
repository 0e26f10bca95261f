"""What ``hspnet dedup`` writes: ``dups.csv``, the non-keepers list, the report and review tasks.

For ``--out dups.csv``, beside it (every file written to a temporary name, then renamed):

* ``dups.csv``: ``group,key,keep,similarity,pixels``; one row per image in a group of two or
  more, the keeper first (``keep`` 1, similarity 1.0), then the others by falling similarity
  to the keeper (cosine of the embeddings); ``pixels`` is 0 when not read.
* ``dups.exclude.txt``: the non-keepers, one image key a line (relative to the tagged folder),
  the list format ``hspnet tag --list``, ``select --exclude``, ``split --exclude`` and
  ``annotate --exclude`` read;
* ``dups.dedup.json``: the counts, the threshold, the index used and the keeper rule;
* with ``--to label-studio``: ``dups.tasks.json`` (one task per non-keeper, showing it beside
  its keeper with "duplicate" pre-ticked) and ``dups.tasks.labeling-config.xml``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hspnet_cli.core.io_utils import atomic_write, write_text_atomic
from hspnet_cli.tagsfile.listfile import format_line

DUPS_HEADER = ["group", "key", "keep", "similarity", "pixels"]


@dataclass
class Member:
    """One image of a group, as written to dups.csv."""

    group: int
    key: str
    keep: bool
    similarity: float
    pixels: int


def side_files(out: Path) -> dict[str, Path]:
    """The files written beside ``out``, by role."""
    stem = out.stem
    return {
        "dups": out,
        "exclude": out.with_name(f"{stem}.exclude.txt"),
        "report": out.with_name(f"{stem}.dedup.json"),
        "tasks": out.with_name(f"{stem}.tasks.json"),
        "config": out.with_name(f"{stem}.tasks.labeling-config.xml"),
    }


def write_dups(out: Path, members: Iterable[Member]) -> list[Member]:
    """dups.csv (streamed); returns the non-keepers for the list and the tasks."""
    dropped: list[Member] = []
    with atomic_write(out, encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(DUPS_HEADER)
        for m in members:
            writer.writerow([m.group, m.key, int(m.keep), f"{m.similarity:.4f}", m.pixels])
            if not m.keep:
                dropped.append(m)
    return dropped


def write_exclude_list(path: Path, dropped: list[Member], source: str) -> int:
    """The non-keepers' keys, one a line; keys with a line break cannot be listed (returned count)."""
    unlisted = 0
    with atomic_write(path, encoding="utf-8") as fh:
        fh.write(
            f"# hspnet dedup of {source}: near-duplicates that are not their group's keeper "
            "(pass to select/split/annotate --exclude)\n"
        )
        for m in dropped:
            if "\n" in m.key or "\r" in m.key:
                unlisted += 1
                continue
            fh.write(format_line(m.key))  # the one list format: a leading # or \\ is escaped
    return unlisted


_CONFIG = """<View>
  <Header value="near-duplicate of the keeper? similarity $similarity (group $group)" size="6"/>
  <View style="display: flex; gap: 1em">
    <View><Header value="this image" size="6"/><Image name="image" value="$image"/></View>
    <View><Header value="keeper: $hspnet_keeper" size="6"/><Image name="keeper" value="$keeper"/></View>
  </View>
  <Choices name="duplicate" toName="image" choice="single" showInline="true">
    <Choice value="duplicate"/>
    <Choice value="not duplicate"/>
  </Choices>
</View>
"""


def write_review_tasks(
    files: dict[str, Path], dropped: list[Member], keepers: dict[int, str], refs: Any, model_version: str
) -> dict[str, str]:
    """Label Studio tasks: each non-keeper beside its keeper, "duplicate" pre-ticked (score = similarity)."""
    with atomic_write(files["tasks"], encoding="utf-8") as fh:
        fh.write("[")
        for i, m in enumerate(dropped):
            keeper = keepers[m.group]
            task = {
                "data": {
                    "image": refs(m.key),
                    "keeper": refs(keeper),
                    "hspnet_path": m.key,
                    "hspnet_keeper": keeper,
                    "group": m.group,
                    "similarity": round(m.similarity, 4),
                },
                "predictions": [
                    {
                        "model_version": model_version,
                        "score": round(m.similarity, 4),
                        "result": [
                            {
                                "from_name": "duplicate",
                                "to_name": "image",
                                "type": "choices",
                                "value": {"choices": ["duplicate"]},
                            }
                        ],
                    }
                ],
            }
            fh.write(("\n" if i == 0 else ",\n") + json.dumps(task, ensure_ascii=False))
        fh.write("\n]\n")
    write_text_atomic(files["config"], _CONFIG)
    return {"tasks": str(files["tasks"]), "config": str(files["config"])}
