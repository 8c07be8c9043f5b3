"""The batch engine against the real emulator: protocols, order, batching, retries, fail-fast."""

from __future__ import annotations

import dataclasses
import gc
import time
import weakref
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from aiquery.client.engine import BatchEngine, EngineSettings
from aiquery.client.linger import linger_s
from aiquery.client.retry import RetryPolicy
from aiquery.client.sending import RowResult
from aiquery.client.wire import wire_for
from aiquery.endpoints.registry import Endpoint, Secret
from aiquery.protocols.common import Message
from aiquery.serving.control import EmulatorControl
from aiquery.serving.embedding import embed
from aiquery.serving.models import chat_reply
from aiquery.serving.server import EmulatorServer

pytestmark = pytest.mark.serving

FAST_RETRIES = RetryPolicy(max_attempts=4, base_delay_s=0.01, max_delay_s=0.05)


def endpoint(server: EmulatorServer, name: str = "databricks-gpt-5-4", **kw: Any) -> Endpoint:
    spec: dict[str, Any] = {
        "name": name,
        "protocol": "databricks",
        "base_url": server.url,
        "task": "llm/v1/chat",
        "model": name,
        "token": Secret(server.token),
    }
    spec.update(kw)
    return Endpoint(**spec)


def run(
    ep: Endpoint,
    batches: list[list[Any]],
    *,
    fail_fast: bool = False,
    params: dict[str, Any] | None = None,
    settings: EngineSettings | None = None,
) -> list[list[RowResult]]:
    wire = wire_for(ep, params or {}, {"team": "ml"})
    with BatchEngine(
        ep,
        wire,
        settings or EngineSettings(concurrency=16, policy=FAST_RETRIES),
        fail_fast=fail_fast,
    ) as engine:
        return list(engine.map(batches))


def expected(prompt: str) -> str:
    return chat_reply([Message("user", prompt)]).text


@pytest.mark.parametrize(
    ("protocol", "prefix", "name"),
    [
        ("databricks", "", "databricks-gpt-5-4"),
        ("openai", "/serving-endpoints", "databricks-gpt-5-4"),
        ("openai", "/ai-gateway/mlflow/v1", "system.ai.gpt-5-mini"),
        ("anthropic", "/ai-gateway/anthropic", "databricks-claude-sonnet-4-5"),
        ("gemini", "/ai-gateway/gemini", "databricks-gemini-2-5-flash"),
    ],
)
def test_every_protocol_answers_in_order(
    emulator: EmulatorServer, protocol: str, prefix: str, name: str
) -> None:
    ep = endpoint(emulator, name, protocol=protocol, base_url=emulator.url + prefix)
    prompts = [f"Summarize: Row {i} says hello. More text." for i in range(30)]
    (results,) = run(ep, [prompts])
    assert [r.value for r in results] == [expected(p) for p in prompts]
    assert all(r.error is None for r in results)


def test_a_closed_engine_is_freed_at_once_not_left_to_the_cyclic_gc(
    emulator: EmulatorServer,
) -> None:
    """A task's engine holds its answers (the memo: up to 16 MB of vectors) and its last
    batches: they go as the task ends, not at the worker's next full collection."""
    ep = endpoint(emulator, "databricks-gte-large-en", task="llm/v1/embeddings")
    gc.disable()
    try:
        with BatchEngine(ep, wire_for(ep, {}), EngineSettings(concurrency=8), fail_fast=False) as e:
            assert len(next(e.map([["one", "two", "one"]]))) == 3
        engine = weakref.ref(e)
        del e
        assert engine() is None
    finally:
        gc.enable()


def test_order_is_preserved_across_batches_under_random_latency(
    emulator: EmulatorServer, control: EmulatorControl
) -> None:
    control.set_faults(latency_ms=20, latency_distribution="exponential", seed=1)
    batches = [[f"Summarize: item {b}-{i}. tail" for i in range(50)] for b in range(6)]
    out = run(endpoint(emulator), batches)
    assert [[r.value for r in batch] for batch in out] == [
        [expected(p) for p in b] for b in batches
    ]


