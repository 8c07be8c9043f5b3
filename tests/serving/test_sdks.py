"""Official client SDKs and curl work against the emulator unmodified, as against a workspace."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from aiquery.serving.control import EmulatorControl
from aiquery.serving.server import EmulatorServer

pytestmark = pytest.mark.serving

PROMPT = "Summarize: Delta tables keep history. They support time travel."
EXPECTED = "Delta tables keep history."


@pytest.mark.parametrize("prefix", ["/serving-endpoints", "/ai-gateway/mlflow/v1"])
def test_openai_sdk_chat_and_embeddings(emulator: EmulatorServer, prefix: str) -> None:
    from openai import OpenAI

    client = OpenAI(api_key=emulator.token, base_url=emulator.url + prefix, max_retries=0)
    chat = client.chat.completions.create(
        model="databricks-gpt-5-4", messages=[{"role": "user", "content": PROMPT}], max_tokens=64
    )
    assert chat.choices[0].message.content == EXPECTED
    assert chat.usage is not None and chat.usage.prompt_tokens == (len(PROMPT) + 1) // 4

    # The SDK asks for base64 embeddings by default and decodes them itself.
    embedded = client.embeddings.create(
        model="databricks-gte-large-en", input=["one text", "another"]
    )
    assert [len(d.embedding) for d in embedded.data] == [1024, 1024]
    as_floats = client.embeddings.create(
        model="databricks-gte-large-en", input=["one text"], encoding_format="float"
    )
    assert as_floats.data[0].embedding == pytest.approx(embedded.data[0].embedding, abs=1e-6)


@pytest.mark.parametrize(
    ("prefix", "model"),
    [
        ("/ai-gateway/mlflow/v1", "system.ai.gpt-5-4"),
        ("/ai-gateway/openai/v1", "databricks-gpt-5-4"),
    ],
)
def test_openai_sdk_responses(emulator: EmulatorServer, prefix: str, model: str) -> None:
    from openai import OpenAI

    client = OpenAI(api_key=emulator.token, base_url=emulator.url + prefix, max_retries=0)
    response = client.responses.create(model=model, input=PROMPT, max_output_tokens=64)
    assert response.output_text == EXPECTED
    assert response.usage is not None and response.usage.input_tokens == (len(PROMPT) + 1) // 4
    structured = client.responses.create(
        model=model,
        input=[{"role": "user", "content": [{"type": "input_text", "text": PROMPT}]}],
        text={
            "format": {
                "type": "json_schema",
                "name": "x",
                "schema": {
                    "type": "object",
                    "properties": {"title": {"type": "string"}},
                    "required": ["title"],
                    "additionalProperties": False,
                },
            }
        },
    )
    assert set(json.loads(structured.output_text)) == {"title"}


def test_openai_sdk_sees_a_wrong_token_as_authentication_error(emulator: EmulatorServer) -> None:
    from openai import AuthenticationError, OpenAI

    client = OpenAI(api_key="wrong", base_url=emulator.url + "/serving-endpoints", max_retries=0)
    with pytest.raises(AuthenticationError):
        client.chat.completions.create(
            model="databricks-gpt-5-4", messages=[{"role": "user", "content": "x"}]
        )


def test_openai_sdk_retries_a_429_by_itself(
    emulator: EmulatorServer, control: EmulatorControl
) -> None:
    from openai import OpenAI, RateLimitError

    control.set_faults("databricks-gpt-5-4", requests_per_minute=60)
    client = OpenAI(
        api_key=emulator.token, base_url=emulator.url + "/serving-endpoints", max_retries=0
    )
    client.chat.completions.create(
        model="databricks-gpt-5-4", messages=[{"role": "user", "content": "a"}]
    )
    with pytest.raises(RateLimitError):
        client.chat.completions.create(
            model="databricks-gpt-5-4", messages=[{"role": "user", "content": "a"}]
        )


def test_anthropic_sdk_messages(emulator: EmulatorServer) -> None:
    from anthropic import Anthropic, NotFoundError

    client = Anthropic(
        api_key="unused",
        base_url=emulator.url + "/ai-gateway/anthropic",
        default_headers={"Authorization": f"Bearer {emulator.token}"},
        max_retries=0,
    )
    message = client.messages.create(
        model="databricks-claude-sonnet-4-5",
        max_tokens=64,
        system="Be brief.",
        messages=[{"role": "user", "content": PROMPT}],
    )
    assert message.content[0].type == "text"
    assert message.content[0].text == EXPECTED
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens == (len(EXPECTED) + 1) // 4
    with pytest.raises(NotFoundError):
        client.messages.create(
            model="databricks-gpt-5", max_tokens=8, messages=[{"role": "user", "content": "x"}]
        )


@pytest.mark.parametrize("api_version", [None, "v1beta"])
def test_google_genai_generate_content(emulator: EmulatorServer, api_version: str | None) -> None:
    from google import genai
    from google.genai import types

    client = genai.Client(
        api_key="unused",
        http_options=types.HttpOptions(
            base_url=emulator.url + "/ai-gateway/gemini",
            headers={"Authorization": f"Bearer {emulator.token}"},
            api_version=api_version,
        ),
    )
    response = client.models.generate_content(model="system.ai.gemini-2-5-flash", contents=PROMPT)
    assert response.text == EXPECTED
    assert response.usage_metadata is not None
    assert response.usage_metadata.prompt_token_count == (len(PROMPT) + 1) // 4
    structured = client.models.generate_content(
        model="databricks-gemini-2-5-pro",
        contents=PROMPT,
        config=types.GenerateContentConfig(
            response_mime_type="application/json",
            response_schema={
                "type": "OBJECT",
                "properties": {"n": {"type": "INTEGER"}},
                "required": ["n"],
            },
        ),
    )
    assert isinstance(json.loads(structured.text or "")["n"], int)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_with_basic_auth(emulator: EmulatorServer) -> None:
    out = subprocess.run(
        [
            "curl",
            "-sS",
            "--fail-with-body",
            "-u",
            f"token:{emulator.token}",
            "-H",
            "Content-Type: application/json",
            "-d",
            json.dumps({"messages": [{"role": "user", "content": PROMPT}]}),
            emulator.url + "/serving-endpoints/databricks-gpt-5-4/invocations",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert json.loads(out.stdout)["choices"][0]["message"]["content"] == EXPECTED
