"""The emulator load benchmark runs (a tiny, bounded run) so it cannot rot; no timing asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.serving
ROOT = Path(__file__).resolve().parents[2]


def test_serve_load_benchmark_prints_and_writes_figures(tmp_path: Path) -> None:
    out = tmp_path / "serve_load.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.serve_load",
            "--requests",
            "300",
            "--concurrency",
            "8",
            "--seconds",
            "20",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(out.read_text())
    assert {r["route"] for r in results} == {"chat", "stream", "embeddings"}
    assert all(
        r["requests"] == 300 and r["statuses"] == {"200": 300} and r["requests_per_s"] > 0
        for r in results
    )
    assert "req/s" in done.stdout
