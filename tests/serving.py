"""Helpers for the service tests: the serve extra or a browser may be absent, except where CI requires them."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from sora_search import Library
from sora_search.serve import missing

REQUIRED = os.environ.get("SORA_SEARCH_REQUIRE_BROWSER", "") not in ("", "0")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

needs_serve = pytest.mark.skipif(bool(missing()) and not REQUIRED,
                                 reason=f"the serve extra is not installed ({', '.join(missing())})")


def browser_missing() -> str:
    import importlib.util

    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is not installed"
    return "" if os.path.exists(CHROMIUM) else f"no chromium at {CHROMIUM} (apt-get install chromium)"


needs_browser = pytest.mark.skipif(bool(missing() or browser_missing()) and not REQUIRED,
                                   reason=f"needs the serve extra and a browser: {browser_missing() or missing()}")


def build_index(media_dir: Path, root: Path) -> Path:
    """A tiny-encoder index over a copy of the test library, under ``root``."""
    lib_dir = root / "library"
    shutil.copytree(media_dir / "library", lib_dir)
    idx = root / "idx"
    with Library.open(idx, encoder="tiny") as lib:
        lib.index([lib_dir])
    return idx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def server(idx: Path, *args: str, env: dict[str, str] | None = None, tmpdir: Path | None = None) -> Iterator[str]:
    """``sora-search serve`` as a real process on 127.0.0.1 and a free port; its base URL, then it is stopped."""
    import httpx

    port = free_port()
    environ = dict(os.environ, **(env or {}))
    if tmpdir is not None:
        environ["TMPDIR"] = str(tmpdir)
    proc = subprocess.Popen([sys.executable, "-m", "sora_search", "serve", "--index", str(idx), "--port", str(port),
                             *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=environ)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                out = proc.stdout.read().decode() if proc.stdout else ""
                raise AssertionError(f"serve exited {proc.returncode}: {out}")
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("serve did not answer /healthz within 60 s")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
