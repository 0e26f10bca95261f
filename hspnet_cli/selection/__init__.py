"""Choosing what to label next from a tag output: uncertainty and group doubt (``scores``),
greedy k-center in embedding space (``kcenter``), what is labelled already (``exclude``), the
strategies (``select``) and the files written (``outputs``). faiss is imported inside the
functions that need it."""

from hspnet_cli.selection.outputs import write_selection
from hspnet_cli.selection.select import STRATEGIES, SelectOptions, parse_mix, select_images

__all__ = ["STRATEGIES", "SelectOptions", "parse_mix", "select_images", "write_selection"]
