"""De-duplication across a query's tasks: an input another task already sends is not sent again.

A task de-duplicates its own rows (`client.sending.Deduplicator`); what it would still send,
it first offers to its call site's exchange on the driver's coordinator (`POST /share`),
once per input batch. For each input the exchange answers:
- found: another task's request answered it; the rows take that answer, with no request;
- yours: no other task has it; this task sends it and publishes the answer as it arrives
  (or releases it, if the request failed: an error may be transient, so another task tries);
- wait: another task is sending it; the rows wait, and the task asks again (a long poll)
  until the answer is found, or the claim is released and becomes this task's.

A claim lasts while its task is heard from: a task publishes at least every `HEARTBEAT_S`
while it holds claims, and a claim whose task was silent for `STALE_S` (an executor lost)
goes to the next task that asks, so a row never waits on a task that is gone; at worst
the input is sent twice. A task that ends, failed or not, releases what it still holds.

Text answers are published as they arrive. Vectors (embeddings: cheap requests, many per
second, 4 KB or more each) travel to the driver only once the query shows repeats across
its tasks: a task tells the exchange which of its claims are answered, and the exchange
asks for those answers once an input was offered a second time (by a task waiting for it,
or after its first answer; the exchange remembers the inputs it has seen, up to
`SEEN_MAX`). Before that, the claims are dropped, so an embedding job without repeats
moves no vector to the driver, and a repeat of an input embedded before the first repeat
showed is embedded again. The exchange keeps answers up to `EXCHANGE_BYTES` in all (least recently
used out first; an input whose answer was dropped is sent again), and forgets an exchange
unused for `IDLE_S`. The dry run counts with the same store (`dry`): an input another task
offered first is one that would not be sent.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from aiquery.client.cache import cache_key, decode_answer, encode_answer
from aiquery.endpoints.registry import Endpoint
from aiquery.errors import AiQueryError
from aiquery.usage.relay import CoordinatorRoute

SHARE_PATH = "/share"
HEARTBEAT_S = 5.0  # a task holding claims publishes at least this often
STALE_S = 60.0  # a claim of a task silent this long goes to the next task that asks
EXCHANGE_BYTES = 256 * 1024 * 1024  # answers the driver keeps, over every exchange
IDLE_S = 600.0  # an exchange unused this long is forgotten (its query is over)
SEEN_MAX = 1_000_000  # inputs an exchange remembers, until the first repeat (~60 MB at most)
PUBLISH_DELAY_S = 0.1  # answers arriving within this share one post
HOLD_S = 1.0  # how long the coordinator holds a waiting task's poll for news


@dataclass(frozen=True, slots=True)
class ShareSettings:
    """A call site's exchange, as bound for one query (picklable); "": not bound yet."""

    exchange: str


@dataclass(slots=True)
class _Exchange:
    claims: dict[str, str] = field(default_factory=dict)  # key -> claimant
    seen: set[int] = field(default_factory=set)  # hashes of the keys offered, until a repeat
    repeats: bool = False  # an input was offered twice: answers are worth publishing
    used: float = 0.0


@dataclass(frozen=True, slots=True)
class Offer:
    """The exchange's word on the inputs a task offered."""

    found: dict[str, str]  # key -> encoded answer
    yours: list[str]
    wait: list[str]
    want: list[str] = field(default_factory=list)  # answered claims to publish the answers of


