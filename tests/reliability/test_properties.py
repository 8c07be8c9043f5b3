"""Properties of the SQL rewriter's scanner and of every codec pair, on generated input.

A. SQL (`aiquery.spark.sqlscan`, and `aiquery.spark.sql.rewrite` where it needs no session):
   statements are generated piece by piece, so the test knows exactly where each real
   `ai_query` call sits, while string literals, quoted identifiers and comments full of
   look-alike text surround it.
B. Codecs (`aiquery.client.wire` on the client, `aiquery.serving` decode/answer on the
   emulator, `aiquery.protocols` in between): requests and answers survive the trip through
   UTF-8 bytes in both directions, and a garbled body is only ever the documented error —
   the client retries ProtocolError/ValueError as a malformed body, and anything else would
   kill a Spark task; the emulator turns ProtocolError into a 400.

`tests/unit/test_sqlscan.py` and `tests/unit/test_protocols.py` hold the example-based tests
and the simpler round trips; these properties go further rather than repeat them.
"""

from __future__ import annotations

import base64
import copy
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from aiquery.client.wire import Wire, wire_for
from aiquery.endpoints import Endpoint
from aiquery.protocols import anthropic, gemini, responses, serving
from aiquery.protocols import openai as oai
from aiquery.protocols.common import (
    CHAT,
    COMPLETIONS,
    CUSTOM,
    EMBEDDINGS,
    ChatRequest,
    ChatResult,
    CompletionRequest,
    CompletionResult,
    EmbeddingRequest,
    EmbeddingResult,
    Message,
    ProtocolError,
    Usage,
)
from aiquery.protocols.errors import read_error
from aiquery.serving import models
from aiquery.serving.answers import answer
from aiquery.serving.app import decode
from aiquery.serving.config import EndpointConfig
from aiquery.spark import sql as aisql
from aiquery.spark.sqlscan import (
    CallSite,
    SqlScanError,
    bool_literal,
    find_calls,
    find_identifier_path,
    position,
    replace_spans,
    split_statements,
    string_literal,
)

AI = ["ai_query"]
USAGE = ("system", "ai_gateway", "usage")


# === A. SQL ==================================================================================

# Text the lexer must not be fooled by, mixed with any other character: the raw material of
# literal, identifier and comment bodies.
_TRAPS = [
    "ai_query(",
    "AI_QUERY (",
    "ai_query('e', x)",
    "'",
    "''",
    '"',
    "`",
    "\\",
    "\\'",
    "--",
    "/*",
    "*/",
    "/*+",
    "\n",
    "\r",
    "(",
    ")",
    ",",
    ";",
    "=>",
    "::",
    "system.ai_gateway.usage",
]
noise = st.lists(st.one_of(st.sampled_from(_TRAPS), st.characters(codec="utf-8")), max_size=8).map(
    "".join
)


def _escaped(text: str, quote: str, doubled: bool) -> str:
    body = text.replace("\\", "\\\\").replace(quote, quote * 2 if doubled else "\\" + quote)
    return quote + body + quote


# Each way of writing a text as a Spark string literal.
QUOTINGS: list[Callable[[str], str]] = [
    lambda t: _escaped(t, "'", doubled=False),
    lambda t: _escaped(t, "'", doubled=True),
    lambda t: _escaped(t, '"', doubled=False),
    lambda t: _escaped(t, '"', doubled=True),
    lambda t: "r'" + t.replace("'", "") + "'",
    lambda t: 'R"' + t.replace('"', "") + '"',
]


def _comment_safe(text: str) -> str:
    while "/*" in text or "*/" in text:
        text = text.replace("/*", "/ *").replace("*/", "* /")
    return text


def _one_line(text: str) -> str:
    # A backslash just before the newline would continue the comment onto the next line.
    return text.replace("\r", " ").replace("\n", " ").rstrip("\\")


string_literals = st.tuples(st.sampled_from(QUOTINGS), noise).map(lambda q: q[0](q[1]))
quoted_identifiers = noise.map(lambda t: "`" + t.replace("`", "``") + "`")
comments = st.one_of(
    noise.map(lambda t: "--" + _one_line(t) + "\n"),
    st.tuples(noise, noise).map(lambda p: f"--{_one_line(p[0])}\\\n{_one_line(p[1])}\n"),
    noise.map(lambda t: "/* " + _comment_safe(t) + " */"),
    noise.map(lambda t: "/*+ " + _comment_safe(t) + " */"),
    st.tuples(noise, noise).map(
        lambda p: f"/* {_comment_safe(p[0])} /* {_comment_safe(p[1])} */ */"
    ),
)
separators = st.one_of(st.sampled_from([" ", "\n", "\t", "\r\n  "]), comments.map(" {} ".format))


@st.composite
def mixed_case(draw: st.DrawFn, word: str = "ai_query") -> str:
    return "".join(draw(st.sampled_from([c.lower(), c.upper()])) for c in word)


word_chars = st.from_regex(r"[A-Za-z0-9_]{1,3}", fullmatch=True)


@st.composite
def lookalikes(draw: st.DrawFn, column: bool = True) -> str:
    """Text that names ai_query but is no call of it; `column`: may also be a bare column."""
    name = draw(mixed_case())
    args = draw(st.sampled_from(["(1)", "('e', x)", "()"]))
    forms = [
        draw(word_chars) + name + args,  # my_ai_query(...), 2ai_query(...)
        name + draw(word_chars) + args,  # ai_query_x(...)
        "x." + name + args,
        "x . " + name + " " + args,
        "`" + name + "`" + args,
        "t." + name,
    ]
    if column:  # a column named ai_query, followed by anything but "("
        forms += [name + " AS c", name + ","]
    return draw(st.sampled_from(forms))


