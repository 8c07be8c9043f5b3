"""Spark Connect: every aiquery API from an `sc://` client, against a real Connect server.

The client (`connect_job.py`) runs in its own process: registration and plain `spark.sql`,
Databricks' full syntax through `aiquery.sql`, the DataFrame API with live progress,
`spark.aiquery.*` settings, the usage flush and a query of `system.ai_gateway.usage`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from aiquery.protocols.common import Message
from aiquery.serving.control import EmulatorControl
from aiquery.serving.models import chat_reply
from aiquery.serving.server import EmulatorServer

pytestmark = pytest.mark.connect

JOB = Path(__file__).with_name("connect_job.py")


def answer(prompt: str) -> str:
    return chat_reply([Message("user", prompt)]).text


def run_job(url: str, emulator: EmulatorServer) -> dict[str, Any]:
    env = {
        **os.environ,
        "DATABRICKS_HOST": emulator.url,
        "DATABRICKS_TOKEN": emulator.token,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(JOB.parents[2]), os.environ.get("PYTHONPATH")])),
    }  # fmt: skip
    env.pop("AIQUERY_ENDPOINTS", None)
    done = subprocess.run(
        [sys.executable, str(JOB), url], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


def test_every_api_works_from_a_spark_connect_client(
    connect_url: str, emulator: EmulatorServer, control: EmulatorControl
) -> None:
    report = run_job(connect_url, emulator)
    assert report["classic"] is False  # a real Connect client: no JVM, no sparkContext

    assert report["plain_sql"] == [answer("Summarize: Plain SQL works. Yes.")]
    texts = [f"Summarize: Review {i} is fine. Details follow." for i in range(20)]
    assert [r["summary"] for r in report["full_sql"]] == [answer(t) for t in texts]
    assert all(r["error"] is None and r["label"] and r["dims"] == 1024 for r in report["full_sql"])
    assert report["dataframe"] == [answer(t) for t in texts]
    assert "ai_query:" in report["progress"] and "20 rows" in report["progress"]

    # Usage: exactly one row per request the emulator saw, with the tags given the Spark way.
    served = control.requests()
    usage = {u["request_id"]: u for u in report["usage"]}
    assert served and report["flushed"] >= 0  # the background committer may have been first
    assert sorted(usage) == sorted(r["request_id"] for r in served)
    assert all(u["status"] == 200 for u in usage.values()), usage
    assert all(u["tags"].get("tier") == "connect" for u in usage.values()), usage
    assert {u["tags"].get("api") for u in usage.values()} == {None, "dataframe"}
    assert all(u["requester"] for u in usage.values())
