"""Cost control end to end: identical inputs sent once (and the rows saved recorded), and
budgets that stop a query at its limit."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import time

import pytest

import aiquery
from aiquery.endpoints.catalog import DEFAULT_PRICES
from aiquery.endpoints.registry import configure
from aiquery.protocols.common import Message
from aiquery.serving.control import EmulatorControl
from aiquery.serving.models import chat_reply
from aiquery.usage.driver.committer import flush
from aiquery.usage.driver.settings import usage_settings
from aiquery.usage.report import load_saved

pytestmark = pytest.mark.spark

# 1,000 rows in two partitions; rows whose id ends in 1, 2 or 3 repeat the text of the row
# ending in 0 before them (in the same partition): 700 distinct requests.
DUPLICATES = """
SELECT id, concat('Summarize: item ', id - CASE WHEN id % 10 BETWEEN 1 AND 3 THEN id % 10 ELSE 0 END, '. rest') AS p
FROM range(0, 1000, 1, 2)
"""


def saved_rows(spark, invocations: set[str]) -> int:  # type: ignore[no-untyped-def]
    ids = ",".join(f"'{i}'" for i in invocations)
    return (
        spark.sql(
            f"SELECT coalesce(sum(rows), 0) AS n FROM ai_gateway.usage_saved WHERE invocation_id IN ({ids})"
        )
        .first()
        .n
    )


def test_thirty_percent_duplicates_send_seventy_percent_of_the_requests(
    spark, workspace, control: EmulatorControl
) -> None:  # type: ignore[no-untyped-def]
    spark.sql(DUPLICATES).createOrReplaceTempView("dupes")
    shown = io.StringIO()
    with aiquery.progress(spark, stream=shown, interval_s=0.2) as monitor:
        rows = aiquery.sql(
            spark, "SELECT id, p, ai_query('databricks-gpt-5-mini', p) AS a FROM dupes"
        ).collect()
    assert len(rows) == 1000
    last = shown.getvalue().strip().splitlines()[-1]
    assert "ai_query: 1,000 rows" in last and "300 rows without a request" in last
    assert "700 requests" in last
    price = DEFAULT_PRICES["databricks-gpt-5-mini"]
    cost = price.cost(monitor.tally.input_tokens, monitor.tally.output_tokens)
    assert monitor.tally.cost == pytest.approx(cost) and f"${monitor.tally.cost:.4f}" in last
    assert all(r.a == chat_reply([Message("user", r.p)]).text for r in rows)
    log = control.requests("databricks-gpt-5-mini")
    assert len(log) == 700
    flush(spark)
    ids = ",".join(f"'{r['request_id']}'" for r in log)
    usage = aiquery.sql(
        spark,
        f"SELECT invocation_id, rows FROM system.ai_gateway.usage WHERE request_id IN ({ids})",
    ).collect()
    assert len(usage) == 700 and sum(u.rows for u in usage) == 700  # usage rows == the log
    invocations = {u.invocation_id for u in usage}
    assert saved_rows(spark, invocations) == 300
    # The CLI's reader (pyarrow, no Spark) sees them too.
    records = load_saved(usage_settings(spark).location)
    assert sum(r["rows"] for r in records if r["invocation_id"] in invocations) == 300


def test_duplicates_in_different_partitions_are_sent_once_for_the_whole_query(
    spark, workspace, control: EmulatorControl
) -> None:  # type: ignore[no-untyped-def]
    # 800 rows in 4 partitions, each text once in every partition: 200 distinct requests.
    # Two tasks run at once (rows wait for the other's requests), two after (they take
    # the answers published before).
    query = """
        SELECT id, p, ai_query('databricks-gpt-5-mini', p) AS a FROM (
            SELECT id, concat('Summarize: shared ', id % 200, '. rest') AS p
            FROM range(0, 800, 1, 4))
    """
    estimate = aiquery.estimate(spark, query)
    assert (estimate.requests, estimate.calls[0].deduplicated) == (200, 600)
    assert control.requests() == []
    rows = aiquery.sql(spark, query).collect()
    assert len(rows) == 800
    assert all(r.a == chat_reply([Message("user", r.p)]).text for r in rows)
    log = control.requests("databricks-gpt-5-mini")
    assert len(log) == 200
    usage = usage_of(spark, log)
    assert len(usage) == 200
    assert saved_rows(spark, {u.invocation_id for u in usage}) == 600


def test_a_query_that_reads_its_input_twice_sends_each_request_once(
    spark, workspace, control: EmulatorControl
) -> None:  # type: ignore[no-untyped-def]
    # A range sort evaluates its input twice (a sample, then the sort): the second pass
    # takes the first one's answers from the exchange.
    rows = aiquery.sql(
        spark,
        """SELECT id, ai_query('databricks-gpt-5-mini', concat('Summarize: sorted ', id, '. x')) AS a
           FROM range(0, 300, 1, 3) ORDER BY a""",
    ).collect()
    assert [r.a for r in rows] == sorted(f"sorted {i}." for i in range(300))
    assert len(control.requests("databricks-gpt-5-mini")) == 300


@pytest.mark.parametrize(
    ("setting", "params", "expected"),
    [
        (None, "'temperature', 0.8", 1000),  # samples: every row asked for its own
        (None, "'temperature', 0.8, 'seed', 7", 700),  # a seed makes them repeatable
        (None, "'temperature', 0.0", 700),
        ("false", None, 1000),
        ("true", "'temperature', 0.8", 700),
    ],
)
def test_dedup_is_off_for_samples_and_can_be_forced_either_way(
    spark,
    workspace,
    control: EmulatorControl,
    setting: str | None,
    params: str | None,
    expected: int,
) -> None:  # type: ignore[no-untyped-def]
    spark.sql(DUPLICATES).createOrReplaceTempView("dupes")
    if setting is not None:
        spark.conf.set("aiquery.dedup", setting)
    try:
        extra = f", modelParameters => named_struct({params})" if params else ""
        aiquery.sql(
            spark, f"SELECT ai_query('databricks-gpt-5-nano', p{extra}) AS a FROM dupes"
        ).collect()
    finally:
        spark.conf.unset("aiquery.dedup")
    assert len(control.requests("databricks-gpt-5-nano")) == expected


def test_a_bad_dedup_setting_names_the_choices(spark, workspace) -> None:  # type: ignore[no-untyped-def]
    spark.conf.set("aiquery.dedup", "sometimes")
    try:
        with pytest.raises(Exception, match=r"aiquery\.dedup is 'sometimes'; use auto"):
            aiquery.sql(spark, "SELECT ai_query('databricks-gpt-5-nano', 'x')").collect()
    finally:
        spark.conf.unset("aiquery.dedup")


# --- budgets ---------------------------------------------------------------------------------

DISTINCT = "SELECT id, concat('Summarize: item ', id, '. rest') AS p FROM range(0, 400, 1, 2)"


@pytest.fixture
def budget(spark):  # type: ignore[no-untyped-def]
    """Set aiquery.budget.* (and a small window, so what is in flight is small) for one test."""
    names: list[str] = []

    def set_budget(**limits: object) -> None:
        for name, value in {"concurrencyPerTask": 4, **limits}.items():
            key = f"aiquery.{name}" if name == "concurrencyPerTask" else f"aiquery.budget.{name}"
            spark.conf.set(key, str(value))
            names.append(key)

    yield set_budget
    for key in names:
        spark.conf.unset(key)


def usage_of(spark, log: list[dict]) -> list:  # type: ignore[no-untyped-def]
    flush(spark)
    ids = ",".join(f"'{r['request_id']}'" for r in log) or "''"
    return aiquery.sql(
        spark,
        f"SELECT invocation_id, input_tokens, output_tokens FROM system.ai_gateway.usage WHERE request_id IN ({ids})",
    ).collect()


def test_max_requests_sends_exactly_that_many_and_the_rest_say_why(
    spark, workspace, control: EmulatorControl, budget
) -> None:  # type: ignore[no-untyped-def]
    spark.sql(DISTINCT).createOrReplaceTempView("distinct_rows")
    budget(maxRequests=100)
    rows = aiquery.sql(
        spark,
        "SELECT ai_query('databricks-gpt-5-mini', p, failOnError => false) AS r FROM distinct_rows",
    ).collect()
    answered = [r for r in rows if r.r.errorMessage is None]
    refused = [r for r in rows if r.r.errorMessage is not None]
    assert len(answered) == 100 and len(refused) == 300
    assert all("BUDGET_EXHAUSTED" in r.r.errorMessage for r in refused)
    assert "aiquery.budget.maxRequests = 100 requests were sent" in refused[0].r.errorMessage
    log = control.requests("databricks-gpt-5-mini")
    assert len(log) == 100 and len(usage_of(spark, log)) == 100  # usage committed


@pytest.mark.parametrize("kind", ["maxTokens", "maxCost"])
def test_tokens_and_cost_budgets_stop_at_the_limit_give_or_take_what_was_in_flight(
    spark, workspace, control: EmulatorControl, budget, kind: str
) -> None:  # type: ignore[no-untyped-def]
    spark.sql(DISTINCT).createOrReplaceTempView("distinct_rows")
    price = DEFAULT_PRICES["databricks-gpt-5"]
    limit = 2_000 if kind == "maxTokens" else 0.002
    budget(**{kind: limit})
    rows = aiquery.sql(
        spark,
        "SELECT ai_query('databricks-gpt-5', p, failOnError => false) AS r FROM distinct_rows",
    ).collect()
    log = control.requests("databricks-gpt-5")
    usage = usage_of(spark, log)
    assert len(usage) == len(log)
    spent = [
        (u.input_tokens + u.output_tokens)
        if kind == "maxTokens"
        else price.cost(u.input_tokens, u.output_tokens)
        for u in usage
    ]
    assert sum(spent) >= limit  # it ran up to the limit...
    # ...and past it only by what two tasks had in flight or leased: 2 x (window 4 + lease 8).
    assert sum(spent) - limit <= 2 * (4 + 8) * max(spent)
    refused = [r for r in rows if r.r.errorMessage is not None]
    assert len(refused) == 400 - len(log) > 0
    assert all(f"aiquery.budget.{kind}" in r.r.errorMessage for r in refused)


def test_under_fail_on_error_an_exhausted_budget_fails_the_query_and_usage_is_committed(
    spark, workspace, control: EmulatorControl, budget
) -> None:  # type: ignore[no-untyped-def]
    spark.sql(DISTINCT).createOrReplaceTempView("distinct_rows")
    budget(maxRequests=30)
    with pytest.raises(Exception, match="BUDGET_EXHAUSTED") as caught:
        aiquery.sql(
            spark, "SELECT ai_query('databricks-gpt-5-nano', p) AS r FROM distinct_rows"
        ).collect()
    assert "maxRequests = 30" in str(caught.value)
    log = control.requests("databricks-gpt-5-nano")
    assert len(log) == 30 and len(usage_of(spark, log)) == 30


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        (
            {"maxCost": "lots"},
            "aiquery.budget.maxCost is 'lots'; it must be a number of US dollars",
        ),
        ({"maxRequests": "2.5"}, "aiquery.budget.maxRequests is '2.5'; it must be a whole number"),
    ],
)
def test_a_bad_budget_says_what_it_must_be(spark, workspace, budget, limits, message) -> None:  # type: ignore[no-untyped-def]
    budget(**limits)
    with pytest.raises(Exception, match=re.escape(message)):
        aiquery.sql(spark, "SELECT ai_query('databricks-gpt-5-nano', 'x')").collect()


def test_a_cost_budget_on_an_endpoint_without_a_price_is_refused_before_any_request(
    spark, workspace, control: EmulatorControl, budget
) -> None:  # type: ignore[no-untyped-def]
    configure({"unpriced": {"base_url": workspace.url, "model": "databricks-gpt-5-nano",
                            "token": workspace.token}})  # fmt: skip
    budget(maxCost=1)
    with pytest.raises(Exception, match="endpoint 'unpriced' has no price: set input_price"):
        aiquery.sql(spark, "SELECT ai_query('unpriced', 'x')").collect()
    assert control.requests() == []


# --- the dry run ----------------------------------------------------------------------------


# Rows whose id ends in 1, 2 or 3 repeat the row ending in 0: 30% duplicates, in one task.
def rows_between(first: int, last: int) -> str:
    return (
        "SELECT id, concat('Summarize: item ', id - CASE WHEN id % 10 BETWEEN 1 AND 3 "
        f"THEN id % 10 ELSE 0 END, '. rest of the review text') AS p FROM range({first}, {last}, 1, 2)"
    )


def real_run(spark, control: EmulatorControl, query: str, endpoint: str) -> dict[str, float]:  # type: ignore[no-untyped-def]
    before = {r["request_id"] for r in control.requests(endpoint)}
    aiquery.sql(spark, query).collect()
    log = [r for r in control.requests(endpoint) if r["request_id"] not in before]
    usage = usage_of(spark, log)
    price = DEFAULT_PRICES[endpoint]
    return {
        "requests": len(log),
        "input_tokens": sum(u.input_tokens for u in usage),
        "output_tokens": sum(u.output_tokens for u in usage),
        "cost": sum(price.cost(u.input_tokens, u.output_tokens) for u in usage),
    }


def test_the_dry_run_sends_nothing_and_is_within_ten_percent_of_the_real_run(
    spark, workspace, control: EmulatorControl
) -> None:  # type: ignore[no-untyped-def]
    endpoint = "databricks-gemma-3-12b"  # used by no other test: its 7-day history is ours
    query = f"SELECT id, ai_query('{endpoint}', p) AS a FROM ({rows_between(1000, 1600)})"
    # Recent usage of the endpoint gives the expected output per request.
    real_run(
        spark, control, f"SELECT ai_query('{endpoint}', p) FROM ({rows_between(0, 400)})", endpoint
    )
    control.reset()

    estimate = aiquery.estimate(spark, query)
    assert control.requests() == []  # the emulator's log stays empty: nothing was sent
    (call,) = estimate.calls
    assert (call.function, call.endpoint, call.rows, call.deduplicated) == (
        "ai_query",
        endpoint,
        600,
        180,
    )
    assert "average of 280 in 7 days" in call.output_basis
    assert call.seconds is not None and call.seconds > 0
    assert "nothing was sent" in str(estimate) and f"ai_query({endpoint})" in str(estimate)

    real = real_run(spark, control, query, endpoint)
    assert call.requests == real["requests"] == 420
    assert call.input_tokens == pytest.approx(real["input_tokens"], rel=0.10)
    assert call.output_tokens == pytest.approx(real["output_tokens"], rel=0.10)
    assert call.cost == pytest.approx(real["cost"], rel=0.10)


def test_the_dry_run_counts_batched_embedding_requests_and_ai_functions(
    spark, workspace, control: EmulatorControl
) -> None:  # type: ignore[no-untyped-def]
    query = f"""
        SELECT ai_query('databricks-gte-large-en', p) AS v,
               ai_classify(p, ARRAY('good', 'bad')) AS label
        FROM ({rows_between(0, 500)})
    """
    estimate = aiquery.estimate(spark, query)
    assert control.requests() == []
    by_function = {c.function: c for c in estimate.calls}
    embed, classify = by_function["ai_query"], by_function["ai_classify"]
    assert embed.output_tokens == 0 and embed.output_basis == "none (embeddings)"
    aiquery.sql(spark, query).collect()
    assert embed.requests == len(control.requests("databricks-gte-large-en"))
    assert embed.requests < embed.rows - embed.deduplicated  # batched
    classified = [r for r in control.requests() if r["endpoint"] != "databricks-gte-large-en"]
    assert classify.requests == len(classified) == 350


def test_the_dry_run_takes_only_a_query_and_runs_nothing_else(
    spark, workspace, control: EmulatorControl
) -> None:  # type: ignore[no-untyped-def]
    spark.sql("CREATE TABLE IF NOT EXISTS estimate_target (a STRING) USING delta")
    with pytest.raises(Exception, match="takes one query"):
        aiquery.estimate(
            spark,
            "INSERT INTO estimate_target SELECT ai_query('databricks-gpt-5-nano', 'x')",
        )
    assert spark.table("estimate_target").count() == 0 and control.requests() == []
    with pytest.raises(Exception, match="calls no AI function"):
        aiquery.estimate(spark, "SELECT 1")


def test_cli_estimate_prints_the_figures_and_sends_nothing(
    emulator, control: EmulatorControl, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    done = subprocess.run(
        [sys.executable, "-m", "aiquery.cli", "estimate",
         f"SELECT ai_query('databricks-gpt-5-mini', p) FROM ({rows_between(0, 100)})"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={**os.environ, "DATABRICKS_HOST": emulator.url, "DATABRICKS_TOKEN": emulator.token},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "ai_query(databricks-gpt-5-mini)" in done.stdout
    assert "total: 70 requests" in done.stdout and "nothing was sent" in done.stdout
    assert emulator.token not in done.stdout + done.stderr
    assert control.requests() == []


# --- the response cache ------------------------------------------------------------------------


@pytest.fixture
def cache_on(spark):  # type: ignore[no-untyped-def]
    spark.conf.set("aiquery.cache.enabled", "true")
    yield
    spark.conf.unset("aiquery.cache.enabled")
    spark.conf.unset("aiquery.cache.maxAge")


def saved_by_source(spark, invocation_ids: set[str]) -> dict[str, int]:  # type: ignore[no-untyped-def]
    ids = ",".join(f"'{i}'" for i in invocation_ids) or "''"
    found = spark.sql(
        "SELECT source, sum(rows) AS n FROM ai_gateway.usage_saved "
        f"WHERE invocation_id IN ({ids}) GROUP BY source"
    ).collect()
    return {r.source: r.n for r in found}


def test_a_run_that_failed_half_way_and_runs_again_with_the_cache_sends_only_the_missing_rows(
    spark, workspace, control: EmulatorControl, budget, cache_on
) -> None:  # type: ignore[no-untyped-def]
    spark.sql(DISTINCT).createOrReplaceTempView("distinct_rows")
    query = "SELECT id, p, ai_query('databricks-gpt-5-mini', p) AS a FROM distinct_rows"
    budget(maxRequests=150)  # the first run fails once it has sent 150 requests
    with pytest.raises(Exception, match="BUDGET_EXHAUSTED"):
        aiquery.sql(spark, query).collect()
    spark.conf.unset("aiquery.budget.maxRequests")
    first = control.requests("databricks-gpt-5-mini")
    answered = [u for u in usage_of(spark, first) if u.output_tokens is not None]
    assert 0 < len(answered) <= len(first) == 150

    rows = aiquery.sql(spark, query).collect()
    assert all(r.a == chat_reply([Message("user", r.p)]).text for r in rows) and len(rows) == 400
    again = control.requests("databricks-gpt-5-mini")[len(first) :]
    assert len(again) == 400 - len(answered)  # only the rows the first run did not answer
    flush(spark)
    invocations = {
        r.invocation_id
        for r in spark.sql(
            f"SELECT DISTINCT invocation_id FROM ai_gateway.usage WHERE request_id = '{again[0]['request_id']}'"
        ).collect()
    }
    assert saved_by_source(spark, invocations) == {"cache": len(answered)}  # counted, not usage


def test_a_changed_parameter_or_an_answer_past_max_age_is_a_miss(
    spark, workspace, control: EmulatorControl, cache_on
) -> None:  # type: ignore[no-untyped-def]
    spark.sql(DISTINCT).createOrReplaceTempView("distinct_rows")
    small = "SELECT ai_query('databricks-gpt-5-nano', p{}) FROM distinct_rows WHERE id < 50"
    aiquery.sql(spark, small.format("")).collect()
    aiquery.sql(spark, small.format("")).collect()  # all 50 from the cache
    assert len(control.requests("databricks-gpt-5-nano")) == 50
    params = ", modelParameters => named_struct('max_tokens', 64)"
    aiquery.sql(spark, small.format(params)).collect()  # another request: not the same answer
    assert len(control.requests("databricks-gpt-5-nano")) == 100
    time.sleep(1.5)
    spark.conf.set("aiquery.cache.maxAge", "1s")
    aiquery.sql(spark, small.format("")).collect()  # every answer is older than a second
    assert len(control.requests("databricks-gpt-5-nano")) == 150


def test_bad_cache_settings_say_what_they_must_be(spark, workspace) -> None:  # type: ignore[no-untyped-def]
    for name, value, message in (
        ("enabled", "yes", "aiquery.cache.enabled is 'yes'; use true or false"),
        ("maxAge", "forever", "aiquery.cache.maxAge is 'forever'; use a span such as 30d"),
    ):
        spark.conf.set("aiquery.cache.enabled", "true")
        spark.conf.set(f"aiquery.cache.{name}", value)
        try:
            with pytest.raises(Exception, match=re.escape(message)):
                aiquery.sql(spark, "SELECT ai_query('databricks-gpt-5-nano', 'x')").collect()
        finally:
            spark.conf.unset("aiquery.cache.enabled")
            spark.conf.unset(f"aiquery.cache.{name}")


def test_the_dry_run_counts_what_the_cache_would_answer(
    spark, workspace, control: EmulatorControl, cache_on
) -> None:  # type: ignore[no-untyped-def]
    spark.sql(DISTINCT).createOrReplaceTempView("distinct_rows")
    query = "SELECT ai_query('databricks-gpt-oss-20b', p) AS a FROM distinct_rows WHERE id < {}"
    aiquery.sql(spark, query.format(50)).collect()
    sent = len(control.requests())
    (call,) = aiquery.estimate(spark, query.format(120)).calls
    assert len(control.requests()) == sent == 50  # the estimate sent nothing
    assert (call.rows, call.cached, call.requests) == (120, 50, 70)
    assert "cached" in str(aiquery.estimate(spark, query.format(120))).splitlines()[0]
