"""``hspnet tag`` end to end: aligned outputs, failures, resume after a crash, options, formats, CLI."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from test_tag_decode import huge_png_header

from hspnet_cli.core.errors import UserError
from hspnet_cli.tagging.decode import open_rgb
from hspnet_cli.tagging.run import tag_images
from hspnet_cli.tagsfile.writer import TagWriter

GOOD = 14


@pytest.fixture(scope="module")
def scorer(demo_split):
    from hspnet_cli.scoring.scorer import zero_shot
    from hspnet_cli.taxonomy import load_taxonomy

    return zero_shot(load_taxonomy(demo_split["taxonomy"]), "hspnet-tiny", None)


@pytest.fixture
def folder(demo_split, tmp_path: Path) -> Path:
    """14 good images (nested, one name in two folders, mixed-case extension) and 4 bad files."""
    src = sorted(demo_split["images"].glob("*.png"))[:GOOD]
    root = tmp_path / "imgs"
    for i, p in enumerate(src):
        dest = root / ("sub" if i % 3 == 0 else "other" if i % 3 == 1 else ".") / p.name
        if i == 13:
            dest = root / "other" / src[0].name.replace(".png", ".PNG")  # same name as sub/<first>
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(p, dest)
    (root / "junk.jpg").write_bytes(b"\x00not an image" * 50)
    (root / "empty.png").write_bytes(b"")
    (root / "sub" / "bomb.png").write_bytes(huge_png_header())
    (root / "cut.png").write_bytes(src[1].read_bytes()[:200])
    return root


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def files(out: Path) -> dict[str, bytes]:
    stem = out.with_suffix("")
    return {n: Path(f"{stem}{n}").read_bytes() if n else out.read_bytes() for n in ("", ".emb.f32", ".failed.csv")}


def test_outputs_aligned_with_embeddings_and_failures_listed(scorer, folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "o" / "tags.csv"
    summary = tag_images(folder, out, scorer, batch_size=4, workers=0)
    assert (summary.items, summary.rows, summary.failed, summary.exit_code) == (GOOD + 4, GOOD, 4, 1)
    assert not (tmp_path / "o" / "tags.progress.json").exists()
    table = rows(out)
    keys = [r["path"] for r in table]
    assert len(keys) == GOOD == len(set(keys)) and keys == sorted(keys)
    assert any(k.startswith("other/") and k.endswith(".PNG") for k in keys)
    failed = {r["path"]: r["error"] for r in rows(tmp_path / "o" / "tags.failed.csv")}
    assert set(failed) == {"junk.jpg", "empty.png", "sub/bomb.png", "cut.png"}
    assert "too many pixels" in failed["sub/bomb.png"] and "0 bytes" in failed["empty.png"]
    emb = np.fromfile(tmp_path / "o" / "tags.emb.f32", dtype="<f4").reshape(len(keys), -1)
    expect = scorer.embed(torch.stack([scorer.transform(open_rgb(folder / k)) for k in keys]))
    np.testing.assert_allclose(emb, expect.numpy(), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    probs = torch.sigmoid(scorer.scores_from_embeddings(expect)).numpy()
    group_of = scorer.taxonomy.group_of()
    names = scorer.taxonomy.label_names
    for r, p in zip(table, probs):
        tags = r["tags"].split(";") if r["tags"] else []
        want = [names[i] for i in np.argsort(-p, kind="stable") if p[i] >= 0.5]
        assert tags == want
        assert r["scores"] == ";".join(f"{p[names.index(t)]:.4g}" for t in tags)
        assert set(r["groups"].split(";") if tags else []) == {group_of[t] for t in tags}
    manifest = json.loads((tmp_path / "o" / "tags.manifest.json").read_text())
    assert manifest["complete"] and manifest["counts"] == {"items": GOOD + 4, "rows": GOOD, "failed": 4}
    assert manifest["embedding"]["dim"] == emb.shape[1] and manifest["labels"] == names
    assert manifest["thresholds"] == [0.5] * len(names) and manifest["package_version"]
    # A finished run rerun does nothing.
    before = files(out)
    again = tag_images(folder, out, scorer, batch_size=4)
    assert again.already_complete and again.processed == 0 and again.failed == 4 and files(out) == before


def test_workers_give_identical_files(scorer, folder: Path, tmp_path: Path) -> None:
    a = tag_images(folder, tmp_path / "a.csv", scorer, batch_size=5, workers=0)
    b = tag_images(folder, tmp_path / "b.csv", scorer, batch_size=5, workers=2)
    assert (a.rows, a.failed) == (b.rows, b.failed)
    fa, fb = files(tmp_path / "a.csv"), files(tmp_path / "b.csv")
    assert fa[""] == fb[""] and fa[".failed.csv"] == fb[".failed.csv"]
    np.testing.assert_allclose(np.frombuffer(fa[".emb.f32"], "<f4"), np.frombuffer(fb[".emb.f32"], "<f4"), atol=1e-6)


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_resume_after_crash_matches_uninterrupted_run(
    scorer, folder: Path, tmp_path: Path, monkeypatch, fmt: str
) -> None:
    ext = "." + fmt
    ref = tmp_path / f"ref{ext}"
    tag_images(folder, ref, scorer, batch_size=3, fmt=fmt)
    out = tmp_path / f"run{ext}"
    real = TagWriter.write_batch
    calls = {"n": 0}

    def crashing(self, keys, probs, emb, failures, items):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 4:  # die half-way through writing batch 4: a torn tail, no progress record
            self._files["tags"].write(b"half,a row")
            self._files["emb"].write(b"\x01\x02\x03")
            self._files["failed"].write(b"x")
            for fh in self._files.values():
                fh.flush()
            raise KeyboardInterrupt
        return real(self, keys, probs, emb, failures, items)

    monkeypatch.setattr(TagWriter, "write_batch", crashing)
    with pytest.raises(KeyboardInterrupt):
        tag_images(folder, out, scorer, batch_size=3, fmt=fmt)
    progress = json.loads(out.with_suffix(".progress.json").read_text())
    assert progress["items_done"] == 9
    monkeypatch.setattr(TagWriter, "write_batch", real)
    summary = tag_images(folder, out, scorer, batch_size=3, fmt=fmt)
    assert summary.resumed_from == 9 and summary.processed == GOOD + 4 - 9
    assert (summary.rows, summary.failed) == (GOOD, 4)
    assert files(out) == files(ref)  # no duplicates, no gaps, byte for byte
    if fmt == "jsonl":
        lines = [json.loads(line) for line in out.read_text().splitlines()]
        assert len(lines) == GOOD and all(len(r["probs"]) == scorer.taxonomy.num_labels for r in lines)
        for r in lines:
            assert r["scores"] == sorted(r["scores"], reverse=True)
            assert set(r["tags"]) == {n for n, p in zip(scorer.taxonomy.label_names, r["probs"]) if p >= 0.5}


def test_other_options_refused_unless_overwrite(scorer, folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "tags.csv"
    tag_images(folder, out, scorer, batch_size=8)
    with pytest.raises(UserError, match=r"other settings \(fingerprint|top_k changed"):
        tag_images(folder, out, scorer, batch_size=8, top_k=2)
    with pytest.raises(UserError, match="thresholds changed"):
        tag_images(folder, out, scorer, threshold=0.3)
    summary = tag_images(folder, out, scorer, top_k=2, overwrite=True)
    assert not summary.already_complete and summary.rows == GOOD
    assert all(len(r["tags"].split(";")) <= 2 for r in rows(out))
    # Files that no hspnet tag run made are never replaced silently.
    foreign = tmp_path / "theirs.csv"
    foreign.write_text("keep me\n")
    with pytest.raises(UserError, match="has no tag manifest"):
        tag_images(folder, foreign, scorer)
    assert foreign.read_text() == "keep me\n"
    with pytest.raises(UserError, match="no images to tag"):
        tag_images(tmp_path / "o", tmp_path / "x.csv", scorer) if (tmp_path / "o").mkdir() is None else None


def test_thresholds_file_stored_thresholds_and_top_k(scorer, folder: Path, tmp_path: Path) -> None:
    from hspnet_cli.scoring.scorer import ExportedScorer

    names = scorer.taxonomy.label_names
    table = {n: 1.0 for n in names}
    table[names[2]] = 0.0  # always tagged
    tfile = tmp_path / "thr.json"
    tfile.write_text(json.dumps({"format": "hspnet-thresholds", "labels": names, "thresholds": table}))
    tag_images(folder, tmp_path / "t.csv", scorer, thresholds=tfile)
    assert {r["tags"] for r in rows(tmp_path / "t.csv")} == {names[2]}
    with pytest.raises(UserError, match="not both"):
        tag_images(folder, tmp_path / "u.csv", scorer, thresholds=tfile, threshold=0.5)

    exported = ExportedScorer(
        **{
            k: getattr(scorer, k)
            for k in (
                "image_encoder",
                "label_features",
                "logit_scale",
                "taxonomy",
                "image_size",
                "transform",
                "description",
            )
        },
        thresholds=torch.tensor([0.0 if i == 5 else 1.0 for i in range(len(names))]),
    )
    tag_images(folder, tmp_path / "e.csv", exported)
    assert {r["tags"] for r in rows(tmp_path / "e.csv")} == {names[5]}
    manifest = json.loads((tmp_path / "e.manifest.json").read_text())
    assert manifest["threshold_source"] == "stored in the model"
    tag_images(folder, tmp_path / "k.csv", exported, threshold=0.0, top_k=3)  # explicit threshold wins
    for r in rows(tmp_path / "k.csv"):
        scores = [float(s) for s in r["scores"].split(";")]
        assert len(scores) == 3 and scores == sorted(scores, reverse=True)


def test_list_with_missing_entry_and_shards(scorer, folder: Path, tmp_path: Path) -> None:
    keys = [r["path"] for r in rows(Path(tag_images(folder, tmp_path / "all.csv", scorer).outputs["tags"]))]
    lst = tmp_path / "list.txt"
    lst.write_text(f"{keys[3]}\nmissing/none.jpg\n{folder / keys[0]}\n")
    summary = tag_images(folder, tmp_path / "l.csv", scorer, list_file=lst)
    assert [r["path"] for r in rows(tmp_path / "l.csv")] == [keys[3], keys[0]]
    assert rows(tmp_path / "l.failed.csv") == [{"path": "missing/none.jpg", "error": "file not found"}]
    assert summary.exit_code == 1

    parts = [tag_images(folder, tmp_path / "s.csv", scorer, shard=f"{i}/2") for i in range(2)]
    assert [p.outputs["tags"].name for p in parts] == ["s.shard-0-of-2.csv", "s.shard-1-of-2.csv"]
    assert (tmp_path / "s.shard-1-of-2.emb.f32").is_file()
    shard_rows = [[r["path"] for r in rows(p.outputs["tags"])] for p in parts]
    assert sorted(shard_rows[0] + shard_rows[1]) == keys and not set(shard_rows[0]) & set(shard_rows[1])
    assert sum(p.items for p in parts) == GOOD + 4


def test_cli_tag(scorer, demo_split, folder: Path, tmp_path: Path, monkeypatch) -> None:
    import typer
    from typer.testing import CliRunner

    from hspnet_cli.commands.tag_cmd import tag

    app = typer.Typer()
    app.command()(tag)
    app.command("noop")(lambda: None)
    args = [
        "tag",
        str(folder),
        "--out",
        str(tmp_path / "tags.csv"),
        "--zero-shot",
        "-t",
        str(demo_split["taxonomy"]),
        "--clip-model",
        "hspnet-tiny",
        "--pretrained",
        "none",
        "--workers",
        "0",
        "--device",
        "cpu",
    ]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 1, result.output  # some images failed
    summary = json.loads(result.stdout)
    assert (summary["rows"], summary["failed"], summary["exit_code"]) == (GOOD, 4, 1)
    # A random model rebuilt has other weights: the fingerprint refuses to mix its rows in.
    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, UserError) and "scorer changed" in str(result.exception)
    result = CliRunner().invoke(app, ["tag", str(folder), "--out", str(tmp_path / "x.csv")])
    assert isinstance(result.exception, UserError) and "give --checkpoint" in str(result.exception)
    monkeypatch.setattr("hspnet_cli.scoring.scorer.choose_scorer", lambda *a, **kw: scorer)
    assert CliRunner().invoke(app, [*args, "--overwrite"]).exit_code == 1
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1 and "already complete" in result.stdout


KILL_SCRIPT = r"""
import os, signal, sys
import torch
from hspnet_cli.scoring.scorer import zero_shot
from hspnet_cli.taxonomy import load_taxonomy
from hspnet_cli.tagging.run import tag_images
from hspnet_cli.tagsfile.writer import TagWriter

