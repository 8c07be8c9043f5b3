"""What the emulator serves: endpoints, their built-in models and their fault and capacity knobs.

Knobs come from a TOML file, CLI flags or the admin route, in that order of layering:

```toml
[faults]                                   # defaults for every endpoint
latency_ms = 20
latency_distribution = "exponential"       # fixed | exponential | uniform
time_to_first_token_ms = 150               # then the answer's tokens at this rate:
tokens_per_second = 80                     # streamed chunk by chunk, or all at the end

[endpoints."databricks-gpt-5-4".faults]    # one endpoint's overrides
requests_per_minute = 18000
error_rate_503 = 0.05

[endpoints.my-custom-model]                # an extra endpoint
task = "custom"                            # llm/v1/chat | llm/v1/completions | llm/v1/embeddings | custom
```
"""

from __future__ import annotations

import dataclasses
import hashlib
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiquery.endpoints.catalog import CATALOG, DATABRICKS_PREFIX, GATEWAY_PREFIX, CatalogModel
from aiquery.protocols.common import CHAT, CUSTOM, EMBEDDINGS, TASKS, payload_limit

LATENCY_DISTRIBUTIONS = ("fixed", "exponential", "uniform")
OVERFLOW_POLICIES = ("reject", "queue")


class EmulatorConfigError(ValueError):
    """An emulator setting is invalid; the message names the setting and what is allowed."""


@dataclass(frozen=True, slots=True)
class Faults:
    """Per-endpoint pacing, capacity limits and injected faults. Rates are probabilities in [0, 1].

    An answer starts after `latency_ms`; its first token comes `time_to_first_token_ms`
    later and the rest at `tokens_per_second`. A streamed answer sends each piece when it
    is generated; any other answer is sent whole when its last token is. A hang, drop or
    malformed fault strikes a streamed answer mid-stream, after `stream_fault_after_chunks`
    pieces (by default half of them).
    """

    latency_ms: float = 0.0  # fixed latency, or the mean of the distribution
    latency_distribution: str = "fixed"
    time_to_first_token_ms: float = 0.0
    tokens_per_second: float | None = None  # None: every token at once
    stream_fault_after_chunks: int | None = None
    requests_per_minute: float | None = None  # beyond it: 429 REQUEST_LIMIT_EXCEEDED
    tokens_per_minute: float | None = None  # input + output tokens
    max_concurrency: int | None = None  # requests in progress at once
    overflow: str = "reject"  # past max_concurrency: 429 ("reject") or wait ("queue")
    error_rate_500: float = 0.0
    error_rate_503: float = 0.0
    hang_rate: float = 0.0  # never answer (until hang_seconds), to exercise client timeouts
    hang_seconds: float = 330.0
    drop_rate: float = 0.0  # close the connection without an answer
    malformed_rate: float = 0.0  # answer 200 with a truncated JSON body
    seed: int | None = None  # makes the injected faults repeatable

    def __post_init__(self) -> None:
        if self.latency_ms < 0:
            raise EmulatorConfigError("latency_ms must be >= 0")
        if self.time_to_first_token_ms < 0:
            raise EmulatorConfigError("time_to_first_token_ms must be >= 0")
        if self.tokens_per_second is not None and self.tokens_per_second <= 0:
            raise EmulatorConfigError("tokens_per_second must be > 0 (omit it for no pacing)")
        if self.stream_fault_after_chunks is not None and self.stream_fault_after_chunks < 0:
            raise EmulatorConfigError("stream_fault_after_chunks must be >= 0 (omit it for half)")
        if self.latency_distribution not in LATENCY_DISTRIBUTIONS:
            raise EmulatorConfigError(
                f"latency_distribution must be one of {LATENCY_DISTRIBUTIONS}"
            )
        if self.overflow not in OVERFLOW_POLICIES:
            raise EmulatorConfigError(f"overflow must be one of {OVERFLOW_POLICIES}")
        for name in ("requests_per_minute", "tokens_per_minute"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise EmulatorConfigError(f"{name} must be > 0 (omit it for no limit)")
        if self.max_concurrency is not None and self.max_concurrency < 1:
            raise EmulatorConfigError("max_concurrency must be >= 1 (omit it for no limit)")
        rates = ("error_rate_500", "error_rate_503", "hang_rate", "drop_rate", "malformed_rate")
        for name in rates:
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise EmulatorConfigError(f"{name} must be between 0 and 1")
        if sum(getattr(self, name) for name in rates) > 1.0:
            raise EmulatorConfigError("the fault rates together must not exceed 1")
        if self.hang_seconds < 0:
            raise EmulatorConfigError("hang_seconds must be >= 0")

    def generation_s(self, tokens_before: float) -> float:
        """Seconds from an answer's start until the token after `tokens_before` is generated."""
        paced = tokens_before / self.tokens_per_second if self.tokens_per_second else 0.0
        return self.time_to_first_token_ms / 1000 + paced

    def updated(self, changes: Mapping[str, Any]) -> Faults:
        """A copy with `changes` applied; unknown names are an error naming the valid ones."""
        try:
            return dataclasses.replace(self, **_checked(changes, Faults, "fault"))
        except TypeError as e:  # a value of the wrong type, e.g. latency_ms = "fast"
            raise EmulatorConfigError(f"invalid fault setting: {e}") from None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, slots=True)
