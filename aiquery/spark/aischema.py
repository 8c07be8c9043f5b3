"""The checks of the AI functions' constant arguments: labels, options and ai_extract's schema.

Databricks documents the limits (v1 ai_classify: 2-20 labels; v2: 2-500 labels of 1-100
characters, descriptions up to 1,000; instructions up to 20,000 characters; ai_extract's
schema: the types string, integer, number, boolean, enum, object and array, the keywords
type, description, items, properties and labels, no nested arrays, depth at most 7, at most
128 properties). It names no error class for breaking them: aiquery's are
AI_FUNCTION_INVALID_LABELS, AI_FUNCTION_INVALID_OPTIONS and AI_FUNCTION_INVALID_SCHEMA.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from aiquery.errors import AnalysisError

MAX_INSTRUCTIONS = 20_000
_TYPES = ("string", "integer", "number", "boolean", "enum", "object", "array")
_KEYWORDS = frozenset({"type", "description", "items", "properties", "labels"})
_NAME = re.compile(r"[^\W_][\w.\-]{0,149}")
_MAX_DEPTH, _MAX_PROPERTIES = 7, 128
# Option → the functions that take it; booleans are 'true' or 'false' (a MAP<STRING, STRING>).
_OPTIONS = {
    "version": ("ai_classify", "ai_extract"),
    "instructions": ("ai_classify", "ai_extract"),
    "multilabel": ("ai_classify",),
    "enable_confidence_scores": ("ai_classify", "ai_extract"),
    "enable_rationales": ("ai_classify",),
    "enable_citations": ("ai_extract",),
}
_FLAGS = {
    "multilabel": "multilabel",
    "enable_confidence_scores": "confidence",
    "enable_rationales": "rationales",
    "enable_citations": "citations",
}


def _labels_error(detail: str) -> AnalysisError:
    return AnalysisError(detail, error_class="AI_FUNCTION_INVALID_LABELS")


def _options_error(detail: str) -> AnalysisError:
    return AnalysisError(detail, error_class="AI_FUNCTION_INVALID_OPTIONS")


def _schema_error(detail: str) -> AnalysisError:
    return AnalysisError(detail, error_class="AI_FUNCTION_INVALID_SCHEMA")


def labels_v1(function: str, labels: Any, low: int, high: int) -> list[str]:
    """An ARRAY<STRING> of `low`-`high` distinct, non-empty labels."""
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise _labels_error(
            f"{function}'s labels must be a constant ARRAY<STRING> without NULLs, e.g. "
            "array('urgent', 'not urgent')."
        )
    if not low <= len(labels) <= high:
        raise _labels_error(f"{function} takes {low} to {high} labels, got {len(labels)}.")
    _check_names(function, labels)
    return list(labels)


def _check_names(function: str, labels: list[str]) -> None:
    bad = [x for x in labels if not 1 <= len(x.strip()) <= 100]
    if bad:
        raise _labels_error(f"{function}'s labels must be 1 to 100 characters, not {bad[0]!r}.")
    if len(set(labels)) != len(labels):
        twice = next(x for x in labels if labels.count(x) > 1)
        raise _labels_error(f"{function}'s labels must be distinct; {twice!r} is given twice.")


def labels_v2(labels: Any) -> tuple[list[str], dict[str, str]]:
    """ai_classify's v2 labels, a JSON array of names or a `{name: description}` object:
    the names, and the descriptions that are not empty."""
    parsed = labels
    if isinstance(labels, str):
        try:
            parsed = json.loads(labels)
        except ValueError:
            parsed = None
    if isinstance(parsed, list) and all(isinstance(x, str) for x in parsed):
        names, descriptions = list(parsed), {}
    elif isinstance(parsed, Mapping) and all(isinstance(v, str) for v in parsed.values()):
        names, descriptions = list(parsed), {k: v for k, v in parsed.items() if v}
    else:
        raise _labels_error(
            "ai_classify's labels must be an ARRAY<STRING>, or a string holding a JSON array of "
            'labels (\'["urgent", "not_urgent"]\') or a JSON object of label descriptions '
            '(\'{"billing": "Payment issues", ...}\').'
        )
    if not 2 <= len(names) <= 500:
        raise _labels_error(f"ai_classify takes 2 to 500 labels, got {len(names)}.")
    _check_names("ai_classify", names)
    long = [k for k, v in descriptions.items() if len(v) > 1000]
    if long:
        raise _labels_error(f"the description of label {long[0]!r} is over 1,000 characters.")
    return names, descriptions


def check_options(function: str, options: Any) -> dict[str, Any]:
    """The options MAP (Databricks' keys; camelCase spellings too) as task options, with the
    version the result has: '2.1' when scores, rationales or citations are asked for."""
    if options is None:
        options = {}
    if not isinstance(options, Mapping):
        raise _options_error(
            f"{function}'s options must be a constant MAP<STRING, STRING>, e.g. "
            "map('instructions', '...', 'multilabel', 'true')."
        )
    known = {k.replace("_", ""): k for k, fns in _OPTIONS.items() if function in fns}
    checked: dict[str, Any] = {"version": None}
    for key, value in options.items():
        name = known.get(str(key).replace("_", "").lower())
        if name is None:
            raise _options_error(
                f"{function} has no option {key!r}. Valid: {', '.join(sorted(known.values()))}."
            )
        if name in _FLAGS:
            checked[_FLAGS[name]] = _flag(function, name, value)
        elif name == "instructions":
            if not isinstance(value, str) or len(value) > MAX_INSTRUCTIONS:
                raise _options_error(
                    f"{function}'s instructions must be a string of at most {MAX_INSTRUCTIONS:,} characters."
                )
            checked["instructions"] = value
        else:
            if str(value) not in ("2.0", "2.1", "2", "2.0.0"):
                raise _options_error(f"{function}'s version must be '2.0' or '2.1', not {value!r}.")
            checked["version"] = "2.1" if str(value) == "2.1" else "2.0"
    newer = any(checked.get(f) for f in ("confidence", "rationales", "citations"))
    if checked["version"] == "2.0" and newer:
        raise _options_error(
            f"{function}'s confidence scores, rationales and citations need version '2.1'."
        )
    checked["version"] = checked["version"] or ("2.1" if newer else "2.0")
    return checked


def _flag(function: str, name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text not in ("true", "false"):
        raise _options_error(
            f"{function}'s option {name} must be 'true' or 'false', not {value!r}."
        )
    return text == "true"


def check_user_schema(schema: Any) -> dict[str, Any]:
    """ai_extract's v2 schema (a JSON array of field names, or an object in its user-schema
    format) as `{name: {"type": ..., ...}}`."""
    parsed = schema
    if isinstance(schema, str):
        try:
            parsed = json.loads(schema)
        except ValueError:
            raise _schema_error("ai_extract's schema is not valid JSON.") from None
    if isinstance(parsed, list):
        if not parsed or not all(isinstance(x, str) for x in parsed):
            raise _schema_error("ai_extract's schema array must list field names (strings).")
        parsed = {name: {"type": "string"} for name in parsed}
    if not isinstance(parsed, Mapping) or not parsed:
        raise _schema_error(
            "ai_extract's schema must be a JSON array of field names or a JSON object of fields, "
            'e.g. \'{"invoice_id": {"type": "string"}, "total": {"type": "number"}}\'.'
        )
    count = [0]
    return {name: _check_field(name, spec, 1, False, count) for name, spec in parsed.items()}


def _check_field(
    path: str, spec: Any, depth: int, in_array: bool, count: list[int]
) -> dict[str, Any]:
    name = path.rsplit(".", 1)[-1]
    if not _NAME.fullmatch(name):
        raise _schema_error(
            f"field name {name!r}: 1-150 letters, digits, '_', '.' or '-', not starting with '_'."
        )
    count[0] += 1
    if count[0] > _MAX_PROPERTIES:
        raise _schema_error(f"the schema has more than {_MAX_PROPERTIES} properties.")
    if depth > _MAX_DEPTH:
        raise _schema_error(f"field {path!r} is nested deeper than {_MAX_DEPTH} levels.")
    if not isinstance(spec, Mapping):
        raise _schema_error(f'field {path!r} must be an object such as {{"type": "string"}}.')
    unknown = sorted(set(spec) - _KEYWORDS)
    if unknown:
        raise _schema_error(
            f"Unsupported keyword(s) at {path!r}: {', '.join(unknown)}. Supported: "
            f"{', '.join(sorted(_KEYWORDS))}."
        )
    kind = spec.get("type")
    if kind not in _TYPES:
        raise _schema_error(
            f"Unsupported type {kind!r} at {path!r}. Supported types: {', '.join(_TYPES)}."
        )
    checked: dict[str, Any] = {"type": kind}
    if isinstance(spec.get("description"), str):
        checked["description"] = spec["description"]
    if kind == "enum":
        labels = spec.get("labels")
        if (
            not isinstance(labels, list)
            or not labels
            or not all(isinstance(x, str) for x in labels)
        ):
            raise _schema_error(f"enum field {path!r} needs 'labels', a list of strings.")
        if len(labels) > 500 or sum(map(len, labels)) > 7500:
            raise _schema_error(f"enum field {path!r} has over 500 labels or 7,500 characters.")
        checked["labels"] = list(labels)
    elif kind == "array":
        if in_array:
            raise _schema_error(f"field {path!r}: arrays may not be nested in arrays.")
        if not isinstance(spec.get("items"), Mapping):
            raise _schema_error(f"array field {path!r} needs 'items', one field schema.")
        checked["items"] = _check_field(f"{path}.items", spec["items"], depth + 1, True, count)
    elif kind == "object":
        properties = spec.get("properties")
        if not isinstance(properties, Mapping) or not properties:
            raise _schema_error(f"object field {path!r} needs non-empty 'properties'.")
        checked["properties"] = {
            n: _check_field(f"{path}.{n}", s, depth + 1, in_array, count)
            for n, s in properties.items()
        }
    return checked
