"""Databricks' task AI functions (ai_classify, ai_extract, ...) as chat requests: one table.

Each chat-based function is a `TaskKind`: a system prompt that says the task in words any
chat model follows, a JSON schema for its answer (sent as `response_format`, so the model
answers structured output), and the decoding of that answer into the function's value.
The system prompt ends with the task's options as one JSON line (`Task: {...}`): the
emulator's built-in models read the task from it (`read_task`), so the client and the
emulator share one definition of every prompt and answer shape and cannot drift apart.

`ai_gen` sends its prompt as it is; `ai_similarity` is not a chat task (it compares the
embedding endpoint's vectors); both are named here so every function has one home.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiquery.protocols.common import Message, unfenced

SENTIMENTS = ("positive", "negative", "neutral", "mixed")
# Databricks' documented ai_translate languages.
LANGUAGES = {
    "en": "English",
    "de": "German",
    "fr": "French",
    "it": "Italian",
    "pt": "Portuguese",
    "hi": "Hindi",
    "es": "Spanish",
    "th": "Thai",
}
MASK = "[MASKED]"
# The usage table's request tag naming the AI function that sent a request.
FUNCTION_TAG = "ai_function"
TASK_LINE = "Task: "
_JSON_ONLY = "Answer with one JSON object that matches the response schema, and nothing else."


@dataclass(frozen=True, slots=True)
class Task:
    """One call site's function and its checked options (JSON values only)."""

    function: str
    options: Mapping[str, Any] = field(default_factory=dict)

    def option(self, name: str, default: Any = None) -> Any:
        return self.options.get(name, default)


class TaskAnswerError(ValueError):
    """The model's answer does not have the task's shape; never quotes the answer."""


@dataclass(frozen=True, slots=True)
class TaskKind:
    instruction: Callable[[Task], str]  # the task in words, options included
    schema: Callable[[Task], dict[str, Any]]  # the answer's JSON schema
    decode: Callable[[Task, Any, str], Any]  # (task, answer JSON, content) -> value


# --- prompts, schemas and answers, per function -----------------------------------------


def _nullable(kind: str) -> dict[str, Any]:
    return {"type": [kind, "null"]}


def _object(properties: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": dict(properties),
        "required": list(properties),
        "additionalProperties": False,
    }


def _text_schema(task: Task) -> dict[str, Any]:
    return _object({"text": {"type": "string"}})


def _text(task: Task, answer: Any, content: str) -> str:
    text = _field(answer, "text")
    if not isinstance(text, str):
        raise TaskAnswerError("the answer's 'text' is not a string")
    return text


def _field(answer: Any, name: str) -> Any:
    if not isinstance(answer, Mapping) or name not in answer:
        raise TaskAnswerError(f"the answer is not a JSON object with '{name}'")
    return answer[name]


def _sentiment_instruction(task: Task) -> str:
    return (
        "Classify the sentiment of the user's text as positive, negative, neutral or mixed "
        "(both positive and negative). Answer null when no sentiment can be detected."
    )


def _sentiment(task: Task, answer: Any, content: str) -> str | None:
    value = _field(answer, "sentiment")
    return value if value in SENTIMENTS else None


def _classify_instruction(task: Task) -> str:
    labels: list[str] = task.option("labels")
    descriptions: Mapping[str, str] = task.option("descriptions") or {}
    how_many = "one or more" if task.option("multilabel") else "exactly one"
    lines = [
        f"Classify the user's text into {how_many} of these labels: {json.dumps(labels)}. "
        "Use the labels exactly as written; answer an empty list when none applies."
    ]
    if descriptions:
        lines.append("What each label means: " + json.dumps(descriptions, ensure_ascii=False))
    if task.option("confidence"):
        lines.append("Give each label a confidence_score from 0 to 1.")
    if task.option("rationales"):
        lines.append("Give each label a short rationale.")
    if task.option("instructions"):
        lines.append(str(task.option("instructions")))
    return "\n".join(lines)


def _classify_schema(task: Task) -> dict[str, Any]:
    item: dict[str, Any] = {"value": {"type": "string", "enum": list(task.option("labels"))}}
    if task.option("confidence"):
        item["confidence_score"] = {"type": "number", "minimum": 0, "maximum": 1}
    if task.option("rationales"):
        item["rationale"] = {"type": "string"}
    labels: dict[str, Any] = {"type": "array", "items": _object(item)}
    if not task.option("multilabel"):
        labels["maxItems"] = 1
    return _object({"labels": labels})