@dataclass
class Arg:
    name: str | None
    start: int  # relative to the call's start
    text: str
    nested: list[Call]  # outermost calls inside `text`, relative to its start


@dataclass
class Call:
    name: str
    start: int  # relative to the enclosing text
    text: str
    args: list[Arg]

    def shifted(self, by: int) -> Call:
        return Call(self.name, self.start + by, self.text, self.args)


@dataclass
class Sql:
    """Generated SQL and the outermost ai_query calls in it, by offset."""

    text: str = ""
    calls: list[Call] = field(default_factory=list)
    gaps: list[str] = field(default_factory=lambda: [""])  # the text around and between calls

    def add(self, other: Sql | str) -> Sql:
        if isinstance(other, str):
            other = Sql(other, [], [other])
        calls = self.calls + [c.shifted(len(self.text)) for c in other.calls]
        gaps = [*self.gaps[:-1], self.gaps[-1] + other.gaps[0], *other.gaps[1:]]
        return Sql(self.text + other.text, calls, gaps)


def _call_sql(call: Call) -> Sql:
    return Sql(call.text, [call], ["", ""])


LEAVES = [
    "p",
    "r'\\'",
    "42",
    "0.5",
    "true",
    "NULL",
    "x::map<string, array<int>>",
    "a <=> b",
    "c==>d",
    "named_struct('max_tokens', 10, 'temperature', 0.5)",
]
FUNCTIONS = ["concat", "upper", "coalesce", "my_ai_query", "ai_query_x", "`ai_query`"]


@st.composite
def expressions(draw: st.DrawFn, nesting: int) -> Sql:
    """An argument expression: no top-level comma or `=>`, no comment at either edge.

    `nesting` bounds how deep calls and parentheses go.
    """
    choice = draw(st.integers(0, 6 if nesting else 2))
    if choice <= 2:
        leaf = st.one_of(
            st.sampled_from(LEAVES), string_literals, quoted_identifiers, lookalikes(column=False)
        )
        return Sql().add(draw(leaf))
    if choice == 3:  # nested ai_query call
        return _call_sql(draw(calls(nesting - 1)))
    if choice == 4:  # f(a, b, ...)
        out = Sql().add(draw(st.sampled_from(FUNCTIONS)) + draw(st.sampled_from(["(", " ("])))
        for i in range(draw(st.integers(0, 3))):
            if i:
                out = out.add(draw(st.sampled_from([",", ", ", " /* , */ , "])))
            out = out.add(draw(expressions(nesting - 1)))
        return out.add(")")
    if choice == 5:  # (a)
        return Sql().add("(").add(draw(expressions(nesting - 1))).add(")")
    operator = draw(st.sampled_from([" || ", " + ", " /* c */ || ", " -- c\n || "]))
    return draw(expressions(nesting - 1)).add(operator).add(draw(expressions(nesting - 1)))


arg_names = st.one_of(
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True).map(lambda n: (n, n)),
    noise.map(lambda t: (t, "`" + t.replace("`", "``") + "`")),
)
arrows = st.sampled_from(["=>", " => ", "=> ", " /* => */ =>\n"])
arg_edges = st.one_of(st.sampled_from(["", " ", "\n  "]), comments.map(" {} ".format))


@st.composite
def calls(draw: st.DrawFn, nesting: int) -> Call:
    name = draw(mixed_case())
    text = name + draw(st.sampled_from(["", " ", "\n"]) | separators) + "("
    args: list[Arg] = []
    count = draw(st.integers(0, 4))
    for i in range(count):
        if i:
            text += ","
        text += draw(arg_edges)
        named = draw(st.none() | arg_names)
        if named is not None:
            text += named[1] + draw(arrows)
        expr = draw(expressions(nesting))
        args.append(Arg(named[0] if named else None, len(text), expr.text, expr.calls))
        text += expr.text + draw(arg_edges)
    if not count:
        text += draw(arg_edges)
    return Call(name, 0, text + ")", args)


PLAIN = ["FROM t", "WHERE a = 1 AND", "a + 1,", "(1, (2))", "concat('a', b)", "*", "t.x,"]


@st.composite
def statements(draw: st.DrawFn, with_calls: bool = True, nesting: int = 1) -> Sql:
    pieces: list[st.SearchStrategy[Any]] = [
        st.sampled_from(PLAIN),
        string_literals,
        quoted_identifiers,
        comments,
        lookalikes(),
    ]
    if with_calls:
        pieces.append(calls(nesting).map(_call_sql))
    out = Sql().add("SELECT")
    for piece in draw(st.lists(st.one_of(pieces), max_size=6)):
        out = out.add(draw(separators)).add(piece)
    return out


def _shape(calls: Sequence[CallSite], text: str) -> list[Any]:
    """What find_calls reports, recursively: arguments rescanned alone, as `rewrite` does."""
    return [
        (
            c.name,
            c.start,
            text[c.start : c.end],
            [
                (a.name, a.start - c.start, a.text, _shape(find_calls(a.text, AI), a.text))
                for a in c.args
            ],
        )
        for c in calls
    ]


