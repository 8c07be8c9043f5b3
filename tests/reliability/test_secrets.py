"""Secrets: a token never reaches logs, errors, usage rows, plans, the CLI or the progress line.

The whole CLI runs in a subprocess with aiquery logging at DEBUG in the driver and in
Spark's Python workers, retries and a wrong token on purpose; everything it printed and
every file it wrote is then searched for both tokens.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from aiquery.client.engine import BatchEngine, EngineSettings
from aiquery.client.retry import RetryPolicy
from aiquery.client.wire import wire_for
from aiquery.endpoints.registry import Endpoint, Secret
from aiquery.errors import RequestError
from aiquery.serving.control import EmulatorControl
from aiquery.serving.server import EmulatorServer

pytestmark = pytest.mark.spark

JOB = """
SET aiquery.requestTags = '{"suite": "secrets"}';
SELECT id, ai_query('databricks-gpt-5-4', concat('Summarize: item ', id, '. Rest.'),
                    failOnError => false) AS r
FROM range(60);
EXPLAIN EXTENDED SELECT ai_query('databricks-gpt-5-4', 'Summarize: x. y') AS a;
EXPLAIN FORMATTED SELECT ai_query('wrong-token', 'Summarize: x. y') AS a;
SELECT * FROM system.ai_gateway.usage;
SELECT ai_query('wrong-token', 'Summarize: x. y') AS a;
"""


def cli(*args: str, cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "aiquery.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    return f"$ aiquery {' '.join(args)} → {done.returncode}\n{done.stdout}\n{done.stderr}"


def test_no_token_in_any_output_log_file_or_usage_row(
    emulator: EmulatorServer, control: EmulatorControl, tmp_path: Path
) -> None:
    wrong = "dapi" + secrets.token_hex(16)
    (tmp_path / "aiquery.toml").write_text(
        "[endpoints.wrong-token]\n"
        'protocol = "databricks"\n'
        f'base_url = "{emulator.url}"\n'
        'model = "databricks-gpt-5-4"\n'
        'token_env = "WRONG_TOKEN"\n'
    )
    (tmp_path / "job.sql").write_text(JOB)
    control.set_faults("databricks-gpt-5-4", error_rate_500=0.3, seed=4)  # retries to log
    warehouse = tmp_path / "warehouse"
    env = {
        **os.environ,
        "DATABRICKS_HOST": emulator.url,
        "DATABRICKS_TOKEN": emulator.token,
        "WRONG_TOKEN": wrong,
        "AIQUERY_USAGE_LOCATION": str(warehouse / "ai_gateway.db" / "usage"),
    }
    env.pop("AIQUERY_ENDPOINTS", None)
    output = cli(
        "--log-level", "debug", "run", "job.sql", "--warehouse", str(warehouse),
        cwd=tmp_path, env=env,
    )  # fmt: skip
    output += cli("endpoints", cwd=tmp_path, env=env)
    output += cli("usage", "--by", "status", cwd=tmp_path, env=env)
    # The run really did what is searched: retries logged at DEBUG by the Spark workers,
    # the plans, the usage rows, the wrong token's error, the endpoint listing.
    assert "retrying in" in output, output[-3000:]
    assert "ArrowEvalPython" in output and "HTTP 401" in output and "wrong-token" in output
    assert "secrets" in output  # the request tag, printed from the usage rows
    assert "throttled (429)" in output  # the progress line
    for token in (emulator.token, wrong):
        assert token not in output
        for path in tmp_path.rglob("*"):
            if path.is_file():
                assert token.encode() not in path.read_bytes(), f"the token is in {path}"


@pytest.fixture
def echoing_server() -> Iterator[str]:
    """A server that quotes the request's credentials back in its errors, as some proxies do."""

    seen = [0]

    async def echo(request: web.Request) -> web.Response:
        credentials = request.headers.get("Authorization", "")
        seen[0] += 1
        status = 500 if seen[0] <= 4 else 401  # retried first, then terminal
        body = {"error_code": "UNAUTHENTICATED", "message": f"rejected {credentials}"}
        return web.json_response(body, status=status)

    loop = asyncio.new_event_loop()
    app = web.Application()
    app.router.add_post("/serving-endpoints/{name}/invocations", echo)
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = runner.addresses[0][1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)
    loop.close()


def test_a_token_the_server_echoes_back_is_redacted_from_errors_and_logs(
    echoing_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    token = "dapi" + secrets.token_hex(16)
    endpoint = Endpoint(
        "echoing",
        "databricks",
        echoing_server,
        "llm/v1/chat",
        "echoing",
        token=Secret(token),
    )
    records: list[Any] = []

    class Recorder:
        def started(self, *args: Any) -> None:
            return None

        def finished(self, attempt: Any) -> None:
            records.append(attempt)

        async def drain(self) -> None:
            return None

    caplog.set_level(logging.DEBUG)
    settings = EngineSettings(concurrency=4, policy=RetryPolicy(base_delay_s=0, max_delay_s=0))
    with (
        BatchEngine(
            endpoint, wire_for(endpoint, {}), settings, fail_fast=False, recorder=Recorder()
        ) as engine,
        pytest.raises(RequestError) as caught,  # 401s trip the breaker: the task fails
    ):
        list(engine.map([[f"row {i}" for i in range(8)]]))
    assert "rejected Bearer ***" in str(caught.value)
    assert any(r.status_code == 500 for r in records), "no retried 500: nothing logged at DEBUG"
    assert records and all("Bearer ***" in (r.error_message or "") for r in records)
    everything = str(caught.value) + caplog.text + " ".join(repr(r) for r in records)
    assert token not in everything