def test_a_batch_in_parts_hands_each_back_once_it_is_answered_not_the_whole_batch(
    emulator: EmulatorServer, control: EmulatorControl
) -> None:
    """With `part`, a batch's results come back in order, in lists of `part` rows, each
    as soon as its rows are answered: the first before the batch's later requests are."""
    control.set_faults(latency_ms=20, latency_distribution="exponential", seed=5)
    batches = [[f"Summarize: part {b}-{i}. tail" for i in range(25)] for b in range(3)]
    ep = endpoint(emulator)
    settings = EngineSettings(concurrency=2, policy=FAST_RETRIES)
    with BatchEngine(ep, wire_for(ep, {}), settings, fail_fast=False) as engine:
        parts = engine.map(batches, part=10)
        first = next(parts)
        assert engine.requests_done < 25  # the batch's last rows are still to be answered
        out = [first, *parts]
    assert [len(p) for p in out] == [10, 10, 5] * 3
    assert [r.value for p in out for r in p] == [expected(t) for b in batches for t in b]


def test_the_loop_lingers_by_the_endpoints_latency(
    emulator: EmulatorServer, control: EmulatorControl
) -> None:
    """Its selector follows the endpoint's recent latency: no linger while none is known, 1%
    of it once answers take 300 ms (`aiquery.client.linger`); the answers are unchanged."""
    control.set_faults(latency_ms=300, latency_distribution="exponential", seed=3)
    ep = endpoint(emulator)
    prompts = [f"Summarize: lingering {i}. tail" for i in range(40)]
    settings = EngineSettings(concurrency=32, policy=FAST_RETRIES)
    with BatchEngine(ep, wire_for(ep, {}), settings, fail_fast=False) as engine:
        assert linger_s(engine._selector.latency_s()) == 0.0
        (results,) = engine.map([prompts])
        assert engine.client is not None
        recent = engine.client.concurrency.latency.recent
        assert recent > 0.1
        assert engine._selector.latency_s() == recent
        assert linger_s(recent) == pytest.approx(recent / 100)
    assert [r.value for r in results] == [expected(p) for p in prompts]


def test_pump_reads_the_answers_that_arrived_while_the_task_was_away(
    emulator: EmulatorServer, control: EmulatorControl
) -> None:
    """While a task hands a batch back, the loop does not run; `pump` takes the answers that
    arrived meanwhile without waiting for more, and the next batch is still right."""
    control.set_faults(latency_ms=50)
    ep = endpoint(emulator)
    first = [f"Summarize: first {i}. tail" for i in range(4)]
    second = [f"Summarize: second {i}. tail" for i in range(4)]
    settings = EngineSettings(concurrency=4, policy=FAST_RETRIES)
    with BatchEngine(ep, wire_for(ep, {}), settings, fail_fast=False) as engine:
        batches = engine.map([first, second])
        assert [r.value for r in next(batches)] == [expected(p) for p in first]
        assert engine.requests_done == 4  # the second batch's four are in flight
        time.sleep(0.5)  # they are answered; nothing reads the answers
        assert engine.requests_done == 4
        engine.pump()
        assert engine.requests_done == 8
        assert [r.value for r in next(batches)] == [expected(p) for p in second]
    assert control.stats()["databricks-gpt-5-4"]["requests"] == 8


@pytest.mark.parametrize(
    "task, batch_rows, pulled",
    [
        # 10 inputs make one batched request: four windows of 2 requests, 8 batches ahead.
        ("llm/v1/embeddings", 10, 8),
        # One request per row: four windows, 8 rows, in batches of one row each.
        ("llm/v1/chat", 1, 8),
        # Batches larger than the queue: still two batches ahead.
        ("llm/v1/chat", 10, 2),
    ],
)
def test_the_engine_queues_requests_ahead_by_its_window(
    emulator: EmulatorServer, task: str, batch_rows: int, pulled: int
) -> None:
    """Before it waits for its first batch the engine takes input batches until two are
    queued and its requests fill the window four times over, batched or not; no more, so
    the rows answered ahead of the oldest batch, which wait in memory, stay bounded."""
    name = "databricks-gte-large-en" if task == "llm/v1/embeddings" else "databricks-gpt-5-4"
    ep = endpoint(emulator, name, task=task, max_batch_size=10)
    taken = 0

    def batches() -> Iterator[list[str]]:
        nonlocal taken
        for b in range(20):
            taken += 1
            yield [f"Summarize: batch {b} row {i}. tail" for i in range(batch_rows)]

    settings = EngineSettings(concurrency=2, policy=FAST_RETRIES)
    with BatchEngine(ep, wire_for(ep, {}), settings, fail_fast=False) as engine:
        answers = engine.map(batches())
        assert len(next(answers)) == batch_rows
        assert taken == pulled
        assert sum(len(batch) for batch in answers) == 19 * batch_rows