def _expected_shape(calls: Sequence[Call]) -> list[Any]:
    return [
        (
            c.name,
            c.start,
            c.text,
            [(a.name, a.start, a.text, _expected_shape(a.nested)) for a in c.args],
        )
        for c in calls
    ]


SQL_SETTINGS = settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@SQL_SETTINGS
@given(statements())
def test_exactly_the_real_call_sites_are_found_with_their_spans_and_arguments(sql: Sql) -> None:
    found = find_calls(sql.text, AI)
    assert [(c.name, c.start, sql.text[c.start : c.end]) for c in found] == [
        (c.name, c.start, c.text) for c in sql.calls
    ]
    for call, expected in zip(found, sql.calls, strict=True):
        assert [(a.name, a.start - call.start, a.text) for a in call.args] == [
            (a.name, a.start, a.text) for a in expected.args
        ]
        assert all(sql.text[a.start : a.end] == a.text for a in call.args)


@SQL_SETTINGS
@given(statements(nesting=3))
def test_an_argument_rescanned_alone_finds_the_calls_nested_in_it(sql: Sql) -> None:
    # `rewrite` recurses on the request argument's text, so that text must lex on its own
    # exactly as it did inside the statement.
    assert _shape(find_calls(sql.text, AI), sql.text) == _expected_shape(sql.calls)


@SQL_SETTINGS
@given(statements(), st.data())
def test_replacing_call_sites_preserves_every_other_character(
    sql: Sql, data: st.DataObject
) -> None:
    found = find_calls(sql.text, AI)
    new = [data.draw(noise, label=f"replacement {i}") for i in range(len(found))]
    rewritten = replace_spans(
        sql.text, [(c.start, c.end, t) for c, t in zip(found, new, strict=True)]
    )
    assert rewritten == "".join(g + t for g, t in zip(sql.gaps, [*new, ""], strict=True))
    same = [(c.start, c.end, sql.text[c.start : c.end]) for c in found]
    assert replace_spans(sql.text, same) == sql.text


class _NoSpark:
    """A session that fails the test if `rewrite` touches it."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"rewrite used spark.{name} for a statement without ai_query")


@SQL_SETTINGS
@given(statements(with_calls=False))
@example(
    Sql().add("SELECT 'ai_query(1)', `ai_query`(2), my_ai_query(3), a.system.ai_gateway.usage")
)
def test_statement_without_call_sites_is_returned_unchanged_without_touching_spark(
    sql: Sql,
) -> None:
    assert find_calls(sql.text, AI) == []
    assert find_identifier_path(sql.text, USAGE) == []
    assert aisql.rewrite(_NoSpark(), sql.text) is sql.text  # type: ignore[arg-type]


@SQL_SETTINGS
@given(st.lists(statements(), min_size=1, max_size=3), separators)
def test_splitting_a_script_keeps_each_statement_and_its_call_sites(
    parts: list[Sql], gap: str
) -> None:
    script = (";" + gap).join(p.text for p in parts) + ";"
    split = split_statements(script)
    # A comment after a semicolon opens the next statement.
    assert split == [(gap * (i > 0) + p.text).strip() for i, p in enumerate(parts)]
    assert [[s[c.start : c.end] for c in find_calls(s, AI)] for s in split] == [
        [c.text for c in p.calls] for p in parts
    ]


_SCAN_PROBLEMS = {
    "unterminated string literal": ("'", '"', "r'", 'r"', "R'", 'R"'),
    "unterminated comment": ("/*",),
    "unterminated quoted identifier": ("`",),
    "unmatched closing parenthesis": (")",),
    "unclosed parenthesis": ("(",),
    "empty argument": (",", ")"),
}
sql_soup = st.lists(
    st.one_of(
        st.sampled_from([*_TRAPS, "ai_query", "r'", 'R"', "`", " ", "x"]),
        st.characters(),
    ),
    max_size=40,
).map("".join)


def _check_scan_error(error: SqlScanError, text: str) -> None:
    problem, _, where = str(error).partition(" at ")
    assert problem in _SCAN_PROBLEMS, str(error)
    assert 0 <= error.position < len(text)
    assert (error.line, error.column) == position(text, error.position)
    assert where == f"line {error.line}, column {error.column}"
    assert text[error.position :].startswith(_SCAN_PROBLEMS[problem])


@settings(max_examples=400, deadline=None)
@given(sql_soup)
@example("ai_query(")
@example("ai_query(a,)")
@example("--\\")
@example("'\\")
@example("x::map<")
def test_scanner_raises_only_its_documented_error_on_any_text(text: str) -> None:
    for scan in (
        lambda: find_calls(text, AI),
        lambda: split_statements(text),
        lambda: find_identifier_path(text, USAGE),
    ):
        try:
            scan()
        except SqlScanError as error:
            _check_scan_error(error, text)
    assert string_literal(text) is None or isinstance(string_literal(text), str)
    assert bool_literal(text) in (None, True, False)


@SQL_SETTINGS
@given(
    statements(),
    st.sampled_from(
        [
            ("'", "unterminated string literal"),
            ('"', "unterminated string literal"),
            ("r'", "unterminated string literal"),
            ("/*", "unterminated comment"),
            ("`", "unterminated quoted identifier"),
        ]
    ),
    noise,
)
def test_unterminated_literal_or_comment_is_reported_where_it_opens(
    sql: Sql, opener: tuple[str, str], tail: str
) -> None:
    start, problem = opener
    if start in ("'", '"'):
        tail = tail.replace("\\", "\\\\").replace(start, "\\" + start)
    elif start == "`":
        tail = tail.replace("`", "")
    elif start == "r'":
        tail = tail.replace("'", "")
    else:
        tail = tail.replace("*/", "* /")
    text = sql.text + " " + start + tail
    for scan in (lambda: find_calls(text, AI), lambda: split_statements(text)):
        with pytest.raises(SqlScanError) as caught:
            scan()
        assert str(caught.value).startswith(problem + " at ")
        assert caught.value.position == len(sql.text) + 1


@SQL_SETTINGS
@given(statements(), st.sampled_from([")", "("]), st.sampled_from(["", " x", " ai_query"]))
def test_unbalanced_parenthesis_is_reported_where_it_is(sql: Sql, paren: str, tail: str) -> None:
    text = sql.text + " " + paren + tail
    with pytest.raises(SqlScanError) as caught:
        find_calls(text, AI)
    problem = "unmatched closing parenthesis" if paren == ")" else "unclosed parenthesis"
    assert str(caught.value).startswith(problem + " at ")
    assert caught.value.position == len(sql.text) + 1


_NAMED_ESCAPES = {"\n": "n", "\t": "t", "\r": "r", "\b": "b", "\x1a": "Z"}


def _escape_char(c: str, style: int, quote: str) -> str:
    """`c` written inside a `quote`d literal in one of Spark's escape forms (`style` 0-5)."""
    code = ord(c)
    if style == 1:
        if code > 0xFFFF:  # as a UTF-16 pair, which Spark joins into one character
            high, low = divmod(code - 0x10000, 0x400)
            return f"\\u{0xD800 + high:04X}\\u{0xDC00 + low:04x}"
        return f"\\u{code:04x}"
    if style == 2:
        return f"\\U{code:08X}"
    if style == 3 and code < 0o200:
        return f"\\{code:03o}"
    if c == quote:
        return quote * 2 if style == 4 else "\\" + quote
    if c == "\\":
        return "\\\\"
    if style == 4 and c in _NAMED_ESCAPES:
        return "\\" + _NAMED_ESCAPES[c]
    if style == 5 and c.isascii() and c.isalpha() and c not in "bnrtZuU":
        return "\\" + c  # an unknown escape is the character itself
    return c


