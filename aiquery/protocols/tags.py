"""Request tags: the `Databricks-Ai-Gateway-Request-Tags` header, validated the same way by the
client (before any request is sent) and by the emulator (400 on a bad header)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

TAGS_HEADER = "Databricks-Ai-Gateway-Request-Tags"
MAX_TAGS, MAX_TAG_KEY, MAX_TAG_VALUE = 20, 64, 256

_HINT = (
    f"{TAGS_HEADER} must be a JSON object of string keys to string values, "
    'e.g. {"project": "chatbot", "team": "ml-platform"}'
)


class RequestTagsError(ValueError):
    """Request tags are not a JSON object of at most 20 short string → string pairs."""


def parse_request_tags(raw: str) -> dict[str, str]:
    """Parse and validate a request-tags JSON text."""
    try:
        tags = json.loads(raw)
    except ValueError:
        raise RequestTagsError(f"{_HINT}; it is not valid JSON.") from None
    return validate_request_tags(tags)


def validate_request_tags(tags: Any) -> dict[str, str]:
    """Check a tags mapping: string keys and values, at most 20, keys ≤ 64 and values ≤ 256 chars."""
    if not isinstance(tags, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in tags.items()
    ):
        raise RequestTagsError(f"{_HINT}.")
    if len(tags) > MAX_TAGS:
        raise RequestTagsError(
            f"{TAGS_HEADER} has {len(tags)} tags; at most {MAX_TAGS} are allowed."
        )
    for key, value in tags.items():
        if not key or len(key) > MAX_TAG_KEY or len(value) > MAX_TAG_VALUE:
            raise RequestTagsError(
                f"{TAGS_HEADER}: tag keys must be 1-{MAX_TAG_KEY} characters and values at most "
                f"{MAX_TAG_VALUE}; {key[:70]!r} does not fit."
            )
    return dict(tags)


def encode_request_tags(tags: Mapping[str, str]) -> str:
    return json.dumps(dict(tags), separators=(",", ":"), ensure_ascii=False)
