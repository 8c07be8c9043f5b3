"""The README's first command: `aiquery demo` finishes a whole job on the embedded default."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.spark


def test_demo_runs_end_to_end_on_the_embedded_emulator(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABRICKS_HOST", "DATABRICKS_TOKEN")}
    done = subprocess.run(
        [sys.executable, "-m", "aiquery.cli", "demo", "--rows", "60"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env=env,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    out = done.stdout
    assert "summaries: 60 rows (0 failed)" in out
    assert "embeddings: 60 rows of 1024 floats" in out
    # The usage summary by job: 60 summarize requests, and embeddings batched into fewer.
    table = {tuple(line.split()[:2]): line.split()[2:] for line in out.splitlines() if line.strip()}
    assert table[("databricks-gpt-5-4", "summarize")][0] == "60"
    assert 0 < int(table[("databricks-gte-large-en", "embed")][0]) < 60
    dashboard = tmp_path / "spark-warehouse" / "aiquery-usage.html"
    assert dashboard.is_file() and "databricks-gpt-5-4" in dashboard.read_text()
    assert (tmp_path / "spark-warehouse" / "ai_gateway.db" / "usage" / "_delta_log").is_dir()
    # Delta's jars came from aiquery's cache: no Ivy resolution, no Maven Central contact.
    assert ":: resolving dependencies" not in done.stderr and "ivy" not in done.stderr.lower()
