"""The emulator's state: its endpoints, their limiters, the request log and who may call it."""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Mapping

from aiquery.endpoints.catalog import canonical_name
from aiquery.protocols.table import CREDENTIALS
from aiquery.serving.config import EmulatorConfig, EmulatorConfigError, EndpointConfig
from aiquery.serving.limits import EndpointLimits
from aiquery.serving.requestlog import RequestLog


class Emulator:
    """Endpoints, their limiters and the request log of one emulator; routes: `routes.app`."""

    def __init__(self, config: EmulatorConfig, *, token: str, admin_token: str) -> None:
        if not token or not admin_token:
            raise EmulatorConfigError("the emulator needs a non-empty token and admin token")
        if token == admin_token:
            raise EmulatorConfigError("the admin token must differ from the model token")
        self.initial = config
        self.token = token.encode()
        self.admin_token = admin_token.encode()
        self.log = RequestLog()
        self.model = asyncio.Lock()
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

    def authenticated(self, headers: Mapping[str, str]) -> bool:
        """The model token, sent any way some protocol sends it (Bearer, Basic `token:<token>`
        as `curl -u` does, or a provider SDK's API-key header), on any route."""
        sent = (auth.credential(headers) for auth in CREDENTIALS)
        return any(c is not None and hmac.compare_digest(c, self.token) for c in sent)
