"""Properties of every codec pair, on generated input.

`aiquery.client.wire` on the client, the protocol table's emulator codecs and the built-in
models on the emulator, `aiquery.protocols` in between: requests and answers survive the trip through UTF-8 bytes
in both directions, and a garbled body is only ever the documented error — the client
retries ProtocolError/ValueError as a malformed body, and anything else would kill a Spark
task; the emulator turns ProtocolError into a 400.

`tests/unit/test_protocols.py` holds the example-based tests and the simpler round trips;
these properties go further rather than repeat them. The SQL scanner's properties are in
`test_sql_properties.py`.
"""

from __future__ import annotations

import base64
import copy
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from aiquery.client.wire import Wire, wire_for
from aiquery.endpoints.registry import Endpoint
from aiquery.protocols import anthropic, custom, gemini, responses
from aiquery.protocols import openai as oai
from aiquery.protocols.common import (
    CHAT,
    COMPLETIONS,
    CUSTOM,
    EMBEDDINGS,
    ChatRequest,
    ChatResult,
    CompletionRequest,
    CompletionResult,
    CustomRequest,
    CustomResult,
    EmbeddingRequest,
    EmbeddingResult,
    Message,
    ProtocolError,
    Usage,
)
from aiquery.protocols.errors import read_error
from aiquery.protocols.table import PROTOCOLS
from aiquery.serving import models
from aiquery.serving.answers import answer
from aiquery.serving.config import EndpointConfig
from aiquery.serving.embedding import embed

# Text that is hard to carry: emoji (with joiners and skin tones), combining marks,
# right-to-left text and overrides, NUL and other controls, separators JSON escapes.
SPECIAL_TEXTS = [
    "",
    " ",
    "\x00",
    "a\x00b\x01\x1f\x7f\x9f",
    "👩‍👩‍👧‍👦 👍🏽 🇫🇷",
    "e\u0301\u0327 a\u20dd Z\u0336\u0336",
    "שלום עולם. مرحبا بالعالم!",
    "\u202eevil\u202c \u200f\u200e\u2066x\u2069",
    "\ufeff\u2028\u2029\ufffe\uffff",
    '"quoted" \\back\\slash\\ /slash</script>',
    "\U0010ffff\U000e0001",
]
unicode_text = st.one_of(
    st.sampled_from(SPECIAL_TEXTS),
    st.text(st.characters(codec="utf-8"), max_size=60),
    st.lists(st.sampled_from(SPECIAL_TEXTS), max_size=6).map("".join),
)
long_text = st.tuples(unicode_text, st.integers(1, 5000)).map(lambda p: (p[0] or "é") * p[1])
prompts = st.one_of(unicode_text, unicode_text, long_text)

# (protocol, task): every row of the protocol table, which the client and the emulator share.
ROUTES = [(name, task) for name, p in PROTOCOLS.items() for task in p.operations]
DIM = 16


def _wire(protocol: str, task: str) -> Wire:
    endpoint = Endpoint(
        name="e", protocol=protocol, base_url="http://emulator", task=task, model="e"
    )
    return wire_for(endpoint, {})


def _emulated(task: str, protocol: str, content_blocks: bool = False) -> EndpointConfig:
    provider = protocol if protocol in ("anthropic", "gemini") else "databricks"
    dim = DIM if task == EMBEDDINGS else None
    return EndpointConfig("e", task, provider, dim, content_blocks)


def _decode_request(protocol: str, task: str, body: Any) -> Any:
    """The request as the emulator decodes it on this protocol's route."""
    operation = PROTOCOLS[protocol].operation(task)
    assert operation is not None
    return operation.decode_request(body, "e")


def _client_bytes(body: Any) -> bytes:
    """The request payload as `EndpointClient.call` serialises it."""
    return json.dumps(body, ensure_ascii=False).encode()


