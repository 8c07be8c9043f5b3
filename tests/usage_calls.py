"""Usage fixtures for tests that drive the committer by hand: a call site's usage header
(`Call`) to write spool files with, and committers flushing at once."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from aiquery.usage.driver.committer import UsageCommitter
from aiquery.usage.record import Call


def a_call(endpoint_name: str, **changes: Any) -> Call:
    """A loopback call site of `endpoint_name`; `changes` set any other field."""
    fields: dict[str, Any] = {
        "invocation_id": "i",
        "endpoint_name": endpoint_name,
        "endpoint_id": "x",
        "destination_type": "PAY_PER_TOKEN_FOUNDATION_MODEL",
        "destination_name": "x",
        "destination_model": "x",
        "requester": "tester",
        "api_type": "serving-endpoints/invocations",
        "url": "http://127.0.0.1/x",
        "user_agent": "aiquery-test",
        "request_tags": None,
        "spark_app_id": endpoint_name,
        **changes,
    }
    return Call(**fields)


def flush_at_once(committers: Iterable[UsageCommitter], timeout_s: float = 180) -> None:
    """Each committer flushes in its own thread, all at once; raises the first error."""
    errors: list[BaseException] = []

    def run(flusher: UsageCommitter) -> None:
        try:
            flusher.flush()
        except BaseException as e:  # re-raised below, in the test's thread
            errors.append(e)

    threads = [threading.Thread(target=run, args=(c,)) for c in committers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout_s)
    assert not any(thread.is_alive() for thread in threads), "a flush did not finish"
    if errors:
        raise errors[0]
