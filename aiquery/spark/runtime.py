"""Where running ai_query starts things: the one place, idempotent.

Analysis (`callspec.analyze`) only resolves and checks. A call site is *bound* for
execution when its UDF is made, just before Spark can run it:
- a built-in endpoint (the `EMBEDDED` placeholder) gets the URL and token of the embedded
  emulator, which starts on first use in this process (`aiquery.serving.embedded`); the
  UDF pickles the endpoint, so the URL must be known before Spark plans the job;
- the session's usage committer starts its background thread; the usage table itself is
  created by the first flush;
- when usage is delivered to the driver (a cluster with no shared mount), the driver's
  coordinator starts, and the call site learns its address and token.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import replace

from pyspark.sql import SparkSession

from aiquery.client.engine import EngineSettings
from aiquery.client.sharing import ShareSettings
from aiquery.endpoints.registry import EMBEDDED, Endpoint, Secret
from aiquery.settings import is_local
from aiquery.spark.cache import bind_cache
from aiquery.spark.callspec import CallSpec
from aiquery.spark.coordinator import coordinator
from aiquery.spark.coordinator import stop_all as stop_coordinators
from aiquery.usage.driver.committer import start_committing
from aiquery.usage.driver.committer import stop_all as stop_committers
from aiquery.usage.executor import UsageContext


def bind(spark: SparkSession, spec: CallSpec) -> CallSpec:
    """`spec`, ready to run: its endpoint reachable, its usage committed in the background,
    its rate limits held job-wide."""
    usage = bind_usage(spark, spec.usage)
    settings = bind_limits(spark, spec.settings, [spec.endpoint], usage)
    if settings.cache is not None:
        settings = bind_cache(spark, settings, spec.endpoint)
    return replace(spec, endpoint=live_endpoint(spec.endpoint), usage=usage, settings=settings)


def shutdown() -> None:
    """Stop what binding started, as exit would, in the order exit would: coordinators
    first (their files closed), then committers (the last flush commits those files)."""
    stop_coordinators()
    stop_committers()


def bind_limits(
    spark: SparkSession,
    settings: EngineSettings,
    endpoints: Iterable[Endpoint],
    usage: UsageContext | None,
) -> EngineSettings:
    """`settings` with the coordinator that holds rate limits for the whole job, when any
    of `endpoints` has one (`requests_per_minute`, `tokens_per_minute`), and the query's
    budget and de-duplication exchange, each under a key of its own; also when the
    response cache is on (it serves it)."""
    limited = any(e.requests_per_minute or e.tokens_per_minute for e in endpoints)
    served = (settings.budget, settings.cache, settings.share)
    if not limited and all(s is None for s in served):
        return settings
    found = coordinator(spark, usage.spool_dir if usage is not None else None)
    budget = settings.budget and replace(settings.budget, key=uuid.uuid4().hex)
    share = settings.share and ShareSettings(uuid.uuid4().hex)
    return replace(
        settings,
        coordinator_url=found.url,
        coordinator_token=Secret(found.token),
        budget=budget,
        share=share,
    )


def bind_usage(spark: SparkSession, usage: UsageContext | None) -> UsageContext | None:
    """`usage`, ready to record: committed in the background, and when it is delivered to
    the driver, with the coordinator's address and token."""
    if usage is None:
        return None
    start_committing(spark)
    if usage.delivery != "driver":
        return usage
    found = coordinator(spark, usage.spool_dir)
    return replace(usage, collector_url=found.url, collector_token=Secret(found.token))


def bind_endpoints(spark: SparkSession, endpoints: Mapping[str, Endpoint]) -> dict[str, Endpoint]:
    """Every endpoint of a registry, reachable, for a UDF that resolves names per query. On
    a cluster the built-in names stay unbound: executors cannot reach the embedded emulator."""
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
