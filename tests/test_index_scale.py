"""hspnet index build over shard sets (.npy, Parquet, tags outputs): pieces, on-disk lists, keys on
disk, resume after a kill, and bad shards named in one line."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from index_helpers import MODEL, clustered, run, write_tags

from hspnet_cli.core.errors import UserError
from hspnet_cli.index.scale_build import build_sharded, work_dir
from hspnet_cli.index.search import run_search
from hspnet_cli.index.store import load_index

EXACT = ["--factory", "IVF16,Flat", "--nprobe", "16"]  # every list visited: exact answers


def _npy_set(folder: Path, vecs: np.ndarray, cuts: list[int], keys_for: int | None = None) -> list[str]:
    """Write vecs as .npy shards split at ``cuts`` (float16 and float32 alternating); the keys every row gets."""
    folder.mkdir(parents=True, exist_ok=True)
    keys: list[str] = []
    for s, (a, b) in enumerate(zip([0, *cuts], [*cuts, len(vecs)])):
        path = folder / f"emb-{s:03d}.npy"
        np.save(path, vecs[a:b].astype(np.float16 if s % 2 else np.float32))
        if s == keys_for:
            names = [f"photos/{s}/img {r}.jpg" for r in range(b - a)]
            path.with_suffix(".keys.txt").write_text("".join(n + "\n" for n in names), encoding="utf-8")
            keys += names
        else:
            keys += [f"{path.name}#{r}" for r in range(b - a)]
    return keys


def _parquet_set(
    folder: Path,
    vecs: np.ndarray,
    cuts: list[int],
    dtype: str = "float16",
    key=lambda i: f"s3://bucket/img/{i:05d}.jpg",
) -> list[str]:
    """Parquet part files in the tagger's schema (row groups of 100) and a manifest."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    keys = [key(i) for i in range(len(vecs))]
    value = pa.float16() if dtype == "float16" else pa.float32()
    for s, (a, b) in enumerate(zip([0, *cuts], [*cuts, len(vecs)])):
        flat = pa.array(vecs[a:b].astype(dtype).ravel(), type=value)
        table = pa.table(
            {
                "key": pa.array(keys[a:b], pa.string()),
                "tags": pa.array([["dog"]] * (b - a), pa.list_(pa.string())),
                "scores": pa.array([[0.9]] * (b - a), pa.list_(pa.float32())),
                "probs": pa.array([[0.9, 0.1]] * (b - a), pa.list_(pa.float32())),
                "embedding": pa.FixedSizeListArray.from_arrays(flat, vecs.shape[1]),
            }
        )
        pq.write_table(table, folder / f"part-{s:06d}.parquet", row_group_size=100)
    (folder / "manifest.json").write_text(json.dumps({"model": {"scorer": MODEL}, "embedding": {"dim": vecs.shape[1]}}))
    return keys


def _exact_keys(vecs: np.ndarray, keys: list[str], q: int, k: int) -> list[str]:
    unit = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
    order = np.argsort(-(unit @ unit[q]), kind="stable")
    return [keys[i] for i in order[: k + 1] if i != q][:k]


@pytest.mark.parametrize("layout", ["ondisk", "memory"])
def test_npy_shards_search_by_key(tmp_path: Path, layout: str) -> None:
    vecs = clustered(2400, dim=32, seed=1)
    keys = _npy_set(tmp_path / "shards", vecs, [700, 1500], keys_for=1)
    out = tmp_path / "ix" / "big.faiss"
    result = run(
        "index", "build", tmp_path / "shards", "--out", out, *EXACT, "--layout", layout, "--piece-rows", "500", "--json"
    )
    assert result.exit_code == 0, result.output
    facts = json.loads(result.stdout)  # stdout is pure JSON (faiss's own prints go to stderr)
    assert facts["count"] == 2400 and facts["layout"] == layout and facts["pieces"] == 5
    assert facts["recall_at_10"] == 1.0 and not work_dir(out).exists()
    idx = load_index(out)
    assert len(idx.paths) == 2400 and idx.paths[700] == "photos/1/img 0.jpg" and idx.paths[1500] == "emb-002.npy#0"
    for q in (3, 700, 1999):  # one query in each shard
        _, hits, _ = run_search(out, like=keys[q], k=5)
        assert [h.path for h in hits] == _exact_keys(vecs, keys, q, 5)
    result = run("search", out, "--like", "photos/1/img 5.jpg", "-k", "3", "--json")
    assert result.exit_code == 0, result.output
    assert [h["path"] for h in json.loads(result.stdout)["hits"]] == _exact_keys(vecs, keys, 705, 3)


