"""De-duplication across tasks: engines of one call site share their answers through a
real driver coordinator, against the real emulator."""

from __future__ import annotations

import asyncio
import random
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import aiquery.spark.coordinator as coordinators
from aiquery.client import sharing
from aiquery.client.cache import cache_key
from aiquery.client.engine import BatchEngine, EngineSettings
from aiquery.client.exchange import AnswerExchange
from aiquery.client.sending import RowResult
from aiquery.client.sharing import ShareSettings
from aiquery.client.wire import wire_for
from aiquery.endpoints.registry import Endpoint, Secret
from aiquery.serving.control import EmulatorControl
from aiquery.serving.server import EmulatorServer
from tests.serving.test_engine import FAST_RETRIES, SavedSpy, endpoint, expected

pytestmark = pytest.mark.serving

NAME = "databricks-gpt-5-4"


@pytest.fixture
def driver() -> Iterator[coordinators.Coordinator]:
    found = coordinators.Coordinator("127.0.0.1", 0, None)
    yield found
    found.stop()


@pytest.fixture
def exchange(monkeypatch: pytest.MonkeyPatch) -> AnswerExchange:
    fresh = AnswerExchange(stale_s=1.0)
    monkeypatch.setattr(coordinators, "EXCHANGES", fresh)
    return fresh


def settings(driver: coordinators.Coordinator, name: str) -> EngineSettings:
    return EngineSettings(
        concurrency=8,
        policy=FAST_RETRIES,
        deduplicate=True,
        share=ShareSettings(name),
        coordinator_url=driver.url,
        coordinator_token=Secret(driver.token),
    )


def run_task(
    ep: Endpoint, setup: EngineSettings, prompts: list[str], *, fail_fast: bool = False
) -> tuple[list[RowResult], int]:
    """One task's rows through its engine: (results, rows answered without a request)."""
    spy = SavedSpy()
    batches = [prompts[i : i + 50] for i in range(0, len(prompts), 50)]
    with BatchEngine(ep, wire_for(ep, {}), setup, fail_fast=fail_fast, recorder=spy) as e:
        results = [r for batch in e.map(batches) for r in batch]
    return results, sum(r.rows for r in spy.records)


def test_tasks_running_at_once_send_each_input_once_and_every_row_is_answered(
    emulator: EmulatorServer, control: EmulatorControl, driver, exchange
) -> None:  # type: ignore[no-untyped-def]
    control.set_faults(NAME, latency_ms=20)
    distinct = [f"Summarize: item {i}. rest" for i in range(200)]
    tasks = [random.Random(seed).sample(distinct, len(distinct)) for seed in range(4)]
    outcome = run_at_once(endpoint(emulator), settings(driver, uuid.uuid4().hex), tasks)
    for i, prompts in enumerate(tasks):
        assert [r.value for r in outcome[i][0]] == [expected(p) for p in prompts]
    assert control.stats()[NAME]["requests"] == 200
    assert sum(saved for _, saved in outcome) == 600


