"""The annotate server against a hostile client and a hostile folder (issue 18, items 4-9), over
real HTTP to a real ``hspnet annotate`` process: names that are not UTF-8, answers for images
the tab does not hold, NaN and huge numbers, deep nesting, big bodies, wrong types, images that
cannot be shown, and a labels log whose last line lost its newline."""

from __future__ import annotations

import http.client
import json
import os
import time
from pathlib import Path

import pytest
from annotate_helpers import Server, log_events
from conftest import invoke
from PIL import Image

TOKEN = "hostile-token-0123456789abcdef"
NOT_UTF8 = b"bad\xff.png"


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six images, one not UTF-8, one with a line break, a link out of the folder, a dangling link."""
    root = tmp_path_factory.mktemp("hostile-annotate")
    images = root / "images"
    images.mkdir()
    for i in range(6):
        Image.new("RGB", (20, 20), (40 * i, 80, 120)).save(images / f"{i}.png")
    Image.new("RGB", (20, 20)).save(os.path.join(os.fsencode(images), NOT_UTF8), format="PNG")
    Image.new("RGB", (20, 20)).save(os.path.join(os.fsencode(images), b"new\nline.png"), format="PNG")
    Image.new("RGB", (20, 20)).save(images / "back\\slash.png")
    outside = root / "outside"
    outside.mkdir()
    Image.new("RGB", (10, 10)).save(outside / "secret.png")
    (images / "link-out.png").symlink_to(outside / "secret.png")
    (images / "dangling.png").symlink_to(root / "nowhere.png")
    return images


@pytest.fixture(scope="module")
def server(folder: Path, demo_split, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("hostile-log") / "labels.jsonl"
    srv = Server(folder, demo_split["taxonomy"], out, "--lease-seconds", "5", token=TOKEN)
    yield srv
    assert srv.stop() == 0
    srv.log.seek(0)
    assert "Traceback" not in srv.log.read()  # nothing reached the 500 path


def raw_post(srv: Server, path: str, body: bytes, content_type: str = "application/json") -> tuple[int, dict]:
    """POST bytes as they are (no client-side JSON encoding): NaN, 1e999, deep nesting..."""
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
    conn.request("POST", path, body=body, headers={"X-HSPNet-Token": TOKEN, "Content-Type": content_type})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    try:
        return response.status, json.loads(data or b"{}")
    except ValueError:
        return response.status, {"raw": data.decode("latin-1")}


def test_names_that_are_not_utf8_are_left_out_with_a_count(server: Server) -> None:
    status, config = server.get("/api/config")
    config = json.loads(config)
    assert status == 200 and config["total"] == 8  # 6 images + the two links
    assert config["left_out"] == {
        "(name that is not UTF-8)": 1,
        "(name with a backslash)": 1,
        "(name with a line break, tab or control character)": 1,
    }
    status, got = server.post("/api/next", {"client": "utf8-tab", "want": 16})
    assert status == 200 and len(got["items"]) == 8
    assert all(isinstance(i["image"], str) and "bad" not in i["image"] for i in got["items"])
    assert server.post("/api/release", {"client": "utf8-tab"}) == (200, {"released": 8})


def test_answers_only_for_images_leased_to_that_tab(server: Server) -> None:
    status, a = server.post("/api/next", {"client": "tab-a", "want": 1})
    image = a["items"][0]["image"]
    # Four clients posting for an image leased to nobody, and one for an image another tab holds.
    for client in ("x1", "x2", "x3", "x4"):
        status, refused = server.post("/api/answer", {"client": client, "image": "5.png", "kind": "none"})
        assert status == 409 and "not leased to this tab" in refused["error"], client
    status, refused = server.post("/api/answer", {"client": "tab-b", "image": image, "kind": "none"})
    assert status == 409 and "another tab" in refused["error"]
    # A's lease expires; B is handed the image and answers it; A's late answer is refused.
    time.sleep(5.5)
    status, b = server.post("/api/next", {"client": "tab-b", "want": 1})
    assert b["items"][0]["image"] == image
    assert server.post("/api/answer", {"client": "tab-b", "image": image, "kind": "none", "seconds": 2})[0] == 200
    status, late = server.post("/api/answer", {"client": "tab-a", "image": image, "kind": "skip"})
    assert status == 409
    events = [e for e in log_events(Path(server.info["labels_log"])) if e.get("image") == image]
    assert [(e["event"], e["client"]) for e in events] == [("none", "tab-b")]
    server.post("/api/release", {"client": "tab-b"})


@pytest.mark.parametrize(
    "body, status",
    [
        (b'{"client": "v", "image": "0.png", "kind": "none", "seconds": NaN}', 400),
        (b'{"client": "v", "image": "0.png", "kind": "none", "seconds": Infinity}', 400),
        (b'{"client": "v", "image": "0.png", "kind": "none", "seconds": 1e999}', 400),
        (b'{"client": "v", "image": "0.png", "kind": "none", "seconds": ' + b"9" * 400 + b"}", 400),
        (b'{"client": "v", "image": "0.png", "kind": "none", "seconds": -1}', 400),
        (b'{"client": "v", "image": "0.png", "kind": "none", "seconds": "3"}', 400),
        (b'{"client": "v", "image": "0.png", "kind": "none", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}", 400),
        (b'{"client": "' + b"c" * (3 << 20) + b'", "image": "0.png", "kind": "none"}', 413),
        (b'{"client": "' + b"c" * 200 + b'", "image": "0.png", "kind": "none"}', 400),
        (b'{"client": "v", "image": 7, "kind": "none"}', 400),
        (b'{"client": "v", "image": "0.png", "kind": ["none"]}', 400),
        (b'{"client": "v", "image": "0.png", "kind": "maybe"}', 400),
        (b'{"client": "v", "image": "0.png", "kind": "answer", "label": 3}', 400),
        (b'{"client": "v", "image": "0.png", "kind": "none", "annotator": {"a": 1}}', 400),
        (b'{"client": 5, "image": "0.png", "kind": "none"}', 400),
        (b'["client", "v"]', 400),
        (b'"just text"', 400),
        (b'{"client": "v", "image": "0.png",', 400),
        (b"\xff\xfe{}", 400),
    ],
)
def test_every_field_is_checked_and_nothing_is_a_500(server: Server, body: bytes, status: int) -> None:
    before = Path(server.info["labels_log"]).read_bytes()
    got, answer = raw_post(server, "/api/answer", body)
    assert got == status, answer
    assert "error" in answer and "\n" not in answer["error"]
    assert Path(server.info["labels_log"]).read_bytes() == before  # nothing was written
    assert server.get("/api/status")[0] == 200


@pytest.mark.parametrize(
    "path, body",
    [
        ("/api/next", b'{"client": "v", "want": "3"}'),
        ("/api/next", b'{"client": "v", "want": 1e999}'),
        ("/api/next", b'{"client": "v", "want": 99999999999999999999999}'),
        ("/api/next", b'{"want": 2}'),
        ("/api/undo", b'{"client": "v", "seq": "1"}'),
        ("/api/undo", b'{"client": "v", "seq": 1.5}'),
        ("/api/release", b'{"client": ["v"]}'),
        ("/api/release", b"[]"),
    ],
)
def test_other_routes_refuse_wrong_types_with_400(server: Server, path: str, body: bytes) -> None:
    got, answer = raw_post(server, path, body)
    assert got == 400 and "error" in answer, answer


def test_images_that_cannot_be_shown_can_be_skipped_and_the_queue_finishes(server: Server) -> None:
    status, got = server.post("/api/next", {"client": "skipper", "want": 16})
    items = got["items"]
    broken = [i for i in items if i["error"]]
    assert {i["image"] for i in broken} == {"link-out.png", "dangling.png"}
    for item in broken:  # answering what cannot be seen is refused; skipping it is not
        assert server.post("/api/answer", {"client": "skipper", "image": item["image"], "kind": "none"})[0] == 409
        assert server.post("/api/answer", {"client": "skipper", "image": item["image"], "kind": "skip"})[0] == 200
    for item in items:
        if not item["error"]:
            assert server.post("/api/answer", {"client": "skipper", "image": item["image"], "kind": "none"})[0] == 200
    status, rest = server.post("/api/next", {"client": "skipper", "want": 16})
    assert rest["items"] == [] and rest["remaining"] == 0


def test_a_last_line_without_its_newline_is_ended_before_the_next_answer(runner, demo_split, tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        Image.new("RGB", (20, 20), (60 * i, 0, 0)).save(images / f"{i}.png")
    log = tmp_path / "labels.jsonl"
    label = None
    for round_ in range(2):
        srv = Server(images, demo_split["taxonomy"], log, token=TOKEN)
        try:
            if label is None:
                label = json.loads(srv.get("/api/config")[1])["labels"][0]
            status, got = srv.post("/api/next", {"client": f"t{round_}", "want": 1})
            image = got["items"][0]["image"]
            assert (
                srv.post("/api/answer", {"client": f"t{round_}", "image": image, "kind": "answer", "label": label})[0]
                == 200
            )
        finally:
            assert srv.stop() == 0
        data = log.read_bytes()
        assert data.endswith(b"\n")
        log.write_bytes(data[:-1])  # an editor drops the final newline
    events = log_events(log)
    assert [e["seq"] for e in events if "seq" in e] == [1, 2]  # two answers, two lines, none glued
    result = invoke(runner, "split", log, "-t", demo_split["taxonomy"], "-o", tmp_path / "split")
    assert result.exit_code == 0, result.output
    # The store itself, on a real file: a whole event without its newline, then a torn one.
    from hspnet_cli.annotate.store import LabelStore
    from hspnet_cli.data.readers.annotate_log import replay_log
    from hspnet_cli.taxonomy import load_taxonomy

    log.write_bytes(log.read_bytes() + b'\n{"seq": 3, "event": "skip", "ima')  # a kill mid-write
    store = LabelStore(log, load_taxonomy(demo_split["taxonomy"]), images)
    store.record("answer", "2.png", label=label)
    store.close()
    state = replay_log(log)
    assert state.torn_tail is None and state.last_seq == 3 and state.current["2.png"]["label"] == label


def test_a_write_cut_by_a_full_disk_leaves_no_half_line(demo_split, tmp_path: Path, monkeypatch) -> None:
    """The page hears the error and the log keeps no half event for the next one to be glued onto."""
    import errno

    from hspnet_cli.annotate import store as store_module
    from hspnet_cli.annotate.store import LabelStore
    from hspnet_cli.data.readers.annotate_log import replay_log
    from hspnet_cli.taxonomy import load_taxonomy

    images = tmp_path / "images"
    images.mkdir()
    store = LabelStore(tmp_path / "labels.jsonl", load_taxonomy(demo_split["taxonomy"]), images)
    label = store.taxonomy.label_names[0]
    store.record("answer", "a.png", label=label)
    real_write = os.write

    def half_then_full(fd: int, data) -> int:  # noqa: ANN001 - os.write's signature
        if len(data) > 10:
            real_write(fd, bytes(data[:10]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store_module.os, "write", half_then_full)
    with pytest.raises(OSError):
        store.record("answer", "b.png", label=label)
    monkeypatch.setattr(store_module.os, "write", real_write)
    assert (tmp_path / "labels.jsonl").read_bytes().endswith(b"\n")
    store.record("answer", "c.png", label=label)
    store.close()
    state = replay_log(tmp_path / "labels.jsonl")
    assert sorted(state.current) == ["a.png", "c.png"] and state.torn_tail is None
