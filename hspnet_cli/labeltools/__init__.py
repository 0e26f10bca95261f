"""Labeling tools: ``hspnet tag`` outputs written as pre-annotations for the tool a team reviews in.

:func:`hspnet_cli.labeltools.export.export_labels` writes Label Studio tasks (+ labeling
config), CVAT for images 1.1 XML, a Hugging Face ``imagefolder`` ``metadata.jsonl`` or
FiftyOne's image classification layout. What comes back from those tools after review is read
by the annotation readers of the data layer (:mod:`hspnet_cli.data.readers.labeltools`), so
``hspnet split`` takes it like any other annotation file.
"""

from hspnet_cli.labeltools.export import TARGETS, export_labels

__all__ = ["TARGETS", "export_labels"]
