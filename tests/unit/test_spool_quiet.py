"""When the driver's background committer takes the spool as stopped (a job just ended)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from aiquery.usage.driver.spool import quiet


def written(path: Path, seconds_ago: float) -> Path:
    path.write_text("{}\n")
    at = time.time() - seconds_ago
    os.utime(path, (at, at))
    return path


def test_closed_files_are_quiet_once_nothing_was_written_for_idle_s(tmp_path: Path) -> None:
    old = written(tmp_path / "a-00001.jsonl", 30)
    assert quiet([old], idle_s=2, open_idle_s=60)
    new = written(tmp_path / "b-00001.jsonl", 0.5)
    assert not quiet([old, new], idle_s=2, open_idle_s=60)


def test_a_file_still_open_keeps_a_paused_job_from_looking_finished(tmp_path: Path) -> None:
    """A task with requests still in flight (a long tail) writes nothing for seconds; its
    file stays open until the task ends."""
    done = written(tmp_path / "a-00001.jsonl", 30)
    running = written(tmp_path / "b-00001.open", 10)
    assert not quiet([done, running], idle_s=2, open_idle_s=60)
    closed = running.rename(running.with_suffix(".jsonl"))
    assert quiet([done, closed], idle_s=2, open_idle_s=60)


def test_a_file_a_dead_writer_left_open_stops_counting_after_open_idle_s(tmp_path: Path) -> None:
    abandoned = written(tmp_path / "a-00001.open", 90)
    assert quiet([abandoned], idle_s=2, open_idle_s=60)


def test_a_file_gone_meanwhile_is_said(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        quiet([tmp_path / "renamed-00001.open"], idle_s=2, open_idle_s=60)