class EndpointConfig:
    """One served endpoint: its task, the built-in model behind it and its knobs."""

    name: str
    task: str = CHAT
    provider: str = "databricks"
    embedding_dim: int | None = None
    content_blocks: bool = False
    faults: Faults = field(default_factory=Faults)

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise EmulatorConfigError(
                f"endpoint name {self.name!r} must be non-empty and contain no '/'"
            )
        if self.task not in TASKS:
            raise EmulatorConfigError(f"endpoint {self.name}: task must be one of {TASKS}")
        if self.task == EMBEDDINGS and not (self.embedding_dim and self.embedding_dim > 0):
            raise EmulatorConfigError(
                f"endpoint {self.name}: an embeddings endpoint needs embedding_dim > 0"
            )

    @property
    def payload_limit(self) -> int:
        return payload_limit(self.task)

    def describe(self) -> dict[str, Any]:
        """The endpoint as `GET /api/2.0/serving-endpoints[/{name}]` describes it, in the
        shape the Databricks SDK (`ServingEndpointDetailed`) and MLflow read."""
        entity: dict[str, Any] = {"name": self.name, "entity_version": "1"}
        if self.task == CUSTOM:
            entity["entity_name"] = self.name
        else:
            model = self.name.removeprefix(DATABRICKS_PREFIX)
            entity["entity_name"] = GATEWAY_PREFIX + model
            entity["foundation_model"] = {
                "name": model,
                "display_name": model,
                "description": f"Served by aiquery's emulator (a built-in {self.provider} model).",
                "docs": "",
            }
        return {
            "name": self.name,
            "id": hashlib.sha256(self.name.encode()).hexdigest()[:32],
            "creator": "aiquery-emulator",
            "creation_timestamp": 0,
            "last_updated_timestamp": 0,
            "task": self.task,
            "state": {"ready": "READY", "config_update": "NOT_UPDATING"},
            "endpoint_type": "FOUNDATION_MODEL_API" if self.task != CUSTOM else "CUSTOM_MODEL",
            "config": {"served_entities": [entity]},
            "tags": [],
            "permission_level": "CAN_QUERY",
            "route_optimized": False,
        }


@dataclass(frozen=True, slots=True)
class EmulatorConfig:
    endpoints: tuple[EndpointConfig, ...]

    def endpoint_map(self) -> dict[str, EndpointConfig]:
        return {e.name: e for e in self.endpoints}


def from_catalog(model: CatalogModel, faults: Faults) -> EndpointConfig:
    return EndpointConfig(
        name=model.name,
        task=model.task,
        provider=model.provider,
        embedding_dim=model.embedding_dim,
        content_blocks=model.content_blocks,
        faults=faults,
    )


def load_config(
    path: str | Path | None = None, *, fault_overrides: Mapping[str, Any] | None = None
) -> EmulatorConfig:
    """The built-in catalog, layered with a TOML file and then CLI fault overrides."""
    data: Mapping[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise EmulatorConfigError(f"emulator config file not found: {path}") from None
        except tomllib.TOMLDecodeError as e:
            raise EmulatorConfigError(
                f"emulator config file {path} is not valid TOML: {e}"
            ) from None
        unknown = set(data) - {"faults", "endpoints"}
        if unknown:
            raise EmulatorConfigError(
                f"unknown section(s) {sorted(unknown)} in {path}; use [faults] and [endpoints.NAME]"
            )
    default_faults = Faults().updated(_table(data, "faults", "[faults]"))
    if fault_overrides:
        default_faults = default_faults.updated(fault_overrides)
    endpoints = {m.name: from_catalog(m, default_faults) for m in CATALOG}
    for name, raw in _table(data, "endpoints", "[endpoints]").items():
        section = _table({"x": raw}, "x", f"[endpoints.{name}]")
        base = endpoints.get(name, EndpointConfig(name=name, faults=default_faults))
        faults = base.faults.updated(_table(section, "faults", f"[endpoints.{name}.faults]"))
        if fault_overrides:
            faults = faults.updated(fault_overrides)
        fields = _checked(
            {k: v for k, v in section.items() if k != "faults"}, EndpointConfig, "endpoint"
        )
        endpoints[name] = dataclasses.replace(base, faults=faults, **fields)
    return EmulatorConfig(tuple(endpoints.values()))


def endpoint_from_dict(name: str, raw: Mapping[str, Any], default_faults: Faults) -> EndpointConfig:
    """An endpoint created through the admin route."""
    fields = _checked({k: v for k, v in raw.items() if k != "faults"}, EndpointConfig, "endpoint")
    faults = default_faults.updated(raw.get("faults") or {})
    return EndpointConfig(name=name, faults=faults, **fields)


def _table(data: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, Mapping):
        raise EmulatorConfigError(f"{where} must be a table")
    return value


def _checked(changes: Mapping[str, Any], cls: type, what: str) -> dict[str, Any]:
    allowed = {f.name for f in dataclasses.fields(cls)} - {"name", "faults"}
    unknown = set(changes) - allowed
    if unknown:
        raise EmulatorConfigError(
            f"unknown {what} setting(s) {sorted(unknown)}; valid: {sorted(allowed)}"
        )
    return dict(changes)
