"""Faults during a Spark job: the emulator fails in each way a real endpoint does.

With `failOnError => true` transient faults are retried and the job returns the right
answers; with `false`, only rows whose retries ran out carry an error that says what
happened. Every request the server saw is exactly one usage row, whatever the fault.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

import aiquery
from aiquery.endpoints.registry import reset_configuration
from aiquery.protocols.common import Message
from aiquery.serving.control import EmulatorControl
from aiquery.serving.models import chat_reply
from aiquery.serving.requestlog import CLIENT_CLOSED, DROPPED, HUNG
from aiquery.serving.server import EmulatorServer
from aiquery.usage.driver.committer import flush
from aiquery.usage.record import NO_ANSWER

pytestmark = pytest.mark.spark

SERVED = "databricks-gpt-5-4"
ROWS = 200
CLIENT_TIMEOUT_S = 1.0

FAULTS: dict[str, dict[str, Any]] = {
    "server errors": {"error_rate_500": 0.05, "error_rate_503": 0.05},
    "429 storm": {"requests_per_minute": 2400},  # 40/s against a client that starts at 128
    "hangs past the client timeout": {"hang_rate": 0.1, "hang_seconds": 30},
    "dropped connections": {"drop_rate": 0.1},
    "truncated bodies": {"malformed_rate": 0.1},
}
# What a row's error says when its retries ran out, per fault.
SAYS = {
    "server errors": ("HTTP 50",),
    "hangs past the client timeout": (f"timed out after {CLIENT_TIMEOUT_S:g} s",),
    "dropped connections": ("connection error",),
    "truncated bodies": ("malformed body", "HTTP 200"),
}


def expected(i: int) -> str:
    return chat_reply([Message("user", prompt(i))]).text


def prompt(i: int) -> str:
    return f"Summarize: report {i} from the night shift. Nothing else matters."


@pytest.fixture
def rows(spark):  # type: ignore[no-untyped-def]
    spark.range(0, ROWS, numPartitions=2).selectExpr(
        "id",
        "concat('Summarize: report ', id, ' from the night shift. Nothing else matters.') AS p",
    ).createOrReplaceTempView("night")


def point_at(server: EmulatorServer, name: str = "flaky") -> None:
    """A client endpoint on `server` with a short timeout, so hangs end quickly."""
    aiquery.configure(
        {
            name: {
                "protocol": "databricks",
                "base_url": server.url,
                "model": SERVED,
                "token": server.token,
                "timeout_s": CLIENT_TIMEOUT_S,
            }
        }
    )


@pytest.fixture
def flaky(emulator: EmulatorServer) -> Iterator[str]:
    point_at(emulator)
    yield "flaky"
    reset_configuration()


@pytest.fixture
def attempts(spark):  # type: ignore[no-untyped-def]
    def set_attempts(n: int) -> None:
        spark.conf.set("aiquery.retryMaxAttempts", str(n))

    yield set_attempts
    spark.conf.unset("aiquery.retryMaxAttempts")


def usage_rows(spark, where: str) -> list[Any]:  # type: ignore[no-untyped-def]
    flush(spark)
    return aiquery.sql(
        spark,
        "SELECT request_id, status_code, attempt, error_message FROM system.ai_gateway.usage "
        f"WHERE {where}",
    ).collect()


def assert_usage_matches_the_server(
    spark,  # type: ignore[no-untyped-def]
    log: list[dict[str, Any]],
    endpoint: str | None = None,
) -> list[Any]:
    """One usage row per request the server logged; statuses agree where the client saw one.

    With `endpoint`, every usage row of that client endpoint is checked, including requests
    the server never logged: those must have had no answer (refused while it was down).
    """
    server = {r["request_id"]: r["status"] for r in log}
    quoted = ",".join(f"'{i}'" for i in server) or "''"
    usage = usage_rows(
        spark, f"endpoint_name = '{endpoint}'" if endpoint else f"request_id IN ({quoted})"
    )
    ids = Counter(u.request_id for u in usage)
    assert max(ids.values(), default=1) == 1, "a request has two usage rows"
    assert set(server) <= set(ids), "a request the server saw has no usage row"
    for u in usage:
        if u.request_id not in server:
            assert u.status_code is None and "connection error" in u.error_message
        elif u.status_code is not None:
            assert server[u.request_id] == u.status_code
        else:  # the client got no HTTP answer: the server hung, dropped it, or was cut off
            assert (
                server[u.request_id] in (HUNG, DROPPED, CLIENT_CLOSED)
                or u.error_message == NO_ANSWER
            )
    return usage


@pytest.mark.parametrize("fault", list(FAULTS))
def test_transient_faults_are_retried_and_the_job_succeeds(
    spark, rows, flaky: str, control: EmulatorControl, fault: str
) -> None:  # type: ignore[no-untyped-def]
    control.set_faults(SERVED, seed=5, **FAULTS[fault])
    got = aiquery.sql(spark, f"SELECT id, ai_query('{flaky}', p) AS r FROM night").collect()
    assert sorted((row.id, row.r) for row in got) == [(i, expected(i)) for i in range(ROWS)]
    log = control.requests(SERVED)
    injected = Counter(r["fault"] or r["status"] for r in log)
    assert len(log) > ROWS and set(injected) - {200}, f"no fault was injected: {injected}"
    if fault == "429 storm":  # the client slows down to the limit instead of hammering it
        print(f"429 storm: {injected}")
        assert injected[429] <= ROWS
    assert_usage_matches_the_server(spark, log)


@pytest.mark.parametrize("fault", list(SAYS))
def test_rows_whose_retries_ran_out_carry_an_error_that_says_what_happened(
    spark, rows, flaky: str, control: EmulatorControl, attempts, fault: str
) -> None:  # type: ignore[no-untyped-def]
    # Four times the rate, two attempts: some rows fail twice in a row.
    control.set_faults(SERVED, seed=9, **{k: v * 4 for k, v in FAULTS[fault].items()})
    attempts(2)
    got = aiquery.sql(
        spark, f"SELECT id, ai_query('{flaky}', p, failOnError => false) AS r FROM night"
    ).collect()
    assert sorted(row.id for row in got) == list(range(ROWS))
    failed = [row for row in got if row.r.errorMessage is not None]
    for row in got:
        if row.r.errorMessage is None:
            assert row.r.result == expected(row.id)
        else:
            assert row.r.result is None
    assert failed, "no row exhausted its retries; the test proves nothing"
    for row in failed:
        message = row.r.errorMessage
        assert message.startswith("[AI_FUNCTION_HTTP_REQUEST_ERROR]")
        assert f"endpoint '{flaky}'" in message and "2 attempts" in message
        assert any(s in message for s in SAYS[fault]), message
    usage = assert_usage_matches_the_server(spark, control.requests(SERVED))
    # Exactly the rows whose second attempt failed are errors: nothing else gave up.
    gave_up = [u for u in usage if u.attempt == 2 and u.error_message is not None]
    assert len(failed) == len(gave_up)


def test_the_emulator_restarted_mid_job_loses_nothing(spark, rows) -> None:  # type: ignore[no-untyped-def]
    server = EmulatorServer(shutdown_timeout=0.0).start()
    control = EmulatorControl(server.url, server.admin_token)  # the same for both servers
    faults = {"latency_ms": 40, "latency_distribution": "exponential", "seed": 2}
    outcome: dict[str, Any] = {}

    def job() -> None:
        try:
            outcome["rows"] = aiquery.sql(
                spark, "SELECT id, ai_query('redeployed', p) AS r FROM night"
            ).collect()
        except BaseException as e:  # reported by the assertions below
            outcome["error"] = e

    try:
        control.set_faults(SERVED, **faults)
        point_at(server, "redeployed")
        spark.conf.set("aiquery.concurrencyPerTask", "4")  # a job long enough to interrupt
        thread = threading.Thread(target=job)
        thread.start()
        deadline = time.monotonic() + 120
        while len(server.emulator.log.entries) < ROWS // 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert thread.is_alive(), "the job ended before the restart"
        first, server = server, server.restarted()  # in-flight requests are cut off
        control.set_faults(SERVED, **faults)
        thread.join(timeout=300)
        before = first.emulator.log.snapshot(SERVED)
        after = control.requests(SERVED)
    finally:
        control.close()
        server.stop()
        spark.conf.unset("aiquery.concurrencyPerTask")
        reset_configuration()
    assert "error" not in outcome, outcome.get("error")
    assert sorted((row.id, row.r) for row in outcome["rows"]) == [
        (i, expected(i)) for i in range(ROWS)
    ]
    assert before and after, "both incarnations of the server answered requests"
    usage = assert_usage_matches_the_server(spark, before + after, endpoint="redeployed")
    felt = [u for u in usage if u.status_code is None]
    assert felt, "no request was cut off or refused: the restart was not felt"
