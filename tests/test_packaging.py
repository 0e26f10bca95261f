"""The package installs as a wheel with its built-in data, and the CLI starts fast."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_listed_in_pyproject() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "hspnet_cli").rglob("__init__.py")}
    assert found <= listed, f"add to pyproject [tool.setuptools] packages: {sorted(found - listed)}"


def test_wheel_carries_builtins_and_finds_them_when_installed(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(ROOT),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "wheel"),
        ],
        check=True,
        capture_output=True,
    )
    wheel = next((tmp_path / "wheel").glob("*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for expected in (
        "hspnet_cli/_builtin_taxonomies/coco.yaml",
        "hspnet_cli/_builtin_taxonomies/cub.yaml",
        "hspnet_cli/model/model_configs/hspnet-tiny.json",
        "hspnet_cli/annotate/static/app.js",
        "hspnet_cli/annotate/static/index.html",
        "hspnet_cli/annotate/static/style.css",
    ):
        assert expected in names
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    # Run from an unrelated folder with only the installed copy on the path (not the checkout).
    code = (
        "import hspnet_cli, sys; from hspnet_cli.taxonomy import list_builtin, load_taxonomy;"
        "assert 'site' in hspnet_cli.__file__, hspnet_cli.__file__;"
        "print(list_builtin(), load_taxonomy('coco').num_labels)"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(target)!r}); {code}"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        text=True,
    )
    assert out.stdout.strip() == "['coco', 'cub', 'nuswide', 'voc'] 80"


def test_help_does_not_import_torch_or_faiss() -> None:
    code = (
        "import sys; from typer.testing import CliRunner; from hspnet_cli.cli import app;"
        "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0, r.output;"
        "heavy = [m for m in ('torch', 'faiss', 'open_clip', 'sklearn', 'pyarrow', 'ray', 'fsspec', 's3fs') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == ""