def test_null_rows_send_nothing(emulator: EmulatorServer, control: EmulatorControl) -> None:
    (results,) = run(endpoint(emulator), [["Summarize: a. b", None, "Summarize: c. d", None]])
    assert [r.value for r in results] == ["a.", None, "c.", None]
    assert control.stats()["databricks-gpt-5-4"]["requests"] == 2


def test_embeddings_are_batched_into_few_requests(
    emulator: EmulatorServer, control: EmulatorControl
) -> None:
    ep = endpoint(emulator, "databricks-gte-large-en", task="llm/v1/embeddings", max_batch_size=25)
    texts = [f"text number {i}" for i in range(100)] + [None]
    (results,) = run(ep, [texts])
    assert [len(r.value) for r in results[:100]] == [1024] * 100
    assert results[100].value is None
    stats = control.stats()["databricks-gte-large-en"]
    assert stats["requests"] == 4
    assert stats["items"] == 100


@pytest.mark.parametrize("encoding", ["base64", "float"])
def test_embeddings_arrive_as_the_models_float32_vectors_in_either_encoding(
    emulator: EmulatorServer, encoding: str
) -> None:
    ep = endpoint(
        emulator, "databricks-gte-large-en", task="llm/v1/embeddings", encoding_format=encoding
    )
    body = wire_for(ep, {}).encode(["a text"])
    assert body.get("encoding_format", "float") == encoding  # float: the field is left out
    texts = [f"embedding text {i}" for i in range(30)]
    (results,) = run(ep, [texts])
    for text, result in zip(texts, results, strict=True):
        assert isinstance(result.value, np.ndarray) and result.value.dtype == np.float32
        assert result.value.tolist() == np.asarray(embed(text, 1024), dtype=np.float32).tolist()


def test_request_tags_reach_the_server(emulator: EmulatorServer, control: EmulatorControl) -> None:
    run(endpoint(emulator), [["hello"]])
    assert control.requests()[0]["request_tags"] == {"team": "ml"}


def test_429_retry_after_is_honoured(emulator: EmulatorServer, control: EmulatorControl) -> None:
    control.set_faults("databricks-gpt-5-4", requests_per_minute=60)  # 1/s, burst 1
    policy = RetryPolicy(max_attempts=3, base_delay_s=0.001, max_delay_s=0.001)
    (results,) = run(
        endpoint(emulator), [["one", "two"]], settings=EngineSettings(concurrency=2, policy=policy)
    )
    assert all(r.error is None for r in results)
    log = control.requests()
    statuses = [r["status"] for r in log]
    assert statuses.count(429) >= 1 and statuses.count(200) == 2
    first_429 = next(r["time"] for r in log if r["status"] == 429)
    retried = [r["time"] for r in log if r["status"] == 200 and r["time"] > first_429]
    # The server said ~1 s (retry-after-ms); backoff alone would have waited 1 ms.
    assert retried and retried[0] - first_429 >= 0.8


@pytest.mark.parametrize(("knob", "status"), [("error_rate_500", 500), ("error_rate_503", 503)])
def test_transient_errors_are_retried_then_reported(
    emulator: EmulatorServer, control: EmulatorControl, knob: str, status: int
) -> None:
    control.set_faults("databricks-gpt-5-4", **{knob: 1.0})
    (results,) = run(endpoint(emulator), [["a", "b"]])
    assert control.stats()["databricks-gpt-5-4"]["requests"] == 2 * FAST_RETRIES.max_attempts
    message = str(results[0].error)
    assert "AI_FUNCTION_HTTP_REQUEST_ERROR" in message
    assert (
        f"HTTP {status}" in message and "4 attempts" in message and "databricks-gpt-5-4" in message
    )


