"""Starting an annotation server: options checked, session built, uvicorn run until stopped."""

from __future__ import annotations

import ipaddress
import logging
import re
import secrets
import socket
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hspnet_cli.annotate.prepare import Preparer
from hspnet_cli.annotate.queue import WorkQueue, build_order
from hspnet_cli.annotate.server import AnnotateSession, build_app
from hspnet_cli.annotate.store import LabelStore
from hspnet_cli.core.errors import UserError
from hspnet_cli.core.names import LeftOut
from hspnet_cli.taxonomy import Taxonomy

log = logging.getLogger(__name__)
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,128}$")
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass
class AnnotateOptions:
    """What ``hspnet annotate`` was asked for (besides the folder, taxonomy, log and suggester).

    Attributes:
        order: A list file (one relative path a line) to annotate first, or None.
        only_listed: Annotate only the ``order`` images.
        exclude: List files of images never to queue (e.g. hspnet dedup's non-keepers).
        host: Interface to bind; anything but loopback needs ``allow_remote``.
        port: TCP port (0: any free one).
        token: Session token (random when None).
        allow_remote: Permit a non-loopback ``host``.
        annotator: Default annotator name written with each answer.
        top_k: Suggestions shown as buttons (keys 1-9).
        max_side: Longest side of the resized images sent to the browser.
        lease_seconds: How long an image stays reserved for a silent tab.
        prefetch: Images prepared ahead of the one on screen.
        open_browser: Open the URL in the default browser.
    """

    order: Path | None = None
    only_listed: bool = False
    exclude: tuple[Path, ...] = ()
    host: str = "127.0.0.1"
    port: int = 8765
    token: str | None = None
    allow_remote: bool = False
    annotator: str = ""
    top_k: int = 9
    max_side: int = 1024
    lease_seconds: float = 300.0
    prefetch: int = 3
    open_browser: bool = False


def check_options(options: AnnotateOptions) -> str:
    """Validate the options; return the token to use.

    Raises:
        UserError: A bad token, port, k, size, or a non-loopback host without ``allow_remote``.
    """
    token = options.token or secrets.token_urlsafe(24)
    if not _TOKEN.match(token):
        raise UserError("--token must be 16-128 characters of A-Z, a-z, 0-9, '-' or '_'")
    if not 0 <= options.port <= 65535:
        raise UserError(f"--port {options.port}: choose 1-65535 (or 0 for any free port)")
    if not 1 <= options.top_k <= 9:
        raise UserError(f"--top-k {options.top_k}: choose 1-9 (one suggestion per number key)")
    if options.max_side < 64:
        raise UserError(f"--max-side {options.max_side}: choose at least 64 pixels")
    if options.lease_seconds < 5:
        raise UserError(f"--lease-seconds {options.lease_seconds}: choose at least 5 seconds")
    if not is_loopback(options.host) and not options.allow_remote:
        raise UserError(
            f"--host {options.host} would let other machines reach the images and the labels; "
            "add --allow-remote if you mean it (the token is then the only protection)"
        )
    return token


def is_loopback(host: str) -> bool:
    """True when ``host`` is this machine only (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def open_session(
    images_dir: Path, taxonomy: Taxonomy, out: Path, scorer: Any, options: AnnotateOptions, token: str
) -> AnnotateSession:
    """The log opened (or continued), the queue ordered and the preparer ready."""
    if not images_dir.is_dir():
        raise UserError(f"{images_dir}: images folder not found; pass the folder that holds the images")
    store = LabelStore(out, taxonomy, images_dir)
    try:
        left_out = LeftOut(str(images_dir))
        order = build_order(images_dir, options.order, options.only_listed, left_out, options.exclude)
        queue = WorkQueue(order, store.is_done, lease_seconds=options.lease_seconds)
        preparer = Preparer(
            images_dir, scorer, max_side=options.max_side, cache_items=max(32, 8 * (options.prefetch + 1))
        )
    except BaseException:
        store.close()
        raise
    return AnnotateSession(
        store=store,
        queue=queue,
        preparer=preparer,
        token=token,
        annotator=options.annotator,
        top_k=options.top_k,
        prefetch=options.prefetch,
        suggester=None if scorer is None else scorer.description,
        left_out=dict(left_out.counts),
    )


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on (host, port), so the real port is known before uvicorn starts.

    Raises:
        UserError: The port is taken or the address is not this machine's.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UserError(
            f"cannot listen on {host}:{port} ({exc.strerror or exc}); choose another --port (0 picks a free one)"
        ) from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def serve(
    images_dir: str | Path,
    taxonomy: Taxonomy,
    out: str | Path,
    scorer: Any = None,
    options: AnnotateOptions | None = None,
    on_ready: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run the annotation server until interrupted; return the final status.

    Args:
        images_dir: IMAGES_DIR.
        taxonomy: The labels to choose from.
        out: The labels log (created, or continued when it exists).
        scorer: A suggester (:class:`hspnet_cli.scoring.scorer.Scorer`) or None.
        options: Everything else.
        on_ready: Called once with ``{"url", "token", "host", "port", ...}`` when listening.
    """
    import uvicorn

    options = options or AnnotateOptions()
    token = check_options(options)
    session = open_session(Path(images_dir), taxonomy, Path(out), scorer, options, token)
    sock = bind(options.host, options.port)
    port = sock.getsockname()[1]
    shown_host = f"[{options.host}]" if ":" in options.host else options.host
    url = f"http://{shown_host}:{port}/?token={token}"
    status = session.store.status(len(session.queue))
    if on_ready is not None:
        on_ready(
            {
                "url": url,
                "token": token,
                "host": options.host,
                "port": port,
                "labels_log": str(out),
                "total": status["total"],
                "labelled": status["labelled"],
                "skipped": status["skipped"],
                # not last: scripts read the printed JSON up to the first line ending in '}'
                "left_out": session.left_out,
                "suggester": session.suggester,
                "remote": not is_loopback(options.host),
            }
        )
    if options.open_browser:
        webbrowser.open(url)
    config = uvicorn.Config(
        build_app(session), log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=3
    )
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass  # uvicorn re-raises the Ctrl-C it handled; stopping is this command's normal end
    finally:
        session.preparer.close()
        final = session.store.status(len(session.queue))
        session.store.close()
        sock.close()
    return final
