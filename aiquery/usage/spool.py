"""The usage spool: executors append one line per request event to files the driver ingests.

A task writes its own files (`<host>-<pid>-<random>-<seq>.open`, renamed `.jsonl` when
closed or rotated), so no two writers share a file. Each file starts with a header line
(what is the same for every request: endpoint, requester, tags, Spark task), then:
- `s` (started) just before a request is sent, and
- `f` (finished) with its outcome once the answer (or the failure) is in.
Each line is one `os.write` on an O_APPEND descriptor: a worker killed mid-job leaves only
whole lines behind, and a started request without a finish still becomes a usage row.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiquery.client.http import AttemptRecord

ROTATE_LINES = 20_000
ROTATE_SECONDS = 30.0
NO_ANSWER = "no answer recorded: the request was in flight, or its task ended first"


@dataclass(frozen=True, slots=True)
class SpoolHeader:
    """What every request in one spool file has in common."""

    endpoint_name: str
    endpoint_id: str
    destination_type: str
    destination_name: str
    destination_model: str
    requester: str
    api_type: str
    url: str
    user_agent: str
    request_tags: Mapping[str, str] | None
    invocation_id: str
    spark_app_id: str | None
    spark_task: str | None = None


class SpoolWriter:
    """A `Recorder` for one task: appends started/finished lines, rotating files as it goes."""

    def __init__(self, directory: str | Path, header: SpoolHeader) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.header = header
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
        self._write_line({"k": "h", **asdict(self.header)})
        return self._fd

    def _write_line(self, line: Mapping[str, Any]) -> None:
        fd = self._fd if self._fd is not None else self._open()
        os.write(fd, (json.dumps(line, separators=(",", ":")) + "\n").encode())
        self._lines += 1

    def _maybe_rotate(self) -> None:
        if self._fd is not None and (
            self._lines >= ROTATE_LINES or time.monotonic() - self._opened >= ROTATE_SECONDS
        ):
            self.close()

    def started(self, request_id: str, started_at: float, attempt: int, rows: int) -> None:
        self._maybe_rotate()
        self._write_line({"k": "s", "id": request_id, "t": started_at, "a": attempt, "r": rows})

    def record(self, attempt: AttemptRecord) -> None:
        self._write_line(
            {
                "k": "f",
                "id": attempt.request_id,
                "t": attempt.started_at,
                "a": attempt.attempt,
                "r": attempt.rows,
                "s": attempt.status,
                "l": attempt.latency_ms,
                "fb": attempt.ttfb_ms,
                "in": attempt.input_tokens,
                "out": attempt.output_tokens,
                "est": attempt.tokens_estimated,
                "err": attempt.error,
                "srv": attempt.server_request_id,
            }
        )

    def close(self) -> None:
        """Flush to disk and publish the file as closed (`.jsonl`)."""
        if self._fd is None or self._path is None:
            return
        os.fsync(self._fd)
        os.close(self._fd)
        self._path.rename(self._path.with_suffix(".jsonl"))
        self._fd, self._path = None, None


def spool_files(directory: str | Path) -> list[Path]:
    root = Path(directory)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.suffix in (".jsonl", ".open"))


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


def read_rows(
    path: Path, offset: int = 0, header: Mapping[str, Any] | None = None
) -> tuple[list[dict[str, Any]], int, Mapping[str, Any] | None]:
    """Usage rows from `path` from byte `offset` on: (rows, new offset, the file's header).

    Only whole lines are read; a started request with no finish in this part of the file
    becomes a placeholder row (NULL status and latency) that a later finish replaces.
    """
    try:
        with path.open("rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], offset, header
    end = data.rfind(b"\n") + 1
    started: dict[str, dict[str, Any]] = {}
    finished: dict[str, dict[str, Any]] = {}
    for raw in data[:end].splitlines():
        line = json.loads(raw)
        kind = line.pop("k")
        if kind == "h":
            header = line
        elif kind == "s":
            started[line["id"]] = line
        elif kind == "f":
            finished[line["id"]] = line
    if header is None:
        return [], offset, None
    rows = [_row(header, line, done=True) for line in finished.values()]
    rows += [_row(header, line, done=False) for rid, line in started.items() if rid not in finished]
    return rows, offset + end, header


def _row(header: Mapping[str, Any], line: Mapping[str, Any], *, done: bool) -> dict[str, Any]:
    when = datetime.fromtimestamp(line["t"], UTC)
    tokens_in, tokens_out = line.get("in"), line.get("out")
    return {
        "request_id": line["id"],
        "invocation_id": header["invocation_id"],
        "event_time": when,
        "endpoint_name": header["endpoint_name"],
        "endpoint_id": header["endpoint_id"],
        "destination_type": header["destination_type"],
        "destination_name": header["destination_name"],
        "destination_model": header["destination_model"],
        "requester": header["requester"],
        "api_type": header["api_type"],
        "url": header["url"],
        "user_agent": header["user_agent"],
        "request_tags": header["request_tags"] or None,
        "input_tokens": tokens_in,
        "output_tokens": tokens_out,
        "total_tokens": None if tokens_in is None else tokens_in + (tokens_out or 0),
        "token_details": None,
        "status_code": line.get("s") if done else None,
        "latency_ms": line.get("l") if done else None,
        "time_to_first_byte_ms": line.get("fb") if done else None,
        "routing_information": line.get("srv"),
        "event_date": when.date(),
        "tokens_estimated": bool(line.get("est")) if done else None,
        "rows": line["r"],
        "attempt": line["a"],
        "error_message": line.get("err") if done else NO_ANSWER,
        "spark_app_id": header.get("spark_app_id"),
        "spark_task": header.get("spark_task"),
    }


def iter_lines(path: Path) -> Iterator[dict[str, Any]]:
    """Every whole line of a spool file, for inspection and tests."""
    with path.open("rb") as f:
        for raw in f:
            if raw.endswith(b"\n"):
                yield json.loads(raw)
