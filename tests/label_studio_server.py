"""A real Label Studio server for the tests: its own venv, 127.0.0.1 only, a throwaway data dir.

Authentication is Label Studio 1.23's access-token flow: log in with the test user's
password (a browser session), create a personal access token (a JWT refresh token), and
exchange it for an access token that every API call sends as ``Authorization: Bearer``.
The database of a first start (migrations done, user and organisation created) is kept under
``~/.cache/hspnet/`` and copied into the next run's data dir, so later starts skip the
minutes of migrations; the projects of a run never reach it.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

EMAIL, PASSWORD = "reviewer@example.com", "hspnet-review-9f3k"
TEMPLATE = Path("~/.cache/hspnet/label-studio-1.23.2-template.sqlite3").expanduser()
DB_NAME = "label_studio.sqlite3"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LabelStudio:
    """A started server (``start``), its API (``api``), stopped by ``stop``."""

    def __init__(self, bin_dir: Path, data_dir: Path, files_root: Path) -> None:
        self.bin_dir, self.data_dir, self.files_root = bin_dir, data_dir, files_root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log = data_dir / "server.log"
        self.access = ""

    def start(self, wait: float = 900) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if TEMPLATE.is_file():
            shutil.copyfile(TEMPLATE, self.data_dir / DB_NAME)
        env = {
            **os.environ,
            "LABEL_STUDIO_BASE_DATA_DIR": str(self.data_dir),
            "LABEL_STUDIO_USERNAME": EMAIL,
            "LABEL_STUDIO_PASSWORD": PASSWORD,
            "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
            "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(self.files_root),
            "SENTRY_DSN": "",
            "FRONTEND_SENTRY_DSN": "",
            "COLLECT_ANALYTICS": "false",
        }
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [
                    str(self.bin_dir / "label-studio"),
                    "start",
                    "--no-browser",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--data-dir",
                    str(self.data_dir),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"label-studio exited ({self.proc.returncode}) while starting:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=5) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(2)
        else:
            raise RuntimeError(f"label-studio did not answer /health within {wait:.0f} s:\n{self.log_tail()}")
        if not TEMPLATE.is_file():
            self._keep_template()  # before a token exists: a user may hold only one personal access token
        self.access = self._access_token()

    def log_tail(self, lines: int = 25) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:]) if self.log.is_file() else ""

    def _access_token(self) -> str:
        jar = http.cookiejar.CookieJar()
        browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        browser.open(self.url + "/user/login/", timeout=60).read()

        def csrf() -> str:
            return next(c.value for c in jar if c.name == "csrftoken")

        form = urllib.parse.urlencode({"email": EMAIL, "password": PASSWORD, "csrfmiddlewaretoken": csrf()})
        browser.open(
            urllib.request.Request(
                self.url + "/user/login/", data=form.encode(), headers={"Referer": self.url + "/user/login/"}
            ),
            timeout=60,
        ).read()
        made = browser.open(
            urllib.request.Request(
                self.url + "/api/token/",
                data=b"{}",
                method="POST",
                headers={"Content-Type": "application/json", "X-CSRFToken": csrf(), "Referer": self.url + "/"},
            ),
            timeout=60,
        )
        refresh = json.loads(made.read())["token"]
        answer = urllib.request.urlopen(
            urllib.request.Request(
                self.url + "/api/token/refresh/",
                data=json.dumps({"refresh": refresh}).encode(),
                method="POST",
                headers={"Content-Type": "application/json"},
            ),
            timeout=60,
        )
        return json.loads(answer.read())["access"]

    def _keep_template(self) -> None:
        """Copy the migrated database (sqlite's backup API: consistent while the server runs)."""
        TEMPLATE.parent.mkdir(parents=True, exist_ok=True)
        tmp = TEMPLATE.with_suffix(f".{os.getpid()}.tmp")
        src, dst = sqlite3.connect(self.data_dir / DB_NAME), sqlite3.connect(tmp)
        try:
            src.backup(dst)
        finally:
            src.close()
            dst.close()
        os.replace(tmp, TEMPLATE)

    def api(self, method: str, path: str, body: Any = None, raw: bool = False) -> Any:
        """Call the REST API with the access token; JSON in and out (``raw``: the bytes)."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self.access}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=120) as r:
                payload = r.read()
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"{method} {path}: HTTP {exc.code}: {exc.read()[:600]!r}") from None
        return payload if raw else (json.loads(payload) if payload else None)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)  # the server's own process group (start_new_session)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
