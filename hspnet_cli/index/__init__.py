"""FAISS indexes over ``hspnet tag`` embeddings: build / add (``build``), merge (``merge``),
search (``search``), index files (``store``); tagger outputs are read through
:mod:`hspnet_cli.tagsfile`. faiss is imported inside the functions that need it."""

from hspnet_cli.index.build import add_to_index, build_index, choose_factory
from hspnet_cli.index.merge import merge_shards
from hspnet_cli.index.search import run_search
from hspnet_cli.index.store import load_index

__all__ = ["add_to_index", "build_index", "choose_factory", "load_index", "merge_shards", "run_search"]
