"""Driver side: reading the executors' spool files (see `aiquery.usage.executor` for writing).

Files are read from a byte offset on, whole lines only, so the committer and the progress
monitor can tail files that writers are still appending to.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any, NamedTuple

from aiquery.usage.record import (
    CACHED,
    FINISHED,
    SAVED,
    STARTED,
    Attempt,
    CacheEntry,
    Call,
    Request,
    Saved,
    cache_row,
    parse_line,
    saved_row,
)

# (STARTED | FINISHED, the attempt), (SAVED, the rows) or (CACHED, an answer)
Event = tuple[str, Attempt | Saved | CacheEntry]


class Found(NamedTuple):
    """What part of a spool file holds: requests (`usage_table` makes their rows), and
    table rows."""

    usage: list[Request]
    saved: list[dict[str, Any]]
    cached: list[dict[str, Any]]


def spool_files(directory: str | Path) -> list[Path]:
    root = Path(directory)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.suffix in (".jsonl", ".open"))


def quiet(files: list[Path], idle_s: float, open_idle_s: float) -> bool:
    """Has the spool stopped: no file written for `idle_s`, and none still open (its task
    running) for `open_idle_s`? A long-tailed job's last requests leave pauses longer than
    `idle_s`, and a flush in one merged mid-job, then again at its end. A file that a dead
    writer left open stops counting after `open_idle_s`. Raises FileNotFoundError when a
    file goes meanwhile (renamed as its writer closes it, or deleted by a flush)."""
    now = time.time()
    return all(
        now - path.stat().st_mtime >= (open_idle_s if path.suffix == ".open" else idle_s)
        for path in files
    )


def in_time_order(files: list[Path]) -> list[Path]:
    """`files` by when each was last written, a writer's own in sequence (its next file is
    written after it). Concurrent writers' files interleave: a run of consecutive files
    then spans one stretch of time, and so does a MERGE batch cut from it. Read writer by
    writer, each batch's ids spanned the whole flush and it read back the files the
    flush's earlier batches wrote (~0.5 KB of the driver's memory a row read)."""

    def written(path: Path) -> tuple[int, str]:
        try:
            return path.stat().st_mtime_ns, path.name
        except FileNotFoundError:  # a concurrent flush committed and deleted it
            return 0, path.name

    return sorted(files, key=written)


def writer_of(path: Path) -> str:
    """The writer of a spool file: its name without the sequence number."""
    return path.stem.rsplit("-", 1)[0]


def is_abandoned(path: Path, max_idle_s: float = 900.0) -> bool:
    """An `.open` file whose writer is gone: a dead pid on this host, or idle for long."""
    if path.suffix != ".open":
        return False
    # <host>-<pid>-<random>-<seq>: host names may contain '-', so count from the end.
    parts = path.stem.split("-")
    try:
        pid = int(parts[-3])
    except (IndexError, ValueError):
        pid = -1
    if path.name.startswith(socket.gethostname() + "-") and pid > 0:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False
    try:
        return time.time() - path.stat().st_mtime > max_idle_s
    except FileNotFoundError:
        return False


def read_events(
    path: Path, offset: int = 0, call: Call | None = None
) -> tuple[list[Event], int, Call | None]:
    """The events of `path` from byte `offset` on: (events, new offset, the file's header)."""
    try:
        with path.open("rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], offset, call
    end = data.rfind(b"\n") + 1
    events: list[Event] = []
    for raw in data[:end].splitlines():
        kind, value = parse_line(raw)
        if isinstance(value, Call):
            call = value
        else:
            events.append((kind, value))
    return events, offset + end, call


def read_rows(
    path: Path, offset: int = 0, call: Call | None = None
) -> tuple[Found, int, Call | None]:
    """What `path` holds from byte `offset` on: (requests and rows, new offset, the file's
    header). A request started with no finish in this part of the file is not `finished`
    (its finish may be in a later part, or in the writer's next file)."""
    events, new_offset, call = read_events(path, offset, call)
    if call is None:
        return Found([], [], []), offset, None
    started = {a.request_id: a for kind, a in events if kind == STARTED and isinstance(a, Attempt)}
    finished = {
        a.request_id: a for kind, a in events if kind == FINISHED and isinstance(a, Attempt)
    }
    requests = [Request(call, a, True) for a in finished.values()]
    requests += [Request(call, a, False) for rid, a in started.items() if rid not in finished]
    saved = [saved_row(call, s) for kind, s in events if kind == SAVED and isinstance(s, Saved)]
    cached = [
        cache_row(call, c) for kind, c in events if kind == CACHED and isinstance(c, CacheEntry)
    ]
    return Found(requests, saved, cached), new_offset, call
