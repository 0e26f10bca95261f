"""The published list format (SPLC / HSPNet): ``relative/path.jpg,idx idx``, one image a line.

Indices are 0-based positions in the taxonomy's label order (``hierarchies/<dataset>.yaml``).
The format holds positives only; read as an annotation it is a full annotation (what is not
listed is negative). Canonical form, which :func:`format_list` writes and a read -> write
round trip reproduces byte for byte: one line per image in file order, indices ascending and
distinct, separated by one space, ``\\n`` line ends, a final newline.

The published loaders split each line at its comma and parse every index, so a line without
indices would crash them and a path with a comma cannot be written: images without a positive
are left out (and counted), and such paths are refused.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hspnet_cli.core.errors import UserError
from hspnet_cli.data.labelset import POSITIVE, LabelSet, Record, normalize_image_path
from hspnet_cli.data.readers.common import RawAnnotations, read_text


def read_list_file(path: Path, label_names: list[str], taxonomy_name: str = "") -> RawAnnotations:
    """Read a list file against a taxonomy's label order.

    Args:
        path: The list file.
        label_names: The taxonomy's labels; index ``i`` means ``label_names[i]``.
        taxonomy_name: For messages.

    Raises:
        UserError: A line without exactly one comma, an index that is not a whole number, or
            an index outside ``0..len(label_names)-1`` (file:line). Out-of-range indices are
            never dropped: they mean the list was made for another label order.
    """
    records = []
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        if line.count(",") != 1:
            raise UserError(f"{where}: expected 'relative/path.jpg,idx idx' (one comma), found '{line[:80]}'")
        image, _, rest = line.partition(",")
        values: dict[str, int] = {}
        for token in rest.split():
            try:
                index = int(token)
            except ValueError:
                raise UserError(
                    f"{where}: label index '{token}' is not a whole number; "
                    "write 0-based label indices separated by spaces"
                ) from None
            if not 0 <= index < len(label_names):
                raise UserError(
                    f"{where}: label index {index} is out of range for taxonomy '{taxonomy_name}' "
                    f"({len(label_names)} labels, indices 0..{len(label_names) - 1}); "
                    "the list was made for another label order"
                )
            values[label_names[index]] = POSITIVE
        records.append(Record(normalize_image_path(image, where), where, values))
    return RawAnnotations(records, declared=None, files=[path])


def format_list(labels: LabelSet) -> tuple[str, int]:
    """The canonical list text of ``labels`` (positives only).

    Returns:
        ``(text, left_out)``: the file's text and how many images had no positive to write.

    Raises:
        UserError: An image path contains a comma, which the format cannot hold.
    """
    lines = []
    left_out = 0
    for image, origin, row in zip(labels.images, labels.origins, labels.matrix):
        indices = np.flatnonzero(row == POSITIVE)
        if indices.size == 0:
            left_out += 1
            continue
        if "," in image:
            raise UserError(
                f"{origin}: image path '{image}' contains a comma, which the list format "
                "cannot hold; write CSV (--out-format csv) instead"
            )
        lines.append(f"{image},{' '.join(str(int(i)) for i in indices)}\n")
    return "".join(lines), left_out