def test_ondisk_layout_round_trip_moved_folder(tmp_path: Path) -> None:
    vecs = clustered(1200, dim=16, seed=2)
    keys = _npy_set(tmp_path / "s", vecs, [600])
    facts = build_sharded(
        [tmp_path / "s"],
        tmp_path / "a" / "x.faiss",
        factory="IVF8,PQ8x4",
        nprobe=8,
        layout="ondisk",
        piece_rows=400,
        recall_queries=200,
    )
    data = tmp_path / "a" / facts["ivfdata_file"]
    assert facts["layout"] == "ondisk" and data.stat().st_size > 1200 * 4  # codes live in the ivfdata file
    assert facts["index_type"] == "IndexIVFPQ" and 0.2 < facts["recall_at_10"] <= 1.0
    shutil.move(tmp_path / "a", tmp_path / "b")  # the folder moves as a whole
    os.chdir(tmp_path)  # another working dir
    idx = load_index(tmp_path / "b" / "x.faiss")
    assert type(idx.index.invlists).__name__ == "OnDiskInvertedLists" or idx.index.ntotal == 1200
    _, hits, _ = run_search(tmp_path / "b" / "x.faiss", like=keys[10], k=5)
    assert len(hits) == 5 and keys[10] not in [h.path for h in hits]
    # PQ codes are approximate: a vector's own code is among its first hits
    unit = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
    _, found = idx.index.search(unit[:50].astype(np.float32), 10)  # 4-byte codes: top 10 (chance: 0.8%)
    assert sum(i in row for i, row in enumerate(found.tolist())) >= 40
    shutil.rmtree(tmp_path / "s")  # sources gone: --like falls back to the stored codes
    _, hits, _ = run_search(tmp_path / "b" / "x.faiss", like=keys[10], k=5)
    assert len(hits) == 5 and keys[10] not in [h.path for h in hits]
    (tmp_path / "b" / data.name).unlink()
    with pytest.raises(UserError, match="on-disk lists of index x.faiss are missing"):
        load_index(tmp_path / "b" / "x.faiss")


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_parquet_folder_search_by_key_and_copy_refused(tmp_path: Path, dtype: str) -> None:
    vecs = clustered(900, dim=24, seed=3)
    keys = _parquet_set(tmp_path / "pq", vecs, [350, 600], dtype=dtype)
    facts = build_sharded(
        [tmp_path / "pq"],
        tmp_path / "pq.faiss",
        factory="IVF16,Flat",
        nprobe=16,
        layout="ondisk",
        piece_rows=300,
        recall_queries=100,
    )
    assert facts["model"] == MODEL and facts["count"] == 900 and facts["shard_kind"] == "parquet"
    for q in (0, 420, 899):
        _, hits, _ = run_search(tmp_path / "pq.faiss", like=keys[q], k=4)
        assert [h.path for h in hits] == _exact_keys(vecs, keys, q, 4)
    # Its keys are object URLs: --copy-to fetches them from storage, and here there is none to
    # reach, so it stops with one line naming the object and copies nothing.
    result = run("search", tmp_path / "pq.faiss", "--like", keys[5], "--copy-to", tmp_path / "copies")
    assert result.exit_code == 2 and "s3://bucket/img/" in result.stderr and len(result.stderr.splitlines()) == 1
    assert not list((tmp_path / "copies").glob("*")) if (tmp_path / "copies").exists() else True


def test_tags_outputs_as_a_shard_set(tmp_path: Path) -> None:
    vecs = clustered(600, dim=16, seed=4)
    a = write_tags(tmp_path / "a" / "tags.csv", vecs[:250], images_dir=tmp_path / "imgs" / "a")
    b = write_tags(tmp_path / "b" / "tags.csv", vecs[250:], images_dir=tmp_path / "imgs" / "b")
    result = run("index", "build", a, b, "--out", tmp_path / "all.faiss", *EXACT, "--json")
    assert result.exit_code == 0, result.output
    idx = load_index(tmp_path / "all.faiss")
    assert idx.meta["images_dir"] == str(tmp_path / "imgs") and idx.meta["model"] == MODEL
    assert idx.paths[0] == "a/img/00000.jpg" and idx.paths[250] == "b/img/00000.jpg"
    keys = list(idx.paths)
    _, hits, _ = run_search(tmp_path / "all.faiss", like="b/img/00007.jpg", k=3)
    assert [h.path for h in hits] == _exact_keys(vecs, keys, 257, 3)
    result = run("index", "add", tmp_path / "all.faiss", a)
    assert result.exit_code == 2 and "built from a shard set" in result.stderr
    facts = build_sharded([a, b], tmp_path / "auto.faiss")  # the size rule, with lists below 100k
    assert facts["factory"] == "IVF98,Flat" and facts["recall_at_10"] >= 0.9 and facts["recall_queries"] == 600


