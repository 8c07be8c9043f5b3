"""The emulator's guards against clients without the right credential: the model token on
every served route, the admin token on the admin routes, which also answer loopback peers
only, and credentials that are not even UTF-8. All traffic goes to 127.0.0.1; non-loopback
peers are simulated in-process with aiohttp's mocked requests, never with real network
traffic. Abusive clients (bodies, slow clients, garbage, a flood) are in test_emulator_abuse.py.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from raw_http import CHAT, CHAT_PATH, read_response

from aiquery.serving.config import EmulatorConfigError, load_config
from aiquery.serving.emulator import Emulator
from aiquery.serving.routes import app as emulator_app
from aiquery.serving.server import EmulatorServer

pytestmark = pytest.mark.serving

# Values for the path parameters of the app's route templates.
PATH_PARAMS = {
    "name": "databricks-gpt-5-4",
    "model": "databricks-gpt-5-4",
    "target": "system.ai.gemini-2-5-flash:generateContent",
}


def _routes() -> list[tuple[str, str]]:
    """(method, path template) of every route the emulator's app registers."""
    app = emulator_app(Emulator(load_config(), token="model-token", admin_token="admin-token"))
    return sorted({(r.method, r.resource.canonical) for r in app.router.routes() if r.resource})


ROUTES = _routes()
# Admin routes get a name no endpoint has, so opening them changes nothing.
ADMIN_ROUTES = [
    (method, path.format(name="no-such-probe"))
    for method, path in ROUTES
    if path.startswith("/admin/")
]
# Open as on a workspace: liveness, and the host metadata the Databricks SDK reads first.
OPEN = ("/health", "/.well-known/databricks-config")
# Everything else serves models or describes them, so needs the model token.
SERVED_ROUTES = [
    (method, path.format(**PATH_PARAMS))
    for method, path in ROUTES
    if not path.startswith("/admin/") and path.rstrip("/") not in OPEN
]


def send(
    http: httpx.Client, server: EmulatorServer, method: str, path: str, headers: dict[str, str]
) -> httpx.Response:
    body = json.dumps({**CHAT, "model": "databricks-gpt-5-4"}) if method == "POST" else None
    return http.request(method, server.url + path, content=body, headers=headers)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# --- 1. every served route needs the model token -----------------------------------------


def test_route_enumeration_finds_every_model_api() -> None:
    posts = {p for m, p in SERVED_ROUTES if m == "POST"}
    for family in (
        "/invocations",
        "/serving-endpoints/chat/completions",
        "/serving-endpoints/embeddings",
        "/serving-endpoints/completions",
        "/ai-gateway/mlflow/v1/chat/completions",
        "/ai-gateway/mlflow/v1/embeddings",
        "/ai-gateway/mlflow/v1/completions",
        "/ai-gateway/mlflow/v1/responses",
        "/ai-gateway/openai/v1/responses",
        "/ai-gateway/anthropic/v1/messages",
        "/ai-gateway/gemini/v1beta/models/",
        "/ai-gateway/gemini/v1/models/",
    ):
        assert any(family in p for p in posts), family
    assert ("GET", "/api/2.0/serving-endpoints") in SERVED_ROUTES
    admin = {p for _, p in ADMIN_ROUTES}
    assert {"/admin/faults", "/admin/requests", "/admin/stats", "/admin/reset"} <= admin


@pytest.mark.parametrize(("method", "path"), SERVED_ROUTES)
def test_every_served_route_refuses_a_missing_or_wrong_credential(
    http: httpx.Client, emulator: EmulatorServer, method: str, path: str
) -> None:
    token, admin = emulator.token, emulator.admin_token
    opened = send(http, emulator, method, path, {"Authorization": f"Bearer {token}"})
    assert opened.status_code not in (401, 403) and opened.status_code < 500, opened.text
    wrong: dict[str, dict[str, str]] = {
        "none": {},
        "wrong bearer": {"Authorization": "Bearer dapi0123456789abcdef"},
        "empty bearer": {"Authorization": "Bearer"},
        "token plus a byte": {"Authorization": f"Bearer {token}x"},
        "token prefix": {"Authorization": f"Bearer {token[:-1]}"},
        "token in upper case": {"Authorization": f"Bearer {token.upper()}"},
        "other scheme": {"Authorization": f"Token {token}"},
        "wrong basic password": {"Authorization": f"Basic {b64('token:wrong')}"},
        "token as basic user": {"Authorization": f"Basic {b64(token + ':')}"},
        "basic without colon": {"Authorization": f"Basic {b64(token)}"},
        "wrong api key": {"x-api-key": "wrong", "x-goog-api-key": "wrong"},
        "admin token": {"Authorization": f"Bearer {admin}", "x-api-key": admin},
    }
    for case, headers in wrong.items():
        response = send(http, emulator, method, path, headers)
        assert response.status_code == 401, (case, response.status_code, response.text)
        echoed = response.text + json.dumps(dict(response.headers))
        assert token not in echoed and admin not in echoed, case
        assert token.upper() not in echoed and b64("token:wrong") not in echoed, case


