"""Generating a JSON instance that validates against a JSON schema, from a prompt.

Used by the local chat model for `response_format: json_schema`: strings carry the answer
(array items carry the text's sentences or keywords), enums pick the option sharing most
words with the prompt, numbers and booleans come from a hash of the prompt and the
field's path within the schema's bounds.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from aiquery.serving.wording import SENTENCE_END, WORD, cap_words, digest, keywords

# Recursive schemas: past _SHALLOW_DEPTH only required properties and minItems items are
# generated, so a self-referencing tree bottoms out; past _MAX_DEPTH generation gives up.
_SHALLOW_DEPTH = 8
_MAX_DEPTH = 32

_WORDISH_KEYS = ("tag", "word", "label", "name", "entit", "topic", "categor")
_FORMATS = {
    "date": "2024-01-01",
    "date-time": "2024-01-01T00:00:00Z",
    "email": "user@example.com",
    "uri": "https://example.com/",
}
_TYPES = ("object", "array", "string", "integer", "number", "boolean", "null")


def _count(value: Any) -> int | None:
    """`value` if it is a non-negative JSON integer, else None."""
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
    return value if ok else None


def _number(value: Any) -> float | None:
    """`value` as a finite bound, or None if it is not one (booleans are draft-4 flags)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _merge(parts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Combine subschemas that must all hold: union properties and required; last wins."""
    out: dict[str, Any] = {}
    for part in parts:
        for key, value in part.items():
            old = out.get(key)
            if key not in out:
                out[key] = value
            elif key == "properties" and isinstance(old, Mapping) and isinstance(value, Mapping):
                both = {n: {"allOf": [old[n], s]} if n in old else s for n, s in value.items()}
                out[key] = {**old, **both}
            elif key == "required" and isinstance(old, list) and isinstance(value, list):
                out[key] = list(dict.fromkeys([*old, *value]))
            else:
                out[key] = value
    return out


def _type_of(schema: Mapping[str, Any]) -> str:
    declared = schema.get("type")
    if isinstance(declared, list):
        named = [t for t in declared if t in _TYPES]
        declared = next((t for t in named if t != "null"), "null" if named else None)
    if declared in _TYPES:
        return str(declared)
    if "properties" in schema or "required" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    return "string"


def _bounds(schema: Mapping[str, Any], span: float = 100.0) -> tuple[float, bool, float, bool]:
    """(low, low is exclusive, high, high is exclusive); a missing side is `span` away."""
    low, high = _number(schema.get("minimum")), _number(schema.get("maximum"))
    low_ex = high_ex = False
    ex_low = _number(schema.get("exclusiveMinimum"))
    ex_high = _number(schema.get("exclusiveMaximum"))
    if ex_low is not None and (low is None or ex_low >= low):
        low, low_ex = ex_low, True
    elif schema.get("exclusiveMinimum") is True:  # draft 4: a flag on `minimum`
        low_ex = low is not None
    if ex_high is not None and (high is None or ex_high <= high):
        high, high_ex = ex_high, True
    elif schema.get("exclusiveMaximum") is True:
        high_ex = high is not None
    if low is None:
        low = 0.0 if high is None else high - span
    if high is None:
        high = low + span
    return low, low_ex, high, high_ex


def _fit_length(text: str, low: int, high: int | None, filler: Sequence[str]) -> str:
    if high is not None and len(text) > high:
        cut = text[:high]
        space = cut.rfind(" ")
        if text[high] != " " and space >= max(low, 1):
            cut = cut[:space]
        text = cut.rstrip() if len(cut.rstrip()) >= low else cut
    if len(text) < low:
        base = " ".join([text, *filler]).strip() or "x"
        text = " ".join([base] * (low // len(base) + 1))[: max(low, len(text))]
    return text


class InstanceBuilder:
    """Builds one JSON instance of a schema from a prompt, deterministically."""

    def __init__(self, root: Mapping[str, Any], prompt: str, source: str, answer: str) -> None:
        self._root = root
        self._seed = prompt
        self._answer = answer
        self._source_tokens = frozenset(WORD.findall(source.lower()))
        self._prompt_tokens = frozenset(WORD.findall(prompt.lower()))
        normalised = " ".join(source.split())
        self._words = normalised.split() or answer.split()
        self._keywords = keywords(source) or keywords(answer) or [answer]
        sentences = SENTENCE_END.split(normalised) if normalised else [answer]
        self._sentences = [cap_words(s) for s in sentences]

    def build(self) -> Any:
        return self._gen(self._root, "$", "", 0, None)

    def _gen(
        self, schema: Any, path: str, key: str, depth: int, row: int | None, item: bool = False
    ) -> Any:
        """`row` is the index of the nearest enclosing array item; `item` is True on it."""
        if depth > _MAX_DEPTH or schema is False:
            return None
        if not isinstance(schema, Mapping):
            return self._string({}, path, key, row)
        schema = self._deref(schema)
        for keyword in ("allOf", "anyOf", "oneOf"):
            parts = schema.get(keyword)
            if isinstance(parts, list) and parts:
                rest = {k: v for k, v in schema.items() if k != keyword}
                subs = [self._deref(p) for p in parts if isinstance(p, Mapping)]
                if keyword != "allOf":  # the first branch that is not just null
                    subs = [s for s in subs if _type_of(s) != "null"][:1] or subs[:1]
                return self._gen(_merge([rest, *subs]), path, key, depth + 1, row, item)
        if "const" in schema:
            return schema["const"]
        enum = schema.get("enum")
        if isinstance(enum, list) and enum:
            return self._choose(enum, path, row if item else None)
        kind = _type_of(schema)
        if kind == "object":
            return self._object(schema, path, depth, row)
        if kind == "array":
            return self._array(schema, path, key, depth)
        if kind in ("integer", "number"):
            return self._numeric(schema, path, kind == "integer")
        if kind == "boolean":
            return bool(self._hash(path, "bool") & 1)
        if kind == "null":
            return None
        return self._string(schema, path, key, row)

    def _hash(self, *parts: str) -> int:
        return digest(self._seed, *parts)

    def _deref(self, schema: Mapping[str, Any]) -> Mapping[str, Any]:
        for _ in range(_MAX_DEPTH):
            if "$ref" not in schema:
                return schema
            rest = {k: v for k, v in schema.items() if k != "$ref"}
            schema = {**self._resolve(schema["$ref"]), **rest}
        return {}

    def _resolve(self, ref: Any) -> Mapping[str, Any]:
        """Follow a local JSON pointer (`#`, `#/$defs/X`); anything else resolves to `{}`."""
        if not isinstance(ref, str) or not (ref == "#" or ref.startswith("#/")):
            return {}
        node: Any = self._root
        for raw in ref[2:].split("/") if ref != "#" else []:
            part = raw.replace("~1", "/").replace("~0", "~")
            if not isinstance(node, Mapping) or part not in node:
                return {}
            node = node[part]
        return node if isinstance(node, Mapping) else {}

    def _choose(self, options: list[Any], path: str, position: int | None) -> Any:
        def rank(option: Any) -> tuple[int, int, int]:
            text = option if isinstance(option, str) else json.dumps(option, sort_keys=True)
            words = set(WORD.findall(text.lower()))
            tie = self._hash(path, "enum", text)
            return -len(words & self._source_tokens), -len(words & self._prompt_tokens), tie

        ranked = sorted(options, key=rank)
        return ranked[(position or 0) % len(ranked)]

    def _object(self, schema: Mapping[str, Any], path: str, depth: int, row: int | None) -> Any:
        props = schema.get("properties")
        props = props if isinstance(props, Mapping) else {}
        required = schema.get("required")
        required = [n for n in required if isinstance(n, str)] if isinstance(required, list) else []
        shallow = depth > _SHALLOW_DEPTH
        out: dict[str, Any] = {}
        for name, sub in props.items():
            if not shallow or name in required:
                out[str(name)] = self._gen(sub, f"{path}.{name}", str(name), depth + 1, row)
        extra = schema.get("additionalProperties")
        extra_schema = extra if isinstance(extra, Mapping) else {}
        for name in [n for n in required if n not in out]:
            out[name] = self._gen(extra_schema, f"{path}.{name}", name, depth + 1, row)
        return out

    def _array(self, schema: Mapping[str, Any], path: str, key: str, depth: int) -> list[Any]:
        prefix, items = schema.get("prefixItems"), schema.get("items", {})
        if isinstance(items, list):  # draft-4..7 tuple form
            prefix, items = items, schema.get("additionalItems", {})
        prefix = prefix if isinstance(prefix, list) else []
        low, high = _count(schema.get("minItems")) or 0, _count(schema.get("maxItems"))
        count = low if depth > _SHALLOW_DEPTH else max(low, 1 + self._hash(path, "n") % 3)
        count = count if high is None else min(count, high)
        if items is False:
            count = min(count, len(prefix))
        schemas = [*prefix[:count], *[items] * (count - len(prefix))]
        return [
            self._gen(sub, f"{path}[{i}]", key, depth + 1, i, True) for i, sub in enumerate(schemas)
        ]

    def _string(self, schema: Mapping[str, Any], path: str, key: str, row: int | None) -> str:
        fmt = schema.get("format")
        if fmt == "uuid":
            return str(uuid.UUID(int=digest(self._seed, path, size=16), version=4))
        if isinstance(fmt, str) and fmt in _FORMATS:
            return _FORMATS[fmt]
        if row is None:
            text = self._answer
        elif len(self._sentences) < 2 or any(w in key.lower() for w in _WORDISH_KEYS):
            text = self._keywords[row % len(self._keywords)]
        else:
            text = self._sentences[row % len(self._sentences)]
        low = _count(schema.get("minLength")) or 0
        return _fit_length(text, low, _count(schema.get("maxLength")), self._words)

    def _numeric(self, schema: Mapping[str, Any], path: str, integer: bool) -> float | int:
        lo, lo_ex, hi, hi_ex = _bounds(schema)
        h = self._hash(path, "number")
        step = _count(schema.get("multipleOf"))
        if integer or step:
            low = math.floor(lo) + 1 if lo_ex else math.ceil(lo)
            high = math.ceil(hi) - 1 if hi_ex else math.floor(hi)
            first, last = (-(-low // step), high // step) if step else (low, high)
            return (first + h % (last - first + 1)) * (step or 1) if first <= last else low
        value = round(lo + (h / 2.0**64) * (hi - lo), 2)
        inside = (value > lo if lo_ex else value >= lo) and (value < hi if hi_ex else value <= hi)
        return value if inside else (lo + hi) / 2
