"""Databricks custom-model invocations: `dataframe_records` / `dataframe_split` / `inputs` → `predictions`.

Chat, completions and embeddings endpoints take the OpenAI-shaped bodies in
`aiquery.protocols.openai` on the same `/serving-endpoints/{name}/invocations` path.
"""

from __future__ import annotations

from typing import Any

from aiquery.protocols.common import (
    CustomRequest,
    CustomResult,
    ProtocolError,
    as_object,
    require,
)


def encode_request(request: CustomRequest) -> dict[str, Any]:
    return {"dataframe_records": [dict(r) for r in request.records]}


def decode_request(raw: Any) -> CustomRequest:
    """The input records of a custom-model request, in any of the accepted layouts."""
    body = as_object(raw, "the request body")
    if "dataframe_records" in body:
        records = require(body, "dataframe_records", list, "the request body")
        return CustomRequest(tuple(as_object(r, "dataframe_records[i]") for r in records))
    if "dataframe_split" in body:
        split = as_object(body["dataframe_split"], "dataframe_split")
        columns = require(split, "columns", list, "dataframe_split")
        rows = require(split, "data", list, "dataframe_split")
        if not all(isinstance(c, str) for c in columns):
            raise ProtocolError("dataframe_split.columns must be a list of strings")
        if not all(isinstance(row, list) and len(row) == len(columns) for row in rows):
            raise ProtocolError("each dataframe_split.data row must list one value per column")
        return CustomRequest(tuple(dict(zip(columns, row, strict=True)) for row in rows))
    for key in ("inputs", "instances"):
        if key in body:
            value = body[key]
            items = value if isinstance(value, list) else [value]
            return CustomRequest(tuple(v if isinstance(v, dict) else {"input": v} for v in items))
    raise ProtocolError(
        "a custom model request needs one of 'dataframe_records', 'dataframe_split', "
        "'inputs' or 'instances'"
    )


def encode_response(result: CustomResult) -> dict[str, Any]:
    return {"predictions": list(result.predictions)}


def decode_response(raw: Any, expected: int) -> CustomResult:
    body = as_object(raw, "the response body")
    predictions: list[Any] = require(body, "predictions", list, "the response body")
    if len(predictions) != expected:
        raise ProtocolError(f"expected {expected} predictions, the response has {len(predictions)}")
    return CustomResult(tuple(predictions))
