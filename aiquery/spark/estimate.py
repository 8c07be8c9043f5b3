"""The dry run: what a query's AI calls would send and cost, without sending anything.

`aiquery estimate "<SQL>"` and `aiquery.estimate(spark, sql)` run the query with each AI
call replaced by a probe of the same result type that answers NULL (`aiquery.spark.probe`):
it builds each row's request exactly as the call would (prompts, AI functions' templates,
images) and counts what the engine would send (`client.sending.RequestTally`: NULL and
refused rows, cache hits, identical inputs sent once, embeddings batched), then reports to
the driver's coordinator. No endpoint is resolved to a live URL, no emulator starts, no
request leaves.

From the counts and the endpoint's configuration:
- input tokens: Databricks' `(len + 1) // 4` per text, what the emulator counts (a real
  model's tokenizer differs by some percent);
- output tokens: the endpoint's average per request in the usage table's last 7 days
  (per AI function), capped by `max_tokens`; with no history, `max_tokens` as a ceiling;
  else unknown;
- cost: from the endpoint's price (`input_price_per_million`, `output_price_per_million`);
- time: the requests per task in waves of the task's window at the recent median latency,
  and no less than the endpoint's requests and tokens per minute allow.

The query runs (its input is read) but writes nothing: only queries are accepted.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from pyspark.sql import SparkSession

from aiquery.client.sharing import ShareSettings
from aiquery.endpoints.catalog import canonical_name
from aiquery.endpoints.registry import Registry, Secret
from aiquery.errors import ConfigError, InvalidArgumentError
from aiquery.protocols.common import EMBEDDINGS
from aiquery.protocols.tasks import FUNCTION_TAG
from aiquery.spark import sqllex, sqlscan
from aiquery.spark.cache import bind_cache
from aiquery.spark.callspec import CallSpec
from aiquery.spark.coordinator import coordinator, take_tallies
from aiquery.spark.probe import probe
from aiquery.spark.sql import _Plan, _plan
from aiquery.usage.driver.committer import flush as flush_usage
from aiquery.usage.driver.progress import duration
from aiquery.usage.driver.settings import usage_settings
from aiquery.usage.record import TABLE

HISTORY = timedelta(days=7)
_QUERY_STARTS = ("select", "with", "from", "values", "table", "(")


@dataclass(frozen=True, slots=True)
class CallEstimate:
    """One AI call site's share of a query."""

    function: str
    endpoint: str
    rows: int  # rows that reach the call with a request (not NULL)
    refused: int  # rows answered with an error before sending (empty, bad input)
    cached: int  # rows the response cache answers (when it is on)
    deduplicated: int  # rows answered by an identical row's request
    requests: int
    input_tokens: int
    output_tokens: float | None
    output_basis: str  # where output_tokens comes from
    cost: float | None  # US dollars; None: the endpoint has no price
    cost_is_floor: bool  # the output tokens are unknown: the cost of the input alone
    seconds: float | None
    time_basis: str


@dataclass(frozen=True, slots=True)
class Estimate:
    calls: list[CallEstimate] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return sum(c.requests for c in self.calls)

    @property
    def cost(self) -> float | None:
        costs = [c.cost for c in self.calls]
        return None if any(c is None for c in costs) else sum(c or 0.0 for c in costs)

    @property
    def cost_is_floor(self) -> bool:
        return any(c.cost_is_floor for c in self.calls)

    def __str__(self) -> str:
        from aiquery.usage.report import Dollars, format_table

        lines = [
            {
                "call": f"{c.function}({c.endpoint})",
                "rows": c.rows,
                "cached": c.cached,
                "deduplicated": c.deduplicated,
                "requests": c.requests,
                "input_tokens": c.input_tokens,
                "output_tokens": None if c.output_tokens is None else round(c.output_tokens),
                "cost_usd": None
                if c.cost is None
                else (f">= {Dollars(c.cost)}" if c.cost_is_floor else Dollars(c.cost)),
                "time": None if c.seconds is None else duration(c.seconds),
            }
            for c in self.calls
        ]
        notes = [f"{c.function}({c.endpoint}): output tokens {c.output_basis}; time {c.time_basis}"
                 for c in self.calls]  # fmt: skip
        if self.cost is None:
            total = "cost unknown (an endpoint has no price)"
        else:
            total = f"{'at least ' if self.cost_is_floor else ''}${self.cost:,.4f}"
        return "\n".join(
            [
                format_table(lines),
                "",
                *notes,
                f"total: {self.requests:,} requests, {total}; nothing was sent",
            ]
        )


