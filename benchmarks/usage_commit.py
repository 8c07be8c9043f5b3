"""How long the usage MERGE takes as the usage table grows (issue 16: millions of rows).

A long job's committer flushes its spool while the job runs: `--rounds` times, each round
spools `--rows / --rounds` requests (a started and a finished line each, through the real
`SpoolWriter`, as tasks write them) and then commits them with the real `UsageCommitter`
into a Delta table. `--history-rows` first fills the table with that many rows spread
over `--history-days` earlier days (a usage table a few months old), written directly,
not through the committer. Prints each round's commit time and checks that the table
holds every request exactly once; nothing is asserted.

    python -m benchmarks.usage_commit [--rows 1000000] [--rounds 10]
        [--history-rows 10000000 --history-days 100]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from aiquery.usage.executor import SpoolWriter
from aiquery.usage.record import COLUMNS, NAMES, Attempt, Call, new_id

CALL = Call(
    invocation_id="bench",
    endpoint_name="databricks-gpt-5-mini",
    endpoint_id="bench",
    destination_type="databricks-model-serving",
    destination_name="databricks-gpt-5-mini",
    destination_model="gpt-5-mini",
    requester="bench",
    api_type="chat",
    url="http://127.0.0.1/invocations",
    user_agent="bench",
    request_tags={"job": "usage-commit"},
    spark_app_id="bench",
    spark_task="0.0.0",
)


def spool(directory: Path, rows: int) -> None:
    """`rows` requests as 2 tasks would spool them: started, then finished."""
    writers = [SpoolWriter(directory, CALL), SpoolWriter(directory, CALL)]
    for i in range(rows):
        writer = writers[i % 2]
        started = Attempt(new_id(), time.time(), 1, 1)
        writer.started(started)
        writer.finished(
            Attempt(
                started.request_id,
                started.event_time,
                1,
                1,
                status_code=200,
                latency_ms=100,
                input_tokens=40,
                output_tokens=60,
            )
        )
    for writer in writers:
        writer.close()


def history(spark: Any, committer: Any, rows: int, days: int) -> None:
    """`rows` usage rows on the `days` days before today, appended as one Delta write."""
    committer.ensure_table()
    frame = spark.range(rows).selectExpr(
        "uuid() AS request_id",
        f"timestamp_seconds(unix_seconds(current_timestamp()) - (1 + id % {days}) * 86400)"
        " AS event_time",
    )
    nulls = [
        f"CAST(NULL AS {c.sql_type}) AS {c.name}"
        for c in COLUMNS
        if c.name not in ("request_id", "event_time", "event_date")
    ]
    frame = frame.selectExpr(
        "request_id", "event_time", "to_date(event_time) AS event_date", *nulls
    )
    frame.select(*NAMES).write.format("delta").mode("append").save(committer.location)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--history-rows", type=int, default=0)
    parser.add_argument("--history-days", type=int, default=100)
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/usage_commit.json"))
    args = parser.parse_args(argv)

    from aiquery.spark.session import spark_session
    from aiquery.usage.driver.committer import UsageCommitter

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        spark = spark_session("usage-commit", master="local[2]", warehouse=root / "warehouse")
        spark.sparkContext.setLogLevel("ERROR")
        spool_dir, location = root / "spool", str(root / "usage")
        committer = UsageCommitter(spark, spool_dir, location)
        if args.history_rows:
            began = time.perf_counter()
            history(spark, committer, args.history_rows, args.history_days)
            print(
                f"history: {args.history_rows:,} rows over {args.history_days} days written in "
                f"{time.perf_counter() - began:.1f} s",
                flush=True,
            )
        per_round = args.rows // args.rounds
        rounds: list[dict[str, float]] = []
        for number in range(1, args.rounds + 1):
            began = time.perf_counter()
            spool(spool_dir, per_round)
            spooled = time.perf_counter() - began
            began = time.perf_counter()
            merged = committer.flush()
            seconds = time.perf_counter() - began
            rounds.append({"round": number, "merged": merged, "commit_s": round(seconds, 2)})
            print(
                f"round {number:2d}: spooled {per_round:,} requests in {spooled:5.1f} s, "
                f"committed {merged:,} rows in {seconds:6.1f} s "
                f"(table: {args.history_rows + number * per_round:,} rows)",
                flush=True,
            )
        expected = args.history_rows + per_round * args.rounds
        count = spark.read.format("delta").load(location).count()
        distinct = spark.read.format("delta").load(location).select("request_id").distinct()
        unique = distinct.count()
        spark.stop()
    total = sum(r["commit_s"] for r in rounds)
    report = {
        "rows": args.rows,
        "rounds": args.rounds,
        "history_rows": args.history_rows,
        "history_days": args.history_days,
        "commit_s_total": round(total, 1),
        "commit_s_first": rounds[0]["commit_s"],
        "commit_s_last": rounds[-1]["commit_s"],
        "table_rows": count,
        "unique_request_ids": unique,
        "per_round": rounds,
    }
    print(
        f"{args.rows:,} requests committed in {total:.1f} s over {args.rounds} "
        f"flushes (first {rounds[0]['commit_s']} s, last {rounds[-1]['commit_s']} s); "
        f"table rows {count:,}, unique ids {unique:,}"
        + ("" if count == unique == expected else f"  MISMATCH: expected {expected:,}")
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