def _server_bytes(body: Any) -> bytes:
    """A response body as the emulator sends it (compact JSON, UTF-8 text)."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _request_texts(request: Any) -> list[Any]:
    if isinstance(request, ChatRequest):
        return [m.content for m in request.messages if m.role == "user"]
    if isinstance(request, CompletionRequest):
        return list(request.prompts)
    if isinstance(request, EmbeddingRequest):
        return list(request.inputs)
    return list(request.records)


def _model_outputs(request: Any) -> list[Any]:
    """What the emulator's built-in models answer for a decoded request."""
    if isinstance(request, ChatRequest):
        reply = models.chat_reply(
            request.messages, response_format=request.response_format, max_tokens=request.max_tokens
        )
        return [reply.text]
    if isinstance(request, CompletionRequest):
        return [models.complete(p).text for p in request.prompts]
    if isinstance(request, EmbeddingRequest):
        # float32 on the wire (base64), as the client reads it.
        return [np.asarray(embed(t, DIM), dtype=np.float32).tolist() for t in request.inputs]
    return [models.custom_predict(r) for r in request.records]


records = st.builds(
    lambda text, extra: {"text": text, **extra},
    prompts,
    st.dictionaries(st.sampled_from(["n", "weight"]), st.integers(-(10**6), 10**6), max_size=2),
)


@st.composite
def route_inputs(draw: st.DrawFn) -> tuple[tuple[str, str], list[Any]]:
    route = draw(st.sampled_from(ROUTES))
    _, task = route
    if task == CUSTOM:
        return route, draw(st.lists(records, min_size=1, max_size=5))
    if task == EMBEDDINGS:
        return route, draw(st.lists(prompts, min_size=1, max_size=5))
    return route, [draw(prompts)]


@settings(max_examples=150, deadline=None)
@given(route_inputs(), st.booleans())
def test_inputs_reach_the_emulator_intact_and_its_answers_reach_the_client_intact(
    case: tuple[tuple[str, str], list[Any]], content_blocks: bool
) -> None:
    (protocol, task), inputs = case
    wire = _wire(protocol, task)
    config = _emulated(task, protocol, content_blocks)
    operation = PROTOCOLS[protocol].operation(task)
    assert operation is not None

    request = operation.decode_request(json.loads(_client_bytes(wire.encode(inputs))), "e")
    assert _request_texts(request) == inputs  # in order, every character intact

    answered = answer(config, request, "req-1")
    body = operation.encode_response(answered.result)
    outputs, usage = wire.decode(wire.read(_server_bytes(body)), inputs)

    plain = [v.tolist() if isinstance(v, np.ndarray) else v for v in outputs]
    assert plain == _model_outputs(request)
    assert len(outputs) == len(inputs)
    if task == EMBEDDINGS:
        assert all(len(v) == DIM and all(math.isfinite(x) for x in v) for v in outputs)
    assert usage.input_tokens >= 0 and usage.output_tokens >= 0
    if task == CUSTOM:
        assert usage == Usage(0, 0, estimated=True)
    else:
        output_tokens = 0 if task == EMBEDDINGS else answered.output_tokens
        assert usage == Usage(answered.input_tokens, output_tokens)


# Each chat protocol's emulator encoder, and how a client decodes it.
CHAT_ANSWERS: list[tuple[str, Callable[[ChatResult], Any], Callable[[Any], str]]] = [
    ("openai", oai.encode_chat_response, lambda b: _wire("openai", CHAT).decode(b, ["q"])[0][0]),
    (
        "openai-blocks",
        lambda r: oai.encode_chat_response(replace(r, reasoning="🤔 hmm")),
        lambda b: _wire("databricks", CHAT).decode(b, ["q"])[0][0],
    ),
    (
        "anthropic",
        anthropic.encode_response,
        lambda b: _wire("anthropic", CHAT).decode(b, ["q"])[0][0],
    ),
    ("gemini", gemini.encode_response, lambda b: _wire("gemini", CHAT).decode(b, ["q"])[0][0]),
    (
        "responses",
        responses.encode_response,
        lambda b: _wire("openai-responses", CHAT).decode(b, ["q"])[0][0],
    ),
]