def estimate(spark: SparkSession, statement: str, registry: Registry | None = None) -> Estimate:
    """What `statement`'s AI calls would send and cost; sends nothing (see the module)."""
    _check_query(statement)
    plan = _plan(spark, statement, registry)
    sites = _sites(plan)
    if not sites:
        raise InvalidArgumentError(
            "the statement calls no AI function (ai_query, ai_classify, ...): nothing to estimate"
        )
    if plan.reads_usage:
        flush_usage(spark)
    found = coordinator(spark, None)
    key = uuid.uuid4().hex
    token = Secret(found.token)
    text = _render(spark, plan, sites, found.url, token, key)
    spark.sql(text).write.format("noop").mode("overwrite").save()
    tallies = take_tallies(key)
    history = _history(spark)
    return Estimate([_call(spec, tallies.get(i, {}), history) for i, spec in enumerate(sites)])


def _check_query(statement: str) -> None:
    statements = sqlscan.split_statements(statement)
    tokens = sqllex.significant(sqllex.lex(statements[0])) if len(statements) == 1 else []
    if not tokens or tokens[0].text.lower() not in _QUERY_STARTS:
        raise InvalidArgumentError(
            "aiquery estimate takes one query (SELECT ..., WITH ...): it runs it to read the "
            "input and writes nothing. For INSERT or CREATE TABLE ... AS, estimate their SELECT."
        )


def _sites(plan: _Plan) -> list[CallSpec]:
    """Every call site's spec, nested ones first, in the order `_render` numbers them."""
    found: list[CallSpec] = []
    for _, spec, inputs in plan.calls:
        for nested in inputs:
            found += _sites(nested)
        found.append(spec)
    return found


def _render(
    spark: SparkSession, plan: _Plan, sites: list[CallSpec], url: str, token: Secret, key: str
) -> str:
    counter = iter(range(len(sites)))

    def render(p: _Plan) -> str:
        replacements = []
        for call, spec, inputs in p.calls:
            rendered_inputs = [render(i) for i in inputs]
            index = next(counter)
            name = f"_aiquery_probe_{key[:8]}_{index}"
            if spec.settings.cache is not None:  # the cache's answers are not requests
                bound = replace(spec.settings, coordinator_url=url, coordinator_token=token)
                spec = replace(spec, settings=bind_cache(spark, bound, spec.endpoint))
            if spec.settings.share is not None:  # nor are inputs another task sends
                share = ShareSettings(f"dry-{key}-{index}")
                spec = replace(spec, settings=replace(spec.settings, share=share))
            spark.udf.register(name, probe(spec, url, token, key, index))
            text = f"{name}({', '.join(rendered_inputs)})"
            replacements.append(
                (call.start, call.end, f"parse_json({text})" if spec.variant else text)
            )
        replacements += [(start, end, TABLE) for start, end in p.usage_refs]
        return sqlscan.replace_spans(p.text, replacements)

    return render(plan)