def run_at_once(ep: Endpoint, setup: EngineSettings, tasks: list[list[str]]) -> list[Any]:
    outcome: dict[int, tuple[list[RowResult], int]] = {}

    def task(i: int) -> None:
        outcome[i] = run_task(ep, setup, tasks[i])

    threads = [threading.Thread(target=task, args=(i,)) for i in range(len(tasks))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [outcome[i] for i in range(len(tasks))]


def test_a_task_after_another_finished_takes_its_published_answers(
    emulator: EmulatorServer, control: EmulatorControl, driver, exchange
) -> None:  # type: ignore[no-untyped-def]
    prompts = [f"Summarize: later {i}. x" for i in range(120)]
    setup = settings(driver, uuid.uuid4().hex)
    run_task(endpoint(emulator), setup, prompts)
    results, saved = run_task(endpoint(emulator), setup, prompts[::2])
    assert [r.value for r in results] == [expected(p) for p in prompts[::2]]
    assert control.stats()[NAME]["requests"] == 120 and saved == 60


def test_answers_are_posted_a_few_times_per_latency_not_ten_times_a_second(
    emulator: EmulatorServer, driver, exchange, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """A task's answers coming one by one (an LLM's, 2 s each: every 50 ms here) go to the
    exchange a quarter of the latency at a time, 0.5 s, not every 0.1 s; all of them."""
    posts: list[int] = []
    publish = sharing.SharedInputs._publish

    async def counted(self: sharing.SharedInputs, **kw: bool) -> None:
        posts.append(len(self._answers))
        await publish(self, **kw)

    monkeypatch.setattr(sharing.SharedInputs, "_publish", counted)
    shared = sharing.SharedInputs(
        driver.url, driver.token, ShareSettings(uuid.uuid4().hex), endpoint(emulator), {}
    )

    async def task() -> None:
        offer = [(i, f"Summarize: answer {i}. x") for i in range(40)]
        found, wait = await shared.offer(offer)
        assert not found and not wait  # all claimed by this task
        nothing = lambda *_: None  # noqa: E731 (no answer arrives from elsewhere here)
        running = asyncio.ensure_future(shared.run(nothing, nothing, lambda: 2.0))
        for i in range(40):
            shared.settle(i, f"answer {i}", True)
            await asyncio.sleep(0.05)
        running.cancel()
        await shared.close()

    asyncio.run(task())
    assert sum(posts) == 40
    assert len(posts) <= 2 / 0.5 + 3  # 2 s of answers, then the closing posts; ~20 before


def test_the_publish_delay_follows_the_latency_within_bounds() -> None:
    assert sharing.publish_delay_s(0.0) == sharing.publish_delay_s(0.2) == 0.1
    assert sharing.publish_delay_s(2.0) == 0.5
    assert sharing.publish_delay_s(30.0) == 1.0


def test_vectors_move_to_the_driver_only_once_the_query_shows_repeats(
    emulator: EmulatorServer, control: EmulatorControl, driver, exchange
) -> None:  # type: ignore[no-untyped-def]
    ep = endpoint(emulator, "databricks-gte-large-en", task="llm/v1/embeddings")
    setup = settings(driver, uuid.uuid4().hex)
    texts = [f"text {i}" for i in range(400)]
    run_at_once(ep, setup, [texts[:200], texts[200:]])
    items = lambda: control.stats()["databricks-gte-large-en"]["items"]  # noqa: E731
    assert items() == 400 and exchange.bytes == 0  # no repeats: no vector left its task
    # The first repeats: embedded again (their vectors were dropped), and now published.
    first, _ = run_task(ep, setup, texts[:100])
    assert items() == 500 and exchange.bytes > 100 * 4 * 1024
    again, saved = run_task(ep, setup, texts[:100])
    assert items() == 500 and saved == 100
    assert [r.value.tolist() for r in again] == [r.value.tolist() for r in first]


def test_another_query_shares_nothing(
    emulator: EmulatorServer, control: EmulatorControl, driver, exchange
) -> None:  # type: ignore[no-untyped-def]
    prompts = [f"Summarize: query {i}. x" for i in range(30)]
    run_task(endpoint(emulator), settings(driver, "first query"), prompts)
    run_task(endpoint(emulator), settings(driver, "second query"), prompts)
    assert control.stats()[NAME]["requests"] == 60


def key_of(ep: Endpoint, prompt: str) -> str:
    return cache_key(ep, wire_for(ep, {}).params, prompt)


def test_rows_waiting_on_a_task_whose_request_failed_are_sent_by_their_own_task(
    emulator: EmulatorServer, control: EmulatorControl, driver, exchange
) -> None:  # type: ignore[no-untyped-def]
    ep = endpoint(emulator)
    name = uuid.uuid4().hex
    exchange.offer(name, "other task", [key_of(ep, "Summarize: shared. x")])
    # The other task's request fails a little later: it releases its claim.
    release = threading.Timer(
        0.3,
        lambda: exchange.offer(
            name, "other task", [], released=[key_of(ep, "Summarize: shared. x")]
        ),
    )
    release.start()
    try:
        results, saved = run_task(ep, settings(driver, name), ["Summarize: shared. x"] * 3)
    finally:
        release.join()
    assert [r.value for r in results] == ["shared."] * 3
    assert control.stats()[NAME]["requests"] == 1 and saved == 2


def test_rows_waiting_on_a_task_that_went_silent_are_sent_after_the_stale_time(
    emulator: EmulatorServer, control: EmulatorControl, driver, exchange
) -> None:  # type: ignore[no-untyped-def]
    ep = endpoint(emulator)
    name = uuid.uuid4().hex
    exchange.offer(name, "lost executor", [key_of(ep, "Summarize: orphan. x")])
    started = time.monotonic()
    results, _ = run_task(ep, settings(driver, name), ["Summarize: orphan. x", "Summarize: b. x"])
    assert [r.value for r in results] == ["orphan.", "b."]
    assert time.monotonic() - started >= exchange.stale_s  # it did wait for the claim first
    assert control.stats()[NAME]["requests"] == 2


def test_a_task_that_fails_releases_its_claims(
    emulator: EmulatorServer, control: EmulatorControl, driver, exchange
) -> None:  # type: ignore[no-untyped-def]
    ep = endpoint(emulator)
    name = uuid.uuid4().hex
    control.set_faults(NAME, error_rate_500=1.0)
    prompts = [f"Summarize: doomed {i}. x" for i in range(20)]
    with pytest.raises(Exception, match="HTTP 500"):
        run_task(ep, settings(driver, name), prompts, fail_fast=True)
    control.set_faults(NAME, error_rate_500=0.0)
    offer = exchange.offer(name, "next attempt", [key_of(ep, p) for p in prompts])
    assert len(offer.yours) == 20  # nothing left claimed by the failed task, nothing to wait on


def test_a_task_away_from_its_loop_keeps_its_claims_by_its_heartbeat(
    emulator: EmulatorServer, driver, exchange, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(sharing, "HEARTBEAT_S", 0.2)
    ep = endpoint(emulator)
    name = uuid.uuid4().hex
    shared = sharing.SharedInputs(driver.url, driver.token, ShareSettings(name), ep, {})
    loop = asyncio.new_event_loop()
    try:
        _, wait = loop.run_until_complete(shared.offer([("k", "Summarize: held. x")]))
        assert not wait  # the claim is this task's
        pump = loop.create_task(shared.run(lambda *_: None, lambda *_: None))
        loop.run_until_complete(asyncio.sleep(0.05))
        time.sleep(3 * exchange.stale_s)  # as when Spark holds the task: the loop stands still
        key = cache_key(ep, wire_for(ep, {}).params, "Summarize: held. x")
        assert exchange.offer(name, "another task", [key]).wait == [key]
        pump.cancel()
        loop.run_until_complete(asyncio.gather(pump, return_exceptions=True))
        loop.run_until_complete(shared.close())
    finally:
        loop.close()
    assert exchange.offer(name, "another task", [key]).yours == [key]  # released at the end
