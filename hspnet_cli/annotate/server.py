"""The annotation web app: a Starlette application served by uvicorn.

Every request must carry the session token (``?token=`` or the ``X-HSPNet-Token`` header),
page, scripts and images included; anything else is answered 403. Image URLs go through
:func:`~hspnet_cli.annotate.prepare.safe_image_path`, so no path leaves IMAGES_DIR. The page
renders labels with ``textContent`` only, and a strict Content-Security-Policy (no inline
script) backs that up.

JSON API (all POST bodies are JSON objects of at most 64 KiB, every field checked for type and
range by :mod:`hspnet_cli.annotate.requests`: a malformed or wrong-typed request is 400, a
conflict with the queue (an image not leased to the tab) 409; ``client`` is the tab's random id):

* ``GET /api/config``: labels, groups, suggester, keys, totals.
* ``POST /api/next {client, want}``: renews the tab's leases and tops them up to ``want``
  images, each with its suggestions; prefetches one more screen.
* ``POST /api/answer {client, image, kind, label?, seconds, annotator}``: appends the answer
  (durable on return) and frees the lease; ``kind`` is answer, none or skip. Only an image
  leased to that tab can be answered (409 otherwise); an image that cannot be shown can be
  skipped.
* ``POST /api/undo {client, seq, annotator}``: appends an undo and hands the image back.
* ``POST /api/release {client}``: the tab is closing; its images go back to the queue.
* ``GET /api/status``: labelled / total, median seconds, labels used, annotators.
* ``GET /img/PATH``: the resized preview of one image (JPEG).
"""

from __future__ import annotations

import functools
import hmac
import logging
from dataclasses import dataclass, field
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, quote

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from hspnet_cli.annotate import requests as req
from hspnet_cli.annotate.prepare import Prepared, Preparer, UnsafePath, safe_image_path
from hspnet_cli.annotate.queue import WorkQueue
from hspnet_cli.annotate.store import LabelStore
from hspnet_cli.core.errors import UserError

log = logging.getLogger(__name__)

STATIC_FILES = {"app.js": "text/javascript", "style.css": "text/css"}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


@dataclass
class AnnotateSession:
    """Everything one server serves: the log, the queue, the preparer and the page settings."""

    store: LabelStore
    queue: WorkQueue
    preparer: Preparer
    token: str
    annotator: str
    top_k: int = 9
    prefetch: int = 3
    suggester: str | None = None
    left_out: dict[str, int] = field(default_factory=dict)  # names the rule for names left out, by reason

    def __post_init__(self) -> None:
        self.group_of = self.store.taxonomy.group_of()


class TokenGuard:
    """ASGI middleware: 403 unless the request carries the session token; security headers on every answer."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = b""
        for name, value in scope.get("headers", []):
            if name == b"x-hspnet-token":
                given = value
        if not given:
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            given = query.get("token", [""])[0].encode("latin-1", "replace")
        if not hmac.compare_digest(given, self.token):
            response = PlainTextResponse(
                "403: this hspnet annotate session needs its token (open the URL the server printed)",
                status_code=403,
                headers=SECURITY_HEADERS,
            )
            await response(scope, receive, send)
            return

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                headers += [
                    (k.lower().encode(), v.encode())
                    for k, v in SECURITY_HEADERS.items()
                    if k.lower().encode() not in present
                ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


@functools.cache
def _static(name: str) -> str:
    return resources.files("hspnet_cli.annotate").joinpath("static", name).read_text(encoding="utf-8")


def _item(session: AnnotateSession, prepared: Prepared) -> dict[str, Any]:
    """One image as the page needs it: where to load it, its size and its suggestions."""
    tax = session.store.taxonomy
    group_of = session.group_of
    out: dict[str, Any] = {
        "image": prepared.image,
        "src": "/img/" + quote(prepared.image),
        "error": prepared.error,
        "size": prepared.size,
        "suggestions": [],
    }
    if prepared.ranking is not None and prepared.scores is not None:
        names = tax.label_names
        out["suggestions"] = [
            {
                "label": names[i],
                "group": group_of[names[i]],
                "rank": r + 1,
                "score": round(float(prepared.scores[i]), 4),
            }
            for r, i in enumerate(prepared.ranking[: session.top_k])
        ]
    return out


def _rank_of(session: AnnotateSession, image: str, label: str) -> int | None:
    """The suggester's 1-based rank of ``label`` for ``image`` (None without a suggester)."""
    if session.preparer.scorer is None:
        return None
    prepared = session.preparer.get(image)
    if prepared.ranking is None:
        return None
    index = session.store.taxonomy.label_index(label)
    return int((prepared.ranking == index).nonzero()[0][0]) + 1


