"""A long mixed-fault job: does aiquery lose, duplicate or misreport anything over time?

Runs `ai_query` over successive chunks of rows into a Delta table for `--minutes`, against
an in-process emulator that fails in every way the issue lists, all at once:

- steady faults: 5% 500s, 5% 503s, hangs past the client timeout, dropped connections,
  truncated bodies, and a requests/minute limit (429 with Retry-After);
- every `--storm-every` s, a 429 storm: the limit drops to a trickle for 15 s;
- every `--restart-every` s, the emulator is restarted on the same port (a redeploy:
  requests in progress are cut off, new connections are refused for a moment);
- every `--kill-every` s, a Python worker is SIGKILLed mid-task (Spark retries the task).

At the end it compares three records of the same job and prints the figures:
the output table (every row once, the right answer or an error message), the usage
table (one row per request sent) and the emulators' own request logs (what arrived).

    python -m benchmarks.soak --minutes 30
    python -m benchmarks.soak --minutes 2 --rows-per-chunk 2000   # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENDPOINT = "soak-chat"  # the client's name; it calls the emulator's databricks-gpt-5-4
SERVED = "databricks-gpt-5-4"
CLIENT_TIMEOUT_S = 2.0
FAULTS: dict[str, Any] = {
    "latency_ms": 30,
    "latency_distribution": "exponential",
    "error_rate_500": 0.05,
    "error_rate_503": 0.05,
    "hang_rate": 0.01,
    "hang_seconds": 20,  # well past the client's timeout
    "drop_rate": 0.01,
    "malformed_rate": 0.01,
    "requests_per_minute": 18_000,
}
STORM_RPM = 600
STORM_SECONDS = 15.0
RESULTS = Path(__file__).parent / "results"


def python_workers(root: int | None = None) -> list[int]:
    """PIDs of forked PySpark workers (children of a pyspark.daemon) under process `root`.

    Only this application's: another Spark application on the machine (a test session,
    a second job) has workers too, and they are not ours to kill.
    """
    root = os.getpid() if root is None else root
    out = subprocess.run(["ps", "-eo", "pid,ppid,args"], capture_output=True, text=True).stdout
    rows = [line.split(None, 2) for line in out.splitlines()[1:]]
    parent = {int(pid): int(ppid) for pid, ppid, _ in rows}

    def descends(pid: int) -> bool:
        while pid > 1:
            pid = parent.get(pid, 0)
            if pid == root:
                return True
        return False

    daemons = {pid for pid, _, args in rows if "pyspark.daemon" in args}
    return [
        int(pid)
        for pid, ppid, args in rows
        if ppid in daemons and "pyspark.daemon" in args and descends(int(pid))
    ]


@dataclass
class Chaos:
    """The emulator and the faults done to it; every incarnation's log is kept."""

    restart_every_s: float
    kill_every_s: float
    storm_every_s: float
    seed: int
    server: Any = None
    control: Any = None
    logs: list[list[dict[str, Any]]] = field(default_factory=list)
    events: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        from aiquery.serving.control import EmulatorControl
        from aiquery.serving.server import EmulatorServer

        # Requests in progress at a restart get a moment to finish, then are cut off.
        self.server = EmulatorServer(shutdown_timeout=0.5).start()
        # The same URL and admin token reach every incarnation of the server.
        self.control = EmulatorControl(self.server.url, self.server.admin_token)
        self._configure(storm=False)

    def _configure(self, *, storm: bool) -> None:
        faults = {**FAULTS, "seed": self.seed + len(self.logs)}
        if storm:
            faults["requests_per_minute"] = STORM_RPM
        self.control.set_faults(SERVED, **faults)

    def _restart(self) -> None:
        with self.lock:
            old = self.server
            self.server = old.restarted()
            self.logs.append(old.emulator.log.snapshot())
            self._configure(storm=False)
        self.events["restarts"] += 1

    def _kill_worker(self) -> None:
        workers = python_workers()
        if workers:
            os.kill(workers[0], signal.SIGKILL)
            self.events["workers killed"] += 1

    def _storm(self) -> None:
        with self.lock:
            self._configure(storm=True)
        self.events["429 storms"] += 1
        self.stop.wait(STORM_SECONDS)
        with self.lock:
            self._configure(storm=False)

    def run(self) -> None:
        """The chaos thread: each kind of fault on its own clock until `stop` is set."""
        started = time.monotonic()
        due = {
            self._restart: self.restart_every_s,
            self._kill_worker: self.kill_every_s / 2,  # offset from the restarts
            self._storm: self.storm_every_s,
        }
        period = {
            self._restart: self.restart_every_s,
            self._kill_worker: self.kill_every_s,
            self._storm: self.storm_every_s,
        }
        while not self.stop.wait(0.5):
            elapsed = time.monotonic() - started
            for action, when in list(due.items()):
                if elapsed >= when:
                    action()
                    due[action] = when + period[action]

    def finish(self) -> list[dict[str, Any]]:
        with self.lock:
            self.server.stop()
            self.control.close()
            self.logs.append(self.server.emulator.log.snapshot())
        return [entry for log in self.logs for entry in log]


