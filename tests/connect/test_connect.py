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
    assert report["bad_calls"] == [
        "AI_FUNCTION_INVALID_MODEL_PARAMETERS.INVALID_PARAMETER_VALUE",
        "UNRECOGNIZED_PARAMETER_NAME",
        "AI_FUNCTION_ENDPOINT_NOT_FOUND",
    ]
    assert control.requests("databricks-gpt-5") == []  # nothing sent for them

    assert report["plain_sql"] == [answer("Summarize: Plain SQL works. Yes.")]
    assert report["plain_named"] == {
        "type": "struct<result:string,errorMessage:string>",
        "values": [answer("Summarize: Named over Connect. Yes.")],
    }
    texts = [f"Summarize: Review {i} is fine. Details follow." for i in range(20)]
    assert [r["summary"] for r in report["full_sql"]] == [answer(t) for t in texts]
    assert all(r["error"] is None and r["label"] and r["dims"] == 1024 for r in report["full_sql"])
    assert report["dataframe"] == [answer(t) for t in texts]
    assert "ai_query:" in report["progress"] and "20 rows" in report["progress"]
    assert report["ai_functions"] == ["positive", 1.0, ["parcel"], "parcel"]

    # Usage: exactly one row per request the emulator saw, with the tags given the Spark way.
    served = control.requests()
    usage = {u["request_id"]: u for u in report["usage"]}
    assert served and report["flushed"] >= 0  # the background committer may have been first
    assert sorted(usage) == sorted(r["request_id"] for r in served)
    assert all(u["status"] == 200 for u in usage.values()), usage
    assert all(u["tags"].get("tier") == "connect" for u in usage.values()), usage
    assert {u["tags"].get("api") for u in usage.values()} == {None, "dataframe"}
    assert all(u["requester"] for u in usage.values())


# --- the scheduled notebooks, run headless against the Connect server -------------------------

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def run_notebook(
    url: str, emulator: EmulatorServer, notebook: str, workdir: Path, run_id: str, **params: str
) -> str:
    """The notebook run by its own runner (a fresh kernel), as a scheduler would, with
    `spark_remote` set; returns the text it printed."""
    env = {**os.environ, "DATABRICKS_HOST": emulator.url, "DATABRICKS_TOKEN": emulator.token}
    env.pop("AIQUERY_ENDPOINTS", None)
    executed = workdir / f"{run_id}.ipynb"
    args = [arg for name, value in params.items() for arg in ("-r", name, value)]
    done = subprocess.run(
        [sys.executable, str(NOTEBOOKS / "run_notebook.py"), str(NOTEBOOKS / notebook),
         "-r", "spark_remote", url, "-r", "run_id", run_id, *args,
         "-o", str(executed), "--cwd", str(workdir)],
        env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    printed = "\n".join(
        "".join(output.get("text", ""))
        for cell in json.loads(executed.read_text())["cells"]
        for output in cell.get("outputs", [])
        if output.get("output_type") == "stream"
    )
    assert done.returncode == 0, done.stderr[-3000:] + printed[-3000:]
    return printed


def test_the_scheduled_notebooks_run_over_spark_connect(
    connect_url: str,
    connect_root: Path,
    emulator: EmulatorServer,
    control: EmulatorControl,
    tmp_path: Path,
) -> None:
    from deltalake import DeltaTable

    from aiquery.usage.report import load_rows

    tables = {"source_table": str(tmp_path / "reviews"), "output_table": str(tmp_path / "out")}
    printed = run_notebook(
        connect_url, emulator, "summarize_reviews.ipynb", tmp_path, "connect-1", **tables
    )
    out = DeltaTable(tables["output_table"]).to_pyarrow_table().to_pylist()
    sent = [r for r in control.requests() if (r["request_tags"] or {}).get("run_id") == "connect-1"]
    assert len(out) == len(sent) >= 50 and all(
        r["summary"] and r["error_message"] is None for r in out
    )
    assert f"{len(sent)} requests in this run" in printed
    usage = load_rows(connect_root / "warehouse" / "ai_gateway.db" / "usage")
    mine = [u for u in usage if (u["request_tags"] or {}).get("run_id") == "connect-1"]
    assert sorted(u["request_id"] for u in mine) == sorted(r["request_id"] for r in sent)

    # Run again: nothing new, nothing sent. Then the DataFrame-API notebook, embeddings.
    logged = len(control.requests())
    run_notebook(connect_url, emulator, "summarize_reviews.ipynb", tmp_path, "connect-2", **tables)
    assert len(control.requests()) == logged
    docs = {"source_table": str(tmp_path / "docs"), "output_table": str(tmp_path / "vectors")}
    run_notebook(connect_url, emulator, "embed_documents.ipynb", tmp_path, "connect-3", **docs)
    vectors = DeltaTable(docs["output_table"]).to_pyarrow_table().to_pylist()
    assert vectors and all(len(r["embedding"]) == 1024 for r in vectors)
