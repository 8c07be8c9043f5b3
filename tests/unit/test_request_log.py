"""The emulator's request log: what arrived since the last reset, each request once."""

from __future__ import annotations

import time

from aiquery.serving.requestlog import CLIENT_CLOSED, LoggedRequest, RequestLog


def logged(at: float, status: int | str = 200) -> LoggedRequest:
    return LoggedRequest(
        request_id=f"r{at}",
        time=at,
        route="serving-endpoints/invocations",
        endpoint="databricks-gpt-5-4",
        status=status,
        input_tokens=3,
        output_tokens=2,
        items=1,
        request_tags=None,
        user_agent=None,
    )


def test_a_request_from_before_a_reset_that_ends_after_it_is_not_this_logs() -> None:
    """A handler its client left is logged when it ends (while it waited for the model):
    after a reset it belongs to the log that was reset, not to the next one."""
    log = RequestLog()
    before = time.time() - 1.0
    log.add(logged(before))
    log.reset()
    log.add(logged(before, CLIENT_CLOSED))  # arrived before the reset, ended after it
    assert log.snapshot() == [] and log.summary() == {}
    log.add(logged(time.time()))
    assert [e["status"] for e in log.snapshot()] == [200]
    assert log.summary()["databricks-gpt-5-4"]["requests"] == 1
