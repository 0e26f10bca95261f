"""What is already labelled: ``--exclude`` files turned into a row mask over a tag output.

Accepted, told apart by their name (never by what the first path looks like, so a list whose
first image is ``a,b.png`` or ``<x>.png`` is still a list):

* an annotation input: a folder (VOC, FiftyOne) or a file ending ``.csv``, ``.tsv``, ``.json``,
  ``.jsonl``, ``.ndjson`` or ``.xml``, read as ``hspnet split`` reads it (split CSV,
  ``image,labels`` CSV, wide CSV, JSON Lines, COCO JSON, the label tools' exports, the annotate
  log). These also say which labels the labelled images hold, so coverage can aim at labels
  that have few; a ``.txt`` in the published ``path.jpg,3 7`` list format is one too;
* anything else is a list file, one image path a line, in the format of
  :mod:`hspnet_cli.tagsfile.listfile` (what ``hspnet tag --list`` and ``hspnet select`` itself
  read and write; absolute paths inside the tagged folder are made relative to it).

Paths are matched exactly against the tag output's keys (relative to the tagged folder). A file
none of whose images is in the tag output is warned about by name: its paths are most likely
relative to another folder.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hspnet_cli.core.errors import UserError
from hspnet_cli.tagsfile.listfile import listed_paths, parse_line
from hspnet_cli.tagsfile.reader import TagsOutput
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


ANNOTATION_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl", ".ndjson", ".xml")
_PUBLISHED_LINE = re.compile(r"^[^,]+,\s*\d*(\s+\d+)*\s*$")  # 'path.jpg,3 7': no image name ends so


def _first_entry(path: Path) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as fh:
            for line in fh:
                name = parse_line(line)
                if name is not None:
                    return name
    except OSError as exc:
        raise UserError(f"{path}: cannot read the --exclude file ({exc.strerror or exc})") from None
    return None


def _is_path_list(path: Path) -> bool:
    """A list file, decided by the name, never by what the first path looks like: a folder or an
    annotation suffix is an annotation input; anything else is a list file (what ``hspnet
    select -o`` writes, whatever it was named), except a ``.txt`` in the published
    ``path.jpg,3 7`` format, whose first entry ends in label indices where an image name ends
    in its extension."""
    if path.is_dir() or path.suffix.lower() in ANNOTATION_SUFFIXES:
        return False
    if path.suffix.lower() == ".txt":
        first = _first_entry(path)
        return first is None or not _PUBLISHED_LINE.match(first)
    return True


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
            log.warning(
                "%s: none of its %d image(s) is in %s; are its paths relative to %s?",
                source["file"],
                source["images"],
                tags.file,
                tags.images_dir,
            )
    return Exclusions(mask=mask, labelled_positives=labelled, sources=sources)