@settings(max_examples=40, deadline=None)
@given(prompts, st.integers(0, 2**40), st.integers(0, 2**40))
@pytest.mark.parametrize(
    ("encode", "decode_text"), [a[1:] for a in CHAT_ANSWERS], ids=[a[0] for a in CHAT_ANSWERS]
)
def test_any_answer_text_survives_each_chat_protocol(
    encode: Callable[[ChatResult], Any],
    decode_text: Callable[[Any], str],
    text: str,
    tokens_in: int,
    tokens_out: int,
) -> None:
    result = ChatResult(text, "stop", Usage(tokens_in, tokens_out), "e", "req-1")
    assert decode_text(json.loads(_server_bytes(encode(result)))) == text


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.lists(
            st.floats(width=32, allow_nan=False, allow_infinity=False), min_size=1, max_size=8
        ),
        min_size=1,
        max_size=6,
    ),
    st.sampled_from(["float", "base64"]),
    st.randoms(use_true_random=False),
)
def test_embeddings_come_back_in_input_order_whatever_order_the_server_lists_them(
    vectors: list[list[float]], fmt: str, rng: Any
) -> None:
    body = oai.encode_embedding_response(
        EmbeddingResult(tuple(map(tuple, vectors)), Usage(3, 0), encoding_format=fmt)
    )
    rng.shuffle(body["data"])
    inputs = [f"text {i}" for i in range(len(vectors))]
    outputs, usage = _wire("openai", EMBEDDINGS).decode(json.loads(_server_bytes(body)), inputs)
    assert [v.tolist() for v in outputs] == vectors  # float32 values (the strategy makes them)
    assert usage == Usage(3, 0)


# --- lone surrogates ------------------------------------------------------------------------
# UTF-8 cannot carry a lone surrogate, yet a Python str can hold one and JSON can spell one
# ("\ud800"). Decision: the wire carries only UTF-8 text, so a lone surrogate becomes U+FFFD
# and a high/low pair becomes the character it encodes, on both sides and in both directions.


def _utf8_safe(text: str) -> str:
    def fix(m: re.Match[str]) -> str:
        pair = m[0]
        if len(pair) == 1:
            return "\ufffd"
        return chr(0x10000 + ((ord(pair[0]) - 0xD800) << 10) + ord(pair[1]) - 0xDC00)

    return re.sub("[\ud800-\udbff][\udc00-\udfff]|[\ud800-\udfff]", fix, text)


surrogates = st.integers(0xD800, 0xDFFF).map(chr)
with_surrogates = st.lists(
    st.one_of(surrogates, st.characters(codec="utf-8"), st.just("\ud83d\ude00")),
    min_size=1,
    max_size=12,
).map("".join)


@settings(max_examples=80, deadline=None)
@given(st.sampled_from(ROUTES), with_surrogates)
@example(("databricks", CHAT), "a\ud800b")  # UnicodeEncodeError in the client
@example(("openai", EMBEDDINGS), "\ud83d\ude00\udc00")
def test_a_lone_surrogate_in_a_prompt_is_sent_as_the_replacement_character(
    route: tuple[str, str], text: str
) -> None:
    protocol, task = route
    inputs: list[Any] = [{text: text}] if task == CUSTOM else [text]
    payload = _client_bytes(_wire(protocol, task).encode(inputs))  # must not raise
    request = _decode_request(protocol, task, json.loads(payload))
    safe = _utf8_safe(text)
    assert _request_texts(request) == ([{safe: safe}] if task == CUSTOM else [safe])


# Each answer shape the client decodes text from: how a server encodes a text, how the
# client reads it back.
def _chat_answer(
    encode: Callable[[ChatResult], Any], protocol: str
) -> tuple[Callable[[str], Any], Callable[[Any], Any]]:
    wire = _wire(protocol, CHAT)
    return (
        lambda text: encode(ChatResult(text, "stop", Usage(1, 1))),
        lambda body: wire.decode(body, ["q"])[0][0],
    )


