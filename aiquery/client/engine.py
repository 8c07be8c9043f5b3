"""The per-task batch engine: a window of in-flight requests that spans Arrow batch boundaries.

A Spark task hands its input batches, one after another, to `BatchEngine.map`, which
yields one list of row results per input batch (or per part of one), in input order.
Rows become requests (one per row, or many rows per request for embeddings and custom
models) queued for a fixed pool of worker coroutines; the adaptive concurrency limit
decides how many of them send at once. The next batch is queued before the current one is
finished, so its rows take the slots that the current batch's stragglers leave free: a
per-batch `gather` would idle every slot while waiting for the slowest request.

Everything runs on the engine's own event loop in the task's thread: the loop runs while
the task waits for its oldest batch, and every in-flight request progresses then (and for
a few turns at a time, `pump`, while the task hands a batch of vectors back in slices).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiquery.client import sending
from aiquery.client.budget import BudgetLimits, JobBudget
from aiquery.client.cache import CacheClient, CacheSettings
from aiquery.client.http import EndpointClient, Recorder
from aiquery.client.http1 import Http1Transport
from aiquery.client.limiter import AdaptiveConcurrency, Budget, CircuitBreaker, RateBudget
from aiquery.client.linger import LingeringSelector
from aiquery.client.retry import RetryPolicy
from aiquery.client.sending import NULL_ROW, Batch, Deduplicator, RowResult, Send, chunks
from aiquery.client.shared_rate import SharedBudget
from aiquery.client.sharing import SharedInputs, ShareSettings
from aiquery.client.transport import Transport
from aiquery.client.wire import Wire
from aiquery.endpoints.registry import Endpoint, Secret
from aiquery.errors import RequestError
from aiquery.usage.record import CACHE, DUPLICATE, Saved, new_id


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
    # Identical inputs are sent once and every row gets the answer (see
    # `aiquery.spark.callspec.deduplicates` for when a call site turns this on): within
    # the task, and with `share`, across the query's tasks (`aiquery.client.sharing`).
    deduplicate: bool = False
    share: ShareSettings | None = None
    # The query's budget (`aiquery.budget.*`), held by the driver's coordinator.
    budget: BudgetLimits | None = None
    # The response cache's slice for this call site (`aiquery.cache.*`); None: off.
    cache: CacheSettings | None = None

    def __post_init__(self) -> None:
        if self.concurrency < 1 or self.parallelism < 1:
            raise ValueError("concurrency and parallelism must be >= 1")
        if self.initial_concurrency is not None and self.initial_concurrency < 1:
            raise ValueError("initial_concurrency must be >= 1")


class BatchEngine:
    def __init__(
        self,
        endpoint: Endpoint,
        wire: Wire,
        settings: EngineSettings,
        *,
        fail_fast: bool,
        recorder: Recorder | None = None,
        transport: Callable[[int], Transport] = Http1Transport,
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
        self.rows_cached = 0  # rows answered from the response cache
        self._cache: CacheClient | None = None
        self._share: SharedInputs | None = None
        self._selector = LingeringSelector()  # follows the endpoint's latency once open
        self._loop = asyncio.SelectorEventLoop(self._selector)
        self._calls: deque[Send] = deque()
        # De-duplication: the rows waiting for a request already queued or in flight (its
        # own row not included), and the answers of requests already done.
        self._dedup = Deduplicator()
        self._duplicates_reported = 0
        self._failure: BaseException | None = None
        self._pending: deque[Batch] = deque()
        self._workers: list[asyncio.Task[None]] = []
        self.client: EndpointClient | None = None
        self._shared: list[SharedBudget] = []

    # --- lifecycle --------------------------------------------------------------------

    def __enter__(self) -> BatchEngine:
        self._loop.run_until_complete(self._open())
        return self

    def __exit__(self, *raised: object) -> None:
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

    def _coordinator(self, what: str) -> tuple[str, str]:
        url, token = self.settings.coordinator_url, self.settings.coordinator_token
        if url is None or token is None:
            raise RuntimeError(f"{what} is on, but the call site was not bound to a coordinator")
        return url, token.value

    def _cache_client(self) -> CacheClient | None:
        if self.settings.cache is None:
            return None
        if self.recorder is None:
            raise RuntimeError("the response cache is on, but usage recording is off")
        return CacheClient(
            *self._coordinator("the response cache"),
            self.settings.cache,
            self.endpoint,
            self.wire.params,
        )

    def _shared_inputs(self) -> SharedInputs | None:
        if self.settings.share is None or not self.settings.deduplicate:
            return None
        where = self._coordinator("de-duplication across tasks")
        return SharedInputs(*where, self.settings.share, self.endpoint, self.wire.params)

    def _job_budget(self) -> JobBudget | None:
        if self.settings.budget is None:
            return None
        return JobBudget(*self._coordinator("a budget"), self.settings.budget)

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
        trend = self.client.concurrency.latency  # not `self`: no cycle through the loop
        self._selector.latency_s = lambda: trend.recent
        self._cache = self._cache_client()
        self._share = self._shared_inputs()
        self._wakeup = asyncio.Event()
        self._workers = [self._loop.create_task(self._worker()) for _ in range(self.ceiling)]
        if self._share is not None:
            pump = self._share.run(
                self._answered_elsewhere, self._handed_over, lambda: trend.recent
            )
            self._workers.append(self._loop.create_task(self._guard(pump)))

    def close(self) -> None:
        if self._loop.is_closed():
            return
        for task in self._workers:
            task.cancel()

        async def shutdown() -> None:
            await asyncio.gather(*self._workers, return_exceptions=True)
            self._report_duplicates()  # before the recorder's last lines are published:
            await asyncio.sleep(0)  # the line is written on the loop's next turn
            if self.client is not None:
                await self.client.transport.close()
                await self.client.recorder.drain()
                if self.client.budget is not None:
                    await self.client.budget.close()
            if self._cache is not None:
                await self._cache.close()
            if self._share is not None:
                await self._share.close()
            for shared in self._shared:
                await shared.close()

        try:
            self._loop.run_until_complete(shutdown())
        finally:
            self._loop.close()
            self._workers.clear()  # their tracebacks hold `self`: no cycle left for the GC

    # --- the window -----------------------------------------------------------------------

    def map(self, batches: Iterable[Sequence[Any]], part: int = 0) -> Iterator[list[RowResult]]:
        """The row results of each input batch, in order: in lists of `part` rows (a
        batch's last one shorter), or one per batch. None inputs give NULL_ROW; a
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
                self._pending.append(self._submit(inputs, part))
            if not self._pending:
                return
            batch = self._pending[0]  # stays pending while awaited, so a failure reaches it
            self._loop.run_until_complete(batch.ready)
            results = batch.take()
            if batch.finished:
                self._pending.popleft()
            yield results

    def pump(self) -> None:
        """A few turns of the loop that wait for nothing: the answers that arrived are read,
        and their slots send the next requests (each `sleep(0)` is two or three turns)."""
        for _ in range(3):
            self._loop.run_until_complete(asyncio.sleep(0))

    def _submit(self, inputs: Sequence[Any], part: int = 0) -> Batch:
        batch = Batch(len(inputs), self._loop, part)
        rows = []
        for i, value in enumerate(inputs):
            if value is None:
                batch.answer(i, NULL_ROW)
            elif isinstance(value, RequestError):  # refused before sending (a bad image, ...)
                batch.answer(i, RowResult(error=value))
                if self.fail_fast:
                    self._fail(value)
            elif value == "":
                # No model can answer an empty prompt (some refuse it with a 400): say so
                # instead of paying for the request.
                error = sending.empty_request_error(self.endpoint.name)
                batch.answer(i, RowResult(error=error))
                if self.fail_fast:
                    self._fail(error)
            else:
                rows.append(i)
        if self._cache is not None and self._failure is None:
            rows = self._from_cache(batch, rows, inputs)  # the task may fail meanwhile
        keys: dict[int, Hashable] | None = None
        if self.settings.deduplicate and self._failure is None:
            keys = {}
            rows = self._dedup.split(batch, rows, inputs, keys)
            if self._share is not None and rows:
                rows = self._share_out(batch, rows, inputs, keys)
            self._report_duplicates()
        if self._failure is not None:
            batch.fail(self._failure)
            return batch
        for chunk in chunks(rows, inputs, self.wire.batched, self.endpoint.max_batch_size):
            same = None if keys is None else [keys[i] for i in chunk]
            self._calls.append(Send(batch, chunk, [inputs[i] for i in chunk], same))
        self._wakeup.set()
        return batch

    def _from_cache(self, batch: Batch, rows: list[int], inputs: Sequence[Any]) -> list[int]:
        """Answer the rows the response cache knows; the rest still need a request."""
        assert self._cache is not None and self.recorder is not None
        # Runs the loop while it waits: requests in flight progress meanwhile.
        hits = self._loop.run_until_complete(self._cache.answers(inputs, rows))
        if not hits:
            return rows
        for i, value in hits.items():
            batch.answer(i, RowResult(value))
        self.rows_cached += len(hits)
        self._saved(len(hits), CACHE)
        return [i for i in rows if i not in hits]

    def _share_out(
        self, batch: Batch, rows: list[int], inputs: Sequence[Any], keys: dict[int, Hashable]
    ) -> list[int]:
        """Offer the rows this task would send to the query's other tasks: the rows
        another task answers, or is sending, wait for that answer; the rest are sent."""
        assert self._share is not None
        offered = [(keys[i], inputs[i]) for i in rows]
        found, wait = self._loop.run_until_complete(self._share.offer(offered))
        for i in rows:
            if keys[i] in found or keys[i] in wait:
                self._dedup.park(keys[i], batch, i)
        for key, value in found.items():
            self._dedup.settle([key], [RowResult(value)])
        return [i for i in rows if keys[i] not in found and keys[i] not in wait]

    def _answered_elsewhere(self, key: Hashable, value: Any) -> None:
        self._dedup.settle([key], [RowResult(value)])

    def _handed_over(self, key: Hashable, value: Any) -> None:
        """The task sending `key` gave it up (its request failed, or it is gone): send it."""
        batch, row = self._dedup.hand_over(key)
        self._calls.append(Send(batch, [row], [value], [key]))
        self._wakeup.set()

    async def _guard(self, work: Any) -> None:
        try:
            await work
        except Exception as e:  # the driver unreachable: the task cannot answer its rows
            self._fail(e)

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
            results = call.results(outcome.outputs, outcome.error)
            call.batch.fill(call.rows, results)
            if call.keys is not None:
                self._dedup.settle(call.keys, results)
                if self._share is not None:
                    for key, result in zip(call.keys, results, strict=True):
                        self._share.settle(key, result.value, result.error is None)
            if self._cache is not None and outcome.error is None and self.recorder is not None:
                self._cache.keep(self.recorder, call.inputs, [r.value for r in results])
            tripped = self.client.breaker.tripped
            if tripped is not None or (outcome.error is not None and self.fail_fast):
                self._fail(tripped or outcome.error)

    def _fail(self, error: BaseException | None) -> None:
        """Stop the task: every waiting batch raises the first error, queued rows are dropped."""
        if self._failure is not None or error is None:
            return
        self._failure = error
        self._calls.clear()
        self._dedup.forget_waiting()
        if self._share is not None:
            self._share.forget_parked()
        for batch in self._pending:
            batch.fail(error)

    def _report_duplicates(self) -> None:
        """Record the rows answered by another row's request since the last report (once
        per batch, and as the task ends: one line, not one per answer)."""
        count = self._dedup.rows - self._duplicates_reported
        if count:
            self._saved(count, DUPLICATE)
        self._duplicates_reported = self._dedup.rows

    def _saved(self, rows: int, source: str) -> None:
        """Rows answered without a request, written on the engine's loop (a relay needs it)."""
        if self.recorder is not None:
            line = Saved(new_id(), time.time(), rows, source)
            self._loop.call_soon(self.recorder.saved, line)

    @property
    def rows_deduplicated(self) -> int:
        """Rows answered by another row's request (or its remembered answer)."""
        return self._dedup.rows
