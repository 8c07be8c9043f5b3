"""The built-in models' answers, encoded in the shape of the route that asked.

`work` is what `app.decode` produced: `(kind, request)` with a protocol-neutral request.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aiquery.protocols import anthropic, gemini, responses, serving
from aiquery.protocols import openai as oai
from aiquery.protocols.common import (
    ChatRequest,
    ChatResult,
    CompletionRequest,
    CompletionResult,
    EmbeddingRequest,
    EmbeddingResult,
    Usage,
    estimate_tokens,
)
from aiquery.serving import models
from aiquery.serving.config import EndpointConfig

_CHAT_ENCODERS = {
    "responses": responses.encode_response,
    "anthropic": anthropic.encode_response,
    "gemini": gemini.encode_response,
}


@dataclass(frozen=True, slots=True)
class Answer:
    body: dict[str, Any]
    input_tokens: int
    output_tokens: int
    items: int


def input_tokens(work: tuple[str, Any]) -> int:
    """Input tokens of a decoded request, counted as the built-in models count them."""
    _, request = work
    if isinstance(request, ChatRequest):
        return sum(estimate_tokens(m.content) for m in request.messages)
    if isinstance(request, CompletionRequest):
        return sum(estimate_tokens(p) for p in request.prompts)
    if isinstance(request, EmbeddingRequest):
        return sum(estimate_tokens(t) for t in request.inputs)
    return estimate_tokens(json.dumps(request, default=str))


def answer(
    route_kind: str, endpoint: EndpointConfig, work: tuple[str, Any], request_id: str
) -> Answer:
    """Run the endpoint's built-in model on the request; ValueError for refused parameters."""
    _, request = work
    tokens_in = input_tokens(work)
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
        )
        encode = _CHAT_ENCODERS.get(route_kind)
        if encode is not None:
            body = encode(result)
        else:
            body = oai.encode_chat_response(
                result,
                content_blocks=endpoint.content_blocks,
                reasoning="Answering the user's request.",
            )
        return Answer(body, tokens_in, reply.output_tokens, 1)
    if isinstance(request, CompletionRequest):
        max_tokens = request.params.get("max_tokens")
        replies = [models.complete(p, max_tokens=max_tokens) for p in request.prompts]
        tokens_out = sum(r.output_tokens for r in replies)
        completion = CompletionResult(
            tuple(r.text for r in replies),
            tuple(r.finish_reason for r in replies),
            Usage(tokens_in, tokens_out),
            endpoint.name,
        )
        return Answer(
            oai.encode_completion_response(completion, request_id=request_id),
            tokens_in,
            tokens_out,
            len(replies),
        )
    if isinstance(request, EmbeddingRequest):
        dim = endpoint.embedding_dim or 0
        vectors = tuple(tuple(models.embed(t, dim)) for t in request.inputs)
        embedded = EmbeddingResult(vectors, Usage(tokens_in, 0), endpoint.name)
        body = oai.encode_embedding_response(embedded, encoding_format=request.encoding_format)
        return Answer(body, tokens_in, 0, len(vectors))
    records = request
    predictions = [models.custom_predict(r) for r in records]
    tokens_out = estimate_tokens(json.dumps(predictions, default=str))
    return Answer(serving.encode_response(predictions), tokens_in, tokens_out, len(records))
