"""The stream codecs of the protocol table: every chat protocol's events carry the whole
answer, its finish reason and usage; the SSE framing reads back as written; and the
catalog's names and retired models."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiquery.endpoints.catalog import RETIRED, canonical_name, retired
from aiquery.endpoints.registry import EndpointNotFoundError, load_registry
from aiquery.protocols.common import CHAT, ChatResult, Streaming, Usage, estimate_tokens
from aiquery.protocols.streaming import DONE, Event, StreamBody, frame, parse, pieces
from aiquery.protocols.table import PROTOCOLS

answers = st.builds(
    ChatResult,
    st.text(max_size=120),
    st.sampled_from(["stop", "length"]),
    st.builds(Usage, st.integers(0, 10**5), st.integers(0, 10**5)),
    st.just("endpoint"),
    st.just("req-1"),
)


@given(st.text(max_size=300))
def test_pieces_join_back_to_the_text(text: str) -> None:
    assert "".join(pieces(text)) == text


def _openai_text(events: list[Event]) -> str:
    return "".join(
        e.data["choices"][0]["delta"].get("content", "")
        for e in events
        if isinstance(e.data, dict) and e.data.get("choices")
    )


def _openai_tail(events: list[Event], answer: ChatResult) -> None:
    assert events[-1].data == DONE
    finish = [e.data["choices"][0]["finish_reason"] for e in events[:-1] if e.data["choices"]]
    assert finish[-1] == answer.finish_reason and set(finish[:-1]) <= {None}
    (usage,) = [e.data["usage"] for e in events[:-1] if "usage" in e.data]
    assert usage["completion_tokens"] == answer.usage.output_tokens


def _responses_text(events: list[Event]) -> str:
    return "".join(e.data["delta"] for e in events if e.name == "response.output_text.delta")


def _responses_tail(events: list[Event], answer: ChatResult) -> None:
    numbers = [e.data["sequence_number"] for e in events]
    assert numbers == list(range(len(events)))
    assert all(e.name == e.data["type"] for e in events)
    final = events[-1].data["response"]
    assert final["output"][0]["content"][0]["text"] == answer.text
    assert final["usage"]["output_tokens"] == answer.usage.output_tokens
    assert events[-1].name == (
        "response.incomplete" if answer.finish_reason == "length" else "response.completed"
    )


def _anthropic_text(events: list[Event]) -> str:
    return "".join(e.data["delta"]["text"] for e in events if e.name == "content_block_delta")


def _anthropic_tail(events: list[Event], answer: ChatResult) -> None:
    assert [e.name for e in events[:2]] == ["message_start", "content_block_start"]
    assert events[0].data["message"]["usage"]["input_tokens"] == answer.usage.input_tokens
    delta = next(e.data for e in events if e.name == "message_delta")
    assert delta["usage"]["output_tokens"] == answer.usage.output_tokens
    assert (
        delta["delta"]["stop_reason"]
        == {"stop": "end_turn", "length": "max_tokens"}[answer.finish_reason]
    )
    assert events[-1].name == "message_stop"


def _gemini_text(events: list[Event]) -> str:
    return "".join(e.data["candidates"][0]["content"]["parts"][0]["text"] for e in events)


def _gemini_tail(events: list[Event], answer: ChatResult) -> None:
    last = events[-1].data
    assert last["candidates"][0]["finishReason"] == (
        "MAX_TOKENS" if answer.finish_reason == "length" else "STOP"
    )
    assert last["usageMetadata"]["candidatesTokenCount"] == answer.usage.output_tokens


READERS: dict[
    str, tuple[Callable[[list[Event]], str], Callable[[list[Event], ChatResult], None]]
] = {
    "databricks": (_openai_text, _openai_tail),
    "openai": (_openai_text, _openai_tail),
    "openai-responses": (_responses_text, _responses_tail),
    "anthropic": (_anthropic_text, _anthropic_tail),
    "gemini": (_gemini_text, _gemini_tail),
}


def test_every_chat_protocol_streams() -> None:
    streaming = {n for n, p in PROTOCOLS.items() if p.operations[CHAT].encode_stream}
    assert streaming == set(PROTOCOLS) == set(READERS)


@pytest.mark.parametrize("protocol", sorted(READERS))
@settings(max_examples=40)
@given(answer=answers)
def test_a_stream_carries_the_whole_answer(protocol: str, answer: ChatResult) -> None:
    encode = PROTOCOLS[protocol].operations[CHAT].encode_stream
    assert encode is not None
    cut = pieces(answer.text)
    body: StreamBody = encode(answer, cut, Streaming(include_usage=True))
    assert len(body.pieces) == len(cut)
    events = parse(b"".join(frame(e) for e in body.events()).decode())
    assert events == body.events()  # the SSE framing reads back as written
    text_of, check_tail = READERS[protocol]
    assert text_of(events) == answer.text
    check_tail(events, answer)


def test_openai_sends_usage_only_when_asked() -> None:
    encode = PROTOCOLS["openai"].operations[CHAT].encode_stream
    assert encode is not None
    answer = ChatResult("a b", "stop", Usage(3, 1))
    events = encode(answer, pieces(answer.text), Streaming()).events()
    assert not [e for e in events if isinstance(e.data, dict) and "usage" in e.data]


def test_parse_reads_crlf_separated_events() -> None:
    text = 'event: ping\r\ndata: {"type":"ping"}\r\n\r\ndata: [DONE]\r\n\r\n'
    assert parse(text) == [Event({"type": "ping"}, "ping"), Event(DONE)]


@pytest.mark.parametrize(("text", "tokens"), [("", 0), ("h", 1), ("hi", 1), ("abcdefg", 2)])
def test_token_estimate_is_at_least_one_for_any_text(text: str, tokens: int) -> None:
    assert estimate_tokens(text) == tokens


# --- the catalog's names --------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["databricks-gpt-5-4", "system.ai.gpt-5-4", "system.ai.databricks-gpt-5-4"]
)
def test_the_three_forms_of_a_model_name(name: str, tmp_path: Path) -> None:
    assert canonical_name(name) == "databricks-gpt-5-4"
    assert load_registry(environ={}, cwd=tmp_path).resolve(name).name == "databricks-gpt-5-4"


@pytest.mark.parametrize("model", RETIRED, ids=lambda m: m.name)
def test_a_retired_model_fails_analysis_naming_its_replacement(model: Any, tmp_path: Path) -> None:
    registry = load_registry(environ={}, cwd=tmp_path)
    assert registry.resolve(model.replacement).name == model.replacement  # still served
    for name in (model.name, "system.ai." + model.name.removeprefix("databricks-")):
        assert retired(name) == model
        with pytest.raises(EndpointNotFoundError, match="has been retired") as caught:
            registry.resolve(name)
        assert f"'{model.replacement}'" in str(caught.value)


def test_a_user_endpoint_named_like_a_retired_model_is_theirs(tmp_path: Path) -> None:
    (tmp_path / "aiquery.toml").write_text(
        f'[endpoints.{RETIRED[0].name}]\nprotocol = "openai"\nbase_url = "http://127.0.0.1:9/v1"\n'
    )
    registry = load_registry(environ={}, cwd=tmp_path)
    assert registry.resolve(RETIRED[0].name).base_url == "http://127.0.0.1:9/v1"