def test_gemini_routes_check_the_token_before_the_method(
    http: httpx.Client, emulator: EmulatorServer
) -> None:
    path = "/ai-gateway/gemini/v1beta/models/system.ai.gemini-2-5-flash:countTokens"
    assert send(http, emulator, "POST", path, {}).status_code == 401
    served = send(http, emulator, "POST", path, {"x-goog-api-key": emulator.token})
    assert served.status_code == 404
    assert served.json()["error"]["status"] == "NOT_FOUND"


def test_an_empty_or_shared_token_is_refused_at_start() -> None:
    config = load_config()
    for token, admin in (("", "admin"), ("model", ""), ("same", "same")):
        with pytest.raises(EmulatorConfigError):
            Emulator(config, token=token, admin_token=admin)


# --- 2. admin routes: the admin token, from loopback peers only ---------------------------


def test_admin_routes_need_the_admin_token_not_the_model_token(
    http: httpx.Client, emulator: EmulatorServer
) -> None:
    token, admin = emulator.token, emulator.admin_token
    refused = {
        "none": {},
        "model token": {"Authorization": f"Bearer {token}"},
        "admin token as basic": {"Authorization": f"Basic {b64('token:' + admin)}"},
        "admin token as api key": {"x-api-key": admin},
        "admin token plus a byte": {"Authorization": f"Bearer {admin}x"},
    }
    for method, path in ADMIN_ROUTES:
        for case, headers in refused.items():
            response = http.request(method, emulator.url + path, headers=headers)
            assert response.status_code == 401, (method, path, case)
            assert admin not in response.text and token not in response.text
        opened = http.request(
            method, emulator.url + path, headers={"Authorization": f"Bearer {admin}"}
        )
        assert opened.status_code not in (401, 403) and opened.status_code < 500, (path, opened)


class PeerTransport:
    """A transport that only knows its peer's address: what the admin guard looks at."""

    def __init__(self, peer: tuple[Any, ...] | None) -> None:
        self.peer = peer

    def get_extra_info(self, key: str, default: Any = None) -> Any:
        return {"peername": self.peer, "sockname": ("127.0.0.1", 8080)}.get(key, default)


async def admin_answer(
    app: web.Application, method: str, path: str, peer: tuple[Any, ...] | None, token: str
) -> int:
    """The status an admin route's own handler answers a peer, without any network."""
    match = await app.router.resolve(make_mocked_request(method, path, app=app))
    headers = {
        "Authorization": f"Bearer {token}",
        "X-Forwarded-For": "127.0.0.1",  # proxy headers must not be trusted
        "Forwarded": "for=127.0.0.1",
        "X-Real-IP": "127.0.0.1",
    }
    request = make_mocked_request(
        method, path, headers, app=app, transport=PeerTransport(peer), match_info=dict(match)
    )
    response = await match.handler(request)
    return response.status


NON_LOOPBACK_PEERS = [
    ("203.0.113.7", 40000),
    ("10.0.0.5", 40000),
    ("192.168.1.20", 40000),
    ("0.0.0.0", 0),
    ("2001:db8::1", 40000, 0, 0),
    ("fe80::1%eth0", 40000, 0, 2),
    ("::ffff:203.0.113.7", 40000, 0, 0),  # an IPv4 peer on a dual-stack socket
    None,  # no TCP peer at all
]
LOOPBACK_PEERS = [
    ("127.0.0.1", 40000),
    ("127.9.8.7", 40000),
    ("::1", 40000, 0, 0),
    ("::ffff:127.0.0.1", 40000, 0, 0),
]


def test_admin_routes_refuse_non_loopback_peers_even_with_the_admin_token() -> None:
    # `aiquery serve --host` accepts any address, so this guard is what keeps the admin
    # routes local when the emulator listens on a LAN interface.
    async def run() -> None:
        app = emulator_app(Emulator(load_config(), token="model-token", admin_token="admin-token"))
        for method, path in ADMIN_ROUTES:
            for peer in NON_LOOPBACK_PEERS:
                status = await admin_answer(app, method, path, peer, "admin-token")
                assert status == 403, (method, path, peer)
            for peer in LOOPBACK_PEERS:
                status = await admin_answer(app, method, path, peer, "admin-token")
                assert status not in (401, 403) and status < 500, (method, path, peer)
                assert await admin_answer(app, method, path, peer, "model-token") == 401

    asyncio.run(run())


# --- 3. credentials that are not UTF-8 ------------------------------------------------------


def test_non_utf8_credentials_are_401_not_500(
    emulator: EmulatorServer, handler_crashes: Callable[[], list[str]]
) -> None:
    chat = f"POST {CHAT_PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n".encode()
    for request in (
        chat + b"Authorization: Bearer \xff\xfe\r\n\r\n{}",
        chat + b"x-api-key: \xff\xfe\r\n\r\n{}",
        chat + b"Authorization: Basic \xc3\xa9\r\n\r\n{}",
        b"GET /admin/stats HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\n\r\n",
    ):
        with socket.create_connection(("127.0.0.1", emulator.port), timeout=10) as sock:
            sock.sendall(request)
            status, _ = read_response(sock)
        assert status == 401, request
    assert handler_crashes() == []
