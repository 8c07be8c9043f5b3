"""The three MERGEs the committer runs (usage, saved rows, cached answers), defined once, and
the two engines that run them.

A table the driver's process can write itself (its own disk or a mount, or S3 with the
session's S3A settings: `targets`) is merged in-process by delta-rs: no Spark job, no
executor slot, no JVM warm-up. Anywhere else (abfss://, hdfs://, S3 settings delta-rs cannot
reproduce, or a Spark Connect client, whose files are the server's), Spark's MERGE runs it.
Both are the same statement: keys matched, the same update condition, the rest inserted;
both commit with Delta's optimistic concurrency, so a writer that lost a race (either
engine) reads the new version and runs again. Exactly-once still comes from the keys, not
from the engine.

Measured on 2 cores, local disk: a flush of 10 spooled rows took 13.8 s as a fresh
session's first through Spark (a dozen small Spark jobs, cold), 3.3 s warm, and 0.11 s through
delta-rs. `python -m benchmarks.usage_commit` (100,000 requests a round, to 1,000,000 rows):
6.0-7.6 s a round, flat as the table grows, most of it reading the spool's JSON lines.

Each batch's MERGE names its scope, the files it can match: its days and the range of its
keys. Keys are time-ordered (`record.new_id`), so a batch reads the files written about the
same time, not its whole day: a 50,000-row batch into a day of 2,000,000 rows took 1.3 s
and 0.85 GB more memory with the day alone in scope, 0.1 s and none with the key range.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from aiquery.usage.driver.targets import Target
from aiquery.usage.record import CACHE_TABLE, SAVED_TABLE, TABLE

if TYPE_CHECKING:
    from deltalake import DeltaTable

log = logging.getLogger("aiquery")

# delta-rs' MERGE holds the files it reads in memory (the join's build side: all columns,
# ~0.4 KB a usage row). Past this many rows in a batch's scope (a table written before ids
# were time-ordered, or a batch spanning hours), Spark's MERGE (executors, spilling) runs
# that batch instead.
DELTA_RS_MAX_TARGET_ROWS = 500_000
CONFLICTS = ("concurrent", "conflict", "protocolchanged", "metadatachanged")  # lower case
UNSUPPORTED = "unsupported table features"  # delta-rs' words for a feature it cannot write
ATTEMPTS = 8
_LITERAL = re.compile(r"[\w.:-]{1,128}", re.ASCII)  # safe to inline between quotes


class Ran(Enum):
    """What became of a batch given to delta-rs."""

    MERGED = "merged"
    TOO_LARGE = "too large"  # its scope holds too many rows: Spark merges this batch
    NOT_WRITABLE = "not writable"  # delta-rs cannot write the table: Spark, from now on


@dataclass(frozen=True, slots=True)
class Merge:
    """`MERGE INTO table AS t USING source AS s ON on AND scope`: update the match when
    `update_when` holds (None: never), insert the rest. `key`: a time-ordered key column
    (`record.new_id`), whose range bounds the scope."""

    table: str
    on: str
    update_when: str | None
    key: str | None = None

    def sql(self, source: str, scope: str = "") -> str:
        """Spark's statement, `source` a table expression, `scope` from `scope()`."""
        update = (
            f"WHEN MATCHED AND {self.update_when} THEN UPDATE SET *\n" if self.update_when else ""
        )
        return (
            f"MERGE INTO {self.table} AS t\nUSING {source} AS s\nON {self.on}{scope}\n"
            f"{update}WHEN NOT MATCHED THEN INSERT *\n"
        )

    def scope(self, source: pa.Table) -> str:
        """What the batch `source` adds to the ON clause so Delta reads only the files that
        can match: its days (partitions) and the range of its keys (file statistics).
        Implied by the join, it changes no match. Without the days a MERGE read every day
        the table had; without the range, all of today."""
        terms = []
        if "event_date" in source.column_names:
            days = sorted(str(d) for d in pc.unique(source["event_date"]).to_pylist() if d)
            if days:
                terms.append("t.event_date IN (" + ", ".join(f"DATE'{d}'" for d in days) + ")")
        if self.key is not None and source.num_rows:
            bounds = pc.min_max(source[self.key])
            low, high = bounds["min"].as_py(), bounds["max"].as_py()
            if all(isinstance(v, str) and _LITERAL.fullmatch(v) for v in (low, high)):
                terms.append(f"t.{self.key} BETWEEN '{low}' AND '{high}'")
        return "".join(f" AND {term}" for term in terms)

    def rows_in_scope(self, table: DeltaTable, source: pa.Table) -> int:
        """How many rows the files in the batch's scope hold, read from the table's log (no
        data file is opened): in its partitions, and, where a file has statistics for the
        key, with a key range that meets the batch's."""
        actions = pa.table(table.get_add_actions(flatten=True))
        if actions.num_rows == 0:
            return 0
        columns = table.metadata().partition_columns
        touched = set(zip(*(source.column(c).to_pylist() for c in columns), strict=True))
        partitions = zip(*(actions[f"partition.{c}"].to_pylist() for c in columns), strict=True)
        meets = [key in touched for key in partitions]
        stats = (f"min.{self.key}", f"max.{self.key}")
        if self.key is not None and all(name in actions.column_names for name in stats):
            bounds = pc.min_max(source[self.key])
            low, high = bounds["min"].as_py(), bounds["max"].as_py()
            lows, highs = actions[stats[0]].to_pylist(), actions[stats[1]].to_pylist()
            meets = [
                m and (lo is None or hi is None or (lo <= high and hi >= low))
                for m, lo, hi in zip(meets, lows, highs, strict=True)
            ]
        counts = actions["num_records"].to_pylist()
        return sum(n or 0 for n, m in zip(counts, meets, strict=True) if m)

    def run_delta_rs(self, target: Target, source: pa.Table) -> Ran:
        """The same MERGE by delta-rs, on the table at `target`; run again while a
        concurrent writer wins (its commit is read first). Not merged when the batch's
        scope is too large to hold in memory, or when delta-rs cannot write the table: a
        table feature it lacks, such as row tracking turned on by hand (nothing is
        written), or object storage it failed on."""
        scope = self.scope(source)
        attempt = 1
        while True:
            try:
                table = target.open()
                if attempt == 1 and self.rows_in_scope(table, source) > DELTA_RS_MAX_TARGET_ROWS:
                    return Ran.TOO_LARGE
                merger = table.merge(
                    source, predicate=self.on + scope, source_alias="s", target_alias="t"
                )
                if self.update_when:
                    merger = merger.when_matched_update_all(predicate=self.update_when)
                merger.when_not_matched_insert_all().execute()
                return Ran.MERGED
            except Exception as e:
                unsupported = (
                    UNSUPPORTED in str(e).lower() or type(e).__name__ == "DeltaProtocolError"
                )
                if not unsupported and is_conflict(e) and attempt < ATTEMPTS:
                    time.sleep(0.2 * attempt)
                    attempt += 1
                    continue
                if not unsupported and target.local:
                    raise
                # Object storage delta-rs reached differently from Spark (a credential or
                # endpoint setting): Spark's file system can. Keyed rows make running the
                # MERGE again harmless, even if delta-rs committed before failing.
                log.warning(
                    "aiquery: Spark merges %s from now on: %s (%s)",
                    target.uri,
                    "delta-rs cannot write it" if unsupported else "delta-rs failed on it",
                    target.redact(f"{type(e).__name__}: {e}"),
                )
                return Ran.NOT_WRITABLE


def is_conflict(error: BaseException) -> bool:
    """A concurrent writer committed first (in Spark's or delta-rs' words): run again
    against the new version."""
    text = f"{type(error).__name__}: {error}".lower()
    return any(word in text for word in CONFLICTS)


USAGE = Merge(
    TABLE,
    "t.event_date = s.event_date AND t.request_id = s.request_id",
    # A placeholder (a started request) is completed by its finish, never the reverse.
    "t.latency_ms IS NULL AND s.latency_ms IS NOT NULL",
    key="request_id",
)
SAVED = Merge(
    SAVED_TABLE,
    "t.event_date = s.event_date AND t.saved_id = s.saved_id",
    None,
    key="saved_id",
)
CACHED = Merge(  # one row per key (a hash, in no order): the newest answer
    CACHE_TABLE,
    "t.endpoint_name = s.endpoint_name AND t.key = s.key",
    "s.created_at > t.created_at",
)
