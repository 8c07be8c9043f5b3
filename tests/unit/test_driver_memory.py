"""The driver gives back what a usage flush allocated (`aiquery.usage.driver.memory`)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from aiquery.usage.driver import memory


def _run(code: str) -> subprocess.CompletedProcess[str]:
    """A fresh interpreter: allocators read their settings once per process."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def test_prepare_loads_deltalake_with_pages_returned_at_once_and_tells_no_one_else() -> None:
    """Against the installed wheel: its jemalloc reports the options it started with (at
    exit, with `stats_print`), and the variable is gone before any child process starts."""
    done = _run(
        f"""
        import os, subprocess, sys
        os.environ.pop({memory.DELTA_RS_ALLOCATOR!r}, None)
        from aiquery.usage.driver import memory
        memory.RETURN_AT_ONCE += ",stats_print:true"
        memory.prepare()
        assert "deltalake" in sys.modules
        child = subprocess.run(["env"], capture_output=True, text=True, check=True).stdout
        print({memory.DELTA_RS_ALLOCATOR!r} in os.environ or {memory.DELTA_RS_ALLOCATOR!r} in child)
        """
    )
    assert done.stdout.strip() == "False"
    assert "opt.dirty_decay_ms: 0" in done.stderr, done.stderr[:2000]
    assert "opt.muzzy_decay_ms: 0" in done.stderr


def test_prepare_leaves_a_value_of_your_own() -> None:
    done = _run(
        f"""
        import os, sys
        os.environ[{memory.DELTA_RS_ALLOCATOR!r}] = "narenas:2,stats_print:true"
        from aiquery.usage.driver import memory
        memory.prepare()
        print("deltalake" in sys.modules, os.environ[{memory.DELTA_RS_ALLOCATOR!r}])
        import deltalake
        """
    )
    assert done.stdout.split() == ["False", "narenas:2,stats_print:true"]
    assert "opt.dirty_decay_ms: 0 " not in done.stderr
    assert "opt.narenas: 2" in done.stderr, done.stderr[:2000]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RssAnon and glibc are Linux's")
def test_give_back_returns_freed_heap_to_the_system() -> None:
    # 200 MB of 2 KB blocks freed but for one in 64: no free space reaches the heap's top,
    # so glibc keeps it all resident until it is trimmed.
    done = _run(
        """
        from aiquery.usage.driver import memory

        def rss_mb():
            for line in open("/proc/self/status"):
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) // 1024

        blocks = [bytes(2000) for _ in range(100_000)]
        kept = blocks[::64]
        del blocks
        before = rss_mb()
        memory.give_back()
        print(before, rss_mb())
        """
    )
    before, after = map(int, done.stdout.split())
    assert before - after >= 150, (before, after)


# A block freed from its own mapping raises glibc's mmap threshold to its size; 100 blocks of
# 1 MiB then come from the heap, and freed under a block still in use, they stay resident.
_FRAGMENTS = """
    import os
    from aiquery.usage.driver import memory

    def rss_mb():
        for line in open("/proc/self/status"):
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) // 1024

    pinned = memory.keep_heap_small() if os.environ.get("PIN") == "1" else False
    big = b"x" * (8 << 20)
    del big
    before = rss_mb()
    blocks = [b"x" * (1 << 20) for _ in range(100)]
    kept = blocks[-1]
    del blocks
    print(pinned, rss_mb() - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's thresholds")
def test_keep_heap_small_unmaps_large_blocks_when_freed() -> None:
    def freed_but_resident(pin: str, **env: str) -> tuple[str, int]:
        done = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(_FRAGMENTS)],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
            env={**os.environ, "PIN": pin, **env},
        )
        pinned, grown = done.stdout.split()
        return pinned, int(grown)

    # The control: glibc's own thresholds keep ~99 MiB freed but resident.
    assert freed_but_resident("0")[1] >= 80
    pinned, grown = freed_but_resident("1")
    assert pinned == "True" and grown <= 10, grown
    # A threshold of the user's own is theirs: nothing pinned, and glibc does as told.
    pinned, grown = freed_but_resident("1", MALLOC_MMAP_THRESHOLD_=str(64 << 20))
    assert pinned == "False" and grown >= 80, grown
