"""Virtual environments for the real labeling tools the tests run against.

Each tool gets its own venv under ``~/.cache/hspnet/venvs/`` (``HSPNET_TOOL_VENVS`` overrides),
never the project's: their pins (Label Studio's Django stack, datumaro's pandas, FiftyOne's
many) would fight ours. ``make test`` runs this file first (``python tests/tool_venvs.py``) so
the minutes of installing happen once, before pytest; the test fixtures call :func:`ensure`
too, which is instant once a venv is ready (a stamp file records the check that passed).

A tool that cannot be installed raises :class:`ToolUnavailable` with pip's last lines; the
tests turn that into a failure that says why, never a skip.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Tool:
    folder: str
    requirements: tuple[str, ...]
    check: str


TOOLS = {
    "label-studio": Tool("label-studio-1.23.2", ("label-studio==1.23.2",), "import label_studio"),
    "datumaro": Tool("datumaro-1.13.12", ("datumaro==1.13.12",), "import datumaro"),
    # FiftyOne's importers parse a dataset folder without its database (MongoDB), which its
    # fiftyone-db package downloads from mongodb.org at install time: not from a registry.
    "fiftyone": Tool("fiftyone-1.22.1", ("fiftyone==1.22.1",), "import fiftyone.utils.data"),
}


class ToolUnavailable(RuntimeError):
    """A tool's venv could not be made; the message says why."""


def venvs_root() -> Path:
    return Path(os.environ.get("HSPNET_TOOL_VENVS", "~/.cache/hspnet/venvs")).expanduser()


def ensure(name: str, timeout: float = 1800) -> Path:
    """The ``bin/`` folder of ``name``'s venv, created and installed when needed.

    Raises:
        ToolUnavailable: venv creation, pip install or the import check failed (with the output's tail).
    """
    tool = TOOLS[name]
    folder = venvs_root() / tool.folder
    stamp = folder / ".hspnet-ready"
    python = folder / "bin" / "python"
    if stamp.is_file() and python.exists():
        return python.parent
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{tool.folder}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # make test and a pytest run may race for the same venv
        if stamp.is_file() and python.exists():
            return python.parent
        steps = []
        if not python.exists():
            steps.append([sys.executable, "-m", "venv", str(folder)])
        steps.append([str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", *tool.requirements])
        steps.append([str(python), "-c", tool.check])
        for cmd in steps:
            try:
                done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
            except subprocess.TimeoutExpired:
                raise ToolUnavailable(f"{' '.join(cmd[:4])}... ran past {timeout:.0f} s") from None
            if done.returncode != 0:
                tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-12:])
                raise ToolUnavailable(f"{name}: '{' '.join(cmd)}' failed (exit {done.returncode}):\n{tail}")
        stamp.write_text(" ".join(tool.requirements) + "\n", encoding="utf-8")
    return python.parent


if __name__ == "__main__":
    for tool_name in sys.argv[1:] or TOOLS:
        try:
            print(f"{tool_name}: {ensure(tool_name)}", flush=True)
        except ToolUnavailable as exc:
            print(f"{tool_name}: NOT AVAILABLE: {exc}", file=sys.stderr, flush=True)
    # Exit 0 regardless: the tests that need a missing tool fail with this reason themselves,
    # and the rest of the suite still runs.
    sys.exit(0)