def test_resume_after_a_real_kill(tmp_path: Path) -> None:
    vecs = clustered(12000, dim=16, seed=5)
    keys = _npy_set(tmp_path / "s", vecs, [4000, 8000])
    out = tmp_path / "k.faiss"
    cmd = [
        sys.executable,
        "-m",
        "hspnet_cli",
        "index",
        "build",
        str(tmp_path / "s"),
        "--out",
        str(out),
        *EXACT,
        "--piece-rows",
        "60",
        "--layout",
        "ondisk",
        "--json",
    ]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    marker = work_dir(out) / "piece-000002.done"
    deadline = time.time() + 120
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL, "the build ended before it could be killed (200 pieces)"
    done = len(list(work_dir(out).glob("*.done")))
    assert 3 <= done < 200 and not out.exists()
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    facts = json.loads(result.stdout)
    assert facts["pieces_resumed"] == done and facts["pieces_added"] == 200 - done and facts["count"] == 12000
    for q in (1, 4100, 11999):
        _, hits, _ = run_search(out, like=keys[q], k=5)
        assert [h.path for h in hits] == _exact_keys(vecs, keys, q, 5)


def test_interrupted_build_of_other_shards_is_refused_unless_restart(tmp_path: Path, monkeypatch) -> None:
    vecs = clustered(900, dim=16, seed=6)
    _npy_set(tmp_path / "s", vecs, [450])
    import hspnet_cli.index.scale_build as sb

    real = sb.write_piece_keys
    calls = []

    def dies_on_third(path, names):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt  # a simulated kill in the middle of the add phase
        return real(path, names)

    monkeypatch.setattr(sb, "write_piece_keys", dies_on_third)
    with pytest.raises(KeyboardInterrupt):
        build_sharded([tmp_path / "s"], tmp_path / "r.faiss", factory="IVF8,Flat", nprobe=8, piece_rows=200)
    monkeypatch.setattr(sb, "write_piece_keys", real)
    with pytest.raises(UserError, match="--restart"):
        build_sharded(
            [tmp_path / "s" / "emb-000.npy"], tmp_path / "r.faiss", factory="IVF8,Flat", nprobe=8, piece_rows=200
        )
    facts = build_sharded([tmp_path / "s"], tmp_path / "r.faiss", factory="IVF8,Flat", nprobe=8, piece_rows=200)
    assert facts["pieces_resumed"] == 2 and facts["count"] == 900 and facts["recall_at_10"] == 1.0


def test_bad_shards_are_named_in_one_line(tmp_path: Path) -> None:
    _npy_set(tmp_path / "mixed", clustered(300, dim=16), [])
    np.save(tmp_path / "mixed" / "emb-009.npy", clustered(50, dim=8).astype(np.float16))
    result = run("index", "build", tmp_path / "mixed", *EXACT)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "emb-009.npy: vectors have dim 8 but" in result.stderr and len(result.stderr.strip().splitlines()) == 1

    _npy_set(tmp_path / "torn", clustered(300, dim=16), [150])
    torn = tmp_path / "torn" / "emb-001.npy"
    torn.write_bytes(torn.read_bytes()[:-100])
    result = run("index", "build", tmp_path / "torn", *EXACT)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"{torn}: not a readable .npy array" in result.stderr and len(result.stderr.strip().splitlines()) == 1

    _parquet_set(tmp_path / "pq", clustered(300, dim=16), [150])
    part = tmp_path / "pq" / "part-000001.parquet"
    part.write_bytes(part.read_bytes()[:-30])
    result = run("index", "build", tmp_path / "pq", *EXACT)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"{part}: not a readable Parquet file" in result.stderr and len(result.stderr.strip().splitlines()) == 1

    _parquet_set(tmp_path / "unfinished", clustered(300, dim=16), [150])
    (tmp_path / "unfinished" / "manifest.json").write_text(json.dumps({"complete": False}))
    result = run("index", "build", tmp_path / "unfinished", *EXACT)
    assert result.exit_code == 2 and "manifest.json: the tagging run is unfinished" in result.stderr

    result = run("index", "build", tmp_path / "nothing" / "*.npy")
    assert result.exit_code == 2 and "matches no file" in result.stderr


def test_pieces_shared_by_workers_then_assembled(tmp_path: Path) -> None:
    vecs = clustered(1000, dim=16, seed=7)
    keys = _npy_set(tmp_path / "s", vecs, [500])
    out = tmp_path / "w.faiss"
    result = run("index", "build", tmp_path / "s", "--out", out, *EXACT, "--piece-rows", "150", "--pieces", "0/2")
    assert result.exit_code == 2 and "--train-only first" in result.stderr
    result = run(
        "index", "build", tmp_path / "s", "--out", out, *EXACT, "--piece-rows", "150", "--train-only", "--json"
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["pieces"] == 7 and not out.exists()
    for worker, added in (("1/2", 3), ("0/2", 4)):  # side by side on two machines, in turn here
        result = run(
            "index", "build", tmp_path / "s", "--out", out, *EXACT, "--piece-rows", "150", "--pieces", worker, "--json"
        )
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["pieces_added"] == added
    facts = build_sharded([tmp_path / "s"], out, factory="IVF16,Flat", nprobe=16, piece_rows=150)
    assert facts["pieces_added"] == 0 and facts["pieces_resumed"] == 7 and facts["count"] == 1000
    _, hits, _ = run_search(out, like=keys[600], k=5)
    assert [h.path for h in hits] == _exact_keys(vecs, keys, 600, 5)
