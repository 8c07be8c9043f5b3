"""The emulator under abusive clients: bodies over the payload limit, slow clients, invalid
HTTP, garbage bodies, lone surrogates and a flood. Each must leave /health and real requests
answered and the request log exact. All traffic goes to 127.0.0.1. The credential guards are
in test_emulator_auth.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from raw_http import ANSWER, CHAT, CHAT_PATH, read_response

from aiquery.serving.control import EmulatorControl
from aiquery.serving.requestlog import CLIENT_CLOSED
from aiquery.serving.server import EmulatorServer

pytestmark = pytest.mark.serving
HERE = Path(__file__).parent

INTERNALS = ("Traceback", 'File "', "site-packages", "aiquery/", ".py")


def chat_works(http: httpx.Client, server: EmulatorServer) -> bool:
    response = http.post(
        server.url + CHAT_PATH, json=CHAT, headers={"Authorization": f"Bearer {server.token}"}
    )
    return response.status_code == 200 and (
        response.json()["choices"][0]["message"]["content"] == ANSWER
    )


def healthy(http: httpx.Client, server: EmulatorServer) -> bool:
    return http.get(server.url + "/health").status_code == 200


# --- 1. bodies over the payload limit ------------------------------------------------------


def raw_request(server: EmulatorServer, head: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.sendall(head.encode())
    return sock


def test_content_length_over_the_limit_is_413_before_the_body_is_sent(
    http: httpx.Client, emulator: EmulatorServer, control: EmulatorControl
) -> None:
    control.put_endpoint("my-custom", task="custom")
    for path, limit in ((CHAT_PATH, 4), ("/serving-endpoints/my-custom/invocations", 16)):
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {emulator.token}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {limit * 1024 * 1024 + 1}\r\n\r\n"
        )
        with raw_request(emulator, head) as sock:  # no body follows: the answer must not wait
            status, body = read_response(sock)
        assert status == 413
        assert f"{limit} MB" in json.loads(body)["message"]
    assert [r["status"] for r in control.requests()] == [413, 413]
    assert healthy(http, emulator) and chat_works(http, emulator)


def test_chunked_upload_is_413_as_soon_as_it_passes_the_limit(
    http: httpx.Client, emulator: EmulatorServer, control: EmulatorControl
) -> None:
    head = (
        f"POST {CHAT_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {emulator.token}\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"x" * (256 * 1024)
    with raw_request(emulator, head) as sock:
        # Just past 4 MB, and never the terminating chunk: the answer cannot wait for the end.
        for _ in range(17):
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        status, body = read_response(sock)
    assert status == 413
    assert "4 MB" in json.loads(body)["message"]
    assert [r["status"] for r in control.requests()] == [413]
    assert healthy(http, emulator) and chat_works(http, emulator)


# --- 2. slow clients -------------------------------------------------------------------------


async def hold_slow_clients(
    server: EmulatorServer, *, loris: int, slow_bodies: int, seconds: float
) -> tuple[list[float], list[bool]]:
    """Dribble bytes on many connections for `seconds` while polling /health and chatting.

    Returns the latency of every health poll (each must answer 200 within 5 s) and whether
    each chat was answered correctly. Every connection is closed before returning.
    """
    line = f"POST {CHAT_PATH} HTTP/1.1\r\n".encode()
    headers_then_forever = line + b"Host: 127.0.0.1\r\nX-Slow: " + b"a" * 4000
    body_head = (
        f"POST {CHAT_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {server.token}\r\n"
        "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
    ).encode()
    slow_body = b'{"messages": [' + b" " * 100000
    streams: list[tuple[asyncio.StreamWriter, bytes, int]] = []
    latencies: list[float] = []
    chats: list[bool] = []
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    try:
        for k in range(loris + slow_bodies):
            _, writer = await asyncio.open_connection("127.0.0.1", server.port)
            if k < loris:  # half dribble the request line itself, half a header value
                stream, sent = headers_then_forever, (0 if k % 2 else len(line))
            else:
                writer.write(body_head)
                stream, sent = slow_body, 0
            writer.write(stream[:sent])
            streams.append((writer, stream, sent))

        async def dribble() -> None:
            while loop.time() < end:
                for i, (writer, stream, sent) in enumerate(streams):
                    writer.write(stream[sent : sent + 1])
                    streams[i] = (writer, stream, sent + 1)
                await asyncio.sleep(0.05)  # pacing: one byte per connection per tick

        async def poll() -> None:
            async with httpx.AsyncClient(timeout=5) as client:
                while loop.time() < end:
                    started = time.perf_counter()
                    health = await client.get(server.url + "/health")
                    latencies.append(time.perf_counter() - started)
                    assert health.status_code == 200
                    if len(latencies) % 5 == 1:
                        chat = await client.post(
                            server.url + CHAT_PATH,
                            json=CHAT,
                            headers={"Authorization": f"Bearer {server.token}"},
                        )
                        chats.append(
                            chat.status_code == 200
                            and chat.json()["choices"][0]["message"]["content"] == ANSWER
                        )
                    await asyncio.sleep(0.1)  # pacing

        await asyncio.gather(dribble(), poll())
    finally:
        for writer, _, _ in streams:
            writer.close()
        await asyncio.gather(*(w.wait_closed() for w, _, _ in streams), return_exceptions=True)
    return latencies, chats


def wait_for_log(
    control: EmulatorControl, done: Callable[[list[dict[str, Any]]], bool], timeout: float = 10
) -> list[dict[str, Any]]:
    """The request log once `done(rows)` holds, or as it is when `timeout` runs out."""
    deadline = time.monotonic() + timeout
    while True:
        rows = control.requests()
        if done(rows) or time.monotonic() > deadline:
            return rows
        time.sleep(0.02)  # pacing between polls


def test_slow_clients_do_not_stall_health_or_real_requests(
    http: httpx.Client,
    emulator: EmulatorServer,
    control: EmulatorControl,
    handler_crashes: Callable[[], list[str]],
) -> None:
    latencies, chats = asyncio.run(
        hold_slow_clients(emulator, loris=100, slow_bodies=50, seconds=3.0)
    )
    print(f"health during slow clients: {len(latencies)} polls, max {max(latencies):.3f}s")
    assert len(latencies) >= 5 and chats and all(chats)
    # Each slow body reached the chat route, and is logged once when its client gives up.
    rows = wait_for_log(control, lambda rs: sum(r["status"] == CLIENT_CLOSED for r in rs) >= 50)
    statuses = [r["status"] for r in rows]
    assert statuses.count(CLIENT_CLOSED) == 50
    assert sorted(set(statuses), key=str) == [200, CLIENT_CLOSED]
    assert healthy(http, emulator) and chat_works(http, emulator)
    assert handler_crashes() == []


def test_a_client_gone_mid_body_is_logged_once_as_client_closed(
    emulator: EmulatorServer, control: EmulatorControl
) -> None:
    head = (
        f"POST {CHAT_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {emulator.token}\r\n"
        "Expect: 100-continue\r\nContent-Length: 1000\r\n\r\n"
    )
    with raw_request(emulator, head) as sock:
        # 100 Continue: the request reached its handler, which now waits for the body.
        assert read_response(sock)[0] == 100
        sock.sendall(b'{"messages": [')
        assert control.requests() == []
    rows = wait_for_log(control, lambda rs: len(rs) == 1)
    assert [(r["status"], r["endpoint"]) for r in rows] == [(CLIENT_CLOSED, "databricks-gpt-5-4")]
    assert control.stats()["databricks-gpt-5-4"]["statuses"] == {CLIENT_CLOSED: 1}


# --- 3. garbage ------------------------------------------------------------------------------


def invalid_http(token: str) -> dict[str, bytes]:
    rng = random.Random(20260601)
    post = f"POST {CHAT_PATH} HTTP/1.1\r\nHost: x\r\n".encode()
    auth = f"Authorization: Bearer {token}\r\n".encode()
    cases = {f"random {i}": rng.randbytes(rng.randrange(1, 3000)) for i in range(30)}
    cases |= {
        "not a request line": b"HELLO WORLD\r\n\r\n",
        "bad version": b"GET /health HTTP/9.9\r\n\r\n",
        "nul in path": b"GET /he\x00alth HTTP/1.1\r\nHost: x\r\n\r\n",
        "non-ascii path": b"GET /\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n",
        "huge header": b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n",
        "huge url": b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        "20000 headers": b"GET /health HTTP/1.1\r\n" + b"X-A: b\r\n" * 20_000 + b"\r\n",
        "negative length": post + b"Content-Length: -5\r\n\r\n",
        "length and chunked": post
        + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "bad chunk size": post + auth + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        "http/2 preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        "tls hello": bytes.fromhex("16030100f4010000f00303") + bytes(200),
        "header without colon": post + b"NoColonHere\r\n\r\n",
    }
    return cases


def test_invalid_http_is_refused_or_closed_never_a_5xx(
    http: httpx.Client,
    emulator: EmulatorServer,
    control: EmulatorControl,
    handler_crashes: Callable[[], list[str]],
) -> None:
    for case, data in invalid_http(emulator.token).items():
        with socket.create_connection(("127.0.0.1", emulator.port), timeout=10) as sock:
            with contextlib.suppress(OSError):  # it may refuse before reading everything
                sock.sendall(data)
            status, body = read_response(sock)
        assert status is None or 400 <= status < 500, (case, status, body[:200])
        # aiohttp's 400 text quotes the offending bytes back, so look only for a traceback.
        assert not any(s.encode() in body for s in INTERNALS[:3]), (case, body[:200])
    assert handler_crashes() == []
    assert healthy(http, emulator) and chat_works(http, emulator)


GARBAGE_BODIES: dict[str, tuple[bytes, str]] = {
    "not json": (b"{not json", "application/json"),
    "empty": (b"", "application/json"),
    "deep arrays": (b"[" * 200_000, "application/json"),
    "deep objects": (b'{"a":' * 100_000, "application/json"),
    "deep but closed": (b"[" * 5000 + b"]" * 5000, "application/json"),
    "100000-digit integer": (b"9" * 100_000, "application/json"),
    "100000-digit field": (
        b'{"messages": [], "max_tokens": ' + b"9" * 100_000 + b"}",
        "application/json",
    ),
    "array": (b"[1, 2, 3]", "application/json"),
    "string": (b'"hello"', "application/json"),
    "null": (b"null", "application/json"),
    "number": (b"42", "application/json"),
    "invalid utf-8": (
        b'{"messages": [{"role": "user", "content": "\xff\xfe"}]}',
        "application/json",
    ),
    "utf-16": (json.dumps(CHAT).encode("utf-16"), "application/json"),
    "form": (b"messages=hello&model=x", "application/x-www-form-urlencoded"),
    "multipart": (
        b"--b\r\nContent-Disposition: form-data; name=a\r\n\r\nx\r\n--b--\r\n",
        "multipart/form-data; boundary=b",
    ),
    "xml": (b"<messages><m>hello</m></messages>", "application/xml"),
    "binary": (bytes(range(256)) * 4, "application/octet-stream"),
}
GARBAGE_ROUTES = [
    "/serving-endpoints/databricks-gpt-5-4/invocations",
    "/serving-endpoints/chat/completions",
    "/ai-gateway/mlflow/v1/embeddings",
    "/ai-gateway/openai/v1/responses",
    "/ai-gateway/anthropic/v1/messages",
    "/ai-gateway/gemini/v1beta/models/system.ai.gemini-2-5-flash:generateContent",
]


@pytest.mark.parametrize("path", GARBAGE_ROUTES)
def test_garbage_bodies_get_a_4xx_in_the_routes_own_shape(
    http: httpx.Client,
    emulator: EmulatorServer,
    control: EmulatorControl,
    handler_crashes: Callable[[], list[str]],
    path: str,
) -> None:
    for case, (body, content_type) in GARBAGE_BODIES.items():
        response = http.post(
            emulator.url + path,
            content=body,
            headers={"Authorization": f"Bearer {emulator.token}", "Content-Type": content_type},
        )
        assert 400 <= response.status_code < 500, (case, response.status_code, response.text)
        assert response.json()  # the route's JSON error shape, not a text page
        assert not any(s in response.text for s in INTERNALS), (case, response.text)
    assert {r["status"] for r in control.requests()} <= {400, 404}
    assert len(control.requests()) == len(GARBAGE_BODIES)
    assert handler_crashes() == []
    assert healthy(http, emulator) and chat_works(http, emulator)


def test_a_lone_surrogate_escape_is_answered_as_valid_json(
    http: httpx.Client, emulator: EmulatorServer
) -> None:
    headers = {"Authorization": f"Bearer {emulator.token}", "Content-Type": "application/json"}
    echoed = http.post(
        emulator.url + CHAT_PATH,
        content=b'{"messages": [{"role": "user", "content": "\\ud800 hi"}]}',
        headers=headers,
    )
    assert echoed.status_code == 200
    assert json.loads(echoed.content)["choices"][0]["message"]["content"] == "\ud800 hi"
    unknown = http.post(
        emulator.url + "/serving-endpoints/chat/completions",
        content=b'{"model": "\\udfff", "messages": []}',
        headers=headers,
    )
    assert unknown.status_code == 404
    assert "\udfff" in json.loads(unknown.content)["message"]


def test_admin_garbage_gets_a_4xx(
    http: httpx.Client, emulator: EmulatorServer, handler_crashes: Callable[[], list[str]]
) -> None:
    admin = {"Authorization": f"Bearer {emulator.admin_token}"}
    bodies = [
        body
        for body, _ in GARBAGE_BODIES.values()
        if body not in (b"[1, 2, 3]", b'"hello"', b"null", b"42")  # covered below, smaller
    ] + [
        b"[1]",
        b'"x"',
        b'{"faults": {"latency_ms": "fast"}}',
        b'{"task": "llm/v1/embeddings", "embedding_dim": "x"}',
    ]
    for body in bodies:
        for method, path in (("PUT", "/admin/endpoints/probe"), ("PATCH", "/admin/faults")):
            response = http.request(method, emulator.url + path, content=body, headers=admin)
            assert 400 <= response.status_code < 500, (path, body[:40], response.text)
    too_big = http.patch(emulator.url + "/admin/faults", content=b" " * (2 << 20), headers=admin)
    assert too_big.status_code == 413  # admin bodies are small: 1 MB at most
    for limit in ("abc", "9" * 5000, "1e3"):
        url = emulator.url + "/admin/requests"
        assert http.get(url, params={"limit": limit}, headers=admin).status_code == 400, limit
    assert handler_crashes() == []
    assert healthy(http, emulator) and chat_works(http, emulator)


# --- 4. a flood --------------------------------------------------------------------------------

# flood_client.py is a self-contained loopback load generator, run as a subprocess: raw
# asyncio sockets, bounded by a request count and a deadline, printing what each kind of
# request got back as JSON.


def test_a_flood_of_malformed_requests_leaves_health_and_the_log_intact(
    http: httpx.Client,
    handler_crashes: Callable[[], list[str]],
) -> None:
    with (
        EmulatorServer() as server,
        contextlib.closing(EmulatorControl(server.url, server.admin_token)) as control,
    ):
        flood = subprocess.Popen(
            [sys.executable, str(HERE / "flood_client.py"), str(server.port), "20000", "8", "48"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "FLOOD_TOKEN": server.token},
        )
        polls: list[tuple[int, float]] = []
        try:
            with httpx.Client(timeout=5) as client:
                hard_stop = time.monotonic() + 30
                while flood.poll() is None and time.monotonic() < hard_stop:
                    started = time.perf_counter()
                    status = client.get(server.url + "/health").status_code
                    polls.append((status, time.perf_counter() - started))
                    time.sleep(0.05)  # pacing: a poll every ~50 ms
            out, err = flood.communicate(timeout=30)
        finally:
            if flood.poll() is None:
                flood.kill()
                flood.communicate()
        assert flood.returncode == 0, err.decode()
        report = json.loads(out)
        assert polls and all(status == 200 for status, _ in polls)
        print(
            f"flood: {report['sent']} requests in {report['seconds']:.1f}s; "
            f"{len(polls)} health polls, max {max(t for _, t in polls):.3f}s"
        )
        answers = report["answers"]
        assert sum(sum(a.values()) for a in answers.values()) == report["sent"]
        assert all(answers.values())  # every kind was sent (each worker sends one at least)
        assert set(answers["no token"]) == {"401"}
        assert set(answers["invalid json"]) == set(answers["deep json"]) == {"400"}
        assert set(answers["invalid http"]) <= {"400", "None"}  # refused, or just closed
        # Every request that reached the model route is in the log once, with its status.
        stats = control.stats()["databricks-gpt-5-4"]
        refused = answers["invalid json"]["400"] + answers["deep json"]["400"]
        assert stats["statuses"] == {"401": answers["no token"]["401"], "400": refused}
        logged = control.requests("databricks-gpt-5-4")
        assert stats["requests"] == len(logged) == answers["no token"]["401"] + refused
        assert chat_works(http, server)
    assert handler_crashes() == []
