"""The Databricks-provided model endpoints aiquery knows by name.

These are the pay-per-token foundation-model endpoints Databricks documents (names,
task, embedding size). The emulator serves each of them from a built-in local model;
the endpoint registry routes them to a workspace when one is configured.
"""

from __future__ import annotations

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


def canonical_name(name: str) -> str:
    """Map a gateway name (`system.ai.gpt-5-4`) to its endpoint name (`databricks-gpt-5-4`)."""
    if name.startswith(GATEWAY_PREFIX):
        return DATABRICKS_PREFIX + name.removeprefix(GATEWAY_PREFIX)
    return name
