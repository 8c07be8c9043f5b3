"""The emulator's admin routes: fault knobs, endpoints and the request log, for tests and benchmarks.

They answer only peers on the loopback interface, whatever address the server listens on,
and only with the admin token (`Authorization: Bearer <admin token>`), which is separate
from the model token. Proxy headers (X-Forwarded-For, Forwarded) are not trusted.

- `GET    /admin/endpoints`                 every endpoint with its task and faults
- `PUT    /admin/endpoints/{name}`          create or replace an endpoint: {"task": ..., "faults": {...}}
- `DELETE /admin/endpoints/{name}`          remove an endpoint (clients then get 404)
- `PATCH  /admin/endpoints/{name}/faults`   change some of one endpoint's knobs
- `PATCH  /admin/faults`                    change knobs of every endpoint
- `GET    /admin/requests?endpoint=&limit=` the request log, oldest first
- `GET    /admin/stats`                     per-endpoint counters: requests, items, tokens, statuses
- `POST   /admin/reset`                     the start-up configuration and an empty log
"""

from __future__ import annotations

import dataclasses
import hmac
import ipaddress
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from aiquery.protocols.common import MB
from aiquery.serving.bodies import BodyError, read_json
from aiquery.serving.config import EmulatorConfigError, Faults, endpoint_from_dict
from aiquery.serving.emulator import Emulator

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _is_loopback(peer: str | None) -> bool:
    if peer is None:  # not a TCP peer (or already gone)
        return False
    try:
        ip = ipaddress.ip_address(peer.split("%")[0])
    except ValueError:
        return False
    # A dual-stack socket shows an IPv4 peer as ::ffff:a.b.c.d.
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return (mapped or ip).is_loopback


def add_routes(app: web.Application, emulator: Emulator) -> None:
    def guarded(handler: Handler) -> Handler:
        async def wrapper(request: web.Request) -> web.StreamResponse:
            if not _is_loopback(request.remote):
                return web.json_response(
                    {"error": "admin routes answer loopback clients only"}, status=403
                )
            scheme, _, token = request.headers.get("Authorization", "").partition(" ")
            # Non-UTF-8 header bytes arrive as surrogate escapes: compare the bytes as sent.
            sent = token.strip().encode("utf-8", "surrogateescape")
            if scheme.lower() != "bearer" or not hmac.compare_digest(sent, emulator.admin_token):
                return web.json_response(
                    {"error": "admin token required (Authorization: Bearer <admin token>)"},
                    status=401,
                )
            try:
                return await handler(request)
            except EmulatorConfigError as e:
                return web.json_response({"error": str(e)}, status=400)
            except BodyError as e:
                return web.json_response({"error": e.message}, status=e.status)

        return wrapper

    async def body(request: web.Request) -> dict[str, Any]:
        data = await read_json(request, MB, what="admin requests")
        if not isinstance(data, dict):
            raise EmulatorConfigError("the admin request body must be a JSON object")
        return data

    def describe(name: str) -> dict[str, Any]:
        endpoint = emulator.endpoints[name]
        return {
            "name": name,
            "task": endpoint.task,
            "provider": endpoint.provider,
            "faults": endpoint.faults.as_dict(),
        }

    async def list_endpoints(request: web.Request) -> web.StreamResponse:
        return web.json_response({"endpoints": [describe(n) for n in sorted(emulator.endpoints)]})

    async def put_endpoint(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        try:
            endpoint = endpoint_from_dict(name, await body(request), Faults())
        except TypeError as e:  # a setting of the wrong type, e.g. embedding_dim = "x"
            raise EmulatorConfigError(f"invalid endpoint setting: {e}") from None
        emulator.set_endpoint(endpoint)
        return web.json_response(describe(name))

    async def delete_endpoint(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if emulator.endpoints.pop(name, None) is None:
            return web.json_response({"error": f"no endpoint {name!r}"}, status=404)
        return web.json_response({"deleted": name})

    async def patch_faults(request: web.Request) -> web.StreamResponse:
        changes = await body(request)
        name = request.match_info.get("name")
        if name is not None and name not in emulator.endpoints:
            return web.json_response({"error": f"no endpoint {name!r}"}, status=404)
        names = [name] if name is not None else list(emulator.endpoints)
        for n in names:
            endpoint = emulator.endpoints[n]
            emulator.set_endpoint(
                dataclasses.replace(endpoint, faults=endpoint.faults.updated(changes))
            )
        return web.json_response({"endpoints": [describe(n) for n in names]})

    async def requests(request: web.Request) -> web.StreamResponse:
        limit = request.query.get("limit")
        try:
            count = int(limit) if limit else None
        except ValueError:
            raise EmulatorConfigError("limit must be an integer") from None
        rows = emulator.log.snapshot(request.query.get("endpoint"), count)
        return web.json_response({"requests": rows}, dumps=lambda o: json.dumps(o, default=str))

    async def stats(request: web.Request) -> web.StreamResponse:
        return web.json_response({"endpoints": emulator.log.summary()})

    async def reset(request: web.Request) -> web.StreamResponse:
        emulator.reset()
        return web.json_response({"reset": True})

    app.router.add_get("/admin/endpoints", guarded(list_endpoints))
    app.router.add_put("/admin/endpoints/{name}", guarded(put_endpoint))
    app.router.add_delete("/admin/endpoints/{name}", guarded(delete_endpoint))
    app.router.add_patch("/admin/endpoints/{name}/faults", guarded(patch_faults))
    app.router.add_patch("/admin/faults", guarded(patch_faults))
    app.router.add_get("/admin/requests", guarded(requests))
    app.router.add_get("/admin/stats", guarded(stats))
    app.router.add_post("/admin/reset", guarded(reset))
