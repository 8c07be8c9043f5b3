"""The driver's answer exchange: who sends an input, who waits for it, and what it keeps."""

from __future__ import annotations

import threading
import time

import pytest

from aiquery.client import exchange as exchange_module
from aiquery.client.exchange import AnswerExchange, offer_from_json


def test_the_first_task_to_offer_an_input_sends_it_and_the_others_wait_for_its_answer() -> None:
    exchange = AnswerExchange()
    first = exchange.offer("q", "a", ["k1", "k2"])
    assert first.yours == ["k1", "k2"] and not first.wait and not first.found
    second = exchange.offer("q", "b", ["k2", "k3"])
    assert second.wait == ["k2"] and second.yours == ["k3"]
    exchange.offer("q", "a", [], answers={"k2": '{"v":"two"}'})
    assert exchange.offer("q", "b", ["k2"]).found == {"k2": '{"v":"two"}'}
    assert exchange.offer("q", "a", ["k1"]).yours == ["k1"]  # its own claim, offered again


def test_answers_are_wanted_only_once_the_query_shows_repeats() -> None:
    exchange = AnswerExchange()
    exchange.offer("q", "a", ["k1", "k2"])
    # No input was offered twice yet: an answered claim is dropped, its answer not wanted.
    assert exchange.offer("q", "a", [], answered=["k1"]).want == []
    assert exchange.offer("q", "b", ["k1"]).yours == ["k1"]  # the first repeat: sent again
    # From now on answers are wanted, and the claim stands until the answer is there.
    assert exchange.offer("q", "a", [], answered=["k2"]).want == ["k2"]
    assert exchange.offer("q", "c", ["k2"]).wait == ["k2"]
    exchange.offer("q", "a", [], answers={"k2": "x"})
    assert exchange.offer("q", "c", ["k2"]).found == {"k2": "x"}


def test_a_repeat_is_seen_however_long_ago_its_first_offer_was(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The keys seen move from a set to a sorted array as they pile up: a repeat of one
    offered long before is found in either."""
    monkeypatch.setattr(exchange_module, "SEEN_BUFFER", 3)
    exchange = AnswerExchange()
    for n in range(10):  # one task sends ten inputs, dropping each answer: no repeat yet
        exchange.offer("q", "a", [f"k{n}"])
        assert exchange.offer("q", "a", [], answered=[f"k{n}"]).want == []
    assert len(exchange._exchanges["q"].seen) == 10
    assert exchange.offer("q", "b", ["new", "k1"]).yours == ["new", "k1"]  # k1: a repeat
    assert exchange.offer("q", "b", [], answered=["new"]).want == ["new"]


def test_a_task_waiting_for_an_input_makes_its_answer_wanted() -> None:
    exchange = AnswerExchange()
    exchange.offer("q", "a", ["k"])
    assert exchange.offer("q", "b", ["k"]).wait == ["k"]
    assert exchange.offer("q", "a", [], answered=["k"]).want == ["k"]


def test_exchanges_are_separate() -> None:
    exchange = AnswerExchange()
    exchange.offer("q1", "a", ["k"], answers={})
    exchange.offer("q1", "a", [], answers={"k": "x"})
    assert exchange.offer("q2", "b", ["k"]).yours == ["k"]


def test_a_released_claim_goes_to_the_next_task_that_asks() -> None:
    exchange = AnswerExchange()
    exchange.offer("q", "a", ["k"])
    assert exchange.offer("q", "b", ["k"]).wait == ["k"]
    exchange.offer("q", "b", [], released=["k"])  # not b's to release: nothing changes
    assert exchange.offer("q", "c", ["k"]).wait == ["k"]
    exchange.offer("q", "a", [], released=["k"])  # a's request failed
    assert exchange.offer("q", "b", ["k"]).yours == ["k"]


def test_the_claim_of_a_task_silent_past_the_stale_time_is_taken_over() -> None:
    exchange = AnswerExchange(stale_s=0.2)
    exchange.offer("q", "gone", ["k"])
    assert exchange.offer("q", "b", ["k"]).wait == ["k"]
    time.sleep(0.3)
    assert exchange.offer("q", "b", ["k"]).yours == ["k"]
    assert exchange.offer("q", "gone", ["k"]).wait == ["k"]  # back, but b has it now


def test_a_task_that_keeps_publishing_keeps_its_claims() -> None:
    exchange = AnswerExchange(stale_s=0.3)
    exchange.offer("q", "a", ["k"])
    for _ in range(4):
        time.sleep(0.1)
        exchange.offer("q", "a", [])  # the heartbeat
        assert exchange.offer("q", "b", ["k"]).wait == ["k"]


def test_a_dry_run_claim_never_goes_stale() -> None:
    exchange = AnswerExchange(stale_s=0.05)
    exchange.offer("dry", "p0", ["k"], dry=True)
    time.sleep(0.1)
    assert exchange.offer("dry", "p1", ["k", "j"], dry=True).wait == ["k"]


def test_a_held_poll_returns_the_answer_published_meanwhile() -> None:
    exchange = AnswerExchange()
    exchange.offer("q", "a", ["k"])
    timer = threading.Timer(0.2, lambda: exchange.offer("q", "a", [], answers={"k": "x"}))
    timer.start()
    try:
        polled = exchange.offer("q", "b", ["k"], hold_s=30.0)
    finally:
        timer.join()
    assert polled.found == {"k": "x"} and not polled.wait


def test_a_held_poll_with_nothing_new_ends_still_waiting() -> None:
    exchange = AnswerExchange()
    exchange.offer("q", "a", ["k"])
    assert exchange.offer("q", "b", ["k"], hold_s=0.1).wait == ["k"]


def test_answers_are_kept_within_the_byte_bound_oldest_out_first() -> None:
    exchange = AnswerExchange(max_bytes=2_000)
    for i in range(40):
        exchange.offer("q", "a", [f"k{i}"])
        exchange.offer("q", "a", [], answers={f"k{i}": "x" * 50})
    assert exchange.bytes <= 2_000
    found = exchange.offer("q", "b", [f"k{i}" for i in range(40)])
    assert set(found.found) == {f"k{i}" for i in range(40 - len(found.found), 40)}
    assert 0 < len(found.found) < 40
    assert len(found.yours) == 40 - len(found.found)  # dropped answers are sent again


def test_the_json_route_reads_and_answers_the_offer() -> None:
    exchange = AnswerExchange()
    asked = {"exchange": "q", "claimant": "a", "keys": ["k"]}
    nothing: dict[str, object] = {"found": {}, "yours": [], "wait": [], "want": []}
    assert offer_from_json(exchange, asked) == {**nothing, "yours": ["k"]}
    answer = offer_from_json(exchange, {**asked, "keys": [], "answers": {"k": "x"}})
    assert answer == nothing
    assert offer_from_json(exchange, {**asked, "claimant": "b"})["found"] == {"k": "x"}
