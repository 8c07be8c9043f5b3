"""Every retry path of `EndpointClient` through its transport seam: no sockets, no Spark, no sleeping.

A `MockTransport` plays the server (a script of answers or network faults), a fake sleep
records the delays the client asked for, and a fixed wall clock makes an HTTP-date
`Retry-After` exact. The attempts the client records are what the usage table would get.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from aiquery.client.http import EndpointClient, Outcome
from aiquery.client.limiter import AdaptiveConcurrency, AdaptiveRate, CircuitBreaker
from aiquery.client.retry import RetryPolicy
from aiquery.client.transport import (
    MockTransport,
    Request,
    Response,
    TransportConnectionError,
    TransportTimeoutError,
)
from aiquery.client.wire import wire_for
from aiquery.endpoints.registry import Endpoint, Secret
from aiquery.protocols.common import CHAT
from aiquery.usage.record import Attempt

TOKEN = "dapi-secret-token-0123456789"
NOW = 1_800_000_000.0  # the fixed wall clock, epoch seconds
POLICY = RetryPolicy(max_attempts=3, max_throttled_attempts=10, base_delay_s=0.5)
ENDPOINT = Endpoint(
    "chatty", "databricks", "http://model.test", CHAT, "chatty", token=Secret(TOKEN)
)

Answer = Response | TransportTimeoutError | TransportConnectionError


def ok(text: str = "fine") -> Response:
    body = {"choices": [{"message": {"content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1}}  # fmt: skip
    return Response(200, {"x-request-id": "srv-1"}, json.dumps(body).encode())


def error(status: int, message: str = "nope", **headers: str) -> Response:
    body = {"error_code": "SOME_CODE", "message": message}
    return Response(status, {k.replace("_", "-"): v for k, v in headers.items()},
                    json.dumps(body).encode())  # fmt: skip


class Spy:
    """The client's `Recorder`: what the usage spool would be given."""

    def __init__(self) -> None:
        self.starts: list[Attempt] = []
        self.finishes: list[Attempt] = []

    def started(self, attempt: Attempt) -> None:
        self.starts.append(attempt)

    def finished(self, attempt: Attempt) -> None:
        self.finishes.append(attempt)

    async def drain(self) -> None:
        return None


@dataclass
class Harness:
    transport: MockTransport
    client: EndpointClient
    delays: list[float]
    spy: Spy

    def call(self, inputs: Sequence[str] = ("hello",)) -> Outcome:
        return asyncio.run(self.client.call(list(inputs)))

    @property
    def sent(self) -> list[Request]:
        return self.transport.requests


