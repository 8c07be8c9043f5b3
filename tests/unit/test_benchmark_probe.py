"""The benchmark's probe: which PySpark processes a measurement's workers' RSS and CPU count.

/proc is replaced by a table: a JVM with two daemons, as the benchmark's warm-up leaves them.
"""

from __future__ import annotations

import pytest

from benchmarks import throughput
from benchmarks.throughput import Probe, workload_names

JVM, DAEMON, IDLE_DAEMON = 100, 200, 300
BUSY = (201, 202)
MB = 1024  # VmHWM is in kB


class FakeProc:
    """ppid, own CPU seconds and peak RSS (kB) per pid; `alive` is what /proc lists."""

    def __init__(self) -> None:
        self.parent = {DAEMON: JVM, IDLE_DAEMON: JVM, **{w: DAEMON for w in BUSY}}
        self.cpu = dict.fromkeys([JVM, DAEMON, IDLE_DAEMON, *BUSY], 1.0)
        self.hwm = {DAEMON: 55 * MB, IDLE_DAEMON: 55 * MB, **{w: 205 * MB for w in BUSY}}
        self.alive = set(self.parent)

    def stat(self, pid: int) -> tuple[int, list[str]] | None:
        if pid not in self.alive:
            return None
        fields = ["0"] * 15
        fields[11] = str(round(self.cpu[pid] * throughput.CLK_TCK))  # utime
        return self.parent[pid], fields

    def tree(self) -> dict[str, list[int]]:
        return {"driver": [1], "jvm": [JVM], "workers": sorted(self.alive)}

    def cpu_by_role(self) -> dict[str, float]:
        return {"driver": 0.0, "jvm": 0.0}  # the workers' is the probe's own reading


@pytest.fixture
def proc(monkeypatch: pytest.MonkeyPatch) -> FakeProc:
    fake = FakeProc()
    monkeypatch.setattr(throughput, "_stat", fake.stat)
    monkeypatch.setattr(
        throughput, "_status_kb", lambda pid, key: fake.hwm[pid] if pid in fake.alive else 0
    )
    monkeypatch.setattr(throughput, "_reset_peak", lambda pid: None)
    monkeypatch.setattr(throughput, "_machine_busy_s", lambda: 0.0)
    return fake


class Processes:
    def __init__(self, fake: FakeProc) -> None:
        self.tree, self.cpu = fake.tree, fake.cpu_by_role


def measure(proc: FakeProc, work: float = 5.0, idle_daemon_cpu: float = 0.05) -> Probe:
    with Probe(Processes(proc), emulator_pid=999, period_s=60) as probe:  # type: ignore[arg-type]
        for pid in (DAEMON, *BUSY):
            proc.cpu[pid] += work
        proc.cpu[IDLE_DAEMON] += idle_daemon_cpu  # its select loop, over a long run
    return probe


def test_a_daemon_without_workers_of_its_own_is_not_counted(proc: FakeProc) -> None:
    """The idle pool's workers timed out before the measurement: their daemon stays at
    55 MB, and its own CPU moves. It is not this job's (E's 2,000,000 rows read +12%)."""
    probe = measure(proc)
    assert probe.rss_mb("workers") == 2 * 205 + 55  # the busy workers and their daemon
    assert IDLE_DAEMON in probe.idle


def test_an_idle_pool_with_workers_is_not_counted(proc: FakeProc) -> None:
    proc.parent.update({301: IDLE_DAEMON, 302: IDLE_DAEMON})
    proc.cpu.update({301: 1.0, 302: 1.0})
    proc.hwm.update({301: 71 * MB, 302: 71 * MB})
    proc.alive |= {301, 302}
    probe = measure(proc, idle_daemon_cpu=0.0)
    assert probe.rss_mb("workers") == 2 * 205 + 55
    assert {IDLE_DAEMON, 301, 302} <= probe.idle


def test_busy_workers_and_their_daemon_count(proc: FakeProc) -> None:
    probe = measure(proc, idle_daemon_cpu=0.0)
    assert probe.idle == {IDLE_DAEMON}
    assert probe.rss_mb("workers") == 465.0


def test_a_worker_that_exits_keeps_the_cpu_it_was_seen_using(proc: FakeProc) -> None:
    """PySpark's daemon ignores SIGCHLD, so a worker that exits takes its CPU times along:
    no parent's children times hold them. Such a worker counts up to its last reading; it
    had cut F's client CPU in a full run from ~0.2 to 0.033 ms/request."""
    with Probe(Processes(proc), emulator_pid=999, period_s=60) as probe:  # type: ignore[arg-type]
        for pid in (DAEMON, *BUSY):
            proc.cpu[pid] += 5.0
        probe._sample()  # what the probe's thread does every period_s
        proc.alive.discard(BUSY[0])  # the pool's idle timeout ends it
        proc.cpu[BUSY[1]] += 1.0
    assert probe.cpu["workers"] == pytest.approx(3 * 5.0 + 1.0)
    assert probe.idle == {IDLE_DAEMON}


def test_workloads_are_named_not_spelled_out_letter_by_letter() -> None:
    assert workload_names("A,B,C,D,E,F") == ["A", "B", "C", "D", "E", "F", "Fexp"]
    assert workload_names("fexp") == ["Fexp"]  # not F and E
    assert workload_names("D, F,Fexp") == ["D", "F", "Fexp"]
    with pytest.raises(SystemExit, match="no workload 'AB'"):
        workload_names("AB")