def test_flaky_endpoint_succeeds_with_retries(
    emulator: EmulatorServer, control: EmulatorControl
) -> None:
    control.set_faults(
        "databricks-gpt-5-4", error_rate_500=0.2, error_rate_503=0.1, malformed_rate=0.1, seed=4
    )
    prompts = [f"Summarize: p{i}. x" for i in range(200)]
    # 40% of attempts fail: 20 attempts leave a row failing with odds of 0.4**20 (1e-8).
    policy = RetryPolicy(
        max_attempts=20, max_throttled_attempts=20, base_delay_s=0.001, max_delay_s=0.01
    )
    (results,) = run(
        endpoint(emulator), [prompts], settings=EngineSettings(concurrency=16, policy=policy)
    )
    assert [r.value for r in results] == [expected(p) for p in prompts]
    assert control.stats()["databricks-gpt-5-4"]["requests"] > 200


def test_400_is_not_retried(emulator: EmulatorServer, control: EmulatorControl) -> None:
    # temperature 5 is refused by the server (the analyzer would catch it first in Spark).
    (results,) = run(endpoint(emulator), [["a", "b"]], params={"temperature": 5})
    assert control.stats()["databricks-gpt-5-4"]["requests"] == 2
    assert "HTTP 400" in str(results[0].error) and "temperature" in str(results[0].error)


def test_bad_token_fails_fast_within_a_bounded_number_of_requests(
    emulator: EmulatorServer, control: EmulatorControl
) -> None:
    ep = endpoint(emulator, token=Secret("dapi-wrong-token-xyz"))
    with pytest.raises(Exception) as caught:
        run(ep, [[f"row {i}" for i in range(2000)]], fail_fast=False)
    sent = control.stats()["databricks-gpt-5-4"]["requests"]
    assert sent <= 16 + 5  # concurrency + the breaker threshold, not one per row
    assert "HTTP 401" in str(caught.value)
    assert "dapi-wrong-token-xyz" not in str(caught.value)


def test_fail_fast_stops_at_the_first_row_error(
    emulator: EmulatorServer, control: EmulatorControl
) -> None:
    control.set_faults("databricks-gpt-5-4", error_rate_500=1.0)
    started = time.monotonic()
    with pytest.raises(Exception, match="HTTP 500"):
        run(endpoint(emulator), [[f"row {i}" for i in range(1000)]], fail_fast=True)
    assert control.stats()["databricks-gpt-5-4"]["requests"] < 200
    assert time.monotonic() - started < 30


def test_oversized_prompt_is_a_row_error_and_sends_nothing(
    emulator: EmulatorServer, control: EmulatorControl
) -> None:
    (results,) = run(endpoint(emulator), [["x" * (4 * 1024 * 1024 + 1), "fine"]])
    assert "exceeds the 4 MB limit" in str(results[0].error)
    assert results[1].value == "fine"
    assert control.stats()["databricks-gpt-5-4"]["requests"] == 1


def test_timeouts_are_retried(emulator: EmulatorServer, control: EmulatorControl) -> None:
    control.set_faults("databricks-gpt-5-4", hang_rate=0.5, hang_seconds=5, seed=2)
    ep = endpoint(emulator, timeout_s=0.3)
    policy = RetryPolicy(max_attempts=8, base_delay_s=0.001, max_delay_s=0.01)
    (results,) = run(
        ep,
        [[f"Summarize: t{i}. x" for i in range(20)]],
        settings=EngineSettings(concurrency=8, policy=policy),
    )
    assert [r.value for r in results] == [f"t{i}." for i in range(20)]
    assert "hung" in control.stats()["databricks-gpt-5-4"]["statuses"]


def test_a_bug_in_a_request_fails_the_task_instead_of_hanging_it(
    emulator: EmulatorServer,
) -> None:
    ep = endpoint(emulator)
    wire = wire_for(ep, {}, None)

    def broken_decode(body: Any, inputs: Any) -> Any:
        raise KeyError("a decoder bug")

    wire = dataclasses.replace(wire, decode=broken_decode)
    with (
        BatchEngine(ep, wire, EngineSettings(concurrency=4), fail_fast=False) as engine,
        pytest.raises(KeyError, match="a decoder bug"),
    ):
        list(engine.map([[f"row {i}" for i in range(20)]]))


# --- de-duplication --------------------------------------------------------------------------


class SavedSpy:
    """A recorder that keeps only the lines of rows answered without a request."""

    def __init__(self) -> None:
        self.records: list[Any] = []

    def started(self, attempt: Any) -> None:
        return None

    def finished(self, attempt: Any) -> None:
        return None

    def saved(self, record: Any) -> None:
        self.records.append(record)

    async def drain(self) -> None:
        return None