def _literal(text: str, quote: str, styles: list[int]) -> tuple[str, str]:
    """`text` as a literal quoted with `quote` ("'", '"', "r'" or 'R"'), and its value."""
    if len(quote) == 2:  # raw: taken as written, so it cannot hold its own quote
        kept = text.replace(quote[1], "")
        return quote + kept + quote[1], kept
    body = "".join(_escape_char(c, style, quote) for c, style in zip(text, styles, strict=False))
    return quote + body + quote, text


literal_chars = st.one_of(
    st.sampled_from(list("'\"\\\n\t\r\b\x1a%_0178uUnN")), st.characters(codec="utf-8")
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.text(literal_chars, max_size=12),
            st.sampled_from(["'", '"', "r'", 'R"']),
            st.lists(st.integers(0, 5), min_size=12, max_size=12),
        ),
        min_size=1,
        max_size=3,
    ),
    st.lists(separators, min_size=4, max_size=4),
)
@example([("it's", "'", [4] * 12)], [""] * 4)  # a doubled quote is one quote
@example([("a\\", "r'", [0] * 12)], [""] * 4)  # r'a\' ends at its second quote
def test_string_literal_decodes_any_quoting_escaping_and_concatenation(
    parts: list[tuple[str, str, list[int]]], gaps: list[str]
) -> None:
    literals = [_literal(text, quote, styles) for text, quote, styles in parts]
    sql = gaps[0] + "".join(lit + gap for (lit, _), gap in zip(literals, gaps[1:], strict=False))
    assert string_literal(sql) == "".join(value for _, value in literals)


# === B. Codecs ===============================================================================

# Text that is hard to carry: emoji (with joiners and skin tones), combining marks,
# right-to-left text and overrides, NUL and other controls, separators JSON escapes.
SPECIAL_TEXTS = [
    "",
    " ",
    "\x00",
    "a\x00b\x01\x1f\x7f\x9f",
    "👩‍👩‍👧‍👦 👍🏽 🇫🇷",
    "e\u0301\u0327 a\u20dd Z\u0336\u0336",
    "שלום עולם. مرحبا بالعالم!",
    "\u202eevil\u202c \u200f\u200e\u2066x\u2069",
    "\ufeff\u2028\u2029\ufffe\uffff",
    '"quoted" \\back\\slash\\ /slash</script>',
    "\U0010ffff\U000e0001",
]
unicode_text = st.one_of(
    st.sampled_from(SPECIAL_TEXTS),
    st.text(st.characters(codec="utf-8"), max_size=60),
    st.lists(st.sampled_from(SPECIAL_TEXTS), max_size=6).map("".join),
)
long_text = st.tuples(unicode_text, st.integers(1, 5000)).map(lambda p: (p[0] or "é") * p[1])
prompts = st.one_of(unicode_text, unicode_text, long_text)

# (client protocol, task, emulator route kind): every route the client can call.
ROUTES = [
    ("databricks", CHAT, "invocations"),
    ("databricks", COMPLETIONS, "invocations"),
    ("databricks", EMBEDDINGS, "invocations"),
    ("databricks", CUSTOM, "invocations"),
    ("openai", CHAT, "chat"),
    ("openai", COMPLETIONS, "completions"),
    ("openai", EMBEDDINGS, "embeddings"),
    ("anthropic", CHAT, "anthropic"),
    ("gemini", CHAT, "gemini"),
]
DIM = 16


