"""The protocol table is one truth: the client, built from a row, reaches the emulator's route
built from the same row, for every protocol, task and place the emulator serves it."""

from __future__ import annotations

from typing import Any

import pytest

from aiquery.client.engine import BatchEngine, EngineSettings
from aiquery.client.retry import RetryPolicy
from aiquery.client.wire import wire_for
from aiquery.endpoints.registry import Endpoint, Secret
from aiquery.protocols.common import CHAT, COMPLETIONS, CUSTOM, EMBEDDINGS
from aiquery.protocols.table import PROTOCOLS
from aiquery.serving.control import EmulatorControl
from aiquery.serving.routes import MOUNTS, Mount, model_routes
from aiquery.serving.server import EmulatorServer

pytestmark = pytest.mark.serving

# A served model for each task, by the provider a native route insists on.
CHAT_MODELS = {None: "databricks-gpt-5-4", "openai": "databricks-gpt-5-mini",
               "anthropic": "databricks-claude-sonnet-4-5", "google": "databricks-gemini-2-5-flash"}  # fmt: skip
EXTRA = {COMPLETIONS: "test-completions", CUSTOM: "test-custom"}
INPUTS: dict[str, list[Any]] = {
    CHAT: ["Summarize: The table is the truth. Nothing else."],
    COMPLETIONS: ["The table is", "One truth"],
    EMBEDDINGS: ["one text", "another text"],
    CUSTOM: [{"a": 1, "b": 2}, {"text": "hi"}],
}
CASES = [
    pytest.param(mount, task, id=f"{mount.prefix or '/'}:{mount.protocol}:{task}")
    for mount in MOUNTS
    for task in PROTOCOLS[mount.protocol].operations
]


def _model(mount: Mount, task: str) -> str:
    return (
        CHAT_MODELS[mount.provider] if task == CHAT else EXTRA.get(task, "databricks-gte-large-en")
    )


@pytest.mark.parametrize(("mount", "task"), CASES)
def test_the_client_reaches_every_route_the_table_serves(
    emulator: EmulatorServer, control: EmulatorControl, mount: Mount, task: str
) -> None:
    if task in EXTRA:
        control.put_endpoint(EXTRA[task], task=task)
    name = _model(mount, task)
    endpoint = Endpoint(
        name, mount.protocol, emulator.url + mount.prefix, task, name, token=Secret(emulator.token)
    )
    wire = wire_for(endpoint, {})
    policy = RetryPolicy(max_attempts=1)
    with BatchEngine(endpoint, wire, EngineSettings(2, policy=policy), fail_fast=True) as engine:
        [rows] = list(engine.map([INPUTS[task]]))

    assert [r.error for r in rows] == [None] * len(rows)
    assert all(r.value is not None for r in rows)
    protocol = PROTOCOLS[mount.protocol]
    operation = protocol.operation(task)
    assert operation is not None
    served = {r["route"] for r in control.requests()}
    assert served == {protocol.api_type(operation, prefix=mount.api_prefix)}
    # Where the emulator is mounted at the protocol's own API path, the log's route is the
    # client's api_type: the usage table and the server's log name the request alike.
    if protocol.api_prefix == mount.api_prefix:
        assert served == {wire.api_type}


def test_every_protocol_is_served_somewhere_and_every_route_has_a_unique_name() -> None:
    assert {m.protocol for m in MOUNTS} == set(PROTOCOLS)
    names = [route.name for _, routes, _ in model_routes() for route in routes.values()]
    templates = [template for template, _, _ in model_routes()]
    assert len(names) == len(set(names)) and len(templates) == len(set(templates))
