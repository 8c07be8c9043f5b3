"""The protocol table: every wire protocol aiquery speaks, one row each, read by client and emulator.

A *protocol* is one HTTP API dialect: the paths it serves per task, how a client sends its
token, the error bodies it answers with, and the four codecs of each task (the client
encodes a request and decodes a response; the emulator decodes the request and encodes the
response). The client looks an endpoint's protocol and task up here to build its URL,
headers and body (`aiquery.client.wire`); the emulator builds its routes, its accepted
credentials and its decoding from the same rows (`aiquery.serving.routes`). A path, an
`api_type` or an auth header is written once, here, so the two sides cannot drift apart.

    protocol            tasks                          path (below the endpoint's base URL)
    databricks          chat, completions, embeddings, /serving-endpoints/{model}/invocations
                        custom
    openai              chat, completions, embeddings  /chat/completions, /completions, /embeddings
    openai-responses    chat                           /responses
    anthropic           chat                           /v1/messages
    gemini              chat                           /{version}/models/{model}:generateContent

Every chat operation also streams its answer as server-sent events (`encode_stream`): when
the body says `"stream": true`, or, for Gemini, at `:streamGenerateContent`.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from aiquery.protocols import anthropic, custom, errors, gemini, responses
from aiquery.protocols import openai as oai
from aiquery.protocols.common import CHAT, COMPLETIONS, CUSTOM, EMBEDDINGS
from aiquery.protocols.streaming import StreamEncoder


@dataclass(frozen=True, slots=True)
class Auth:
    """How a token travels: in `header`, after `scheme` ("Bearer <token>") or alone."""

    header: str
    scheme: str | None = None

    def headers(self, token: str) -> dict[str, str]:
        """The header a client sends."""
        if self.scheme == "Basic":
            encoded = base64.b64encode(f"token:{token}".encode()).decode("ascii")
            return {self.header: f"Basic {encoded}"}
        return {self.header: f"{self.scheme} {token}" if self.scheme else token}

    def credential(self, headers: Mapping[str, str]) -> bytes | None:
        """The token a request carries this way, as the bytes the client sent; else None."""
        value = headers.get(self.header)
        if value is None:
            return None
        if self.scheme is None:
            return _raw(value)
        scheme, _, rest = value.partition(" ")
        if scheme.lower() != self.scheme.lower():
            return None
        if self.scheme != "Basic":
            return _raw(rest.strip())
        try:  # `curl -u token:<token>`: the token is the password
            return base64.b64decode(rest.strip(), validate=True).partition(b":")[2]
        except ValueError:
            return None


def _raw(value: str) -> bytes:
    # Non-UTF-8 header bytes arrive as surrogate escapes: compare the bytes as sent.
    return value.encode("utf-8", "surrogateescape")


BEARER = Auth("Authorization", "Bearer")
BASIC = Auth("Authorization", "Basic")


@dataclass(frozen=True, slots=True)
class Operation:
    """One task of one protocol: where it is served and its four codecs.

    Requests and results are the protocol-neutral shapes of `aiquery.protocols.common`.
    """

    task: str
    path: str  # below the base URL; `{model}` and the protocol's path values are filled in
    api_name: str  # the usage table's api_type is `<api prefix>/<api_name>`
    encode_request: Callable[[Any], dict[str, Any]]  # client: request → body
    decode_response: Callable[[Any, int], Any]  # client: (body, inputs sent) → result
    decode_request: Callable[[Any, str], Any]  # emulator: (body, model in the path) → request
    encode_response: Callable[[Any], dict[str, Any]]  # emulator: result → body
    # emulator: a streamed answer's events (chat only; None: the task does not stream)
    encode_stream: StreamEncoder | None = None
    # Where the answer is streamed whatever the body says (Gemini's `:streamGenerateContent`);
    # None: at `path`, when the body asks (`"stream": true`).
    stream_path: str | None = None
    stream_api_name: str | None = None


@dataclass(frozen=True, slots=True)
class Protocol:
    name: str
    api_prefix: str  # of the usage table's api_type, for a client calling its base URL
    auth: tuple[Auth, ...]  # accepted credentials; a client sends the first
    error_body: Callable[[int, str], dict[str, Any]]  # the body of an error answer
    operations: Mapping[str, Operation]  # by task
    headers: Mapping[str, str] = field(default_factory=dict)  # sent with every request
    path_values: Mapping[str, str] = field(default_factory=dict)  # e.g. the API version

    def operation(self, task: str) -> Operation | None:
        return self.operations.get(task)

    def url(self, base_url: str, operation: Operation, model: str) -> str:
        return base_url + operation.path.format(model=model, **self.path_values)

    def api_type(
        self,
        operation: Operation,
        *,
        prefix: str | None = None,
        values: Mapping[str, str] | None = None,
        streamed: bool = False,
    ) -> str:
        """`<api prefix>/<api name>`: the usage table's api_type (a route's name in the
        emulator's log, which serves the protocol under other prefixes and values too;
        `streamed`: of the operation's stream path)."""
        api_name = operation.stream_api_name if streamed else operation.api_name
        assert api_name is not None, f"{operation.task} has no stream path"
        name = api_name.format(**{**self.path_values, **(values or {})})
        return f"{self.api_prefix if prefix is None else prefix}/{name}"


