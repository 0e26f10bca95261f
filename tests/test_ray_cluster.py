"""``hspnet tag --engine ray`` on a real two-node Ray cluster on this machine.

Head and second node (``--num-cpus 1`` each) and the hspnet client run inside
``unshare --net`` (only ``lo`` up: Ray's node address is 127.0.0.1 and nothing leaves loopback)
and a pid namespace (teardown touches only these processes); tests/ray_cluster.sh does the
runs and this test checks what they wrote: equality with ``--engine local`` for a folder and for
the same images as tar shards, a run whose client is killed -9 and rerun doing only the rest,
and a run during which the second node's raylet is killed -9 ending with every image exactly once.
Needs root (for unshare), as the test machines run the suite.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from scaling_helpers import ROOT, pack_shards, read_parts, tiny_model  # noqa: F401 - fixture


def test_ray_cluster_equals_local_survives_a_dead_node_and_resumes(demo_split, tiny_model, tmp_path: Path) -> None:
    from hspnet_cli.cluster.source_run import tag_source
    from hspnet_cli.scoring.scorer import load_scorer

    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        raise RuntimeError(
            "this test runs a Ray cluster in a network namespace: run the suite as root with "
            "unshare and ip (util-linux, iproute2) installed"
        )
    ray_bin = Path(sys.executable).with_name("ray")
    if not ray_bin.is_file():
        raise RuntimeError(f"{ray_bin} missing: install the test extra (it brings ray[data])")
    images = demo_split["images"]
    small = tmp_path / "small"
    small.mkdir()
    files = sorted(images.glob("*.png"))[:24]
    for f in files:
        shutil.copy(f, small / f.name)
    pack_shards(files, tmp_path / "shards", per_shard=10)
    pattern = f"{tmp_path}/shards/{{000000..000002}}.tar"
    work = tmp_path / "work"
    work.mkdir()
    env = {
        **os.environ,
        "PY": sys.executable,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(
        [
            "unshare",
            "--net",
            "--pid",
            "--fork",
            "--mount-proc",
            "bash",
            str(Path(__file__).with_name("ray_cluster.sh")),
            str(work),
            str(tiny_model),
            str(images),
            str(small),
            pattern,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )

    def log(name: str) -> str:
        p = work / name
        return p.read_text()[-3000:] if p.is_file() else f"({name} missing)"

    assert proc.returncode == 0, proc.stderr + log("head.log") + log("node2.log")

    def summary_of(name: str) -> dict:
        text = (work / f"{name}.json").read_text() if (work / f"{name}.json").is_file() else ""
        assert text.strip(), f"{name}: no summary; exit {log(name + '.rc')}; its log: {log(name + '.log')}"
        return json.loads(text)

    cpus, nodes, address = (work / "cluster.txt").read_text().split()
    assert (cpus, nodes, address) == ("2", "2", "127.0.0.1")

    scorer = load_scorer(tiny_model)
    for name, source in (("folder", small), ("shards", pattern)):
        assert (work / f"{name}.rc").read_text().strip() == "0", log(f"{name}.log")
        tag_source(source, tmp_path / f"local-{name}", scorer, block_size=8, progress=False)
        local, ray = read_parts(tmp_path / f"local-{name}"), read_parts(work / name)
        assert sorted(ray) == sorted(local) and len(ray) == 24
        for k in local:
            np.testing.assert_allclose(ray[k], local[k], atol=1e-5)
    assert sorted(read_parts(work / "shards"))[0] == f"000000.tar#{files[0].name}"

    # Killed client, rerun: only the blocks without a part were done.
    everything = read_parts_local(scorer, images, tmp_path)
    before = int((work / "resumed.before").read_text())
    summary = summary_of("resumed")
    assert (work / "resumed.rc").read_text().strip() == "0", log("resumed.log")
    assert before >= 3 and summary["blocks"]["done_before"] >= before
    assert summary["processed"] == 120 - 6 * summary["blocks"]["done_before"] and summary["rows"] == 120
    assert_same(read_parts(work / "resumed"), everything)

    # The second node's raylet killed mid-run: the job still ends with every image exactly once.
    assert (work / "killed.done").is_file(), "the run ended before the raylet could be killed"
    assert (work / "killed.rc").read_text().strip() == "0", log("killed.log")
    killed = summary_of("killed")
    assert killed["rows"] == 120 and killed["blocks"]["missing"] == 0
    assert_same(read_parts(work / "killed"), everything)


def read_parts_local(scorer, images: Path, tmp_path: Path) -> dict:
    from hspnet_cli.cluster.source_run import tag_source

    tag_source(images, tmp_path / "local-all", scorer, block_size=6, progress=False)
    return read_parts(tmp_path / "local-all")


def assert_same(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], atol=1e-5)
