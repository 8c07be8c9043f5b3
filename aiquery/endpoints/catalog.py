"""The Databricks-provided model endpoints aiquery knows by name, current and retired.

`CATALOG` holds the pay-per-token foundation-model endpoints Databricks documents (names,
task, embedding size). The emulator serves each of them from a built-in local model; the
endpoint registry routes them to a workspace when one is configured. `RETIRED` holds the
ones Databricks has retired, with the model it recommends instead: both the registry (at
analysis) and the emulator (as a 404) answer a retired name with `retirement_message`.

A model is named three ways, all accepted wherever a name is: the endpoint name
(`databricks-gpt-5-4`) and its two Unity AI Gateway forms (`system.ai.gpt-5-4`, and
`system.ai.databricks-gpt-5-4` as Databricks' "Query model services" page spells it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from aiquery.protocols.common import CHAT, EMBEDDINGS

GATEWAY_PREFIX = "system.ai."
DATABRICKS_PREFIX = "databricks-"


@dataclass(frozen=True, slots=True)
class CatalogModel:
    """A Databricks-provided endpoint: its name, task and what the model behind it is."""

    name: str
    task: str
    provider: str  # "openai" | "anthropic" | "google" | "meta" | "qwen"
    embedding_dim: int | None = None
    # gpt-oss endpoints answer chat with `content` as a list of blocks (reasoning + text).
    content_blocks: bool = False

    @property
    def gateway_name(self) -> str:
        """The Unity AI Gateway name, e.g. `system.ai.gpt-5-4` for `databricks-gpt-5-4`."""
        return GATEWAY_PREFIX + self.name.removeprefix(DATABRICKS_PREFIX)

    @property
    def is_gemini(self) -> bool:
        return self.name.startswith("databricks-gemini-")


def _chat(name: str, provider: str, *, blocks: bool = False) -> CatalogModel:
    return CatalogModel(name=name, task=CHAT, provider=provider, content_blocks=blocks)


CATALOG: tuple[CatalogModel, ...] = (
    _chat("databricks-gpt-5-4", "openai"),
    _chat("databricks-gpt-5", "openai"),
    _chat("databricks-gpt-5-mini", "openai"),
    _chat("databricks-gpt-5-nano", "openai"),
    _chat("databricks-gpt-oss-120b", "openai", blocks=True),
    _chat("databricks-gpt-oss-20b", "openai", blocks=True),
    _chat("databricks-claude-sonnet-4", "anthropic"),
    _chat("databricks-claude-sonnet-4-5", "anthropic"),
    _chat("databricks-claude-sonnet-4-6", "anthropic"),
    _chat("databricks-claude-opus-4-6", "anthropic"),
    _chat("databricks-claude-haiku-4-5", "anthropic"),
    _chat("databricks-gemini-2-5-pro", "google"),
    _chat("databricks-gemini-2-5-flash", "google"),
    _chat("databricks-meta-llama-3-3-70b-instruct", "meta"),
    _chat("databricks-meta-llama-3-1-8b-instruct", "meta"),
    _chat("databricks-llama-4-maverick", "meta"),
    _chat("databricks-gemma-3-12b", "google"),
    _chat("databricks-qwen3-next-80b-a3b-instruct", "qwen"),
    CatalogModel("databricks-gte-large-en", EMBEDDINGS, "databricks", embedding_dim=1024),
    CatalogModel("databricks-bge-large-en", EMBEDDINGS, "databricks", embedding_dim=1024),
)


@dataclass(frozen=True, slots=True)
class Price:
    """What an endpoint charges, in US dollars per million tokens."""

    input_per_million: float
    output_per_million: float

    def cost(self, input_tokens: int | None, output_tokens: int | None) -> float:
        return (
            (input_tokens or 0) * self.input_per_million
            + (output_tokens or 0) * self.output_per_million
        ) / 1_000_000


# Defaults for the Databricks names, USD per million (input, output) tokens. Indicative only:
# the hosted open models at the pay-per-token rates published for them, the proprietary ones
# at their providers' public list prices; a workspace bills in DBUs at its own contract's
# rate. Set `input_price_per_million` and `output_price_per_million` in the endpoints file
# for the figures your bill uses.
DEFAULT_PRICES: dict[str, Price] = {
    "databricks-gpt-5-4": Price(2.50, 15.00),
    "databricks-gpt-5": Price(1.25, 10.00),
    "databricks-gpt-5-mini": Price(0.25, 2.00),
    "databricks-gpt-5-nano": Price(0.05, 0.40),
    "databricks-gpt-oss-120b": Price(0.15, 0.60),
    "databricks-gpt-oss-20b": Price(0.07, 0.30),
    "databricks-claude-sonnet-4": Price(3.00, 15.00),
    "databricks-claude-sonnet-4-5": Price(3.00, 15.00),
    "databricks-claude-sonnet-4-6": Price(3.00, 15.00),
    "databricks-claude-opus-4-6": Price(5.00, 25.00),
    "databricks-claude-haiku-4-5": Price(1.00, 5.00),
    "databricks-gemini-2-5-pro": Price(1.25, 10.00),
    "databricks-gemini-2-5-flash": Price(0.30, 2.50),
    "databricks-meta-llama-3-3-70b-instruct": Price(0.50, 1.50),
    "databricks-meta-llama-3-1-8b-instruct": Price(0.15, 0.45),
    "databricks-llama-4-maverick": Price(0.50, 1.50),
    "databricks-gemma-3-12b": Price(0.15, 0.45),
    "databricks-qwen3-next-80b-a3b-instruct": Price(0.15, 1.20),
    "databricks-gte-large-en": Price(0.10, 0.0),
    "databricks-bge-large-en": Price(0.10, 0.0),
}
assert set(DEFAULT_PRICES) == {m.name for m in CATALOG}, "every catalog model has a price"


@dataclass(frozen=True, slots=True)
class RetiredModel:
    """A foundation-model endpoint Databricks no longer serves, and what it recommends instead."""

    name: str
    replacement: str


RETIRED: tuple[RetiredModel, ...] = (
    RetiredModel("databricks-dbrx-instruct", "databricks-meta-llama-3-3-70b-instruct"),
    RetiredModel("databricks-mixtral-8x7b-instruct", "databricks-meta-llama-3-3-70b-instruct"),
    RetiredModel("databricks-llama-2-70b-chat", "databricks-meta-llama-3-3-70b-instruct"),
    RetiredModel("databricks-meta-llama-3-70b-instruct", "databricks-meta-llama-3-3-70b-instruct"),
    RetiredModel(
        "databricks-meta-llama-3-1-70b-instruct", "databricks-meta-llama-3-3-70b-instruct"
    ),
    RetiredModel("databricks-mpt-7b-instruct", "databricks-meta-llama-3-1-8b-instruct"),
    RetiredModel("databricks-mpt-30b-instruct", "databricks-meta-llama-3-3-70b-instruct"),
)
_RETIRED = {m.name: m for m in RETIRED}


def canonical_name(name: str) -> str:
    """The endpoint name of a gateway name: `system.ai.gpt-5-4` and
    `system.ai.databricks-gpt-5-4` are both `databricks-gpt-5-4`; other names are themselves."""
    if name.startswith(GATEWAY_PREFIX):
        return DATABRICKS_PREFIX + name.removeprefix(GATEWAY_PREFIX).removeprefix(DATABRICKS_PREFIX)
    return name


def price_of(prices: Mapping[str, Price], name: str) -> Price | None:
    """`name`'s price in `prices` (keyed by endpoint name), by any of the name's forms."""
    return prices.get(name) or prices.get(canonical_name(name))


def retired(name: str) -> RetiredModel | None:
    """The retired model `name` (in any of its forms) names, if it names one."""
    return _RETIRED.get(name) or _RETIRED.get(canonical_name(name))


def retirement_message(name: str, model: RetiredModel) -> str:
    return (
        f"The model '{name}' has been retired and is no longer available. "
        f"Use '{model.replacement}' instead (Databricks' AI models maintenance policy lists "
        "retired models and their replacements)."
    )
