"""``hspnet tag`` on a folder of odd files: every extension Pillow opens is found, every file is
accounted for (tagged, failed or skipped by extension), and decoder chatter goes to the
decode log with the image named, never to the terminal."""

from __future__ import annotations

import ctypes
import glob
import io
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, TiffImagePlugin

from hspnet_cli.sources.discover import discover_images, image_extensions


def tiff16_with_unknown_tag(path: Path, past_eof: bool = True, ascii_without_nul: bool = False) -> None:
    """A 16-bit greyscale TIFF with an unknown tag (65000) whose value lies past the end of the
    file (Pillow warns "Truncated File Read"), or with a Software tag missing its NUL (what
    libtiff reports as "TIFFFetchNormalTag: Warning, ASCII value ... does not end in null byte")."""
    arr = (np.arange(48 * 40).reshape(40, 48) * 30).astype(np.uint16)
    info = TiffImagePlugin.ImageFileDirectory_v2()
    info[65000] = "an unknown tag with a long value"
    info.tagtype[65000] = 2
    info[305] = "hspnet-test-software"
    Image.fromarray(arr).save(path, tiffinfo=info, compression="tiff_adobe_deflate")
    data = bytearray(path.read_bytes())
    ifd = struct.unpack_from("<I", data, 4)[0]
    for k in range(struct.unpack_from("<H", data, ifd)[0]):
        at = ifd + 2 + 12 * k
        if struct.unpack_from("<H", data, at)[0] == 65000 and past_eof:
            struct.pack_into("<I", data, at + 8, len(data) + 1000)
    if ascii_without_nul:
        i = data.index(b"hspnet-test-software\0")
        data[i + len("hspnet-test-software")] = ord("!")
    path.write_bytes(bytes(data))