torch.set_num_threads(1)
torch.manual_seed(0)
scorer = zero_shot(load_taxonomy(sys.argv[1]), "hspnet-tiny", None)
folder, out, mode = sys.argv[2], sys.argv[3], sys.argv[4]
if mode == "kill":
    real, calls = TagWriter.write_batch, [0]

    def dying(self, keys, probs, emb, failures, items):
        calls[0] += 1
        if calls[0] == 3:
            self._files["tags"].write(b"torn")
            self._files["tags"].flush()
            os.kill(os.getpid(), signal.SIGKILL)
        return real(self, keys, probs, emb, failures, items)

    TagWriter.write_batch = dying
s = tag_images(folder, out, scorer, batch_size=4, workers=1 if mode == "kill" else 0, progress=False)
print(s.resumed_from, s.rows, s.failed)
if mode == "resume":  # the reference: an uninterrupted run of the same model
    tag_images(folder, out.replace(".csv", ".ref.csv"), scorer, batch_size=4, progress=False)
"""


def test_resume_after_kill_9(demo_split, folder: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    script = tmp_path / "kill.py"
    script.write_text(KILL_SCRIPT)

    def run(out: str, mode: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(script), str(demo_split["taxonomy"]), str(folder), str(tmp_path / out), mode],
            capture_output=True,
            text=True,
            timeout=120,
        )

    killed = run("k.csv", "kill")
    assert killed.returncode == -9, killed.stderr
    assert (tmp_path / "k.csv").read_bytes().endswith(b"torn")
    resumed = run("k.csv", "resume")
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.split() == ["8", str(GOOD), "4"]
    assert files(tmp_path / "k.csv") == files(tmp_path / "k.ref.csv")


@pytest.mark.parametrize("workers", [0, 1])
def test_an_image_that_hangs_is_skipped_after_the_decode_timeout(
    scorer, folder: Path, tmp_path: Path, workers: int
) -> None:
    import dataclasses
    import time

    from PIL import Image
    from test_tag_decode import SlowOn17px

    Image.new("RGB", (17, 17), (10, 200, 10)).save(folder / "sub" / "slow.png")
    slow = dataclasses.replace(scorer, transform=SlowOn17px(scorer.transform))
    start = time.monotonic()
    summary = tag_images(
        folder, tmp_path / "t.csv", slow, workers=workers, batch_size=4, decode_timeout=0.5, progress=False
    )
    assert time.monotonic() - start < 20  # never waited the 30 s
    assert summary.rows == GOOD and summary.failed == 5
    failed = {r["path"]: r["error"] for r in rows(tmp_path / "t.failed.csv")}
    assert failed["sub/slow.png"].startswith("decoding took longer than 0.5 s (--decode-timeout)")
    assert "sub/slow.png" not in {r["path"] for r in rows(tmp_path / "t.csv")}


def test_a_dead_worker_is_a_clear_error_and_the_rerun_continues(scorer, folder: Path, tmp_path: Path) -> None:
    import dataclasses

    from PIL import Image
    from test_tag_decode import KillWorkerOn19px

    Image.new("RGB", (19, 19), (200, 10, 10)).save(folder / "zz_crash.png")  # sorted last
    crashing = dataclasses.replace(scorer, transform=KillWorkerOn19px(scorer.transform))
    out = tmp_path / "t.csv"
    with pytest.raises(UserError, match=r"an image-decoding worker died .* rerun the same command to continue"):
        tag_images(folder, out, crashing, workers=1, batch_size=4, progress=False)
    written = len(rows(out))
    assert written > 0  # earlier batches were kept
    summary = tag_images(folder, out, scorer, workers=1, batch_size=4, progress=False)
    assert summary.resumed_from > 0 and summary.rows == GOOD + 1
    paths = [r["path"] for r in rows(out)]
    assert len(paths) == len(set(paths)) == GOOD + 1 and "zz_crash.png" in paths
