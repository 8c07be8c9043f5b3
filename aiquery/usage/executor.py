"""Executor side: a task's usage records appended to its own spool files, for the driver to commit.

Runs inside Spark's Python workers, but imports no Spark: the task's name comes from the caller.
A task writes its own files (`<host>-<pid>-<random>-<seq>.open`, renamed `.jsonl` when
closed or rotated), so no two writers share a file. Each file starts with a header line
(the `Call`: endpoint, requester, tags, Spark task), then per request:
- a started line just before it is sent, and
- a finished line with its outcome once the answer (or the failure) is in;
and a saved line for rows answered without a request (a duplicate input, a cache hit).
Each line is one `os.write` on an O_APPEND descriptor: a worker killed mid-job leaves only
whole lines behind, and a started request without a finish still becomes a usage row.
The line format is `aiquery.usage.record`'s.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from aiquery.endpoints.registry import Endpoint, Secret
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
from aiquery.usage.relay import RelayWriter

ROTATE_LINES = 20_000
ROTATE_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class UsageContext:
    """What executors need to spool usage for one call site (picklable, made on the driver)."""

    spool_dir: str
    requester: str
    invocation_id: str
    app_id: str | None
    delivery: str = "spool"  # "driver": sent to the coordinator (set when the call is bound)
    collector_url: str | None = None
    collector_token: Secret | None = None


class SpoolWriter:
    """The client's `Recorder` for one task: appends lines, rotating files as it goes."""

    def __init__(self, directory: str | Path, call: Call) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.call = call
        self._stem = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self._seq = 0
        self._fd: int | None = None
        self._path: Path | None = None
        self._lines = 0
        self._opened = 0.0

    def _open(self) -> int:
        self._seq += 1
        self._path = self.directory / f"{self._stem}-{self._seq:05d}.open"
        self._fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._lines, self._opened = 0, time.monotonic()
        self._write(header_line(self.call))
        return self._fd

    def _write(self, line: bytes) -> None:
        fd = self._fd if self._fd is not None else self._open()
        os.write(fd, line)
        self._lines += 1

    def started(self, attempt: Attempt) -> None:
        if self._fd is not None and (
            self._lines >= ROTATE_LINES or time.monotonic() - self._opened >= ROTATE_SECONDS
        ):
            self.close()
        self._write(attempt_line(STARTED, attempt))

    def finished(self, attempt: Attempt) -> None:
        self._write(attempt_line(FINISHED, attempt))

    def saved(self, saved: Saved) -> None:
        self._write(saved_line(saved))

    def cached(self, entry: CacheEntry) -> None:
        self._write(cache_line(entry))

    async def drain(self) -> None:
        """Publish what was written (the engine calls this on its loop as the task ends)."""
        self.close()

    def close(self) -> None:
        """Flush to disk and publish the file as closed (`.jsonl`)."""
        if self._fd is None or self._path is None:
            return
        os.fsync(self._fd)
        os.close(self._fd)
        self._path.rename(self._path.with_suffix(".jsonl"))
        self._fd, self._path = None, None


def writer_for(
    context: UsageContext,
    endpoint: Endpoint,
    *,
    api_type: str,
    url: str,
    user_agent: str,
    tags: Mapping[str, str] | None,
    spark_task: str | None,
) -> SpoolWriter | RelayWriter:
    """The usage writer of one task (`spark_task`: stage.partition.attempt) for one call site:
    to the spool directory, or to the driver's coordinator."""
    external = endpoint.protocol != "databricks"
    call = Call(
        invocation_id=context.invocation_id,
        endpoint_name=endpoint.name,
        endpoint_id=hashlib.sha256(f"{endpoint.name}|{endpoint.base_url}".encode()).hexdigest()[
            :16
        ],
        destination_type=endpoint.destination_type,
        destination_name=f"{endpoint.protocol}:{urlparse(endpoint.base_url).netloc}"
        if external
        else endpoint.model,
        destination_model=endpoint.model,
        requester=context.requester,
        api_type=api_type,
        url=url,
        user_agent=user_agent,
        request_tags=dict(tags) if tags else None,
        spark_app_id=context.app_id,
        spark_task=spark_task,
    )
    if context.delivery == "driver":
        if context.collector_url is None or context.collector_token is None:
            raise RuntimeError("usage delivery to the driver, but the call site was not bound")
        return RelayWriter(context.collector_url, context.collector_token.value, call)
    return SpoolWriter(context.spool_dir, call)
