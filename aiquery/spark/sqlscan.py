"""Lexical scanning of Spark SQL: call sites, identifier paths and statements, by offset.

`aiquery.sql` rewrites only the `ai_query(...)` call sites and references to
`system.ai_gateway.usage`; every other character of the user's SQL must reach Spark
unchanged. So instead of parsing, this module lexes the text the way Spark 4.1's
`SqlBaseLexer` does and reports positions in the original string:

- string literals `'...'` and `"..."` with backslash escapes, where a doubled quote
  inside is a literal quote (`'it''s'` is `it's` in Spark 4.1); raw strings `r'...'`;
- quoted identifiers in backticks, with a doubled backtick inside;
- `-- comments` (a backslash before the newline continues them) and nested
  `/* ... */` comments; hints `/*+ ... */` are treated as comments too;
- unquoted identifiers made of letters, ASCII digits and `_`.

Anything that cannot be lexed (an unterminated literal, identifier or comment) and
unbalanced parentheses raise `SqlScanError`, which locates the problem by line and
column and never quotes the SQL itself.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import NamedTuple


class SqlScanError(ValueError):
    """Unbalanced parentheses, an empty argument, or an unterminated string, comment or identifier.

    `position` is the 0-based offset of the offending character; `line` and `column`
    are 1-based. The message reads like "unterminated string literal at line 3, column 14".
    """

    def __init__(self, problem: str, sql: str, offset: int) -> None:
        line, column = position(sql, offset)
        super().__init__(f"{problem} at line {line}, column {column}")
        self.position = offset
        self.line = line
        self.column = column


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


_SPACE = "space"
_COMMENT = "comment"
_STRING = "string"
_QUOTED = "quoted"  # a backtick-quoted identifier
_WORD = "word"  # an unquoted identifier, keyword or number
_OP = "op"

# Only operators whose identity matters here are lexed as one token.
_OPERATORS = ("=>", "::")
_URI_CHARS = frozenset("_/-.?=&#%")
# The type names after which Spark's lexer reads `<...>` as type parameters.
_COMPLEX_TYPES = frozenset({"array", "map", "struct"})
_HEX = frozenset("0123456789abcdefABCDEF")
# Spark keeps the backslash of `\%` and `\_`, for LIKE patterns.
_ESCAPES = dict(zip("0bnrtZ%_", ("\0", "\b", "\n", "\r", "\t", "\x1a", "\\%", "\\_"), strict=True))


class _Token(NamedTuple):
    kind: str
    start: int
    end: int
    text: str


def _is_word_char(c: str) -> bool:
    return c.isalpha() or c == "_" or "0" <= c <= "9"


def _lex(sql: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c.isspace():
            kind, j = _SPACE, i + 1
            while j < n and sql[j].isspace():
                j += 1
        elif sql.startswith("--", i):
            kind, j = _COMMENT, _line_comment_end(sql, i)
        elif sql.startswith("/*", i):
            kind, j = _COMMENT, _block_comment_end(sql, i)
        elif c in "'\"":
            kind, j = _STRING, _quoted_end(sql, i, "unterminated string literal", escapes=True)
        elif c == "`":
            kind, j = _QUOTED, _quoted_end(sql, i, "unterminated quoted identifier", escapes=False)
        elif c in "rR" and sql[i + 1 : i + 2] in ("'", '"'):
            kind, j = _STRING, sql.find(sql[i + 1], i + 2) + 1
            if j == 0:
                raise SqlScanError("unterminated string literal", sql, i)
        elif _is_word_char(c):
            kind, j = _WORD, _word_end(sql, i)
        else:
            kind = _OP
            op = next((op for op in _OPERATORS if sql.startswith(op, i)), c)
            j = i + len(op)
        tokens.append(_Token(kind, i, j, sql[i:j]))
        i = j
    return tokens


def _line_comment_end(sql: str, i: int) -> int:
    j, n = i + 2, len(sql)
    while j < n and sql[j] not in "\r\n":
        j += 2 if sql.startswith("\\\n", j) else 1
    return j


def _block_comment_end(sql: str, i: int) -> int:
    depth, j, n = 1, i + 2, len(sql)
    while j < n:
        if sql.startswith("/*", j):
            depth, j = depth + 1, j + 2
        elif sql.startswith("*/", j):
            depth, j = depth - 1, j + 2
            if depth == 0:
                return j
        else:
            j += 1
    raise SqlScanError("unterminated comment", sql, i)


def _quoted_end(sql: str, i: int, problem: str, *, escapes: bool) -> int:
    quote, j, n = sql[i], i + 1, len(sql)
    while j < n:
        c = sql[j]
        if c == "\\" and escapes:
            j += 2
        elif c != quote:
            j += 1
        elif sql.startswith(quote, j + 1):
            j += 2
        else:
            return j + 1
    raise SqlScanError(problem, sql, i)


def _word_end(sql: str, i: int) -> int:
    j, n = i + 1, len(sql)
    while j < n and _is_word_char(sql[j]):
        j += 1
    # Spark lexes `scheme://path` as one identifier, so `--` inside it is no comment.
    if sql.startswith("://", j) and sql[i:j].isalpha():
        j += 3
        while j < n and (_is_word_char(sql[j]) or sql[j] in _URI_CHARS):
            j += 1
    return j


def _significant(tokens: list[_Token]) -> list[_Token]:
    return [t for t in tokens if t.kind not in (_SPACE, _COMMENT)]


def _matching_parens(sql: str, sig: list[_Token]) -> dict[int, int]:
    closer: dict[int, int] = {}
    opened: list[int] = []
    for index, token in enumerate(sig):
        if token.text == "(":
            opened.append(index)
        elif token.text == ")":
            if not opened:
                raise SqlScanError("unmatched closing parenthesis", sql, token.start)
            closer[opened.pop()] = index
    if opened:
        raise SqlScanError("unclosed parenthesis", sql, sig[opened[-1]].start)
    return closer


def _unquote(token: _Token) -> str:
    return token.text[1:-1].replace("``", "`") if token.kind == _QUOTED else token.text


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
    sig = _significant(_lex(sql))
    closer = _matching_parens(sql, sig)
    calls: list[CallSite] = []
    i = 0
    while i < len(sig) - 1:
        token = sig[i]
        if (
            token.kind == _WORD
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
    sql: str, sig: list[_Token], open_: int, close: int, closer: dict[int, int]
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


def _cast_type_end(sig: list[_Token], j: int, limit: int) -> int:
    """Index of the last token of the type after `::` at `j`, so `MAP<K, V>` is not split."""
    if j + 2 >= limit or sig[j + 1].text.lower() not in _COMPLEX_TYPES or sig[j + 2].text != "<":
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


def _argument(sql: str, sig: list[_Token], first: int, stop: int) -> Argument:
    name = None
    if stop - first >= 2 and sig[first].kind in (_WORD, _QUOTED) and sig[first + 1].text == "=>":
        name = _unquote(sig[first])
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
    tokens = _lex(sql)
    spans: list[tuple[int, int]] = []
    for i in range(len(tokens) - 2 * (len(wanted) - 1)):
        last = i + 2 * (len(wanted) - 1)
        names, dots = tokens[i : last + 1 : 2], tokens[i + 1 : last : 2]
        if (
            all(
                t.kind in (_WORD, _QUOTED) and _unquote(t).lower() == p
                for t, p in zip(names, wanted, strict=True)
            )
            and all(t.text == "." for t in dots)
            and not _dot_beside(tokens, i, -1)
            and not _dot_beside(tokens, last, 1)
        ):
            spans.append((tokens[i].start, tokens[last].end))
    return spans


def _dot_beside(tokens: list[_Token], index: int, step: int) -> bool:
    # Spark accepts `a . b`, so a qualifying dot counts even across whitespace or comments.
    index += step
    while 0 <= index < len(tokens) and tokens[index].kind in (_SPACE, _COMMENT):
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
    for token in _lex(sql):
        if token.kind == _OP and token.text == ";":
            if has_code:
                statements.append(sql[start : token.start].strip())
            start, has_code = token.end, False
        elif token.kind not in (_SPACE, _COMMENT):
            has_code = True
    if has_code:
        statements.append(sql[start:].strip())
    return statements


def string_literal(text: str) -> str | None:
    """The value of `text` if it is one or more adjacent SQL string literals, else None.

    Adjacent literals concatenate (`'a' 'b'` is `ab`); whitespace and comments may
    separate them. Escapes decode as in Spark (`\\n`, `\\t`, `\\'`, `\\\\`, `\\uXXXX`,
    `\\UXXXXXXXX`, three-digit octal; an unknown escape keeps its character) and a
    doubled quote is one quote; raw strings (`r'...'`) are taken as written. Anything
    else, such as `'a' || 'b'`, a column or a number, gives None.
    """
    sig = _significant_or_none(text)
    if not sig or any(t.kind != _STRING for t in sig):
        return None
    return "".join(_decode(t.text) for t in sig)


def _significant_or_none(text: str) -> list[_Token] | None:
    try:
        return _significant(_lex(text))
    except SqlScanError:
        return None


def _decode(literal: str) -> str:
    if literal[0] in "rR":
        return literal[2:-1]
    quote, body = literal[0], literal[1:-1]
    out: list[str] = []
    i, n = 0, len(body)
    while i < n:
        c = body[i]
        if c == quote:  # the lexer only lets a quote through doubled
            out.append(quote)
            i += 2
        elif c != "\\" or i + 1 == n:
            out.append(c)
            i += 1
        elif body[i + 1] in "uU" and (char := _unicode_escape(body, i)):
            out.append(char)
            i += 6 if body[i + 1] == "u" else 10
        elif body[i + 1 : i + 2] in ("0", "1") and _is_octal(body[i + 2 : i + 4]):
            out.append(chr(int(body[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(_ESCAPES.get(body[i + 1], body[i + 1]))
            i += 2
    value = "".join(out)
    # `\uD83D\uDE00` is one character in Java's UTF-16 strings; pair surrogates likewise.
    if any("\ud800" <= ch <= "\udfff" for ch in value):
        value = value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
    return value


def _unicode_escape(body: str, i: int) -> str:
    """The character of `\\uXXXX` or `\\UXXXXXXXX` at `i`, or "" if it is not one."""
    width = 4 if body[i + 1] == "u" else 8
    digits = body[i + 2 : i + 2 + width]
    if len(digits) != width or not all(c in _HEX for c in digits):
        return ""
    code = int(digits, 16)
    return chr(code) if code <= 0x10FFFF else ""


def _is_octal(pair: str) -> bool:
    return len(pair) == 2 and all("0" <= c <= "7" for c in pair)


def bool_literal(text: str) -> bool | None:
    """True or False for `text` that is just `true` or `false` (any case), else None."""
    sig = _significant_or_none(text)
    if sig is None or len(sig) != 1 or sig[0].kind != _WORD:
        return None
    return {"true": True, "false": False}.get(sig[0].text.lower())


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


def position(sql: str, offset: int) -> tuple[int, int]:
    """The 1-based (line, column) of `offset` in `sql`; `len(sql)` is the end of the text.

    Raises:
        ValueError: `offset` is outside 0..len(sql).
    """
    if not 0 <= offset <= len(sql):
        raise ValueError(f"offset {offset} is not within 0..{len(sql)}")
    line_start = sql.rfind("\n", 0, offset) + 1
    return sql.count("\n", 0, offset) + 1, offset - line_start + 1
