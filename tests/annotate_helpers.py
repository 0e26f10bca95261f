"""Real `hspnet annotate` servers (subprocesses) and headless Debian Chromium for the annotate tests."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

INSTALL = "apt-get update && apt-get install -y chromium chromium-driver (make test does this when run as root)"
CHROME_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1440,900",
]


class Server:
    """An `hspnet annotate` subprocess; `url`, `token`, `port` come from its --json announcement."""

    def __init__(
        self,
        images: Path,
        taxonomy: Path | str,
        out: Path,
        *extra: str,
        token: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        args = [
            sys.executable,
            "-m",
            "hspnet_cli",
            "annotate",
            str(images),
            "-t",
            str(taxonomy),
            "-o",
            str(out),
            "--port",
            "0",
            "--json",
            "--annotator",
            "tester",
            *extra,
        ]
        if token:
            args += ["--token", token]
        self.log = tempfile.NamedTemporaryFile("w+", suffix=".server.log", delete=False)
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=self.log, text=True, env={**os.environ, **(env or {})}
        )
        text = ""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            text += line
            if line.startswith("}"):
                break
        try:
            self.info = json.loads(text)
        except ValueError:
            self.proc.kill()
            self.log.seek(0)
            raise AssertionError(f"server did not start: {text!r} {self.log.read()}") from None
        self.url, self.token, self.port = self.info["url"], self.info["token"], self.info["port"]
        self.base = f"http://127.0.0.1:{self.port}"
        self._wait_listening()

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                self.get("/api/config")
                return
            except OSError:
                time.sleep(0.1)
        raise AssertionError("server never answered")

    def get(self, path: str, token: bool = True) -> tuple[int, bytes]:
        request = urllib.request.Request(self.base + path, headers={"X-HSPNet-Token": self.token} if token else {})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def post(self, path: str, body: dict) -> tuple[int, dict]:
        request = urllib.request.Request(
            self.base + path,
            data=json.dumps(body).encode(),
            method="POST",
            headers={"X-HSPNet-Token": self.token, "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs (what a crash or the OOM killer does)."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def chromium_paths() -> tuple[str, str]:
    """(chromium binary, chromedriver); fails the test (never skips) with the install command."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver") or (
        "/usr/lib/chromium/chromedriver" if os.path.exists("/usr/lib/chromium/chromedriver") else None
    )
    if not binary or not driver:
        raise AssertionError(f"the annotate browser tests need Debian's Chromium and its driver: {INSTALL}")
    return binary, driver


def start_browser(tmp: Path):  # type: ignore[no-untyped-def]
    """A headless Chromium driven by selenium (its own profile under ``tmp``)."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        raise AssertionError("selenium is missing: pip install -e '.[test]' (make test installs it)") from None
    binary, driver = chromium_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in CHROME_FLAGS + [f"--user-data-dir={tmp / 'chromium-profile'}"]:
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)


def wait_for(browser, predicate, timeout: float = 30.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    """Poll ``predicate(browser)`` until truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate(browser)
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(
        f"timed out waiting for {what}; page state {browser.execute_script('return document.body.dataset')}"
    )


def shown_image(browser) -> str | None:  # type: ignore[no-untyped-def]
    """The image the page shows and accepts answers for, or None while it loads."""
    data = browser.execute_script("return document.body.dataset")
    return data.get("image") if data.get("state") == "ready" else None


def wait_new_image(browser, previous: str | None, timeout: float = 30.0) -> str:  # type: ignore[no-untyped-def]
    """Wait until the page shows an image other than ``previous``; return it."""
    return wait_for(
        browser, lambda b: (img := shown_image(b)) and img != previous and img, timeout, f"an image after {previous}"
    )


def wait_saved(browser, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    """Wait until every answer the page sent has been acknowledged (written and fsync'ed)."""
    wait_for(
        browser,
        lambda b: b.execute_script("return document.body.dataset.pending") == "0",
        timeout,
        "answers to be saved",
    )


def log_events(path: Path) -> list[dict]:
    """The labels log's events (header dropped)."""
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    assert lines[0]["format"] == "hspnet-annotate"
    return lines[1:]
