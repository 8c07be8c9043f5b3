"""The emulator's aiohttp app: model routes built from the protocol table, listing, admin.

Each `Mount` serves one protocol's operations under a prefix, as Databricks model
serving and the Unity AI Gateway do; paths, codecs and credentials come from the protocol
table (`aiquery.protocols.table`), the same rows the client calls with.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from aiohttp import web

from aiquery.protocols.errors import databricks_error
from aiquery.protocols.table import PROTOCOLS, Operation
from aiquery.serving import admin
from aiquery.serving.emulator import Emulator
from aiquery.serving.pipeline import Route, not_found, serve

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Mount:
    """Where the emulator serves one protocol, and as what."""

    prefix: str  # the paths of the protocol's operations are served below this
    protocol: str
    api_prefix: str  # of the request log's route names
    errors: str  # whose error bodies the routes answer with (a protocol's name)
    provider: str | None = None  # native provider routes serve only that provider's models
    versions: tuple[str, ...] = ()  # the path's `{version}`s served, if the protocol has one


MOUNTS = (
    Mount("", "databricks", "serving-endpoints", "databricks"),
    Mount("/serving-endpoints", "openai", "openai", "databricks"),
    Mount("/ai-gateway/mlflow/v1", "openai", "mlflow/v1", "databricks"),
    Mount("/ai-gateway/mlflow/v1", "openai-responses", "mlflow/v1", "databricks"),
    Mount("/ai-gateway/openai/v1", "openai-responses", "openai/v1", "openai", "openai"),
    Mount("/ai-gateway/anthropic", "anthropic", "anthropic/v1", "anthropic", "anthropic"),
    # google-genai 3.x calls v1 by default; the gateway documents v1beta. Serve both.
    Mount("/ai-gateway/gemini", "gemini", "gemini", "gemini", "google", ("v1beta", "v1")),
)


def model_routes() -> list[tuple[str, dict[str | None, Route], str | None]]:
    """(path template, its routes by `:method` (None for a plain path), the path parameter
    naming the model) of every model route."""
    found: dict[str, tuple[dict[str | None, Route], str | None]] = {}
    for mount in MOUNTS:
        protocol = PROTOCOLS[mount.protocol]
        by_path: dict[tuple[str, bool], dict[str, Operation]] = {}
        for operation in protocol.operations.values():
            by_path.setdefault((operation.path, False), {})[operation.task] = operation
            if operation.stream_path is not None:
                by_path.setdefault((operation.stream_path, True), {})[operation.task] = operation
        for version in mount.versions or (None,):
            values = {"version": version} if version else {}
            for (path, streams), operations in by_path.items():
                first = next(iter(operations.values()))
                name = protocol.api_type(
                    first, prefix=mount.api_prefix, values=values, streamed=streams
                )
                template = mount.prefix + path.format(model="{model}", **values)
                # `{model}:generateContent`: match the whole segment, pick the method after.
                head, colon, method = template.partition("{model}:")
                route = Route(
                    name,
                    operations,
                    PROTOCOLS[mount.errors].error_body,
                    mount.provider,
                    method if colon else None,
                    streams,
                )
                param = "target" if colon else "model" if "{model}" in template else None
                key = head + "{target}" if colon else template
                found.setdefault(key, ({}, param))[0][route.method] = route
    routes = []
    for template, (by_method, param) in found.items():
        served = tuple(m for m in by_method if m is not None)
        by_method = {m: dataclasses.replace(r, served=served) for m, r in by_method.items()}
        routes.append((template, by_method, param))
    return routes


def app(emulator: Emulator) -> web.Application:
    """The emulator's whole app: model routes, endpoint listing, health, discovery, admin.

    Every path is served with and without a trailing slash, as clients spell both
    (MLflow lists endpoints at `/api/2.0/serving-endpoints/`).
    """
    application = web.Application(client_max_size=64 * 1024 * 1024)

    def add(method: str, path: str, handler: Handler) -> None:
        application.router.add_route(method, path, handler)
        application.router.add_route(method, path + "/", handler)

    for template, by_method, param in model_routes():
        add("POST", template, _model_handler(emulator, by_method, param))

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def host_metadata(request: web.Request) -> web.Response:
        # The Databricks SDK reads this when a WorkspaceClient starts (unauthenticated, as
        # on a workspace); only token authentication is served, so no OIDC is behind it.
        return web.json_response({"oidc_endpoint": f"{request.scheme}://{request.host}/oidc"})

    async def list_endpoints(request: web.Request) -> web.Response:
        refused = _refused(emulator, request)
        if refused is not None:
            return refused
        return web.json_response({"endpoints": [e.describe() for e in emulator.endpoints.values()]})

    async def get_endpoint(request: web.Request) -> web.Response:
        refused = _refused(emulator, request)
        if refused is not None:
            return refused
        endpoint = emulator.resolve(request.match_info["name"])
        if endpoint is None:
            e = not_found(emulator, request.match_info["name"])
            return web.json_response(databricks_error(404, e.message), status=404)
        return web.json_response(endpoint.describe())

    add("GET", "/health", health)
    add("GET", "/.well-known/databricks-config", host_metadata)
    add("GET", "/api/2.0/serving-endpoints", list_endpoints)
    add("GET", "/api/2.0/serving-endpoints/{name}", get_endpoint)
    admin.add_routes(application, emulator)
    return application


def _model_handler(
    emulator: Emulator, by_method: Mapping[str | None, Route], param: str | None
) -> Handler:
    default = next(iter(by_method.values()))  # refuses a method it does not serve

    async def handler(request: web.Request) -> web.StreamResponse:
        name = request.match_info.get(param) if param else None
        method = name.partition(":")[2] if name is not None and param == "target" else None
        return await serve(emulator, request, by_method.get(method, default), name)

    return handler


def _refused(emulator: Emulator, request: web.Request) -> web.Response | None:
    if emulator.authenticated(request.headers):
        return None
    return web.json_response(databricks_error(401, "Invalid or missing access token."), status=401)
