"""The response cache, executor side: what a cached answer is keyed by, how it is stored,
and how a task looks answers up.

The cache is a Delta table beside the usage table (`ai_gateway.response_cache`), opt-in
with `aiquery.cache.enabled`. Answers reach it the way usage does: each answered input
becomes a spool line that the driver's committer merges into the table, so a job that
died half way has its answers there at the next start. When a query starts, the driver
loads the answers its call site could use (the endpoint's, younger than
`aiquery.cache.maxAge`) and its coordinator answers the tasks' lookups (`POST /cache`),
one per input batch: a hit is a row answered without a request, and no usage row.

A key is the content hash of the endpoint, its upstream model, the generation parameters
(response format included) and the input as the engine sends it (an AI function's prompt
included), so a changed prompt, model or parameter is a miss, never a stale answer.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii  # what json.dumps does with a str
from typing import TYPE_CHECKING, Any

import numpy as np

from aiquery.client.sending import dedup_key
from aiquery.endpoints.catalog import canonical_name
from aiquery.endpoints.registry import Endpoint
from aiquery.errors import AiQueryError
from aiquery.usage.record import CacheEntry
from aiquery.usage.relay import CoordinatorRoute

if TYPE_CHECKING:
    from aiquery.client.http import Recorder

CACHE_PATH = "/cache"


@dataclass(frozen=True, slots=True)
class CacheSettings:
    """A call site's cache: the slice the driver loaded for it (picklable)."""

    slice_id: str


def cache_key(endpoint: Endpoint, params: Mapping[str, Any], value: Any) -> str:
    """The content hash of what makes an answer: endpoint, model, parameters and input."""
    body = json.dumps(
        [canonical_name(endpoint.name), endpoint.model, dict(params), value],
        sort_keys=True,
        separators=(",", ":"),
        default=_jsonable,
    )
    return hashlib.sha256(body.encode()).hexdigest()


class Keys:
    """`cache_key` for one call site's endpoint and parameters, made once: a text input then
    costs its JSON string and a copy of the hash so far (~2 µs, against ~10 µs for the whole
    JSON document; 10,000 rows were ~70 ms before a task's first request). The same keys."""

    def __init__(self, endpoint: Endpoint, params: Mapping[str, Any]) -> None:
        self._endpoint, self._params = endpoint, dict(params)
        # `[name,model,{params},<input>]`: everything before the input, hashed once.
        head = json.dumps(
            [canonical_name(endpoint.name), endpoint.model, self._params],
            sort_keys=True,
            separators=(",", ":"),
            default=_jsonable,
        )
        self._head = hashlib.sha256(head[:-1].encode() + b",")

    def __call__(self, value: Any) -> str:
        if not isinstance(value, str):
            return cache_key(self._endpoint, self._params, value)
        found = self._head.copy()
        found.update(encode_basestring_ascii(value).encode())
        found.update(b"]")
        return found.hexdigest()


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if hasattr(value, "__dataclass_fields__"):  # a Prompt, an Image
        return {
            "type": type(value).__name__,
            **{k: getattr(value, k) for k in value.__dataclass_fields__},
        }
    return repr(value)


def encode_answer(value: Any) -> str:
    """An answer as the cache stores it: JSON, with a vector as base64 float32."""
    if isinstance(value, np.ndarray):
        data = np.ascontiguousarray(value, dtype=np.float32).tobytes()
        return json.dumps({"f32": base64.b64encode(data).decode()})
    return json.dumps({"v": value}, separators=(",", ":"))


def decode_answer(text: str) -> Any:
    stored = json.loads(text)
    if "f32" in stored:
        return np.frombuffer(base64.b64decode(stored["f32"]), dtype=np.float32)
    return stored["v"]


class CacheUnavailableError(AiQueryError):
    """The driver's cache could not be reached."""


class CacheClient:
    """One task's lookups in its call site's slice, through the driver's coordinator."""

    def __init__(
        self,
        url: str,
        token: str,
        settings: CacheSettings,
        endpoint: Endpoint,
        params: Mapping[str, Any],
        *,
        deadline_s: float = 120.0,
    ) -> None:
        self.settings = settings
        self.key = Keys(endpoint, params)
        self._route = CoordinatorRoute(
            url,
            CACHE_PATH,
            token,
            what="the response cache's answers",
            error=CacheUnavailableError,
            deadline_s=deadline_s,
            timeout_s=60.0,
        )

    async def answers(self, inputs: Sequence[Any], rows: Sequence[int]) -> dict[int, Any]:
        """The answers the cache holds for these `rows` of `inputs`, decoded, by row."""
        by_input: dict[Hashable, str] = {}  # identical inputs hash once
        keys = {}
        for i in rows:
            same = dedup_key(inputs[i])
            key = by_input.get(same)
            if key is None:
                key = by_input[same] = self.key(inputs[i])
            keys[i] = key
        hits = await self.lookup(list(by_input.values()))
        return {i: decode_answer(hits[k]) for i, k in keys.items() if k in hits}

    def keep(self, recorder: Recorder, inputs: Sequence[Any], values: Sequence[Any]) -> None:
        """Spool each answer for the cache (the committer merges them into its table)."""
        now = time.time()
        for value, answer in zip(inputs, values, strict=True):
            recorder.cached(CacheEntry(self.key(value), encode_answer(answer), now))

    async def lookup(self, keys: Sequence[str]) -> dict[str, str]:
        """The stored answers of those `keys` the cache has (encoded)."""
        if not keys:
            return {}
        answer = await self._route.post({"slice": self.settings.slice_id, "keys": list(keys)})
        hits: dict[str, str] = answer["hits"]
        return hits

    async def close(self) -> None:
        await self._route.close()