@dataclass(frozen=True, slots=True)
class _History:
    """An endpoint's recent answered requests (per AI function): output tokens and latency."""

    requests: int
    output_tokens: int
    latencies_ms: list[int]

    @property
    def output_per_request(self) -> float:
        return self.output_tokens / self.requests

    @property
    def median_latency_s(self) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[len(ordered) // 2] / 1000


def _history(spark: SparkSession) -> dict[tuple[str, str], _History]:
    """By (endpoint, function): the last 7 days of answered requests in the usage table."""
    from aiquery.usage.report import load_rows

    settings = usage_settings(spark)
    if not settings.enabled:
        return {}
    flush_usage(spark)  # what this process spooled: commits usage, sends nothing
    try:
        rows = load_rows(settings.location, since=datetime.now(UTC) - HISTORY)
    except ConfigError:  # no usage table yet
        return {}
    grouped: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for row in rows:
        if row.get("status_code") != 200 or row.get("output_tokens") is None:
            continue
        function = (row.get("request_tags") or {}).get(FUNCTION_TAG, "ai_query")
        grouped.setdefault((canonical_name(row["endpoint_name"]), function), []).append(row)
    return {
        k: _History(
            len(v),
            sum(r["output_tokens"] for r in v),
            [r["latency_ms"] for r in v if r.get("latency_ms") is not None] or [0],
        )
        for k, v in grouped.items()
    }


def _call(
    spec: CallSpec,
    parts: Mapping[int, Mapping[str, int]],
    history: Mapping[tuple[str, str], _History],
) -> CallEstimate:
    endpoint = spec.endpoint
    total = {k: sum(p.get(k, 0) for p in parts.values()) for k in
             ("rows", "refused", "cached", "deduplicated", "requests", "input_tokens")}  # fmt: skip
    requests = total["requests"]
    past = history.get((canonical_name(endpoint.name), spec.function))
    max_tokens = spec.params.get("max_tokens")
    output: float | None
    if endpoint.task == EMBEDDINGS:
        output, basis = 0.0, "none (embeddings)"
    elif past is not None:
        per = past.output_per_request
        if max_tokens is not None and per > max_tokens:
            per, basis = float(max_tokens), f"max_tokens ({max_tokens})"
        else:
            basis = f"{per:,.1f} per request, the average of {past.requests:,} in 7 days"
        output = per * requests
    elif max_tokens is not None:
        output, basis = float(max_tokens) * requests, f"at most max_tokens ({max_tokens}) each"
    else:
        output, basis = None, "unknown: no usage in 7 days and no max_tokens"
    price = endpoint.price
    cost = None if price is None else price.cost(total["input_tokens"], round(output or 0))
    seconds, time_basis = _time(spec, parts, past, output, total["input_tokens"])
    return CallEstimate(
        function=spec.function,
        endpoint=endpoint.name,
        rows=total["rows"],
        refused=total["refused"],
        cached=total["cached"],
        deduplicated=total["deduplicated"],
        requests=requests,
        input_tokens=total["input_tokens"],
        output_tokens=output,
        output_basis=basis,
        cost=cost,
        cost_is_floor=output is None,
        seconds=seconds,
        time_basis=time_basis,
    )


def _time(
    spec: CallSpec,
    parts: Mapping[int, Mapping[str, int]],
    past: _History | None,
    output: float | None,
    input_tokens: int,
) -> tuple[float | None, str]:
    endpoint, settings = spec.endpoint, spec.settings
    floors = []
    requests = sum(p.get("requests", 0) for p in parts.values())
    if endpoint.requests_per_minute:
        floors.append(60 * requests / endpoint.requests_per_minute)
    if endpoint.tokens_per_minute:
        floors.append(60 * (input_tokens + (output or 0)) / endpoint.tokens_per_minute)
    floor = max(floors, default=0.0)
    if past is None:
        if floors:
            return floor, "at least, from the endpoint's rate limits (no recent latency)"
        return None, "unknown: no usage in 7 days and no rate limits"
    window = settings.concurrency
    if endpoint.max_concurrency:
        window = min(window, max(1, endpoint.max_concurrency // max(1, settings.parallelism)))
    task_seconds = [
        math.ceil(p.get("requests", 0) / window) * past.median_latency_s for p in parts.values()
    ]
    slots = max(1, min(settings.parallelism, len(task_seconds)))
    waves = sum(task_seconds) / slots
    basis = f"{past.median_latency_s * 1000:,.0f} ms median latency, windows of {window}"
    if floor > waves:
        return floor, "the endpoint's rate limits"
    return waves, basis
