"""The crash-consistency suite, bounded for CI: real processes, real model, kill -9 of service and builds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scripts import crash_suite

pytestmark = pytest.mark.model


def test_no_acknowledged_write_is_lost_to_kill_9_of_the_service_or_of_builds(tmp_path: Path) -> None:
    report_path = tmp_path / "crash.json"
    code = crash_suite.main(["--rounds", "2", "--seconds", "6", "--seed", "3", "--json", str(report_path)])
    report = json.loads(report_path.read_text())
    assert code == 0, report
    assert report["lost"] == [] and report["resurrected"] == []
    # The run did what it claims: writes were acknowledged and deleted, the service was killed twice, builds ran.
    assert report["acknowledged"] >= 20 and report["present_expected"] >= 10 and report["deleted_expected"] >= 1
    assert len(report["rounds"]) == 2 and sum(report["builds"].values()) >= 1
    # Live, every worker served the last acknowledged write within a second.
    assert report["live_check"]["workers_in_step_s"] is not None and report["live_check"]["workers_in_step_s"] < 1.0
