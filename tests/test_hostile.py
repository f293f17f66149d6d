"""A hostile anonymous client against a real server process (scripts/serve.py with the real model, on a
synthetic 4,990-item exact index): each attack of scripts/hostile.py runs while a prober measures /health
and a legitimate client keeps reading related lists and sending drafts, from another client address.
Each must leave /health p99 under 100 ms and the server's memory within 50 MB, and get the answers a
hardened server gives. Also, over raw sockets: a server that answers before it has read a body."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from engine.eval.serving import start_server, stop_server
from scripts import hostile

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict, list[str], hostile.Measurers]]:
    index = tmp_path_factory.mktemp("hostile") / "index"
    ids = hostile.prepare(index, 4990)
    server = start_server(index, env={"RCE_ADMIN_TOKEN": hostile.TOKEN})
    try:
        with hostile.Measurers() as measurers:
            yield server, ids, measurers
    finally:
        stop_server(server)


# In the order of ATTACKS: first_explain must be the first explanation the server is asked for.
@pytest.mark.parametrize("attack", hostile.ATTACKS, ids=[a.name for a in hostile.ATTACKS])
def test_an_attack_leaves_health_memory_and_legitimate_traffic_alone(
    target: tuple[dict, list[str], hostile.Measurers], attack: hostile.Attack
) -> None:
    server, ids, measurers = target
    row = hostile.run_phase(measurers, server, ids, attack, seconds=3)
    report = json.dumps(row, indent=1)
    assert sum(row["attack_statuses"].values()) >= 1 and row["unexpected"] == [], report
    assert row["health_p99_ms"] < 100, report
    # and no single stall: one blocked second (the first explanation used to take 2.7 s) hides in a p99
    assert row["health_max_ms"] < 1000, report
    assert row["rss_growth_mb"] < 50, report
    # the legitimate client, from another address, is never refused
    assert set(row["legit_statuses"]) <= {"200", "draft 200"} and row["legit_requests_per_s"] > 0, report


def _raw(base: str, head: bytes, first_chunk: bytes) -> tuple[bytes, socket.socket]:
    """Send a request's head and the first chunk of a chunked body, then read what the server answers
    (the rest of the body is never sent)."""
    host, port = base.removeprefix("http://").split(":")
    connection = socket.create_connection((host, int(port)), timeout=10)
    connection.sendall(head + b"Transfer-Encoding: chunked\r\n\r\n" + b"%x\r\n%s\r\n" % (len(first_chunk), first_chunk))
    answer = b""
    while b"\r\n\r\n" not in answer:
        data = connection.recv(65536)
        if not data:
            break
        answer += data
    return answer, connection


def test_a_chunked_body_over_the_limit_is_413_before_the_rest_is_sent(target) -> None:
    server, _, _ = target
    head = b"POST /related HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    answer, connection = _raw(server["base"], head, b'{"title": "' + b"a" * 70_000)
    with connection:
        assert answer.startswith(b"HTTP/1.1 413") and b"connection: close" in answer.lower()


def test_a_write_without_token_is_401_before_its_body_is_sent(target) -> None:
    server, _, _ = target
    head = b"POST /publications HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    answer, connection = _raw(server["base"], head, b"[" * 100)
    with connection:
        assert answer.startswith(b"HTTP/1.1 401")


def test_the_status_codes_of_odd_requests(target) -> None:
    server, ids, _ = target
    base = server["base"]
    with httpx.Client(base_url=base, timeout=30) as client:
        surrogate = client.post(
            "/related", content=b'{"title": "\\ud800"}', headers={"content-type": "application/json"}
        )
        assert surrogate.status_code == 400 and "surrogate" in surrogate.json()["detail"]
        assert client.head("/health").status_code == 200
        head = client.head(f"/publications/{ids[0]}/related")
        assert head.status_code == 200 and head.content == b"" and int(head.headers["content-length"]) > 0
        assert client.get(f"/publications/{ids[0]}/related", headers={"If-None-Match": "*"}).status_code == 304
        evil = {"id": "evil", "title": "Evil", "url": "javascript:alert(document.cookie)"}
        write = client.post("/publications", json=evil, headers={"Authorization": f"Bearer {hostile.TOKEN}"})
        assert write.status_code == 422 and write.json()["detail"][0]["loc"] == ["body", 0, "url"]
        deep = client.get(f"/publications/{ids[0]}/related?k=100&offset=9001&diversity=1")
        assert deep.status_code == 422 and "offset + k must be at most 1000" in deep.json()["detail"][0]["msg"]


def test_the_script_prints_its_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "hostile.json"
    assert hostile.main(["--items", "600", "--seconds", "1", "--only", "deep_offset", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| deep_offset | 422: " in printed and "1 attacks on 600 items" in printed
    phases = json.loads(out.read_text())["phases"]
    assert [p["attack"] for p in phases] == ["none", "deep_offset"] and phases[1]["unexpected"] == []