def harness(
    *answers: Answer, policy: RetryPolicy = POLICY, breaker: CircuitBreaker | None = None
) -> Harness:
    """A client whose transport answers with `answers` in order, the last one forever."""
    script = list(answers)

    def handler(request: Request) -> Response:
        answer = script.pop(0) if len(script) > 1 else script[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    delays: list[float] = []

    async def sleep(seconds: float) -> None:
        delays.append(seconds)

    async def pace(seconds: float) -> None:  # pacing after a 429 is not a retry delay
        return None

    spy = Spy()
    transport = MockTransport(handler)
    client = EndpointClient(
        ENDPOINT,
        wire_for(ENDPOINT, {}),
        transport,
        concurrency=AdaptiveConcurrency(4),
        policy=policy,
        breaker=breaker or CircuitBreaker(5),
        pacing=AdaptiveRate(sleep=pace),
        recorder=spy,
        rng=random.Random(7),
        sleep=sleep,
        clock=lambda: NOW,
    )
    return Harness(transport, client, delays, spy)


# --- what one request looks like, and what it records -------------------------------------


def test_an_answer_is_decoded_and_its_attempt_recorded_started_then_finished() -> None:
    h = harness(ok("Hello there."))
    outcome = h.call(["Summarize: hi"])
    assert outcome.outputs == ["Hello there."] and outcome.error is None
    [request] = h.sent
    assert request.url == "http://model.test/serving-endpoints/chatty/invocations"
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert json.loads(request.body)["messages"] == [{"role": "user", "content": "Summarize: hi"}]
    [started], [finished] = h.spy.starts, h.spy.finishes
    assert started.request_id == finished.request_id == request.headers["x-request-id"]
    assert (started.event_time, started.attempt, started.rows) == (NOW, 1, 1)
    assert started.status_code is None  # what a killed worker leaves behind
    assert (finished.status_code, finished.input_tokens, finished.output_tokens) == (200, 3, 1)
    assert finished.routing_information == "srv-1" and finished.error_message is None
    assert not h.delays


# --- the two budgets ---------------------------------------------------------------------


def test_server_errors_are_retried_until_the_failure_budget_runs_out() -> None:
    h = harness(error(503, "busy"))
    outcome = h.call()
    assert len(h.sent) == POLICY.max_attempts == 3
    assert outcome.error is not None and outcome.error.attempts == 3
    assert "HTTP 503" in str(outcome.error) and "gave up after 3 attempts" in str(outcome.error)
    assert [a.attempt for a in h.spy.finishes] == [1, 2, 3]
    assert len(h.delays) == 2  # between the attempts, not after the last


def test_429s_have_their_own_larger_budget() -> None:
    h = harness(error(429, "slow down"))
    outcome = h.call()
    assert len(h.sent) == POLICY.max_throttled_attempts == 10
    assert outcome.error is not None and outcome.error.status == 429


def test_a_rate_limited_request_that_gets_through_succeeds_past_the_failure_budget() -> None:
    h = harness(*[error(429)] * 6, ok())
    assert h.call().outputs == ["fine"]
    assert len(h.sent) == 7  # more than max_attempts: 429s do not spend the failure budget


def test_failures_between_429s_still_spend_the_failure_budget() -> None:
    h = harness(error(503), error(429), error(500), error(429), error(502), ok())
    outcome = h.call()
    assert outcome.error is not None and outcome.error.status == 502
    assert len(h.sent) == 5  # the third non-429 failure ends it


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 422])
def test_client_errors_are_not_retried(status: int) -> None:
    h = harness(error(status, "bad"))
    outcome = h.call()
    assert len(h.sent) == 1 and not h.delays
    assert outcome.error is not None and outcome.error.status == status


# --- Retry-After ---------------------------------------------------------------------------


def _jitter_cap(seconds: float) -> float:
    return min(1.0, 0.1 * seconds + 0.05)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "2"}, 2.0),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "250", "Retry-After": "9"}, 0.25),  # the precise one wins
        ({"Retry-After": format_datetime(datetime.fromtimestamp(NOW + 7, UTC), usegmt=True)}, 7.0),
        ({"Retry-After": format_datetime(datetime.fromtimestamp(NOW - 60, UTC), usegmt=True)}, 0.0),
        ({"Retry-After": "100000"}, POLICY.max_retry_after_s),  # capped
    ],
    ids=["seconds", "milliseconds", "ms-over-seconds", "http-date", "past-date", "capped"],
)
def test_retry_after_is_honoured_in_every_form(headers: dict[str, str], expected: float) -> None:
    h = harness(Response(429, headers, b"{}"), ok())
    assert h.call().outputs == ["fine"]
    [delay] = h.delays
    assert expected <= delay <= expected + _jitter_cap(expected)


def test_without_retry_after_the_backoff_is_exponential_with_full_jitter() -> None:
    h = harness(error(500), error(500), ok(), policy=RetryPolicy(max_attempts=6, base_delay_s=1))
    h.call()
    first, second = h.delays
    assert 0 <= first <= 1.0 and 0 <= second <= 2.0


# --- no HTTP answer, or a garbled one ------------------------------------------------------


