"""What is already labelled: ``--exclude`` files turned into a row mask over a tag output.

Accepted, told apart by their first line:

* a list file, one image path a line (what ``hspnet tag --list`` and ``hspnet select`` itself
  read and write; ``#`` comments and blank lines ignored; absolute paths inside the tagged
  folder are made relative to it);
* any annotation file ``hspnet split`` reads (split CSV, ``image,labels`` CSV, wide CSV, JSON
  Lines, COCO JSON, published list file, VOC folder, and whatever readers join them). These also
  say which labels the labelled images hold, so coverage can aim at labels that have few.

Paths are matched exactly against the tag output's keys (relative to the tagged folder). A file
none of whose images is in the tag output is warned about by name: its paths are most likely
relative to another folder.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hspnet_cli.core.errors import UserError
from hspnet_cli.tagsfile.reader import TagsOutput
from hspnet_cli.sources.discover import listed_paths
from hspnet_cli.taxonomy.core import Taxonomy

log = logging.getLogger(__name__)


@dataclass
class Exclusions:
    """Rows of a tag output that are labelled already, and what the labelled images hold.

    Attributes:
        mask: (n,) True for rows named by an exclusion file.
        labelled_positives: (C,) positives per label over every annotated image (also those not
            in the tag output); None when no file carried labels.
        sources: Per file: ``file``, ``kind``, ``images`` named, ``matched`` rows.
    """

    mask: np.ndarray
    labelled_positives: np.ndarray | None = None
    sources: list[dict[str, Any]] = field(default_factory=list)

    @property
    def count(self) -> int:
        return int(self.mask.sum())


def _first_line(path: Path) -> str:
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as fh:
            for line in fh:
                text = line.strip()
                if text and not text.startswith("#"):
                    return text
    except OSError as exc:
        raise UserError(f"{path}: cannot read the --exclude file ({exc.strerror or exc})") from None
    return ""


def _is_path_list(path: Path) -> bool:
    if path.is_dir():
        return False
    head = path.open("rb").read(16).decode("utf-8", "replace")
    if head.startswith("# hspnet-split"):
        return False
    first = _first_line(path)
    return bool(first) and "," not in first and first[0] not in "{[<"


def read_exclusions(files: list[str | Path], tags: TagsOutput, taxonomy: Taxonomy) -> Exclusions:
    """Mark the rows of ``tags`` that any of ``files`` names (see the module docstring).

    Raises:
        UserError: A missing or malformed file (named with its line by the readers).
    """
    from hspnet_cli.data.readers import read_annotations

    per_file: list[set[str]] = []
    labelled: np.ndarray | None = None
    sources: list[dict[str, Any]] = []
    for file in map(Path, files):
        if not file.exists():
            raise UserError(f"{file}: --exclude file not found (a list of labelled images or an annotation file)")
        if _is_path_list(file):
            names, kind = list(listed_paths(file, tags.images_dir, "--exclude", "the tagged folder")), "list"
        else:
            labels, report = read_annotations(file, taxonomy)
            names, kind = labels.images, f"annotations ({report.format})"
            counts = (labels.matrix == 1).sum(axis=0).astype(np.int64)
            labelled = counts if labelled is None else labelled + counts
        per_file.append(set(names))
        sources.append({"file": str(file), "kind": kind, "images": len(per_file[-1]), "matched": 0})
    excluded = set().union(*per_file)
    mask = np.zeros(tags.n, dtype=bool)
    for row, path in enumerate(tags.paths):
        if path in excluded:
            mask[row] = True
            for source, names in zip(sources, per_file):
                source["matched"] += path in names
    for source in sources:
        if source["images"] and not source["matched"]:
            log.warning("%s: none of its %d image(s) is in %s; are its paths relative to %s?", source["file"],
                        source["images"], tags.file, tags.images_dir)
    return Exclusions(mask=mask, labelled_positives=labelled, sources=sources)
