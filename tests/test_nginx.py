"""The nginx front of docs/deploy.md, for real: Debian's nginx, with the snippet as the doc gives it (only the
listening address, the upstream port and the cache folder changed), in front of the real service."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import PROJECT_ROOT
from tests.test_e2e import SEED, Server

pytestmark = pytest.mark.model
DOC = PROJECT_ROOT / "docs" / "deploy.md"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def nginx_config(folder: Path, listen: int, upstream: int) -> Path:
    (snippet,) = re.findall(r"```nginx\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
    snippet = snippet.replace("listen 443 ssl;", f"listen 127.0.0.1:{listen};")
    snippet = snippet.replace("server 127.0.0.1:8000;", f"server 127.0.0.1:{upstream};")
    snippet = snippet.replace("/var/cache/nginx/related", str(folder / "cache"))
    temp = folder / "temp"
    temp.mkdir()
    config = folder / "nginx.conf"
    user = "user root;\n" if os.geteuid() == 0 else ""
    config.write_text(
        f"""{user}worker_processes 1;
pid {folder / "nginx.pid"};
error_log {folder / "error.log"} warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {temp};
    proxy_temp_path {temp};
    fastcgi_temp_path {temp};
    uwsgi_temp_path {temp};
    scgi_temp_path {temp};
{snippet}
}}
""",
        encoding="utf-8",
    )
    return config


def test_nginx_caches_by_the_services_validators(demo_index: Path, tmp_path: Path) -> None:
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if nginx is None:
        pytest.skip("no nginx on this machine: install Debian's nginx (make test does, as root)")
    server = Server(demo_index, "--no-model", env={"RCE_CACHE_MAX_AGE": "1"})
    port = free_port()
    config = nginx_config(tmp_path, port, int(server.base.rsplit(":", 1)[1]))
    checked = subprocess.run([nginx, "-t", "-c", str(config), "-p", str(tmp_path)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    front = subprocess.Popen([nginx, "-c", str(config), "-p", str(tmp_path), "-g", "daemon off;"])
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(base + "/health", timeout=2)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, (tmp_path / "error.log").read_text()
                time.sleep(0.1)
        url = f"{base}/v1/publications/{SEED}/related?k=4"
        first, second = httpx.get(url), httpx.get(url)
        assert first.headers["cache-control"] == "public, max-age=1", first.headers
        assert (first.status_code, first.headers["x-cache-status"]) == (200, "MISS")
        assert (second.headers["x-cache-status"], second.content) == ("HIT", first.content)
        # The service's max-age (1 s here) over: nginx answers at once from its stale copy and asks the service
        # in the background with the ETag, which answers 304 (no body); the copy is fresh again.
        not_modified = 'rce_response_cache_total{result="not_modified"}'

        def revalidations() -> float:
            lines = httpx.get(server.base + "/metrics").text.splitlines()
            return sum(float(line.split()[-1]) for line in lines if line.startswith(not_modified))

        before = revalidations()
        time.sleep(2.5)  # nginx counts whole seconds
        third = httpx.get(url)
        assert (third.headers["x-cache-status"], third.content) == ("STALE", first.content)
        deadline = time.monotonic() + 10
        while revalidations() == before:
            assert time.monotonic() < deadline, "nginx did not revalidate with If-None-Match"
            time.sleep(0.1)
        assert httpx.get(url).headers["x-cache-status"] == "HIT"
        # The proxy's request id reaches the service and comes back.
        assert re.fullmatch(r"[0-9a-f]{32}", first.headers["x-request-id"])
        fragment = httpx.get(f"{base}/publications/{SEED}/related.html?locale=ar")  # the old path too
        assert fragment.status_code == 200 and fragment.headers["x-cache-status"] == "MISS"
        assert httpx.get(base + "/metrics").status_code == 200  # from this host
    finally:
        front.terminate()
        front.wait(timeout=10)
        server.stop()
