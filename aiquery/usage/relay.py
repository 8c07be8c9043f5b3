"""Executor side: a task's usage lines sent to the driver's collector, for clusters with no
shared mount (the driver side is `aiquery.usage.driver.collector`).

The lines are the spool's (`aiquery.usage.record`), and the invariant is the spool's: a
request is sent only once its started line is stored on the driver, so a task, worker or
whole executor that dies mid-request still leaves a (status-less) usage row behind.

Group commit keeps that cheap: `started` queues its line and waits; one POST at a time
carries every line queued since the previous one, so concurrent requests share a round
trip. Finished lines ride along (nobody waits for them until the task ends). Each POST
carries the writer's id and a sequence number: a POST retried after a lost answer is
stored once. A started line that cannot be delivered fails the task (its request is
never sent), and Spark's task retry takes over.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Mapping
from typing import Any

import aiohttp
import orjson

from aiquery.errors import AiQueryError
from aiquery.usage.record import (
    FINISHED,
    STARTED,
    Attempt,
    CacheEntry,
    Call,
    Saved,
    attempt_line,
    cache_line,
    header_line,
    saved_line,
)

log = logging.getLogger("aiquery")

WRITER_HEADER = "x-aiquery-writer"
SEQUENCE_HEADER = "x-aiquery-sequence"
CLOSE_HEADER = "x-aiquery-close"
USAGE_PATH = "/usage"

DELIVERY_DEADLINE_S = 120.0  # how long a batch is retried before its task fails


class CoordinatorUnreachable(Exception):  # noqa: N818 (mapped by each caller into its own error)
    """No 200 from the driver's coordinator before the deadline; says the last problem."""


async def post_until(
    session: aiohttp.ClientSession,
    url: str,
    *,
    headers: Mapping[str, str],
    deadline_s: float,
    data: bytes,
) -> bytes:
    """POST to the driver's coordinator, retried with backoff until `deadline_s`; the body
    of its 200. A refusal that retrying cannot mend (a stranger's token, a wrong route,
    a bad request) ends it at once."""
    loop = asyncio.get_running_loop()
    give_up, delay, problem = loop.time() + deadline_s, 0.1, ""
    while True:
        try:
            async with session.post(url, data=data, headers=headers) as answer:
                if answer.status == 200:
                    return await answer.read()
                problem = f"HTTP {answer.status}: {(await answer.text())[:200]}"
                if answer.status in (400, 401, 403, 404):  # another driver, a stale token
                    break
        except (TimeoutError, aiohttp.ClientError) as e:
            problem = f"{type(e).__name__}: {e}"
        if loop.time() + delay > give_up:
            break
        await asyncio.sleep(delay)
        delay = min(delay * 2, 5.0)
    raise CoordinatorUnreachable(problem)


class CoordinatorRoute:
    """One route of the driver's coordinator, for one task: JSON in, JSON out, retried
    until `deadline_s`; failing, it raises `error` with `what` could not be done and how
    to mend it. Its HTTP session is opened on first use, on the task's loop."""

    def __init__(
        self,
        url: str,
        path: str,
        token: str,
        *,
        what: str,
        error: type[AiQueryError],
        deadline_s: float = 120.0,
        timeout_s: float = 30.0,
    ) -> None:
        self.url = url.rstrip("/") + path
        self.what = what
        self.error = error
        self.deadline_s = deadline_s
        self.timeout_s = timeout_s
        self._headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self._session: aiohttp.ClientSession | None = None

    async def post(self, body: Mapping[str, Any]) -> Any:
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=self.timeout_s)
            self._session = aiohttp.ClientSession(timeout=timeout)
        try:
            answer = await post_until(
                self._session,
                self.url,
                headers=self._headers,
                deadline_s=self.deadline_s,
                data=orjson.dumps(dict(body)),  # an offer carries a batch's keys
            )
        except CoordinatorUnreachable as e:
            raise self.error(
                f"{self.what} could not be had from the driver at {self.url} ({e}); check that "
                "executors can reach the driver (aiquery.coordinator.host/port)"
            ) from None
        return orjson.loads(answer)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class UsageDeliveryError(AiQueryError):
    """The driver's usage collector could not be reached: the request was not sent."""


class RelayWriter:
    """The client's `Recorder` for one task when usage goes to the driver."""

    def __init__(
        self,
        url: str,
        token: str,
        call: Call,
        *,
        deadline_s: float = DELIVERY_DEADLINE_S,
        timeout_s: float = 30.0,
    ) -> None:
        self.url = url.rstrip("/") + USAGE_PATH
        self.call = call
        self.writer_id = uuid.uuid4().hex
        self.deadline_s = deadline_s
        self._headers = {"Authorization": f"Bearer {token}", WRITER_HEADER: self.writer_id}
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._lines: list[bytes] = [header_line(call)]
        self._waiters: list[asyncio.Future[None]] = []
        self._sequence = 0
        self._sender: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._failure: UsageDeliveryError | None = None

    def started(self, attempt: Attempt) -> Awaitable[None]:
        """Queue the started line; the request may be sent once the returned awaitable is done."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._failure is not None:
            waiter.set_exception(self._failure)
            return waiter
        self._lines.append(attempt_line(STARTED, attempt))
        self._waiters.append(waiter)
        self._send_soon()
        return waiter

    def finished(self, attempt: Attempt) -> None:
        self._lines.append(attempt_line(FINISHED, attempt))
        self._send_soon()

    def saved(self, saved: Saved) -> None:
        self._lines.append(saved_line(saved))
        self._send_soon()

    def cached(self, entry: CacheEntry) -> None:
        self._lines.append(cache_line(entry))
        self._send_soon()

    async def drain(self) -> None:
        """Deliver every queued line and tell the collector this writer is done."""
        while self._sender is not None and not self._sender.done():
            await asyncio.shield(self._sender)
        if self._sequence == 0 and len(self._lines) == 1:
            return  # nothing was sent: only the header is queued
        try:
            if self._failure is None:
                await self._post(self._lines, close=True)
                self._lines = []
        except UsageDeliveryError as e:
            # The started lines are stored: these requests become status-less rows.
            log.warning("aiquery: %s; the last finished requests stay status-less", e)
        finally:
            if self._session is not None:
                await self._session.close()
                self._session = None

    def _send_soon(self) -> None:
        if self._sender is None or self._sender.done():
            self._sender = asyncio.get_running_loop().create_task(self._send_all())

    async def _send_all(self) -> None:
        while self._lines and self._failure is None:
            lines, waiters = self._lines, self._waiters
            self._lines, self._waiters = [], []
            try:
                await self._post(lines, close=False)
            except UsageDeliveryError as e:
                self._failure = e
                for waiter in waiters + self._waiters:
                    if not waiter.done():
                        waiter.set_exception(e)
                self._waiters = []
                return
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    async def _post(self, lines: list[bytes], *, close: bool) -> None:
        self._sequence += 1
        headers = {**self._headers, SEQUENCE_HEADER: str(self._sequence)}
        if close:
            headers[CLOSE_HEADER] = "1"
        body = b"".join(lines)
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            await post_until(
                self._session, self.url, headers=headers, deadline_s=self.deadline_s, data=body
            )
        except CoordinatorUnreachable as e:
            raise UsageDeliveryError(
                f"usage records could not be delivered to the driver's collector at {self.url} "
                f"({e}); check that executors can reach the driver "
                "(aiquery.coordinator.host/port), or record usage on a shared mount "
                "(aiquery.usage.spoolDir)"
            ) from None
