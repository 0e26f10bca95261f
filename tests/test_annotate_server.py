"""The real annotate server over HTTP: token on every request, no path out of IMAGES_DIR,
resized images, suggestions and their ranks, and the remote-binding guard."""

from __future__ import annotations

import http.client
import io
import os
from pathlib import Path

import pytest
from annotate_helpers import Server, log_events
from conftest import invoke
from PIL import Image

from hspnet_cli.annotate.run import AnnotateOptions, check_options

TOKEN = "test-token-0123456789abcdef"


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory, demo_split) -> Path:
    """Eight world images, a big one, a symlink and a linked folder that both lead outside."""
    root = tmp_path_factory.mktemp("annotate-folder")
    images = root / "images"
    (images / "sub").mkdir(parents=True)
    for i in range(8):
        os.link(demo_split["images"] / f"{i:06d}.png", images / ("sub" if i == 7 else ".") / f"{i:06d}.png")
    Image.new("RGB", (3000, 1500), (200, 40, 40)).save(images / "big.jpg")
    outside = root / "outside"
    outside.mkdir()
    Image.new("RGB", (10, 10)).save(outside / "secret.png")
    (images / "link-out.png").symlink_to(outside / "secret.png")
    (images / "linked-dir").symlink_to(outside)
    return images


@pytest.fixture(scope="module")
def server(folder: Path, demo_split, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("annotate-server") / "labels.jsonl"
    srv = Server(
        folder,
        demo_split["taxonomy"],
        out,
        "--zero-shot",
        "--clip-model",
        "hspnet-tiny",
        "--pretrained",
        "none",
        "--device",
        "cpu",
        "--top-k",
        "5",
        "--max-side",
        "512",
        token=TOKEN,
    )
    yield srv
    assert srv.stop() == 0


def _raw_get(srv: Server, raw_path: str) -> int:
    """GET a path byte for byte (no client-side normalisation of ../ or %2e)."""
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    conn.putrequest("GET", raw_path, skip_accept_encoding=True)
    conn.putheader("X-HSPNet-Token", TOKEN)
    conn.endheaders()
    status = conn.getresponse().status
    conn.close()
    return status


def test_every_request_needs_the_token(server: Server) -> None:
    for path in ("/", "/static/app.js", "/static/style.css", "/api/config", "/api/status", "/img/000000.png"):
        assert server.get(path, token=False)[0] == 403, path
        assert server.get(path + "?token=wrong-token-0123456789")[0] in (200,), path  # header token wins
        assert server.get(path + f"?token={TOKEN}", token=False)[0] == 200, path
    status, body = server.get("/img/000000.png?token=nope", token=False)
    assert status == 403 and b"token" in body
    status, page = server.get("/")
    assert TOKEN.encode() in page and b'<script src="/static/app.js?token=' in page
    assert server.post("/api/next", {"client": "x"})[0] == 200
    assert server.post("/api/release", {"client": "x"}) == (200, {"released": 4})


def test_image_paths_cannot_leave_the_folder(server: Server) -> None:
    assert _raw_get(server, "/img/000000.png") == 200
    assert _raw_get(server, "/img/sub/000007.png") == 200
    for path in (
        "/img/../../../etc/passwd",
        "/img/sub/../../outside/secret.png",
        "/img/%2e%2e/outside/secret.png",
        "/img/%2E%2E%2Foutside%2Fsecret.png",
        "/img/..%2f..%2f..%2fetc%2fpasswd",
        "/img//etc/passwd",
        "/img/%2Fetc%2Fpasswd",
        "/img/link-out.png",
        "/img/linked-dir/secret.png",
        "/img/./000000.png",
        "/img/000000.png%00.png",
        "/img/sub%5c..%5c000000.png",
    ):
        assert _raw_get(server, path) == 403, path
    assert _raw_get(server, "/img/%252e%252e/outside/secret.png") == 404  # double-encoded: just a strange name
    assert _raw_get(server, "/img/missing.png") == 404


def test_images_are_resized_on_the_server(server: Server) -> None:
    status, body = server.get("/img/big.jpg")
    assert status == 200
    assert Image.open(io.BytesIO(body)).size == (512, 256)


def test_suggestions_ranks_and_two_clients(server: Server, folder: Path) -> None:
    status, first = server.post("/api/next", {"client": "tab-1", "want": 3})
    assert status == 200
    status, second = server.post("/api/next", {"client": "tab-2", "want": 3})
    one = [i["image"] for i in first["items"]]
    two = [i["image"] for i in second["items"]]
    assert len(one) == 3 and len(two) == 3 and not set(one) & set(two)
    item = first["items"][0]
    suggestions = item["suggestions"]
    assert [s["rank"] for s in suggestions] == [1, 2, 3, 4, 5]
    assert all(0 <= s["score"] <= 1 for s in suggestions)
    assert [s["score"] for s in suggestions] == sorted((s["score"] for s in suggestions), reverse=True)
    # Answering another tab's image is refused; answering with the third suggestion records rank 3.
    status, refused = server.post(
        "/api/answer", {"client": "tab-2", "image": item["image"], "kind": "answer", "label": suggestions[0]["label"]}
    )
    assert status == 409 and "another tab" in refused["error"]
    status, saved = server.post(
        "/api/answer",
        {"client": "tab-1", "image": item["image"], "kind": "answer", "label": suggestions[2]["label"], "seconds": 1.5},
    )
    assert status == 200 and saved["event"]["rank"] == 3
    status, bad = server.post("/api/answer", {"client": "tab-1", "image": "../outside/secret.png", "kind": "none"})
    assert status == 409
    event = log_events(Path(server.info["labels_log"]))[-1]
    assert (event["image"], event["label"], event["rank"], event["seconds"]) == (
        item["image"],
        suggestions[2]["label"],
        3,
        1.5,
    )
    status, state = server.get("/api/status")
    assert b'"labelled":1' in state and b'"queue_done":1' in state and b'"in_progress":5' in state


def test_other_interfaces_need_an_explicit_option(runner, folder: Path, demo_split, tmp_path: Path) -> None:
    result = invoke(
        runner, "annotate", folder, "-t", demo_split["taxonomy"], "-o", tmp_path / "l.jsonl", "--host", "0.0.0.0"
    )
    assert result.exit_code == 2
    assert "--allow-remote" in result.stderr and "Traceback" not in result.stderr
    assert check_options(AnnotateOptions(host="0.0.0.0", allow_remote=True, token=TOKEN)) == TOKEN
    assert check_options(AnnotateOptions(host="::1")) != check_options(AnnotateOptions(host="127.0.0.1"))
    result = invoke(
        runner, "annotate", folder, "-t", demo_split["taxonomy"], "-o", tmp_path / "l.jsonl", "--token", "short"
    )
    assert result.exit_code == 2 and "--token must be" in result.stderr
    assert not (tmp_path / "l.jsonl").exists()


def test_remote_binding_warns_that_the_token_is_the_only_protection(folder: Path, demo_split, tmp_path: Path) -> None:
    srv = Server(folder, demo_split["taxonomy"], tmp_path / "l.jsonl", "--host", "0.0.0.0", "--allow-remote")
    try:
        assert srv.get("/api/config", token=False)[0] == 403
    finally:
        srv.stop()
    srv.log.seek(0)
    assert "the token is the only protection" in srv.log.read()
