"""What an endpoint name means: protocol, URL, credentials, task, model and limits.

Resolved on the driver, highest priority first:
1. explicit Python config: `aiquery.configure(endpoints={...})`;
2. a TOML file: `$AIQUERY_ENDPOINTS`, else `./aiquery.toml`;
3. the environment: `DATABRICKS_HOST` + `DATABRICKS_TOKEN` route the `databricks-*`
   names (and their `system.ai.*` gateway names) to that workspace;
4. built-in defaults: the same names, served by the embedded local emulator, started on
   demand when a query uses one.

```toml
[endpoints.my-llama]
protocol = "openai"                 # databricks | openai | openai-responses | anthropic | gemini
base_url = "http://127.0.0.1:8000/v1"
model = "meta-llama/Llama-3.1-8B-Instruct"
task = "chat"                       # chat | completions | embeddings | custom
token_env = "VLLM_API_KEY"          # read from the environment; never put tokens in files
max_concurrency = 32                # requests in flight across the whole job
requests_per_minute = 600
tokens_per_minute = 200000
input_price_per_million = 0.20      # USD, for costs in usage, estimates and budgets
output_price_per_million = 0.60     # (the databricks-* names have documented defaults)
```
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from aiquery.endpoints.catalog import (
    CATALOG,
    DEFAULT_PRICES,
    Price,
    canonical_name,
    retired,
    retirement_message,
)
from aiquery.errors import ConfigError, EndpointNotFoundError
from aiquery.protocols.common import CHAT, COMPLETIONS, CUSTOM, EMBEDDINGS, payload_limit
from aiquery.protocols.table import PROTOCOLS

TASK_ALIASES = {
    "chat": CHAT,
    CHAT: CHAT,
    "completions": COMPLETIONS,
    COMPLETIONS: COMPLETIONS,
    "embeddings": EMBEDDINGS,
    EMBEDDINGS: EMBEDDINGS,
    "custom": CUSTOM,
}
EMBEDDED = "embedded-emulator"  # base_url placeholder until the driver starts the emulator
_ENDPOINT_KEYS = {
    "protocol",
    "base_url",
    "model",
    "task",
    "token",
    "token_env",
    "max_concurrency",
    "requests_per_minute",
    "tokens_per_minute",
    "timeout_s",
    "max_batch_size",
    "encoding_format",
    "input_price_per_million",
    "output_price_per_million",
}


@dataclass(frozen=True, slots=True)
class Secret:
    """A credential whose repr and str never show it."""

    value: str = field(repr=False)

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A resolved endpoint: everything an executor needs to call it (picklable)."""

    name: str
    protocol: str
    base_url: str
    task: str
    model: str  # the serving endpoint or upstream model id the request names
    token: Secret | None = None
    max_concurrency: int | None = None  # across all concurrently running tasks
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    timeout_s: float = 297.0  # Databricks' model-serving execution limit
    max_batch_size: int = 100  # embedding inputs per request
    # How embeddings travel: base64 float32 (read in place), or JSON numbers for a server
    # that refuses the OpenAI field. A server that ignores it and sends numbers is read too.
    encoding_format: str = "base64"
    price: Price | None = None  # None: unknown, so no cost is shown or budgeted
    source: str = "builtin"

    @property
    def destination_type(self) -> str:
        """The usage table's `destination_type` for this endpoint."""
        if self.task == CUSTOM:
            return "CUSTOM_MODEL"
        if self.protocol == "databricks":
            return "PAY_PER_TOKEN_FOUNDATION_MODEL"
        return "EXTERNAL_FOUNDATION_MODEL"

    @property
    def payload_limit(self) -> int:
        return payload_limit(self.task)

    def describe(self) -> dict[str, Any]:
        """For `aiquery endpoints`: where it points, with the token redacted."""
        return {
            "name": self.name,
            "task": self.task,
            "protocol": self.protocol,
            "url": self.base_url,
            "model": self.model,
            "token": "***" if self.token else "(none)",
            "price": (
                f"${self.price.input_per_million:g} in / ${self.price.output_per_million:g} out per 1M tokens"
                if self.price is not None
                else "(unknown)"
            ),
            "source": self.source,
        }


