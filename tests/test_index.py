"""hspnet index build / add / merge: size rule, id/path alignment, recall, atomic sidecars."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from index_helpers import MODEL, clustered, random_unit, run, write_tags

from hspnet_cli.core.errors import UserError
from hspnet_cli.index import files
from hspnet_cli.index.build import add_to_index, build_index, choose_factory, default_nprobe, pq_subquantizers
from hspnet_cli.index.merge import merge_shards
from hspnet_cli.index.store import load_index
from hspnet_cli.tagsfile.writer import OutputPaths


def _vectors(idx) -> np.ndarray:
    return np.stack([idx.index.reconstruct(i) for i in range(idx.index.ntotal)])


def test_size_rule_without_building() -> None:
    assert choose_factory(3000, 32) == "Flat" and choose_factory(99_999, 512) == "Flat"
    assert choose_factory(100_000, 512) == "IVF1265,Flat"
    assert choose_factory(1_999_999, 512) == "IVF5657,Flat"
    assert choose_factory(2_000_000, 512) == "IVF5657,PQ128x8"
    assert choose_factory(10**9, 512) == "IVF65536,PQ128x8"  # nlist capped
    assert pq_subquantizers(512) == 128 and pq_subquantizers(30) == 6 and pq_subquantizers(3) == 1
    assert default_nprobe(1265) == 40 and default_nprobe(8) == 8 and default_nprobe(5657) == 177


def test_exact_build_finds_each_vector_first_and_aligns_ids_and_paths(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(files, "CHUNK_ROWS", 700)  # several chunks through the memmap
    vecs = random_unit(3000)
    tags = write_tags(tmp_path / "tags.csv", vecs)
    facts = build_index(tags)
    out = tmp_path / "tags.faiss"
    assert facts["factory"] == "Flat" and facts["index_type"] == "IndexFlatIP" and facts["recall_at_10"] == 1.0
    idx = load_index(out)
    assert idx.paths == [f"img/{i:05d}.jpg" for i in range(3000)]
    assert Path(f"{out}.paths.txt").read_text().splitlines() == idx.paths
    meta = json.loads(Path(f"{out}.json").read_text())
    assert meta["count"] == 3000 and meta["embedding_dim"] == 32 and meta["model"] == MODEL
    assert meta["metric"] == "inner_product" and meta["sources"][0]["rows"] == 3000
    assert meta["images_dir"] == str((tmp_path / "images").absolute())
    scores, ids = idx.index.search(vecs, 1)
    assert (ids[:, 0] == np.arange(3000)).all() and np.allclose(scores[:, 0], 1.0, atol=1e-5)
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary file left behind


def test_forced_ivf_reports_high_recall_on_clustered_data(tmp_path: Path) -> None:
    tags = write_tags(tmp_path / "tags.csv", clustered(3000))
    facts = build_index(tags, tmp_path / "ivf.faiss", factory="IVF32,Flat")
    assert facts["index_type"] == "IndexIVFFlat" and facts["factory_rule"] == "--factory"
    assert facts["recall_queries"] == 1000 and facts["recall_at_10"] > 0.9
    assert facts["search_params"].startswith("nprobe=")
    low = build_index(tags, tmp_path / "ivf1.faiss", factory="IVF32,Flat", nprobe=1)
    assert low["search_params"] == "nprobe=1" and low["recall_at_10"] < facts["recall_at_10"]
    assert json.loads(Path(f"{tmp_path / 'ivf1.faiss'}.json").read_text())["recall_at_10"] == low["recall_at_10"]
    pq = build_index(tags, tmp_path / "pq.faiss", factory="IVF8,PQ8x4")  # approximate vectors: recall measured
    assert 0 < pq["recall_at_10"] <= 1 and pq["index_type"] == "IndexIVFPQ"


def test_bad_factories_and_inputs_are_user_errors(tmp_path: Path) -> None:
    tags = write_tags(tmp_path / "tags.csv", random_unit(50))
    with pytest.raises(UserError, match="not a faiss factory string"):
        build_index(tags, factory="IVFbanana")
    with pytest.raises(UserError, match="needs at least 256 vectors"):
        build_index(tags, factory="IVF256,Flat")
    OutputPaths.for_out(tags).emb.write_bytes(b"\0" * 12)
    with pytest.raises(UserError, match=r"tags\.emb\.f32: 12 bytes, but 50 rows x 32 dims"):
        build_index(tags)
    with pytest.raises(UserError, match="tags file not found"):
        build_index(tmp_path / "nope.csv")
    bad = write_tags(tmp_path / "z.csv", np.zeros((3, 32), np.float32))
    with pytest.raises(UserError, match="embedding row 0 is not finite or is all zeros"):
        build_index(bad)


def test_add_appends_without_changing_old_ids(tmp_path: Path) -> None:
    vecs = random_unit(3000)
    paths = [f"img/{i:05d}.jpg" for i in range(3000)]
    a = write_tags(tmp_path / "a.csv", vecs[:2000], paths[:2000])
    b = write_tags(tmp_path / "b.csv", vecs[2000:], paths[2000:])
    build_index(a, tmp_path / "x.faiss")
    facts = add_to_index(tmp_path / "x.faiss", b)
    assert facts["added"] == 1000 and facts["count"] == 3000 and facts["sources"][1]["first_id"] == 2000
    idx = load_index(tmp_path / "x.faiss")
    assert idx.paths == paths
    assert np.allclose(_vectors(idx), vecs, atol=1e-6)
    _, ids = idx.index.search(vecs[2005:2006], 1)
    assert ids[0, 0] == 2005


def test_add_refusals_and_skip_existing(tmp_path: Path) -> None:
    vecs = random_unit(300)
    build_index(write_tags(tmp_path / "a.csv", vecs[:200]), tmp_path / "x.faiss")
    other_dim = write_tags(tmp_path / "d.csv", random_unit(10, dim=16))
    with pytest.raises(UserError, match="d.csv: embeddings have dim 16 but index .*x.faiss has dim 32"):
        add_to_index(tmp_path / "x.faiss", other_dim, force=True)
    other_model = write_tags(
        tmp_path / "m.csv", vecs[200:], [f"new/{i}.jpg" for i in range(100)], model="zero-shot RN50/openai"
    )
    with pytest.raises(UserError, match="made by 'zero-shot RN50/openai' but index"):
        add_to_index(tmp_path / "x.faiss", other_model)
    overlap = write_tags(tmp_path / "o.csv", vecs[150:250], [f"img/{i:05d}.jpg" for i in range(150, 250)])
    with pytest.raises(UserError, match=r"50 path\(s\) are in index .* already \(first: img/00150.jpg\)"):
        add_to_index(tmp_path / "x.faiss", overlap)
    assert load_index(tmp_path / "x.faiss").index.ntotal == 200  # refused: untouched
    facts = add_to_index(tmp_path / "x.faiss", overlap, skip_existing=True)
    assert (facts["added"], facts["skipped"], facts["count"]) == (50, 50, 250)
    idx = load_index(tmp_path / "x.faiss")
    assert idx.paths[200] == "img/00200.jpg" and np.allclose(idx.index.reconstruct(200), vecs[200], atol=1e-6)
    forced = add_to_index(tmp_path / "x.faiss", other_model, force=True)
    assert forced["count"] == 350 and forced["sources"][-1]["model"] == "zero-shot RN50/openai"


def test_add_from_another_images_folder_rebases_paths(tmp_path: Path) -> None:
    vecs = random_unit(20)
    a = write_tags(
        tmp_path / "a.csv", vecs[:10], [f"{i}.jpg" for i in range(10)], images_dir=tmp_path / "photos" / "2023"
    )
    b = write_tags(
        tmp_path / "b.csv", vecs[10:], [f"{i}.jpg" for i in range(10)], images_dir=tmp_path / "photos" / "2024"
    )
    build_index(a, tmp_path / "x.faiss")
    add_to_index(tmp_path / "x.faiss", b)
    idx = load_index(tmp_path / "x.faiss")
    assert idx.images_dir == (tmp_path / "photos").absolute()
    assert idx.paths[:2] == ["2023/0.jpg", "2023/1.jpg"] and idx.paths[10] == "2024/0.jpg"


def test_merge_equals_one_build_over_the_union(tmp_path: Path) -> None:
    vecs = random_unit(400, seed=3)
    paths = [f"img/{i:05d}.jpg" for i in range(400)]
    rng = np.random.default_rng(0)
    perm = rng.permutation(400)  # shards hold interleaved, unsorted rows
    s1 = write_tags(
        tmp_path / "s1.csv", vecs[perm[:150]], [paths[i] for i in perm[:150]], failed=[("img/bad-2.jpg", "truncated")]
    )
    s2 = write_tags(
        tmp_path / "s2.csv",
        vecs[perm[150:]],
        [paths[i] for i in perm[150:]],
        failed=[("img/bad-1.jpg", "empty file (0 bytes)")],
    )
    union = write_tags(tmp_path / "u" / "all.csv", vecs, paths, images_dir=tmp_path / "images")
    build_index(union, tmp_path / "u" / "all.faiss")
    result = run("index", "merge", tmp_path / "m" / "merged.csv", s2, s1, "--json")
    assert result.exit_code == 0, result.output
    facts = json.loads(result.stdout)
    assert facts["count"] == 400 and facts["shards"] == 2
    merged, single = load_index(tmp_path / "m" / "merged.faiss"), load_index(tmp_path / "u" / "all.faiss")
    assert merged.paths == single.paths == paths
    assert np.array_equal(_vectors(merged), _vectors(single))
    merged_out = OutputPaths.for_out(tmp_path / "m" / "merged.csv")
    assert merged_out.emb.read_bytes() == OutputPaths.for_out(union).emb.read_bytes()
    assert (tmp_path / "m" / "merged.csv").read_text() == union.read_text()
    assert merged_out.failed.read_text().splitlines() == [
        "path,error",
        "img/bad-1.jpg,empty file (0 bytes)",
        "img/bad-2.jpg,truncated",
    ]
    manifest = json.loads(merged_out.manifest.read_text())
    # The tagger's own layout, so the merge is read like any tag output.
    assert manifest["format"] == "hspnet-tags" and manifest["complete"] is True
    assert manifest["counts"] == {"items": 402, "rows": 400, "failed": 2}
    assert manifest["order"] == "sorted by path" and len(manifest["merged_from"]) == 2
    assert manifest["bytes"]["emb"] == 400 * 32 * 4 and manifest["embedding"]["dim"] == 32
    again = run("index", "merge", tmp_path / "m2" / "again.csv", tmp_path / "m" / "merged.csv", "--json")
    assert again.exit_code == 0, again.output
    assert (tmp_path / "m2" / "again.csv").read_text() == union.read_text()


def test_merge_refusals(tmp_path: Path) -> None:
    s1 = write_tags(tmp_path / "s1.csv", random_unit(10), [f"a{i}.jpg" for i in range(10)])
    s2 = write_tags(
        tmp_path / "s2.csv", random_unit(10), [f"b{i}.jpg" for i in range(10)], model="zero-shot RN50/openai"
    )
    s3 = write_tags(tmp_path / "s3.csv", random_unit(10), [f"a{i}.jpg" for i in range(5, 15)])
    with pytest.raises(UserError, match="shards of different models cannot be merged"):
        merge_shards(tmp_path / "m.csv", [s1, s2])
    with pytest.raises(UserError, match="image 'a5.jpg' is in both .*s1.csv and .*s3.csv"):
        merge_shards(tmp_path / "m.csv", [s1, s3])
    with pytest.raises(UserError, match="the output is one of the shards"):
        merge_shards(s1, [s1, s3])
    s4 = write_tags(
        tmp_path / "s4.csv", random_unit(10), [f"c{i}.jpg" for i in range(10)], fingerprint={"thresholds": [0.7]}
    )
    with pytest.raises(UserError, match="s4.csv: its thresholds setting differs from .*s1.csv's"):
        merge_shards(tmp_path / "m.csv", [s1, s4])
    assert not (tmp_path / "m.csv").exists()


def test_cli_build_add_and_errors(tmp_path: Path) -> None:
    vecs = random_unit(300)
    a = write_tags(tmp_path / "a.csv", vecs[:200])
    result = run("index", "build", a, "--out", tmp_path / "i.faiss")
    assert result.exit_code == 0, result.output
    assert (
        "IndexFlatIP" not in result.stdout and "Flat (size rule)" in result.stdout and "1.0000 (exact)" in result.stdout
    )
    b = write_tags(tmp_path / "b.csv", vecs[200:], [f"new/{i}.jpg" for i in range(100)])
    result = run("index", "add", tmp_path / "i.faiss", b)
    assert result.exit_code == 0 and "added 100 image(s)" in result.stdout
    result = run("index", "add", tmp_path / "i.faiss", b)
    assert result.exit_code == 2 and "100 path(s) are in index" in result.stderr and "Traceback" not in result.output
    result = run("index", "build", tmp_path / "missing.csv")
    assert result.exit_code == 2 and "missing.csv: tags file not found" in result.stderr


def test_interrupted_update_is_detected(tmp_path: Path) -> None:
    build_index(write_tags(tmp_path / "a.csv", random_unit(30)), tmp_path / "x.faiss")
    plist = Path(f"{tmp_path / 'x.faiss'}.paths.txt")
    plist.write_text("\n".join(plist.read_text().splitlines()[:-1]) + "\n")
    with pytest.raises(UserError, match="disagree"):
        load_index(tmp_path / "x.faiss")


def test_refuses_unfinished_runs_and_other_manifests(tmp_path: Path) -> None:
    tags = write_tags(tmp_path / "tags.csv", random_unit(40), images_dir=tmp_path / "pics")
    facts = build_index(tags)
    assert facts["model"] == MODEL and facts["images_dir"] == str(tmp_path / "pics") and facts["count"] == 40
    manifest_file = OutputPaths.for_out(tags).manifest
    manifest = json.loads(manifest_file.read_text())
    manifest_file.write_text(json.dumps({**manifest, "complete": False}))
    with pytest.raises(UserError, match="the tagging run is unfinished"):
        build_index(tags)
    manifest_file.write_text(json.dumps({"embedding_dim": 32, "model": MODEL}))
    with pytest.raises(UserError, match="not an hspnet tag manifest"):
        build_index(tags)
    manifest_file.unlink()
    with pytest.raises(UserError, match="tags.manifest.json: manifest of tags.csv not found"):
        build_index(tags)
