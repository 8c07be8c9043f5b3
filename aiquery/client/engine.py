"""The per-task batch engine: a window of in-flight requests that spans Arrow batch boundaries.

A Spark task hands its input batches, one after another, to `BatchEngine.map`, which
yields one list of row results per input batch, in input order. Rows become requests
(one per row, or many rows per request for embeddings and custom models) queued for a
fixed pool of worker coroutines; the adaptive concurrency limit decides how many of them
send at once. The next batch is queued before the current one is finished, so its rows
take the slots that the current batch's stragglers leave free: a per-batch `gather`
would idle every slot while waiting for the slowest request.

Everything runs on the engine's own event loop in the task's thread: the loop runs only
while the task waits for its oldest batch, and every in-flight request progresses then.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import numpy as np

from aiquery.client.budget import BudgetLimits, JobBudget
from aiquery.client.cache import (
    CacheClient,
    CacheSettings,
    cache_key,
    decode_answer,
    encode_answer,
)
from aiquery.client.http import EndpointClient, Outcome, Recorder
from aiquery.client.limiter import AdaptiveConcurrency, Budget, CircuitBreaker, RateBudget
from aiquery.client.retry import RetryPolicy
from aiquery.client.shared_rate import SharedBudget
from aiquery.client.transport import AiohttpTransport, Transport
from aiquery.client.wire import Wire, input_tokens_estimate
from aiquery.endpoints.registry import Endpoint, Secret
from aiquery.errors import RequestError
from aiquery.usage.record import CACHE, DUPLICATE, CacheEntry, Saved

# Rough payload budget per batched request (the hard 4 MB limit is checked when encoding).
_BATCH_PAYLOAD_CHARS = 3 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """How hard one task pushes one endpoint. Picklable: it travels to executors."""

    concurrency: int = 64  # requests in flight per task, at most (the window's ceiling)
    # Where the window starts; None: at the ceiling. Below it, the window doubles per round
    # trip while every slot is busy and the endpoint neither throttles nor queues.
    initial_concurrency: int | None = None
    parallelism: int = 1  # tasks running at once; max_concurrency is split across them
    # The driver's coordinator, when the endpoint's rate limits are held job-wide; without
    # it they are split across `parallelism` tasks.
    coordinator_url: str | None = None
    coordinator_token: Secret | None = None
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    breaker_threshold: int = 5
    # Identical inputs in one task are sent once and every row gets the answer (see
    # `aiquery.spark.callspec.deduplicates` for when a call site turns this on).
    deduplicate: bool = False
    # The query's budget (`aiquery.budget.*`), held by the driver's coordinator.
    budget: BudgetLimits | None = None
    # The response cache's slice for this call site (`aiquery.cache.*`); None: off.
    cache: CacheSettings | None = None

    def __post_init__(self) -> None:
        if self.concurrency < 1 or self.parallelism < 1:
            raise ValueError("concurrency and parallelism must be >= 1")
        if self.initial_concurrency is not None and self.initial_concurrency < 1:
            raise ValueError("initial_concurrency must be >= 1")


@dataclass(frozen=True, slots=True)
class RowResult:
    value: Any = None
    error: RequestError | None = None


NULL_ROW = RowResult()


class _Batch:
    def __init__(self, size: int, done: asyncio.Future[None]) -> None:
        self.results: list[RowResult | None] = [None] * size
        self.remaining = 0
        self.done = done

    def fill(self, rows: Sequence[int], results: Sequence[RowResult]) -> None:
        for row, result in zip(rows, results, strict=True):
            self._set(row, result)
        self.remaining -= len(rows)
        if self.remaining == 0 and not self.done.done():
            self.done.set_result(None)

    def _set(self, row: int, result: RowResult) -> None:
        assert self.results[row] is None, f"row {row} answered twice"
        self.results[row] = result

    def rows(self) -> list[RowResult]:
        missing = [i for i, r in enumerate(self.results) if r is None]
        assert not missing, f"rows {missing[:5]} were never answered"
        return [r for r in self.results if r is not None]


@dataclass(slots=True)
class _Call:
    """One request to send: `rows` of `batch`, and their inputs (keys: when de-duplicating)."""

    batch: _Batch
    rows: list[int]
    inputs: list[Any]
    keys: list[Hashable] | None = None


def _results(outcome: Outcome, count: int) -> list[RowResult]:
    if outcome.error is not None:
        return [RowResult(error=outcome.error)] * count
    assert outcome.outputs is not None and len(outcome.outputs) == count, (
        "the endpoint answered a different number of outputs than inputs"
    )
    return [RowResult(value) for value in outcome.outputs]


def dedup_key(value: Any) -> Hashable:
    """What makes two inputs of one call site the same request: the text itself, or the
    canonical JSON of a structured input (a custom model's record, a prompt with files)."""
    if isinstance(value, str):
        return value
    return ("json", json.dumps(value, sort_keys=True, separators=(",", ":"), default=repr))


def _size(value: Any) -> int:
    if isinstance(value, np.ndarray):
        return int(value.nbytes) + 112
    if isinstance(value, str | bytes):
        return sys.getsizeof(value)
    if isinstance(value, tuple):
        return sum(_size(v) for v in value)
    return 256


def chunks(
    rows: list[int], inputs: Sequence[Any], batched: bool, max_batch_size: int
) -> Iterator[list[int]]:
    """The requests `rows` of `inputs` go in: one row each, or for a batched wire (embeddings,
    custom models) up to `max_batch_size` rows and ~3 MB of text each."""
    if not batched:
        for row in rows:
            yield [row]
        return
    chunk: list[int] = []
    chars = 0
    for row in rows:
        size = len(inputs[row]) if isinstance(inputs[row], str) else 256
        if chunk and (len(chunk) >= max_batch_size or chars + size > _BATCH_PAYLOAD_CHARS):
            yield chunk
            chunk, chars = [], 0
        chunk.append(row)
        chars += size
    if chunk:
        yield chunk


@dataclass(slots=True)
class RequestTally:
    """What a task's engine would send for its batches, counted without sending anything:
    the dry run's figures (`aiquery estimate`). Same rules as `BatchEngine`: NULL rows and
    rows refused before sending (empty, bad input) make no request, identical inputs are
    sent once when de-duplicating, batched wires group rows into requests."""

    batched: bool
    max_batch_size: int
    deduplicate: bool
    rows: int = 0  # rows that need an answer (not NULL)
    refused: int = 0  # rows answered with an error before sending
    deduplicated: int = 0
    requests: int = 0
    input_tokens: int = 0
    _seen: set[int] = field(default_factory=set)

    def add(self, inputs: Sequence[Any]) -> None:
        send = []
        for i, value in enumerate(inputs):
            if value is None:
                continue
            self.rows += 1
            if isinstance(value, RequestError) or value == "":
                self.refused += 1
                continue
            if self.deduplicate:
                key = hash(dedup_key(value))  # 64 bits: a collision within a task is ~never
                if key in self._seen:
                    self.deduplicated += 1
                    continue
                self._seen.add(key)
            send.append(i)
        for chunk in chunks(send, inputs, self.batched, self.max_batch_size):
            self.requests += 1
            self.input_tokens += input_tokens_estimate([inputs[i] for i in chunk])


# Answers kept per task for inputs that repeat after their first answer arrived. Bounded
# by size (prompts and answers both count), least recently used out first.
MEMO_BYTES = 64 * 1024 * 1024


class BatchEngine:
    def __init__(
        self,
        endpoint: Endpoint,
        wire: Wire,
        settings: EngineSettings,
        *,
        fail_fast: bool,
        recorder: Recorder | None = None,
        transport: Callable[[int], Transport] = AiohttpTransport,
    ) -> None:
        self.endpoint = endpoint
        self.wire = wire
        self.settings = settings
        self.fail_fast = fail_fast
        self.recorder = recorder
        self._transport = transport  # built on the engine's loop, with the connection limit
        ceiling = settings.concurrency
        if endpoint.max_concurrency:
            ceiling = min(ceiling, max(1, endpoint.max_concurrency // settings.parallelism))
        self.ceiling = ceiling
        self.rows_done = 0
        self.requests_done = 0
        self.rows_deduplicated = 0  # rows answered by another row's request
        self.rows_cached = 0  # rows answered from the response cache
        self._cache: CacheClient | None = None
        self._loop = asyncio.new_event_loop()
        self._calls: deque[_Call] = deque()
        # De-duplication: the rows waiting for a request already queued or in flight (its
        # own row not included), and the answers of requests already done.
        self._waiting: dict[Hashable, list[tuple[_Batch, int]]] = {}
        self._answers: OrderedDict[Hashable, tuple[RowResult, int]] = OrderedDict()
        self._answers_bytes = 0
        self._failure: BaseException | None = None
        self._pending: deque[_Batch] = deque()
        self._workers: list[asyncio.Task[None]] = []
        self.client: EndpointClient | None = None
        self._shared: list[SharedBudget] = []

    # --- lifecycle --------------------------------------------------------------------

    def __enter__(self) -> BatchEngine:
        self._loop.run_until_complete(self._open())
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _budget(self, kind: str, per_minute: float | None) -> Budget | None:
        if not per_minute:
            return None
        url, token = self.settings.coordinator_url, self.settings.coordinator_token
        if url is None or token is None:
            return RateBudget(per_minute / self.settings.parallelism)
        key = f"{self.endpoint.name}|{self.endpoint.base_url}|{kind}"
        shared = SharedBudget(url, token.value, key, per_minute)
        self._shared.append(shared)
        return shared

    def _cache_client(self) -> CacheClient | None:
        cache, url, token = (
            self.settings.cache,
            self.settings.coordinator_url,
            self.settings.coordinator_token,
        )
        if cache is None:
            return None
        if url is None or token is None or self.recorder is None:
            raise RuntimeError("the cache is on, but the call site was not bound for it")
        return CacheClient(url, token.value, cache)

    def _job_budget(self) -> JobBudget | None:
        limits, url, token = (
            self.settings.budget,
            self.settings.coordinator_url,
            self.settings.coordinator_token,
        )
        if limits is None:
            return None
        if url is None or token is None:
            raise RuntimeError("a budget is set, but the call site was not bound to a coordinator")
        return JobBudget(url, token.value, limits)

    async def _open(self) -> None:
        rpm, tpm = self.endpoint.requests_per_minute, self.endpoint.tokens_per_minute
        self.client = EndpointClient(
            self.endpoint,
            self.wire,
            self._transport(self.ceiling),
            concurrency=AdaptiveConcurrency(
                self.ceiling, initial=self.settings.initial_concurrency
            ),
            policy=self.settings.policy,
            breaker=CircuitBreaker(self.settings.breaker_threshold),
            requests=self._budget("requests", rpm),
            tokens=self._budget("tokens", tpm),
            recorder=self.recorder,
            budget=self._job_budget(),
            rng=random.Random(),
        )
        self._cache = self._cache_client()
        self._wakeup = asyncio.Event()
        self._workers = [self._loop.create_task(self._worker()) for _ in range(self.ceiling)]

    def close(self) -> None:
        if self._loop.is_closed():
            return
        for task in self._workers:
            task.cancel()

        async def shutdown() -> None:
            await asyncio.gather(*self._workers, return_exceptions=True)
            if self.client is not None:
                await self.client.transport.close()
                await self.client.recorder.drain()
                if self.client.budget is not None:
                    await self.client.budget.close()
            if self._cache is not None:
                await self._cache.close()
            for shared in self._shared:
                await shared.close()

        try:
            self._loop.run_until_complete(shutdown())
        finally:
            self._loop.close()

    # --- the window -----------------------------------------------------------------------

    def map(self, batches: Iterable[Sequence[Any]]) -> Iterator[list[RowResult]]:
        """One list of row results per input batch, in order. None inputs give NULL_ROW; a
        RequestError input is that row's error, sent nothing."""
        source = iter(batches)
        more = True
        while True:
            # Queue ahead: at least two batches, and enough rows to keep every slot busy.
            while more and (len(self._pending) < 2 or len(self._calls) < 4 * self.ceiling):
                try:
                    inputs = next(source)
                except StopIteration:
                    more = False
                    break
                self._pending.append(self._submit(inputs))
            if not self._pending:
                return
            batch = self._pending[0]  # stays pending while awaited, so a failure reaches it
            self._loop.run_until_complete(batch.done)
            self._pending.popleft()
            yield batch.rows()

    def _submit(self, inputs: Sequence[Any]) -> _Batch:
        batch = _Batch(len(inputs), self._loop.create_future())
        rows = []
        for i, value in enumerate(inputs):
            if value is None:
                batch.results[i] = NULL_ROW
            elif isinstance(value, RequestError):  # refused before sending (a bad image, ...)
                batch.results[i] = RowResult(error=value)
                if self.fail_fast:
                    self._fail(value)
            elif value == "":
                # No model can answer an empty prompt (some refuse it with a 400): say so
                # instead of paying for the request.
                error = self._empty_request_error()
                batch.results[i] = RowResult(error=error)
                if self.fail_fast:
                    self._fail(error)
            else:
                rows.append(i)
        if self._failure is not None:
            batch.done.set_exception(self._failure)
            return batch
        if self._cache is not None:
            rows = self._from_cache(batch, rows, inputs)
        keys: dict[int, Hashable] | None = None
        if self.settings.deduplicate:
            keys = {}
            rows = self._deduplicate(batch, rows, inputs, keys)
        for chunk in chunks(rows, inputs, self.wire.batched, self.endpoint.max_batch_size):
            batch.remaining += len(chunk)
            self._calls.append(
                _Call(
                    batch,
                    chunk,
                    [inputs[i] for i in chunk],
                    None if keys is None else [keys[i] for i in chunk],
                )
            )
        if batch.remaining == 0:
            batch.done.set_result(None)
        self._wakeup.set()
        return batch

    def _from_cache(self, batch: _Batch, rows: list[int], inputs: Sequence[Any]) -> list[int]:
        """Answer the rows the response cache knows; the rest still need a request."""
        assert self._cache is not None and self.recorder is not None
        by_input: dict[Hashable, str] = {}  # duplicates hash once
        keys = []
        for i in rows:
            same = dedup_key(inputs[i])
            key = by_input.get(same)
            if key is None:
                key = by_input[same] = cache_key(self.endpoint, self.wire.params, inputs[i])
            keys.append(key)
        # Runs the loop while it waits: requests in flight progress meanwhile.
        hits = self._loop.run_until_complete(self._cache.lookup(list(by_input.values())))
        if not hits:
            return rows
        send = []
        for i, key in zip(rows, keys, strict=True):
            stored = hits.get(key)
            if stored is None:
                send.append(i)
            else:
                batch.results[i] = RowResult(decode_answer(stored))
        answered = len(rows) - len(send)
        self.rows_cached += answered
        self.recorder.saved(Saved(uuid.uuid4().hex, time.time(), answered, CACHE))
        return send

    def _keep(self, inputs: Sequence[Any], results: Sequence[RowResult]) -> None:
        """Spool each answer for the response cache."""
        assert self.recorder is not None
        now = time.time()
        for value, result in zip(inputs, results, strict=True):
            key = cache_key(self.endpoint, self.wire.params, value)
            self.recorder.cached(CacheEntry(key, encode_answer(result.value), now))

    def _deduplicate(
        self, batch: _Batch, rows: list[int], inputs: Sequence[Any], keys: dict[int, Hashable]
    ) -> list[int]:
        """The rows of `batch` that need a request of their own; the others take a done
        answer now, or wait for the request of an identical input queued or in flight."""
        send = []
        before = self.rows_deduplicated
        for i in rows:
            key = dedup_key(inputs[i])
            known = self._answers.get(key)
            if known is not None:
                self._answers.move_to_end(key)
                batch.results[i] = known[0]
                self.rows_deduplicated += 1
            elif (waiting := self._waiting.get(key)) is not None:
                waiting.append((batch, i))
                batch.remaining += 1
                self.rows_deduplicated += 1
            else:
                self._waiting[key] = []
                keys[i] = key
                send.append(i)
        if self.recorder is not None and self.rows_deduplicated > before:
            self.recorder.saved(
                Saved(uuid.uuid4().hex, time.time(), self.rows_deduplicated - before, DUPLICATE)
            )
        return send

    def _settle(self, keys: list[Hashable], results: list[RowResult]) -> None:
        """Answer the rows that waited for these inputs, and remember the answers."""
        for key, result in zip(keys, results, strict=True):
            for batch, row in self._waiting.pop(key, ()):
                batch.fill((row,), (result,))
            if result.error is None:  # an error may be transient: a later row tries again
                size = _size(key) + _size(result.value)
                self._answers[key] = (result, size)
                self._answers_bytes += size
        while self._answers_bytes > MEMO_BYTES and self._answers:
            _, (_, size) = self._answers.popitem(last=False)
            self._answers_bytes -= size

    def _empty_request_error(self) -> RequestError:
        return RequestError(
            self.endpoint.name,
            "the request is an empty string, so nothing was sent; filter such rows out, "
            "or turn them into NULL (a NULL result) with NULLIF(col, '')",
            attempts=0,
        )

    async def _worker(self) -> None:
        assert self.client is not None
        while True:
            while not self._calls:
                self._wakeup.clear()
                await self._wakeup.wait()
            call = self._calls.popleft()
            try:
                outcome = await self.client.call(call.inputs)
            except Exception as e:
                # A bug, not a failed request: fail the task loudly. Left unhandled, it
                # would end this worker, and the task would wait forever for these rows.
                self._fail(e)
                return
            self.requests_done += 1
            self.rows_done += len(call.rows)
            results = _results(outcome, len(call.rows))
            call.batch.fill(call.rows, results)
            if call.keys is not None:
                self._settle(call.keys, results)
            if self._cache is not None and outcome.error is None:
                self._keep(call.inputs, results)
            tripped = self.client.breaker.tripped
            if tripped is not None or (outcome.error is not None and self.fail_fast):
                self._fail(tripped or outcome.error)

    def _fail(self, error: BaseException | None) -> None:
        """Stop the task: every waiting batch raises the first error, queued rows are dropped."""
        if self._failure is not None or error is None:
            return
        self._failure = error
        self._calls.clear()
        self._waiting.clear()
        for batch in self._pending:
            if not batch.done.done():
                batch.done.set_exception(error)

    @property
    def retries(self) -> int:
        return self.client.retries if self.client else 0

    @property
    def throttles(self) -> int:
        return self.client.concurrency.throttles if self.client else 0
