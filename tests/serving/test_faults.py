"""The emulator's fault and capacity knobs, observed by a real client over HTTP."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from aiquery.serving.control import EmulatorControl
from aiquery.serving.server import EmulatorServer

pytestmark = pytest.mark.serving

PATH = "/serving-endpoints/databricks-gpt-5-4/invocations"
CHAT = {"messages": [{"role": "user", "content": "hello there"}]}


def call(server: EmulatorServer, timeout: float = 10) -> httpx.Response:
    return httpx.post(
        server.url + PATH,
        json=CHAT,
        headers={"Authorization": f"Bearer {server.token}"},
        timeout=timeout,
    )


async def call_many(server: EmulatorServer, n: int) -> list[int]:
    async with httpx.AsyncClient(
        headers={"Authorization": f"Bearer {server.token}"}, timeout=10
    ) as client:
        responses = await asyncio.gather(
            *(client.post(server.url + PATH, json=CHAT) for _ in range(n))
        )
    return [r.status_code for r in responses]


def test_requests_per_minute_limit_answers_429_with_retry_after(
    emulator: EmulatorServer, control: EmulatorControl
) -> None:
    control.set_faults("databricks-gpt-5-4", requests_per_minute=60)  # 1/s, burst of 1
    assert call(emulator).status_code == 200
    refused = call(emulator)
    assert refused.status_code == 429
    assert refused.json()["error_code"] == "REQUEST_LIMIT_EXCEEDED"
    assert "databricks-gpt-5-4" in refused.json()["message"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 2
    assert 0 < int(refused.headers["retry-after-ms"]) <= 1000
    # Other endpoints keep their own budget.
    other = httpx.post(
        emulator.url + "/serving-endpoints/databricks-gpt-5/invocations",
        json=CHAT,
        headers={"Authorization": f"Bearer {emulator.token}"},
    )
    assert other.status_code == 200


def test_tokens_per_minute_limit_answers_429(
    emulator: EmulatorServer, control: EmulatorControl
) -> None:
    control.set_faults("databricks-gpt-5-4", tokens_per_minute=120)  # 2 tokens/s
    statuses = [call(emulator).status_code for _ in range(3)]
    assert statuses[0] == 200
    assert 429 in statuses
    assert "tokens per minute" in call(emulator).json()["message"]


def test_max_concurrency_rejects_the_overflow(
    emulator: EmulatorServer, control: EmulatorControl
) -> None:
    control.set_faults("databricks-gpt-5-4", max_concurrency=2, latency_ms=300)
    statuses = asyncio.run(call_many(emulator, 5))
    assert sorted(statuses) == [200, 200, 429, 429, 429]


def test_max_concurrency_can_queue_instead(
    emulator: EmulatorServer, control: EmulatorControl
) -> None:
    control.set_faults("databricks-gpt-5-4", max_concurrency=2, latency_ms=50, overflow="queue")
    assert asyncio.run(call_many(emulator, 6)) == [200] * 6


@pytest.mark.parametrize(
    ("knob", "status", "code"),
    [("error_rate_500", 500, "INTERNAL_ERROR"), ("error_rate_503", 503, "TEMPORARILY_UNAVAILABLE")],
)
def test_error_rates_inject_server_errors(
    emulator: EmulatorServer, control: EmulatorControl, knob: str, status: int, code: str
) -> None:
    control.set_faults("databricks-gpt-5-4", **{knob: 1.0})
    response = call(emulator)
    assert response.status_code == status
    assert response.json()["error_code"] == code


def test_partial_error_rate_is_seeded_and_roughly_right(
    emulator: EmulatorServer, control: EmulatorControl
) -> None:
    control.set_faults("databricks-gpt-5-4", error_rate_503=0.3, seed=7)
    first = asyncio.run(call_many(emulator, 200))
    control.set_faults("databricks-gpt-5-4", error_rate_503=0.3, seed=8)
    control.set_faults("databricks-gpt-5-4", seed=7)  # a fresh limiter with the same seed
    second = asyncio.run(call_many(emulator, 200))
    assert 30 <= first.count(503) <= 90
    assert sorted(first) == sorted(second)


def test_malformed_bodies_are_truncated_json(
    emulator: EmulatorServer, control: EmulatorControl
) -> None:
    control.set_faults("databricks-gpt-5-4", malformed_rate=1.0)
    response = call(emulator)
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.text)


def test_dropped_connections_get_no_answer(
    emulator: EmulatorServer, control: EmulatorControl
) -> None:
    control.set_faults("databricks-gpt-5-4", drop_rate=1.0)
    with pytest.raises(httpx.TransportError):
        call(emulator)
    assert [r["status"] for r in control.requests()] == ["dropped"]
    control.set_faults("databricks-gpt-5-4", drop_rate=0.0)
    assert call(emulator).status_code == 200  # the server is still fine


def test_hanging_requests_time_out_the_client(
    emulator: EmulatorServer, control: EmulatorControl
) -> None:
    control.set_faults("databricks-gpt-5-4", hang_rate=1.0, hang_seconds=5)
    with pytest.raises(httpx.ReadTimeout):
        call(emulator, timeout=0.3)
    assert [r["status"] for r in control.requests()] == ["hung"]


def test_a_hang_that_ends_answers_504(emulator: EmulatorServer, control: EmulatorControl) -> None:
    control.set_faults("databricks-gpt-5-4", hang_rate=1.0, hang_seconds=0.05)
    response = call(emulator)
    assert response.status_code == 504
    assert response.json()["error_code"] == "DEADLINE_EXCEEDED"


def test_request_log_counts_what_the_server_received(
    emulator: EmulatorServer, control: EmulatorControl
) -> None:
    control.set_faults("databricks-gpt-5-4", requests_per_minute=60)
    statuses = [call(emulator).status_code for _ in range(4)]
    stats = control.stats()["databricks-gpt-5-4"]
    assert stats["requests"] == 4
    assert stats["statuses"] == {"200": statuses.count(200), "429": statuses.count(429)}
    rows = control.requests("databricks-gpt-5-4")
    assert len({r["request_id"] for r in rows}) == 4
    assert stats["input_tokens"] == sum(r["input_tokens"] for r in rows) > 0


def test_deleted_endpoint_answers_404(emulator: EmulatorServer, control: EmulatorControl) -> None:
    control.delete_endpoint("databricks-gpt-5-4")
    assert call(emulator).status_code == 404


def test_bad_fault_settings_are_refused_with_the_valid_names(emulator: EmulatorServer) -> None:
    response = httpx.patch(
        emulator.url + "/admin/faults",
        json={"latency": 5},
        headers={"Authorization": f"Bearer {emulator.admin_token}"},
    )
    assert response.status_code == 400
    assert "latency_ms" in response.json()["error"]


def test_admin_routes_need_the_admin_token(emulator: EmulatorServer) -> None:
    for token in (None, emulator.token, "wrong"):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        assert httpx.get(emulator.url + "/admin/stats", headers=headers).status_code == 401


@pytest.mark.parametrize("turn_s, turns", [(0.0, 8), (60.0, 2)])
def test_answers_due_together_take_a_loop_turn_each_when_they_are_expensive(
    emulator: EmulatorServer,
    control: EmulatorControl,
    monkeypatch: pytest.MonkeyPatch,
    turn_s: float,
    turns: int,
) -> None:
    """The emulator reads new requests between expensive answers: when many are due at once
    (their latency passed while it was busy), each answer that takes over `TURN_S` ends the
    loop's turn, so a burst does not keep the requests that arrive meanwhile unread; cheaper
    answers share a turn (the busy first one, then the seven due behind it)."""
    from aiquery.serving import pipeline

    monkeypatch.setattr(pipeline, "TURN_S", turn_s)
    computed_in: list[int] = []
    turn = 0
    ticking = True

    def tick() -> None:  # runs once per loop turn of the emulator
        nonlocal turn
        turn += 1
        if ticking:
            asyncio.get_running_loop().call_soon(tick)

    real_answer = pipeline.answer

    def answer(*args: object) -> pipeline.Answer:
        computed_in.append(turn)
        if len(computed_in) == 1:
            time.sleep(0.5)  # busy: every other request's 200 ms latency passes meanwhile
        return real_answer(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(pipeline, "answer", answer)
    control.set_faults(latency_ms=200)  # every request is read before the first is due
    emulator.call(tick)
    try:
        statuses = asyncio.run(call_many(emulator, 8))
    finally:
        ticking = False
    assert statuses == [200] * 8
    assert len(computed_in) == 8 and len(set(computed_in)) == turns, computed_in
