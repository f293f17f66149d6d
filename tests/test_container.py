"""The container files: the Dockerfile linted by hadolint, compose.yaml checked, and a real build and run
only where a container engine runs (there is none on this project's machines: the test says so and skips)."""

from __future__ import annotations

import re
import shutil
import subprocess
import time

import httpx
import pytest
import yaml

from tests.conftest import PROJECT_ROOT

DOCKERFILE = PROJECT_ROOT / "Dockerfile"
COMPOSE = PROJECT_ROOT / "compose.yaml"


def test_dockerfile_lints_clean() -> None:
    hadolint = shutil.which("hadolint") or str(PROJECT_ROOT / ".venv" / "bin" / "hadolint")
    linted = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert linted.returncode == 0, linted.stdout + linted.stderr


def test_dockerfile_keeps_the_projects_rules() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    makefile = (PROJECT_ROOT / "Makefile").read_text(encoding="utf-8")
    # The same pinned CPU build of torch as `make setup`, from PyTorch's CPU index (no CUDA build).
    (pin,) = re.findall(r"torch==[\d.]+", makefile)
    assert f"--index-url https://download.pytorch.org/whl/cpu {pin}" in text
    assert "prepare_model.py --all" in text and "HF_HUB_OFFLINE=1" in text  # the model is in the image
    user = re.findall(r"^USER (\S+)", text, flags=re.M)
    assert user and not user[-1].startswith(("0", "root"))
    assert 'VOLUME ["/data"]' in text and "RCE_INDEX_DIR=/data/index" in text and "RCE_CACHE_DIR=/data/cache" in text
    assert re.search(r"HEALTHCHECK .*\n.*/ready", text) and '"--watch"' in text


def test_compose_runs_the_service_and_a_rebuild_on_one_volume() -> None:
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    api, rebuild = compose["services"]["api"], compose["services"]["rebuild"]
    assert api["build"] == "." and rebuild["image"] == api["image"]
    assert "data:/data" in api["volumes"] and "data:/data" in rebuild["volumes"] and "data" in compose["volumes"]
    assert "scripts/build_index.py --catalog /catalog/catalog.jsonl" in "\n".join(rebuild["entrypoint"])
    assert "RCE_ADMIN_TOKEN:?" in api["environment"]["RCE_ADMIN_TOKEN"]  # refuses to start without a token


def _engine_runs() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    return subprocess.run([docker, "info"], capture_output=True, timeout=30).returncode == 0


def test_the_image_builds_and_serves_the_demo() -> None:
    if not _engine_runs():
        pytest.skip("no running container engine here (`docker info` fails): the image is not built by this test")
    tag = "related-content-engine:test"
    subprocess.run(["docker", "build", "-t", tag, str(PROJECT_ROOT)], check=True, timeout=3600)
    build = ["docker", "run", "--rm", "-v", "rce-test-data:/data", tag, "python", "scripts/build_index.py"]
    subprocess.run([*build, "--catalog", "data/demo/catalog.jsonl", "--quiet"], check=True, timeout=1800)
    container = subprocess.run(
        ["docker", "run", "-d", "--rm", "-p", "127.0.0.1:18000:8000", "-v", "rce-test-data:/data", tag],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                if httpx.get("http://127.0.0.1:18000/ready", timeout=2).json().get("publications") == 136:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(2)
        else:
            pytest.fail("the container did not become ready")
    finally:
        subprocess.run(["docker", "rm", "-f", container], capture_output=True)
