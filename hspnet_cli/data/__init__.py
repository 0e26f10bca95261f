"""Annotations in, weak-label training splits out: readers, protocols and split files.

Everything here works on :class:`~hspnet_cli.data.labelset.LabelSet` (images x labels, int8,
1 positive / 0 unknown / -1 negative) in a taxonomy's label order.
"""

from hspnet_cli.data.labelset import NEGATIVE, POSITIVE, UNKNOWN, LabelSet, ReadReport
from hspnet_cli.data.readers import FORMATS, detect_format, read_annotations
from hspnet_cli.data.split_io import SPLIT_HEADER, read_split_csv, read_split_yaml, write_split_csv

__all__ = [
    "FORMATS",
    "NEGATIVE",
    "POSITIVE",
    "SPLIT_HEADER",
    "UNKNOWN",
    "LabelSet",
    "ReadReport",
    "detect_format",
    "read_annotations",
    "read_split_csv",
    "read_split_yaml",
    "write_split_csv",
]
