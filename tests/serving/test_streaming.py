"""Streaming on every chat route, read by the official SDKs' own streaming helpers.

Each test streams a request and asserts the streamed text and usage equal what the same
request gets without streaming, and that the emulator logged it once as streamed.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from aiquery.protocols.streaming import DONE, parse
from aiquery.serving.control import EmulatorControl
from aiquery.serving.server import EmulatorServer

pytestmark = pytest.mark.serving

PROMPT = "Summarize: Delta tables keep history. They support time travel and audits."
MESSAGES = [{"role": "user", "content": PROMPT}]
SCHEMA = {
    "type": "object",
    "properties": {"title": {"type": "string"}, "score": {"type": "integer"}},
    "required": ["title", "score"],
    "additionalProperties": False,
}


def _openai(emulator: EmulatorServer, prefix: str) -> Any:
    from openai import OpenAI

    return OpenAI(api_key=emulator.token, base_url=emulator.url + prefix, max_retries=0)


def _logged_once_as_streamed(control: EmulatorControl, route: str) -> dict[str, Any]:
    rows = [r for r in control.requests() if r["route"] == route]
    streamed = [r for r in rows if r["streamed"]]
    assert len(streamed) == 1, rows
    assert streamed[0]["status"] == 200
    assert streamed[0]["first_byte_ms"] is not None
    return streamed[0]


@pytest.mark.parametrize("prefix", ["/serving-endpoints", "/ai-gateway/mlflow/v1"])
def test_openai_chat_stream_equals_the_answer_and_reports_usage(
    emulator: EmulatorServer, control: EmulatorControl, prefix: str
) -> None:
    client = _openai(emulator, prefix)
    whole = client.chat.completions.create(model="databricks-gpt-5-4", messages=MESSAGES)
    chunks = list(
        client.chat.completions.create(
            model="databricks-gpt-5-4",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 2
    assert chunks[-1].choices == [] and chunks[-1].usage == whole.usage
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop" and set(finishes[:-1]) == {None}
    # Without include_usage no chunk carries usage, as OpenAI streams.
    plain = list(
        client.chat.completions.create(model="databricks-gpt-5-4", messages=MESSAGES, stream=True)
    )
    assert all(c.usage is None for c in plain)
    logged = [r for r in control.requests() if r["streamed"]]
    assert len(logged) == 2
    assert {r["output_tokens"] for r in logged} == {whole.usage.completion_tokens}


def test_openai_stream_helper_accumulates_structured_output(emulator: EmulatorServer) -> None:
    client = _openai(emulator, "/serving-endpoints")
    fmt = {"type": "json_schema", "json_schema": {"name": "t", "schema": SCHEMA, "strict": True}}
    whole = client.chat.completions.create(
        model="databricks-gpt-5-mini", messages=MESSAGES, response_format=fmt
    )
    with client.chat.completions.stream(
        model="databricks-gpt-5-mini", messages=MESSAGES, response_format=fmt
    ) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.content == whole.choices[0].message.content
    assert set(json.loads(final.choices[0].message.content or "")) == {"title", "score"}


@pytest.mark.parametrize(
    ("prefix", "model"),
    [("/ai-gateway/openai/v1", "databricks-gpt-5-4"), ("/ai-gateway/mlflow/v1", "system.ai.gpt-5")],
)
def test_responses_stream_events_build_the_same_response(
    emulator: EmulatorServer, control: EmulatorControl, prefix: str, model: str
) -> None:
    client = _openai(emulator, prefix)
    whole = client.responses.create(model=model, input=PROMPT)
    with client.responses.stream(model=model, input=PROMPT) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert final.output_text == whole.output_text
    assert final.usage == whole.usage and final.status == "completed"
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert kinds.count("response.output_text.delta") > 2
    _logged_once_as_streamed(control, prefix.removeprefix("/ai-gateway/") + "/responses")


def test_responses_stream_cut_at_max_output_tokens_ends_incomplete(
    emulator: EmulatorServer,
) -> None:
    client = _openai(emulator, "/ai-gateway/openai/v1")
    whole = client.responses.create(model="databricks-gpt-5", input=PROMPT, max_output_tokens=2)
    with client.responses.stream(
        model="databricks-gpt-5", input=PROMPT, max_output_tokens=2
    ) as stream:
        kinds = [event.type for event in stream]
    assert whole.status == "incomplete"
    assert kinds[-1] == "response.incomplete"


def test_anthropic_message_stream(emulator: EmulatorServer, control: EmulatorControl) -> None:
    from anthropic import Anthropic

    client = Anthropic(
        api_key=emulator.token, base_url=emulator.url + "/ai-gateway/anthropic", max_retries=0
    )
    kwargs: dict[str, Any] = {
        "model": "system.ai.databricks-claude-opus-4-6",
        "max_tokens": 256,
        "system": "Be brief.",
        "messages": MESSAGES,
    }
    whole = client.messages.create(**kwargs)
    with client.messages.stream(**kwargs) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == final.content[0].text == whole.content[0].text  # type: ignore[union-attr]
    assert final.usage.input_tokens == whole.usage.input_tokens
    assert final.usage.output_tokens == whole.usage.output_tokens
    assert final.stop_reason == whole.stop_reason == "end_turn"
    _logged_once_as_streamed(control, "anthropic/v1/messages")


@pytest.mark.parametrize("api_version", [None, "v1beta"])
def test_gemini_generate_content_stream(
    emulator: EmulatorServer, control: EmulatorControl, api_version: str | None
) -> None:
    from google import genai
    from google.genai import types

    client = genai.Client(
        api_key=emulator.token,
        http_options=types.HttpOptions(
            base_url=emulator.url + "/ai-gateway/gemini", api_version=api_version
        ),
    )
    model = "system.ai.gemini-2-5-flash"
    whole = client.models.generate_content(model=model, contents=PROMPT)
    chunks = list(client.models.generate_content_stream(model=model, contents=PROMPT))
    assert "".join(c.text or "" for c in chunks) == whole.text
    assert len(chunks) > 2
    assert chunks[-1].usage_metadata == whole.usage_metadata
    assert chunks[-1].candidates[0].finish_reason == "STOP"  # type: ignore[index]
    version = api_version or "v1"
    _logged_once_as_streamed(control, f"gemini/{version}/streamGenerateContent")


def test_gemini_stream_without_alt_sse_is_one_json_array(emulator: EmulatorServer) -> None:
    url = emulator.url + "/ai-gateway/gemini/v1beta/models/databricks-gemini-2-5-pro"
    body = {"contents": [{"parts": [{"text": PROMPT}]}]}
    headers = {"x-goog-api-key": emulator.token}
    whole = httpx.post(url + ":generateContent", json=body, headers=headers).json()
    streamed = httpx.post(url + ":streamGenerateContent", json=body, headers=headers)
    assert streamed.headers["content-type"].startswith("application/json")
    slashed = httpx.post(url + ":streamGenerateContent/", json=body, headers=headers)
    assert slashed.headers["content-type"].startswith("application/json")
    parts = json.loads(streamed.text)
    text = "".join(p["candidates"][0]["content"]["parts"][0]["text"] for p in parts)
    assert text == whole["candidates"][0]["content"]["parts"][0]["text"]
    assert parts[-1]["usageMetadata"] == whole["usageMetadata"]


def test_a_method_gemini_does_not_serve_names_the_two_it_does(emulator: EmulatorServer) -> None:
    url = emulator.url + "/ai-gateway/gemini/v1beta/models/databricks-gemini-2-5-pro:countTokens"
    answer = httpx.post(url, json={}, headers={"x-goog-api-key": emulator.token})
    assert answer.status_code == 404
    message = answer.json()["error"]["message"]
    assert "':generateContent' and ':streamGenerateContent'" in message


def test_databricks_invocations_stream_is_openai_chunks_ending_in_done(
    emulator: EmulatorServer, control: EmulatorControl
) -> None:
    url = emulator.url + "/serving-endpoints/databricks-claude-sonnet-4/invocations"
    auth = {"Authorization": f"Bearer {emulator.token}"}
    whole = httpx.post(url, json={"messages": MESSAGES}, headers=auth).json()
    answer = httpx.post(url, json={"messages": MESSAGES, "stream": True}, headers=auth)
    assert answer.headers["content-type"].startswith("text/event-stream")
    events = parse(answer.text)
    assert events[-1].data == DONE and all(e.name is None for e in events)
    chunks = [e.data for e in events[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert {c["id"] for c in chunks} == {answer.headers["x-request-id"]}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == whole["choices"][0]["message"]["content"]
    _logged_once_as_streamed(control, "serving-endpoints/invocations")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"stream": "yes"}, "'stream' must be true or false"),
        ({"stream_options": {"include_usage": True}}, "only allowed with 'stream': true"),
        ({"stream": True, "stream_options": {"include_usage": 1}}, "include_usage"),
    ],
)
def test_malformed_stream_requests_are_400_naming_the_field(
    emulator: EmulatorServer, body: dict[str, Any], message: str
) -> None:
    answer = httpx.post(
        emulator.url + "/serving-endpoints/chat/completions",
        json={"model": "databricks-gpt-5-4", "messages": MESSAGES, **body},
        headers={"Authorization": f"Bearer {emulator.token}"},
    )
    assert answer.status_code == 400
    assert message in answer.json()["message"]


def test_completions_refuse_streaming_and_say_where_it_is_served(
    emulator: EmulatorServer, control: EmulatorControl
) -> None:
    control.put_endpoint("local-completions", task="llm/v1/completions")
    answer = httpx.post(
        emulator.url + "/serving-endpoints/local-completions/invocations",
        json={"prompt": "Once", "stream": True},
        headers={"Authorization": f"Bearer {emulator.token}"},
    )
    assert answer.status_code == 400
    assert "served for chat only" in answer.json()["message"]


# --- pacing and faults mid-stream ----------------------------------------------------


def _stream_timed(emulator: EmulatorServer, model: str) -> tuple[list[float], list[str]]:
    """Seconds from sending to each content chunk, and the chunks' text."""
    client = _openai(emulator, "/serving-endpoints")
    sent = time.monotonic()
    times, texts = [], []
    for chunk in client.chat.completions.create(model=model, messages=MESSAGES, stream=True):
        if chunk.choices and chunk.choices[0].delta.content:
            times.append(time.monotonic() - sent)
            texts.append(chunk.choices[0].delta.content)
    return times, texts