def run(args: argparse.Namespace) -> dict[str, Any]:
    import aiquery
    from aiquery.spark.session import spark_session
    from aiquery.usage.driver.committer import flush
    from aiquery.usage.record import NO_ANSWER

    chaos = Chaos(args.restart_every, args.kill_every, args.storm_every, args.seed)
    chaos.start()
    root = Path(tempfile.mkdtemp(prefix="aiquery-soak-"))
    aiquery.configure(
        {
            ENDPOINT: {
                "protocol": "databricks",
                "base_url": chaos.server.url,
                "model": SERVED,
                "token": chaos.server.token,
                "timeout_s": CLIENT_TIMEOUT_S,
            }
        }
    )
    spark = spark_session(
        "aiquery-soak",
        master="local[2,4]",  # Spark retries a failed task up to 4 times, as on a cluster
        warehouse=root / "warehouse",
        conf={"spark.driver.extraJavaOptions": f"-Dderby.system.home={root / 'derby'}"},
    )
    app_id = spark.sparkContext.applicationId
    spark.sql("CREATE TABLE soak_out (id BIGINT, result STRING, error STRING) USING delta")
    thread = threading.Thread(target=chaos.run, name="chaos", daemon=True)
    thread.start()
    deadline = time.monotonic() + args.minutes * 60
    chunks: Counter[str] = Counter()
    written = 0
    start = time.monotonic()
    while time.monotonic() < deadline:
        first, n = written, args.rows_per_chunk
        spark.range(first, first + n, numPartitions=4).selectExpr(
            "id", "concat('Summarize: item ', id, '. The rest is noise.') AS p"
        ).createOrReplaceTempView("chunk")
        try:
            aiquery.sql(
                spark,
                f"""INSERT INTO soak_out
                    SELECT id, r.result, r.errorMessage
                    FROM (SELECT id, ai_query('{ENDPOINT}', p, failOnError => false) AS r FROM chunk)""",
            )
            chunks["written"] += 1
            chunks["rows"] += n
        except Exception as e:  # a chunk that failed as a whole is reported, not hidden
            chunks["failed"] += 1
            print(f"chunk at id {first} failed: {str(e)[:300]}", flush=True)
        written += n
        spent = time.monotonic() - start
        print(f"{spent / 60:5.1f} min  {written:>9,} rows queued  {dict(chaos.events)}", flush=True)
    chaos.stop.set()
    thread.join()
    log = chaos.finish()
    flush(spark)
    return verify(spark, app_id, log, written, chunks, chaos, time.monotonic() - start, NO_ANSWER)


