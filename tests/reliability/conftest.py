"""Fixtures for the emulator tests in this directory (test_emulator_auth.py, test_emulator_abuse.py).

Those modules import their shared helpers (`raw_http`) by plain name. pytest's default
"prepend" import mode already puts this directory on sys.path before importing them; the
insert below keeps that true under `--import-mode=importlib` too.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from aiohttp.http_exceptions import HttpProcessingError

HERE = str(Path(__file__).parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    """One keep-alive client per test module (building an httpx client per call is slow)."""
    with httpx.Client(timeout=10) as client:
        yield client


@pytest.fixture
def handler_crashes(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    """Exceptions the server logged from inside a handler (aiohttp's HTTP parse errors aside)."""
    caplog.set_level(logging.ERROR, logger="aiohttp.server")

    def crashes() -> list[str]:
        return [
            f"{r.getMessage()}: {r.exc_info[1]!r}" if r.exc_info else r.getMessage()
            for r in caplog.records
            if r.name == "aiohttp.server"
            and r.levelno >= logging.ERROR
            and not (r.exc_info and isinstance(r.exc_info[1], HttpProcessingError))
        ]

    return crashes
