"""Driver side: usage lines sent by executors (`aiquery.usage.relay`), stored in the driver's
own spool directory, in the spool's format, for the committer to commit as usual.

Each remote writer (one task's call site) gets its own files, named like a local writer's
but with the driver's host and pid (`<driver host>-<driver pid>-<writer>-<seq>.open`):
while this process lives its files are live, and after it dies the next driver treats
them as abandoned (`spool.is_abandoned`), so no liveness ever depends on a pid of another
host. A writer that stops talking (its executor died) has its file closed after
`idle_s`; its started lines without a finish become status-less rows, as with a local
spool. A batch is stored before it is acknowledged, and a repeated sequence number (the
executor retried after a lost answer) is acknowledged without being stored twice.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from aiquery.usage.record import Call, parse_line

ROTATE_LINES = 20_000
ROTATE_SECONDS = 30.0
CLOSED_REMEMBERED = 100_000


class BadBatchError(ValueError):
    """A batch that is not whole spool lines, or that starts a writer without its header."""


@dataclass
class _Writer:
    header: bytes
    sequence: int = 0
    fd: int | None = None
    path: Path | None = None
    files: int = 0
    lines: int = 0
    opened: float = 0.0
    seen: float = field(default_factory=time.monotonic)


class Collector:
    def __init__(self, spool_dir: str | Path) -> None:
        self.directory = Path(spool_dir)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._prefix = f"{socket.gethostname()}-{os.getpid()}"
        self._writers: dict[str, _Writer] = {}
        self._closed: dict[str, None] = {}  # recently closed writers, oldest first
        self._lock = threading.Lock()
        self.batches = 0
        self.duplicates = 0

    def receive(self, writer_id: str, sequence: int, body: bytes, *, close: bool) -> None:
        """Store one batch of `writer_id` durably enough to survive this process's death."""
        if not writer_id.isalnum() or len(writer_id) > 64:
            raise BadBatchError("the writer id must be 1-64 letters and digits")
        lines = _lines(body)
        with self._lock:
            writer = self._writers.get(writer_id)
            if writer is None:
                if writer_id in self._closed:
                    self.duplicates += 1
                    return  # a close that was stored, repeated
                if not lines or not isinstance(parse_line(lines[0])[1], Call):
                    raise BadBatchError("a writer's first batch must start with its header line")
                writer = self._writers[writer_id] = _Writer(header=lines[0])
                lines = lines[1:]
            if sequence <= writer.sequence:
                self.duplicates += 1
                return
            writer.sequence, writer.seen = sequence, time.monotonic()
            if lines:
                self._append(writer_id, writer, lines)
            self.batches += 1
            if close:
                self._close_file(writer)
                del self._writers[writer_id]
                self._closed[writer_id] = None
                if len(self._closed) > CLOSED_REMEMBERED:  # a repeated close comes within seconds
                    del self._closed[next(iter(self._closed))]

    def reap(self, idle_s: float) -> int:
        """Close the files of writers silent for `idle_s` (their executor may be gone), so
        the committer can finish them; a writer that speaks again gets a new file."""
        now = time.monotonic()
        with self._lock:
            idle = [w for w in self._writers.values() if w.fd is not None and now - w.seen > idle_s]
            for writer in idle:
                self._close_file(writer)
            return len(idle)

    def close(self) -> None:
        with self._lock:
            for writer in self._writers.values():
                self._close_file(writer)

    def _append(self, writer_id: str, writer: _Writer, lines: list[bytes]) -> None:
        if writer.fd is not None and (
            writer.lines >= ROTATE_LINES or time.monotonic() - writer.opened >= ROTATE_SECONDS
        ):
            self._close_file(writer)
        if writer.fd is None:
            writer.files += 1
            writer.path = self.directory / f"{self._prefix}-{writer_id}-{writer.files:05d}.open"
            writer.fd = os.open(writer.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            writer.lines, writer.opened = 0, time.monotonic()
            lines = [writer.header, *lines]
        # One write per batch: a driver killed mid-write leaves whole lines of earlier batches.
        os.write(writer.fd, b"".join(lines))
        writer.lines += len(lines)

    def _close_file(self, writer: _Writer) -> None:
        if writer.fd is None or writer.path is None:
            return
        os.fsync(writer.fd)
        os.close(writer.fd)
        writer.path.rename(writer.path.with_suffix(".jsonl"))
        writer.fd, writer.path = None, None


def _lines(body: bytes) -> list[bytes]:
    if body and not body.endswith(b"\n"):
        raise BadBatchError("a batch must be whole lines, each ending with a newline")
    lines = body.splitlines(keepends=True)
    for line in lines:
        try:
            parse_line(line)
        except (ValueError, KeyError, TypeError) as e:
            raise BadBatchError(f"not a usage line: {e}") from None
    return lines