def _body_only(codec: Callable[[Any], Any]) -> Callable[[Any, Any], Any]:
    """A one-argument codec in a row's two-argument slot (the count or the model unused)."""
    return lambda body, _: codec(body)


def _op(
    task: str,
    path: str,
    api_name: str,
    encode_request: Callable[[Any], dict[str, Any]],
    decode_response: Callable[[Any, int], Any],
    decode_request: Callable[[Any, str], Any],
    encode_response: Callable[[Any], dict[str, Any]],
    encode_stream: StreamEncoder | None = None,
    stream_at: tuple[str, str] | None = None,  # (stream_path, stream_api_name)
) -> tuple[str, Operation]:
    stream_path, stream_api_name = stream_at or (None, None)
    return task, Operation(
        task,
        path,
        api_name,
        encode_request,
        decode_response,
        decode_request,
        encode_response,
        encode_stream,
        stream_path,
        stream_api_name,
    )


def _openai_operations(*, with_model: bool, invocations: str | None) -> dict[str, Operation]:
    """OpenAI's bodies: at their own paths (openai), or all at the invocations path (databricks)."""

    def path(own: str) -> tuple[str, str]:
        return (invocations, "invocations") if invocations else (f"/{own}", own)

    return dict(
        [
            _op(
                CHAT,
                *path("chat/completions"),
                partial(oai.encode_chat_request, with_model=with_model),
                _body_only(oai.decode_chat_response),
                _body_only(oai.decode_chat_request),
                oai.encode_chat_response,
                oai.encode_chat_stream,
            ),
            _op(
                COMPLETIONS,
                *path("completions"),
                partial(oai.encode_completion_request, with_model=with_model),
                _body_only(oai.decode_completion_response),
                _body_only(oai.decode_completion_request),
                oai.encode_completion_response,
            ),
            _op(
                EMBEDDINGS,
                *path("embeddings"),
                partial(oai.encode_embedding_request, with_model=with_model),
                oai.decode_embedding_response,
                _body_only(oai.decode_embedding_request),
                oai.encode_embedding_response,
            ),
        ]
    )


_INVOCATIONS = "/serving-endpoints/{model}/invocations"

PROTOCOLS: Mapping[str, Protocol] = {
    p.name: p
    for p in (
        Protocol(
            "databricks",
            "serving-endpoints",
            (BEARER, BASIC),
            errors.databricks_error,
            {
                **_openai_operations(with_model=False, invocations=_INVOCATIONS),
                CUSTOM: _op(
                    CUSTOM,
                    _INVOCATIONS,
                    "invocations",
                    custom.encode_request,
                    custom.decode_response,
                    _body_only(custom.decode_request),
                    custom.encode_response,
                )[1],
            },
        ),
        Protocol(
            "openai",
            "openai/v1",
            (BEARER,),
            errors.openai_error,
            _openai_operations(with_model=True, invocations=None),
        ),
        Protocol(
            "openai-responses",
            "openai/v1",
            (BEARER,),
            errors.openai_error,
            dict(
                [
                    _op(
                        CHAT,
                        "/responses",
                        "responses",
                        responses.encode_request,
                        _body_only(responses.decode_response),
                        _body_only(responses.decode_request),
                        responses.encode_response,
                        responses.encode_stream,
                    )
                ]
            ),
        ),
        Protocol(
            "anthropic",
            "anthropic/v1",
            (Auth("x-api-key"),),
            errors.anthropic_error,
            dict(
                [
                    _op(
                        CHAT,
                        "/v1/messages",
                        "messages",
                        anthropic.encode_request,
                        _body_only(anthropic.decode_response),
                        _body_only(anthropic.decode_request),
                        anthropic.encode_response,
                        anthropic.encode_stream,
                    )
                ]
            ),
            headers={"anthropic-version": "2023-06-01"},
        ),
        Protocol(
            "gemini",
            "gemini",
            (Auth("x-goog-api-key"),),
            errors.gemini_error,
            dict(
                [
                    _op(
                        CHAT,
                        "/{version}/models/{model}:generateContent",
                        "{version}/generateContent",
                        gemini.encode_request,
                        _body_only(gemini.decode_response),
                        gemini.decode_request,
                        gemini.encode_response,
                        gemini.encode_stream,
                        (
                            "/{version}/models/{model}:streamGenerateContent",
                            "{version}/streamGenerateContent",
                        ),
                    )
                ]
            ),
            path_values={"version": "v1beta"},
        ),
    )
}

# Every way a token may arrive, over all protocols (the emulator accepts each on every route).
CREDENTIALS: tuple[Auth, ...] = tuple(
    dict.fromkeys(auth for p in PROTOCOLS.values() for auth in p.auth)
)


def protocol(name: str) -> Protocol:
    """The protocol called `name`; KeyError names the valid ones."""
    found = PROTOCOLS.get(name)
    if found is None:
        raise KeyError(f"unknown protocol {name!r}; one of {', '.join(PROTOCOLS)}")
    return found
