"""The driver's side of de-duplication across a query's tasks: one exchange per bound call
site, served by the coordinator (`POST /share`; the tasks' side is `aiquery.client.sharing`).

For each input a task offers, the exchange answers:
- found: another task's request answered it; the rows take that answer, with no request;
- yours: no other task has it; this task sends it and publishes the answer as it arrives
  (or releases it, if the request failed: an error may be transient, so another task tries);
- wait: another task is sending it; the rows wait, and the task asks again (a long poll)
  until the answer is found, or the claim is released and becomes this task's.

A claim lasts while its task is heard from (a task beats every few seconds while it holds
claims): a claim whose task was silent for `STALE_S` (an executor lost) goes to the next
task that asks, so a row never waits long on a task that is gone; at worst the input is
sent twice. A task that ends, failed or not, releases what it still holds.

Answers a task only reports as answered (vectors) are wanted once the query shows
repeats: an input offered a second time, by a task waiting for it or after its first
answer (the exchange remembers the inputs it has seen, up to `SEEN_MAX`, until then).
Such cheap inputs (embeddings, `light` offers) are not even claimed until then: the
exchange only remembers their 64-bit hashes, and the task reports nothing back. The first
repeat is sent again, and so is a repeat of an input still in flight at that moment.
The exchange keeps answers up to `EXCHANGE_BYTES` in all (least recently used out first;
an input whose answer was dropped is sent again) and forgets an exchange unused for
`IDLE_S`. The dry run counts with the same store (`dry`): an input another task offered
first is one that would not be sent.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

SHARE_PATH = "/share"
STALE_S = 10.0  # a claim of a task silent this long (4 heartbeats) goes to the next task that asks
EXCHANGE_BYTES = 64 * 1024 * 1024  # answers the driver keeps, over every exchange
IDLE_S = 600.0  # an exchange unused this long is forgotten (its query is over)
SEEN_MAX = 1_000_000  # inputs an exchange remembers, until the first repeat (8 MB at most)
SEEN_BUFFER = 65_536  # of those, the newest kept in a set before they join the sorted array


class _Seen:
    """The hashes of the keys an exchange was offered, 8 bytes each: a sorted array, and
    the newest in a set until there are `SEEN_BUFFER` of them. (A set of Python ints took
    ~64 bytes a key: at 1,000,000 keys, 60 MB of the driver.)"""

    def __init__(self) -> None:
        self._sorted = np.empty(0, np.int64)
        self._new: set[int] = set()

    def __len__(self) -> int:
        return len(self._sorted) + len(self._new)

    def among(self, shorts: Sequence[int]) -> list[bool]:
        """Whether each of `shorts` was added before now (one search for them all)."""
        if not len(self._sorted):
            return [short in self._new for short in shorts]
        values = np.fromiter(shorts, np.int64, len(shorts))
        at = np.searchsorted(self._sorted, values).clip(max=len(self._sorted) - 1)
        older = (self._sorted[at] == values).tolist()
        return [old or short in self._new for old, short in zip(older, shorts, strict=True)]

    def add(self, short: int) -> None:
        self._new.add(short)
        self._settle()

    def extend(self, shorts: Iterable[int]) -> None:
        self._new.update(shorts)
        self._settle()

    def _settle(self) -> None:
        if len(self._new) >= SEEN_BUFFER:
            new = np.sort(np.fromiter(self._new, np.int64, len(self._new)))
            self._sorted = np.insert(self._sorted, np.searchsorted(self._sorted, new), new)
            self._new.clear()

    def clear(self) -> None:
        self._sorted = np.empty(0, np.int64)
        self._new.clear()


@dataclass(slots=True)
class _Exchange:
    claims: dict[str, str] = field(default_factory=dict)  # key -> claimant
    seen: _Seen = field(default_factory=_Seen)  # the keys offered, until a repeat
    repeats: bool = False  # an input was offered twice: answers are worth publishing
    used: float = 0.0


@dataclass(frozen=True, slots=True)
class Offer:
    """The exchange's word on the inputs a task offered."""

    found: dict[str, str]  # key -> encoded answer
    yours: list[str]  # claimed for the task to send (an unclaimed offer lists none)
    wait: list[str]
    want: list[str] = field(default_factory=list)  # answered claims to publish the answers of
    claimed: bool = True  # `yours` are claimed: the task says when they are answered


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
        light: bool = False,
    ) -> Offer:
        """Record `claimant`'s published `answers`, `answered` claims (whose answers are
        wanted once the query has repeats, else dropped) and `released` claims, then sort
        `keys`. With `hold_s`, wait that long at most for one of the keys to be answered or
        released. `dry`: claims never go stale (a dry run's tasks publish nothing). `light`:
        cheap inputs, not claimed while the query shows no repeats."""
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
            if not found.repeats and (fresh := self._fresh(exchange, found, claimant, keys, light)):
                return replace(fresh, want=want)
            while True:
                offer = self._sort(exchange, found, claimant, keys, now, dry)
                left = give_up - time.monotonic()
                if not offer.wait or offer.found or offer.yours or left <= 0:
                    return replace(offer, want=want)
                self._changed.wait(left)
                now = self._heard[claimant] = time.monotonic()

    def _fresh(
        self, exchange: str, found: _Exchange, claimant: str, keys: Sequence[str], light: bool
    ) -> Offer | None:
        """The common case while the query shows no repeats, sorted in bulk: none of `keys`
        was offered before (nor has an answer, nor a claim), so all are the task's to send
        (claimed unless `light`). None when one of them was: `_sort` sorts them one by one."""
        if not keys or not found.claims.keys().isdisjoint(keys):
            return None
        shorts = [hash(key) for key in keys]
        if any(found.seen.among(shorts)):
            return None
        room = SEEN_MAX - len(found.seen)
        if room <= 0 and any((exchange, key) in self._answers for key in keys):
            return None  # an input answered was seen, unless the seen were too many by then
        found.seen.extend(shorts[: max(room, 0)])
        if light:  # none claimed, so none listed back (10,000 keys: 670 KB): all are sent
            return Offer({}, [], [], claimed=False)
        found.claims.update(dict.fromkeys(keys, claimant))
        return Offer({}, list(keys), [])

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
        # 64-bit hashes: a false repeat only publishes answers early.
        shorts = [] if found.repeats else [hash(key) for key in keys]
        seen = found.seen.among(shorts)
        for i, key in enumerate(keys):
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
                    found.repeats = owner is None and seen[i]
                    if len(found.seen) < SEEN_MAX:
                        found.seen.add(shorts[i])
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
    # What an entry holds in CPython besides its text: three str objects (~49 bytes each),
    # the key's tuple and the ordered dict's slot, ~320 bytes in all.
    return len(where[0]) + len(where[1]) + len(answer) + 320


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
        light=bool(asked.get("light", False)),
    )
    return {
        "found": offer.found,
        "yours": offer.yours,
        "wait": offer.wait,
        "want": offer.want,
        "claimed": offer.claimed,
    }