TEXT_ANSWERS: dict[str, tuple[Callable[[str], Any], Callable[[Any], Any]]] = {
    "openai": _chat_answer(oai.encode_chat_response, "openai"),
    "openai-blocks": _chat_answer(
        lambda r: oai.encode_chat_response(replace(r, reasoning="")), "databricks"
    ),
    "anthropic": _chat_answer(anthropic.encode_response, "anthropic"),
    "gemini": _chat_answer(gemini.encode_response, "gemini"),
    "completions": (
        lambda text: oai.encode_completion_response(
            CompletionResult((text,), ("stop",), Usage(1, 1), request_id="r")
        ),
        lambda body: _wire("openai", COMPLETIONS).decode(body, ["q"])[0][0],
    ),
    "custom": (
        lambda text: custom.encode_response(CustomResult(({text: [text, 1.5]},))),
        lambda body: _wire("databricks", CUSTOM).decode(body, [{"q": 1}])[0][0],
    ),
}


@settings(max_examples=80, deadline=None)
@given(st.sampled_from(sorted(TEXT_ANSWERS)), with_surrogates)
@example("openai", "\ud800")  # reached the UDF, where Arrow cannot encode it
@example("custom", "\udc00")
def test_a_lone_surrogate_in_an_answer_reaches_the_client_as_the_replacement_character(
    name: str, text: str
) -> None:
    encode, decode_answer = TEXT_ANSWERS[name]
    # json.dumps escapes it as "\ud800": how a server's lone surrogate reaches the client.
    decoded = decode_answer(json.loads(json.dumps(encode(text))))
    safe = _utf8_safe(text)
    assert decoded == ({safe: [safe, 1.5]} if name == "custom" else safe)
    json.dumps(decoded, ensure_ascii=False).encode("utf-8")  # Arrow can hold it


@settings(max_examples=40, deadline=None)
@given(
    st.lists(unicode_text, min_size=1, max_size=4),
    st.randoms(use_true_random=False),
)
def test_a_completion_with_n_choices_answers_its_prompt_with_the_first(
    choices: list[str], rng: Any
) -> None:
    # modelParameters => named_struct('n', 3): the server answers three choices per prompt.
    body = oai.encode_completion_response(
        CompletionResult(tuple(choices), ("stop",) * len(choices), Usage(1, 1), request_id="r")
    )
    rng.shuffle(body["choices"])
    outputs, _ = _wire("openai", COMPLETIONS).decode(json.loads(_server_bytes(body)), ["q"])
    assert outputs == [choices[0]]


# --- garbled bodies -------------------------------------------------------------------------

# Keys every protocol reads, so random JSON reaches deep into the decoders.
_KEYS = [
    "choices", "message", "content", "text", "type", "index", "finish_reason", "usage",
    "prompt_tokens", "completion_tokens", "input_tokens", "output_tokens", "total_tokens",
    "data", "embedding", "predictions", "candidates", "parts", "usageMetadata",
    "promptTokenCount", "candidatesTokenCount", "finishReason", "output", "status",
    "stop_reason", "id", "model", "error", "messages", "role", "prompt", "input", "max_tokens",
    "temperature", "stream", "dataframe_records", "dataframe_split", "columns", "inputs",
    "instances", "encoding_format", "instructions", "max_output_tokens", "format", "system",
    "contents", "systemInstruction", "generationConfig", "maxOutputTokens", "responseMimeType",
    "responseJsonSchema", "json_schema", "schema", "response_format",
]  # fmt: skip
json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.integers(),
    st.sampled_from([10**400, -(10**400), 2**63]),
    st.floats(),  # NaN and ±Infinity: Python's json reads them
    st.sampled_from(["text", "output_text", "message", "user", "assistant", "model", "stop"]),
    st.sampled_from(["float", "base64", "json_object", "json_schema", "application/json"]),
    st.binary(max_size=13).map(lambda b: base64.b64encode(b).decode()),
    st.text(max_size=8),
    st.lists(surrogates, max_size=2).map("".join),
)
json_values = st.recursive(
    json_leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(_KEYS) | st.text(max_size=4), inner, max_size=5),
    ),
    max_leaves=25,
)


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += _paths(item, (*path, i))
    return found


@st.composite
def mutated(draw: st.DrawFn, valid: Any) -> Any:
    """`valid` with one to three subtrees replaced by random JSON, or removed."""
    body = copy.deepcopy(valid)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(body)))
        if not path:
            body = draw(json_values)
            continue
        parent = body
        try:
            for key in path[:-1]:
                parent = parent[key]
            if draw(st.booleans()) and isinstance(parent, dict):
                del parent[path[-1]]
            else:
                parent[path[-1]] = draw(json_values)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed this path
    return body