def _classify(task: Task, answer: Any, content: str) -> Any:
    """v1: the label, or None. v2: Databricks' `{"response": [...], "error_message": null}`."""
    items = _field(answer, "labels")
    if not isinstance(items, list):
        raise TaskAnswerError("the answer's 'labels' is not a list")
    known = set(task.option("labels"))
    chosen = [i for i in items if isinstance(i, Mapping) and i.get("value") in known]
    if task.option("version") == "1":
        return chosen[0]["value"] if chosen else None
    if not task.option("multilabel"):
        chosen = chosen[:1]
    if task.option("version") == "2.0":
        return {"response": [i["value"] for i in chosen], "error_message": None}
    response = []
    for i in chosen:
        item: dict[str, Any] = {"value": i["value"]}
        if task.option("confidence"):
            item["confidence_score"] = _score(i.get("confidence_score"))
        if task.option("rationales"):
            item["rationale"] = i.get("rationale") if isinstance(i.get("rationale"), str) else None
        response.append(item)
    return {"response": response, "error_message": None}


def _score(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1:
        return float(value)
    return None


def _extract_instruction(task: Task) -> str:
    if task.option("version") == "1":
        return (
            f"Extract one entity of each of these types from the user's text: "
            f"{json.dumps(task.option('labels'))}. Give each as the text it has in the user's "
            "text, or null when there is none."
        )
    lines = [
        "Extract the fields of this schema from the user's text; a field that the text does "
        "not give is null: " + json.dumps(task.option("schema"), ensure_ascii=False)
    ]
    if task.option("confidence"):
        lines.append("Give each top-level field a confidence from 0 to 1.")
    if task.option("instructions"):
        lines.append(str(task.option("instructions")))
    return "\n".join(lines)


def json_schema_of(user_schema: Mapping[str, Any]) -> dict[str, Any]:
    """ai_extract's user-schema format (`{"name": {"type": ...}}`) as a JSON schema whose
    fields are all nullable, as Databricks documents them."""
    return _object({name: _field_schema(spec) for name, spec in user_schema.items()})


def _field_schema(spec: Mapping[str, Any]) -> dict[str, Any]:
    kind = spec["type"]
    if kind == "enum":
        return {"type": ["string", "null"], "enum": [*spec["labels"], None]}
    if kind == "array":
        return {"type": ["array", "null"], "items": _field_schema(spec["items"])}
    if kind == "object":
        nested = json_schema_of(spec["properties"])
        return {**nested, "type": ["object", "null"]}
    return _nullable(kind)


def _extract_schema(task: Task) -> dict[str, Any]:
    if task.option("version") == "1":
        return _object({label: _nullable("string") for label in task.option("labels")})
    schema = json_schema_of(task.option("schema"))
    if task.option("confidence"):
        confidence = {"type": "number", "minimum": 0, "maximum": 1}
        schema["properties"] = {
            name: _object({"value": value, "confidence": confidence})
            for name, value in schema["properties"].items()
        }
    return schema


def _extract(task: Task, answer: Any, content: str) -> Any:
    """v1: a dict of one string (or None) per label. v2: Databricks' VARIANT shape."""
    if not isinstance(answer, Mapping):
        raise TaskAnswerError("the answer is not a JSON object")
    if task.option("version") == "1":
        return {
            label: answer.get(label) if isinstance(answer.get(label), str) else None
            for label in task.option("labels")
        }
    user_schema: Mapping[str, Any] = task.option("schema")
    response: dict[str, Any] = {}
    citations: list[dict[str, int]] = []
    for name, spec in user_schema.items():
        raw = answer.get(name)
        if task.option("confidence"):
            raw, score = (
                (raw.get("value"), raw.get("confidence"))
                if isinstance(raw, Mapping)
                else (None, None)
            )
        value = typed(raw, spec)
        if not (task.option("confidence") or task.option("citations")):
            response[name] = value
            continue
        entry: dict[str, Any] = {"value": value}
        if task.option("confidence"):
            entry["confidence"] = _score(score)
        if task.option("citations"):
            entry["citation_ids"] = _cite(value, content, citations)
        response[name] = entry
    result: dict[str, Any] = {"response": response, "error_message": None}
    if task.option("citations"):
        result["metadata"] = {"chunk_type": "span", "citations": citations}
    return result


def typed(value: Any, spec: Mapping[str, Any]) -> Any:
    """`value` if it has the schema field's type, else None (fields are nullable)."""
    kind = spec["type"]
    if value is None:
        return None
    if kind == "string":
        return value if isinstance(value, str) else None
    if kind == "enum":
        return value if value in spec["labels"] else None
    if kind == "boolean":
        return value if isinstance(value, bool) else None
    if kind in ("integer", "number"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        if kind == "integer":
            return int(value) if float(value).is_integer() else None
        return value
    if kind == "array":
        items = [typed(v, spec["items"]) for v in value] if isinstance(value, list) else None
        return None if items is None else [v for v in items if v is not None]
    if not isinstance(value, Mapping):
        return None
    return {name: typed(value.get(name), sub) for name, sub in spec["properties"].items()}


def _cite(value: Any, content: str, citations: list[dict[str, int]]) -> list[int]:
    """Spans of `content` where a string value occurs (each value cited at its first place)."""
    if not isinstance(value, str) or not value:
        return []
    start = content.find(value)
    if start < 0:
        return []
    citations.append({"id": len(citations), "start": start, "stop": start + len(value)})
    return [citations[-1]["id"]]


def _mask_instruction(task: Task) -> str:
    return (
        f"Replace every part of the user's text that is one of these kinds of information "
        f"with {MASK}: {json.dumps(task.option('labels'))}. Keep everything else exactly as "
        "it is, and answer the whole text as 'text'."
    )


def _summarize_instruction(task: Task) -> str:
    words = task.option("max_words") or 0
    limit = f" in at most {words} words" if words else ""
    return f"Summarize the user's text{limit}. Answer the summary as 'text'."


def _translate_instruction(task: Task) -> str:
    code = task.option("to_lang")
    return (
        f"Translate the user's text into {LANGUAGES.get(code, code)} (language code {code}). "
        "Answer the translation only, as 'text'."
    )


def _grammar_instruction(task: Task) -> str:
    return (
        "Correct the grammar and spelling of the user's text. Keep its meaning, words and "
        "language; change only what is wrong. Answer the corrected text as 'text'."
    )


KINDS: dict[str, TaskKind] = {
    "ai_analyze_sentiment": TaskKind(
        _sentiment_instruction,
        lambda task: _object(
            {"sentiment": {"type": ["string", "null"], "enum": [*SENTIMENTS, None]}}
        ),
        _sentiment,
    ),
    "ai_classify": TaskKind(_classify_instruction, _classify_schema, _classify),
    "ai_extract": TaskKind(_extract_instruction, _extract_schema, _extract),
    "ai_fix_grammar": TaskKind(_grammar_instruction, _text_schema, _text),
    "ai_mask": TaskKind(_mask_instruction, _text_schema, _text),
    "ai_summarize": TaskKind(_summarize_instruction, _text_schema, _text),
    "ai_translate": TaskKind(_translate_instruction, _text_schema, _text),
}
# Sent as they are (ai_gen), or not chat at all (ai_similarity compares embeddings).
PLAIN = ("ai_gen", "ai_similarity")
FUNCTIONS = (*KINDS, *PLAIN)


# --- the wire: prompt out, answer back ----------------------------------------------------


def system_prompt(task: Task) -> str | None:
    """The system message of a chat task (None: the prompt goes as it is)."""
    kind = KINDS.get(task.function)
    if kind is None:
        return None
    line = json.dumps({"function": task.function, **task.options}, ensure_ascii=False)
    return f"{kind.instruction(task)}\n{_JSON_ONLY}\n{TASK_LINE}{line}"


def response_format(task: Task) -> dict[str, Any] | None:
    """The structured-output request of a chat task."""
    kind = KINDS.get(task.function)
    if kind is None:
        return None
    schema = {"name": task.function, "schema": kind.schema(task), "strict": True}
    return {"type": "json_schema", "json_schema": schema}


def decode(task: Task, text: str, content: str) -> Any:
    """The function's value from the model's answer text; raises TaskAnswerError."""
    kind = KINDS.get(task.function)
    if kind is None:
        return text
    try:
        answer = json.loads(unfenced(text))
    except (ValueError, RecursionError):
        raise TaskAnswerError(f"the answer to {task.function} is not JSON") from None
    return kind.decode(task, answer, content)


def read_task(messages: Sequence[Message]) -> Task | None:
    """The task a chat request's system prompt carries (the emulator's side), else None."""
    for message in messages:
        if message.role != "system":
            continue
        last = message.content.rsplit("\n", 1)[-1]
        if not last.startswith(TASK_LINE):
            continue
        try:
            options = json.loads(last[len(TASK_LINE) :])
        except ValueError:
            return None
        if isinstance(options, dict) and options.get("function") in KINDS:
            function = options.pop("function")
            return Task(function, options)
    return None
