"""Process faults: tasks that die mid-flight lose and double-count nothing.

Spark retries a task whose Python worker was killed or raised; the retry takes the answers
its failed attempt published to the driver's exchange and sends the rest. Every request
sent, by any attempt, is one usage row and one server log entry, and the results are
complete.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from usage_calls import a_call

import aiquery
from aiquery.serving.server import EmulatorServer
from aiquery.spark.callspec import MAX_PER_TASK
from aiquery.usage.driver.committer import UsageCommitter, committer
from aiquery.usage.driver.settings import usage_settings
from aiquery.usage.driver.spool import spool_files
from aiquery.usage.executor import SpoolWriter
from aiquery.usage.record import Attempt

pytestmark = pytest.mark.spark
HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def reports(
    emulator_server: EmulatorServer, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """Both scenarios of process_faults_job.py, run once in a separate Spark application."""
    env = {
        **os.environ,
        "DATABRICKS_HOST": emulator_server.url,
        "DATABRICKS_TOKEN": emulator_server.token,
        "AIQUERY_TEST_ADMIN": emulator_server.admin_token,
        "AIQUERY_TEST_DIR": str(tmp_path_factory.mktemp("process-faults")),
    }
    done = subprocess.run(
        [sys.executable, str(HERE / "process_faults_job.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return {report["scenario"]: report for report in lines}


def assert_nothing_lost_or_doubled(report: dict[str, Any]) -> None:
    assert report["result_rows"] == report["result_ids"] == report["expected_rows"]
    assert report["answered_rows"] >= report["expected_rows"] - 5  # 5% 500s, 6 attempts each
    assert report["server_ids_missing_from_usage"] == 0
    assert report["duplicate_ids"] == 0
    # Usage rows the server never saw are requests a dying worker had recorded as started
    # but not yet sent: all without a status.
    assert report["usage_only_with_a_status"] == 0
    assert report["usage_rows"] == report["server_requests"] + report["usage_only"]
    assert report["mismatched"] == 0  # every status the client saw is the one the server sent


def test_a_killed_python_worker_loses_and_duplicates_nothing(reports: dict[str, Any]) -> None:
    report = reports["kill"]
    assert report["killed"] == 1, "the job never lost a worker"
    assert report["task_attempts"] == ["0", "1"]  # Spark retried the task
    assert_nothing_lost_or_doubled(report)
    # Requests in flight when the worker died: at most one task's window of them (the
    # default window starts at 64 and may have grown to its ceiling).
    window = MAX_PER_TASK
    assert report["unanswered"] <= window and report["usage_only"] <= window


def test_an_executor_exception_after_the_requests_loses_and_duplicates_nothing(
    reports: dict[str, Any],
) -> None:
    report = reports["raise"]
    assert_nothing_lost_or_doubled(report)
    # Each first attempt answered its rows up to row 1,400 of 1,500, then failed; the retry
    # took those answers from the exchange (rows without a request, as attempt 1) and paid
    # only for the rest. Without the exchange both attempts sent every row (>= 5,400).
    assert report["saved_by_attempt"].get("1", 0) >= 2 * 1400 * 0.9
    assert report["server_requests"] < 1.5 * report["expected_rows"]
    # The failed attempt's worker may exit with requests still in flight.
    assert report["unanswered"] <= 64 and report["usage_only"] <= 64


def test_a_spool_writer_that_dies_during_a_flush_loses_no_lines(spark, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The committer decides a file is finished before it reads it, not after.

    A writer alive when its file is read, and dead by the time the flush ends, wrote
    lines in between that this flush did not read: they must stay for the next one.
    """
    location = usage_settings(spark).location
    spool = tmp_path / "spool"
    writer_process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    header = a_call("dies-mid-flush")
    writer = SpoolWriter(spool, header)
    # The file is named for its writer's pid: make it the short-lived process's.
    writer._stem = writer._stem.replace(f"-{os.getpid()}-", f"-{writer_process.pid}-")
    writer.started(Attempt("before-the-flush-read", 1.7e9, 1, 1))

    class DiesDuringMerge(UsageCommitter):
        def _merge_batch(self, rows: dict[str, dict[str, Any]]) -> int:
            # After this flush read the file: the writer appends once more, then dies.
            writer.started(Attempt("after-the-flush-read", 1.7e9, 1, 1))
            writer_process.send_signal(signal.SIGKILL)
            writer_process.wait()
            return super()._merge_batch(rows)

    committer(spark).stop()  # the background flusher must not touch this spool
    try:
        DiesDuringMerge(spark, spool, location).flush()
        assert spool_files(spool), "a file with unread lines was deleted"
        UsageCommitter(spark, spool, location).flush()
        assert not spool_files(spool)  # read whole, its writer dead: now it is finished
    finally:
        committer(spark).start()
        writer_process.kill()
    ids = aiquery.sql(
        spark,
        "SELECT request_id FROM system.ai_gateway.usage WHERE spark_app_id = 'dies-mid-flush'",
    ).collect()
    assert sorted(r.request_id for r in ids) == ["after-the-flush-read", "before-the-flush-read"]
