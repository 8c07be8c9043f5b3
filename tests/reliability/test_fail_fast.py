"""Terminal errors stop a job after a bounded number of requests, not one per row.

A bad token, a deleted endpoint or a request the server always refuses cannot succeed on
a retry. Each task stops once the same terminal error repeats (the circuit breaker), so
the whole job sends at most the requests in flight plus a few per task, whatever
`failOnError` says, and the error names the cause but never the token.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest

import aiquery
from aiquery.endpoints.registry import reset_configuration
from aiquery.serving.control import EmulatorControl
from aiquery.serving.server import EmulatorServer
from aiquery.usage.driver.committer import flush

pytestmark = pytest.mark.spark

ROWS = 3000
TASKS = 2
CONCURRENCY = 8
BREAKER = 5  # identical terminal errors before a task stops
WRONG_TOKEN = "dapi-wrong-0123456789abcdef"


def bad_token(server: EmulatorServer, control: EmulatorControl) -> tuple[str, str]:
    return "databricks-gpt-5-4", WRONG_TOKEN


def deleted_endpoint(server: EmulatorServer, control: EmulatorControl) -> tuple[str, str]:
    control.delete_endpoint("databricks-gpt-5-4")
    return "databricks-gpt-5-4", server.token


def always_refused(server: EmulatorServer, control: EmulatorControl) -> tuple[str, str]:
    # A completions model behind a name the client believes is a chat model: every chat
    # body is refused with 400, as a misconfigured endpoint would be.
    control.put_endpoint("mislabelled", task="llm/v1/completions")
    return "mislabelled", server.token


CASES: dict[str, tuple[Callable[[EmulatorServer, EmulatorControl], tuple[str, str]], str]] = {
    "bad token": (bad_token, "HTTP 401"),
    "deleted endpoint": (deleted_endpoint, "HTTP 404"),
    "400 on every request": (always_refused, "HTTP 400"),
}


@pytest.fixture
def many(spark):  # type: ignore[no-untyped-def]
    spark.range(0, ROWS, numPartitions=TASKS).selectExpr(
        "concat('Summarize: line ', id, '. More.') AS p"
    ).createOrReplaceTempView("many")
    spark.conf.set("aiquery.concurrencyPerTask", str(CONCURRENCY))
    yield
    spark.conf.unset("aiquery.concurrencyPerTask")


@pytest.fixture
def doomed(emulator: EmulatorServer) -> Iterator[Callable[[str, str, str], None]]:
    def point(name: str, model: str, token: str) -> None:
        aiquery.configure(
            {
                name: {
                    "protocol": "databricks",
                    "base_url": emulator.url,
                    "model": model,
                    "task": "chat",
                    "token": token,
                }
            }
        )

    yield point
    reset_configuration()


@pytest.mark.parametrize("fail_on_error", [True, False])
@pytest.mark.parametrize("case", list(CASES))
def test_a_terminal_error_stops_the_job_within_a_bounded_number_of_requests(
    spark,
    many,
    doomed,
    emulator: EmulatorServer,
    control: EmulatorControl,
    case: str,
    fail_on_error: bool,
) -> None:  # type: ignore[no-untyped-def]
    setup, cause = CASES[case]
    model, token = setup(emulator, control)
    doomed("doomed", model, token)
    flag = "true" if fail_on_error else "false"
    # Counted by tag in the usage table (which matches the server's log, see
    # test_job_faults): a task Spark cancelled in an earlier test may still be finishing.
    run = f"{case}-{flag}".replace(" ", "-")
    spark.conf.set("aiquery.requestTags", json.dumps({"run": run}))
    try:
        with pytest.raises(Exception) as caught:
            aiquery.sql(
                spark, f"SELECT ai_query('doomed', p, failOnError => {flag}) AS r FROM many"
            ).collect()
    finally:
        spark.conf.unset("aiquery.requestTags")
    message = str(caught.value)
    assert "AI_FUNCTION_HTTP_REQUEST_ERROR" in message and cause in message
    assert "endpoint 'doomed'" in message
    assert WRONG_TOKEN not in message and emulator.token not in message
    flush(spark)
    sent = aiquery.sql(
        spark, f"SELECT count(*) FROM system.ai_gateway.usage WHERE request_tags['run'] = '{run}'"
    ).first()[0]
    assert 1 <= sent <= TASKS * (CONCURRENCY + BREAKER), f"{sent} requests for {ROWS} rows"
