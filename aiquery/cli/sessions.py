"""The Spark options every Spark-running command takes: where to run, and extra settings."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def add_spark_options(parser: argparse.ArgumentParser, *, warehouse: bool) -> None:
    group = parser.add_argument_group("where Spark runs")
    if warehouse:
        group.add_argument(
            "--warehouse",
            default="spark-warehouse",
            help="where tables and the usage table go (default ./spark-warehouse)",
        )
    group.add_argument(
        "--master",
        help="Spark master URL, e.g. spark://host:7077 or local[4] (default: what spark-submit, "
        "MASTER or spark-defaults.conf chose, else local[*])",
    )
    group.add_argument(
        "--remote", metavar="URL", help="a Spark Connect server instead, e.g. sc://host:15002"
    )
    group.add_argument(
        "--conf",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        type=_key_value,
        help='a Spark or aiquery setting, e.g. aiquery.requestTags=\'{"team": "ml"}\'; repeatable',
    )


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"--conf takes KEY=VALUE, not {text!r}")
    return key.strip(), value


def session_from(
    args: argparse.Namespace, app_name: str, *, warehouse: str | None = None, **conf: Any
) -> SparkSession:
    """The session the command's options ask for, quiet in the console."""
    from aiquery.settings import is_classic
    from aiquery.spark.session import spark_session

    if args.master and args.remote:
        raise SystemExit("aiquery: --master and --remote exclude each other")
    settings = {**conf, **dict(args.conf)}
    spark = spark_session(
        app_name,
        master=args.master,
        remote=args.remote,
        warehouse=None if args.remote else warehouse,
        conf=settings,
    )
    if is_classic(spark):
        spark.sparkContext.setLogLevel("ERROR")
    return spark
