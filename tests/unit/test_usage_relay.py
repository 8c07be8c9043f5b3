"""Usage delivered to the driver: the executor's `RelayWriter`, the driver's `Collector`, and the
coordinator's HTTP service between them, on loopback; the spool they leave is read back
with the committer's own reader."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from aiquery.client.engine import BatchEngine, EngineSettings
from aiquery.client.retry import RetryPolicy
from aiquery.client.transport import MockTransport, Request, Response
from aiquery.client.wire import wire_for
from aiquery.endpoints.registry import Endpoint
from aiquery.spark.coordinator import Coordinator
from aiquery.usage.driver.collector import BadBatchError, Collector
from aiquery.usage.driver.spool import read_rows, spool_files
from aiquery.usage.record import (
    FINISHED,
    STARTED,
    Attempt,
    Call,
    attempt_line,
    header_line,
    usage_table,
)
from aiquery.usage.relay import (
    SEQUENCE_HEADER,
    WRITER_HEADER,
    RelayWriter,
    UsageDeliveryError,
)

CALL = Call(
    invocation_id="inv",
    endpoint_name="ep",
    endpoint_id="id",
    destination_type="PAY_PER_TOKEN_FOUNDATION_MODEL",
    destination_name="ep",
    destination_model="m",
    requester="me",
    api_type="llm/v1/chat",
    url="http://127.0.0.1/x",
    user_agent="aiquery-test",
    request_tags=None,
    spark_app_id="app",
    spark_task="1.0.0",
)


def _done(rid: str) -> Attempt:
    return Attempt(rid, 1.7e9, 1, 1, status_code=200, latency_ms=5, input_tokens=3, output_tokens=4)


def _rows(spool: Path) -> dict[str, dict[str, object]]:
    rows: dict[str, dict[str, object]] = {}
    for path in spool_files(spool):
        for row in usage_table(read_rows(path)[0].usage).to_pylist():
            kept = rows.get(row["request_id"])
            if kept is None or kept["latency_ms"] is None:
                rows[row["request_id"]] = row
    return rows


@pytest.fixture
def coordinator(tmp_path: Path) -> Iterator[Coordinator]:
    found = Coordinator("127.0.0.1", 0, str(tmp_path / "spool"))
    yield found
    found.stop()


def test_a_request_is_released_only_once_its_started_line_is_on_the_driver(
    coordinator: Coordinator, tmp_path: Path
) -> None:
    writer = RelayWriter(coordinator.url, coordinator.token, CALL)

    async def task() -> None:
        # 40 requests start at once: group commit carries them in a few batches, not 40.
        async def one(i: int) -> None:
            await writer.started(Attempt(f"r{i}", 1.7e9, 1, 1))
            stored = _rows(tmp_path / "spool")
            assert f"r{i}" in stored and stored[f"r{i}"]["status_code"] is None
            writer.finished(_done(f"r{i}"))

        await asyncio.gather(*(one(i) for i in range(40)))
        await writer.drain()

    asyncio.run(task())
    rows = _rows(tmp_path / "spool")
    assert sorted(rows) == sorted(f"r{i}" for i in range(40))
    assert all(r["status_code"] == 200 and r["requester"] == "me" for r in rows.values())
    assert coordinator.collector.batches < 20, "no group commit: one POST per line"
    # The writer said it was done: its file is published for the committer to finish.
    assert [p.suffix for p in spool_files(tmp_path / "spool")] == [".jsonl"]


def _post(coordinator: Coordinator, body: bytes, sequence: int, token: str | None = None) -> int:
    request = urllib.request.Request(
        coordinator.url + "/usage",
        data=body,
        headers={
            "Authorization": f"Bearer {token or coordinator.token}",
            WRITER_HEADER: "w1",
            SEQUENCE_HEADER: str(sequence),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def test_a_batch_sent_twice_is_stored_once(coordinator: Coordinator, tmp_path: Path) -> None:
    first = header_line(CALL) + attempt_line(STARTED, Attempt("a", 1.7e9, 1, 1))
    assert _post(coordinator, first, 1) == 200
    assert _post(coordinator, first, 1) == 200  # the answer was lost; the executor retried
    assert _post(coordinator, attempt_line(FINISHED, _done("a")), 2) == 200
    assert _post(coordinator, attempt_line(FINISHED, _done("a")), 2) == 200
    coordinator.collector.close()
    (path,) = spool_files(tmp_path / "spool")
    assert path.read_bytes().count(b'"id":"a"') == 2  # one started, one finished line
    assert coordinator.collector.duplicates == 2


def test_the_coordinator_refuses_strangers_and_garbage(coordinator: Coordinator) -> None:
    line = header_line(CALL)
    assert _post(coordinator, line, 1, token="not-the-token") == 401
    assert _post(coordinator, b'{"k":"s","id":"x","t":1}\n', 1) == 400  # no header first
    assert _post(coordinator, line + b"not json\n", 1) == 400
    assert _post(coordinator, line[:-1], 1) == 400  # not whole lines
    assert coordinator.collector.batches == 0


def test_a_silent_writer_s_file_is_closed_and_a_late_line_opens_a_new_one(tmp_path: Path) -> None:
    collector = Collector(tmp_path)
    collector.receive(
        "w", 1, header_line(CALL) + attempt_line(STARTED, Attempt("a", 1, 1, 1)), close=False
    )
    assert collector.reap(idle_s=0.0) == 1  # its executor died, say: the committer may finish it
    assert [p.suffix for p in spool_files(tmp_path)] == [".jsonl"]
    collector.receive("w", 2, attempt_line(FINISHED, _done("a")), close=False)  # it was only slow
    collector.close()
    rows = _rows(tmp_path)
    assert rows["a"]["status_code"] == 200 and rows["a"]["requester"] == "me"
    with pytest.raises(BadBatchError):
        collector.receive("../etc", 1, header_line(CALL), close=False)


def test_with_the_driver_unreachable_nothing_is_sent_and_the_task_fails() -> None:
    sent: list[Request] = []

    def handler(request: Request) -> Response:
        sent.append(request)
        return Response(200, {}, b"{}")

    endpoint = Endpoint("ep", "databricks", "http://127.0.0.1:9", "llm/v1/chat", "ep")
    writer = RelayWriter("http://127.0.0.1:9", "t", CALL, deadline_s=0.5)  # nobody listens
    settings = EngineSettings(concurrency=2, policy=RetryPolicy(base_delay_s=0, max_delay_s=0))
    with (
        BatchEngine(
            endpoint,
            wire_for(endpoint, {}),
            settings,
            fail_fast=False,
            recorder=writer,
            transport=lambda _: MockTransport(handler),
        ) as engine,
        pytest.raises(UsageDeliveryError, match=r"aiquery\.usage\.spoolDir"),
    ):
        list(engine.map([["a", "b", "c"]]))
    assert sent == []


def test_rows_answered_without_a_request_reach_the_driver_too(
    coordinator: Coordinator, tmp_path: Path
) -> None:
    # A repeat of an input answered in an earlier batch is counted as the batch is sorted,
    # outside the engine's loop; the relay sends its line from the loop all the same.
    def handler(request: Request) -> Response:
        body = (
            b'{"id": "c", "object": "chat.completion", "model": "m", "choices": [{"index": 0, '
            b'"message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}], '
            b'"usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}'
        )
        return Response(200, {"Content-Type": "application/json"}, body)

    endpoint = Endpoint("ep", "databricks", "http://127.0.0.1:9", "llm/v1/chat", "ep")
    writer = RelayWriter(coordinator.url, coordinator.token, CALL)
    settings = EngineSettings(concurrency=2, deduplicate=True)
    with BatchEngine(
        endpoint,
        wire_for(endpoint, {}),
        settings,
        fail_fast=False,
        recorder=writer,
        transport=lambda _: MockTransport(handler),
    ) as engine:
        (first,) = engine.map([["a", "b"]])
        # The first batch's lines delivered: the relay's sender is idle, as between batches.
        engine._loop.run_until_complete(asyncio.sleep(0.5))
        (second,) = engine.map([["a", "b", "c"]])  # a and b: from the memo, no request
    assert [r.value for r in first + second] == ["ok"] * 5
    coordinator.collector.close()
    saved = [row for path in spool_files(tmp_path / "spool") for row in read_rows(path)[0].saved]
    assert len(_rows(tmp_path / "spool")) == 3 and sum(s["rows"] for s in saved) == 2


def test_a_task_that_hangs_up_mid_answer_leaves_no_traceback(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """A task killed during the exchange's held poll: the coordinator's late answer meets a
    closed connection, which is no error worth a traceback on the driver's console."""
    import http.client
    import json
    import socket
    import struct

    coordinator = Coordinator("127.0.0.1", 0, None)
    try:
        host, port = coordinator.url.removeprefix("http://").split(":")

        def body(claimant: str, hold_s: float) -> bytes:
            offer = {"exchange": "hangup", "claimant": claimant, "keys": ["k"], "hold_s": hold_s}
            return json.dumps(offer).encode()

        def offer(claimant: str) -> dict[str, list[str]]:
            connection = http.client.HTTPConnection(host, int(port), timeout=10)
            headers = {"Authorization": f"Bearer {coordinator.token}"}
            connection.request("POST", "/share", body(claimant, 0.0), headers)
            answer = json.loads(connection.getresponse().read())
            connection.close()
            return dict(answer)

        assert offer("a")["yours"] == ["k"]  # a holds the claim
        waiting = socket.create_connection((host, int(port)))  # b waits on it up to 1 s
        sent = body("b", 1.0)
        waiting.sendall(
            f"POST /share HTTP/1.1\r\nHost: x\r\nContent-Length: {len(sent)}\r\n"
            f"Authorization: Bearer {coordinator.token}\r\n\r\n".encode()
            + sent
        )
        time.sleep(0.2)
        waiting.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        waiting.close()  # ... but is killed first: a reset
        time.sleep(1.5)  # the held answer has met the closed connection
        assert offer("c")["wait"] == ["k"]  # still serving
    finally:
        coordinator.stop()
    assert "Traceback" not in capfd.readouterr().err
