"""Every emulator route over raw HTTP: bodies, auth, errors and request tags."""

from __future__ import annotations

import json
from typing import Any

import httpx
import jsonschema
import pytest

from aiquery.serving.control import EmulatorControl
from aiquery.serving.server import EmulatorServer

pytestmark = pytest.mark.serving

CHAT = {"messages": [{"role": "user", "content": "Summarize: Spark runs jobs. It is fast."}]}
TAGS = "Databricks-Ai-Gateway-Request-Tags"


def post(
    server: EmulatorServer, path: str, body: Any, *, token: str | None = None, **kw: Any
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token or server.token}", **kw.pop("headers", {})}
    return httpx.post(server.url + path, json=body, headers=headers, timeout=10, **kw)


# (path, body) for every model route, each answering 200 with a valid token.
MODEL_ROUTES = [
    ("/serving-endpoints/databricks-gpt-5-4/invocations", CHAT),
    ("/serving-endpoints/chat/completions", {**CHAT, "model": "databricks-gpt-5-4"}),
    ("/serving-endpoints/embeddings", {"model": "databricks-gte-large-en", "input": ["a b"]}),
    ("/ai-gateway/mlflow/v1/chat/completions", {**CHAT, "model": "system.ai.gpt-5-4"}),
    ("/ai-gateway/mlflow/v1/embeddings", {"model": "system.ai.bge-large-en", "input": "a"}),
    ("/ai-gateway/mlflow/v1/responses", {"model": "system.ai.gpt-5-mini", "input": "hello"}),
    ("/ai-gateway/openai/v1/responses", {"model": "databricks-gpt-5", "input": "hello"}),
    (
        "/ai-gateway/anthropic/v1/messages",
        {"model": "system.ai.claude-sonnet-4-5", "max_tokens": 64, "messages": CHAT["messages"]},
    ),
    (
        "/ai-gateway/gemini/v1beta/models/system.ai.gemini-2-5-flash:generateContent",
        {"contents": [{"role": "user", "parts": [{"text": "hello"}]}]},
    ),
]


@pytest.mark.parametrize(("path", "body"), MODEL_ROUTES)
def test_every_model_route_answers_with_a_valid_token(
    emulator: EmulatorServer, path: str, body: Any
) -> None:
    response = post(emulator, path, body)
    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"]


@pytest.mark.parametrize(("path", "body"), MODEL_ROUTES)
@pytest.mark.parametrize("auth", [None, "Bearer wrong", "Basic dG9rZW46d3Jvbmc="])
def test_every_model_route_rejects_a_missing_or_wrong_token(
    emulator: EmulatorServer, control: EmulatorControl, path: str, body: Any, auth: str | None
) -> None:
    headers = {"Authorization": auth} if auth else {}
    response = httpx.post(emulator.url + path, json=body, headers=headers, timeout=10)
    assert response.status_code == 401
    assert emulator.token not in response.text
    # The error uses the route's own shape: Databricks, or the native provider's.
    payload = response.json()
    if "/anthropic/" in path:
        assert payload["error"]["type"] == "authentication_error"
    elif "/gemini/" in path:
        assert payload["error"]["status"] == "UNAUTHENTICATED"
    elif "/openai/" in path:
        assert payload["error"]["type"] == "authentication_error"
    else:
        assert payload["error_code"] == "UNAUTHENTICATED"
    assert [r["status"] for r in control.requests()] == [401]


def test_basic_auth_as_curl_sends_it_is_accepted(emulator: EmulatorServer) -> None:
    response = httpx.post(
        emulator.url + "/serving-endpoints/databricks-gpt-5-4/invocations",
        json=CHAT,
        auth=("token", emulator.token),
        timeout=10,
    )
    assert response.status_code == 200


def test_chat_invocation_has_the_databricks_shape_and_usage(emulator: EmulatorServer) -> None:
    body = post(emulator, "/serving-endpoints/databricks-gpt-5-4/invocations", CHAT).json()
    assert body["object"] == "chat.completion"
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == "Spark runs jobs."
    assert choice["finish_reason"] == "stop"
    prompt = CHAT["messages"][0]["content"]
    assert body["usage"]["prompt_tokens"] == (len(prompt) + 1) // 4
    assert (
        body["usage"]["total_tokens"]
        == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]
    )