async def _body(request: Request) -> dict[str, Any]:
    """The request's JSON object, read no further than :data:`~hspnet_cli.annotate.requests.MAX_BODY`
    bytes (a larger body is refused before it is all in memory)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > req.MAX_BODY:
        raise req.BadRequest(f"the request body is over {req.MAX_BODY // 1024} KiB", status=413)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > req.MAX_BODY:
            raise req.BadRequest(f"the request body is over {req.MAX_BODY // 1024} KiB", status=413)
        chunks.append(chunk)
    return req.parse_body(b"".join(chunks))


def build_app(session: AnnotateSession) -> Any:
    """The ASGI application (token guard around the Starlette routes) for ``session``."""

    async def page(request: Request) -> Response:
        html = _static("index.html").replace("{{TOKEN}}", session.token)
        return Response(html, media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-store"})

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC_FILES:
            return PlainTextResponse("not found", status_code=404)
        return Response(_static(name), media_type=STATIC_FILES[name], headers={"Cache-Control": "no-cache"})

    async def config(request: Request) -> Response:
        tax = session.store.taxonomy
        return JSONResponse(
            {
                "taxonomy": tax.name,
                "labels": tax.label_names,
                "groups": [{"name": g, "labels": members} for g, members in tax.groups.items()],
                "suggester": session.suggester,
                "top_k": session.top_k,
                "prefetch": session.prefetch,
                "annotator": session.annotator,
                "total": len(session.queue),
                "left_out": session.left_out,
            }
        )

    def next_items(request_data: dict[str, Any]) -> dict[str, Any]:
        client = req.client(request_data)
        want = min(req.whole(request_data, "want", 1, 64, default=session.prefetch + 1), 16)
        leases = session.queue.lease(client, want)
        # Every held image is prepared (the page preloads them), so the next one shows at once.
        futures = [session.preparer.submit(lease.image) for lease in leases]
        items = [_item(session, future.result(timeout=120)) for future in futures]
        return {"items": items, "remaining": len(session.queue) - session.queue.done_count()}

    async def api_next(request: Request) -> Response:
        data = await _body(request)
        return JSONResponse(await run_in_threadpool(next_items, data))

    def answer(data: dict[str, Any]) -> dict[str, Any]:
        client = req.client(data)
        image = req.text(data, "image", 4096, required=True)
        kind = req.text(data, "kind", 16, required=True)
        if kind not in ("answer", "none", "skip"):
            raise req.BadRequest("'kind' must be answer, none or skip")
        label = req.text(data, "label", 1000, required=kind == "answer")
        seconds = req.seconds(data)
        annotator = req.text(data, "annotator", 80) or session.annotator
        # Only the tab holding the image's lease may answer it: a lease that expired or went to
        # another tab, or an image never handed out, is a conflict (two answers, last one wins).
        owner = session.queue.owner(image)
        if owner != client:
            raise UserError(
                f"{image} is not leased to this tab"
                + (
                    " (another tab has it)"
                    if owner
                    else " (its lease expired or it was answered); ask for the next images again"
                )
            )
        if kind != "skip":  # an image that cannot be shown (a link out of the folder, a dangling one) is skipped
            try:
                safe_image_path(session.preparer.root, image)
            except (UnsafePath, FileNotFoundError):
                raise UserError(f"{image}: cannot be shown (not a readable image inside the folder); skip it") from None
        rank = (
            _rank_of(session, image, label)
            if kind == "answer" and label in session.store.taxonomy.label_names
            else None
        )
        event = session.store.record(
            kind, image, label=label, rank=rank, seconds=seconds, annotator=annotator, client=client
        )
        session.queue.finish(client, image)
        return {"seq": event["seq"], "event": event}

    async def api_answer(request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(answer, await _body(request)))

    def undo(data: dict[str, Any]) -> dict[str, Any]:
        client = req.client(data)
        seq = req.whole(data, "seq", 1, 2**53)
        annotator = req.text(data, "annotator", 80) or session.annotator
        target = session.store.state.events.get(seq)
        if target is None or target.get("client") != client:
            raise UserError(f"event {seq} was not answered in this tab; only a tab's own answers can be undone")
        session.store.undo(seq, annotator=annotator, client=client)
        session.queue.grant(client, target["image"])
        return {"item": _item(session, session.preparer.get(target["image"]))}

    async def api_undo(request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(undo, await _body(request)))

    async def api_release(request: Request) -> Response:
        data = await _body(request)
        return JSONResponse({"released": session.queue.release(req.client(data))})

    async def api_status(request: Request) -> Response:
        status = session.store.status(len(session.queue))
        status.update(queue_done=session.queue.done_count(), in_progress=session.queue.leased_count())
        return JSONResponse(status)

    def image_bytes(rel: str) -> Response:
        try:
            safe_image_path(session.preparer.root, rel)
        except UnsafePath:
            return PlainTextResponse("403: this path is not an image inside the images folder", status_code=403)
        except FileNotFoundError:
            return PlainTextResponse("404: no such image", status_code=404)
        prepared = session.preparer.get(rel)
        if prepared.jpeg is None:
            return PlainTextResponse(f"cannot show this image: {prepared.error}", status_code=422)
        return Response(prepared.jpeg, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    async def image(request: Request) -> Response:
        return await run_in_threadpool(image_bytes, request.path_params["path"])

    routes = [
        Route("/", page),
        Route("/static/{name}", static),
        Route("/api/config", config),
        Route("/api/next", api_next, methods=["POST"]),
        Route("/api/answer", api_answer, methods=["POST"]),
        Route("/api/undo", api_undo, methods=["POST"]),
        Route("/api/release", api_release, methods=["POST"]),
        Route("/api/status", api_status),
        Route("/img/{path:path}", image),
    ]

    async def user_error(request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": str(exc)}, status_code=409)

    async def bad_request(request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": str(exc)}, status_code=getattr(exc, "status", 400))

    app = Starlette(routes=routes, exception_handlers={UserError: user_error, req.BadRequest: bad_request})
    return TokenGuard(app, session.token)
