"""``hspnet tag --format parquet``: the part files, read back by pyarrow, pandas, DuckDB and the
downstream commands; tar shards as a source; resume after a truncated part."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from scaling_helpers import hspnet, pack_shards, read_parts, tiny_model  # noqa: F401 - fixture

N_IMAGES = 40


@pytest.fixture(scope="module")
def images(demo_split, tmp_path_factory) -> Path:
    """40 demo images in two folders plus one file that is not an image."""
    root = tmp_path_factory.mktemp("pq-images") / "imgs"
    for i, p in enumerate(sorted(demo_split["images"].glob("*.png"))[:N_IMAGES]):
        dest = root / ("a" if i % 2 else "b") / p.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(p, dest)
    (root / "a" / "zz_broken.png").write_bytes(b"not a png at all" * 10)
    return root


@pytest.fixture(scope="module")
def scorer(tiny_model):
    from hspnet_cli.scoring.scorer import load_scorer

    return load_scorer(tiny_model)


@pytest.fixture(scope="module")
def cli_run(images, tiny_model, tmp_path_factory) -> dict:
    """The real CLI, once: parquet folder and the classic jsonl output of the same images."""
    base = tmp_path_factory.mktemp("pq-cli")
    pq = hspnet(
        "tag",
        str(images),
        "--checkpoint",
        str(tiny_model),
        "--format",
        "parquet",
        "--out",
        str(base / "pq"),
        "--block-size",
        "16",
        "--workers",
        "0",
        "--device",
        "cpu",
        "--json",
    )
    js = hspnet(
        "tag",
        str(images),
        "--checkpoint",
        str(tiny_model),
        "--format",
        "jsonl",
        "--out",
        str(base / "tags.jsonl"),
        "--workers",
        "0",
        "--device",
        "cpu",
    )
    assert pq.returncode == 1 and js.returncode == 1, pq.stderr + js.stderr  # 1: one image failed
    return {"pq": base / "pq", "jsonl": base / "tags.jsonl", "summary": json.loads(pq.stdout)}


def test_parts_schema_and_readers_agree_with_the_jsonl_engine(cli_run) -> None:
    import duckdb
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = cli_run["pq"]
    parts = sorted(p.name for p in folder.glob("*.parquet"))
    assert parts == [f"part-{i:06d}.parquet" for i in range(3)]  # 41 items / 16 per block
    schema = pq.read_schema(folder / parts[0])
    assert schema.names == ["key", "tags", "scores", "probs", "embedding"]
    assert schema.field("embedding").type == pa.list_(pa.float32(), 32)
    assert schema.field("probs").type == pa.list_(pa.float32())
    summary = cli_run["summary"]
    assert (summary["rows"], summary["failed"], summary["items"]) == (N_IMAGES, 1, N_IMAGES + 1)
    assert summary["failures_by_reason"] == {"not an image": 1}
    manifest = json.loads((folder / "_manifest.json").read_text())
    assert manifest["complete"] and manifest["embedding"] == {"column": "embedding", "dim": 32, "dtype": "float32"}
    # Three readers, one dataset.
    got = read_parts(folder)
    assert len(pd.read_parquet(folder)) == N_IMAGES
    count, distinct = duckdb.sql(
        f"select count(*), count(distinct key) from read_parquet('{folder}/*.parquet')"
    ).fetchall()[0]
    assert count == distinct == N_IMAGES
    rows = [json.loads(line) for line in cli_run["jsonl"].read_text().splitlines()]
    assert sorted(got) == sorted(r["path"] for r in rows)
    for r in rows:
        np.testing.assert_allclose(got[r["path"]], r["probs"], atol=1e-6)
    # The tags column is what the thresholds select (the model's own, fitted in training), by
    # probability descending.
    cut = dict(zip(manifest["labels"], manifest["thresholds"]))
    table = pq.read_table(folder / parts[0]).to_pylist()
    for row in table:
        assert row["scores"] == sorted(row["scores"], reverse=True)
        assert all(s >= cut[t] for t, s in zip(row["tags"], row["scores"]))
        assert [t for t, p in zip(manifest["labels"], row["probs"]) if p >= cut[t]] == sorted(
            row["tags"], key=manifest["labels"].index
        )


def test_downstream_commands_read_the_folder(cli_run, images, demo_split, tmp_path: Path) -> None:
    folder = cli_run["pq"]
    built = hspnet("index", "build", str(folder), "--out", str(tmp_path / "i.faiss"))
    assert built.returncode == 0, built.stderr
    found = hspnet(
        "search",
        str(tmp_path / "i.faiss"),
        "--like",
        "a/000001.png",
        "--k",
        "3",
        "--json",
        "--copy-to",
        str(tmp_path / "hits"),
    )
    assert found.returncode == 0, found.stderr
    assert len(list((tmp_path / "hits").iterdir())) == 3
    picked = hspnet("select", str(folder), "-n", "5", "--out", str(tmp_path / "sel.txt"))
    assert picked.returncode == 0, picked.stderr
    listed = (tmp_path / "sel.txt").read_text().split()
    assert len(listed) == 5 and all((images / p).is_file() for p in listed)
    exported = hspnet("export-labels", str(folder), "--to", "hf", "--out", str(images / "metadata.jsonl"))
    assert exported.returncode == 0, exported.stderr
    assert len((images / "metadata.jsonl").read_text().splitlines()) == N_IMAGES
    (images / "metadata.jsonl").unlink()
    from hspnet_cli.data.readers import detect_format
    from hspnet_cli.data.readers.toolfiles import read_tags

    assert detect_format(folder) == "tags" and len(read_tags(folder).records) == N_IMAGES


def test_truncated_part_is_redone_and_finished_parts_are_kept(scorer, images, tmp_path: Path) -> None:
    from hspnet_cli.cluster.source_run import tag_source

    out = tmp_path / "pq"
    first = tag_source(images, out, scorer, block_size=8, progress=False)
    before = read_parts(out)
    part1, part2 = out / "part-000001.parquet", out / "part-000002.parquet"
    part1.write_bytes(part1.read_bytes()[: part1.stat().st_size // 2])  # a copy cut short
    part2.unlink()  # killed before this block
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("part-*.parquet") if p not in (part1,)}
    again = tag_source(images, out, scorer, block_size=8, progress=False)
    assert first.blocks["done_now"] == 6 and again.blocks == {"total": 6, "done_before": 4, "done_now": 2, "missing": 0}
    assert again.processed == 16
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("part-*.parquet") if p.name in stamps} == stamps
    after = read_parts(out)
    assert sorted(after) == sorted(before)
    for k in before:
        np.testing.assert_array_equal(after[k], before[k])
    done = tag_source(images, out, scorer, block_size=8, progress=False)
    assert done.already_complete and done.processed == 0


def test_other_settings_refused_and_float16_embeddings(scorer, images, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from hspnet_cli.cluster.source_run import tag_source
    from hspnet_cli.core.errors import UserError

    out = tmp_path / "pq16"
    tag_source(images, out, scorer, block_size=64, dtype="float16", progress=False)
    assert pq.read_schema(out / "part-000000.parquet").field("embedding").type == pa.list_(pa.float16(), 32)
    with pytest.raises(UserError, match="block_size, blocks changed"):
        tag_source(images, out, scorer, block_size=8, dtype="float16", progress=False)


def test_webdataset_shards_by_brace_pattern(scorer, images, tmp_path: Path) -> None:
    from hspnet_cli.cluster.source_run import tag_source

    files = sorted((images / "a").glob("0*.png"))
    pack_shards(files, tmp_path / "shards", per_shard=7)  # 20 images -> 3 shards
    summary = tag_source(f"{tmp_path}/shards/{{000000..000002}}.tar", tmp_path / "pq", scorer, progress=False)
    assert (summary.rows, summary.failed, summary.blocks["total"]) == (20, 0, 3)
    got = read_parts(tmp_path / "pq")
    assert sorted(got)[:2] == ["000000.tar#" + files[0].name, "000000.tar#" + files[1].name]
    folder = read_parts_of_folder(scorer, images, tmp_path)
    for key, probs in got.items():
        np.testing.assert_allclose(probs, folder["a/" + key.split("#")[1]], atol=1e-6)
    manifest = json.loads((tmp_path / "pq" / "_manifest.json").read_text())
    assert manifest["key_scheme"] == "SHARD#MEMBER" and manifest["fingerprint"]["images_dir"] == str(
        tmp_path / "shards"
    )
    # search --copy-to fetches a hit out of its shard.
    assert hspnet("index", "build", str(tmp_path / "pq"), "--out", str(tmp_path / "s.faiss")).returncode == 0
    found = hspnet(
        "search",
        str(tmp_path / "s.faiss"),
        "--like",
        "000001.tar#" + files[8].name,
        "--k",
        "2",
        "--copy-to",
        str(tmp_path / "hits"),
    )
    assert found.returncode == 0, found.stderr
    copied = sorted((tmp_path / "hits").iterdir())
    assert len(copied) == 2 and copied[0].read_bytes() in {f.read_bytes() for f in files}
    # Labeling tools cannot open shard members: export-labels says so instead of writing refs.
    refused = hspnet("export-labels", str(tmp_path / "pq"), "--to", "label-studio", "--out", str(tmp_path / "ls.json"))
    assert refused.returncode == 2 and "tar shards" in refused.stderr and not (tmp_path / "ls.json").exists()
    with pytest.raises(Exception, match="shard not found"):
        tag_source(f"{tmp_path}/shards/{{000000..000004}}.tar", tmp_path / "pq2", scorer, progress=False)
    assert not (tmp_path / "pq2").exists()


def read_parts_of_folder(scorer, images: Path, tmp_path: Path) -> dict:
    from hspnet_cli.cluster.source_run import tag_source

    tag_source(images, tmp_path / "folder-pq", scorer, progress=False)
    return read_parts(tmp_path / "folder-pq")


def test_parquet_needs_a_folder_and_urls_need_parquet(tiny_model, images, tmp_path: Path) -> None:
    r = hspnet("tag", "s3://bucket/prefix", "--checkpoint", str(tiny_model), "--out", str(tmp_path / "t.csv"))
    assert r.returncode == 2 and "add --format parquet" in r.stderr
    assert not os.path.exists(tmp_path / "t.csv")


def test_shards_of_a_slurm_array_fill_one_folder(scorer, images, tmp_path: Path) -> None:
    from hspnet_cli.cluster.source_run import tag_source

    out = tmp_path / "pq"
    first = tag_source(images, out, scorer, block_size=8, shard="1/2", progress=False)
    assert first.blocks["done_now"] == 3 and not json.loads((out / "_manifest.json").read_text())["complete"]
    second = tag_source(images, out, scorer, block_size=8, shard="0/2", progress=False)
    assert second.blocks["done_now"] == 3 and json.loads((out / "_manifest.json").read_text())["complete"]
    assert len(read_parts(out)) == N_IMAGES and second.rows == N_IMAGES


def test_index_merge_and_add_take_parquet_folders(scorer, images, tmp_path: Path) -> None:
    from hspnet_cli.cluster.source_run import tag_source

    keys = sorted(str(p.relative_to(images)) for p in images.rglob("0*.png"))
    (tmp_path / "l1").write_text("\n".join(keys[:20]) + "\n")
    (tmp_path / "l2").write_text("\n".join(keys[20:]) + "\n")
    tag_source(images, tmp_path / "p1", scorer, list_file=tmp_path / "l1", progress=False)
    tag_source(images, tmp_path / "p2", scorer, list_file=tmp_path / "l2", progress=False)
    merged = hspnet("index", "merge", str(tmp_path / "merged.jsonl"), str(tmp_path / "p1"), str(tmp_path / "p2"))
    assert merged.returncode == 0, merged.stderr
    assert sorted(json.loads(line)["path"] for line in (tmp_path / "merged.jsonl").read_text().splitlines()) == keys
    assert hspnet("index", "build", str(tmp_path / "p1"), "--out", str(tmp_path / "i.faiss")).returncode == 0
    added = hspnet("index", "add", str(tmp_path / "i.faiss"), str(tmp_path / "p2"))
    assert added.returncode == 0 and "added 20 image(s)" in added.stdout, added.stderr + added.stdout
