"""The built-in models' answers to protocol-neutral requests (the route's codec encodes them)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aiquery.protocols.common import (
    ChatRequest,
    ChatResult,
    CompletionRequest,
    CompletionResult,
    CustomRequest,
    CustomResult,
    EmbeddingRequest,
    EmbeddingResult,
    Usage,
    estimate_tokens,
)
from aiquery.serving import models
from aiquery.serving.config import EndpointConfig
from aiquery.serving.embedding import embed_rows

REASONING = "Answering the user's request."  # the summary reasoning models show first


@dataclass(frozen=True, slots=True)
class Answer:
    result: Any  # ChatResult | CompletionResult | EmbeddingResult | CustomResult
    input_tokens: int
    output_tokens: int
    items: int  # inputs answered (prompts, texts, records)


def input_tokens(request: Any) -> int:
    """Input tokens of a decoded request, counted as the built-in models count them."""
    if isinstance(request, ChatRequest):
        return sum(estimate_tokens(m.content) for m in request.messages)
    if isinstance(request, CompletionRequest):
        return sum(estimate_tokens(p) for p in request.prompts)
    if isinstance(request, EmbeddingRequest):
        return sum(estimate_tokens(t) for t in request.inputs)
    assert isinstance(request, CustomRequest)
    return estimate_tokens(json.dumps(list(request.records), default=str))


def answer(endpoint: EndpointConfig, request: Any, request_id: str) -> Answer:
    """Run the endpoint's built-in model on the request; ValueError for refused parameters."""
    tokens_in = input_tokens(request)
    if isinstance(request, ChatRequest):
        reply = models.chat_reply(
            request.messages, response_format=request.response_format, max_tokens=request.max_tokens
        )
        result = ChatResult(
            reply.text,
            reply.finish_reason,
            Usage(tokens_in, reply.output_tokens),
            endpoint.name,
            request_id,
            reasoning=REASONING if endpoint.content_blocks else None,
        )
        return Answer(result, tokens_in, reply.output_tokens, 1)
    if isinstance(request, CompletionRequest):
        max_tokens = request.params.get("max_tokens")
        replies = [models.complete(p, max_tokens=max_tokens) for p in request.prompts]
        tokens_out = sum(r.output_tokens for r in replies)
        completion = CompletionResult(
            tuple(r.text for r in replies),
            tuple(r.finish_reason for r in replies),
            Usage(tokens_in, tokens_out),
            endpoint.name,
            request_id,
        )
        return Answer(completion, tokens_in, tokens_out, len(replies))
    if isinstance(request, EmbeddingRequest):
        dim = endpoint.embedding_dim or 0
        vectors = tuple(embed_rows(request.inputs, dim))
        embedded = EmbeddingResult(
            vectors, Usage(tokens_in, 0), endpoint.name, request.encoding_format
        )
        return Answer(embedded, tokens_in, 0, len(vectors))
    assert isinstance(request, CustomRequest)
    predictions = tuple(models.custom_predict(r) for r in request.records)
    tokens_out = estimate_tokens(json.dumps(list(predictions), default=str))
    return Answer(CustomResult(predictions), tokens_in, tokens_out, len(predictions))
