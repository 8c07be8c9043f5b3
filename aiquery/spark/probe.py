"""The dry run's executor side: a stand-in for an AI call that counts instead of sending.

Each task builds its rows' requests exactly as the call would (`Rows`), counts them with
the engine's rules (`RequestTally`), asks the response cache which it knows (when the
cache is on) and, when de-duplicating, which inputs another task offered first (the dry
run's exchange on the coordinator), answers NULL of the call's type, and reports its
counts to the driver's coordinator (`POST /estimate`, by partition: a retried task
replaces its failed attempt).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any
from urllib import request as urlrequest

import pyarrow as pa
from pyspark import TaskContext

from aiquery.client.cache import CacheClient, Keys
from aiquery.client.sending import RequestTally
from aiquery.client.sharing import count_shared
from aiquery.endpoints.registry import Secret
from aiquery.errors import AiQueryError
from aiquery.spark import answers
from aiquery.spark.callspec import CallSpec
from aiquery.spark.coordinator import ESTIMATE_PATH
from aiquery.spark.rows import Rows
from aiquery.spark.udf import arrow_iter_udf


def probe(spec: CallSpec, url: str, token: Secret, key: str, index: int) -> Any:
    """A UDF of the call site's type that answers NULL and counts what the call would
    send, reporting it to the coordinator at `url` as its task ends."""
    result_type = spec.result_type
    endpoint = spec.endpoint

    def count(batches: Iterator[Any]) -> Iterator[pa.Array]:
        from aiquery.client.wire import wire_for

        rows = Rows(spec)
        tally = RequestTally(
            wire_for(endpoint, spec.params, spec.request_tags).batched,
            endpoint.max_batch_size,
            spec.settings.deduplicate,
        )
        claimant = uuid.uuid4().hex
        for batch in batches:
            values, _ = rows.inputs(batch)
            cached = _cached(spec, url, token, values)
            tally.add(values, cached, _shared(spec, url, token, claimant, values, cached))
            count = len(batch) if isinstance(batch, pa.Array) else len(batch[0])
            yield answers.to_arrow_array([None] * count, result_type)
        _report(url, token, key, index, tally)

    # The type hints tell PySpark the UDF's shape: one argument, or several (a tuple).
    if len(spec.inputs) == 1:

        def probe(batches: Iterator[pa.Array]) -> Iterator[pa.Array]:
            yield from count(batches)

        return arrow_iter_udf(probe, result_type)

    def probe_n(batches: Iterator[tuple[pa.Array, ...]]) -> Iterator[pa.Array]:
        yield from count(batches)

    return arrow_iter_udf(probe_n, result_type)


def _sendable(values: list[Any]) -> list[int]:
    return [
        i for i, v in enumerate(values) if v not in (None, "") and not isinstance(v, AiQueryError)
    ]


def _cached(spec: CallSpec, url: str, token: Secret, values: list[Any]) -> set[int]:
    """The rows of a batch the response cache has answers for (none when it is off)."""
    if spec.settings.cache is None:
        return set()

    async def lookup() -> dict[int, Any]:
        assert spec.settings.cache is not None
        client = CacheClient(url, token.value, spec.settings.cache, spec.endpoint, spec.params)
        try:
            return await client.answers(values, _sendable(values))
        finally:
            await client.close()

    return set(asyncio.run(lookup()))


def _shared(
    spec: CallSpec, url: str, token: Secret, claimant: str, values: list[Any], cached: set[int]
) -> set[int]:
    """The rows of a batch whose input another task offered first (when de-duplicating)."""
    share = spec.settings.share
    if share is None or not spec.settings.deduplicate:
        return set()
    key = Keys(spec.endpoint, spec.params)
    keys = {i: key(values[i]) for i in _sendable(values)}
    keys = {i: k for i, k in keys.items() if i not in cached}
    if not keys:
        return set()
    offered = sorted(set(keys.values()))
    elsewhere = asyncio.run(count_shared(url, token.value, share.exchange, claimant, offered))
    return {i for i, k in keys.items() if k in elsewhere}


def _report(url: str, token: Secret, key: str, index: int, tally: RequestTally) -> None:
    task = TaskContext.get()
    body = {
        "key": key,
        "call": index,
        "partition": task.partitionId() if task is not None else 0,
        "tally": {
            "rows": tally.rows,
            "refused": tally.refused,
            "cached": tally.cached,
            "deduplicated": tally.deduplicated,
            "requests": tally.requests,
            "input_tokens": tally.input_tokens,
        },
    }
    sent = urlrequest.Request(
        url.rstrip("/") + ESTIMATE_PATH,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token.value}", "Content-Type": "application/json"},
        method="POST",
    )
    with urlrequest.urlopen(sent, timeout=60) as answer:
        answer.read()
