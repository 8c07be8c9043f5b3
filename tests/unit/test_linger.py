"""The engine's lingering selector, on real sockets; the linger's sleep is injected, and
answers "arrive" during it (nothing really waits)."""

from __future__ import annotations

import asyncio
import selectors
import socket
from collections.abc import Iterator

import pytest

from aiquery.client.linger import LINGER_MAX_S, LingeringSelector, linger_s


@pytest.fixture
def pairs() -> Iterator[list[tuple[socket.socket, socket.socket]]]:
    made = [socket.socketpair() for _ in range(3)]
    yield made
    for a, b in made:
        a.close()
        b.close()


def watching(
    pairs: list[tuple[socket.socket, socket.socket]], latency_s: float
) -> tuple[LingeringSelector, list[float]]:
    """A selector reading every pair's first end; its linger sends on the other pairs."""
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        for _, writer in pairs[1:]:  # answers that arrive while it lingers
            writer.send(b"x")

    selector = LingeringSelector(lambda: latency_s, sleep=sleep)
    for i, (reader, _) in enumerate(pairs):
        selector.register(reader, selectors.EVENT_READ, i)
    return selector, slept


def test_the_linger_is_a_share_of_the_latency_within_bounds() -> None:
    assert linger_s(0.0) == linger_s(0.1) == 0.0  # fast endpoints: answers come in waves
    assert linger_s(0.5) == pytest.approx(0.005)
    assert linger_s(2.0) == pytest.approx(0.02)
    assert linger_s(60.0) == LINGER_MAX_S


@pytest.mark.parametrize(
    ("latency_s", "taken", "lingered"),
    [
        (2.0, [0, 1, 2], [0.02]),  # one select takes every answer arrived meanwhile
        (0.05, [0], []),  # a fast endpoint is served at once
    ],
)
def test_after_the_first_answer(
    pairs: list[tuple[socket.socket, socket.socket]],
    latency_s: float,
    taken: list[int],
    lingered: list[float],
) -> None:
    selector, slept = watching(pairs, latency_s)
    pairs[0][1].send(b"x")
    with selector:
        ready = selector.select(None)
    assert sorted(key.data for key, _ in ready) == taken
    assert slept == [pytest.approx(s) for s in lingered]


def test_it_never_lingers_with_work_queued_nor_past_the_next_timer(
    pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    selector, slept = watching(pairs, latency_s=2.0)
    with selector:
        assert selector.select(0.001) == []  # nothing ready: a timer's wake-up, no linger
        pairs[0][1].send(b"x")
        assert [key.data for key, _ in selector.select(0)] == [0]  # callbacks are queued
        assert slept == []
        assert len(selector.select(0.004)) == 3  # a timer is due in 4 ms
    assert slept == [pytest.approx(0.004)]


def test_an_event_loop_runs_on_it() -> None:
    """Messages go both ways through the loop, each turn lingering 20 ms after its first event."""
    loop = asyncio.SelectorEventLoop(LingeringSelector(lambda: 2.0))

    async def ping_pong(rounds: int) -> list[bytes]:
        left, right = socket.socketpair()
        (left_in, left_out), (right_in, right_out) = [
            await asyncio.open_connection(sock=s) for s in (left, right)
        ]
        heard = []
        for i in range(rounds):
            left_out.write(b"ping %d\n" % i)
            heard.append(await right_in.readline())
            right_out.write(b"pong\n")
            heard.append(await left_in.readline())
        left_out.close()
        right_out.close()
        return heard

    try:
        heard = loop.run_until_complete(asyncio.wait_for(ping_pong(3), 5.0))
    finally:
        loop.close()
    assert heard == [b"ping 0\n", b"pong\n", b"ping 1\n", b"pong\n", b"ping 2\n", b"pong\n"]