def _wire(protocol: str, task: str) -> Wire:
    endpoint = Endpoint(
        name="e", protocol=protocol, base_url="http://emulator", task=task, model="e"
    )
    return wire_for(endpoint, {})


def _emulated(task: str, protocol: str, content_blocks: bool = False) -> EndpointConfig:
    provider = protocol if protocol in ("anthropic", "gemini") else "databricks"
    dim = DIM if task == EMBEDDINGS else None
    return EndpointConfig("e", task, provider, dim, content_blocks)


def _client_bytes(body: Any) -> bytes:
    """The request payload as `EndpointClient.call` serialises it."""
    return json.dumps(body, ensure_ascii=False).encode()


def _server_bytes(body: Any) -> bytes:
    """A response body as the emulator sends it (compact JSON, UTF-8 text)."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _request_texts(request: Any) -> list[Any]:
    if isinstance(request, ChatRequest):
        return [m.content for m in request.messages if m.role == "user"]
    if isinstance(request, CompletionRequest):
        return list(request.prompts)
    if isinstance(request, EmbeddingRequest):
        return list(request.inputs)
    return list(request)  # custom records


def _model_outputs(request: Any) -> list[Any]:
    """What the emulator's built-in models answer for a decoded request."""
    if isinstance(request, ChatRequest):
        reply = models.chat_reply(
            request.messages, response_format=request.response_format, max_tokens=request.max_tokens
        )
        return [reply.text]
    if isinstance(request, CompletionRequest):
        return [models.complete(p).text for p in request.prompts]
    if isinstance(request, EmbeddingRequest):
        return [tuple(models.embed(t, DIM)) for t in request.inputs]
    return [models.custom_predict(r) for r in request]


records = st.builds(
    lambda text, extra: {"text": text, **extra},
    prompts,
    st.dictionaries(st.sampled_from(["n", "weight"]), st.integers(-(10**6), 10**6), max_size=2),
)


@st.composite
def route_inputs(draw: st.DrawFn) -> tuple[tuple[str, str, str], list[Any]]:
    route = draw(st.sampled_from(ROUTES))
    _, task, _ = route
    if task == CUSTOM:
        return route, draw(st.lists(records, min_size=1, max_size=5))
    if task == EMBEDDINGS:
        return route, draw(st.lists(prompts, min_size=1, max_size=5))
    return route, [draw(prompts)]


@settings(max_examples=150, deadline=None)
@given(route_inputs(), st.booleans())
def test_inputs_reach_the_emulator_intact_and_its_answers_reach_the_client_intact(
    case: tuple[tuple[str, str, str], list[Any]], content_blocks: bool
) -> None:
    (protocol, task, kind), inputs = case
    wire = _wire(protocol, task)
    config = _emulated(task, protocol, content_blocks)

    work = decode(kind, config, json.loads(_client_bytes(wire.encode(inputs))))
    _, request = work
    assert _request_texts(request) == inputs  # in order, every character intact

    answered = answer(kind, config, work, "req-1")
    outputs, usage = wire.decode(json.loads(_server_bytes(answered.body)), inputs)

    assert outputs == _model_outputs(request)
    assert len(outputs) == len(inputs)
    if task == EMBEDDINGS:
        assert all(len(v) == DIM and all(math.isfinite(x) for x in v) for v in outputs)
    assert usage.input_tokens >= 0 and usage.output_tokens >= 0
    if task == CUSTOM:
        assert usage == Usage(0, 0, estimated=True)
    else:
        output_tokens = 0 if task == EMBEDDINGS else answered.output_tokens
        assert usage == Usage(answered.input_tokens, output_tokens)


@settings(max_examples=60, deadline=None)
@given(prompts)
def test_responses_api_request_and_answer_survive_the_emulator(prompt: str) -> None:
    # The client has no Responses wire; SDK users speak it to the emulator's gateway route.
    body = responses.encode_request(ChatRequest((Message("user", prompt),), "e", {}))
    config = _emulated(CHAT, "openai")
    work = decode("responses", config, json.loads(_client_bytes(body)))
    assert _request_texts(work[1]) == [prompt]
    answered = answer("responses", config, work, "req-1")
    result = responses.decode_response(json.loads(_server_bytes(answered.body)))
    assert result.text == _model_outputs(work[1])[0]
    assert result.usage == Usage(answered.input_tokens, answered.output_tokens)


# Each chat flavour's emulator encoder, and how a client decodes it.
CHAT_ANSWERS: list[tuple[str, Callable[[ChatResult], Any], Callable[[Any], str]]] = [
    ("openai", oai.encode_chat_response, lambda b: _wire("openai", CHAT).decode(b, ["q"])[0][0]),
    (
        "openai-blocks",
        lambda r: oai.encode_chat_response(r, content_blocks=True, reasoning="🤔 hmm"),
        lambda b: _wire("databricks", CHAT).decode(b, ["q"])[0][0],
    ),
    (
        "anthropic",
        anthropic.encode_response,
        lambda b: _wire("anthropic", CHAT).decode(b, ["q"])[0][0],
    ),
    ("gemini", gemini.encode_response, lambda b: _wire("gemini", CHAT).decode(b, ["q"])[0][0]),
    ("responses", responses.encode_response, lambda b: responses.decode_response(b).text),
]


