"""One endpoint's requests from one Spark task: send, classify, retry, record every attempt.

The network is behind an injected `Transport` (`aiquery.client.transport`), and sleeping
behind an injected `sleep`, so every retry path is unit-tested without sockets or Spark.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aiquery.client.budget import JobBudget
from aiquery.client.limiter import AdaptiveConcurrency, AdaptiveRate, Budget, CircuitBreaker
from aiquery.client.retry import (
    RetryPolicy,
    is_retryable,
    retry_after_s,
    retry_delay,
)
from aiquery.client.transport import (
    Request,
    Transport,
    TransportConnectionError,
    TransportTimeoutError,
)
from aiquery.client.wire import Wire, input_tokens_estimate, jsonable
from aiquery.endpoints.registry import Endpoint
from aiquery.errors import RequestError, truncate
from aiquery.protocols.common import REQUEST_ID_HEADER, ProtocolError
from aiquery.protocols.errors import read_error
from aiquery.usage.record import Attempt, CacheEntry, Saved, new_id

log = logging.getLogger("aiquery")


class Recorder(Protocol):
    """Where attempts are recorded: `started` just before a request is sent, `finished` after.

    A request whose `started` has no `finished` (the task died) still counts as sent. A
    recorder that stores elsewhere returns an awaitable from `started`: the request is sent
    once it is done (and not at all if it fails). `drain` runs once, as the task ends.
    """

    def started(self, attempt: Attempt) -> Awaitable[None] | None: ...

    def finished(self, attempt: Attempt) -> None: ...

    def saved(self, saved: Saved) -> None:
        """Rows answered without a request of their own (duplicates, cache hits)."""
        ...

    def cached(self, entry: CacheEntry) -> None:
        """An answer to keep in the response cache."""
        ...

    async def drain(self) -> None: ...


class NullRecorder:
    def started(self, attempt: Attempt) -> None:
        return None

    def finished(self, attempt: Attempt) -> None:
        return None

    def saved(self, saved: Saved) -> None:
        return None

    def cached(self, entry: CacheEntry) -> None:
        return None

    async def drain(self) -> None:
        return None


@dataclass(frozen=True, slots=True)
class Outcome:
    """The outputs of one request (one per input), or the error that ended it."""

    outputs: list[Any] | None
    error: RequestError | None = None


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int | None
    headers: Mapping[str, str]
    body: bytes
    failure: str | None  # why there was no HTTP answer
    ttfb_s: float | None = None


class EndpointClient:
    def __init__(
        self,
        endpoint: Endpoint,
        wire: Wire,
        transport: Transport,
        *,
        concurrency: AdaptiveConcurrency,
        policy: RetryPolicy,
        breaker: CircuitBreaker,
        requests: Budget | None = None,
        tokens: Budget | None = None,
        pacing: AdaptiveRate | None = None,
        recorder: Recorder | None = None,
        budget: JobBudget | None = None,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.endpoint = endpoint
        self.wire = wire
        self.transport = transport
        self.concurrency = concurrency
        self.policy = policy
        self.breaker = breaker
        self.requests = requests
        self.tokens = tokens
        self.pacing = pacing or AdaptiveRate()
        self.recorder = recorder or NullRecorder()
        self.budget = budget
        self.rng = rng or random.Random()
        self.sleep = sleep
        self.clock = clock  # wall time: event times, and HTTP-date Retry-After
        self.retries = 0

    def _error(
        self,
        reason: str,
        *,
        status: int | None = None,
        request_id: str | None = None,
        attempts: int = 1,
    ) -> RequestError:
        return RequestError(
            self.endpoint.name, reason, status=status, request_id=request_id, attempts=attempts
        )

    async def call(self, inputs: Sequence[Any]) -> Outcome:
        """Send one request for `inputs`, retrying what is retryable; never raises RequestError."""
        try:
            body = json.dumps(self.wire.encode(inputs), ensure_ascii=False, default=jsonable)
        except TypeError as e:  # a value JSON cannot carry: this row's error, nothing sent
            return Outcome(None, self._error(str(e), attempts=0))
        payload = body.encode()
        limit = self.endpoint.payload_limit
        if len(payload) > limit:
            reason = f"the request payload of {len(payload):,} bytes exceeds the {limit // (1024 * 1024)} MB limit; shorten the input"
            return Outcome(None, self._error(reason, status=413, attempts=0))
        estimate = input_tokens_estimate(inputs)
        attempt = failures = 0
        while True:
            attempt += 1
            request_id = new_id()
            sent = await self._send(payload, estimate, request_id, attempt, len(inputs))
            if isinstance(sent, Outcome):  # not sent: the breaker tripped, or the budget is spent
                return sent
            answer, latency_s, started_at = sent
            outcome, retryable, delay_hint = self._interpret(
                answer, inputs, attempt, latency_s, started_at, request_id
            )
            if outcome.error is None or not retryable:
                return outcome
            # A 429 says "later", not "broken": throttled attempts have their own, larger
            # budget, so a job that outruns a rate limit slows down instead of failing.
            if answer.status != 429:
                failures += 1
            if (
                failures >= self.policy.max_attempts
                or attempt >= self.policy.max_throttled_attempts
            ):
                return outcome
            self.retries += 1
            delay = retry_delay(self.policy, failures or attempt, delay_hint, self.rng)
            log.debug(
                "aiquery: %s request %s attempt %d failed (%s); retrying in %.2f s",
                self.endpoint.name,
                request_id,
                attempt,
                answer.status or answer.failure or "unreadable answer",
                delay,
            )
            await self.sleep(delay)

    def _budget_error(self, attempts: int) -> RequestError:
        assert self.budget is not None
        return self._error(
            f"BUDGET_EXHAUSTED: not sent, the query's budget is spent: {self.budget.exhausted}. "
            "Raise the limit, or unset it, and run the query again to answer these rows",
            attempts=attempts,
        )

    def _tripped(self) -> Outcome:
        tripped = self.breaker.tripped
        assert tripped is not None
        return Outcome(
            None, tripped if isinstance(tripped, RequestError) else self._error(str(tripped))
        )

    async def _send(
        self, payload: bytes, estimate: int, request_id: str, attempt: int, rows: int
    ) -> tuple[_Answer, float, float] | Outcome:
        """Send one attempt once a slot and the rate limits allow; the outcome without
        sending when the breaker tripped meanwhile or the query's budget is spent."""
        await self.concurrency.acquire()
        throttled, measured = False, None
        try:
            if self.requests is not None:
                await self.requests.take(1)
            if self.tokens is not None:
                await self.tokens.take(estimate)
            await self.pacing.wait()
            # Checked after every wait, not before: hundreds of calls can be queued for a
            # slot when a bad token's 401s trip the breaker, and none of them may still go.
            if self.breaker.tripped is not None:
                return self._tripped()
            if self.budget is not None and not await self.budget.admit():
                return Outcome(None, self._budget_error(attempt - 1))
            started_at = self.clock()  # the started and finished lines share it (and its date)
            stored = self.recorder.started(Attempt(request_id, started_at, attempt, rows))
            if stored is not None:
                await stored
            started = time.monotonic()
            answer = await self._post(payload, request_id)
            latency_s = time.monotonic() - started
            # Only a 429 says "too fast". Random 503s, hangs and resets are retried with
            # backoff, but slowing every request down for them would not help the endpoint
            # and would collapse throughput (AIMD's equilibrium falls with the error rate).
            throttled = answer.status == 429
            if throttled:
                self.pacing.throttled()
            elif answer.status == 200:
                self.pacing.succeeded()
                # Only answers measure the endpoint's latency and earn a larger window: a
                # 401 or 503 comes back fast, and a bad token must not grow the window.
                measured = latency_s
            return answer, latency_s, started_at
        finally:
            await self.concurrency.release(throttled=throttled, latency_s=measured)

    async def _post(self, payload: bytes, request_id: str) -> _Answer:
        headers = {**self.wire.headers, REQUEST_ID_HEADER: request_id}
        request = Request(self.wire.url, headers, payload, self.endpoint.timeout_s)
        try:
            response = await self.transport.send(request)
        except TransportTimeoutError:
            return _Answer(None, {}, b"", "timeout")
        except TransportConnectionError as e:
            return _Answer(None, {}, b"", f"connection error ({e})")
        return _Answer(response.status, response.headers, response.body, None, response.ttfb_s)

    def _interpret(
        self,
        answer: _Answer,
        inputs: Sequence[Any],
        attempt: int,
        latency_s: float,
        started_at: float,
        request_id: str,
    ) -> tuple[Outcome, bool, float | None]:
        """(outcome of this attempt, retryable, server-requested delay), recording the attempt."""
        server_id = answer.headers.get(REQUEST_ID_HEADER) or answer.headers.get(
            "x-databricks-request-id"
        )
        usage = None
        error_code: str | None = None
        error_text: str | None = None
        outcome: Outcome | None = None
        retryable = False
        if answer.status == 200:
            try:
                outputs, usage = self.wire.decode(self.wire.read(answer.body), inputs)
                outcome = Outcome(outputs)
                self.breaker.success()
                if self.tokens is not None:  # output tokens, and input beyond the estimate
                    extra_input = usage.input_tokens - input_tokens_estimate(inputs)
                    self.tokens.charge(usage.output_tokens + max(0, extra_input))
                if self.budget is not None:
                    price = self.endpoint.price
                    self.budget.charge(
                        usage.input_tokens + usage.output_tokens,
                        price.cost(usage.input_tokens, usage.output_tokens) if price else 0.0,
                    )
            # Garbled or truncated, or nested past the parser's depth limit: retry.
            except (ValueError, RecursionError, ProtocolError) as e:
                error_text = (
                    f"the endpoint answered with a malformed body ({truncate(str(e), 120)})"
                )
                retryable = True
        elif answer.status is None:
            if answer.failure == "timeout":
                error_text = f"the request timed out after {self.endpoint.timeout_s:g} s"
            else:
                error_text = f"{answer.failure} while calling {self.wire.url}"
            retryable = True
        else:
            error_code, message = read_error(_json_or_none(answer.body))
            detail = truncate(
                message or answer.body.decode("utf-8", "replace") or "no message", 300
            )
            error_text = f"{error_code}: {detail}" if error_code else detail
            retryable = is_retryable(answer.status)
        token = self.endpoint.token.value if self.endpoint.token else ""
        if error_text is not None and token:
            # A proxy or a buggy server may echo the credential back in its message.
            error_text = error_text.replace(token, "***")
        self.recorder.finished(
            Attempt(
                request_id=request_id,
                event_time=started_at,
                attempt=attempt,
                rows=len(inputs),
                status_code=answer.status,
                latency_ms=round(latency_s * 1000),
                time_to_first_byte_ms=(
                    round(answer.ttfb_s * 1000) if answer.ttfb_s is not None else None
                ),
                routing_information=server_id,
                input_tokens=usage.input_tokens if usage else None,
                output_tokens=usage.output_tokens if usage else None,
                tokens_estimated=bool(usage and usage.estimated),
                error_message=error_text,
            )
        )
        if outcome is not None:
            return outcome, False, None
        assert error_text is not None
        attempts_word = f"gave up after {attempt} attempts: " if retryable and attempt > 1 else ""
        error = self._error(
            attempts_word + error_text,
            status=answer.status,
            request_id=request_id,
            attempts=attempt,
        )
        if not retryable and answer.status is not None:
            self.breaker.terminal_failure(answer.status, error_code or "", error)
        delay = retry_after_s(answer.headers, now=self.clock()) if retryable else None
        return Outcome(None, error), retryable, delay


def _json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None
