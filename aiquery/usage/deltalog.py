"""Which Parquet files make up a Delta table's current version, read from its log with pyarrow.

The usage table is ours: Spark writes it with classic checkpoints and no deletion vectors.
Its current files are the last complete checkpoint's `add` actions replayed with the JSON
commits after it (`add` adds a file, `remove` drops it). Reading that takes a directory
listing and a few small files, so `aiquery usage` needs neither a JVM nor delta-rs (whose
pyarrow scan made most short processes abort at exit, and whose Rust runtime a CLI start
need not load at all).

Anything this reader does not handle (a reader feature it does not know, a deletion
vector, column mapping, a gap in the log) raises `UnsupportedTableError`, and the caller
reads the table with delta-rs instead: a faster path, never a different answer.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import pyarrow.fs as pafs
import pyarrow.parquet as pq

# Reader features that change nothing for a reader of add/remove and plain Parquet files.
# deletionVectors is allowed as a feature; a file that carries one is not.
_HARMLESS_FEATURES = frozenset(
    {"timestampNtz", "deletionVectors", "vacuumProtocolCheck", "v2Checkpoint"}
)
_COMMIT = re.compile(r"^(\d{20})\.json$")
_CHECKPOINT = re.compile(r"^(\d{20})\.checkpoint(?:\.(\d{10})\.(\d{10}))?\.parquet$")


class UnsupportedTableError(Exception):
    """The table needs more than this reader does; read it with delta-rs."""


class NoTableError(Exception):
    """No Delta log at the location."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    version: int
    files: tuple[str, ...]  # paths under the table's directory, as `filesystem` names them


def snapshot(filesystem: pafs.FileSystem, base: str) -> Snapshot:
    """The files of the table at `base` (a path of `filesystem`), at its latest version."""
    log = f"{base.rstrip('/')}/_delta_log"
    try:
        listed = filesystem.get_file_info(pafs.FileSelector(log, allow_not_found=True))
    except OSError as e:
        raise NoTableError(str(e)) from None
    commits: dict[int, str] = {}
    parts: dict[int, dict[int, str]] = {}
    expected_parts: dict[int, int] = {}
    for info in listed:
        if (commit := _COMMIT.match(info.base_name)) is not None:
            commits[int(commit[1])] = info.path
        elif (checkpoint := _CHECKPOINT.match(info.base_name)) is not None:
            version = int(checkpoint[1])
            part, total = int(checkpoint[2] or 1), int(checkpoint[3] or 1)
            parts.setdefault(version, {})[part] = info.path
            expected_parts[version] = total
    if not commits and not parts:
        raise NoTableError(f"no Delta log at {log}")
    complete = [v for v, found in parts.items() if len(found) == expected_parts[v]]
    start = max(complete, default=-1)
    latest = max(commits, default=start)
    needed = range(start + 1, latest + 1)
    if any(v not in commits for v in needed):
        raise UnsupportedTableError(f"the log has no commit for every version after {start}")

    files: dict[str, None] = {}  # insertion-ordered set
    protocol: dict[str, Any] | None = None
    if start >= 0:
        for _, path in sorted(parts[start].items()):
            protocol = _read_checkpoint(filesystem, path, files) or protocol
    for version in needed:
        with filesystem.open_input_stream(commits[version]) as stream:
            lines = stream.read().decode("utf-8").splitlines()
        for line in lines:
            if not line.strip():
                continue
            action = json.loads(line)
            if (add := action.get("add")) is not None:
                _check_add(add)
                files[add["path"]] = None
            elif (remove := action.get("remove")) is not None:
                files.pop(remove["path"], None)
            elif (found := action.get("protocol")) is not None:
                protocol = found
            elif (metadata := action.get("metaData")) is not None:
                _check_metadata(metadata)
    _check_protocol(protocol)
    base = base.rstrip("/")
    return Snapshot(latest, tuple(_absolute(base, path) for path in files))


def _read_checkpoint(
    filesystem: pafs.FileSystem, path: str, files: dict[str, None]
) -> dict[str, Any] | None:
    schema = pq.read_schema(path, filesystem=filesystem)
    columns = [c for c in ("add", "protocol", "metaData") if c in schema.names]
    table = pq.read_table(path, columns=columns, filesystem=filesystem)
    protocol = None
    for row in table.to_pylist():
        if (add := row.get("add")) is not None:
            _check_add(add)
            files[add["path"]] = None
        elif row.get("protocol") is not None:
            protocol = row["protocol"]
        elif row.get("metaData") is not None:
            _check_metadata(row["metaData"])
    return protocol


def _check_add(add: dict[str, Any]) -> None:
    if add.get("deletionVector"):
        raise UnsupportedTableError("a data file has a deletion vector")


def _check_metadata(metadata: dict[str, Any]) -> None:
    # A checkpoint's maps arrive from Parquet as (key, value) pairs, a commit's as objects.
    configuration = dict(metadata.get("configuration") or {})
    if configuration.get("delta.columnMapping.mode", "none") != "none":
        raise UnsupportedTableError("the table maps column names")


def _check_protocol(protocol: dict[str, Any] | None) -> None:
    if protocol is None:
        raise UnsupportedTableError("the log has no protocol action")
    if int(protocol.get("minReaderVersion") or 1) > 3:
        raise UnsupportedTableError(f"reader version {protocol['minReaderVersion']}")
    unknown = set(protocol.get("readerFeatures") or ()) - _HARMLESS_FEATURES
    if unknown:
        raise UnsupportedTableError(f"reader features {sorted(unknown)}")


def _absolute(base: str, path: str) -> str:
    if "://" in path:  # a file outside the table's directory (shallow clones): rare
        raise UnsupportedTableError("a data file has an absolute URI")
    return f"{base}/{unquote(path)}"
