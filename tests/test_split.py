"""The weak-label protocols and ``make_split``: statistics, determinism, stream independence, output."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy.stats import chisquare

from hspnet_cli.core.errors import UserError
from hspnet_cli.data import protocols, read_annotations, read_split_csv, read_split_yaml
from hspnet_cli.data.split import SplitOptions, make_split
from hspnet_cli.taxonomy import load_taxonomy

VOC = load_taxonomy("voc")


def write_csv(path: Path, n: int, seed: int = 1, prefix: str = "img") -> Path:
    """An ``image,labels`` CSV of ``n`` images with 1..4 VOC labels each."""
    rng = np.random.default_rng(seed)
    lines = ["image,labels"]
    for i in range(n):
        names = rng.choice(VOC.label_names, size=int(rng.integers(1, 5)), replace=False)
        lines.append(f"{prefix}/{i:05d}.jpg,{';'.join(names)}")
    path.write_text("\n".join(lines) + "\n")
    return path


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- protocols --------------------------------------------------------------------------------


def test_val_sizes_match_the_published_largeloss_splits() -> None:
    for n, expected in ((82081, (65665, 16416)), (5717, (4574, 1143)), (150000, (120000, 30000)), (5994, (4795, 1199))):
        assert protocols.val_sizes(n, 0.2) == expected
    train, val = protocols.val_split(5717, 0.2, seed=3)
    assert len(val) == 1143 and np.array_equal(np.sort(np.concatenate([train, val])), np.arange(5717))


def test_single_positive_is_uniform_over_each_images_positives() -> None:
    n = 4000
    matrix = -np.ones((n, 20), dtype=np.int8)
    matrix[:, [2, 5, 11, 17]] = 1  # every image has the same four positives
    out = protocols.single_positive(matrix, protocols.positive_draws(n, seed=7))
    assert ((out == 1).sum(axis=1) == 1).all() and set(np.unique(out)) == {0, 1}
    counts = (out == 1).sum(axis=0)[[2, 5, 11, 17]]
    assert counts.sum() == n
    assert chisquare(counts).pvalue > 1e-3, counts
    # Images with different positives: the choice is always one of the image's own positives.
    rng = np.random.default_rng(0)
    mixed = np.where(rng.random((500, 20)) < 0.2, 1, -1).astype(np.int8)
    chosen = protocols.single_positive(mixed, protocols.positive_draws(500, seed=1))
    assert (mixed[chosen == 1] == 1).all()
    assert np.array_equal((chosen == 1).any(axis=1), (mixed == 1).any(axis=1))


def test_partial_keeps_p_of_entries_with_one_mask_for_both_signs() -> None:
    rng = np.random.default_rng(0)
    matrix = np.where(rng.random((2000, 20)) < 0.3, 1, -1).astype(np.int8)
    draws = protocols.partial_draws(2000, 20, seed=5)
    for keep in (0.1, 0.5, 0.9):
        out = protocols.partial(matrix, draws, keep)
        kept = out != 0
        assert abs(kept.mean() - keep) < 0.01
        assert abs(kept[matrix == 1].mean() - keep) < 0.02 and abs(kept[matrix == -1].mean() - keep) < 0.02
        assert np.array_equal(out[kept], matrix[kept])
        # One mask: flipping every sign keeps exactly the same positions.
        assert np.array_equal(protocols.partial(-matrix, draws, keep) != 0, kept)
    small, large = (protocols.partial(matrix, draws, p) != 0 for p in (0.3, 0.6))
    assert not (small & ~large).any()  # nested masks


# --- make_split -------------------------------------------------------------------------------


def test_same_seed_is_byte_identical_and_another_seed_differs(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "ann.csv", 300)
    opts = dict(val_fraction=0.2)
    make_split(src, VOC, tmp_path / "a", options=SplitOptions(seed=4, **opts))
    make_split(src, VOC, tmp_path / "b", options=SplitOptions(seed=4, **opts))
    make_split(src, VOC, tmp_path / "c", options=SplitOptions(seed=5, **opts))
    a, b, c = (files_of(tmp_path / x) for x in "abc")
    assert sorted(a) == ["split.yaml", "train.csv", "val.csv"] and a == b
    assert a["train.csv"] != c["train.csv"] and a["val.csv"] != c["val.csv"]


def test_val_split_keeps_full_labels_and_streams_are_independent(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "ann.csv", 400)
    full, _ = read_annotations(src, VOC)
    by_image = dict(zip(full.images, full.matrix))
    result = make_split(src, VOC, tmp_path / "s", options=SplitOptions(val_fraction=0.25, seed=2))
    train = read_split_csv(tmp_path / "s" / "train.csv", VOC)
    val = read_split_csv(tmp_path / "s" / "val.csv", VOC)
    assert (train.n_images, val.n_images) == (300, 100)
    assert not set(train.images) & set(val.images)
    assert all(np.array_equal(by_image[i], m) for i, m in zip(val.images, val.matrix))  # full labels
    assert ((train.matrix == 1).sum(axis=1) == 1).all() and set(np.unique(train.matrix)) == {0, 1}
    assert all(by_image[i][m == 1][0] == 1 for i, m in zip(train.images, train.matrix))
    assert result.summary["splits"][0]["counts"]["val"]["observed_entries"] == 1.0
    # Another val fraction: images still in train keep the positive they were given.
    make_split(src, VOC, tmp_path / "t", options=SplitOptions(val_fraction=0.1, seed=2))
    other = read_split_csv(tmp_path / "t" / "train.csv", VOC)
    again = dict(zip(other.images, other.matrix))
    assert all(np.array_equal(again[i], m) for i, m in zip(train.images, train.matrix) if i in again)
    # Observed validation labels are weakened like train.
    make_split(src, VOC, tmp_path / "o", options=SplitOptions(val_fraction=0.25, seed=2, val_labels="observed"))
    assert ((read_split_csv(tmp_path / "o" / "val.csv", VOC).matrix == 1).sum(axis=1) == 1).all()


def test_subset_is_seeded_nested_and_after_the_val_split(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "ann.csv", 500)
    sizes, sets = [], []
    for frac in (0.1, 0.5):
        out = tmp_path / f"sub{frac}"
        result = make_split(src, VOC, out, options=SplitOptions(val_fraction=0.2, subset=frac, seed=3))
        train = read_split_csv(out / "train.csv", VOC)
        sizes.append(train.n_images)
        sets.append(set(train.images))
        assert read_split_csv(out / "val.csv", VOC).n_images == 100  # val untouched by the subset
        assert result.summary["splits"][0]["left_out_by_subset"] == 400 - train.n_images
    assert sizes == [40, 200] and sets[0] < sets[1]


def test_partial_multi_keep_writes_one_folder_per_ratio(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "ann.csv", 300)
    out = tmp_path / "p"
    make_split(src, VOC, out, options=SplitOptions(mode="partial", keep=(0.1, 0.5), val_fraction=0.2))
    top = read_split_yaml(out)
    assert top["splits"] == ["keep-0.1", "keep-0.5"] and not (out / "train.csv").exists()
    low, high = (read_split_csv(out / d / "train.csv", VOC) for d in top["splits"])
    assert low.images == high.images and low.n_images == 240
    assert abs((low.matrix != 0).mean() - 0.1) < 0.02 and abs((high.matrix != 0).mean() - 0.5) < 0.03
    assert not ((low.matrix != 0) & (high.matrix == 0)).any()
    assert (low.matrix == -1).any()  # negatives are observed too
    meta = read_split_yaml(out / "keep-0.5")
    assert meta["keep"] == 0.5 and meta["options"]["mode"] == "partial" and meta["files"]["val"] == "val.csv"


def test_split_yaml_records_inputs_options_and_counts(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "ann.csv", 50)
    test = write_csv(tmp_path / "test.csv", 20, seed=9, prefix="test")
    make_split(src, VOC, tmp_path / "s", test_path=test, options=SplitOptions(seed=1))
    text = (tmp_path / "s" / "split.yaml").read_text()
    meta = yaml.safe_load(text)
    import hashlib

    assert meta["inputs"]["train"]["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert meta["inputs"]["test"]["images"] == 20 and meta["taxonomy"]["name"] == "voc"
    assert meta["taxonomy"]["labels_sha256"] == hashlib.sha256(("\n".join(VOC.label_names) + "\n").encode()).hexdigest()
    assert meta["seed"] == 1 and meta["options"]["mode"] == "single-positive"
    assert meta["counts"]["test"]["images"] == 20 and meta["created_by"].startswith("hspnet ")
    test_split = read_split_csv(tmp_path / "s" / "test.csv", VOC)
    assert not (test_split.matrix == 0).any()  # test passes through with full labels


def test_list_output_round_trips_through_the_list_reader(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "ann.csv", 40)
    make_split(src, VOC, tmp_path / "l", options=SplitOptions(out_format="list", val_fraction=0.25))
    train_txt = tmp_path / "l" / "train.txt"
    assert sorted(p.name for p in (tmp_path / "l").iterdir()) == ["split.yaml", "train.txt", "val.txt"]
    lines = train_txt.read_text().splitlines()
    assert len(lines) == 30 and all(len(line.split(",")[1].split()) == 1 for line in lines)
    listed, _ = read_annotations(train_txt, VOC)
    csv_dir = tmp_path / "c"
    make_split(src, VOC, csv_dir, options=SplitOptions(val_fraction=0.25))
    ours = read_split_csv(csv_dir / "train.csv", VOC)
    assert listed.images == ours.images and np.array_equal(listed.matrix == 1, ours.matrix == 1)


def test_refusals_leave_nothing_behind(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "ann.csv", 30)
    out = tmp_path / "s"
    make_split(src, VOC, out)
    before = files_of(out)
    with pytest.raises(UserError, match=rf"^{out}: already holds a split .*pass --overwrite"):
        make_split(src, VOC, out, options=SplitOptions(seed=9))
    assert files_of(out) == before
    make_split(src, VOC, out, options=SplitOptions(seed=9, overwrite=True))
    assert files_of(out) != before and read_split_yaml(out)["seed"] == 9
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="already holds other files"):
        make_split(src, VOC, other, options=SplitOptions(overwrite=True))
    with pytest.raises(UserError, match="image\\(s\\) under .* are missing or broken"):
        make_split(src, VOC, tmp_path / "new", options=SplitOptions(check_images=tmp_path))
    leak = write_csv(tmp_path / "leak.csv", 5)  # same image names as the training file
    with pytest.raises(UserError, match="5 image\\(s\\) are in both the training and the test annotations"):
        make_split(src, VOC, tmp_path / "new", test_path=leak)
    with pytest.raises(UserError, match="--mode partial needs --keep"):
        make_split(src, VOC, tmp_path / "new", options=SplitOptions(mode="partial"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ann.csv", "leak.csv", "other", "s"]
