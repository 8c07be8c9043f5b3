"""The driver's answer exchange: who sends an input, who waits for it, and what it keeps."""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import pytest

from aiquery.client import exchange as exchange_module
from aiquery.client.exchange import AnswerExchange, Offer, offer_from_json


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
    nothing: dict[str, object] = {"found": {}, "yours": [], "wait": [], "want": [], "claimed": True}
    assert offer_from_json(exchange, asked) == {**nothing, "yours": ["k"]}
    answer = offer_from_json(exchange, {**asked, "keys": [], "answers": {"k": "x"}})
    assert answer == nothing
    assert offer_from_json(exchange, {**asked, "claimant": "b"})["found"] == {"k": "x"}


def test_light_inputs_are_not_claimed_until_the_query_shows_repeats() -> None:
    exchange = AnswerExchange()
    first = exchange.offer("q", "a", ["k1", "k2"], light=True)
    assert first.yours == [] and not first.claimed  # all the task's to send, none claimed
    assert exchange._exchanges["q"].claims == {}  # only their hashes are remembered
    # The first repeat: its first request may be in flight or done, unknown: sent again.
    repeat = exchange.offer("q", "b", ["k1"], light=True)
    assert repeat.yours == ["k1"] and repeat.claimed
    # From now on light inputs are claimed like any other, and their answers wanted.
    assert exchange.offer("q", "a", ["k3"], light=True).claimed
    assert exchange.offer("q", "b", ["k3"], light=True).wait == ["k3"]
    assert exchange.offer("q", "a", [], answered=["k3"]).want == ["k3"]


def test_the_bulk_sort_agrees_with_the_one_by_one_sort(monkeypatch: pytest.MonkeyPatch) -> None:
    """While the query shows no repeats, offers of inputs never seen are sorted in bulk: a
    random mix of offers, answers, releases and repeats, in exchanges that show their first
    repeat early, late or never (past `SEEN_MAX`), gets the same word either way."""
    monkeypatch.setattr(exchange_module, "SEEN_BUFFER", 7)  # through both kinds of `seen`
    monkeypatch.setattr(exchange_module, "SEEN_MAX", 300)
    # How often a key repeats, and of the keys offered after how many: q1's repeats are of
    # keys offered past `SEEN_MAX`, where only the claims and the answers show them.
    repeating = {"q0": (0.0, 0), "q1": (0.05, 400), "q2": (0.01, 0), "q3": (0.1, 0)}

    def script(exchange: AnswerExchange) -> list[tuple[object, ...]]:
        rng = random.Random(5)
        held: dict[tuple[str, str], list[str]] = {}  # a task tells only of its own claims
        offered: dict[str, list[str]] = {name: [] for name in repeating}
        words: list[tuple[object, ...]] = []
        for step in range(2_000):
            name, claimant = rng.choice(sorted(repeating)), rng.choice("abc")
            pool, (rate, after) = offered[name], repeating[name]
            keys = [
                rng.choice(pool[after:])
                if len(pool) > after and rng.random() < rate
                else f"k{step}.{i}"
                for i in range(rng.randrange(1, 6))
            ]
            pool += keys
            mine = held.setdefault((name, claimant), [])
            done = [mine.pop(rng.randrange(len(mine))) for _ in range(min(len(mine), 3))]
            offer = exchange.offer(
                name,
                claimant,
                keys,
                answered=done[:1],
                answers={k: "x" for k in done[1:2]},
                released=done[2:],
            )
            mine += offer.yours
            words.append((offer.found, offer.yours, offer.wait, offer.want))
        for name in sorted(repeating):
            found = exchange._exchanges[name]
            words.append((name, found.repeats, len(found.seen), sorted(found.claims.items())))
        return words

    fresh = AnswerExchange._fresh
    bulk_sorted = []

    def counted(*args: Any) -> Offer | None:
        bulk_sorted.append(offer := fresh(*args))
        return offer

    monkeypatch.setattr(AnswerExchange, "_fresh", counted)
    bulk = script(AnswerExchange())
    assert sum(o is not None for o in bulk_sorted) > 500  # the bulk sort was exercised
    assert bulk[-4][1] is False and bulk[-1][1] is True  # q0 never repeated, q3 did
    monkeypatch.setattr(AnswerExchange, "_fresh", lambda *_: None)
    assert script(AnswerExchange()) == bulk
