"""``hspnet annotate``: collect one positive label per image in a browser, at the speed of a click.

``store`` (the durable labels log), ``queue`` (order and leases), ``prepare`` (safe paths,
resized previews, suggestions), ``server`` (the token-guarded Starlette app) and ``run``
(options, uvicorn). The page itself is ``static/``.
"""

__all__ = ["AnnotateOptions", "serve"]


def __getattr__(name: str):  # type: ignore[no-untyped-def]
    if name in __all__:  # the server stack (starlette, uvicorn) loads only when used
        from hspnet_cli.annotate import run

        return getattr(run, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