_RESULT = ChatResult("Hello, world.", "stop", Usage(3, 4), "e", "req-1")
_VECTORS = EmbeddingResult(((0.5, 1.0), (2.0, -1.0)), Usage(2, 0))
# name: (a valid answer, how the client decodes it, how many inputs it answers)
CLIENT_DECODES: dict[str, tuple[Any, Callable[[Any, Sequence[Any]], Any], int]] = {
    "databricks-chat": (oai.encode_chat_response(_RESULT), _wire("databricks", CHAT).decode, 1),
    "openai-chat": (oai.encode_chat_response(_RESULT), _wire("openai", CHAT).decode, 1),
    "openai-completions": (
        oai.encode_completion_response(
            CompletionResult(("a", "b"), ("stop", "length"), Usage(1, 2), request_id="r")
        ),
        _wire("openai", COMPLETIONS).decode,
        1,
    ),
    "openai-embeddings": (
        oai.encode_embedding_response(_VECTORS),
        _wire("openai", EMBEDDINGS).decode,
        2,
    ),
    "openai-embeddings-base64": (
        oai.encode_embedding_response(replace(_VECTORS, encoding_format="base64")),
        _wire("openai", EMBEDDINGS).decode,
        2,
    ),
    "databricks-custom": (
        {"predictions": [1.5, "x", {"a": [1]}]},
        _wire("databricks", CUSTOM).decode,
        3,
    ),
    "anthropic": (anthropic.encode_response(_RESULT), _wire("anthropic", CHAT).decode, 1),
    "gemini": (gemini.encode_response(_RESULT), _wire("gemini", CHAT).decode, 1),
    "responses": (responses.encode_response(_RESULT), _wire("openai-responses", CHAT).decode, 1),
}


def _garbled(valid_bodies: dict[str, Any]) -> st.SearchStrategy[tuple[str, Any]]:
    """(name, body): random JSON, or one of the valid bodies with parts replaced."""
    return st.sampled_from(sorted(valid_bodies)).flatmap(
        lambda name: st.tuples(st.just(name), st.one_of(json_values, mutated(valid_bodies[name])))
    )


@settings(max_examples=400, deadline=None)
@given(_garbled({name: case[0] for name, case in CLIENT_DECODES.items()}))
@example(("openai-completions", {"choices": [{"index": None}]}))  # TypeError
@example(("openai-completions", {"choices": [{"index": float("inf")}]}))  # OverflowError
@example(("openai-completions", {"choices": []}))  # no output for the row
@example(("openai-embeddings", {"data": [{"index": 0, "embedding": "AAAAAAAAAAAA"}, {"index": 1, "embedding": [1]}]}))  # struct.error  # fmt: skip
@example(("openai-embeddings", {"data": [{"index": 0, "embedding": [10**400]}, {"index": 1, "embedding": [1]}]}))  # OverflowError  # fmt: skip
@example(("openai-chat", {"choices": [{"message": {}}], "usage": {"prompt_tokens": -5}}))
@example(("openai-chat", {"choices": [{"message": {}}], "usage": {"prompt_tokens": True}}))
@example(("anthropic", {"content": [], "usage": {"input_tokens": 1, "output_tokens": [1]}}))
@example(("gemini", {"candidates": [{}], "usageMetadata": {"promptTokenCount": 1, "candidatesTokenCount": float("inf")}}))  # fmt: skip
@example(("responses", {"output": [], "usage": {"input_tokens": -1}}))
@example(("databricks-custom", {"predictions": ["\ud800", {"\udc00": ["\ud83d"]}, 1]}))
def test_a_garbled_answer_is_a_retryable_protocol_error_or_a_well_formed_result(
    case: tuple[str, Any],
) -> None:
    name, body = case
    _, decode_body, rows = CLIENT_DECODES[name]
    inputs = [f"input {i}" for i in range(rows)]
    try:
        decoded = decode_body(json.loads(json.dumps(body)), inputs)
    except ValueError:  # ProtocolError is one: the client retries it as a malformed body
        return
    outputs, usage = ([decoded.text], decoded.usage) if isinstance(decoded, ChatResult) else decoded
    # What BatchEngine and the UDF rely on: one output per input, text Arrow can hold,
    # token counts that are counts.
    assert len(outputs) == rows
    vectors = [o for o in outputs if isinstance(o, np.ndarray)]
    assert all(v.ndim == 1 and v.dtype == np.float32 for v in vectors)  # ARRAY<FLOAT> as is
    others = [o for o in outputs if not isinstance(o, np.ndarray)]
    json.dumps(others, ensure_ascii=False).encode("utf-8")
    for count in (usage.input_tokens, usage.output_tokens):
        assert isinstance(count, int) and not isinstance(count, bool) and count >= 0


