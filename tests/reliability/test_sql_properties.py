"""Properties of the SQL rewriter's scanner, on generated input.

`aiquery.spark.sqlscan`, and `aiquery.spark.sql.rewrite` where it needs no session:
statements are generated piece by piece, so the test knows exactly where each real
`ai_query` call sits, while string literals, quoted identifiers and comments full of
look-alike text surround it.

`tests/unit/test_sqlscan.py` holds the example-based tests; these properties go further
rather than repeat them. The codec properties are in `test_codec_properties.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from aiquery.spark import sql as aisql
from aiquery.spark.sqllex import SqlScanError, bool_literal, position, string_literal
from aiquery.spark.sqlscan import (
    CallSite,
    find_calls,
    find_identifier_path,
    replace_spans,
    split_statements,
)

AI = ["ai_query"]
USAGE = ("system", "ai_gateway", "usage")


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
