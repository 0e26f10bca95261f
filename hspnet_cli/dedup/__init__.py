"""Near-duplicate images: groups by embedding similarity, one keeper each (``hspnet dedup``).

``vectors`` opens the input (a tag output or an ``hspnet index build`` index), ``graph`` finds
the pairs at or above the threshold with FAISS k-NN search in chunks and joins them into
connected components, ``keeper`` picks one image per group, ``outputs`` writes ``dups.csv``,
the list of non-keepers and the review tasks, and ``run`` ties them together.
"""

from hspnet_cli.dedup.run import DedupOptions, DedupResult, run_dedup

__all__ = ["DedupOptions", "DedupResult", "run_dedup"]