def odd_folder(root: Path, source: Path) -> dict[str, str]:
    """Odd images and non-images; -> name: what should become of it (tagged, failed, skipped)."""
    root.mkdir(parents=True)
    rgb = Image.open(source).convert("RGB")
    expected = {}
    for name, fmt in (
        ("a.ppm", "PPM"),
        ("b.PGM", "PPM"),
        ("c.pbm", "PPM"),
        ("d.tga", "TGA"),
        ("e.ico", "ICO"),
        ("f.pcx", "PCX"),
        ("g.sgi", "SGI"),
        ("h.dds", "DDS"),
        ("i.jpeg", "JPEG"),
    ):
        image = rgb.convert("L") if name.lower().endswith((".pgm", ".pbm")) else rgb
        image = image.convert("1") if name.endswith(".pbm") else image
        image.save(root / name, fmt)
        expected[name] = "tagged"
    tiff16_with_unknown_tag(root / "sixteen.tif")
    expected["sixteen.tif"] = "tagged"
    buf = io.BytesIO()
    rgb.save(buf, "JPEG")
    (root / "cut.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    expected["cut.jpg"] = "failed"
    (root / "fake.png").write_text("not a png")
    expected["fake.png"] = "failed"
    for name in ("notes.txt", "meta.json", "README", "clip.mpg", ".DS_Store"):
        (root / name).write_bytes(b"\0" * 10)
        expected[name] = "skipped"
    return expected


def test_discovery_finds_every_extension_pillow_opens_and_counts_the_rest(demo_split, tmp_path: Path) -> None:
    exts = image_extensions()
    assert {".ppm", ".pgm", ".pbm", ".pnm", ".tga", ".ico", ".tif", ".jpg", ".webp", ".psd"} <= exts
    assert not {".mpg", ".mpeg", ".h5", ".pdf", ".txt"} & exts
    expected = odd_folder(tmp_path / "odd", next(demo_split["images"].glob("*.png")))
    from collections import Counter

    skipped: Counter = Counter()
    found = list(discover_images(tmp_path / "odd", skipped))
    assert sorted(found) == sorted(n for n, what in expected.items() if what != "skipped")
    assert skipped == {".txt": 1, ".json": 1, "(none)": 2, ".mpg": 1}


def test_odd_folder_through_the_real_cli_prints_a_few_lines_and_accounts_for_every_file(
    demo_split, tmp_path: Path
) -> None:
    expected = odd_folder(tmp_path / "odd", next(demo_split["images"].glob("*.png")))
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", ""), "COLUMNS": "200"}
    args = [
        sys.executable,
        "-m",
        "hspnet_cli",
        "tag",
        str(tmp_path / "odd"),
        "--out",
        str(tmp_path / "t.csv"),
        "--zero-shot",
        "-t",
        str(demo_split["taxonomy"]),
        "--clip-model",
        "hspnet-tiny",
        "--pretrained",
        "none",
        "--workers",
        "1",
        "--device",
        "cpu",
    ]
    done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert done.returncode == 1, done.stderr  # two files failed
    assert len(lines) <= 6, "\n".join(lines)
    text = " ".join(" ".join(lines).split())
    assert "Truncated File Read" not in text and "Warning" not in text.replace("randomly initialised", "")
    assert "skipped 5 file(s) that are not images Pillow opens: (none) 2, .json 1, .mpg 1, .txt 1" in text
    assert "decoder message(s) about 1 image(s)" in text
    tagged = [r.split(",")[0] for r in (tmp_path / "t.csv").read_text().splitlines()[1:]]
    failed = [r.split(",")[0] for r in (tmp_path / "t.failed.csv").read_text().splitlines()[1:]]
    assert sorted(tagged) == sorted(n for n, w in expected.items() if w == "tagged")
    assert sorted(failed) == sorted(n for n, w in expected.items() if w == "failed")
    log = (tmp_path / "t.decode.log").read_text().splitlines()
    assert log and all(line.split("\t")[0] == "sixteen.tif" for line in log)
    assert any(line.split("\t")[1:] == ["warning", "UserWarning: Truncated File Read"] for line in log)
    # (a rebuilt random model is another model: the rerun starts over)
    summary = subprocess.run([*args, "--json", "--overwrite"], capture_output=True, text=True, env=env, timeout=300)
    data = json.loads(summary.stdout)
    assert data["skipped"] == {"(none)": 2, ".json": 1, ".mpg": 1, ".txt": 1}
    assert data["rows"] + data["failed"] + sum(data["skipped"].values()) == len(expected)


class CLevelWarning:
    """A transform that, for the 48 x 40 TIFF, writes a libtiff-style warning with C's stdio
    ``fprintf(stderr, ...)``, exactly how libtiff's default warning handler writes. (A real
    libtiff warning cannot be provoked in this process: Pillow 13 replaces libtiff's handler
    when PIL is imported, and the test below checks that only in a process without PIL.)"""

    MESSAGE = b'TIFFFetchNormalTag: Warning, ASCII value for tag "Software" does not end in null byte.\n'

    def __init__(self, inner) -> None:
        self.inner = inner

    def __call__(self, image):
        if image.size == (48, 40):
            libc = ctypes.CDLL(None)
            stderr = ctypes.c_void_p.in_dll(libc, "stderr")
            libc.fprintf(stderr, self.MESSAGE)
            libc.fflush(stderr)
        return self.inner(image)


@pytest.mark.parametrize("workers", [0, 1])
def test_c_level_decoder_warnings_go_to_the_log_not_to_fd_2(demo_split, tmp_path: Path, capfd, workers: int) -> None:
    import dataclasses

    from hspnet_cli.scoring.scorer import zero_shot
    from hspnet_cli.tagging.run import tag_images
    from hspnet_cli.taxonomy import load_taxonomy

    root = tmp_path / "imgs"
    root.mkdir()
    tiff16_with_unknown_tag(root / "chatty.tif", past_eof=False, ascii_without_nul=True)
    Image.open(next(demo_split["images"].glob("*.png"))).save(root / "quiet.png")
    scorer = zero_shot(load_taxonomy(demo_split["taxonomy"]), "hspnet-tiny", None)
    scorer = dataclasses.replace(scorer, transform=CLevelWarning(scorer.transform))
    capfd.readouterr()
    summary = tag_images(root, tmp_path / "t.csv", scorer, workers=workers, progress=False)
    err = capfd.readouterr().err
    assert summary.rows == 2 and "TIFFFetchNormalTag" not in err
    log = (tmp_path / "t.decode.log").read_text().splitlines()
    assert any(
        line.startswith("chatty.tif\tstderr\tTIFFFetchNormalTag: Warning, ASCII value for tag") for line in log
    ), log
    assert summary.decoder_images == 1 and summary.decoder_messages == len(log)
    print("still on the terminal", file=sys.stderr)  # fd 2 was given back
    assert "still on the terminal" in capfd.readouterr().err


def test_the_crafted_tiff_really_makes_libtiff_warn(tmp_path: Path) -> None:
    """The file of the test above provokes the real libtiff warning (in a process without PIL)."""
    import PIL

    tiff16_with_unknown_tag(tmp_path / "chatty.tif", past_eof=False, ascii_without_nul=True)
    found = glob.glob(os.path.join(os.path.dirname(PIL.__file__), "..", "pillow.libs", "libtiff*.so*"))
    found = found or glob.glob("/usr/lib/*/libtiff.so*")
    assert found, "no libtiff shared library beside Pillow or in /usr/lib: cannot check the crafted file"
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import ctypes,sys; l=ctypes.CDLL(sys.argv[1]); "
            "l.TIFFOpen.restype=ctypes.c_void_p; l.TIFFOpen(sys.argv[2].encode(), b'r')",
            found[0],
            str(tmp_path / "chatty.tif"),
        ],
        capture_output=True,
        text=True,
    )
    assert "TIFFFetchNormalTag: Warning, ASCII value for tag" in probe.stderr, probe.stderr
