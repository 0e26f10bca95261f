"""Full disks, read-only folders and failed writes: one line naming the path and what to do, no
temporary files left behind, and a run that can go on once space is freed.

Two ways of running out of space: a real tiny file system (a tmpfs mounted for the test: needs
root or CAP_SYS_ADMIN, as CI has; without it the test fails saying so) and an ENOSPC injected
at the Nth write (runs anywhere).
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import numpy as np
import pytest
from conftest import invoke

from hspnet_cli.core.io_utils import OutputError, atomic_write

PAGE = 4096


class TinyFs:
    """A mounted tmpfs of ``size`` bytes; :meth:`fill` leaves only ``free`` bytes, :meth:`free_up` undoes it."""

    def __init__(self, root: Path, size: int) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(root)], capture_output=True, text=True
        )
        if done.returncode != 0:
            pytest.fail(
                f"cannot mount a tmpfs for the disk-full test ({done.stderr.strip() or done.returncode}); "
                "run the tests as root (CI does) or with CAP_SYS_ADMIN",
                pytrace=False,
            )
        self.filler = root / f".filler-{uuid.uuid4().hex}"

    def fill(self, free: int) -> None:
        avail = shutil.disk_usage(self.root).free
        with open(self.filler, "ab") as fh:
            fh.write(b"\0" * max(0, avail - free))

    def free_up(self) -> None:
        self.filler.unlink(missing_ok=True)

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.root)], capture_output=True)


@pytest.fixture
def tiny_fs(tmp_path: Path):
    made: list[TinyFs] = []

    def mount(size: int = 4 << 20) -> TinyFs:
        fs = TinyFs(tmp_path / f"fs{len(made)}", size)
        made.append(fs)
        return fs

    yield mount
    for fs in made:
        fs.unmount()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith(".tmp") or ".partial-" in p.name)


def one_line(stderr: str) -> str:
    text = " ".join(stderr.split())
    assert text.startswith("error: ") and "Traceback" not in stderr, stderr
    return text


def test_split_on_a_full_disk(tiny_fs, runner, demo_split) -> None:
    fs = tiny_fs()
    fs.fill(free=2 * PAGE)
    out = fs.root / "sp"
    result = invoke(
        runner,
        "split",
        demo_split["world"] / "annotations.csv",
        "-t",
        demo_split["taxonomy"],
        "-o",
        out,
        "--val-fraction",
        "0.2",
    )
    assert result.exit_code == 2
    text = one_line(result.stderr)
    assert f"{out}: cannot write the split folder: no space left on the device" in text
    assert "then rerun the same command" in text and not out.exists() and leftovers(fs.root) == []
    fs.free_up()
    assert (
        invoke(
            runner,
            "split",
            demo_split["world"] / "annotations.csv",
            "-t",
            demo_split["taxonomy"],
            "-o",
            out,
            "--val-fraction",
            "0.2",
        ).exit_code
        == 0
    )


def test_train_whose_first_checkpoint_cannot_be_written_says_how_to_restart(tiny_fs, demo_split) -> None:
    from test_train import tiny

    from hspnet_cli.train.loop import train

    fs = tiny_fs(64 << 20)
    fs.fill(free=16 * PAGE)  # config.yaml fits, a checkpoint does not
    out = fs.root / "run"
    config = tiny(**{"train.epochs": 1})
    with pytest.raises(OutputError) as err:
        train(demo_split["split"], demo_split["images"], out, config, taxonomy=demo_split["taxonomy"], device="cpu")
    message = str(err.value)
    assert "\n" not in message and "no space left on the device" in message
    assert "no checkpoint was written yet" in message and "rerun the same hspnet train command" in message
    assert leftovers(fs.root) == [] and not (out / "last.ckpt").exists()
    fs.free_up()
    result = train(
        demo_split["split"], demo_split["images"], out, config, taxonomy=demo_split["taxonomy"], device="cpu"
    )  # the same command now runs
    assert result.best_epoch == 1 and (out / "last.ckpt").is_file()


def test_tag_on_a_full_disk_then_resumes_to_the_same_files(tiny_fs, demo_split, tmp_path: Path) -> None:
    from hspnet_cli.scoring.scorer import zero_shot
    from hspnet_cli.tagging.run import tag_images
    from hspnet_cli.taxonomy import load_taxonomy

    images = tmp_path / "imgs"
    images.mkdir()
    for p in sorted(demo_split["images"].glob("*.png"))[:60]:
        shutil.copy(p, images / p.name)
    scorer = zero_shot(load_taxonomy(demo_split["taxonomy"]), "hspnet-tiny", None)
    reference = tag_images(images, tmp_path / "ref" / "t.csv", scorer, batch_size=4, progress=False)
    fs = tiny_fs()
    fs.fill(free=8 * PAGE)
    out = fs.root / "t.csv"
    with pytest.raises(OutputError) as err:
        tag_images(images, out, scorer, batch_size=4, progress=False)
    message = str(err.value)
    assert "\n" not in message and "no space left on the device" in message and "continues" in message
    assert leftovers(fs.root) == []
    fs.free_up()
    again = tag_images(images, out, scorer, batch_size=4, progress=False)
    assert again.rows == reference.rows == 60 and again.resumed_from > 0
    for name in ("t.csv", "t.emb.f32", "t.failed.csv"):
        assert (fs.root / name).read_bytes() == (tmp_path / "ref" / name).read_bytes()


def test_index_build_on_a_full_disk(tiny_fs, tmp_path: Path) -> None:
    from index_helpers import random_unit, write_tags

    from hspnet_cli.index.build import build_index

    write_tags(tmp_path / "t.csv", random_unit(3000, dim=64))
    fs = tiny_fs()
    fs.fill(free=4 * PAGE)
    with pytest.raises(OutputError) as err:
        build_index(tmp_path / "t.csv", fs.root / "t.faiss")
    assert str(err.value).startswith(f"{fs.root / 't.faiss'}: cannot write the index: no space left on the device")
    assert leftovers(fs.root) == [] and not (fs.root / "t.faiss").exists()


def test_read_only_output_folder_is_one_line(runner, tmp_path: Path, demo_split) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,ro", "tmpfs", str(folder)], check=False)
    try:
        if not os.path.ismount(folder):  # not root: permissions show the same path
            folder.chmod(0o500)
        result = invoke(
            runner, "split", demo_split["world"] / "annotations.csv", "-t", demo_split["taxonomy"], "-o", folder / "sp"
        )
        text = one_line(result.stderr)
        assert result.exit_code == 2 and str(folder / "sp") in text
        assert "read-only file system" in text or "permission denied" in text
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)
        folder.chmod(0o700)


class FailingFile:
    """Wraps a binary file: the Nth ``write`` raises ENOSPC (after writing half of its bytes)."""

    def __init__(self, inner, fail_at: int, counter: list[int]) -> None:
        self.inner, self.fail_at, self.counter = inner, fail_at, counter

    def write(self, data) -> int:
        self.counter[0] += 1
        if self.counter[0] == self.fail_at:
            self.inner.write(bytes(data)[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self.inner.write(data)

    def __getattr__(self, name):
        return getattr(self.inner, name)


@pytest.mark.parametrize("nth", [1, 3, 7])
def test_injected_enospc_at_the_nth_tag_write_then_resume(demo_split, tmp_path: Path, monkeypatch, nth: int) -> None:
    from hspnet_cli.scoring.scorer import zero_shot
    from hspnet_cli.tagging.run import tag_images
    from hspnet_cli.tagsfile.writer import TagWriter
    from hspnet_cli.taxonomy import load_taxonomy

    images = tmp_path / "imgs"
    images.mkdir()
    for p in sorted(demo_split["images"].glob("*.png"))[:20]:
        shutil.copy(p, images / p.name)
    scorer = zero_shot(load_taxonomy(demo_split["taxonomy"]), "hspnet-tiny", None)
    tag_images(images, tmp_path / "ref.csv", scorer, batch_size=4, progress=False)
    real_open, counter = TagWriter._open, [0]

    def failing_open(self) -> None:
        real_open(self)
        self._files = {k: FailingFile(fh, nth, counter) for k, fh in self._files.items()}

    monkeypatch.setattr(TagWriter, "_open", failing_open)
    with pytest.raises(OutputError, match="no space left on the device"):
        tag_images(images, tmp_path / "t.csv", scorer, batch_size=4, progress=False)
    monkeypatch.setattr(TagWriter, "_open", real_open)
    tag_images(images, tmp_path / "t.csv", scorer, batch_size=4, progress=False)
    for suffix in (".csv", ".emb.f32", ".failed.csv"):
        assert (tmp_path / f"t{suffix}").read_bytes() == (tmp_path / f"ref{suffix}").read_bytes()


def test_injected_enospc_in_atomic_write_removes_the_temp_file(tmp_path: Path) -> None:
    with pytest.raises(OutputError) as err:
        with atomic_write(tmp_path / "x.json") as fh:
            fh.write("{}")
            raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))
    assert str(err.value).startswith(f"{tmp_path / 'x.json'}: cannot write the output: disk quota exceeded")
    assert list(tmp_path.iterdir()) == []
    np.testing.assert_equal(len(str(err.value).splitlines()), 1)
