"""Scanning Spark SQL by offset: call sites, identifier paths and statements (lexing: `sqllex`).

`aiquery.sql` rewrites only the `ai_query(...)` call sites and references to
`system.ai_gateway.usage`; every other character of the user's SQL must reach Spark
unchanged. So instead of parsing, the text is lexed (`aiquery.spark.sqllex`) and
positions are reported in the original string.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from aiquery.spark.sqllex import (
    COMMENT,
    COMPLEX_TYPES,
    OP,
    QUOTED,
    SPACE,
    WORD,
    SqlScanError,
    Token,
    lex,
    matching_parens,
    significant,
    unquote,
)


@dataclass(frozen=True, slots=True)
class Argument:
    """One argument of a call site, located in the scanned SQL."""

    name: str | None  # the named-argument name (`name => expr`), or None for positional
    text: str  # the expression, without surrounding whitespace or comments
    start: int  # offset of text[0] in the scanned SQL
    end: int  # offset just past the expression


@dataclass(frozen=True, slots=True)
class CallSite:
    """A call to one of the searched-for functions, from its name to its closing parenthesis."""

    name: str  # the function name as written, e.g. "AI_QUERY"
    start: int  # offset of the function name
    end: int  # offset just past the closing parenthesis
    args: tuple[Argument, ...]


def find_calls(sql: str, names: Collection[str]) -> list[CallSite]:
    """Outermost unqualified calls to any of `names` (case-insensitive), in text order.

    A call is an unquoted identifier, not preceded by `.`, followed by `(` (whitespace
    and comments may come between). Calls nested inside the arguments of a found call
    are not returned separately: callers recurse on `Argument.text`.

    Raises:
        SqlScanError: the text does not lex, has unbalanced parentheses, or a found
            call has an empty argument (`f(a,)`, `f(x =>)`).
    """
    wanted = {name.lower() for name in names}
    sig = significant(lex(sql))
    closer = matching_parens(sql, sig)
    calls: list[CallSite] = []
    i = 0
    while i < len(sig) - 1:
        token = sig[i]
        if (
            token.kind == WORD
            and token.text.lower() in wanted
            and sig[i + 1].text == "("
            and (i == 0 or sig[i - 1].text != ".")
        ):
            close = closer[i + 1]
            args = _arguments(sql, sig, i + 1, close, closer)
            calls.append(CallSite(token.text, token.start, sig[close].end, args))
            i = close + 1
        else:
            i += 1
    return calls


def _arguments(
    sql: str, sig: list[Token], open_: int, close: int, closer: dict[int, int]
) -> tuple[Argument, ...]:
    if close == open_ + 1:
        return ()
    args: list[Argument] = []
    first = j = open_ + 1
    while j <= close:
        text = sig[j].text
        if j == close or text == ",":
            args.append(_argument(sql, sig, first, j))
            first = j + 1
        elif text == "(":
            j = closer[j]
        elif text == "::":
            j = _cast_type_end(sig, j, close)
        j += 1
    return tuple(args)


def _cast_type_end(sig: list[Token], j: int, limit: int) -> int:
    """Index of the last token of the type after `::` at `j`, so `MAP<K, V>` is not split."""
    if j + 2 >= limit or sig[j + 1].text.lower() not in COMPLEX_TYPES or sig[j + 2].text != "<":
        return j
    depth = 0
    for k in range(j + 2, limit):
        if sig[k].text == "<":
            depth += 1
        elif sig[k].text == ">":
            depth -= 1
            if depth == 0:
                return k
    # Unclosed type parameters: let the caller stop at the closing parenthesis.
    return limit - 1


def _argument(sql: str, sig: list[Token], first: int, stop: int) -> Argument:
    name = None
    if stop - first >= 2 and sig[first].kind in (WORD, QUOTED) and sig[first + 1].text == "=>":
        name = unquote(sig[first])
        first += 2
    if first == stop:
        raise SqlScanError("empty argument", sql, sig[stop].start)
    start, end = sig[first].start, sig[stop - 1].end
    return Argument(name, sql[start:end], start, end)


def find_identifier_path(sql: str, path: Sequence[str]) -> list[tuple[int, int]]:
    """(start, end) spans of the dotted name `path`, e.g. ("system", "ai_gateway", "usage").

    Parts compare case-insensitively and may be backtick-quoted
    (`` `system`.`ai_gateway`.usage ``); no whitespace may surround the dots. A match
    that is itself qualified (`a.system.ai_gateway.usage`) or qualifies something
    (`system.ai_gateway.usage.col`) is not reported. Strings and comments are skipped.

    Raises:
        SqlScanError: the text does not lex.
    """
    if not path:
        return []
    wanted = [part.lower() for part in path]
    tokens = lex(sql)
    spans: list[tuple[int, int]] = []
    for i in range(len(tokens) - 2 * (len(wanted) - 1)):
        last = i + 2 * (len(wanted) - 1)
        names, dots = tokens[i : last + 1 : 2], tokens[i + 1 : last : 2]
        if (
            all(
                t.kind in (WORD, QUOTED) and unquote(t).lower() == p
                for t, p in zip(names, wanted, strict=True)
            )
            and all(t.text == "." for t in dots)
            and not _dot_beside(tokens, i, -1)
            and not _dot_beside(tokens, last, 1)
        ):
            spans.append((tokens[i].start, tokens[last].end))
    return spans


def _dot_beside(tokens: list[Token], index: int, step: int) -> bool:
    # Spark accepts `a . b`, so a qualifying dot counts even across whitespace or comments.
    index += step
    while 0 <= index < len(tokens) and tokens[index].kind in (SPACE, COMMENT):
        index += step
    return 0 <= index < len(tokens) and tokens[index].text == "."


def split_statements(sql: str) -> list[str]:
    """Split a script on top-level semicolons (outside strings, comments and identifiers).

    Statements that are empty or only whitespace and comments are dropped; the others
    are returned exactly as written, minus leading and trailing whitespace.

    Raises:
        SqlScanError: the text does not lex.
    """
    statements: list[str] = []
    start, has_code = 0, False
    for token in lex(sql):
        if token.kind == OP and token.text == ";":
            if has_code:
                statements.append(sql[start : token.start].strip())
            start, has_code = token.end, False
        elif token.kind not in (SPACE, COMMENT):
            has_code = True
    if has_code:
        statements.append(sql[start:].strip())
    return statements


def replace_spans(sql: str, replacements: Sequence[tuple[int, int, str]]) -> str:
    """`sql` with each (start, end, new_text) span replaced; spans may touch but not overlap.

    Raises:
        ValueError: a span is out of range or reversed, or two spans overlap.
    """
    pieces: list[str] = []
    done = 0
    for start, end, new_text in sorted(replacements, key=lambda r: (r[0], r[1])):
        if not 0 <= start <= end <= len(sql):
            raise ValueError(f"span ({start}, {end}) is not within 0..{len(sql)}")
        if start < done:
            raise ValueError(f"span ({start}, {end}) overlaps a span ending at {done}")
        pieces += (sql[done:start], new_text)
        done = end
    pieces.append(sql[done:])
    return "".join(pieces)
