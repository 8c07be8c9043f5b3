"""Lexing Spark SQL the way Spark 4.1's `SqlBaseLexer` does, by offset; and its literals' values.

Used by `aiquery.spark.sqlscan`, which finds call sites, identifier paths and statements.

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


SPACE = "space"
COMMENT = "comment"
STRING = "string"
QUOTED = "quoted"  # a backtick-quoted identifier
WORD = "word"  # an unquoted identifier, keyword or number
OP = "op"

# Only operators whose identity matters here are lexed as one token.
_OPERATORS = ("=>", "::")
_URI_CHARS = frozenset("_/-.?=&#%")
# The type names after which Spark's lexer reads `<...>` as type parameters.
COMPLEX_TYPES = frozenset({"array", "map", "struct"})
_HEX = frozenset("0123456789abcdefABCDEF")
# Spark keeps the backslash of `\%` and `\_`, for LIKE patterns.
_ESCAPES = dict(zip("0bnrtZ%_", ("\0", "\b", "\n", "\r", "\t", "\x1a", "\\%", "\\_"), strict=True))


class Token(NamedTuple):
    kind: str
    start: int
    end: int
    text: str


def _is_word_char(c: str) -> bool:
    return c.isalpha() or c == "_" or "0" <= c <= "9"


def lex(sql: str) -> list[Token]:
    tokens: list[Token] = []
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c.isspace():
            kind, j = SPACE, i + 1
            while j < n and sql[j].isspace():
                j += 1
        elif sql.startswith("--", i):
            kind, j = COMMENT, _line_comment_end(sql, i)
        elif sql.startswith("/*", i):
            kind, j = COMMENT, _block_comment_end(sql, i)
        elif c in "'\"":
            kind, j = STRING, _quoted_end(sql, i, "unterminated string literal", escapes=True)
        elif c == "`":
            kind, j = QUOTED, _quoted_end(sql, i, "unterminated quoted identifier", escapes=False)
        elif c in "rR" and sql[i + 1 : i + 2] in ("'", '"'):
            kind, j = STRING, sql.find(sql[i + 1], i + 2) + 1
            if j == 0:
                raise SqlScanError("unterminated string literal", sql, i)
        elif _is_word_char(c):
            kind, j = WORD, _word_end(sql, i)
        else:
            kind = OP
            op = next((op for op in _OPERATORS if sql.startswith(op, i)), c)
            j = i + len(op)
        tokens.append(Token(kind, i, j, sql[i:j]))
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


def significant(tokens: list[Token]) -> list[Token]:
    return [t for t in tokens if t.kind not in (SPACE, COMMENT)]


def matching_parens(sql: str, sig: list[Token]) -> dict[int, int]:
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


def unquote(token: Token) -> str:
    return token.text[1:-1].replace("``", "`") if token.kind == QUOTED else token.text


def string_literal(text: str) -> str | None:
    """The value of `text` if it is one or more adjacent SQL string literals, else None.

    Adjacent literals concatenate (`'a' 'b'` is `ab`); whitespace and comments may
    separate them. Escapes decode as in Spark (`\\n`, `\\t`, `\\'`, `\\\\`, `\\uXXXX`,
    `\\UXXXXXXXX`, three-digit octal; an unknown escape keeps its character) and a
    doubled quote is one quote; raw strings (`r'...'`) are taken as written. Anything
    else, such as `'a' || 'b'`, a column or a number, gives None.
    """
    sig = _significant_or_none(text)
    if not sig or any(t.kind != STRING for t in sig):
        return None
    return "".join(_decode(t.text) for t in sig)


def _significant_or_none(text: str) -> list[Token] | None:
    try:
        return significant(lex(text))
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
    if sig is None or len(sig) != 1 or sig[0].kind != WORD:
        return None
    return {"true": True, "false": False}.get(sig[0].text.lower())


def position(sql: str, offset: int) -> tuple[int, int]:
    """The 1-based (line, column) of `offset` in `sql`; `len(sql)` is the end of the text.

    Raises:
        ValueError: `offset` is outside 0..len(sql).
    """
    if not 0 <= offset <= len(sql):
        raise ValueError(f"offset {offset} is not within 0..{len(sql)}")
    line_start = sql.rfind("\n", 0, offset) + 1
    return sql.count("\n", 0, offset) + 1, offset - line_start + 1