def verify(
    spark: Any,
    app_id: str,
    log: list[dict[str, Any]],
    rows_queued: int,
    chunks: Counter[str],
    chaos: Chaos,
    seconds: float,
    no_answer: str,
) -> dict[str, Any]:
    import aiquery

    out = spark.sql(
        """SELECT count(*) AS n, count(DISTINCT id) AS ids,
                  sum(CASE WHEN error IS NULL AND result IS NOT NULL THEN 1 ELSE 0 END) AS ok,
                  sum(CASE WHEN error IS NOT NULL THEN 1 ELSE 0 END) AS errored,
                  sum(CASE WHEN error IS NULL AND (result IS NULL
                      OR NOT contains(result, concat('item ', id, '.'))) THEN 1 ELSE 0 END) AS wrong
           FROM soak_out"""
    ).first()
    errors = spark.sql(
        "SELECT substring(error, 1, 160) AS e, count(*) AS n FROM soak_out "
        "WHERE error IS NOT NULL GROUP BY 1 ORDER BY 2 DESC LIMIT 5"
    ).collect()
    usage = aiquery.sql(
        spark,
        f"SELECT request_id, status_code, error_message FROM system.ai_gateway.usage "
        f"WHERE spark_app_id = '{app_id}' AND endpoint_name = '{ENDPOINT}'",
    ).collect()
    server = {e["request_id"]: e["status"] for e in log}
    usage_ids = Counter(u.request_id for u in usage)
    unrecorded = [u for u in usage if u.error_message == no_answer]  # its task died first
    # The server's answer and the client's record must agree wherever the client saw one.
    mismatched = [
        u for u in usage if u.status_code is not None and server.get(u.request_id) != u.status_code
    ]
    never_arrived = [u for u in usage if u.request_id not in server]
    # No answer on the client's side must mean none was given: the server hung, dropped
    # the connection or saw the client leave (its task died, or it timed out first).
    answered_unseen = [
        u
        for u in usage
        if u.status_code is None
        and u.error_message != no_answer
        and server.get(u.request_id, "dropped") not in ("hung", "dropped", "client_closed")
    ]
    report = {
        "minutes": round(seconds / 60, 1),
        "events": dict(chaos.events),
        "chunks": dict(chunks),
        "rows_queued": rows_queued,
        "rows_written": out.n,
        "rows_completed": out.ok,
        "rows_errored": out.errored,
        "rows_wrong_answer": out.wrong,
        "rows_duplicated": out.n - out.ids,
        "top_errors": [(r.e, r.n) for r in errors],
        "requests_sent": len(usage),
        "requests_received": len(server),
        "server_statuses": dict(Counter(str(s) for s in server.values()).most_common()),
        "usage_rows": len(usage),
        "usage_duplicates": len(usage) - len(usage_ids),
        "missing_usage_rows": len(set(server) - set(usage_ids)),
        "missing_by_server_status": dict(
            Counter(str(server[i]) for i in set(server) - set(usage_ids)).most_common()
        ),
        "never_reached_server": len(never_arrived),
        "never_reached_with_a_status": sum(1 for u in never_arrived if u.status_code is not None),
        "never_reached_by_error": dict(
            Counter((u.error_message or "")[:60] for u in never_arrived).most_common(3)
        ),
        "in_flight_when_task_died": len(unrecorded),
        "status_mismatches": len(mismatched) + len(answered_unseen),
    }
    return report


def print_report(report: dict[str, Any]) -> None:
    lines = [
        ("minutes", report["minutes"]),
        ("chaos", report["events"]),
        ("chunks", report["chunks"]),
        ("requests sent (usage rows)", report["requests_sent"]),
        ("requests received by the emulators", report["requests_received"]),
        ("  never reached the emulator (all without status)", report["never_reached_server"]),
        ("    why", report["never_reached_by_error"]),
        ("  in flight when their task died", report["in_flight_when_task_died"]),
        ("emulator statuses", report["server_statuses"]),
        ("rows completed", report["rows_completed"]),
        ("rows errored", report["rows_errored"]),
        ("rows with a wrong answer (must be 0)", report["rows_wrong_answer"]),
        ("rows duplicated (must be 0)", report["rows_duplicated"]),
        ("usage rows", report["usage_rows"]),
        ("usage duplicates (must be 0)", report["usage_duplicates"]),
        ("missing usage rows (must be 0)", report["missing_usage_rows"]),
        ("  missing, by emulator status", report["missing_by_server_status"]),
        ("status mismatches (must be 0)", report["status_mismatches"]),
    ]
    width = max(len(name) for name, _ in lines)
    for name, value in lines:
        print(
            f"{name:<{width}}  {value:,}" if isinstance(value, int) else f"{name:<{width}}  {value}"
        )
    for text, n in report["top_errors"]:
        print(f"  {n:>7,}  {text}")


def healthy(report: dict[str, Any]) -> bool:
    return (
        report["rows_written"] == report["chunks"].get("rows", 0)
        and report["rows_wrong_answer"] == 0
        and report["rows_duplicated"] == 0
        and report["usage_duplicates"] == 0
        and report["missing_usage_rows"] == 0
        and report["status_mismatches"] == 0
        and report["never_reached_with_a_status"] == 0
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rows-per-chunk", type=int, default=20_000)
    parser.add_argument("--restart-every", type=float, default=300.0, help="seconds")
    parser.add_argument("--kill-every", type=float, default=240.0, help="seconds")
    parser.add_argument("--storm-every", type=float, default=150.0, help="seconds")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    report = run(args)
    print_report(report)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"soak-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=2, default=str))
    print(f"written to {path}")
    ok = healthy(report)
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