@settings(max_examples=150, deadline=None)
@given(json_values)
def test_reading_the_error_of_any_json_body_never_raises(body: Any) -> None:
    code, message = read_error(body)
    assert code is None or isinstance(code, str)
    assert message is None or isinstance(message, str)


# name: (the endpoint's task, a valid request body); the name's first part is its protocol's.
VALID_REQUESTS: dict[str, tuple[str, Any]] = {
    "chat": (CHAT, oai.encode_chat_request(ChatRequest((Message("system", "s"), Message("user", "q")), "e", {"max_tokens": 5, "temperature": 0.5}), with_model=True)),
    "completions": (COMPLETIONS, oai.encode_completion_request(CompletionRequest(("a", "b"), "e", {"max_tokens": 5}), with_model=True)),
    "embeddings": (EMBEDDINGS, oai.encode_embedding_request(EmbeddingRequest(("a", "b"), "e", "base64"), with_model=True)),
    "custom": (CUSTOM, {"dataframe_split": {"columns": ["a", "b"], "data": [[1, "x"], [2, "y"]]}}),
    "custom-records": (CUSTOM, {"dataframe_records": [{"a": 1}], "inputs": [1]}),
    "responses": (CHAT, responses.encode_request(ChatRequest((Message("user", "q"),), "e", {"max_tokens": 5, "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": {"type": "object"}}}}))),
    "anthropic": (CHAT, anthropic.encode_request(ChatRequest((Message("system", "s"), Message("user", "q")), "e", {"stop": "x"}))),
    "gemini": (CHAT, gemini.encode_request(ChatRequest((Message("user", "q"),), "e", {"max_tokens": 5, "response_format": {"type": "json_schema", "json_schema": {"schema": {"type": "OBJECT"}}}}))),
}  # fmt: skip


_PROTOCOL_OF = {"chat": "openai", "completions": "openai", "embeddings": "openai",
                "custom": "databricks", "responses": "openai-responses"}  # fmt: skip


def _emulator_decode(name: str, body: Any) -> Any:
    task, _ = VALID_REQUESTS[name]
    kind = name.partition("-")[0]
    return _decode_request(_PROTOCOL_OF.get(kind, kind), task, body)


@settings(max_examples=300, deadline=None)
@given(_garbled({name: case[1] for name, case in VALID_REQUESTS.items()}))
@example(("custom", {"dataframe_split": {"columns": [["a"]], "data": [[1]]}}))  # TypeError
@example(("custom", {"dataframe_split": {"columns": ["a"], "data": [1]}}))  # TypeError
def test_a_garbled_request_body_is_a_protocol_error_for_the_emulator(
    case: tuple[str, Any],
) -> None:
    name, body = case
    try:
        request = _emulator_decode(name, json.loads(json.dumps(body)))
    except ProtocolError:
        return  # → 400 INVALID_PARAMETER_VALUE
    if name.startswith("custom"):
        assert isinstance(request, CustomRequest)
        assert all(isinstance(r, dict) for r in request.records)
    else:
        kind = {"completions": CompletionRequest, "embeddings": EmbeddingRequest}
        assert isinstance(request, kind.get(name, ChatRequest))
        assert all(isinstance(t, str) for t in _request_texts(request))
