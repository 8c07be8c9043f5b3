"""The shared codecs: what the client encodes, the emulator decodes to the same request, and back."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiquery.client.wire import read_json, wire_for
from aiquery.endpoints.registry import Endpoint
from aiquery.protocols import anthropic, custom, gemini, responses
from aiquery.protocols import openai as oai
from aiquery.protocols.common import (
    CHAT,
    CUSTOM,
    EMBEDDINGS,
    ChatRequest,
    ChatResult,
    CustomRequest,
    EmbeddingRequest,
    EmbeddingResult,
    Message,
    ProtocolError,
    Usage,
    estimate_tokens,
)
from aiquery.protocols.errors import databricks_error, read_error
from aiquery.protocols.table import PROTOCOLS
from aiquery.protocols.tags import RequestTagsError, parse_request_tags

text = st.text(max_size=200)
conversation = st.lists(
    st.builds(Message, st.sampled_from(["user", "assistant"]), text), min_size=1, max_size=4
)
results = st.builds(
    ChatResult,
    text,
    st.sampled_from(["stop", "length"]),
    st.builds(Usage, st.integers(0, 10**6), st.integers(0, 10**6)),
)


@given(conversation, st.integers(1, 4096))
def test_openai_chat_request_round_trips(messages: list[Message], max_tokens: int) -> None:
    request = ChatRequest(tuple(messages), "m", {"max_tokens": max_tokens, "temperature": 0.5})
    assert oai.decode_chat_request(oai.encode_chat_request(request, with_model=True)) == request


@given(conversation, st.integers(1, 4096))
def test_responses_request_round_trips(messages: list[Message], max_tokens: int) -> None:
    request = ChatRequest(tuple(messages), "m", {"max_tokens": max_tokens})
    assert responses.decode_request(responses.encode_request(request)) == request


@given(conversation, st.integers(1, 4096), text)
def test_anthropic_request_round_trips(
    messages: list[Message], max_tokens: int, system: str
) -> None:
    request = ChatRequest((Message("system", system), *messages), "m", {"max_tokens": max_tokens})
    assert anthropic.decode_request(anthropic.encode_request(request)) == request


@given(conversation, st.integers(1, 4096))
def test_gemini_request_round_trips(messages: list[Message], max_tokens: int) -> None:
    request = ChatRequest(tuple(messages), "m", {"max_tokens": max_tokens})
    assert gemini.decode_request(gemini.encode_request(request), "m") == request


@given(results)
@pytest.mark.parametrize(
    ("encode", "decode"),
    [
        (oai.encode_chat_response, oai.decode_chat_response),
        (
            lambda r: oai.encode_chat_response(replace(r, reasoning="thinking")),
            oai.decode_chat_response,
        ),
        (responses.encode_response, responses.decode_response),
        (anthropic.encode_response, anthropic.decode_response),
        (gemini.encode_response, gemini.decode_response),
    ],
)
def test_chat_responses_round_trip_text_finish_and_usage(
    encode, decode, result: ChatResult
) -> None:  # type: ignore[no-untyped-def]
    decoded = decode(encode(result))
    assert (decoded.text, decoded.finish_reason, decoded.usage) == (
        result.text,
        result.finish_reason,
        result.usage,
    )


@given(
    st.lists(st.lists(st.floats(-1, 1, width=32), min_size=3, max_size=3), min_size=1, max_size=5),
    st.sampled_from(["float", "base64"]),
)
def test_embeddings_round_trip_in_both_encodings(vectors: list[list[float]], fmt: str) -> None:
    result = EmbeddingResult(tuple(tuple(v) for v in vectors), Usage(7, 0), encoding_format=fmt)
    body = oai.encode_embedding_response(result)
    decoded = oai.decode_embedding_response(body, len(vectors))
    # Read as float32 arrays in either encoding (no Python float per value).
    assert all(isinstance(v, np.ndarray) and v.dtype == np.float32 for v in decoded.vectors)
    assert [v.tolist() for v in decoded.vectors] == vectors
    assert decoded.usage.input_tokens == 7


def test_a_malformed_base64_embedding_is_a_protocol_error() -> None:
    invalid = ["not base64!", "AAA", "AA\nAA", "AA=A", "AAAé"]  # alphabet, padding, ASCII
    for bad, problem in [*((b, "not valid base64") for b in invalid), ("AAAA", "whole number")]:
        body = {"data": [{"index": 0, "embedding": bad}]}
        with pytest.raises(ProtocolError, match=problem):
            oai.decode_embedding_response(body, 1)


def test_embedding_response_restores_input_order() -> None:
    body = {
        "data": [{"index": 1, "embedding": [2.0]}, {"index": 0, "embedding": [1.0]}],
        "usage": {"prompt_tokens": 2},
    }
    vectors = oai.decode_embedding_response(body, 2).vectors
    assert [list(v) for v in vectors] == [[1.0], [2.0]]
    with pytest.raises(ProtocolError, match="expected 3"):
        oai.decode_embedding_response(body, 3)
    body["data"][0]["index"] = 0
    with pytest.raises(ProtocolError, match="permutation"):
        oai.decode_embedding_response(body, 2)


def test_embedding_request_accepts_a_string_or_list() -> None:
    assert oai.decode_embedding_request({"input": "a"}).inputs == ("a",)
    request = EmbeddingRequest(("a", "b"), "m")
    assert (
        oai.decode_embedding_request(oai.encode_embedding_request(request, with_model=True))
        == request
    )
    with pytest.raises(ProtocolError):
        oai.decode_embedding_request({"input": [1, 2]})


def test_usage_falls_back_to_the_databricks_estimate() -> None:
    body = {"choices": [{"message": {"content": "abcdefg"}}]}
    usage = oai.decode_chat_response(body).usage
    assert usage.estimated
    assert usage.output_tokens == estimate_tokens("abcdefg") == 2


def test_content_blocks_join_only_text() -> None:
    body = {
        "choices": [
            {
                "message": {
                    "content": [
                        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "hmm"}]},
                        {"type": "text", "text": "Hello "},
                        {"type": "text", "text": "world"},
                    ]
                }
            }
        ]
    }
    assert oai.decode_chat_response(body).text == "Hello world"


def test_custom_model_layouts_decode_to_records() -> None:
    records = CustomRequest(({"a": 1, "b": "x"}, {"a": 2, "b": "y"}))
    assert custom.decode_request(custom.encode_request(records)) == records
    split = {"dataframe_split": {"columns": ["a", "b"], "data": [[1, "x"], [2, "y"]]}}
    assert custom.decode_request(split) == records
    assert custom.decode_request({"inputs": [1, 2]}).records == ({"input": 1}, {"input": 2})
    with pytest.raises(ProtocolError, match="dataframe_records"):
        custom.decode_request({"rows": []})
    with pytest.raises(ProtocolError, match="expected 3 predictions"):
        custom.decode_response({"predictions": [1]}, 3)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("status", [400, 401, 404, 429, 500, 503])
def test_every_error_shape_reads_back_its_message(protocol: str, status: int) -> None:
    code, message = read_error(PROTOCOLS[protocol].error_body(status, "the reason"))
    assert message == "the reason"
    assert code


def test_databricks_error_codes() -> None:
    assert databricks_error(429, "x")["error_code"] == "REQUEST_LIMIT_EXCEEDED"
    assert databricks_error(404, "x")["error_code"] == "RESOURCE_DOES_NOT_EXIST"


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ("nope", "not valid JSON"),
        ("[1]", "JSON object"),
        ('{"a": 1}', "string values"),
        ('{"": "x"}', "1-64"),
    ],
)
def test_bad_request_tags_name_the_problem(raw: str, needle: str) -> None:
    with pytest.raises(RequestTagsError, match=needle):
        parse_request_tags(raw)


def test_good_request_tags_parse() -> None:
    assert parse_request_tags('{"team": "ml", "project": "x"}') == {"team": "ml", "project": "x"}


# --- reading a response body: orjson, answering as Python's json does ---------------------

# What json.loads reads, including what orjson refuses; integers stay within 64 bits (below).
json_bodies = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()  # NaN and ±Infinity too: json writes and reads them, orjson refuses
    | st.text(),  # lone surrogates too: orjson refuses "\ud800", json reads it
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=20,
)


@given(json_bodies, st.booleans())
def test_a_body_reads_as_json_reads_it(value: object, ascii_only: bool) -> None:
    body = json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    try:
        expected = json.loads(body)
    except UnicodeDecodeError:  # a raw lone surrogate is not UTF-8: json refuses it too
        with pytest.raises(ValueError):
            read_json(body)
        return
    # repr: NaN equals itself there, and -0.0 differs from 0.0.
    assert repr(read_json(body)) == repr(expected)


@pytest.mark.parametrize(
    "body",
    [
        b"NaN",
        b"[Infinity, -Infinity]",
        b"[1e400]",
        b'"\\ud800"',
        "\ufeff[1]".encode(),
        '{"a": "\u00e9"}'.encode("utf-16"),
    ],
)
def test_what_orjson_refuses_is_read_by_json(body: bytes) -> None:
    assert repr(read_json(body)) == repr(json.loads(body))


def test_a_body_that_is_not_json_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        read_json(b'{"choices": [')


def test_a_custom_models_big_integers_stay_exact() -> None:
    """orjson reads an integer beyond 64 bits as a float; a custom model's prediction can be
    one (a DECIMAL(38, 0) answer), so its wire reads with json."""
    body = b'{"predictions": [18446744073709551616, -9223372036854775809]}'
    assert read_json(body)["predictions"][0] == float(2**64)  # why chat's reader is not used
    wires = {
        task: wire_for(Endpoint("e", "databricks", "http://x", task=task, model="m"), {})
        for task in (CUSTOM, CHAT, EMBEDDINGS)
    }
    assert wires[CUSTOM].read(body)["predictions"] == [2**64, -(2**63) - 1]
    assert wires[CHAT].read is read_json and wires[EMBEDDINGS].read is read_json