@settings(max_examples=40, deadline=None)
@given(prompts, st.integers(0, 2**40), st.integers(0, 2**40))
@pytest.mark.parametrize(
    ("encode", "decode_text"), [a[1:] for a in CHAT_ANSWERS], ids=[a[0] for a in CHAT_ANSWERS]
)
def test_any_answer_text_survives_each_chat_flavour(
    encode: Callable[[ChatResult], Any],
    decode_text: Callable[[Any], str],
    text: str,
    tokens_in: int,
    tokens_out: int,
) -> None:
    result = ChatResult(text, "stop", Usage(tokens_in, tokens_out), "e", "req-1")
    assert decode_text(json.loads(_server_bytes(encode(result)))) == text


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.lists(
            st.floats(width=32, allow_nan=False, allow_infinity=False), min_size=1, max_size=8
        ),
        min_size=1,
        max_size=6,
    ),
    st.sampled_from(["float", "base64"]),
    st.randoms(use_true_random=False),
)
def test_embeddings_come_back_in_input_order_whatever_order_the_server_lists_them(
    vectors: list[list[float]], fmt: str, rng: Any
) -> None:
    body = oai.encode_embedding_response(
        EmbeddingResult(tuple(map(tuple, vectors)), Usage(3, 0)), encoding_format=fmt
    )
    rng.shuffle(body["data"])
    inputs = [f"text {i}" for i in range(len(vectors))]
    outputs, usage = _wire("openai", EMBEDDINGS).decode(json.loads(_server_bytes(body)), inputs)
    assert outputs == [tuple(v) for v in vectors]
    assert usage == Usage(3, 0)


# --- lone surrogates ------------------------------------------------------------------------
# UTF-8 cannot carry a lone surrogate, yet a Python str can hold one and JSON can spell one
# ("\ud800"). Decision: the wire carries only UTF-8 text, so a lone surrogate becomes U+FFFD
# and a high/low pair becomes the character it encodes, on both sides and in both directions.


def _utf8_safe(text: str) -> str:
    def fix(m: re.Match[str]) -> str:
        pair = m[0]
        if len(pair) == 1:
            return "\ufffd"
        return chr(0x10000 + ((ord(pair[0]) - 0xD800) << 10) + ord(pair[1]) - 0xDC00)

    return re.sub("[\ud800-\udbff][\udc00-\udfff]|[\ud800-\udfff]", fix, text)


surrogates = st.integers(0xD800, 0xDFFF).map(chr)
with_surrogates = st.lists(
    st.one_of(surrogates, st.characters(codec="utf-8"), st.just("\ud83d\ude00")),
    min_size=1,
    max_size=12,
).map("".join)


@settings(max_examples=80, deadline=None)
@given(st.sampled_from(ROUTES), with_surrogates)
@example(("databricks", CHAT, "invocations"), "a\ud800b")  # UnicodeEncodeError in the client
@example(("openai", EMBEDDINGS, "embeddings"), "\ud83d\ude00\udc00")
def test_a_lone_surrogate_in_a_prompt_is_sent_as_the_replacement_character(
    route: tuple[str, str, str], text: str
) -> None:
    protocol, task, kind = route
    inputs: list[Any] = [{text: text}] if task == CUSTOM else [text]
    payload = _client_bytes(_wire(protocol, task).encode(inputs))  # must not raise
    _, request = decode(kind, _emulated(task, protocol), json.loads(payload))
    safe = _utf8_safe(text)
    assert _request_texts(request) == ([{safe: safe}] if task == CUSTOM else [safe])


# Each answer shape the client decodes text from: how a server encodes a text, how the
# client reads it back.
def _chat_answer(
    encode: Callable[[ChatResult], Any], protocol: str
) -> tuple[Callable[[str], Any], Callable[[Any], Any]]:
    wire = _wire(protocol, CHAT)
    return (
        lambda text: encode(ChatResult(text, "stop", Usage(1, 1))),
        lambda body: wire.decode(body, ["q"])[0][0],
    )


TEXT_ANSWERS: dict[str, tuple[Callable[[str], Any], Callable[[Any], Any]]] = {
    "openai": _chat_answer(oai.encode_chat_response, "openai"),
    "openai-blocks": _chat_answer(
        partial(oai.encode_chat_response, content_blocks=True), "databricks"
    ),
    "anthropic": _chat_answer(anthropic.encode_response, "anthropic"),
    "gemini": _chat_answer(gemini.encode_response, "gemini"),
    "completions": (
        lambda text: oai.encode_completion_response(
            CompletionResult((text,), ("stop",), Usage(1, 1)), request_id="r"
        ),
        lambda body: _wire("openai", COMPLETIONS).decode(body, ["q"])[0][0],
    ),
    "custom": (
        lambda text: serving.encode_response([{text: [text, 1.5]}]),
        lambda body: _wire("databricks", CUSTOM).decode(body, [{"q": 1}])[0][0],
    ),
}


@settings(max_examples=80, deadline=None)
@given(st.sampled_from(sorted(TEXT_ANSWERS)), with_surrogates)
@example("openai", "\ud800")  # reached the UDF, where Arrow cannot encode it
@example("custom", "\udc00")
def test_a_lone_surrogate_in_an_answer_reaches_the_client_as_the_replacement_character(
    name: str, text: str
) -> None:
    encode, decode_answer = TEXT_ANSWERS[name]
    # json.dumps escapes it as "\ud800": how a server's lone surrogate reaches the client.
    decoded = decode_answer(json.loads(json.dumps(encode(text))))
    safe = _utf8_safe(text)
    assert decoded == ({safe: [safe, 1.5]} if name == "custom" else safe)
    json.dumps(decoded, ensure_ascii=False).encode("utf-8")  # Arrow can hold it


