"""What a PySpark worker process gets once, the first time it runs an aiquery call site.

PySpark's worker calls `importlib.invalidate_caches()` at the start of every task
(`pyspark.worker_util.setup_spark_files`). On Python 3.10 to 3.12 that makes every zip
importer on `sys.path` read its archive's whole directory again, eagerly (CPython gh-103200;
3.13 made it lazy). A worker's path holds pyspark.zip, py4j's zip and Spark's core jar: 16
importers, ~115 ms of CPU per task measured on a quiet 2-core machine (Python 3.11, PySpark
4.1), before the task's first request can go out, and more while the other task runs.

An archive that has not changed since an importer last read it (the same size, modification
time and inode) has the same directory, so that importer skips the re-read; a changed one is
read again, exactly as before. Only zip importers change, only on Python before 3.13.

What the process holds by then (PySpark, Arrow, aiquery and the daemon's heap it was forked
with, ~65,000 objects) lives as long as the process: it is moved out of the cyclic garbage
collector's sight (`gc.freeze`). A task's rows and answers survive long enough to reach the
oldest generation, so full collections are frequent, and each walked that whole heap again:
~50 ms of CPU each, ~0.1 s of each worker's ~1.5 s in workload D.

And after each task, the worker hands back the memory the task freed (`release_memory`).
"""

from __future__ import annotations

import ctypes
import functools
import gc
import os
import sys
import zipimport
from collections.abc import Callable
from typing import Any

import pyarrow as pa

_STAMP = "_aiquery_stamp"  # an importer's archive as it last read it: (mtime_ns, size, inode)


def prepare() -> None:
    """Set this worker process up; once per process, cheap afterwards."""
    if sys.version_info < (3, 13):
        _skip_unchanged_zip_rereads()
    _freeze_the_loaded_heap()


@functools.cache  # once per process
def _freeze_the_loaded_heap() -> None:
    gc.collect(1)  # what the imports just left behind, not frozen with the rest
    gc.freeze()


def _skip_unchanged_zip_rereads() -> None:
    eager = zipimport.zipimporter.invalidate_caches
    if getattr(eager, "_aiquery", False):
        return

    def invalidate_caches(self: zipimport.zipimporter) -> None:
        stamp = _stamp(self.archive)
        if stamp is not None and getattr(self, _STAMP, None) == stamp:
            return
        eager(self)
        setattr(self, _STAMP, stamp)

    invalidate_caches._aiquery = True  # type: ignore[attr-defined]
    # This task's `invalidate_caches` has just re-read every importer that exists: each
    # holds its archive as it is now.
    for finder in list(sys.path_importer_cache.values()):
        if isinstance(finder, zipimport.zipimporter):
            setattr(finder, _STAMP, _stamp(finder.archive))
    zipimport.zipimporter.invalidate_caches = invalidate_caches  # type: ignore[method-assign]


def _stamp(archive: str) -> tuple[Any, ...] | None:
    try:
        found = os.stat(archive)
    except OSError:
        return None
    return (found.st_mtime_ns, found.st_size, found.st_ino)


def release_memory() -> None:
    """After a task: return to the system the memory its batches and answers freed.

    glibc's malloc and Arrow's pool (mimalloc here) keep freed pages for reuse, so a worker
    stayed at its largest task's size while idle, and the next task's peak started from it:
    `python -m benchmarks.throughput --rows 20000 --workloads E,D --systems aiquery` read the
    workers' peak RSS at 488 and 535 MB in E before, 316 and 377 after (D: 587, 581).
    """
    pa.default_memory_pool().release_unused()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's `malloc_trim`, or None under another C library."""
    try:
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    return trim