def test_gpt_oss_answers_content_as_a_list_of_blocks(emulator: EmulatorServer) -> None:
    body = post(emulator, "/serving-endpoints/databricks-gpt-oss-20b/invocations", CHAT).json()
    content = body["choices"][0]["message"]["content"]
    assert isinstance(content, list)
    assert [b["text"] for b in content if b["type"] == "text"] == ["Spark runs jobs."]


def test_max_tokens_truncates_with_finish_reason_length(emulator: EmulatorServer) -> None:
    long = {"messages": [{"role": "user", "content": "word " * 200}], "max_tokens": 5}
    body = post(emulator, "/serving-endpoints/databricks-gpt-5-4/invocations", long).json()
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] <= 5


def test_json_schema_response_format_validates(emulator: EmulatorServer) -> None:
    schema = {
        "type": "object",
        "properties": {
            "sentiment": {"type": "string", "enum": ["positive", "negative"]},
            "score": {"type": "integer", "minimum": 1, "maximum": 5},
            "topics": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        },
        "required": ["sentiment", "score", "topics"],
        "additionalProperties": False,
    }
    request = {
        **CHAT,
        "response_format": {"type": "json_schema", "json_schema": {"name": "r", "schema": schema}},
    }
    body = post(emulator, "/serving-endpoints/databricks-gpt-5-4/invocations", request).json()
    jsonschema.validate(json.loads(body["choices"][0]["message"]["content"]), schema)


def test_json_object_response_format_returns_an_object(emulator: EmulatorServer) -> None:
    request = {**CHAT, "response_format": {"type": "json_object"}}
    body = post(emulator, "/serving-endpoints/databricks-gpt-5-4/invocations", request).json()
    assert isinstance(json.loads(body["choices"][0]["message"]["content"]), dict)


def test_embeddings_are_normalised_with_the_endpoint_dimension(emulator: EmulatorServer) -> None:
    request = {"input": ["spark batch jobs", "spark batch inference", "tomato soup recipe"]}
    body = post(emulator, "/serving-endpoints/databricks-bge-large-en/invocations", request).json()
    vectors = [d["embedding"] for d in sorted(body["data"], key=lambda d: d["index"])]
    assert [len(v) for v in vectors] == [1024] * 3
    dot = lambda a, b: sum(x * y for x, y in zip(a, b, strict=True))  # noqa: E731
    assert dot(vectors[0], vectors[0]) == pytest.approx(1.0, abs=1e-3)
    assert dot(vectors[0], vectors[1]) > dot(vectors[0], vectors[2])
    assert body["usage"]["prompt_tokens"] == sum((len(t) + 1) // 4 for t in request["input"])


def test_completions_and_custom_endpoints_created_at_run_time(
    emulator: EmulatorServer, control: EmulatorControl
) -> None:
    control.put_endpoint("my-completions", task="llm/v1/completions")
    control.put_endpoint("my-custom", task="custom")
    completion = post(
        emulator, "/serving-endpoints/my-completions/invocations", {"prompt": ["a b", "c d"]}
    ).json()
    assert completion["object"] == "text_completion"
    assert [c["index"] for c in completion["choices"]] == [0, 1]
    records = {"dataframe_records": [{"x": 1, "y": 2.5}, {"x": 3, "y": 4}]}
    custom = post(emulator, "/serving-endpoints/my-custom/invocations", records).json()
    assert len(custom["predictions"]) == 2
    split = {"dataframe_split": {"columns": ["x", "y"], "data": [[1, 2.5], [3, 4]]}}
    assert post(emulator, "/serving-endpoints/my-custom/invocations", split).json() == custom


def test_serving_endpoints_list_reports_each_task(emulator: EmulatorServer) -> None:
    listing = httpx.get(
        emulator.url + "/api/2.0/serving-endpoints",
        headers={"Authorization": f"Bearer {emulator.token}"},
    ).json()
    tasks = {e["name"]: e["task"] for e in listing["endpoints"]}
    assert tasks["databricks-gpt-5-4"] == "llm/v1/chat"
    assert tasks["databricks-gte-large-en"] == "llm/v1/embeddings"
    assert len(tasks) == 20
    assert httpx.get(emulator.url + "/api/2.0/serving-endpoints").status_code == 401


def test_health_needs_no_token(emulator: EmulatorServer) -> None:
    assert httpx.get(emulator.url + "/health").json() == {"status": "ok"}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/serving-endpoints/no-such-model/invocations", CHAT),
        ("/serving-endpoints/chat/completions", {**CHAT, "model": "system.ai.no-such-model"}),
    ],
)
def test_unknown_endpoint_is_404_resource_does_not_exist(
    emulator: EmulatorServer, path: str, body: Any
) -> None:
    response = post(emulator, path, body)
    assert response.status_code == 404
    assert response.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    assert "databricks-" in response.json()["message"]  # it lists known endpoints


