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
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import pyarrow as pa

from aiquery.usage.driver.targets import Target
from aiquery.usage.record import CACHE_TABLE, SAVED_TABLE, TABLE

log = logging.getLogger("aiquery")

# delta-rs' MERGE holds the partitions it touches in memory (the join's build side: all
# columns, ~0.4 KB a usage row): a 50,000-row batch against a day of 2,000,000 rows took the
# driver from 0.46 to 1.28 GB. Past this many rows in the touched partitions, Spark's MERGE
# (executors, spilling) runs that batch instead: ~200 MB at most.
DELTA_RS_MAX_TARGET_ROWS = 500_000
CONFLICTS = ("concurrent", "conflict", "protocolchanged", "metadatachanged")  # lower case
UNSUPPORTED = "unsupported table features"  # delta-rs' words for a feature it cannot write
ATTEMPTS = 8


@dataclass(frozen=True, slots=True)
class Merge:
    """`MERGE INTO table AS t USING source AS s ON on [AND pruning]`: update the match when
    `update_when` holds (None: never), insert the rest."""

    table: str
    on: str
    update_when: str | None

    def sql(self, source: str, pruning: str = "") -> str:
        """Spark's statement, `source` a table expression."""
        update = (
            f"WHEN MATCHED AND {self.update_when} THEN UPDATE SET *\n" if self.update_when else ""
        )
        return (
            f"MERGE INTO {self.table} AS t\nUSING {source} AS s\nON {self.on}{pruning}\n"
            f"{update}WHEN NOT MATCHED THEN INSERT *\n"
        )

    def run_delta_rs(self, target: Target, source: pa.Table, pruning: str = "") -> bool:
        """The same MERGE by delta-rs, on the table at `target`; run again while a
        concurrent writer wins (its commit is read first). False when Spark's MERGE is the
        way: a table delta-rs cannot write (a table feature it lacks, such as row tracking
        turned on by hand; nothing is written), or object storage it failed on."""
        from deltalake import DeltaTable

        attempt = 1
        while True:
            try:
                table = DeltaTable(target.uri, storage_options=dict(target.options) or None)
                merger = table.merge(
                    source, predicate=self.on + pruning, source_alias="s", target_alias="t"
                )
                if self.update_when:
                    merger = merger.when_matched_update_all(predicate=self.update_when)
                merger.when_not_matched_insert_all().execute()
                return True
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
                return False


def too_large_for_delta_rs(target: Target, source: pa.Table) -> bool:
    """Whether the partitions `source` touches hold more than `DELTA_RS_MAX_TARGET_ROWS`
    rows (read from the table's log: no data file is opened)."""
    from deltalake import DeltaTable

    try:
        table = DeltaTable(target.uri, storage_options=dict(target.options) or None)
        columns = table.metadata().partition_columns
        actions = pa.table(table.get_add_actions(flatten=True))
    except Exception:  # the merge itself says what is wrong, and falls back if it must
        return False
    if actions.num_rows == 0:
        return False
    touched = set(zip(*(source.column(c).to_pylist() for c in columns), strict=True))
    keys = zip(*(actions.column(f"partition.{c}").to_pylist() for c in columns), strict=True)
    counts = actions.column("num_records").to_pylist()
    rows = sum(n or 0 for key, n in zip(keys, counts, strict=True) if key in touched)
    return rows > DELTA_RS_MAX_TARGET_ROWS


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
)
SAVED = Merge(SAVED_TABLE, "t.event_date = s.event_date AND t.saved_id = s.saved_id", None)
CACHED = Merge(  # one row per key: the newest answer
    CACHE_TABLE,
    "t.endpoint_name = s.endpoint_name AND t.key = s.key",
    "s.created_at > t.created_at",
)