@dataclass(frozen=True, slots=True)
class Registry:
    endpoints: Mapping[str, Endpoint]

    def resolve(self, name: str) -> Endpoint:
        """The endpoint for `name` (also its `system.ai.*` form), else an analysis error."""
        found = self.endpoints.get(name) or self.endpoints.get(canonical_name(name))
        gone = retired(name) if found is None else None
        if gone is not None:
            raise EndpointNotFoundError(retirement_message(name, gone))
        if found is None:
            # Close matches first, then the user's own endpoints, then the built-in ones.
            close = difflib.get_close_matches(name, list(self.endpoints), n=3, cutoff=0.6)
            own = sorted(n for n, e in self.endpoints.items() if e.source != "builtin")
            known = list(dict.fromkeys([*close, *own, *sorted(self.endpoints)]))
            shown = ", ".join(known[:8]) + (", ..." if len(known) > 8 else "")
            raise EndpointNotFoundError(
                f"Endpoint '{name}' is not configured. Known endpoints: {shown}. Configure one in "
                "aiquery.toml ([endpoints.NAME] with protocol, base_url, model, task), with "
                "aiquery.configure(endpoints=...), or set DATABRICKS_HOST and DATABRICKS_TOKEN."
            )
        return found


_explicit: dict[str, Mapping[str, Any]] = {}


def configure(endpoints: Mapping[str, Mapping[str, Any]]) -> None:
    """Define or override endpoints from Python (highest priority). Same keys as the TOML file."""
    for name, spec in endpoints.items():
        # Validate the shape now, not at query time; token_env is read when resolving.
        _endpoint_from_spec(name, spec, "python", check_env=False)
    _explicit.update(endpoints)


def reset_configuration() -> None:
    _explicit.clear()


def load_registry(
    environ: Mapping[str, str] | None = None, cwd: str | Path | None = None
) -> Registry:
    """Resolve every endpoint from the four sources, highest priority last applied."""
    env = os.environ if environ is None else environ
    endpoints: dict[str, Endpoint] = {}
    for model in CATALOG:
        endpoints[model.name] = Endpoint(
            model.name,
            "databricks",
            EMBEDDED,
            model.task,
            model.name,
            price=DEFAULT_PRICES[model.name],
            source="builtin",
        )
    host, token = env.get("DATABRICKS_HOST"), env.get("DATABRICKS_TOKEN")
    if host and token:
        base = host.rstrip("/")
        if not base.startswith(("http://", "https://")):
            base = "https://" + base
        for model in CATALOG:
            endpoints[model.name] = replace(
                endpoints[model.name], base_url=base, token=Secret(token), source="environment"
            )
    elif host or token:
        missing = "DATABRICKS_TOKEN" if host else "DATABRICKS_HOST"
        raise ConfigError(
            f"DATABRICKS_HOST and DATABRICKS_TOKEN go together; {missing} is not set."
        )
    path = _endpoints_file(env, cwd)
    if path is not None:
        for name, spec in _read_endpoints_file(path).items():
            endpoints[name] = _endpoint_from_spec(name, spec, f"file:{path}", env)
    for name, spec in _explicit.items():
        endpoints[name] = _endpoint_from_spec(name, spec, "python", env)
    return Registry(endpoints)


def _endpoints_file(env: Mapping[str, str], cwd: str | Path | None) -> Path | None:
    configured = env.get("AIQUERY_ENDPOINTS")
    if configured:
        path = Path(cwd or Path.cwd()) / configured  # an absolute path stays as it is
        if not path.is_file():
            raise ConfigError(f"AIQUERY_ENDPOINTS points at {configured}, which is not a file.")
        return path
    default = Path(cwd or Path.cwd()) / "aiquery.toml"
    return default if default.is_file() else None


