"""Batch tagging of image folders (``hspnet tag``): discovery, robust decoding, streaming,
resumable output files aligned row for row with the image embeddings.

Modules: :mod:`~hspnet_cli.sources.discover` (which images, in which order),
:mod:`~hspnet_cli.tagging.decode` (file -> RGB or a failure reason),
:mod:`~hspnet_cli.tagging.gpu_decode` (``--decode gpu``: JPEG bytes decoded on the scorer's device),
:mod:`~hspnet_cli.tagsfile.writer` (file formats, progress record, resume),
:mod:`~hspnet_cli.tagging.run` (:func:`tag_images`). torch is imported only by ``decode``,
``gpu_decode`` and ``run``; importing this package imports none of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hspnet_cli.tagging.run import TagSummary, tag_images

__all__ = ["TagSummary", "tag_images"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from hspnet_cli.tagging import run

        return getattr(run, name)
    raise AttributeError(name)
