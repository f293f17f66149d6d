"""Schemathesis against the service's own OpenAPI schema: no server errors, every response as documented.

Which checks run is set in schemathesis.toml (with the reasons for the two left out).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings
from pydantic import SecretStr

from engine import EngineHolder, build_index, get_settings
from service.app import create_app
from tests.conftest import SMALL_CATALOG
from tests.fakes import FakeEncoder, write_jsonl

# Built at collection time (schemathesis reads the schema then): a 9-item index from the fake encoder.
_FOLDER = Path(tempfile.mkdtemp(prefix="rce-fuzz-"))
build_index([write_jsonl(_FOLDER / "catalog.jsonl", SMALL_CATALOG)], _FOLDER / "index", FakeEncoder())
_HOLDER = EngineHolder(_FOLDER / "index", expected_model=None, encoder=FakeEncoder())
_HOLDER.try_load()
APP = create_app(get_settings().model_copy(update={"admin_token": SecretStr("fuzz-token")}), holder=_HOLDER)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case) -> None:
    case.call_and_validate()