def test_a_timeout_is_retried_and_named() -> None:
    h = harness(TransportTimeoutError())
    outcome = h.call()
    assert len(h.sent) == 3
    assert outcome.error is not None and outcome.error.status is None
    assert "timed out after 297 s" in str(outcome.error)
    assert all(a.status_code is None for a in h.spy.finishes)


def test_a_connection_error_is_retried_then_succeeds() -> None:
    h = harness(TransportConnectionError("ServerDisconnectedError"), ok())
    assert h.call().outputs == ["fine"]
    assert "connection error (ServerDisconnectedError)" in (h.spy.finishes[0].error_message or "")


@pytest.mark.parametrize(
    "body",
    [b'{"choices": [{"message": {"cont', b"not json", b'{"choices": []}', b"[" * 100_000],
    ids=["truncated", "not-json", "no-choices", "nested-too-deep"],
)
def test_a_malformed_answer_is_retried_as_a_failure(body: bytes) -> None:
    h = harness(Response(200, {}, body), ok())
    assert h.call().outputs == ["fine"]
    assert len(h.sent) == 2
    first = h.spy.finishes[0]
    assert first.status_code == 200 and "malformed body" in (first.error_message or "")
    assert first.input_tokens is None  # nothing was answered, nothing is charged


# --- the breaker ---------------------------------------------------------------------------


def test_the_breaker_stops_sending_after_the_same_terminal_error_repeats() -> None:
    breaker = CircuitBreaker(threshold=3)
    h = harness(error(401, "bad token"), breaker=breaker)
    outcomes = [h.call() for _ in range(5)]
    assert len(h.sent) == 3  # the 4th and 5th calls were answered without a request
    assert breaker.tripped is not None
    assert all(o.error is not None and o.error.status == 401 for o in outcomes)


def test_calls_queued_for_a_slot_do_not_send_once_the_breaker_trips() -> None:
    # A window of 4 and 40 calls at once: 36 wait for a slot. When the 401s trip the
    # breaker, the waiting calls must be answered without a request of their own.
    breaker = CircuitBreaker(threshold=3)
    h = harness(error(401, "bad token"), breaker=breaker)
    answer = h.transport.handler

    async def slow(request: Request) -> Response:
        for _ in range(3):  # in flight long enough for the other calls to queue up
            await asyncio.sleep(0)
        return answer(request)  # type: ignore[return-value]

    h.transport.handler = slow

    async def many() -> list[Outcome]:
        return await asyncio.gather(*(h.client.call(["hello"]) for _ in range(40)))

    outcomes = asyncio.run(many())
    assert breaker.tripped is not None
    assert len(h.sent) <= 4 + 3 - 1  # the first window, plus one per 401 before the trip
    assert all(o.error is not None and o.error.status == 401 for o in outcomes)


def test_a_success_resets_the_breakers_streak() -> None:
    breaker = CircuitBreaker(threshold=2)
    h = harness(error(400), ok(), error(400), error(400), ok(), breaker=breaker)
    for _ in range(3):
        h.call()
    assert breaker.tripped is None  # after a success, it takes ten times as many


# --- secrets and bad input -----------------------------------------------------------------


def test_a_token_the_server_echoes_is_redacted_from_errors_and_records() -> None:
    h = harness(error(500, f"invalid credential {TOKEN} for chatty"))
    outcome = h.call()
    assert outcome.error is not None
    assert TOKEN not in str(outcome.error) and "***" in str(outcome.error)
    assert all(TOKEN not in (a.error_message or "") for a in h.spy.finishes)


def test_a_request_over_the_payload_limit_is_never_sent() -> None:
    h = harness(ok())
    outcome = h.call(["x" * (4 * 1024 * 1024 + 1)])
    assert not h.sent and not h.spy.starts
    assert outcome.error is not None and outcome.error.attempts == 0
    assert "exceeds the 4 MB limit" in str(outcome.error)