def _read_endpoints_file(path: Path) -> Mapping[str, Mapping[str, Any]]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path} is not valid TOML: {e}") from None
    endpoints = data.get("endpoints", {})
    if not isinstance(endpoints, Mapping) or not all(
        isinstance(v, Mapping) for v in endpoints.values()
    ):
        raise ConfigError(f"{path}: endpoints go in tables named [endpoints.NAME].")
    return endpoints


def _endpoint_from_spec(
    name: str,
    spec: Mapping[str, Any],
    source: str,
    env: Mapping[str, str] | None = None,
    *,
    check_env: bool = True,
) -> Endpoint:
    where = f"endpoint '{name}' ({source})"
    unknown = set(spec) - _ENDPOINT_KEYS
    if unknown:
        raise ConfigError(
            f"{where}: unknown setting(s) {sorted(unknown)}; valid: {sorted(_ENDPOINT_KEYS)}"
        )
    protocol = spec.get("protocol", "databricks")
    if protocol not in PROTOCOLS:
        raise ConfigError(
            f"{where}: protocol must be one of {', '.join(PROTOCOLS)}, not {protocol!r}"
        )
    task = TASK_ALIASES.get(str(spec.get("task", "chat")))
    if task is None:
        raise ConfigError(f"{where}: task must be one of chat, completions, embeddings, custom")
    if PROTOCOLS[protocol].operation(task) is None:
        served = ", ".join(t.removeprefix("llm/v1/") for t in PROTOCOLS[protocol].operations)
        raise ConfigError(f"{where}: protocol {protocol} serves only {served}, not {task}")
    base_url = spec.get("base_url")
    if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
        raise ConfigError(f"{where}: base_url must be an http(s) URL")
    token = _token(spec, where, os.environ if env is None else env) if check_env else None
    try:
        return Endpoint(
            name=name,
            protocol=protocol,
            base_url=base_url.rstrip("/"),
            task=task,
            model=str(spec.get("model", name)),
            token=token,
            max_concurrency=_positive(spec, "max_concurrency", where, int),
            requests_per_minute=_positive(spec, "requests_per_minute", where, float),
            tokens_per_minute=_positive(spec, "tokens_per_minute", where, float),
            timeout_s=_positive(spec, "timeout_s", where, float) or 297.0,
            max_batch_size=_positive(spec, "max_batch_size", where, int) or 100,
            encoding_format=_encoding_format(spec, where),
            price=_price(name, spec, where),
            source=source,
        )
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from None


def _token(spec: Mapping[str, Any], where: str, env: Mapping[str, str]) -> Secret | None:
    if "token_env" in spec:
        var = str(spec["token_env"])
        if not env.get(var):
            raise ConfigError(
                f"{where}: token_env names {var}, which is not set in the environment"
            )
        return Secret(env[var])
    token = spec.get("token")
    return Secret(str(token)) if token else None


def _price(name: str, spec: Mapping[str, Any], where: str) -> Price | None:
    """The endpoint's price: both figures from the spec, or the documented default of a
    Databricks name (in any of its forms), or unknown."""
    given = [spec.get(k) for k in ("input_price_per_million", "output_price_per_million")]
    if given == [None, None]:
        return DEFAULT_PRICES.get(canonical_name(name))
    prices = [v for v in given if isinstance(v, int | float) and not isinstance(v, bool) and v >= 0]
    if len(prices) != 2:
        raise ConfigError(
            f"{where}: input_price_per_million and output_price_per_million go together, each "
            "a number of US dollars per million tokens (0 or more)"
        )
    return Price(float(prices[0]), float(prices[1]))


def _encoding_format(spec: Mapping[str, Any], where: str) -> str:
    value = spec.get("encoding_format", "base64")
    if value not in ("base64", "float"):
        raise ConfigError(
            f"{where}: encoding_format must be 'base64' (the default) or 'float' (for a server "
            f"that refuses base64 embeddings), not {value!r}"
        )
    return str(value)


def _positive(spec: Mapping[str, Any], key: str, where: str, kind: type) -> Any:
    value = spec.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"{where}: {key} must be a positive number")
    if kind is int and not float(value).is_integer():
        raise ConfigError(f"{where}: {key} must be a positive integer, not {value}")
    return kind(value)
