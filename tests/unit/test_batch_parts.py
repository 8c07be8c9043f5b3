"""A task's input batch as the engine hands it back: in parts, in order, each once answered."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator

import numpy as np
import pytest

from aiquery.client.sending import Batch, RowResult


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def answered(batch: Batch, rows: range) -> None:
    batch.fill(list(rows), [RowResult(f"row {i}") for i in rows])


def test_a_part_is_ready_once_its_rows_are_answered_and_only_in_order(
    loop: asyncio.AbstractEventLoop,
) -> None:
    batch = Batch(25, loop, part=10)
    answered(batch, range(10, 20))  # the second part first: nothing to hand back yet
    assert not batch.ready.done()
    answered(batch, range(0, 9))
    assert not batch.ready.done()
    answered(batch, range(9, 10))
    assert batch.ready.done()
    assert [r.value for r in batch.take()] == [f"row {i}" for i in range(10)]
    assert batch.ready.done()  # the second part was complete already
    assert [r.value for r in batch.take()] == [f"row {i}" for i in range(10, 20)]
    assert not batch.ready.done() and not batch.finished
    answered(batch, range(20, 25))
    assert [r.value for r in batch.take()] == [f"row {i}" for i in range(20, 25)]
    assert batch.finished


def test_without_parts_the_batch_is_one_part(loop: asyncio.AbstractEventLoop) -> None:
    batch = Batch(3, loop)
    answered(batch, range(2))
    assert not batch.ready.done()
    answered(batch, range(2, 3))
    assert len(batch.take()) == 3 and batch.finished


def test_an_empty_batch_is_one_empty_part_ready_at_once(loop: asyncio.AbstractEventLoop) -> None:
    batch = Batch(0, loop, part=10)
    assert batch.ready.done()
    assert batch.take() == [] and batch.finished


def test_a_failure_reaches_the_part_awaited_and_every_later_one(
    loop: asyncio.AbstractEventLoop,
) -> None:
    batch = Batch(20, loop, part=10)
    answered(batch, range(10))
    batch.fail(RuntimeError("the endpoint is gone"))
    batch.take()  # the first part was complete before the failure
    with pytest.raises(RuntimeError, match="the endpoint is gone"):
        batch.ready.result()


def test_a_part_handed_back_is_let_go_while_the_batch_goes_on(
    loop: asyncio.AbstractEventLoop,
) -> None:
    batch = Batch(4, loop, part=2)
    vector = np.ones(1024, dtype=np.float32)
    seen = weakref.ref(vector)
    batch.fill([0, 1], [RowResult(vector), RowResult(None)])
    del vector
    part = batch.take()
    assert seen() is part[0].value
    del part
    gc.collect()
    assert seen() is None
    with pytest.raises(AssertionError, match="answered twice"):
        batch.answer(0, RowResult("again"))
