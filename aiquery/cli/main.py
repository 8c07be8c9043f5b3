"""The `aiquery` command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiquery.cli.sessions import add_spark_options, session_from
from aiquery.errors import AiQueryError
from aiquery.logs import ENV, LEVELS, setup
from aiquery.serving.config import (
    LATENCY_DISTRIBUTIONS,
    OVERFLOW_POLICIES,
    EmulatorConfigError,
    load_config,
)

# CLI flag → Faults field, for `aiquery serve`.
_FAULT_FLAGS: dict[str, tuple[str, type, str]] = {
    "latency_ms": (
        "--latency-ms",
        float,
        "latency per request in ms (the mean for a distribution)",
    ),
    "latency_distribution": (
        "--latency-distribution",
        str,
        f"one of {', '.join(LATENCY_DISTRIBUTIONS)}",
    ),
    "time_to_first_token_ms": (
        "--ttft-ms",
        float,
        "time to first token in ms, after the latency (streamed or not)",
    ),
    "tokens_per_second": (
        "--tokens-per-second",
        float,
        "generation speed after the first token; streams are paced chunk by chunk",
    ),
    "stream_fault_after_chunks": (
        "--stream-fault-after",
        int,
        "chunks a stream sends before a hang/drop/malformed fault strikes (default: half)",
    ),
    "requests_per_minute": (
        "--rpm",
        float,
        "requests per minute per endpoint; beyond it 429 + Retry-After",
    ),
    "tokens_per_minute": (
        "--tpm",
        float,
        "tokens per minute per endpoint; beyond it 429 + Retry-After",
    ),
    "max_concurrency": ("--max-concurrency", int, "requests in progress at once per endpoint"),
    "overflow": ("--overflow", str, f"past --max-concurrency: {' or '.join(OVERFLOW_POLICIES)}"),
    "error_rate_500": ("--error-rate-500", float, "fraction of requests answered 500"),
    "error_rate_503": ("--error-rate-503", float, "fraction of requests answered 503"),
    "hang_rate": ("--hang-rate", float, "fraction of requests never answered (streams: stall)"),
    "drop_rate": (
        "--drop-rate",
        float,
        "fraction of connections closed without an answer (streams: mid-stream)",
    ),
    "malformed_rate": (
        "--malformed-rate",
        float,
        "fraction of answers with a truncated JSON body (streams: one event)",
    ),
    "seed": ("--seed", int, "seed for the injected faults and latencies"),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aiquery", description="Databricks-style ai_query for Apache Spark."
    )
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=LEVELS,
        help=f"aiquery's log output on stderr, in this process and its Spark tasks (also ${ENV})",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="run the local emulator of Databricks model serving",
        description="Serve the Databricks model-serving and AI Gateway APIs from built-in local models.",
    )
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    serve.add_argument(
        "--port", type=int, default=8080, help="port (0 picks a free one; default 8080)"
    )
    serve.add_argument(
        "--token",
        help="access token clients must send (default: $AIQUERY_SERVE_TOKEN or a new one)",
    )
    serve.add_argument(
        "--admin-token",
        help="token for the /admin routes (default: $AIQUERY_SERVE_ADMIN_TOKEN or a new one)",
    )
    serve.add_argument(
        "--config", metavar="FILE", help="TOML file with [faults] and [endpoints.NAME] tables"
    )
    knobs = serve.add_argument_group("fault and capacity knobs (applied to every endpoint)")
    for field, (flag, kind, text) in _FAULT_FLAGS.items():
        knobs.add_argument(flag, dest=field, type=kind, help=text)
    demo = commands.add_parser(
        "demo",
        help="run a whole batch job on the local emulator: summaries, embeddings, usage",
        description="Sample reviews → ai_query summaries and embeddings in Delta → usage table and dashboard.",
    )
    demo.add_argument(
        "--rows", type=int, default=300, help="sample reviews to process (default 300)"
    )
    add_spark_options(demo, warehouse=True)

    for name, text in (
        ("sql", "run SQL statements given on the command line"),
        ("run", "run .sql files"),
    ):
        command = commands.add_parser(
            name,
            help=text,
            description=f"{text[0].upper()}{text[1:]}: Databricks SQL with ai_query and system.ai_gateway.usage; "
            "statements separated by ';', SET for request tags.",
        )
        if name == "sql":
            command.add_argument("sql", help="the SQL text")
        else:
            command.add_argument(
                "files", nargs="+", metavar="FILE", help=".sql files, run in order"
            )
        command.add_argument(
            "--max-rows", type=int, default=20, help="rows to print per result (default 20)"
        )
        command.add_argument("--no-progress", action="store_true", help="do not show live progress")
        add_spark_options(command, warehouse=True)

    estimate = commands.add_parser(
        "estimate",
        help="what a query's AI calls would send and cost, without sending anything",
        description="A dry run: reads the query's input and counts rows, requests (after "
        "de-duplication), input and expected output tokens, cost and time; sends no request.",
    )
    estimate.add_argument("sql", help="the query (SELECT ...)")
    add_spark_options(estimate, warehouse=True)

    commands.add_parser(
        "endpoints",
        help="list the endpoints ai_query can call, where they point, and their task",
        description="Resolved from aiquery.toml / $AIQUERY_ENDPOINTS, DATABRICKS_HOST/TOKEN and the built-in names.",
    )

    jvm = commands.add_parser(
        "jvm",
        help="build ai_query's Spark SQL extension from source (javac) and print its jar",
        description="For spark-sql, the Thrift server, Connect servers and spark-submit; "
        "sessions aiquery starts enable it themselves.",
    )
    jvm.add_argument(
        "--args",
        action="store_true",
        help="print the spark-submit arguments instead: Delta Lake, the extension, the "
        "system catalog (spark-sql $(aiquery jvm --args) -e ...)",
    )

    usage = commands.add_parser(
        "usage",
        help="summarise the usage table, or write the HTML dashboard",
        description="Read system.ai_gateway.usage (the Delta table) without starting Spark.",
    )
    usage.add_argument("view", nargs="?", choices=("summary", "dashboard"), default="summary")
    usage.add_argument(
        "--table",
        help="the usage table's directory (default: $AIQUERY_USAGE_LOCATION or ./spark-warehouse/ai_gateway.db/usage)",
    )
    usage.add_argument(
        "--by",
        action="append",
        metavar="GROUP",
        help="group by endpoint, day, requester, status, api_type, or a request-tag key (e.g. team); repeatable",
    )
    usage.add_argument(
        "--since", help="from this time: 2026-11-01, 2026-11-01T12:00, or 7d / 12h / 30m ago"
    )
    usage.add_argument("--until", help="up to this time (same forms)")
    usage.add_argument(
        "--out", default="usage.html", help="dashboard file to write (default usage.html)"
    )
    usage.add_argument(
        "--flush", action="store_true", help="commit spooled records first (starts Spark)"
    )
    add_spark_options(usage, warehouse=False)
    return parser


def _usage(args: argparse.Namespace) -> int:
    from aiquery.usage import report

    location: str = args.table or report.default_location()
    if args.flush:
        from aiquery.usage.driver.committer import flush

        absolute = location if "://" in location else str(Path(location).resolve())
        spark = session_from(args, "aiquery-usage", **{"aiquery.usage.location": absolute})
        print(f"committed {flush(spark)} spooled usage records", file=sys.stderr)
    since = report.parse_when(args.since) if args.since else None
    until = report.parse_when(args.until) if args.until else None
    rows = report.load_rows(location, since=since, until=until)
    saved = report.load_saved(location, since=since, until=until)
    report.price_rows(rows, report.prices())
    pending = len(list(report.default_spool().glob("*.*"))) if not args.flush else 0
    if pending:
        print(
            f"note: {pending} spool file(s) not yet committed; the next job commits them, or run with --flush",
            file=sys.stderr,
        )
    if args.view == "dashboard":
        from aiquery.usage.dashboard import write_dashboard

        path = write_dashboard(rows, Path(args.out), saved=saved)
        print(f"wrote {path} ({len(rows):,} requests)")
        return 0
    print(report.format_table(report.summarize(rows, args.by or ["endpoint"], saved)))
    return 0


def _estimate(args: argparse.Namespace) -> int:
    from aiquery.spark.estimate import estimate

    spark = session_from(args, "aiquery-estimate", warehouse=args.warehouse)
    print(estimate(spark, args.sql))
    return 0


def _run_sql(args: argparse.Namespace) -> int:
    if args.command == "run":
        missing = [f for f in args.files if not Path(f).is_file()]
        if missing:
            print(f"aiquery: no such SQL file: {', '.join(missing)}", file=sys.stderr)
            return 2
        scripts = [(f, Path(f).read_text(encoding="utf-8")) for f in args.files]
    else:
        scripts = [("", args.sql)]
    from aiquery.cli.script import ScriptError, run_script
    from aiquery.usage.driver.progress import progress

    spark = session_from(args, "aiquery-sql", warehouse=args.warehouse)
    try:
        for name, text in scripts:
            if name:
                print(f"== {name}", flush=True)
            try:
                if args.no_progress:
                    run_script(spark, text, max_rows=args.max_rows)
                else:
                    with progress(spark):
                        run_script(spark, text, max_rows=args.max_rows)
            except ScriptError as e:
                print(f"aiquery: {name + ': ' if name else ''}{e}", file=sys.stderr)
                return 1
    finally:
        from aiquery.usage.driver.committer import flush

        flush(spark)
    return 0


def _endpoints() -> int:
    from aiquery.endpoints.registry import EMBEDDED, load_registry
    from aiquery.usage.report import format_table

    registry = load_registry()
    rows = []
    for name in sorted(registry.endpoints):
        described = registry.endpoints[name].describe()
        if described["url"] == EMBEDDED:
            described["url"] = "(embedded local emulator, started on demand)"
        rows.append(
            {
                k: described[k]
                for k in ("name", "task", "protocol", "url", "token", "price", "source")
            }
        )
    print(format_table(rows))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from aiquery.cli.demo import run_demo

    run_demo(session_from(args, "aiquery-demo", warehouse=args.warehouse), rows=args.rows)
    return 0


def _serve(args: argparse.Namespace) -> int:
    from aiquery.serving.emulator import Emulator
    from aiquery.serving.server import base_url, new_token, serve_forever

    overrides: dict[str, Any] = {
        f: getattr(args, f) for f in _FAULT_FLAGS if getattr(args, f) is not None
    }
    config = load_config(args.config, fault_overrides=overrides)
    token_given = args.token or os.environ.get("AIQUERY_SERVE_TOKEN")
    admin_given = args.admin_token or os.environ.get("AIQUERY_SERVE_ADMIN_TOKEN")
    token = token_given or new_token()
    admin_token = admin_given or new_token()
    emulator = Emulator(config, token=token, admin_token=admin_token)

    def ready(port: int) -> None:
        url = base_url(args.host, port)
        # A token the user chose is theirs already; only a generated one is shown.
        shown = "(as given by --token / AIQUERY_SERVE_TOKEN)" if token_given else token
        shown_admin = (
            "(as given by --admin-token / AIQUERY_SERVE_ADMIN_TOKEN)"
            if admin_given
            else admin_token
        )
        print(f"aiquery serve: listening on {url}", flush=True)
        print(f"token: {shown}", flush=True)
        print(f"admin token: {shown_admin}", flush=True)
        print(f"{len(config.endpoints)} endpoints; try: export DATABRICKS_HOST={url}", flush=True)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_forever(emulator, args.host, args.port, ready))
    return 0


def _jvm(args: argparse.Namespace) -> int:
    from aiquery.spark.extension import extension_jar
    from aiquery.spark.session import submit_args

    if args.args:
        print(shlex.join(submit_args()))
        return 0
    print(extension_jar())
    print(
        "# spark-sql, Thrift/Connect servers, spark-submit: $(aiquery jvm --args)", file=sys.stderr
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.log_level:
        os.environ[ENV] = args.log_level  # Spark's Python workers inherit it
    try:
        setup(args.log_level)
        if args.command == "serve":
            return _serve(args)
        if args.command == "usage":
            return _usage(args)
        if args.command == "estimate":
            return _estimate(args)
        if args.command in ("sql", "run"):
            return _run_sql(args)
        if args.command == "endpoints":
            return _endpoints()
        if args.command == "jvm":
            return _jvm(args)
        if args.command == "demo":
            return _demo(args)
    except (EmulatorConfigError, AiQueryError) as e:
        print(f"aiquery: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"aiquery: {e.strerror or e}", file=sys.stderr)
        return 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