@settings(max_examples=40, deadline=None)
@given(
    st.lists(unicode_text, min_size=1, max_size=4),
    st.randoms(use_true_random=False),
)
def test_a_completion_with_n_choices_answers_its_prompt_with_the_first(
    choices: list[str], rng: Any
) -> None:
    # modelParameters => named_struct('n', 3): the server answers three choices per prompt.
    body = oai.encode_completion_response(
        CompletionResult(tuple(choices), ("stop",) * len(choices), Usage(1, 1)), request_id="r"
    )
    rng.shuffle(body["choices"])
    outputs, _ = _wire("openai", COMPLETIONS).decode(json.loads(_server_bytes(body)), ["q"])
    assert outputs == [choices[0]]


# --- garbled bodies -------------------------------------------------------------------------

# Keys every flavour reads, so random JSON reaches deep into the decoders.
_KEYS = [
    "choices", "message", "content", "text", "type", "index", "finish_reason", "usage",
    "prompt_tokens", "completion_tokens", "input_tokens", "output_tokens", "total_tokens",
    "data", "embedding", "predictions", "candidates", "parts", "usageMetadata",
    "promptTokenCount", "candidatesTokenCount", "finishReason", "output", "status",
    "stop_reason", "id", "model", "error", "messages", "role", "prompt", "input", "max_tokens",
    "temperature", "stream", "dataframe_records", "dataframe_split", "columns", "inputs",
    "instances", "encoding_format", "instructions", "max_output_tokens", "format", "system",
    "contents", "systemInstruction", "generationConfig", "maxOutputTokens", "responseMimeType",
    "responseJsonSchema", "json_schema", "schema", "response_format",
]  # fmt: skip
json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.integers(),
    st.sampled_from([10**400, -(10**400), 2**63]),
    st.floats(),  # NaN and ±Infinity: Python's json reads them
    st.sampled_from(["text", "output_text", "message", "user", "assistant", "model", "stop"]),
    st.sampled_from(["float", "base64", "json_object", "json_schema", "application/json"]),
    st.binary(max_size=13).map(lambda b: base64.b64encode(b).decode()),
    st.text(max_size=8),
    st.lists(surrogates, max_size=2).map("".join),
)
json_values = st.recursive(
    json_leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(_KEYS) | st.text(max_size=4), inner, max_size=5),
    ),
    max_leaves=25,
)


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += _paths(item, (*path, i))
    return found


@st.composite
def mutated(draw: st.DrawFn, valid: Any) -> Any:
    """`valid` with one to three subtrees replaced by random JSON, or removed."""
    body = copy.deepcopy(valid)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(body)))
        if not path:
            body = draw(json_values)
            continue
        parent = body
        try:
            for key in path[:-1]:
                parent = parent[key]
            if draw(st.booleans()) and isinstance(parent, dict):
                del parent[path[-1]]
            else:
                parent[path[-1]] = draw(json_values)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed this path
    return body


_RESULT = ChatResult("Hello, world.", "stop", Usage(3, 4), "e", "req-1")
_VECTORS = EmbeddingResult(((0.5, 1.0), (2.0, -1.0)), Usage(2, 0))
# name: (a valid answer, how the client decodes it, how many inputs it answers)
CLIENT_DECODES: dict[str, tuple[Any, Callable[[Any, Sequence[Any]], Any], int]] = {
    "databricks-chat": (oai.encode_chat_response(_RESULT), _wire("databricks", CHAT).decode, 1),
    "openai-chat": (oai.encode_chat_response(_RESULT), _wire("openai", CHAT).decode, 1),
    "openai-completions": (
        oai.encode_completion_response(
            CompletionResult(("a", "b"), ("stop", "length"), Usage(1, 2)), request_id="r"
        ),
        _wire("openai", COMPLETIONS).decode,
        1,
    ),
    "openai-embeddings": (
        oai.encode_embedding_response(_VECTORS),
        _wire("openai", EMBEDDINGS).decode,
        2,
    ),
    "openai-embeddings-base64": (
        oai.encode_embedding_response(_VECTORS, encoding_format="base64"),
        _wire("openai", EMBEDDINGS).decode,
        2,
    ),
    "databricks-custom": (
        {"predictions": [1.5, "x", {"a": [1]}]},
        _wire("databricks", CUSTOM).decode,
        3,
    ),
    "anthropic": (anthropic.encode_response(_RESULT), _wire("anthropic", CHAT).decode, 1),
    "gemini": (gemini.encode_response(_RESULT), _wire("gemini", CHAT).decode, 1),
    "responses": (
        responses.encode_response(_RESULT),
        lambda body, _: responses.decode_response(body),
        1,
    ),
}


def _garbled(valid_bodies: dict[str, Any]) -> st.SearchStrategy[tuple[str, Any]]:
    """(name, body): random JSON, or one of the valid bodies with parts replaced."""
    return st.sampled_from(sorted(valid_bodies)).flatmap(
        lambda name: st.tuples(st.just(name), st.one_of(json_values, mutated(valid_bodies[name])))
    )


