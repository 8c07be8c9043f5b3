"""A job whose Python worker is SIGKILLed mid-task; run by test_usage.py in its own process.

Prints one JSON line comparing the usage table with the emulator's request log.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections import Counter

import aiquery
from aiquery.serving.control import EmulatorControl
from aiquery.spark.session import local_session
from aiquery.usage.context import flush

ROWS = 3000
ENDPOINT = "databricks-gpt-5-4"


def python_workers() -> list[int]:
    """PIDs of forked pyspark workers (children of the pyspark.daemon process)."""
    out = subprocess.run(["ps", "-eo", "pid,ppid,args"], capture_output=True, text=True).stdout
    rows = [line.split(None, 2) for line in out.splitlines()[1:]]
    daemons = {pid for pid, _, args in rows if "pyspark.daemon" in args}
    return [int(pid) for pid, ppid, args in rows if ppid in daemons and "pyspark.daemon" in args]


def main() -> None:
    control = EmulatorControl(os.environ["DATABRICKS_HOST"], os.environ["AIQUERY_TEST_ADMIN"])
    control.reset()
    control.set_faults(
        ENDPOINT, latency_ms=20, error_rate_500=0.05, requests_per_minute=60000, seed=11
    )
    root = os.environ["AIQUERY_TEST_DIR"]
    spark = local_session(
        "aiquery-kill-test",
        master="local[2,4]",  # up to 4 attempts per task, like a cluster
        warehouse=f"{root}/warehouse",
        conf={"spark.driver.extraJavaOptions": f"-Dderby.system.home={root}/derby"},
    )
    spark.range(0, ROWS, numPartitions=2).selectExpr(
        "id", "concat('Summarize: row ', id, '. tail') AS p"
    ).createOrReplaceTempView("rows")
    killed = 0

    def killer() -> None:
        nonlocal killed
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            served = control.stats().get(ENDPOINT, {}).get("requests", 0)
            workers = python_workers()
            if served > 300 and workers:
                os.kill(workers[0], signal.SIGKILL)
                killed += 1
                return
            time.sleep(0.05)

    thread = threading.Thread(target=killer)
    thread.start()
    result = aiquery.sql(
        spark, f"SELECT id, ai_query('{ENDPOINT}', p, failOnError => false) AS r FROM rows"
    ).collect()
    thread.join()
    flush(spark)
    log = control.requests(ENDPOINT)
    ids = {r["request_id"] for r in log}
    usage = aiquery.sql(
        spark,
        f"SELECT request_id, status_code FROM system.ai_gateway.usage WHERE endpoint_name = '{ENDPOINT}'",
    ).collect()
    server_status = {r["request_id"]: r["status"] for r in log}
    # A request in flight when its worker died reached the server, but its task never saw
    # the answer: its usage row exists with a NULL status ("no answer recorded").
    unanswered = sum(1 for u in usage if u.status_code is None)
    mismatched = sum(
        1
        for u in usage
        if u.status_code is not None and server_status.get(u.request_id) != u.status_code
    )
    report = {
        "unanswered": unanswered,
        "mismatched": mismatched,
        "usage_ids_equal_server_ids": {u.request_id for u in usage} == ids,
        "killed": killed,
        "expected_rows": ROWS,
        "result_rows": len({r.id for r in result}),
        "server_requests": len(log),
        "usage_rows": len(usage),
        "duplicate_ids": len(usage) - len({u.request_id for u in usage}),
        "usage_by_status": sorted(Counter(str(u.status_code) for u in usage).items()),
        "server_by_status": sorted(Counter(str(r["status"]) for r in log).items()),
        "retried_tasks_rows": len(result),
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
