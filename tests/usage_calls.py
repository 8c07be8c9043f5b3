"""A call site's usage header (`Call`) for tests that write spool files by hand."""

from __future__ import annotations

from typing import Any

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
