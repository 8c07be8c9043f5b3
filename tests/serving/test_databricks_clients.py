"""Databricks' own clients against the emulator, unmodified: the SDK's WorkspaceClient and
MLflow's deployments client, as a user points them at a workspace (host + token)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from aiquery.endpoints.catalog import CATALOG, RETIRED
from aiquery.serving.control import EmulatorControl
from aiquery.serving.server import EmulatorServer

pytestmark = pytest.mark.serving

PROMPT = "Summarize: Model serving answers chat, completions and embeddings requests."


@pytest.fixture
def workspace_client(emulator: EmulatorServer, caplog: pytest.LogCaptureFixture) -> Iterator[Any]:
    from databricks.sdk import WorkspaceClient

    with caplog.at_level(logging.WARNING, logger="databricks.sdk"):
        client = WorkspaceClient(host=emulator.url, token=emulator.token)
    # The SDK reads /.well-known/databricks-config as it starts; a failure is a warning.
    assert not [r for r in caplog.records if r.name.startswith("databricks.sdk")]
    yield client


def test_sdk_lists_and_gets_every_catalog_endpoint(workspace_client: Any) -> None:
    listed = {e.name: e for e in workspace_client.serving_endpoints.list()}
    assert set(listed) == {m.name for m in CATALOG}
    endpoint = workspace_client.serving_endpoints.get("system.ai.databricks-claude-opus-4-6")
    assert endpoint.name == "databricks-claude-opus-4-6"
    assert endpoint.task == "llm/v1/chat"
    assert endpoint.state.ready.value == "READY"
    (entity,) = endpoint.config.served_entities
    assert entity.entity_name == "system.ai.claude-opus-4-6"
    assert entity.foundation_model.name == "claude-opus-4-6"
    assert endpoint.permission_level.value == "CAN_QUERY"


def test_sdk_queries_chat_and_embeddings(workspace_client: Any) -> None:
    from databricks.sdk.service.serving import ChatMessage, ChatMessageRole

    chat = workspace_client.serving_endpoints.query(
        "databricks-meta-llama-3-3-70b-instruct",
        messages=[ChatMessage(role=ChatMessageRole.USER, content=PROMPT)],
        max_tokens=64,
    )
    assert (
        chat.choices[0].message.content
        == "Model serving answers chat, completions and embeddings requests."
    )
    assert chat.usage.prompt_tokens == (len(PROMPT) + 1) // 4
    embedded = workspace_client.serving_endpoints.query(
        "databricks-gte-large-en", input=["one text", "another text"]
    )
    assert [len(d.embedding) for d in embedded.data] == [1024, 1024]


def test_sdk_openai_client_streams_the_same_answer(
    workspace_client: Any, control: EmulatorControl
) -> None:
    with pytest.warns(DeprecationWarning):  # the SDK points to databricks-openai now
        client = workspace_client.serving_endpoints.get_open_ai_client()
    messages = [{"role": "user", "content": PROMPT}]
    whole = client.chat.completions.create(model="databricks-gpt-5-4", messages=messages)
    chunks = client.chat.completions.create(
        model="databricks-gpt-5-4", messages=messages, stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert [r["streamed"] for r in control.requests("databricks-gpt-5-4")] == [False, True]


def test_sdk_sees_a_retired_model_as_gone_with_its_replacement(workspace_client: Any) -> None:
    from databricks.sdk.errors import NotFound
    from databricks.sdk.service.serving import ChatMessage, ChatMessageRole

    retired = RETIRED[0]
    with pytest.raises(NotFound, match="has been retired") as caught:
        workspace_client.serving_endpoints.query(
            "system.ai." + retired.name.removeprefix("databricks-"),
            messages=[ChatMessage(role=ChatMessageRole.USER, content="hi")],
        )
    assert retired.replacement in str(caught.value)
    with pytest.raises(NotFound, match=retired.replacement):
        workspace_client.serving_endpoints.get(retired.name)


@pytest.fixture
def mlflow_client(emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> Any:
    from mlflow.deployments import get_deploy_client

    monkeypatch.setenv("DATABRICKS_HOST", emulator.url)
    monkeypatch.setenv("DATABRICKS_TOKEN", emulator.token)
    return get_deploy_client("databricks")


def test_mlflow_lists_gets_and_predicts(mlflow_client: Any) -> None:
    listed = mlflow_client.list_endpoints()  # GET /api/2.0/serving-endpoints/ (trailing slash)
    assert {e["name"] for e in listed} == {m.name for m in CATALOG}
    assert mlflow_client.get_endpoint("databricks-gpt-5-mini")["task"] == "llm/v1/chat"
    answer = mlflow_client.predict(
        endpoint="databricks-gpt-5-mini",
        inputs={"messages": [{"role": "user", "content": PROMPT}], "max_tokens": 64},
    )
    assert answer["choices"][0]["message"]["content"].startswith("Model serving answers")
    embedded = mlflow_client.predict(endpoint="databricks-bge-large-en", inputs={"input": ["x"]})
    assert len(embedded["data"][0]["embedding"]) == 1024


def test_mlflow_predict_stream_equals_predict(mlflow_client: Any, control: EmulatorControl) -> None:
    inputs = {"messages": [{"role": "user", "content": PROMPT}]}
    whole = mlflow_client.predict(endpoint="databricks-claude-haiku-4-5", inputs=inputs)
    chunks = list(
        mlflow_client.predict_stream(endpoint="databricks-claude-haiku-4-5", inputs=inputs)
    )
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == whole["choices"][0]["message"]["content"]
    (streamed,) = [r for r in control.requests() if r["streamed"]]
    assert streamed["route"] == "serving-endpoints/invocations"


# --- routes and names, over plain HTTP ----------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/api/2.0/serving-endpoints/",
        "/api/2.0/serving-endpoints/databricks-gpt-5/",
        "/health/",
    ],
)
def test_trailing_slash_paths_answer_like_their_plain_forms(
    emulator: EmulatorServer, path: str
) -> None:
    auth = {"Authorization": f"Bearer {emulator.token}"}
    with_slash = httpx.get(emulator.url + path, headers=auth)
    plain = httpx.get(emulator.url + path.rstrip("/"), headers=auth)
    assert with_slash.status_code == plain.status_code == 200
    assert with_slash.json() == plain.json()


def test_model_routes_answer_with_a_trailing_slash_too(emulator: EmulatorServer) -> None:
    answer = httpx.post(
        emulator.url + "/serving-endpoints/databricks-gpt-5/invocations/",
        json={"messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {emulator.token}"},
    )
    assert answer.status_code == 200
    assert answer.json()["usage"]["prompt_tokens"] == 1  # "hi": at least one token


@pytest.mark.parametrize(
    "name",
    [
        "databricks-claude-opus-4-6",
        "system.ai.claude-opus-4-6",
        "system.ai.databricks-claude-opus-4-6",
    ],
)
def test_every_form_of_a_model_name_reaches_its_endpoint(
    emulator: EmulatorServer, control: EmulatorControl, name: str
) -> None:
    answer = httpx.post(
        emulator.url + "/ai-gateway/mlflow/v1/chat/completions",
        json={"model": name, "messages": [{"role": "user", "content": PROMPT}]},
        headers={"Authorization": f"Bearer {emulator.token}"},
    )
    assert answer.status_code == 200
    assert [r["endpoint"] for r in control.requests()] == ["databricks-claude-opus-4-6"]


def test_well_known_config_is_served_without_a_token(emulator: EmulatorServer) -> None:
    answer = httpx.get(emulator.url + "/.well-known/databricks-config")
    assert answer.status_code == 200
    assert answer.json()["oidc_endpoint"].startswith(emulator.url)