class AnswerExchange:
    """The driver's exchanges, one per bound call site: claims, and the answers published.
    Thread-safe; a waiting poll blocks its (coordinator) thread for up to `hold_s`."""

    def __init__(self, max_bytes: int = EXCHANGE_BYTES, stale_s: float = STALE_S) -> None:
        self.max_bytes = max_bytes
        self.stale_s = stale_s
        self._changed = threading.Condition()
        self._exchanges: dict[str, _Exchange] = {}
        self._answers: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._bytes = 0
        self._heard: dict[str, float] = {}  # claimant -> when it last asked or published
        self._swept = time.monotonic()
        self.handed_out = 0  # answers given to a task other than the one that sent them

    def offer(
        self,
        exchange: str,
        claimant: str,
        keys: Sequence[str],
        *,
        answers: Mapping[str, str] | None = None,
        answered: Iterable[str] = (),
        released: Iterable[str] = (),
        hold_s: float = 0.0,
        dry: bool = False,
        done: bool = False,
    ) -> Offer:
        """Record `claimant`'s published `answers`, `answered` claims (whose answers are
        wanted once the query has repeats, else dropped) and `released` claims, then sort
        `keys`. With `hold_s`, wait that long at most for one of the keys to be answered or
        released. `dry`: claims never go stale (a dry run's tasks publish nothing)."""
        give_up = time.monotonic() + hold_s
        with self._changed:
            now = time.monotonic()
            self._sweep(now)
            found = self._exchanges.setdefault(exchange, _Exchange())
            found.used = now
            self._heard[claimant] = now
            changed = False
            for key, answer in (answers or {}).items():
                found.claims.pop(key, None)
                self._keep((exchange, key), answer)
                changed = True
            want = []
            for key in answered:
                if found.claims.get(key) != claimant:
                    continue
                if found.repeats:
                    want.append(key)  # the claim stands until its answer is here
                else:
                    del found.claims[key]
            for key in released:
                if found.claims.get(key) == claimant:
                    del found.claims[key]
                    changed = True
            if done:
                self._heard.pop(claimant, None)
            if changed:
                self._changed.notify_all()
            while True:
                offer = self._sort(exchange, found, claimant, keys, now, dry)
                left = give_up - time.monotonic()
                if not offer.wait or offer.found or offer.yours or left <= 0:
                    return replace(offer, want=want)
                self._changed.wait(left)
                now = self._heard[claimant] = time.monotonic()

    def _sort(
        self,
        exchange: str,
        found: _Exchange,
        claimant: str,
        keys: Sequence[str],
        now: float,
        dry: bool,
    ) -> Offer:
        offer = Offer({}, [], [])
        for key in keys:
            answer = self._answers.get((exchange, key))
            if answer is not None:
                self._answers.move_to_end((exchange, key))
                offer.found[key] = answer
                self.handed_out += 1
                continue
            owner = found.claims.get(key)
            gone = owner is not None and now - self._heard.get(owner, 0.0) > self.stale_s
            if owner is None or owner == claimant or (gone and not dry):
                if not found.repeats:
                    short = hash(key)  # 64 bits: a false repeat only publishes answers early
                    found.repeats = owner is None and short in found.seen
                    if len(found.seen) < SEEN_MAX:
                        found.seen.add(short)
                found.claims[key] = claimant
                offer.yours.append(key)
            else:
                found.repeats = True
                offer.wait.append(key)
        if found.repeats:
            found.seen.clear()  # what it was for is known
        return offer

    def _keep(self, where: tuple[str, str], answer: str) -> None:
        if where in self._answers:
            return
        self._answers[where] = answer
        self._bytes += _size(where, answer)
        while self._bytes > self.max_bytes and self._answers:
            dropped, text = self._answers.popitem(last=False)
            self._bytes -= _size(dropped, text)

    def _sweep(self, now: float) -> None:
        """Forget exchanges unused for `IDLE_S`, their answers and silent claimants."""
        if now - self._swept < 60.0:
            return
        self._swept = now
        idle = {e for e, x in self._exchanges.items() if now - x.used > IDLE_S}
        for name in idle:
            del self._exchanges[name]
        if idle:
            for where in [w for w in self._answers if w[0] in idle]:
                self._bytes -= _size(where, self._answers.pop(where))
        for claimant in [c for c, t in self._heard.items() if now - t > IDLE_S]:
            del self._heard[claimant]

    @property
    def bytes(self) -> int:
        with self._changed:
            return self._bytes


def _size(where: tuple[str, str], answer: str) -> int:
    return len(where[0]) + len(where[1]) + len(answer) + 120


def offer_from_json(exchanges: AnswerExchange, asked: Mapping[str, Any]) -> dict[str, Any]:
    """The coordinator's `POST /share`: a task's JSON body in, the exchange's word out."""
    offer = exchanges.offer(
        str(asked["exchange"]),
        str(asked["claimant"]),
        [str(k) for k in asked.get("keys", ())],
        answers={str(k): str(v) for k, v in dict(asked.get("answers") or {}).items()},
        answered=[str(k) for k in asked.get("answered", ())],
        released=[str(k) for k in asked.get("released", ())],
        hold_s=min(float(asked.get("hold_s", 0.0)), 10.0),
        dry=bool(asked.get("dry", False)),
        done=bool(asked.get("done", False)),
    )
    return {
        "found": offer.found,
        "yours": offer.yours,
        "wait": offer.wait,
        "want": offer.want,
    }


class ShareUnavailableError(AiQueryError):
    """The driver's exchange could not be reached."""