@settings(max_examples=400, deadline=None)
@given(_garbled({name: case[0] for name, case in CLIENT_DECODES.items()}))
@example(("openai-completions", {"choices": [{"index": None}]}))  # TypeError
@example(("openai-completions", {"choices": [{"index": float("inf")}]}))  # OverflowError
@example(("openai-completions", {"choices": []}))  # no output for the row
@example(("openai-embeddings", {"data": [{"index": 0, "embedding": "AAAAAAAAAAAA"}, {"index": 1, "embedding": [1]}]}))  # struct.error  # fmt: skip
@example(("openai-embeddings", {"data": [{"index": 0, "embedding": [10**400]}, {"index": 1, "embedding": [1]}]}))  # OverflowError  # fmt: skip
@example(("openai-chat", {"choices": [{"message": {}}], "usage": {"prompt_tokens": -5}}))
@example(("openai-chat", {"choices": [{"message": {}}], "usage": {"prompt_tokens": True}}))
@example(("anthropic", {"content": [], "usage": {"input_tokens": 1, "output_tokens": [1]}}))
@example(("gemini", {"candidates": [{}], "usageMetadata": {"promptTokenCount": 1, "candidatesTokenCount": float("inf")}}))  # fmt: skip
@example(("responses", {"output": [], "usage": {"input_tokens": -1}}))
@example(("databricks-custom", {"predictions": ["\ud800", {"\udc00": ["\ud83d"]}, 1]}))
def test_a_garbled_answer_is_a_retryable_protocol_error_or_a_well_formed_result(
    case: tuple[str, Any],
) -> None:
    name, body = case
    _, decode_body, rows = CLIENT_DECODES[name]
    inputs = [f"input {i}" for i in range(rows)]
    try:
        decoded = decode_body(json.loads(json.dumps(body)), inputs)
    except ValueError:  # ProtocolError is one: the client retries it as a malformed body
        return
    outputs, usage = ([decoded.text], decoded.usage) if isinstance(decoded, ChatResult) else decoded
    # What BatchEngine and the UDF rely on: one output per input, text Arrow can hold,
    # token counts that are counts.
    assert len(outputs) == rows
    json.dumps(outputs, ensure_ascii=False).encode("utf-8")
    for count in (usage.input_tokens, usage.output_tokens):
        assert isinstance(count, int) and not isinstance(count, bool) and count >= 0


@settings(max_examples=150, deadline=None)
@given(json_values)
def test_reading_the_error_of_any_json_body_never_raises(body: Any) -> None:
    code, message = read_error(body)
    assert code is None or isinstance(code, str)
    assert message is None or isinstance(message, str)


# name: (the endpoint's task, a valid request body)
VALID_REQUESTS: dict[str, tuple[str, Any]] = {
    "chat": (CHAT, oai.encode_chat_request(ChatRequest((Message("system", "s"), Message("user", "q")), "e", {"max_tokens": 5, "temperature": 0.5}), with_model=True)),
    "completions": (COMPLETIONS, oai.encode_completion_request(CompletionRequest(("a", "b"), "e", {"max_tokens": 5}), with_model=True)),
    "embeddings": (EMBEDDINGS, oai.encode_embedding_request(EmbeddingRequest(("a", "b"), "e", "base64"), with_model=True)),
    "custom": (CUSTOM, {"dataframe_split": {"columns": ["a", "b"], "data": [[1, "x"], [2, "y"]]}}),
    "custom-records": (CUSTOM, {"dataframe_records": [{"a": 1}], "inputs": [1]}),
    "responses": (CHAT, responses.encode_request(ChatRequest((Message("user", "q"),), "e", {"max_tokens": 5, "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": {"type": "object"}}}}))),
    "anthropic": (CHAT, anthropic.encode_request(ChatRequest((Message("system", "s"), Message("user", "q")), "e", {"stop": "x"}))),
    "gemini": (CHAT, gemini.encode_request(ChatRequest((Message("user", "q"),), "e", {"max_tokens": 5, "response_format": {"type": "json_schema", "json_schema": {"schema": {"type": "OBJECT"}}}}))),
}  # fmt: skip


def _emulator_decode(name: str, body: Any) -> Any:
    task, _ = VALID_REQUESTS[name]
    kind = name.partition("-")[0]
    provider = kind if kind in ("anthropic", "gemini") else "databricks"
    route = "invocations" if kind == "custom" else kind
    return decode(route, _emulated(task, provider), body)[1]


@settings(max_examples=300, deadline=None)
@given(_garbled({name: case[1] for name, case in VALID_REQUESTS.items()}))
@example(("custom", {"dataframe_split": {"columns": [["a"]], "data": [[1]]}}))  # TypeError
@example(("custom", {"dataframe_split": {"columns": ["a"], "data": [1]}}))  # TypeError
def test_a_garbled_request_body_is_a_protocol_error_for_the_emulator(
    case: tuple[str, Any],
) -> None:
    name, body = case
    try:
        request = _emulator_decode(name, json.loads(json.dumps(body)))
    except ProtocolError:
        return  # → 400 INVALID_PARAMETER_VALUE
    if name.startswith("custom"):
        assert isinstance(request, list) and all(isinstance(r, dict) for r in request)
    else:
        kind = {"completions": CompletionRequest, "embeddings": EmbeddingRequest}
        assert isinstance(request, kind.get(name, ChatRequest))
        assert all(isinstance(t, str) for t in _request_texts(request))
