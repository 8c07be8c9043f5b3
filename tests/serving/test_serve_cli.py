"""`aiquery serve` as a user runs it: a real process on a free port."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.serving


def start(*args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], list[str]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "aiquery.cli", "serve", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
    )
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 30
    while len(lines) < 4 and time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
    return process, lines


@pytest.fixture
def served() -> Iterator[list[tuple[subprocess.Popen[str], list[str]]]]:
    started: list[tuple[subprocess.Popen[str], list[str]]] = []
    yield started
    for process, _ in started:
        process.terminate()
        process.wait(timeout=10)


def test_serve_prints_its_url_and_a_generated_token(served: list) -> None:  # type: ignore[type-arg]
    process, lines = start()
    served.append((process, lines))
    match = re.match(r"aiquery serve: listening on (http://127\.0\.0\.1:\d+)$", lines[0])
    assert match, lines
    url = match.group(1)
    token = lines[1].removeprefix("token: ")
    assert token.startswith("dapi")
    assert httpx.get(url + "/health").status_code == 200
    ok = httpx.post(
        url + "/serving-endpoints/databricks-gpt-5-4/invocations",
        json={"messages": [{"role": "user", "content": "hi"}]},
        auth=("token", token),
    )
    assert ok.status_code == 200


def test_serve_takes_the_token_from_the_environment_and_does_not_print_it(served: list) -> None:  # type: ignore[type-arg]
    process, lines = start(env={"AIQUERY_SERVE_TOKEN": "dapi-from-env-123"})
    served.append((process, lines))
    assert not any("dapi-from-env-123" in line for line in lines)
    url = lines[0].rsplit(" ", 1)[1]
    headers = {"Authorization": "Bearer dapi-from-env-123"}
    listing = httpx.get(url + "/api/2.0/serving-endpoints", headers=headers)
    assert listing.status_code == 200


def test_serve_applies_config_file_and_flags(served: list, tmp_path: Path) -> None:  # type: ignore[type-arg]
    config = tmp_path / "emulator.toml"
    config.write_text(
        '[endpoints.my-custom]\ntask = "custom"\n[endpoints."databricks-gpt-5".faults]\nerror_rate_503 = 1.0\n'
    )
    process, lines = start(
        "--config", str(config), "--token", "t0k", "--rpm", "6000", "--ttft-ms", "150"
    )
    served.append((process, lines))
    url = lines[0].rsplit(" ", 1)[1]
    auth = {"Authorization": "Bearer t0k"}
    custom = httpx.post(
        url + "/serving-endpoints/my-custom/invocations", json={"inputs": [1, 2]}, headers=auth
    )
    assert custom.status_code == 200
    failing = httpx.post(
        url + "/serving-endpoints/databricks-gpt-5/invocations",
        json={"messages": [{"role": "user", "content": "x"}]},
        headers=auth,
    )
    assert failing.status_code == 503
    sent = time.monotonic()
    streamed = httpx.post(
        url + "/serving-endpoints/databricks-gpt-5-4/invocations",
        json={"messages": [{"role": "user", "content": "Summarize: x y. z."}], "stream": True},
        headers=auth,
    )
    assert streamed.text.endswith("data: [DONE]\n\n")
    assert time.monotonic() - sent >= 0.15  # --ttft-ms: a lower bound, never an upper one


def test_serve_rejects_a_bad_config_with_a_clear_message(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[faults]\nlatency = 5\n")
    result = subprocess.run(
        [sys.executable, "-m", "aiquery.cli", "serve", "--port", "0", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "unknown fault setting(s) ['latency']" in result.stderr
    assert "latency_ms" in result.stderr
