"""The throughput benchmark still runs end to end (`--quick`): every workload, every system.

It runs as `python -m benchmarks.throughput`, in its own process with its own SparkSession and
emulator process, exactly as a developer runs it. Only the JSON's shape and that each system
served rows are checked: wall-clock figures on a shared CI machine gate nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.spark

ROOT = Path(__file__).resolve().parents[2]
EXPECTED = {
    "A": {"aiquery", "aiquery_usage_off", "naive_udf", "bare_aiohttp"},
    "B": {"aiquery", "naive_udf", "bare_aiohttp"},
    "C": {"aiquery", "naive_udf", "bare_aiohttp"},
    "D": {"aiquery", "naive_udf", "bare_aiohttp"},
    "E": {"aiquery_small"},  # --quick skips the 10x run
    "F": {"aiquery", "aiquery_default", "bare_aiohttp"},
    "Fexp": {"aiquery", "aiquery_default", "bare_aiohttp"},
}


@pytest.mark.timeout(240)
def test_quick_benchmark_reports_every_workload_and_system(tmp_path: Path) -> None:
    out = tmp_path / "throughput.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.throughput", "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=230,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    workloads = report["workloads"]
    assert set(workloads) == set(EXPECTED)
    for workload, systems in EXPECTED.items():
        assert set(workloads[workload]) == systems, workload
        for system in systems:
            result = workloads[workload][system]
            assert result["rows"] > 0 and result["rows_per_s"] > 0, (workload, system, result)
            assert result["requests"] > 0, (workload, system, result)
    assert {c["check"] for c in report["checks"]}, "the targets were not evaluated"
    assert set(report["aiquery_over_bare"]) == set(EXPECTED) - {"E"}
    assert "targets" in done.stdout and ("PASS" in done.stdout or "MISS" in done.stdout)