class SharedInputs:
    """One task's side of its call site's exchange. `offer` sorts a batch's inputs; `settle`
    publishes what this task's requests answered; `run` keeps claims alive and polls for
    the inputs its rows wait on, calling `answered(key, value)` when another task's answer
    arrives and `yours(key, value)` when a claim comes back to this task to send."""

    def __init__(
        self,
        url: str,
        token: str,
        settings: ShareSettings,
        endpoint: Endpoint,
        params: Mapping[str, Any],
    ) -> None:
        self.settings = settings
        self.claimant = uuid.uuid4().hex
        self._endpoint = endpoint
        self._params = dict(params)
        self._publishing, self._polling = (
            CoordinatorRoute(
                url,
                SHARE_PATH,
                token,
                what="answers shared between the query's tasks",
                error=ShareUnavailableError,
                timeout_s=60.0,
            )
            for _ in range(2)
        )
        self._claimed: dict[Hashable, str] = {}  # dedup key -> exchange key, sent by this task
        self._parked: dict[str, tuple[Hashable, Any]] = {}  # waited for: -> (dedup key, input)
        self._answers: dict[str, str] = {}  # to publish
        self._answered: dict[str, Any] = {}  # answers to tell of (published if wanted)
        self._released: list[str] = []
        self._news = asyncio.Event()  # something to publish
        self._waiting = asyncio.Event()  # something parked

    async def offer(
        self, items: Sequence[tuple[Hashable, Any]]
    ) -> tuple[dict[Hashable, Any], set[Hashable]]:
        """For (dedup key, input) pairs this task would send: the answers another task's
        requests gave, and the keys to wait for; the rest are this task's to send."""
        by_key = {cache_key(self._endpoint, self._params, v): (k, v) for k, v in items}
        offer = await self._post(self._publishing, list(by_key))
        for key in offer.yours:
            self._claimed[by_key[key][0]] = key
        for key in offer.wait:
            self._parked[key] = by_key[key]
        if offer.wait:
            self._waiting.set()
        found = {by_key[k][0]: decode_answer(a) for k, a in offer.found.items()}
        return found, {by_key[k][0] for k in offer.wait}

    def settle(self, key: Hashable, value: Any, ok: bool) -> None:
        """This task's request for `key` is done: publish its answer, or release it."""
        claimed = self._claimed.pop(key, None)
        if claimed is None:
            return
        if ok and isinstance(value, np.ndarray):
            self._answered[claimed] = value  # published if the exchange wants it
        elif ok:
            self._answers[claimed] = encode_answer(value)
        else:
            self._released.append(claimed)
        self._news.set()

    def forget_parked(self) -> None:
        """The task failed: its rows no longer wait."""
        self._parked.clear()

    async def run(
        self,
        answered: Callable[[Hashable, Any], None],
        yours: Callable[[Hashable, Any], None],
    ) -> None:
        await asyncio.gather(self._publisher(), self._poller(answered, yours))

    async def _publisher(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._news.wait(), HEARTBEAT_S)
                await asyncio.sleep(PUBLISH_DELAY_S)
            except TimeoutError:
                pass  # a heartbeat, if claims are held
            self._news.clear()
            if self._answers or self._answered or self._released or self._claimed:
                await self._publish()

    async def _poller(
        self,
        answered: Callable[[Hashable, Any], None],
        yours: Callable[[Hashable, Any], None],
    ) -> None:
        while True:
            if not self._parked:
                self._waiting.clear()
                await self._waiting.wait()
                continue
            offer = await self._post(self._polling, list(self._parked), hold_s=HOLD_S)
            for key, answer in offer.found.items():
                if (parked := self._parked.pop(key, None)) is not None:
                    answered(parked[0], decode_answer(answer))
            for key in offer.yours:
                if (parked := self._parked.pop(key, None)) is not None:
                    self._claimed[parked[0]] = key
                    yours(*parked)

    async def _publish(self, *, done: bool = False) -> None:
        answers, answered, released = self._answers, self._answered, self._released
        self._answers, self._answered, self._released = {}, {}, []
        offer = await self._post(
            self._publishing,
            [],
            answers=answers,
            answered=list(answered),
            released=released,
            done=done,
        )
        for key in offer.want:
            self._answers[key] = encode_answer(answered[key])
        if offer.want:
            self._news.set()

    async def _post(self, route: CoordinatorRoute, keys: list[str], **more: Any) -> Offer:
        body = {"exchange": self.settings.exchange, "claimant": self.claimant, "keys": keys}
        reply = await route.post({**body, **more})
        found, yours, wait = dict(reply["found"]), list(reply["yours"]), list(reply["wait"])
        return Offer(found, yours, wait, list(reply.get("want", ())))

    async def close(self) -> None:
        """Publish what is answered and release the rest, as the task ends (failed or not)."""
        try:
            await self._publish()
            if self._answers:  # wanted
                await self._publish()
            self._released.extend(self._claimed.values())
            self._claimed.clear()
            await self._publish(done=True)
        finally:
            await self._publishing.close()
            await self._polling.close()


async def count_shared(
    url: str, token: str, exchange: str, claimant: str, keys: Sequence[str]
) -> set[str]:
    """The dry run's question: which of `keys` another task offered first."""
    route = CoordinatorRoute(
        url,
        SHARE_PATH,
        token,
        what="the dry run's count of inputs shared between tasks",
        error=ShareUnavailableError,
    )
    try:
        body = {"exchange": exchange, "claimant": claimant, "keys": list(keys), "dry": True}
        reply = await route.post(body)
    finally:
        await route.close()
    return set(reply["wait"])
