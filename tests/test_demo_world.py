"""The demo world generator: files, labels, images, determinism, co-occurrence, refusals."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hspnet_cli.core.errors import UserError
from hspnet_cli.demo import world as world_mod
from hspnet_cli.demo.canvas import SUPERSAMPLE, Placement
from hspnet_cli.demo.draw import DRAWERS
from hspnet_cli.demo.summary import cooccurrence_stats
from hspnet_cli.demo.world import (
    DEMO_TAXONOMY,
    WORLD_KIND,
    demo_layout,
    demo_taxonomy,
    generate_demo_world,
    is_demo_world,
    read_demo_annotations,
    render_demo_image,
)
from hspnet_cli.taxonomy import load_taxonomy


def tree_bytes(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative path -> content)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small_world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, world_mod.DemoWorldSummary]:
    out = tmp_path_factory.mktemp("demo") / "world"
    return out, generate_demo_world(out, n_images=60, seed=3, image_size=48)


def test_taxonomy_has_at_least_four_groups_of_four_distinct_labels() -> None:
    tax = demo_taxonomy()
    assert tax.num_groups >= 4 and all(len(m) >= 4 for m in tax.groups.values())
    assert len(set(tax.label_names)) == tax.num_labels == sum(len(m) for m in tax.groups.values())
    # Colour is a nuisance variable, never a label; every label is a plain lower-case noun.
    assert not {"red", "green", "blue", "yellow"} & set(tax.label_names)
    assert all(name.isalpha() and name.islower() for name in tax.label_names + tax.group_names)
    assert set(DRAWERS) == set(tax.label_names)
    assert DEMO_TAXONOMY.label_names == tax.label_names and tax is not demo_taxonomy()


def test_writes_expected_files(small_world: tuple[Path, world_mod.DemoWorldSummary]) -> None:
    out, summary = small_world
    expected = ["annotations.csv", "images", "taxonomy.yaml", "world.json"]
    assert sorted(p.name for p in out.iterdir()) == expected
    images = sorted(p.name for p in (out / "images").iterdir())
    assert images == [f"{i:06d}.png" for i in range(60)]
    with open(out / "annotations.csv", encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["image", "labels"] and [r[0] for r in rows[1:]] == images
    meta = json.loads((out / "world.json").read_text())
    assert meta["kind"] == WORLD_KIND and meta["seed"] == 3 and meta["n_images"] == 60
    assert meta["image_size"] == 48 and meta["generator_version"] == world_mod.GENERATOR_VERSION
    assert meta["label_counts"] == summary.label_counts
    assert is_demo_world(out) and not is_demo_world(out / "images")
    # No temporary folder is left next to the world.
    assert [p.name for p in out.parent.iterdir()] == ["world"]


def test_taxonomy_file_round_trips(small_world: tuple[Path, world_mod.DemoWorldSummary]) -> None:
    loaded = load_taxonomy(small_world[0] / "taxonomy.yaml")
    assert loaded.label_names == DEMO_TAXONOMY.label_names
    assert loaded.groups == DEMO_TAXONOMY.groups
    assert [s.prompt for s in loaded.labels] == [s.prompt for s in DEMO_TAXONOMY.labels]


def test_annotations_are_complete_and_known(small_world: tuple[Path, world_mod.DemoWorldSummary]) -> None:
    out, summary = small_world
    rows = read_demo_annotations(out)
    assert len(rows) == summary.n_images == 60
    order = {name: i for i, name in enumerate(DEMO_TAXONOMY.label_names)}
    for index, (image, labels) in enumerate(rows):
        assert (out / "images" / image).is_file()
        assert 1 <= len(labels) <= 4
        assert all(name in order for name in labels)
        # One entry per label, in taxonomy order, and exactly the labels drawn in the image.
        assert [order[n] for n in labels] == sorted({order[n] for n in labels})
        assert labels == demo_layout(index, seed=3).labels
    counts = {name: sum(name in labels for _, labels in rows) for name in order}
    assert counts == summary.label_counts
    assert summary.mean_labels_per_image == pytest.approx(sum(len(lbl) for _, lbl in rows) / 60)


def test_images_are_rgb_png_of_requested_size(small_world: tuple[Path, world_mod.DemoWorldSummary]) -> None:
    out, _ = small_world
    for path in sorted((out / "images").iterdir())[:20]:
        with Image.open(path) as img:
            assert img.format == "PNG" and img.mode == "RGB" and img.size == (48, 48)
            pixels = np.asarray(img)
        assert pixels.std() > 5  # not a blank canvas
    first = np.asarray(Image.open(out / "images" / "000000.png"))
    assert np.array_equal(first, render_demo_image(0, seed=3, image_size=48)[0])


def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path: Path) -> None:
    a = generate_demo_world(tmp_path / "a", n_images=25, seed=7, image_size=40)
    generate_demo_world(tmp_path / "b", n_images=25, seed=7, image_size=40)
    generate_demo_world(tmp_path / "c", n_images=25, seed=8, image_size=40)
    files_a, files_b, files_c = (tree_bytes(tmp_path / n) for n in "abc")
    assert len(files_a) == 25 + 3 and files_a == files_b
    assert files_a.keys() == files_c.keys()
    differing = [name for name in files_a if files_a[name] != files_c[name]]
    assert sum(name.startswith("images/") for name in differing) == 25
    assert "annotations.csv" in differing and a.seed == 7


def test_parallel_generation_matches_serial_bytes(tmp_path: Path) -> None:
    # 400 images is the smallest world that really uses two processes.
    generate_demo_world(tmp_path / "serial", n_images=400, seed=1, image_size=32, workers=1)
    generate_demo_world(tmp_path / "parallel", n_images=400, seed=1, image_size=32, workers=2)
    assert tree_bytes(tmp_path / "serial") == tree_bytes(tmp_path / "parallel")


def test_labels_do_not_depend_on_image_size() -> None:
    for index in range(10):
        small, labels_small = render_demo_image(index, seed=5, image_size=32)
        big, labels_big = render_demo_image(index, seed=5, image_size=96)
        assert labels_small == labels_big
        assert small.shape == (32, 32, 3) and big.shape == (96, 96, 3) and big.dtype == np.uint8


def test_labels_of_a_group_cooccur_more_than_across_groups(
    small_world: tuple[Path, world_mod.DemoWorldSummary],
) -> None:
    label_sets = [demo_layout(i, seed=0).labels for i in range(3000)]
    within, across = cooccurrence_stats(label_sets, DEMO_TAXONOMY)
    assert within > 3 * across > 0
    # Every label appears, the rarest at least a third as often as the commonest.
    counts = np.array([sum(name in s for s in label_sets) for name in DEMO_TAXONOMY.label_names])
    assert counts.min() > counts.max() / 3
    mean = np.mean([len(s) for s in label_sets])
    assert 1.7 < mean < 2.4
    summary = small_world[1]
    assert summary.cooccurrence_ratio == pytest.approx(
        summary.within_group_cooccurrence / summary.across_group_cooccurrence
    )
    assert summary.cooccurrence_ratio > 1.5


def test_cooccurrence_stats_counts_pairs() -> None:
    tax = DEMO_TAXONOMY
    a, b = tax.groups["shape"][:2]
    c = tax.groups["pattern"][0]
    within, across = cooccurrence_stats([(a, b), (a, b), (a, c)], tax)
    n_within = sum(len(m) * (len(m) - 1) // 2 for m in tax.groups.values())
    n_across = tax.num_labels * (tax.num_labels - 1) // 2 - n_within
    assert within == pytest.approx(2 / n_within) and across == pytest.approx(1 / n_across)


def test_every_label_drawer_paints_a_visible_object() -> None:
    size = 64 * SUPERSAMPLE
    rng = np.random.default_rng(0)
    for name, draw in DRAWERS.items():
        canvas = np.full((3, size, size), 0.5, dtype=np.float32)
        draw(canvas, Placement(cx=size / 2, cy=size / 2, r=size * 0.2, angle=0.3), rng)
        changed = np.abs(canvas - 0.5).max(axis=0) > 0.1
        assert changed.sum() > 0.015 * size * size, name
        ys, xs = np.nonzero(changed)  # stays within its placement circle (with anti-aliasing slack)
        assert np.hypot(xs + 0.5 - size / 2, ys + 0.5 - size / 2).max() <= size * 0.2 + 2, name


def test_refuses_existing_world_unless_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "w"
    generate_demo_world(out, n_images=5, seed=0, image_size=32)
    before = tree_bytes(out)
    with pytest.raises(UserError, match="already holds a demo world") as err:
        generate_demo_world(out, n_images=5, seed=1, image_size=32)
    assert "\n" not in str(err.value)
    assert tree_bytes(out) == before
    summary = generate_demo_world(out, n_images=7, seed=1, image_size=32, overwrite=True)
    assert summary.n_images == 7 and len(list((out / "images").iterdir())) == 7
    assert json.loads((out / "world.json").read_text())["seed"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["w"]  # the old world and temp folders are gone


def test_never_overwrites_a_folder_it_did_not_write(tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="other files"):
        generate_demo_world(other, n_images=3, overwrite=True)
    assert [p.name for p in other.iterdir()] == ["notes.txt"]
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(UserError, match="is a file"):
        generate_demo_world(a_file, n_images=3)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert generate_demo_world(empty, n_images=3, image_size=32).n_images == 3
    assert is_demo_world(empty)


def test_interrupted_run_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(world_mod, "_write_annotations", boom)
    with pytest.raises(KeyboardInterrupt):
        generate_demo_world(tmp_path / "w", n_images=4, image_size=32)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n_images": 0}, "n_images"),
        ({"n_images": -3}, "n_images"),
        ({"n_images": 2.5}, "n_images"),
        ({"n_images": True}, "n_images"),
        ({"image_size": 31}, "image_size"),
        ({"image_size": 257}, "image_size"),
        ({"image_size": "64"}, "image_size"),
        ({"seed": -1}, "seed"),
        ({"workers": 0}, "workers"),
    ],
)
def test_argument_validation(tmp_path: Path, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(UserError, match=message) as err:
        generate_demo_world(tmp_path / "w", **{"n_images": 2, **kwargs})  # type: ignore[arg-type]
    assert "\n" not in str(err.value)
    assert not (tmp_path / "w").exists()


def test_extreme_sizes_work(tmp_path: Path) -> None:
    for size in (32, 256):
        summary = generate_demo_world(tmp_path / str(size), n_images=2, image_size=size)
        with Image.open(tmp_path / str(size) / "images" / "000001.png") as img:
            assert img.size == (size, size)
        assert summary.image_size == size


def test_summary_to_dict_is_json_ready(small_world: tuple[Path, world_mod.DemoWorldSummary]) -> None:
    out, summary = small_world
    data = json.loads(json.dumps(summary.to_dict()))
    assert data["out_dir"] == str(out) and data["n_images"] == 60 and data["image_size"] == 48
    assert list(data["label_counts"]) == DEMO_TAXONOMY.label_names
    assert data["cooccurrence_ratio"] > 1.5
    assert len(summary.lines()) == 4 and str(out) in summary.lines()[0]


def test_accepts_numpy_integers_and_relative_dot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    summary = generate_demo_world(tmp_path / "np", n_images=np.int64(3), seed=np.int32(2), image_size=np.int64(32))
    assert (summary.n_images, summary.seed, summary.image_size) == (3, 2, 32)
    assert type(summary.n_images) is int
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    generate_demo_world("sub/..", n_images=2, image_size=32)  # an empty folder, named by ".."
    assert is_demo_world(here)


def test_world_folder_gets_normal_permissions(tmp_path) -> None:
    import os
    import stat

    generate_demo_world(tmp_path / "w", n_images=3, seed=0)
    mode = stat.S_IMODE(os.stat(tmp_path / "w").st_mode)
    umask = os.umask(0o022)
    os.umask(umask)
    assert mode == 0o777 & ~umask  # not the owner-only mode of a temporary folder
