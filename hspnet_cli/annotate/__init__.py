"""``hspnet annotate``: collect one positive label per image in a browser, at the speed of a click.

``store`` (the durable labels log), ``queue`` (order and leases), ``prepare`` (safe paths,
resized previews, suggestions), ``server`` (the token-guarded Starlette app) and ``run``
(options, uvicorn). The page itself is ``static/``.
"""
