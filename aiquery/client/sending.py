"""What a task's rows become: requests, and rows that need none.

- `chunks`: the rows each request carries (one, or many for a batched wire);
- `dedup_key` and `Memo`: identical inputs of one task are one request (`BatchEngine`
  with `deduplicate`), and answers already in hand are remembered, within a byte bound;
- `RequestTally`: the same rules, counted without sending (the dry run).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import OrderedDict
from collections.abc import Collection, Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aiquery.client.wire import input_tokens_estimate
from aiquery.errors import RequestError


@dataclass(frozen=True, slots=True)
class RowResult:
    value: Any = None
    error: RequestError | None = None


NULL_ROW = RowResult()


def empty_request_error(endpoint: str) -> RequestError:
    """A row whose request is an empty string: it is not sent (no model can answer it)."""
    return RequestError(
        endpoint,
        "the request is an empty string, so nothing was sent; filter such rows out, "
        "or turn them into NULL (a NULL result) with NULLIF(col, '')",
        attempts=0,
    )


class Batch:
    """One input batch's rows: their results as they come, handed back in parts of `part`
    rows (the whole batch by default), in order, each as soon as all its rows have one.
    `ready` is done when the next part is complete, or holds the task's failure."""

    def __init__(self, size: int, loop: asyncio.AbstractEventLoop, part: int = 0) -> None:
        self.results: list[RowResult | None] = [None] * size
        self._loop = loop
        self._part = part or max(1, size)
        # Rows without a result yet, per part (an empty batch is one empty part).
        self._left = [min(self._part, size - s) for s in range(0, max(1, size), self._part)]
        self._next = 0  # the part handed back next
        self._failure: BaseException | None = None
        self.ready: asyncio.Future[None] = loop.create_future()
        self._check()

    @property
    def finished(self) -> bool:
        """Every part handed back."""
        return self._next == len(self._left)

    def answer(self, row: int, result: RowResult) -> None:
        assert self.results[row] is None, f"row {row} answered twice"
        self.results[row] = result
        part = row // self._part
        self._left[part] -= 1
        if part == self._next:
            self._check()

    def fill(self, rows: Sequence[int], results: Sequence[RowResult]) -> None:
        for row, result in zip(rows, results, strict=True):
            self.answer(row, result)

    def fail(self, error: BaseException) -> None:
        """The task failed: the part awaited, and every later one, raises `error`."""
        self._failure = error
        if not self.ready.done():
            self.ready.set_exception(error)

    def take(self) -> list[RowResult]:
        """The next part's results, once `ready`. Its rows are let go (a part of vectors is
        megabytes), and `ready` then waits for the part after it."""
        start = self._next * self._part
        part = self.results[start : start + self._part]
        assert all(r is not None for r in part), "a part was handed back unanswered"
        self.results[start : start + len(part)] = [_HANDED_BACK] * len(part)
        self._next += 1
        if not self.finished:
            self.ready = self._loop.create_future()
            if self._failure is not None:
                self.ready.set_exception(self._failure)
            self._check()
        return [r for r in part if r is not None]

    def _check(self) -> None:
        if not self.ready.done() and self._left[self._next] == 0:
            self.ready.set_result(None)


_HANDED_BACK = RowResult()  # in place of a result handed back: not None, so not answered twice


@dataclass(slots=True)
class Send:
    """One request to send: `rows` of `batch`, and their inputs (keys: when de-duplicating)."""

    batch: Batch
    rows: list[int]
    inputs: list[Any]
    keys: list[Hashable] | None = None

    def results(self, outputs: Sequence[Any] | None, error: RequestError | None) -> list[RowResult]:
        """The request's answer (its outputs, or its error) as its rows' results."""
        if error is not None:
            return [RowResult(error=error)] * len(self.rows)
        assert outputs is not None and len(outputs) == len(self.rows), (
            "the endpoint answered a different number of outputs than inputs"
        )
        return [RowResult(value) for value in outputs]


# Rough payload budget per batched request (the hard 4 MB limit is checked when encoding).
_BATCH_PAYLOAD_CHARS = 3 * 1024 * 1024


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


