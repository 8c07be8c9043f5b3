"""Where running ai_query starts things: the one place, idempotent.

Analysis (`callspec.analyze`) only resolves and checks. A call site is *bound* for
execution when its UDF is made, just before Spark can run it:
- a built-in endpoint (the `EMBEDDED` placeholder) gets the URL and token of the embedded
  emulator, which starts on first use in this process (`aiquery.serving.embedded`); the
  UDF pickles the endpoint, so the URL must be known before Spark plans the job;
- the session's usage committer starts its background thread; the usage table itself is
  created by the first flush.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from pyspark.sql import SparkSession

from aiquery.endpoints.registry import EMBEDDED, Endpoint, Secret
from aiquery.settings import is_local
from aiquery.spark.callspec import CallSpec
from aiquery.usage.driver.committer import start_committing


def bind(spark: SparkSession, spec: CallSpec) -> CallSpec:
    """`spec`, ready to run: its endpoint reachable, its usage committed in the background."""
    if spec.usage is not None:
        start_committing(spark)
    return replace(spec, endpoint=live_endpoint(spec.endpoint))


def bind_endpoints(
    spark: SparkSession, endpoints: Mapping[str, Endpoint], *, records_usage: bool
) -> dict[str, Endpoint]:
    """Every endpoint of a registry, reachable, for a UDF that resolves names per query. On
    a cluster the built-in names stay unbound: executors cannot reach the embedded emulator."""
    if records_usage:
        start_committing(spark)
    if not is_local(spark):
        return dict(endpoints)
    return {name: live_endpoint(e) for name, e in endpoints.items()}


def live_endpoint(endpoint: Endpoint) -> Endpoint:
    """Built-in endpoints pointed at the embedded emulator, starting it if needed."""
    if endpoint.base_url != EMBEDDED:
        return endpoint
    from aiquery.serving.embedded import ensure_emulator

    url, token = ensure_emulator()
    return replace(endpoint, base_url=url, token=Secret(token), source="embedded emulator")
