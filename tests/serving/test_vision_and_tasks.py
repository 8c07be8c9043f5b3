"""Images and AI-function prompts reach the emulator through every chat route the protocol
table serves, and come back answered: the client's encoding and the emulator's decoding of
image parts (OpenAI image_url, Responses input_image, Anthropic image blocks, Gemini
inline_data) and of the task prompt are the same definitions."""

from __future__ import annotations

import pytest
from image_bytes import jpeg, png

from aiquery.client.engine import BatchEngine, EngineSettings
from aiquery.client.retry import RetryPolicy
from aiquery.client.wire import Prompt, wire_for
from aiquery.endpoints.registry import Endpoint, Secret
from aiquery.protocols.common import CHAT, Image
from aiquery.protocols.table import PROTOCOLS
from aiquery.protocols.tasks import Task, decode, response_format, system_prompt
from aiquery.serving.control import EmulatorControl
from aiquery.serving.routes import MOUNTS, Mount
from aiquery.serving.server import EmulatorServer

pytestmark = pytest.mark.serving

CHAT_MODELS = {None: "databricks-llama-4-maverick", "openai": "databricks-gpt-5-mini",
               "anthropic": "databricks-claude-sonnet-4-5", "google": "databricks-gemini-2-5-flash"}  # fmt: skip
CHAT_MOUNTS = [
    pytest.param(m, id=f"{m.prefix or '/'}:{m.protocol}")
    for m in MOUNTS
    if PROTOCOLS[m.protocol].operation(CHAT)
]


def _run(emulator: EmulatorServer, mount: Mount, params: dict, prompts: list) -> list:  # type: ignore[type-arg]
    name = CHAT_MODELS[mount.provider]
    endpoint = Endpoint(
        name, mount.protocol, emulator.url + mount.prefix, CHAT, name, token=Secret(emulator.token)
    )
    settings = EngineSettings(2, policy=RetryPolicy(max_attempts=1))
    with BatchEngine(endpoint, wire_for(endpoint, params), settings, fail_fast=True) as engine:
        [rows] = list(engine.map([prompts]))
    assert [r.error for r in rows] == [None] * len(rows)
    return [r.value for r in rows]


@pytest.mark.parametrize("mount", CHAT_MOUNTS)
def test_images_are_sent_in_each_protocols_parts_and_described(
    emulator: EmulatorServer, control: EmulatorControl, mount: Mount
) -> None:
    images = (Image("image/png", png(64, 48)), Image("image/jpeg", jpeg(20, 10)))
    [answer] = _run(emulator, mount, {}, [Prompt("What is in these images?", images=images)])
    assert answer == "A PNG image of 64x48 pixels. A JPEG image of 20x10 pixels."


@pytest.mark.parametrize("mount", CHAT_MOUNTS)
def test_an_ai_function_prompt_is_answered_in_its_shape(
    emulator: EmulatorServer, mount: Mount
) -> None:
    task = Task("ai_classify", {"labels": ["billing", "shipping"], "version": "1"})
    params = {"response_format": response_format(task)}
    content = "My parcel shipping is late."
    [answer] = _run(emulator, mount, params, [Prompt(content, system_prompt(task))])
    assert decode(task, answer, content) == "shipping"