def run_dedup(
    ep: Endpoint, batches: list[list[Any]], *, concurrency: int = 16
) -> tuple[list[list[RowResult]], BatchEngine, list[Any]]:
    spy = SavedSpy()
    settings = EngineSettings(concurrency=concurrency, policy=FAST_RETRIES, deduplicate=True)
    with BatchEngine(ep, wire_for(ep, {}), settings, fail_fast=False, recorder=spy) as engine:
        return list(engine.map(batches)), engine, spy.records


def test_identical_inputs_in_a_task_are_sent_once_and_every_row_answered(
    emulator: EmulatorServer, control: EmulatorControl
) -> None:
    # 30% of rows repeat an earlier row: in the same batch, in flight, or long answered.
    distinct = [f"Summarize: row {i} is unique. x" for i in range(700)]
    prompts = distinct + [distinct[(i * 7) % 700] for i in range(300)]
    batches = [prompts[i : i + 100] for i in range(0, 1000, 100)]
    results, engine, saved = run_dedup(endpoint(emulator), batches, concurrency=4)
    flat = [r.value for batch in results for r in batch]
    assert flat == [expected(p) for p in prompts]
    assert control.stats()["databricks-gpt-5-4"]["requests"] == 700
    assert engine.rows_deduplicated == 300 == sum(s.rows for s in saved)
    assert {s.source for s in saved} == {"duplicate"}


def test_duplicates_waiting_on_a_request_in_flight_share_its_error(
    emulator: EmulatorServer, control: EmulatorControl
) -> None:
    control.set_faults("databricks-gpt-5-4", error_rate_500=1.0)
    (results,), engine, _ = run_dedup(endpoint(emulator), [["same", "same", "same", "other"]])
    assert control.stats()["databricks-gpt-5-4"]["requests"] == 2 * FAST_RETRIES.max_attempts
    assert all(r.error is not None and "HTTP 500" in str(r.error) for r in results)
    assert engine.rows_deduplicated == 0  # not sent, but not answered either: not "saved"


def test_a_failed_input_is_tried_again_when_it_repeats_in_a_later_batch(
    emulator: EmulatorServer, control: EmulatorControl
) -> None:
    control.set_faults("databricks-gpt-5-4", error_rate_500=1.0)
    settings = EngineSettings(concurrency=4, policy=FAST_RETRIES, deduplicate=True)
    ep = endpoint(emulator)
    with BatchEngine(ep, wire_for(ep, {}), settings, fail_fast=False) as engine:
        (first,) = engine.map([["Summarize: a. b"]])
        assert first[0].error is not None
        control.set_faults("databricks-gpt-5-4", error_rate_500=0.0)
        (again,) = engine.map([["Summarize: a. b"]])
    assert again[0].value == "a."  # errors are not remembered: the repeat was sent


def test_duplicate_embeddings_are_sent_once_within_their_batched_requests(
    emulator: EmulatorServer, control: EmulatorControl
) -> None:
    ep = endpoint(emulator, "databricks-gte-large-en", task="llm/v1/embeddings", max_batch_size=25)
    texts = [f"text {i % 40}" for i in range(100)]
    (results,), engine, _ = run_dedup(ep, [texts])
    for text, result in zip(texts, results, strict=True):
        assert result.value.tolist() == np.asarray(embed(text, 1024), dtype=np.float32).tolist()
    assert control.stats()["databricks-gte-large-en"]["items"] == 40
    assert engine.rows_deduplicated == 60


def test_the_answer_memo_is_bounded_by_size(
    emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch, control: EmulatorControl
) -> None:
    import aiquery.client.sending as sending

    monkeypatch.setattr(sending, "MEMO_BYTES", 2_000)
    prompts = [f"Summarize: row {i}. x" for i in range(50)]
    settings = EngineSettings(concurrency=2, policy=FAST_RETRIES, deduplicate=True)
    ep = endpoint(emulator)
    with BatchEngine(ep, wire_for(ep, {}), settings, fail_fast=False) as engine:
        engine.map([prompts]).__next__()
        (again,) = engine.map([prompts])  # after the first is done: only the memo can help
        remembered = engine.rows_deduplicated
        assert engine._dedup.memo_bytes <= 2_000
    assert [r.value for r in again] == [expected(p) for p in prompts]
    assert 0 < remembered < 50  # the most recent answers, not all of them
    assert control.stats()["databricks-gpt-5-4"]["requests"] == 100 - remembered
