"""De-duplication across a query's tasks, a task's side: an input another task already sends
is not sent again.

A task de-duplicates its own rows (`client.sending.Deduplicator`); what it would still send,
it first offers to its call site's exchange on the driver's coordinator (`POST /share`,
`aiquery.client.exchange`), once per input batch, and sends only the inputs that are its
own; rows whose input another task answered take that answer, and rows whose input another
task is sending wait for it (a long poll, `HOLD_S`).

Text answers are published as they arrive, those of a moment in one post (`publish_delay_s`:
a quarter of the endpoint's latency, from 0.1 to 1 s). Embeddings (cheap
requests, many per second, 4 KB or more each) are offered `light`: until the query shows
repeats the exchange does not claim them, so nothing is reported back; from then on they
are claimed, reported as answered, and their vectors published when the exchange wants
them. An embedding job without repeats moves no vector to the driver, and a repeat of an
input embedded (or in flight) before the first repeat showed is embedded again.

While a task holds claims, a thread beats every `HEARTBEAT_S`, even while Spark holds the
task away from its loop, so its claims stand.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import uuid
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib import request as urlrequest

import numpy as np

from aiquery.client.cache import Keys, decode_answer, encode_answer
from aiquery.client.exchange import SHARE_PATH, STALE_S, Offer
from aiquery.endpoints.registry import Endpoint
from aiquery.errors import AiQueryError
from aiquery.protocols.common import EMBEDDINGS
from aiquery.usage.relay import CoordinatorRoute

log = logging.getLogger("aiquery")

HEARTBEAT_S = STALE_S / 4  # a task holding claims is heard from at least this often
PUBLISH_DELAY_S = 0.1  # answers arriving within this share one post, at least,
PUBLISH_SHARE = 0.25  # or within this share of the endpoint's recent latency,
PUBLISH_MAX_S = 1.0  # and at most this
HOLD_S = 1.0  # how long the coordinator holds a waiting task's poll for news


@dataclass(frozen=True, slots=True)
class ShareSettings:
    """A call site's exchange, as bound for one query (picklable); "": not bound yet."""

    exchange: str


class ShareUnavailableError(AiQueryError):
    """The driver's exchange could not be reached."""


class SharedInputs:
    """One task's side of its call site's exchange. `offer` sorts a batch's inputs; `settle`
    publishes what this task's requests answered; `run` publishes, beats, and polls for
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
        self._light = endpoint.task == EMBEDDINGS
        self._key = Keys(endpoint, params)
        self._url, self._token = url, token  # for the heartbeat's thread
        self._stopped = threading.Event()
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
        by_key = {self._key(v): (k, v) for k, v in items}
        offer = await self._post(self._publishing, list(by_key), light=self._light)
        if offer.claimed:
            self._claimed.update((by_key[key][0], key) for key in offer.yours)
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
        latency_s: Callable[[], float] = lambda: 0.0,
    ) -> None:
        """`latency_s`: the endpoint's recent latency, which spaces the posts of answers."""
        threading.Thread(target=self._beat, name="aiquery-share-heartbeat", daemon=True).start()
        await asyncio.gather(self._publisher(latency_s), self._poller(answered, yours))

    def _beat(self) -> None:
        """Tell the exchange this task lives, from a thread: the task's loop does not run
        while Spark reads its input or takes its output, and its claims must stand."""
        body = {"exchange": self.settings.exchange, "claimant": self.claimant, "keys": []}
        beat = urlrequest.Request(
            self._url.rstrip("/") + SHARE_PATH,
            data=json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self._token}", "Content-Type": "application/json"},
            method="POST",
        )
        while not self._stopped.wait(HEARTBEAT_S):
            try:
                with urlrequest.urlopen(beat, timeout=HEARTBEAT_S) as answer:
                    answer.read()
            except OSError as e:  # the loop's own posts say so, if it lasts
                log.debug("aiquery: a heartbeat to the driver's exchange failed: %s", e)

    async def _publisher(self, latency_s: Callable[[], float]) -> None:
        while True:
            await self._news.wait()
            await asyncio.sleep(publish_delay_s(latency_s()))
            self._news.clear()
            if self._answers or self._answered or self._released:
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
        claimed = bool(reply.get("claimed", True))
        return Offer(found, yours, wait, list(reply.get("want", ())), claimed)

    async def close(self) -> None:
        """Publish what is answered and release the rest, as the task ends (failed or not)."""
        self._stopped.set()
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


def publish_delay_s(latency_s: float) -> float:
    """How long a task gathers its answers before it posts them to the exchange. A row of
    another task that waits for one of them waits this much longer, at most a quarter of
    what its own request would have taken. From a task of an LLM answering in 2 s, answers
    come a few at a time all along, and they were ten posts a second, each a request to
    parse and answer on the driver; now two."""
    return min(PUBLISH_MAX_S, max(PUBLISH_DELAY_S, PUBLISH_SHARE * latency_s))


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
