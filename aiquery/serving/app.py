"""The emulator's HTTP routes: Databricks model serving and the Unity AI Gateway, on aiohttp.

Every model route runs the same pipeline: authenticate → validate request tags → read the
body within the payload limit → resolve the endpoint → decode the request with the shared
`aiquery.protocols` codecs → admit (rate and concurrency limits) → latency and injected
faults → answer from the built-in model → log. Errors use the route's own error shape.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from aiohttp import web

from aiquery.models_catalog import canonical_name
from aiquery.protocols import anthropic, gemini, responses, serving
from aiquery.protocols import openai as oai
from aiquery.protocols.common import CHAT, COMPLETIONS, CUSTOM, EMBEDDINGS, ProtocolError
from aiquery.protocols.errors import error_body
from aiquery.protocols.tags import TAGS_HEADER, parse_request_tags
from aiquery.serving import admin
from aiquery.serving.answers import Answer, answer, input_tokens
from aiquery.serving.bodies import BodyError, json_text, read_json
from aiquery.serving.config import (
    FOUNDATION_PAYLOAD_LIMIT,
    ConfigError,
    EmulatorConfig,
    EndpointConfig,
)
from aiquery.serving.limits import EndpointLimits, retry_after_header
from aiquery.serving.requestlog import CLIENT_CLOSED, DROPPED, HUNG, LoggedRequest, RequestLog

log = logging.getLogger("aiquery.serve")

_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{8,128}")


class HttpError(Exception):
    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


# How each model route finds its endpoint, decodes its body and which tasks it serves.
Decode = Callable[[Any, EndpointConfig], Any]


@dataclass(frozen=True, slots=True)
class Route:
    name: str  # api_type as the usage table names it, e.g. "mlflow/v1/chat/completions"
    flavour: str  # error body shape: databricks | openai | anthropic | gemini
    kind: str  # chat | completions | embeddings | invocations | responses | anthropic | gemini
    tasks: tuple[str, ...]
    provider: str | None = None  # native provider routes serve only that provider's models


class Emulator:
    """The emulator's state: endpoints, their limiters and the request log."""

    def __init__(self, config: EmulatorConfig, *, token: str, admin_token: str) -> None:
        if not token or not admin_token:
            raise ConfigError("the emulator needs a non-empty token and admin token")
        if token == admin_token:
            raise ConfigError("the admin token must differ from the model token")
        self.initial = config
        self.token = token.encode()
        self.admin_token = admin_token.encode()
        self.log = RequestLog()
        self.endpoints: dict[str, EndpointConfig] = {}
        self.limits: dict[str, EndpointLimits] = {}
        self.reset()

    def reset(self) -> None:
        """Back to the configuration the server started with, with an empty log."""
        self.endpoints = self.initial.endpoint_map()
        self.limits = {}
        self.log.reset()

    def set_endpoint(self, endpoint: EndpointConfig) -> None:
        self.endpoints[endpoint.name] = endpoint
        self.limits.pop(endpoint.name, None)  # rebuilt lazily, on the serving loop

    def limits_for(self, endpoint: EndpointConfig) -> EndpointLimits:
        limits = self.limits.get(endpoint.name)
        if limits is None or limits.faults is not endpoint.faults:
            limits = self.limits[endpoint.name] = EndpointLimits(endpoint.faults)
        return limits

    def resolve(self, name: str) -> EndpointConfig | None:
        return self.endpoints.get(name) or self.endpoints.get(canonical_name(name))

    # --- auth ---------------------------------------------------------------------

    def authenticated(self, request: web.Request) -> bool:
        """Bearer token, Basic `token:<token>` (curl -u), or a provider SDK's API-key header."""
        # Non-UTF-8 header bytes arrive as surrogate escapes: compare the bytes as sent.
        candidates: list[bytes] = []
        auth = request.headers.get("Authorization", "")
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer":
            candidates.append(value.strip().encode("utf-8", "surrogateescape"))
        elif scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(value.strip(), validate=True)
            except ValueError:
                decoded = b""
            candidates.append(decoded.partition(b":")[2])
        for header in ("x-api-key", "x-goog-api-key"):
            if header in request.headers:
                candidates.append(request.headers[header].encode("utf-8", "surrogateescape"))
        return any(hmac.compare_digest(c, self.token) for c in candidates)

    # --- the model pipeline ---------------------------------------------------------

    async def serve(
        self, request: web.Request, route: Route, path_name: str | None
    ) -> web.StreamResponse:
        # A client's own request id is kept, so its usage rows and this log match one to one.
        offered = request.headers.get("x-request-id", "")
        request_id = offered if _REQUEST_ID.fullmatch(offered) else uuid.uuid4().hex
        entry: dict[str, Any] = {
            "request_id": request_id,
            "time": time.time(),
            "route": route.name,
            "endpoint": None,
            "status": 500,
            "input_tokens": 0,
            "output_tokens": 0,
            "items": 0,
            "request_tags": None,
            "user_agent": request.headers.get("User-Agent"),
            "fault": None,
        }
        try:
            response = await self._serve(request, route, path_name, request_id, entry)
        except HttpError as e:
            entry["status"] = e.status
            response = web.json_response(
                error_body(route.flavour, e.status, e.message),
                status=e.status,
                headers={**e.headers, "x-request-id": request_id},
                dumps=json_text,
            )
        except (asyncio.CancelledError, ConnectionError):
            if entry["status"] == 500:  # undecided: gone before an answer, not a server error
                entry["status"] = CLIENT_CLOSED
            raise
        finally:
            if entry["status"] != HUNG:  # a hung request was logged when it started hanging
                self.log.add(LoggedRequest(**entry))
        return response

    async def _serve(
        self,
        request: web.Request,
        route: Route,
        path_name: str | None,
        request_id: str,
        entry: dict[str, Any],
    ) -> web.StreamResponse:
        method_served = True
        if route.kind == "gemini" and path_name is not None:  # models/{model}:{method}
            path_name, sep, method = path_name.partition(":")
            method_served = bool(sep) and method == "generateContent"
        endpoint = self.resolve(path_name) if path_name is not None else None
        if endpoint is not None:  # logged even when refused, so client and server logs compare
            entry["endpoint"] = endpoint.name
        if not self.authenticated(request):
            raise HttpError(
                401, "Invalid or missing access token. Send 'Authorization: Bearer <token>'."
            )
        if not method_served:
            raise HttpError(404, "Only ':generateContent' is served.")
        raw_tags = request.headers.get(TAGS_HEADER)
        if raw_tags is not None:
            try:
                entry["request_tags"] = parse_request_tags(raw_tags)
            except ValueError as e:
                raise HttpError(400, str(e)) from None
        if path_name is not None and endpoint is None:
            raise self._not_found(path_name)
        limit = endpoint.payload_limit if endpoint else FOUNDATION_PAYLOAD_LIMIT
        try:
            body = await read_json(request, limit)
        except BodyError as e:
            raise HttpError(e.status, e.message) from None
        if endpoint is None:
            model = body.get("model") if isinstance(body, Mapping) else None
            if not isinstance(model, str):
                raise HttpError(400, "missing required field 'model' (the endpoint name)")
            endpoint = self.resolve(model)
            if endpoint is None:
                raise self._not_found(model)
        entry["endpoint"] = endpoint.name
        if route.provider is not None and endpoint.provider != route.provider:
            raise HttpError(
                404, f"Model '{endpoint.name}' is not served by the {route.provider} API."
            )
        if endpoint.task not in route.tasks:
            raise HttpError(
                400,
                f"Endpoint '{endpoint.name}' has task {endpoint.task}; this route serves {', '.join(route.tasks)}.",
            )
        try:
            work = decode(route.kind, endpoint, body)
        except ProtocolError as e:
            raise HttpError(400, str(e)) from None
        return await self._answer(request, route, endpoint, work, request_id, entry)

    async def _answer(
        self,
        request: web.Request,
        route: Route,
        endpoint: EndpointConfig,
        work: Any,
        request_id: str,
        entry: dict[str, Any],
    ) -> web.StreamResponse:
        limits = self.limits_for(endpoint)
        refusal = limits.admit(input_tokens(work))
        if refusal is not None:
            raise HttpError(
                429,
                f"{refusal.reason} for endpoint '{endpoint.name}'. Retry after the delay in Retry-After.",
                retry_after_header(refusal.retry_after_s),
            )
        slots = limits.slots
        if slots is not None:
            await slots.acquire()
        limits.in_flight += 1
        try:
            delay = limits.latency_s()
            if delay:
                await asyncio.sleep(delay)
            fault = limits.draw_fault()
            entry["fault"] = fault
            if fault == "500":
                raise HttpError(
                    500, "Injected internal error (emulator fault knob error_rate_500)."
                )
            if fault == "503":
                raise HttpError(
                    503, "Injected: the endpoint is temporarily unavailable (error_rate_503)."
                )
            if fault == "hang":
                entry["status"] = HUNG
                self.log.add(LoggedRequest(**entry))
                await asyncio.sleep(endpoint.faults.hang_seconds)
                raise HttpError(
                    504, "Injected hang ended: the request exceeded the endpoint deadline."
                )
            if fault == "drop":
                entry["status"] = DROPPED
                return _drop(request)
            try:
                result: Answer = answer(route.kind, endpoint, work, request_id)
            except ValueError as e:  # the model refused its parameters (e.g. response_format)
                raise HttpError(400, str(e)) from None
            limits.charge_output(result.output_tokens)
            entry.update(
                status=200,
                input_tokens=result.input_tokens,
                output_tokens=result.output_tokens,
                items=result.items,
            )
            text = json_text(result.body)
            if fault == "malformed":
                text = text[: max(1, len(text) // 2)]
            return web.Response(
                text=text,
                content_type="application/json",
                headers={"x-request-id": request_id},
            )
        finally:
            limits.in_flight -= 1
            if slots is not None:
                slots.release()

    def _not_found(self, name: str) -> HttpError:
        known = ", ".join(sorted(self.endpoints)[:5])
        return HttpError(
            404,
            f"Endpoint '{name}' does not exist. Known endpoints include: {known}, ... "
            "(GET /api/2.0/serving-endpoints lists them all).",
        )

    # --- routes -----------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)

        def model_route(
            route: Route, path_param: str | None = None
        ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
            async def handler(request: web.Request) -> web.StreamResponse:
                name = request.match_info.get(path_param) if path_param else None
                return await self.serve(request, route, name)

            return handler

        chat_tasks = (CHAT,)
        app.router.add_post(
            "/serving-endpoints/{name}/invocations",
            model_route(
                Route(
                    "serving-endpoints/invocations",
                    "databricks",
                    "invocations",
                    (CHAT, COMPLETIONS, EMBEDDINGS, CUSTOM),
                ),
                "name",
            ),
        )
        for prefix, api in (
            ("/serving-endpoints", "openai"),
            ("/ai-gateway/mlflow/v1", "mlflow/v1"),
        ):
            app.router.add_post(
                f"{prefix}/chat/completions",
                model_route(Route(f"{api}/chat/completions", "databricks", "chat", chat_tasks)),
            )
            app.router.add_post(
                f"{prefix}/embeddings",
                model_route(Route(f"{api}/embeddings", "databricks", "embeddings", (EMBEDDINGS,))),
            )
            app.router.add_post(
                f"{prefix}/completions",
                model_route(
                    Route(f"{api}/completions", "databricks", "completions", (COMPLETIONS,))
                ),
            )
        app.router.add_post(
            "/ai-gateway/mlflow/v1/responses",
            model_route(Route("mlflow/v1/responses", "databricks", "responses", chat_tasks)),
        )
        app.router.add_post(
            "/ai-gateway/openai/v1/responses",
            model_route(Route("openai/v1/responses", "openai", "responses", chat_tasks, "openai")),
        )
        app.router.add_post(
            "/ai-gateway/anthropic/v1/messages",
            model_route(
                Route("anthropic/v1/messages", "anthropic", "anthropic", chat_tasks, "anthropic")
            ),
        )
        # google-genai 3.x calls v1 by default; the gateway documents v1beta. Serve both.
        for version in ("v1beta", "v1"):
            app.router.add_post(
                f"/ai-gateway/gemini/{version}/models/{{target}}",
                model_route(
                    Route(
                        f"gemini/{version}/generateContent",
                        "gemini",
                        "gemini",
                        chat_tasks,
                        "google",
                    ),
                    "target",
                ),
            )
        app.router.add_get("/health", self._health)
        app.router.add_get("/api/2.0/serving-endpoints", self._list_endpoints)
        app.router.add_get("/api/2.0/serving-endpoints/{name}", self._get_endpoint)
        admin.add_routes(app, self)
        return app

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _list_endpoints(self, request: web.Request) -> web.Response:
        if not self.authenticated(request):
            return web.json_response(
                error_body("databricks", 401, "Invalid or missing access token."), status=401
            )
        return web.json_response({"endpoints": [e.describe() for e in self.endpoints.values()]})

    async def _get_endpoint(self, request: web.Request) -> web.Response:
        if not self.authenticated(request):
            return web.json_response(
                error_body("databricks", 401, "Invalid or missing access token."), status=401
            )
        endpoint = self.resolve(request.match_info["name"])
        if endpoint is None:
            e = self._not_found(request.match_info["name"])
            return web.json_response(error_body("databricks", 404, e.message), status=404)
        return web.json_response(endpoint.describe())


def decode(kind: str, endpoint: EndpointConfig, body: Any) -> Any:
    """The route's request body as a protocol-neutral request for the endpoint's task."""
    if kind == "invocations":
        kind = {
            CHAT: "chat",
            COMPLETIONS: "completions",
            EMBEDDINGS: "embeddings",
            CUSTOM: "custom",
        }[endpoint.task]
    decoders: dict[str, Callable[[Any], Any]] = {
        "chat": oai.decode_chat_request,
        "completions": oai.decode_completion_request,
        "embeddings": oai.decode_embedding_request,
        "custom": serving.decode_request,
        "responses": responses.decode_request,
        "anthropic": anthropic.decode_request,
        "gemini": partial(gemini.decode_request, model=endpoint.name),
    }
    return (kind, decoders[kind](body))


def _drop(request: web.Request) -> web.StreamResponse:
    """Close the connection without answering (the emulator's dropped-connection fault)."""
    transport = request.transport
    if transport is not None:
        transport.abort()
    raise asyncio.CancelledError  # aiohttp stops handling this request quietly