def test_native_routes_serve_only_their_providers_models(emulator: EmulatorServer) -> None:
    claude_on_gemini = post(
        emulator,
        "/ai-gateway/gemini/v1beta/models/databricks-claude-sonnet-4:generateContent",
        {"contents": [{"parts": [{"text": "x"}]}]},
    )
    assert claude_on_gemini.status_code == 404
    assert claude_on_gemini.json()["error"]["status"] == "NOT_FOUND"
    gpt_on_anthropic = post(
        emulator,
        "/ai-gateway/anthropic/v1/messages",
        {"model": "databricks-gpt-5", "max_tokens": 5, "messages": CHAT["messages"]},
    )
    assert gpt_on_anthropic.status_code == 404
    assert gpt_on_anthropic.json()["error"]["type"] == "not_found_error"


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"messages": "nope"}, "'messages'"),
        ({}, "missing required field 'messages'"),
        ({**CHAT, "temperature": 5}, "temperature"),
        ({**CHAT, "max_tokens": -1}, "max_tokens"),
        ({**CHAT, "response_format": {"type": "yaml"}}, "response_format"),
    ],
)
def test_bad_request_bodies_are_400_invalid_parameter_value(
    emulator: EmulatorServer, body: Any, needle: str
) -> None:
    response = post(emulator, "/serving-endpoints/databricks-gpt-5-4/invocations", body)
    assert response.status_code == 400
    assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert needle in response.json()["message"]


def test_malformed_json_is_400(emulator: EmulatorServer) -> None:
    response = httpx.post(
        emulator.url + "/serving-endpoints/databricks-gpt-5-4/invocations",
        content=b"{not json",
        headers={"Authorization": f"Bearer {emulator.token}"},
    )
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["message"]


def test_wrong_task_for_route_is_400(emulator: EmulatorServer) -> None:
    response = post(
        emulator, "/serving-endpoints/embeddings", {"model": "databricks-gpt-5-4", "input": "x"}
    )
    assert response.status_code == 400
    assert "llm/v1/chat" in response.json()["message"]


def test_body_over_the_payload_limit_is_refused(
    emulator: EmulatorServer, control: EmulatorControl
) -> None:
    big = json.dumps({"messages": [{"role": "user", "content": "x" * (4 * 1024 * 1024)}]}).encode()
    response = httpx.post(
        emulator.url + "/serving-endpoints/databricks-gpt-5-4/invocations",
        content=big,
        headers={"Authorization": f"Bearer {emulator.token}", "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert "4 MB" in response.json()["message"]

    def chunks() -> Any:  # no Content-Length: the server must stop reading at the limit
        for _ in range(5):
            yield b"x" * (1024 * 1024)

    chunked = httpx.post(
        emulator.url + "/serving-endpoints/databricks-gpt-5-4/invocations",
        content=chunks(),
        headers={"Authorization": f"Bearer {emulator.token}"},
    )
    assert chunked.status_code == 413


def test_request_tags_reach_the_request_log(
    emulator: EmulatorServer, control: EmulatorControl
) -> None:
    tags = {"project": "chatbot", "team": "ml-platform"}
    response = post(
        emulator,
        "/serving-endpoints/databricks-gpt-5-4/invocations",
        CHAT,
        headers={TAGS: json.dumps(tags)},
    )
    assert response.status_code == 200
    assert control.requests()[-1]["request_tags"] == tags


@pytest.mark.parametrize(
    "header",
    [
        "not json",
        '["a", "b"]',
        '{"team": 7}',
        json.dumps({f"k{i}": "v" for i in range(21)}),
        json.dumps({"k" * 65: "v"}),
        json.dumps({"k": "v" * 257}),
    ],
)
def test_bad_request_tags_are_400_with_a_hint(emulator: EmulatorServer, header: str) -> None:
    response = post(
        emulator, "/serving-endpoints/databricks-gpt-5-4/invocations", CHAT, headers={TAGS: header}
    )
    assert response.status_code == 400
    assert TAGS in response.json()["message"]
