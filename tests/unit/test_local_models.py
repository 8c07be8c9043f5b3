"""The emulator's built-in local models: deterministic, bounded, and derived from the input."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest

from aiquery.protocols.common import Message, estimate_tokens
from aiquery.serving.embedding import embed, embed_rows
from aiquery.serving.models import Reply, chat_reply, complete, custom_predict

REPO_ROOT = Path(__file__).resolve().parents[2]
REVIEW = "Summarize: The parcel arrived two days late. The box was crushed and wet."


def user(text: str) -> list[Message]:
    return [Message("user", text)]


def schema_format(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "out", "schema": schema, "strict": True}}


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


# --- determinism -------------------------------------------------------------------------

SAMPLE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "summary": {"type": "string"},
        "score": {"type": "integer", "minimum": 0, "maximum": 1000},
        "ratio": {"type": "number"},
        "flag": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["summary", "score", "ratio", "flag", "tags"],
    "additionalProperties": False,
}

SNAPSHOT_CODE = """
import json
from aiquery.protocols.common import Message
from aiquery.serving.embedding import embed
from aiquery.serving.models import chat_reply, complete, custom_predict
prompt, schema = json.loads(input())
print(json.dumps([
    chat_reply([Message("user", prompt)]).text,
    chat_reply([Message("user", prompt)], response_format=schema).text,
    complete(prompt).text,
    embed(prompt, 64),
    custom_predict({"text": prompt}),
]))
"""


def snapshot(prompt: str, schema: dict[str, Any]) -> list[Any]:
    return [
        chat_reply(user(prompt)).text,
        chat_reply(user(prompt), response_format=schema).text,
        complete(prompt).text,
        embed(prompt, 64),
        custom_predict({"text": prompt}),
    ]


def test_same_input_gives_same_output_twice() -> None:
    fmt = schema_format(SAMPLE_SCHEMA)
    assert snapshot(REVIEW, fmt) == snapshot(REVIEW, fmt)


def test_outputs_match_a_fresh_interpreter_with_another_hash_seed() -> None:
    fmt = schema_format(SAMPLE_SCHEMA)
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", SNAPSHOT_CODE],
        input=json.dumps([REVIEW, fmt]),
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=60,
    )
    # Round-trip ours through JSON too, so floats compare as the child printed them.
    assert json.loads(done.stdout) == json.loads(json.dumps(snapshot(REVIEW, fmt)))


def test_different_prompts_give_different_generated_values() -> None:
    fmt = schema_format(SAMPLE_SCHEMA)
    outputs = {
        chat_reply(user(f"Summarize: order {i} was late."), response_format=fmt).text
        for i in range(5)
    }
    assert len(outputs) == 5


# --- text answers ------------------------------------------------------------------------


def test_text_answer_is_first_sentence_after_instruction_prefix() -> None:
    reply = chat_reply(user("Summarize:\n  The parcel   arrived late.\nThe box was crushed."))
    assert reply == Reply(
        "The parcel arrived late.", "stop", estimate_tokens("The parcel arrived late.")
    )


def test_text_answer_without_instruction_prefix_uses_whole_prompt() -> None:
    assert chat_reply(user("It rained all day. We stayed in.")).text == "It rained all day."


def test_colon_inside_a_time_is_not_an_instruction_prefix() -> None:
    assert (
        chat_reply(user("Meet at 10:30 tomorrow. Bring notes.")).text == "Meet at 10:30 tomorrow."
    )


def test_long_sentence_is_capped_at_forty_words() -> None:
    words = [f"w{i}" for i in range(100)]
    assert chat_reply(user(" ".join(words))).text == " ".join(words[:40])


@pytest.mark.parametrize("prompt", ["", "   \n\t "])
def test_empty_prompt_has_a_fixed_short_answer(prompt: str) -> None:
    assert chat_reply(user(prompt)).text == "(empty prompt)"


def test_no_messages_is_an_empty_prompt() -> None:
    assert chat_reply([]).text == "(empty prompt)"


def test_answers_the_last_user_message_not_system_or_earlier_turns() -> None:
    messages = [
        Message("system", "You are a pirate. Always talk like one."),
        Message("user", "Old question here."),
        Message("assistant", "Old answer."),
        Message("user", "Summarize: New question here. Extra detail."),
        Message("assistant", "Partial prefill."),
    ]
    assert chat_reply(messages).text == "New question here."


@pytest.mark.parametrize("fmt", [None, {"type": "text"}])
def test_text_response_format_gives_plain_text(fmt: dict[str, Any] | None) -> None:
    assert chat_reply(user(REVIEW), response_format=fmt).text == "The parcel arrived two days late."


# --- max_tokens --------------------------------------------------------------------------


def test_max_tokens_truncates_and_finishes_with_length() -> None:
    reply = chat_reply(user(REVIEW), max_tokens=2)
    assert reply == Reply("The parc", "length", 2)


def test_max_tokens_at_or_above_the_estimate_stops_normally() -> None:
    full = chat_reply(user(REVIEW))
    assert chat_reply(user(REVIEW), max_tokens=full.output_tokens) == full
    assert full.finish_reason == "stop"
    assert full.output_tokens == estimate_tokens(full.text)


def test_max_tokens_also_truncates_json_output() -> None:
    reply = chat_reply(user(REVIEW), response_format={"type": "json_object"}, max_tokens=3)
    assert reply.finish_reason == "length"
    assert reply.text == '{"answer": "'
    assert reply.output_tokens <= 3


@pytest.mark.parametrize("bad", [0, -1, True, 2.5, "10"])
def test_invalid_max_tokens_is_rejected(bad: Any) -> None:
    with pytest.raises(ValueError, match="max_tokens"):
        chat_reply(user(REVIEW), max_tokens=bad)
    with pytest.raises(ValueError, match="max_tokens"):
        complete(REVIEW, max_tokens=bad)


# --- completions and custom models -------------------------------------------------------


def test_complete_continues_with_the_prompts_last_words() -> None:
    assert complete("Once upon a time").text == " Once upon a time"
    assert complete("a b c d e f g h i j k l m n ").text == "c d e f g h i j k l m n"


def test_complete_honours_max_tokens() -> None:
    reply = complete("The quick brown fox jumps over the lazy dog", max_tokens=2)
    assert reply == Reply(" The qui", "length", 2)


def test_custom_predict_sums_numeric_fields() -> None:
    assert custom_predict({"a": 1, "b": 2.5, "name": "x", "flag": True}) == 3.5


def test_custom_predict_answers_the_text_fields_when_there_are_no_numbers() -> None:
    record = {"title": "Summarize:", "body": "Great phone. Battery is weak.", "n": None}
    assert custom_predict(record) == "Great phone."


def test_custom_predict_rejects_non_object_records() -> None:
    with pytest.raises(ValueError):
        custom_predict(["not", "a", "record"])  # type: ignore[arg-type]


# --- JSON modes --------------------------------------------------------------------------


def test_json_object_reply_is_an_object_carrying_the_answer() -> None:
    body = json.loads(chat_reply(user(REVIEW), response_format={"type": "json_object"}).text)
    assert body == {"answer": "The parcel arrived two days late.", "word_count": 12}


PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 12},
        "age": {"type": ["integer", "null"]},
    },
    "required": ["name", "age"],
    "additionalProperties": False,
}

SCHEMAS: dict[str, dict[str, Any]] = {
    "nested objects": {
        "type": "object",
        "properties": {
            "order": {
                "type": "object",
                "properties": {"id": {"type": "integer"}, "customer": PERSON},
                "required": ["id", "customer"],
                "additionalProperties": False,
            },
            "note": {"type": "string"},
        },
        "required": ["order", "note"],
        "additionalProperties": False,
    },
    "array with minItems and maxItems": {
        "type": "object",
        "properties": {
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 4, "maxItems": 6},
            "none": {"type": "array", "items": {"type": "integer"}, "maxItems": 0},
        },
        "required": ["tags", "none"],
    },
    "enums and consts": {
        "type": "object",
        "properties": {
            "sentiment": {"type": "string", "enum": ["positive", "negative", "neutral"]},
            "level": {"enum": [1, 2, 3]},
            "version": {"const": "v1"},
        },
        "required": ["sentiment", "level", "version"],
    },
    "bounded numbers": {
        "type": "object",
        "properties": {
            "stars": {"type": "integer", "minimum": 1, "maximum": 5},
            "strict": {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 2},
            "even": {"type": "integer", "multipleOf": 2, "minimum": 11, "maximum": 13},
            "prob": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
            "neg": {"type": "number", "maximum": -1000.5},
        },
        "required": ["stars", "strict", "even", "prob", "neg"],
    },
    "nullable types": {
        "type": "object",
        "properties": {
            "a": {"type": ["string", "null"]},
            "b": {"type": ["null", "integer"]},
            "c": {"anyOf": [{"type": "null"}, {"type": "boolean"}]},
            "d": {"type": "null"},
        },
        "required": ["a", "b", "c", "d"],
    },
    "$defs refs": {
        "$defs": {"Person": PERSON, "Team": {"type": "array", "items": {"$ref": "#/$defs/Person"}}},
        "type": "object",
        "properties": {"lead": {"$ref": "#/$defs/Person"}, "team": {"$ref": "#/$defs/Team"}},
        "required": ["lead", "team"],
        "additionalProperties": False,
    },
    "draft-7 definitions and allOf": {
        "definitions": {"Base": {"type": "object", "properties": {"id": {"type": "integer"}}}},
        "allOf": [
            {"$ref": "#/definitions/Base"},
            {"properties": {"label": {"type": "string", "minLength": 80}}, "required": ["label"]},
        ],
        "required": ["id"],
    },
    "oneOf first branch": {"oneOf": [{"type": "string", "maxLength": 5}, {"type": "integer"}]},
    "missing type is a string": {"properties": {"x": {}}, "required": ["x"]},
    "top-level array of objects": {
        "type": "array",
        "minItems": 3,
        "items": {
            "type": "object",
            "properties": {"point": {"type": "string"}, "weight": {"type": "number"}},
            "required": ["point", "weight"],
        },
    },
    "recursive tree": {
        "$defs": {
            "Node": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
                },
                "required": ["name", "children"],
            }
        },
        "$ref": "#/$defs/Node",
    },
}


@pytest.mark.parametrize("schema", SCHEMAS.values(), ids=SCHEMAS.keys())
@pytest.mark.parametrize("prompt", [REVIEW, "", "Classify: I love it!"])
def test_json_schema_reply_validates_against_the_schema(
    schema: dict[str, Any], prompt: str
) -> None:
    reply = chat_reply(user(prompt), response_format=schema_format(schema))
    assert reply.finish_reason == "stop"
    jsonschema.validate(json.loads(reply.text), schema)


def test_exclusive_integer_bounds_are_never_reached() -> None:
    schema = {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 3}
    values = {
        json.loads(chat_reply(user(f"p{i}"), response_format=schema_format(schema)).text)
        for i in range(40)
    }
    assert values == {1, 2}


def test_nullable_types_pick_the_first_non_null_type() -> None:
    body = json.loads(
        chat_reply(user(REVIEW), response_format=schema_format(SCHEMAS["nullable types"])).text
    )
    assert isinstance(body["a"], str)
    assert isinstance(body["b"], int)
    assert isinstance(body["c"], bool)
    assert body["d"] is None


def test_bounded_integers_stay_in_range_across_many_prompts() -> None:
    schema = {"type": "integer", "minimum": -3, "maximum": 3}
    values = {
        json.loads(chat_reply(user(f"p{i}"), response_format=schema_format(schema)).text)
        for i in range(60)
    }
    assert values <= set(range(-3, 4))
    assert len(values) > 3  # spread, not a constant


def test_strings_carry_words_from_the_prompt() -> None:
    schema = {
        "type": "object",
        "properties": {
            "summary": {"type": "string"},
            "keywords": {"type": "array", "items": {"type": "string"}, "minItems": 2},
        },
        "required": ["summary", "keywords"],
    }
    body = json.loads(chat_reply(user(REVIEW), response_format=schema_format(schema)).text)
    assert body["summary"] == "The parcel arrived two days late."
    assert body["keywords"][:2] == ["parcel", "arrived"]


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("The customer was very happy, a positive experience overall.", "positive"),
        ("Classify: a negative review, the customer was angry.", "negative"),
        (
            "Classify the sentiment as positive or negative: this was a negative surprise.",
            "negative",
        ),
    ],
)
def test_enum_choice_follows_the_words_of_the_prompt(prompt: str, expected: str) -> None:
    schema = {"type": "string", "enum": ["positive", "negative"]}
    reply = chat_reply(user(prompt), response_format=schema_format(schema))
    assert json.loads(reply.text) == expected


def test_enum_tie_is_a_stable_choice_among_the_options() -> None:
    schema = {"type": "string", "enum": ["red", "green", "blue"]}
    picks = {
        json.loads(chat_reply(user(f"item {i}"), response_format=schema_format(schema)).text)
        for i in range(30)
    }
    assert picks <= {"red", "green", "blue"}
    assert len(picks) > 1  # ties spread over the options by hash


@pytest.mark.parametrize(
    "fmt",
    [
        "json_object",
        ["json_object"],
        {},
        {"type": "xml"},
        {"type": "json_schema"},
        {"type": "json_schema", "json_schema": {"name": "x"}},
        {"type": "json_schema", "json_schema": {"name": "x", "schema": "not a schema"}},
    ],
)
def test_malformed_response_format_is_a_value_error(fmt: Any) -> None:
    with pytest.raises(ValueError, match="response_format"):
        chat_reply(user(REVIEW), response_format=fmt)


def test_unsupported_schema_constructs_do_not_crash() -> None:
    schema = {
        "type": "object",
        "properties": {
            "p": {"type": "string", "pattern": "^[A-Z]+$", "format": "date-time"},
            "n": {"not": {"type": "string"}},
            "cyc": {"$ref": "#/$defs/Loop"},
            "ext": {"$ref": "https://example.com/schema.json"},
            "weird": {"type": "quaternion"},
            "any": True,
        },
        "$defs": {"Loop": {"$ref": "#/$defs/Loop"}},
        "patternProperties": {"^x": {"type": "integer"}},
        "if": {"required": ["p"]},
        "then": {"required": ["n"]},
    }
    body = json.loads(chat_reply(user(REVIEW), response_format=schema_format(schema)).text)
    assert set(body) == {"p", "n", "cyc", "ext", "weird", "any"}


# --- embeddings --------------------------------------------------------------------------


@pytest.mark.parametrize("dim", [1024, 16])
def test_embedding_has_the_requested_dim_and_unit_norm(dim: int) -> None:
    vector = embed("The parcel arrived two days late and the box was crushed.", dim)
    assert len(vector) == dim
    assert all(isinstance(x, float) for x in vector)
    assert math.isclose(math.sqrt(sum(x * x for x in vector)), 1.0, abs_tol=1e-4)


def test_identical_texts_embed_identically() -> None:
    assert embed("Hello, World", 256) == embed("Hello, World", 256)
    assert embed("Hello, World", 256) == embed("hello world", 256)  # case and punctuation


def test_texts_sharing_words_are_closer_than_unrelated_texts() -> None:
    anchor = embed("the cat sat on the warm mat", 1024)
    related = embed("a cat sat on a mat", 1024)
    unrelated = embed("quarterly revenue grew in europe", 1024)
    assert cosine(anchor, related) > cosine(anchor, unrelated) + 0.3


def test_shared_word_stems_are_closer_than_different_words() -> None:
    base = embed("shipping", 1024)
    assert cosine(base, embed("shipped", 1024)) > cosine(base, embed("umbrella", 1024))


@pytest.mark.parametrize("text", ["", "   ", "\n\t", "!!! ..."])
def test_empty_text_embeds_to_a_fixed_unit_vector(text: str) -> None:
    assert embed(text, 8) == [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]


def reference_embedding(text: str, dim: int) -> np.ndarray:
    """The model as documented, one text and one feature at a time: crc32 of each lower-cased
    word (weight +-1) and of its `<word>` byte trigrams (+-0.35, from crc value 1), summed
    per index and L2-normalised; no feature, or a zero sum: the unit vector along 0."""
    vector = np.zeros(dim)
    for word in re.findall(r"\w+", text.lower()):
        data = word.encode("utf-8", "surrogatepass")
        h = zlib.crc32(data)
        vector[h % dim] += 1.0 if h >> 31 else -1.0
        padded = b"<" + data + b">"
        for i in range(len(padded) - 2):
            h = zlib.crc32(padded[i : i + 3], 1)
            vector[h % dim] += 0.35 if h >> 31 else -0.35
    norm = math.sqrt(float(np.dot(vector, vector)))
    if norm < 1e-9:
        vector = np.zeros(dim)
        vector[0] = 1.0
        return vector
    return vector / norm


def test_a_request_of_many_texts_embeds_each_as_the_model_does_alone() -> None:
    """`embed_rows` (one bincount for a whole request) gives each text the bits the model
    gives it alone: repeated words, empty and cancelling texts, non-ASCII, dims 1 and 7."""
    texts = [
        "The parcel arrived two days late and the box was crushed.",
        "",
        "!!! ...",
        "cat cat cat the cat",
        "Ünïcödé wörds and 数据 and a\u0301",
        "x" * 300,
        "Summarize: benchmark row 17 describes a small event. It has a second sentence.",
    ]
    for dim in (1, 7, 256, 1024):
        rows = embed_rows(texts, dim)
        assert rows.shape == (len(texts), dim)
        for text, row in zip(texts, rows, strict=True):
            alone = reference_embedding(text, dim)
            assert np.allclose(row, alone, rtol=0, atol=1e-12), (text, dim)
            assert np.array_equal(row, embed_rows([text], dim)[0])
            assert embed(text, dim) == row.tolist()


@pytest.mark.parametrize("dim", [0, -5, True, 3.0])
def test_invalid_embedding_dim_is_rejected(dim: Any) -> None:
    with pytest.raises(ValueError, match="dimensions"):
        embed("text", dim)
