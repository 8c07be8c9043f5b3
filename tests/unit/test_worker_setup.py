"""A worker's zip importers re-read an archive at `importlib.invalidate_caches()` (PySpark's
worker calls it at every task's start) only when the archive changed."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import zipfile
import zipimport
from pathlib import Path

import pytest

from aiquery.spark import worker_setup


def _archive(path: Path, modules: dict[str, str]) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for name, source in modules.items():
            archive.writestr(f"{name}.py", source)


def test_an_unchanged_archive_is_not_read_again_and_a_changed_one_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = tmp_path / "libs.zip"
    _archive(archive, {"aiq_zip_first": "VALUE = 1\n"})
    # Undone after the test: the path, the importers, the modules and the patched method.
    monkeypatch.syspath_prepend(str(archive))
    monkeypatch.setattr(sys, "path_importer_cache", dict(sys.path_importer_cache))
    monkeypatch.setattr(
        zipimport.zipimporter, "invalidate_caches", zipimport.zipimporter.invalidate_caches
    )
    for name in ("aiq_zip_first", "aiq_zip_second"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    assert importlib.import_module("aiq_zip_first").VALUE == 1
    reads: list[str] = []
    read_directory = zipimport._read_directory  # type: ignore[attr-defined]

    def counted(path: str) -> object:
        reads.append(path)
        return read_directory(path)

    monkeypatch.setattr(zipimport, "_read_directory", counted)

    worker_setup._skip_unchanged_zip_rereads()
    worker_setup._skip_unchanged_zip_rereads()  # once is enough: not wrapped twice
    importlib.invalidate_caches()
    importlib.invalidate_caches()
    assert str(archive) not in reads  # unchanged: its directory is not read again

    _archive(archive, {"aiq_zip_first": "VALUE = 1\n", "aiq_zip_second": "VALUE = 2\n"})
    later = archive.stat().st_mtime_ns + 2_000_000_000
    os.utime(archive, ns=(later, later))
    importlib.invalidate_caches()
    # Changed: read again, so the module added to it is found (a stale directory would not).
    assert importlib.import_module("aiq_zip_second").VALUE == 2


def test_what_a_worker_holds_at_its_first_task_is_frozen_once_and_its_garbage_still_goes() -> None:
    """In a process of its own: freezing the test run's heap would hide it from the GC."""
    script = """
import gc, weakref
from aiquery.spark import worker_setup

class Node:
    pass

kept = [Node() for _ in range(1000)]
worker_setup.prepare()
frozen = gc.get_freeze_count()
task = [Node() for _ in range(100)]  # the next task's objects
worker_setup.prepare()  # the next task: nothing frozen again
cycle = Node()
cycle.me = cycle
gone = weakref.ref(cycle)
del cycle
gc.collect()
print(frozen > 1000, gc.get_freeze_count() == frozen, gone() is None)
"""
    ran = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    assert ran.stdout.split() == ["True", "True", "True"]


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        kb = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    return kb / 1024


def test_release_memory_returns_the_freed_holes_of_the_heap_to_the_system() -> None:
    """Answers freed among ones still held leave holes that malloc keeps: a worker stayed at
    its largest task's size. `release_memory` gives the whole free pages back."""
    assert worker_setup._malloc_trim() is not None  # glibc, as on every Linux this runs on
    blocks = [bytes(4096) for _ in range(60_000)]  # ~240 MB, each through malloc
    kept = blocks[::16]  # one in 16 stays: the heap's top is in use, its holes are free
    del blocks
    before = _rss_mb()
    worker_setup.release_memory()
    after = _rss_mb()
    assert before - after > 150, (before, after)
    assert len(kept) == 3_750
