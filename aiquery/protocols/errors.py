"""Error bodies of each protocol, and reading a server's message back out of one.

Databricks routes answer `{"error_code": ..., "message": ...}`; the native provider
routes of the gateway answer in that provider's own shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# HTTP status → Databricks error_code.
DATABRICKS_CODES = {
    400: "INVALID_PARAMETER_VALUE",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "RESOURCE_DOES_NOT_EXIST",
    413: "INVALID_PARAMETER_VALUE",
    429: "REQUEST_LIMIT_EXCEEDED",
    500: "INTERNAL_ERROR",
    503: "TEMPORARILY_UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}
_ANTHROPIC_TYPES = {
    **_OPENAI_TYPES,
    413: "request_too_large",
    500: "api_error",
    503: "overloaded_error",
}
_GEMINI_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def databricks_error(status: int, message: str) -> dict[str, Any]:
    return {"error_code": DATABRICKS_CODES.get(status, "INTERNAL_ERROR"), "message": message}


def openai_error(status: int, message: str) -> dict[str, Any]:
    kind = _OPENAI_TYPES.get(status, "server_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": kind}}


def anthropic_error(status: int, message: str) -> dict[str, Any]:
    kind = _ANTHROPIC_TYPES.get(status, "api_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


def gemini_error(status: int, message: str) -> dict[str, Any]:
    kind = _GEMINI_STATUS.get(status, "UNKNOWN")
    return {"error": {"code": status, "message": message, "status": kind}}


def read_error(body: Any) -> tuple[str | None, str | None]:
    """(code, message) from an error body of any protocol; (None, None) when it is none of them."""
    if not isinstance(body, Mapping):
        return None, None
    if "error_code" in body or ("message" in body and "error" not in body):
        return _str(body.get("error_code")), _str(body.get("message"))
    error = body.get("error")
    if isinstance(error, Mapping):
        code = error.get("code") if "status" not in error else error.get("status")
        return _str(error.get("type") if code is None else code), _str(error.get("message"))
    if isinstance(error, str):
        return None, error
    return None, None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None if value is None else str(value)
