"""Jobs whose tasks die mid-flight; run by test_process_faults.py in their own Spark app.

`local[2,4]` retries a failed task up to four times, as a cluster would. Two scenarios:
- `kill`: a Python worker is SIGKILLed once 300 requests have been served;
- `raise`: a Python UDF downstream of `ai_query` raises on each task's first attempt,
  after the task's requests were sent (the retry takes their answers from the exchange).
Prints one JSON line per scenario comparing the results, the usage table and the
emulator's request log.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections import Counter
from typing import Any

import aiquery
from aiquery.serving.control import EmulatorControl
from aiquery.spark.session import spark_session
from aiquery.usage.driver.committer import flush

ROWS = 3000
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))  # the repository, for benchmarks

from benchmarks.soak import python_workers  # noqa: E402


def kill_a_worker(control: EmulatorControl, endpoint: str) -> dict[str, int]:
    killed = {"killed": 0}

    def killer() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            served = control.stats().get(endpoint, {}).get("requests", 0)
            workers = python_workers()
            if served > 300 and workers:
                os.kill(workers[0], signal.SIGKILL)
                killed["killed"] += 1
                return
            time.sleep(0.05)

    threading.Thread(target=killer, daemon=True).start()
    return killed


def scenario(spark: Any, control: EmulatorControl, name: str, endpoint: str) -> dict[str, Any]:
    from pyspark import TaskContext
    from pyspark.sql.functions import udf

    @udf("bigint")
    def fails_first_attempt(i: int) -> int:
        context = TaskContext.get()
        if context is not None and context.attemptNumber() == 0 and i % (ROWS // 2) == 1400:
            raise RuntimeError("injected executor failure after the requests were sent")
        return i

    spark.udf.register("fails_first_attempt", fails_first_attempt)
    # The kill must land while both tasks send: with the window free to grow (to 512) at
    # 20 ms, a task can be done before the killer sees 300 requests served, and killing
    # its idle worker fails nothing. 16 in flight at 50 ms: each task sends for ~5 s.
    slow = name == "kill"
    if slow:
        spark.conf.set("aiquery.concurrencyPerTask", "16")
    else:
        spark.conf.unset("aiquery.concurrencyPerTask")
    control.set_faults(
        endpoint,
        latency_ms=50 if slow else 20,
        error_rate_500=0.05,
        requests_per_minute=60000,
        seed=11,
    )
    killed = kill_a_worker(control, endpoint) if slow else {}
    outer = "fails_first_attempt(id)" if name == "raise" else "id"
    result = aiquery.sql(
        spark,
        f"SELECT {outer} AS id, r FROM "
        f"(SELECT id, ai_query('{endpoint}', p, failOnError => false) AS r FROM rows)",
    ).collect()
    flush(spark)
    log = control.requests(endpoint)
    usage = aiquery.sql(
        spark,
        "SELECT request_id, status_code, spark_task FROM system.ai_gateway.usage "
        f"WHERE endpoint_name = '{endpoint}'",
    ).collect()
    server_status = {r["request_id"]: r["status"] for r in log}
    # Rows answered without a request, by the attempt that took them (a retry takes the
    # answers its failed attempt published to the driver's exchange).
    saved = (
        spark.sql(
            "SELECT spark_task, rows FROM ai_gateway.usage_saved "
            f"WHERE endpoint_name = '{endpoint}'"
        ).collect()
        if spark.catalog.tableExists("ai_gateway.usage_saved")  # no row saved yet: none
        else []
    )
    saved_by_attempt: Counter[str] = Counter()
    for s in saved:
        saved_by_attempt[s.spark_task.rsplit(".", 1)[1]] += s.rows
    return {
        "scenario": name,
        **killed,
        "task_attempts": sorted({u.spark_task.rsplit(".", 1)[1] for u in usage}),
        "saved_by_attempt": dict(saved_by_attempt),
        "expected_rows": ROWS,
        "result_ids": len({r.id for r in result}),
        "result_rows": len(result),
        "answered_rows": sum(1 for r in result if r.r.result is not None),
        "server_requests": len(log),
        "usage_rows": len(usage),
        "usage_ids_equal_server_ids": {u.request_id for u in usage} == set(server_status),
        "server_ids_missing_from_usage": len(set(server_status) - {u.request_id for u in usage}),
        # Recorded as started, then the worker died before the bytes left: a NULL-status
        # "no answer recorded" row the server never saw. Recording after sending instead
        # would lose requests that were sent; a possible request is counted, never lost.
        "usage_only": sum(1 for u in usage if u.request_id not in server_status),
        "usage_only_with_a_status": sum(
            1 for u in usage if u.request_id not in server_status and u.status_code is not None
        ),
        "duplicate_ids": len(usage) - len({u.request_id for u in usage}),
        # A request in flight when its worker died reached the server, but its task never
        # saw the answer: its usage row has a NULL status ("no answer recorded").
        "unanswered": sum(1 for u in usage if u.status_code is None),
        "mismatched": sum(
            1
            for u in usage
            if u.status_code is not None and server_status.get(u.request_id) != u.status_code
        ),
        "server_by_status": sorted(Counter(str(r["status"]) for r in log).items()),
    }


def main() -> None:
    control = EmulatorControl(os.environ["DATABRICKS_HOST"], os.environ["AIQUERY_TEST_ADMIN"])
    control.reset()
    root = os.environ["AIQUERY_TEST_DIR"]
    spark = spark_session(
        "aiquery-process-faults",
        master="local[2,4]",  # up to 4 attempts per task, like a cluster
        warehouse=f"{root}/warehouse",
        conf={"spark.driver.extraJavaOptions": f"-Dderby.system.home={root}/derby"},
    )
    spark.range(0, ROWS, numPartitions=2).selectExpr(
        "id", "concat('Summarize: row ', id, '. tail') AS p"
    ).createOrReplaceTempView("rows")
    for name, endpoint in (("kill", "databricks-gpt-5-4"), ("raise", "databricks-gpt-5-mini")):
        print(json.dumps(scenario(spark, control, name, endpoint)), flush=True)


if __name__ == "__main__":
    main()
