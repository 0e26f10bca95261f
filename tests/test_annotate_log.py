"""The annotate labels log (durable events, undo, torn tails, one writer) and its queue with leases."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import invoke

from hspnet_cli.annotate.queue import WorkQueue, build_order
from hspnet_cli.annotate.store import LabelStore
from hspnet_cli.core.errors import UserError
from hspnet_cli.data import read_split_csv
from hspnet_cli.data.readers import detect_format, read_annotations
from hspnet_cli.sources.discover import PathList
from hspnet_cli.taxonomy import load_taxonomy, taxonomy_from_dict

TAX = taxonomy_from_dict(
    {
        "name": "t",
        "labels": ["cat", "dog", "car", "bus"],
        "groups": {"animal": ["cat", "dog"], "vehicle": ["car", "bus"]},
    }
)


def _store(tmp_path: Path) -> LabelStore:
    return LabelStore(tmp_path / "labels.jsonl", TAX, tmp_path)


def test_events_are_durable_lines_and_undo_is_an_event(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.record("answer", "a.jpg", label="cat", seconds=1.23456, rank=2, annotator="ann")
    store.record("none", "b.jpg", seconds=2)
    store.record("skip", "c.jpg")
    store.record("answer", "d.jpg", label="dog")
    undone = store.undo(4)
    assert undone["image"] == "d.jpg"
    store.record("answer", "d.jpg", label="bus", seconds=3)
    # Every line is on disk before record() returns: read the file while the store is still open.
    lines = [json.loads(line) for line in (tmp_path / "labels.jsonl").read_text().splitlines()]
    assert lines[0]["format"] == "hspnet-annotate" and lines[0]["labels"] == ["cat", "dog", "car", "bus"]
    assert [(e["seq"], e["event"]) for e in lines[1:]] == [
        (1, "answer"),
        (2, "none"),
        (3, "skip"),
        (4, "answer"),
        (5, "undo"),
        (6, "answer"),
    ]
    assert lines[1]["rank"] == 2 and lines[1]["seconds"] == 1.235 and lines[1]["annotator"] == "ann"
    assert lines[5]["undoes"] == 4
    status = store.status(10)
    assert status["labelled"] == 3 and status["skipped"] == 1 and status["labels_used"] == {"cat": 1, "bus": 1}
    assert status["median_seconds"] == 2
    with pytest.raises(UserError, match="already undone"):
        store.undo(4)
    with pytest.raises(UserError, match="not in taxonomy"):
        store.record("answer", "e.jpg", label="horse")
    store.close()


def test_one_writer_per_log_and_a_log_for_other_labels_is_refused(tmp_path: Path) -> None:
    store = _store(tmp_path)
    with pytest.raises(UserError, match="another hspnet annotate is writing"):
        _store(tmp_path)
    store.close()
    other = taxonomy_from_dict({"name": "o", "labels": ["x", "y"], "groups": {"g": ["x", "y"]}})
    with pytest.raises(UserError, match="written for other labels"):
        LabelStore(tmp_path / "labels.jsonl", other, tmp_path)


def test_restart_replays_and_drops_a_torn_last_line(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.record("answer", "a.jpg", label="cat")
    store.record("answer", "b.jpg", label="car")
    store.undo(2)
    store.close()
    log = tmp_path / "labels.jsonl"
    with open(log, "ab") as fh:
        fh.write(b'{"seq":4,"event":"answer","ima')  # a kill in the middle of a write
    again = _store(tmp_path)
    assert again.is_done("a.jpg") and not again.is_done("b.jpg")
    event = again.record("answer", "b.jpg", label="bus")
    assert event["seq"] == 4
    again.close()
    assert all(json.loads(line) for line in log.read_text().splitlines())  # the torn bytes are gone
    log.write_text(log.read_text().replace('"seq":2', '"seq":"x"'))
    with pytest.raises(UserError, match=r"labels.jsonl:3: event without a new increasing"):
        _store(tmp_path)


def test_split_reads_one_positive_per_image_and_everything_else_unknown(tmp_path: Path, runner) -> None:
    tax_file = tmp_path / "t.yaml"
    tax_file.write_text(TAX.to_yaml())
    store = _store(tmp_path)
    for i, label in enumerate(["cat", "dog", "car", "bus", "cat", "dog"]):
        store.record("answer", f"img{i}.jpg", label=label)
    store.record("none", "nothing.jpg")
    store.record("skip", "later.jpg")
    store.record("answer", "changed.jpg", label="cat")
    store.undo(store.state.last_seq)
    store.record("answer", "changed.jpg", label="car")
    store.close()
    log = tmp_path / "labels.jsonl"
    assert detect_format(log) == "annotate"
    labels, report = read_annotations(log, load_taxonomy(tax_file))
    assert "nothing.jpg" in labels.images and "later.jpg" not in labels.images
    assert set(np.unique(labels.matrix)) <= {0, 1}  # never a negative
    row = labels.images.index("changed.jpg")
    assert labels.matrix[row].tolist() == [0, 0, 1, 0]
    assert any("1 'no label fits'" in note for note in report.notes)

    result = invoke(runner, "split", log, "-t", tax_file, "-o", tmp_path / "split", "--val-fraction", "0")
    assert result.exit_code == 0, result.output
    train = read_split_csv(tmp_path / "split" / "train.csv", load_taxonomy(tax_file))
    assert len(train.images) == 7 and "nothing.jpg" not in train.images
    assert (train.positives_per_image() == 1).all() and (train.matrix >= 0).all()
    truth = {f"img{i}.jpg": label for i, label in enumerate(["cat", "dog", "car", "bus", "cat", "dog"])}
    truth["changed.jpg"] = "car"
    for image, row in zip(train.images, train.matrix):
        assert TAX.label_names[int(np.argmax(row))] == truth[image]


def test_two_clients_never_share_an_image_and_stale_leases_expire() -> None:
    now = [0.0]
    done: set[str] = {"i01.jpg"}
    queue = WorkQueue(
        PathList(f"i{i:02d}.jpg" for i in range(10)), done.__contains__, lease_seconds=30, clock=lambda: now[0]
    )
    a = [l.image for l in queue.lease("A", 3)]
    b = [l.image for l in queue.lease("B", 3)]
    assert a == ["i00.jpg", "i02.jpg", "i03.jpg"] and b == ["i04.jpg", "i05.jpg", "i06.jpg"]
    assert [l.image for l in queue.lease("A", 3)] == a  # asking again renews, never re-deals
    done.add("i00.jpg")
    queue.finish("A", "i00.jpg")
    assert [l.image for l in queue.lease("A", 3)] == ["i02.jpg", "i03.jpg", "i07.jpg"]
    now[0] = 20.0
    queue.lease("B", 3)  # B renews; A goes silent
    now[0] = 45.0
    assert queue.owner("i02.jpg") is None and queue.owner("i04.jpg") == "B"
    # A's images return to the front of the queue for the next client.
    assert [l.image for l in queue.lease("C", 2)] == ["i02.jpg", "i03.jpg"]
    assert queue.release("B") == 3
    assert [l.image for l in queue.lease("D", 1)] == ["i04.jpg"]
    with pytest.raises(UserError, match="another tab"):
        queue.grant("A", "i04.jpg")


def test_order_list_first_then_the_rest(tmp_path: Path) -> None:
    for name in ("a.png", "b.png", "c.png", "sub/d.png"):
        (tmp_path / "img" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "img" / name).write_bytes(b"x")
    (tmp_path / "order.txt").write_text("# from hspnet select\nsub/d.png\n\nb.png\n")
    assert list(build_order(tmp_path / "img")) == ["a.png", "b.png", "c.png", "sub/d.png"]
    assert list(build_order(tmp_path / "img", tmp_path / "order.txt")) == ["sub/d.png", "b.png", "a.png", "c.png"]
    assert list(build_order(tmp_path / "img", tmp_path / "order.txt", only_listed=True)) == ["sub/d.png", "b.png"]
    (tmp_path / "bad.txt").write_text("../x.png\n")
    with pytest.raises(UserError, match=r"bad.txt:1: '../x.png' is not inside"):
        build_order(tmp_path / "img", tmp_path / "bad.txt")


def test_out_that_is_not_a_labels_log_is_refused_untouched(tmp_path: Path, runner) -> None:
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.png").write_bytes(b"x")
    tax_file = tmp_path / "t.yaml"
    tax_file.write_text(TAX.to_yaml())
    other = tmp_path / "annotations.csv"
    other.write_text("image,labels\na.png,cat\n")
    result = invoke(runner, "annotate", tmp_path / "img", "-t", tax_file, "-o", other)
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f'error: {other}:1: not an hspnet annotate labels log (no "hspnet-annotate" header); choose another --out file'
    ]
    assert other.read_text() == "image,labels\na.png,cat\n" and not (tmp_path / "annotations.csv.lock").exists()
    result = invoke(runner, "annotate", tmp_path / "missing", "-t", tax_file, "-o", tmp_path / "l.jsonl")
    assert result.exit_code == 2 and "images folder not found" in result.stderr
    assert not (tmp_path / "l.jsonl").exists()


def test_a_server_without_suggester_does_not_import_torch() -> None:
    """Without a suggester the server holds paths and a few previews (~60 MiB), not torch (~500 MiB)."""
    import subprocess
    import sys

    code = (
        "import sys; import hspnet_cli.annotate.run, hspnet_cli.annotate.server, hspnet_cli.commands.annotate_cmd;"
        "print(','.join(m for m in ('torch', 'open_clip', 'faiss') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == ""
