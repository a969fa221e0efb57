"""Fault injection through the real command line: benchmarks/faults.py runs each scenario
(killed build, full disk, truncated and corrupted index files, a damaged build offered to
a running server, bad corpus input) on a temporary corpus copy and reports whether nothing
was lost. This test runs it and checks every scenario, so CI exercises the same script
people run by hand."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow  # kills builds, fills disks: runs the whole script
SCENARIOS = {
    "killed_build",
    "full_disk",
    "truncated_file",
    "corrupted_file",
    "bad_new_build",
    "bad_corpus_row",
    "bad_corpus_edit",
}


@pytest.fixture(scope="module")
def fault_report() -> dict:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "faults.py"), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_scenario_ran(fault_report: dict) -> None:
    assert set(fault_report) == SCENARIOS


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_nothing_is_lost(fault_report: dict, scenario: str) -> None:
    result = fault_report[scenario]
    assert result["ok"], result["detail"]
