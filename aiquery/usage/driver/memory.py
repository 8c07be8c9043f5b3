"""The driver's memory across usage flushes.

A long job's committer merges a batch every few seconds during a flush, and a flush every
minute. What each MERGE allocates is freed, but three allocators in the driver keep freed
pages resident, and in a job of hours the driver's footprint grew with every flush:

- delta-rs' own jemalloc keeps a freed page for ten seconds. The next MERGE of the same
  flush often runs on another thread and arena, so it allocates afresh beside them;
- glibc keeps the Python side's freed heap (the batch's rows) in per-thread arenas;
- Arrow's pool keeps what the batch's table used.

`prepare` loads `deltalake` with its allocator told to return freed pages at once, and
`give_back` hands the others' free pages back after each flush (milliseconds). Returning
pages at once makes a 50,000-row MERGE ~0.1-0.2 s slower; in workload E's 2,000,000-row job
the driver sat at 400-450 MB between flushes instead of 580-690 MB.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import sys
from collections.abc import Callable

# Read once by the `deltalake` wheel's jemalloc (its symbols prefixed `_rjem_`), at its
# first allocation: the import.
DELTA_RS_ALLOCATOR = "_RJEM_MALLOC_CONF"
RETURN_AT_ONCE = "dirty_decay_ms:0,muzzy_decay_ms:0"


def prepare() -> None:
    """Import `deltalake` with its freed pages going back at once. The variable is set for
    the import alone: Spark's JVM and Python workers, started later from this process, and
    any other jemalloc reading the same name (polars) keep their defaults. A value of your
    own is left as it is; once `deltalake` is loaded there is nothing left to set."""
    if "deltalake" in sys.modules or DELTA_RS_ALLOCATOR in os.environ:
        return
    os.environ[DELTA_RS_ALLOCATOR] = RETURN_AT_ONCE
    try:
        import deltalake  # noqa: F401
    finally:
        del os.environ[DELTA_RS_ALLOCATOR]


def give_back() -> None:
    """Return the free pages glibc's arenas and Arrow's pool hold to the system."""
    import pyarrow as pa

    pa.default_memory_pool().release_unused()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    with contextlib.suppress(OSError, AttributeError):
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim  # the process's own libc
        return trim
    return None  # musl has no malloc_trim