def test_chunks_are_paced_by_time_to_first_token_and_tokens_per_second(
    emulator: EmulatorServer, control: EmulatorControl
) -> None:
    control.set_faults("databricks-gpt-5-nano", time_to_first_token_ms=300, tokens_per_second=40)
    times, texts = _stream_timed(emulator, "databricks-gpt-5-nano")
    tokens = len("".join(texts)) / 4
    # Lower bounds only (a sleep never ends early): no wall-clock upper bounds in tests.
    assert times[0] >= 0.3
    assert times[-1] >= 0.3 + (tokens - len(texts[-1]) / 4) / 40 - 0.01
    (logged,) = control.requests("databricks-gpt-5-nano")
    # The first byte (the role chunk) goes out before the first token is generated.
    assert logged["first_byte_ms"] < times[0] * 1000


def test_a_whole_answer_waits_for_its_last_token(
    emulator: EmulatorServer, control: EmulatorControl
) -> None:
    control.set_faults("databricks-gpt-5-nano", time_to_first_token_ms=200, tokens_per_second=50)
    client = _openai(emulator, "/serving-endpoints")
    sent = time.monotonic()
    whole = client.chat.completions.create(model="databricks-gpt-5-nano", messages=MESSAGES)
    assert whole.usage is not None
    assert time.monotonic() - sent >= 0.2 + whole.usage.completion_tokens / 50


