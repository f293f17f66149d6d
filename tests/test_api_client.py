"""A client generated from the service's own /openapi.json by a maintained generator (openapi-python-client),
calling the real service: the versioned API, its operation ids and its bearer scheme work for client code."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import PROJECT_ROOT
from tests.test_e2e import SEED, TOKEN, Server

pytestmark = pytest.mark.model


def generate(schema: Path, folder: Path) -> Path:
    generator = shutil.which("openapi-python-client") or str(PROJECT_ROOT / ".venv" / "bin" / "openapi-python-client")
    config = folder / "generator.yaml"
    config.write_text("post_hooks: []\n", encoding="utf-8")  # no formatter run: the code is used, not kept
    package = folder / "rce_client"
    made = subprocess.run(
        [
            generator,
            "generate",
            "--path",
            str(schema),
            "--meta",
            "none",
            "--config",
            str(config),
            "--output-path",
            str(package),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stdout + made.stderr
    return package


def test_a_generated_client_calls_the_service(demo_index: Path, tmp_path: Path) -> None:
    server = Server(demo_index, "--no-model")
    try:
        schema = tmp_path / "openapi.json"
        schema.write_bytes(httpx.get(f"{server.base}/openapi.json").content)
        generate(schema, tmp_path)
        sys.path.insert(0, str(tmp_path))
        try:
            client_module = importlib.import_module("rce_client")
            related = importlib.import_module("rce_client.api.default.related")
            reload = importlib.import_module("rce_client.api.default.reload")
            ready = importlib.import_module("rce_client.api.default.ready")
        finally:
            sys.path.remove(str(tmp_path))
        client = client_module.Client(base_url=server.base)
        # GET /v1/publications/{id}/related, by its operation id, with a typed answer.
        answer = related.sync(client=client, publication_id=SEED, k=3)
        direct = httpx.get(f"{server.base}/v1/publications/{SEED}/related", params={"k": 3}).json()
        assert [item.id for item in answer.items] == [item["id"] for item in direct["items"]]
        assert answer.items[0].translations is not None and answer.id == SEED
        assert ready.sync(client=client).publications == 136
        # The admin operation takes the bearer token from the declared scheme; a wrong one is refused.
        admin = client_module.AuthenticatedClient(base_url=server.base, token=TOKEN)
        reloaded = reload.sync(client=admin)
        assert reloaded.build_id == answer.build_id
        refused = reload.sync_detailed(client=client_module.AuthenticatedClient(base_url=server.base, token="wrong"))
        assert refused.status_code == 401
    finally:
        server.stop()
