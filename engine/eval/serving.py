"""Running the service as a real process on loopback: for the benchmark, stress and hostile scripts and the
end-to-end tests (not part of the installed package)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(
    index_dir: Path, *extra: str, env: dict[str, str] | None = None, start_new_session: bool = False
) -> dict:
    """Start scripts/serve.py on a free loopback port and wait until /ready answers 200 (``start_new_session``:
    in its own process group, which one signal to the group reaches whole, workers included)."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            str(PROJECT / "scripts" / "serve.py"),
            "--index-dir",
            str(index_dir),
            "--port",
            str(port),
            "--log-level",
            "warning",
            *extra,
        ],
        cwd=PROJECT,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
        start_new_session=start_new_session,
    )
    base = f"http://127.0.0.1:{port}"
    ready = wait_until(lambda: process.poll() is not None or fetch_status(base + "/ready") == 200, timeout=90)
    if not ready or process.poll() is not None:
        process.kill()
        raise RuntimeError(f"serve.py did not become ready on {base} (exit code {process.poll()})")
    return {"process": process, "base": base}


def stop_server(server: dict) -> None:
    server["process"].terminate()
    try:
        server["process"].wait(timeout=20)
    except subprocess.TimeoutExpired:
        server["process"].kill()


def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


def fetch_bytes(url: str) -> bytes:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


def fetch_json(url: str) -> dict:
    return json.loads(fetch_bytes(url))


def fetch_status(url: str) -> int:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def every_worker(
    base: str, workers: int, condition: Callable[[dict], bool], timeout: float = 30
) -> dict[int, dict] | None:
    """The ``/ready`` answer of each of ``workers`` worker processes once each answered one that meets
    ``condition`` (None: not within ``timeout``). Each look sends ``2 * workers`` requests at once over fresh
    connections, since the kernel may hand several in a row to one worker."""
    import urllib.request
    from concurrent.futures import ThreadPoolExecutor

    found: dict[int, dict] = {}

    def ask(_: int) -> None:
        with urllib.request.urlopen(f"{base}/ready", timeout=5) as response:
            ready = json.loads(response.read())
        if condition(ready):
            found.setdefault(ready["worker"], ready)

    deadline = time.monotonic() + timeout
    with ThreadPoolExecutor(2 * workers) as pool:
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):  # a worker still starting
                list(pool.map(ask, range(2 * workers)))
            if len(found) >= workers:
                return found
            time.sleep(0.01)
    return None


def serving_lag(found: dict[int, dict] | None, since: float) -> float | None:
    """Seconds from ``since`` (Unix time) until the last of the workers ``found`` began serving what it
    reported (0 for one that served it before; None when they were not found)."""
    if found is None:
        return None
    return max(0.0, max(ready["serving_since"] for ready in found.values()) - since)