def test_a_drop_fault_cuts_the_stream_after_the_configured_chunks(
    emulator: EmulatorServer, control: EmulatorControl
) -> None:
    from openai import APIError

    control.set_faults("databricks-gpt-5-4", drop_rate=1.0, stream_fault_after_chunks=2)
    client = _openai(emulator, "/serving-endpoints")
    received = []
    with pytest.raises((httpx.HTTPError, APIError)):
        for chunk in client.chat.completions.create(
            model="databricks-gpt-5-4", messages=MESSAGES, stream=True
        ):
            if chunk.choices and chunk.choices[0].delta.content:
                received.append(chunk.choices[0].delta.content)
    assert len(received) == 2
    (logged,) = control.requests("databricks-gpt-5-4")
    assert logged["status"] == "dropped" and logged["fault"] == "drop" and logged["streamed"]


def test_a_hang_fault_stalls_the_stream_midway_then_closes_it(
    emulator: EmulatorServer, control: EmulatorControl
) -> None:
    url = emulator.url + "/serving-endpoints/databricks-claude-sonnet-4/invocations"
    request: dict[str, Any] = {
        "json": {"messages": MESSAGES, "stream": True},
        "headers": {"Authorization": f"Bearer {emulator.token}"},
    }
    total = len(parse(httpx.post(url, **request).text))
    control.reset()
    control.set_faults("databricks-claude-sonnet-4", hang_rate=1.0, hang_seconds=0.5)
    events, sent = 0, time.monotonic()
    with pytest.raises(httpx.HTTPError), httpx.stream("POST", url, **request) as answer:
        assert answer.status_code == 200
        for line in answer.iter_lines():
            if line.startswith("data:"):
                events += 1
    assert 1 < events < total - 1  # it stopped midway
    assert time.monotonic() - sent >= 0.5  # a lower bound: it stalled hang_seconds, then the cut
    (logged,) = control.requests("databricks-claude-sonnet-4")
    assert logged["status"] == "hung" and logged["streamed"]


def test_a_malformed_fault_cuts_one_event_short(
    emulator: EmulatorServer, control: EmulatorControl
) -> None:
    control.set_faults("databricks-gpt-5-4", malformed_rate=1.0)
    client = _openai(emulator, "/serving-endpoints")
    with pytest.raises(json.JSONDecodeError):
        list(
            client.chat.completions.create(
                model="databricks-gpt-5-4", messages=MESSAGES, stream=True
            )
        )
    (logged,) = control.requests("databricks-gpt-5-4")
    assert logged["fault"] == "malformed" and logged["streamed"]


def test_a_client_that_leaves_mid_stream_is_logged_as_closed(
    emulator: EmulatorServer, control: EmulatorControl
) -> None:
    control.set_faults("databricks-gpt-5-4", tokens_per_second=5)  # a stream of seconds
    client = _openai(emulator, "/serving-endpoints")
    stream = client.chat.completions.create(
        model="databricks-gpt-5-4", messages=MESSAGES, stream=True
    )
    next(iter(stream))
    stream.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        statuses = [r["status"] for r in control.requests("databricks-gpt-5-4")]
        if statuses:
            break
        time.sleep(0.02)
    assert statuses == ["client_closed"]
    stats = control.stats()["databricks-gpt-5-4"]
    assert stats["streamed"] == 1