# Answers kept per task for inputs that repeat after their first answer arrived. Bounded
# by the memory they take (prompts, answers and each entry's own objects), least recently
# used out first. Enough for the inputs that repeat most (a column of a few thousand
# distinct values); a task of unique inputs fills it and stays there: its peak memory is
# the same for 100,000 rows and for 1,000,000. Repeats it forgets, the driver's exchange
# and the response cache still catch.
MEMO_BYTES = 16 * 1024 * 1024
MEMO_ENTRY_BYTES = 200  # the ordered dict's entry, its tuple and the RowResult (tracemalloc)


class Memo:
    """Answers by `dedup_key`, least recently used out first past `MEMO_BYTES` (the key and
    the answer both count)."""

    def __init__(self) -> None:
        self._items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self.bytes = 0

    def get(self, key: Hashable) -> Any | None:
        found = self._items.get(key)
        if found is None:
            return None
        self._items.move_to_end(key)
        return found[0]

    def put(self, key: Hashable, item: Any, payload: Any) -> None:
        """Remember `item` for `key`; `payload` is what it holds, for its size."""
        if key in self._items:
            return
        size = _size(key) + _size(payload) + MEMO_ENTRY_BYTES
        self._items[key] = (item, size)
        self.bytes += size
        while self.bytes > MEMO_BYTES and self._items:
            _, (_, dropped) = self._items.popitem(last=False)
            self.bytes -= dropped


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
    rows refused before sending (empty, bad input) make no request, nor do rows the cache
    answers; identical inputs are sent once when de-duplicating; batched wires group rows
    into requests."""

    batched: bool
    max_batch_size: int
    deduplicate: bool
    rows: int = 0  # rows that need an answer (not NULL)
    refused: int = 0  # rows answered with an error before sending
    cached: int = 0  # rows the response cache answers
    deduplicated: int = 0
    requests: int = 0
    input_tokens: int = 0
    _seen: set[int] = field(default_factory=set)

    def add(
        self, inputs: Sequence[Any], cached: Collection[int] = (), shared: Collection[int] = ()
    ) -> None:
        """Count one batch; `cached`: the rows the response cache has answers for; `shared`:
        the rows whose input another task sends (de-duplication across tasks)."""
        send = []
        for i, value in enumerate(inputs):
            if value is None:
                continue
            self.rows += 1
            if isinstance(value, RequestError) or value == "":
                self.refused += 1
                continue
            if i in cached:
                self.cached += 1
                continue
            if i in shared:
                self.deduplicated += 1
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


class Deduplicator:
    """A task's identical inputs as one request: the rows waiting for a request already
    queued or in flight (not counting its own row), and the answers already in hand."""

    def __init__(self) -> None:
        self.rows = 0  # rows answered by another row's request (errors it shared not counted)
        self._waiting: dict[Hashable, list[tuple[Batch, int]]] = {}
        self._memo = Memo()

    def split(
        self, batch: Batch, rows: list[int], inputs: Sequence[Any], keys: dict[int, Hashable]
    ) -> list[int]:
        """The rows of `batch` that need a request of their own (their keys go in `keys`);
        the others take a remembered answer now, or wait for an identical input's request."""
        send = []
        for i in rows:
            key = dedup_key(inputs[i])
            known = self._memo.get(key)
            if known is not None:
                batch.answer(i, known)
                self.rows += 1
            elif (waiting := self._waiting.get(key)) is not None:
                waiting.append((batch, i))
            else:
                self._waiting[key] = []
                keys[i] = key
                send.append(i)
        return send

    def settle(self, keys: list[Hashable], results: list[RowResult]) -> None:
        """Answer the rows that waited for these inputs, and remember the answers."""
        for key, result in zip(keys, results, strict=True):
            waiting = self._waiting.pop(key, ())
            for batch, row in waiting:
                batch.fill((row,), (result,))
            if result.error is None:  # an error may be transient: a later row tries again
                self.rows += len(waiting)
                self._memo.put(key, result, result.value)

    def park(self, key: Hashable, batch: Batch, row: int) -> None:
        """`row` waits for `key`'s answer from elsewhere (another task's request)."""
        self._waiting[key].append((batch, row))

    def hand_over(self, key: Hashable) -> tuple[Batch, int]:
        """One of the rows waiting for `key`, to send `key`'s request for them all."""
        return self._waiting[key].pop(0)

    def forget_waiting(self) -> None:
        """The task failed: no request will answer the waiting rows."""
        self._waiting.clear()

    @property
    def memo_bytes(self) -> int:
        return self._memo.bytes
