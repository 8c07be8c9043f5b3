"""The SQL scanner: call sites, names and statements found by position, never fooled by literals."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiquery.spark.sqllex import SqlScanError, bool_literal, position, string_literal
from aiquery.spark.sqlscan import (
    Argument,
    CallSite,
    find_calls,
    find_identifier_path,
    replace_spans,
    split_statements,
)

AI = ["ai_query"]
USAGE = ("system", "ai_gateway", "usage")


def call_texts(sql: str) -> list[str]:
    return [sql[c.start : c.end] for c in find_calls(sql, AI)]


def arg_pairs(call: CallSite) -> list[tuple[str | None, str]]:
    return [(a.name, a.text) for a in call.args]


# --- find_calls ---------------------------------------------------------------------------


def test_simple_call_reports_name_span_and_positional_arguments() -> None:
    sql = "SELECT ai_query('my-endpoint', prompt) AS r FROM t"
    [call] = find_calls(sql, AI)
    assert call == CallSite(
        "ai_query",
        7,
        38,
        (Argument(None, "'my-endpoint'", 16, 29), Argument(None, "prompt", 31, 37)),
    )
    assert sql[call.start : call.end] == "ai_query('my-endpoint', prompt)"


def test_function_name_matches_case_insensitively_and_keeps_its_spelling() -> None:
    [call] = find_calls("select AI_Query('e', p)", ["AI_QUERY"])
    assert call.name == "AI_Query"


def test_named_arguments_with_and_without_spaces_around_the_arrow() -> None:
    sql = "ai_query('e', p, returnType => 'STRING', failOnError=>false, `model``Params` =>x)"
    [call] = find_calls(sql, AI)
    assert arg_pairs(call) == [
        (None, "'e'"),
        (None, "p"),
        ("returnType", "'STRING'"),
        ("failOnError", "false"),
        ("model`Params", "x"),
    ]
    named = call.args[2]
    assert sql[named.start : named.end] == "'STRING'"


def test_nested_parentheses_and_calls_stay_inside_one_argument() -> None:
    sql = (
        "ai_query('e', concat('a', b), (1 + (2 * 3)),"
        " modelParameters => named_struct('max_tokens', 10, 'temperature', 0.5))"
    )
    [call] = find_calls(sql, AI)
    assert arg_pairs(call) == [
        (None, "'e'"),
        (None, "concat('a', b)"),
        (None, "(1 + (2 * 3))"),
        ("modelParameters", "named_struct('max_tokens', 10, 'temperature', 0.5)"),
    ]


def test_commas_and_parentheses_inside_strings_do_not_split_arguments() -> None:
    [call] = find_calls("ai_query('e', 'a, b)', \"c,(d\", `e,f`)", AI)
    assert [a.text for a in call.args] == ["'e'", "'a, b)'", '"c,(d"', "`e,f`"]


def test_argument_text_excludes_surrounding_whitespace_and_comments() -> None:
    sql = "ai_query(\n  'e' /* endpoint */ ,\n  -- the prompt\n  p  \n)"
    [call] = find_calls(sql, AI)
    assert [a.text for a in call.args] == ["'e'", "p"]
    assert [sql[a.start : a.end] for a in call.args] == ["'e'", "p"]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 'ai_query(1)'",
        'SELECT "ai_query(1)"',
        "SELECT r'\\' AS `ai_query(`",
        "SELECT 'it''s ai_query(1)'",
        "SELECT 'a\\' ai_query(1)'",
        "SELECT 1 -- ai_query(1)",
        "SELECT 1 -- continued \\\n ai_query(1)",
        "SELECT /* ai_query(1) */ 1",
        "SELECT /* outer /* inner */ ai_query(1) */ 1",
        "SELECT /*+ ai_query(1) */ 1",
        "SELECT `ai_query`(1)",
        "SELECT `my ai_query(1)`",
        "SELECT my_ai_query(1)",
        "SELECT ai_query_x(1)",
        "SELECT 2ai_query(1)",
        "SELECT x.ai_query(1)",
        "SELECT x . ai_query(1)",
        "SELECT ai_query FROM t",
    ],
)
def test_text_that_only_looks_like_a_call_is_ignored(sql: str) -> None:
    assert find_calls(sql, AI) == []


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT '--' , ai_query(1)",
        "SELECT '/*' , ai_query(1)",
        "SELECT r'\\', ai_query(1)",
        "SELECT /* ' */ ai_query(1)",
        "SELECT -- '\n ai_query(1)",
        "SELECT `a``b`, ai_query(1)",
        "SELECT * FROM json.file:///tmp/a--b, ai_query(1)",
    ],
)
def test_call_after_a_closed_literal_or_comment_is_found(sql: str) -> None:
    assert call_texts(sql) == ["ai_query(1)"]


def test_two_calls_in_one_statement_are_returned_in_text_order() -> None:
    sql = "SELECT ai_query('a', x) AS p, upper(AI_QUERY('b', y)) AS q FROM t"
    assert call_texts(sql) == ["ai_query('a', x)", "AI_QUERY('b', y)"]


def test_nested_call_is_returned_once_inside_the_outermost() -> None:
    sql = "SELECT ai_query('a', ai_query('b', x)) FROM t"
    [call] = find_calls(sql, AI)
    assert call.args[1].text == "ai_query('b', x)"
    assert call_texts(call.args[1].text) == ["ai_query('b', x)"]


def test_multiline_call_has_offsets_into_the_original_text() -> None:
    sql = "SELECT\n  ai_query(\n    'e',\n    concat('Summarise: ', body)\n  ) AS s\nFROM t"
    [call] = find_calls(sql, AI)
    assert position(sql, call.start) == (2, 3)
    assert position(sql, call.args[1].start) == (4, 5)
    assert sql[call.end - 1] == ")" and position(sql, call.end - 1) == (5, 3)


def test_whitespace_and_comments_may_separate_name_and_parenthesis() -> None:
    sql = "SELECT ai_query /* why */ -- not\n ('e', p)"
    [call] = find_calls(sql, AI)
    assert call.start == 7 and call.end == len(sql)
    assert arg_pairs(call) == [(None, "'e'"), (None, "p")]


def test_empty_argument_list_has_no_arguments() -> None:
    [call] = find_calls("ai_query( )", AI)
    assert call.args == ()


def test_complex_cast_type_parameters_do_not_split_arguments() -> None:
    [call] = find_calls("ai_query('e', m::map<string, array<int>>, x::int < 5, y)", AI)
    assert [a.text for a in call.args] == ["'e'", "m::map<string, array<int>>", "x::int < 5", "y"]


def test_null_safe_equality_is_not_a_named_argument() -> None:
    [call] = find_calls("ai_query('e', a <=> b, c==>d)", AI)
    assert arg_pairs(call) == [(None, "'e'"), (None, "a <=> b"), (None, "c==>d")]


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "message", "offset"),
    [
        ("SELECT\n  a,\n  concat(bb, 'oops)", "unterminated string literal", 25),
        ("SELECT 'a\\'", "unterminated string literal", 7),
        ("SELECT r'a", "unterminated string literal", 7),
        ("SELECT\n/* a /* b */ ai_query(1)", "unterminated comment", 7),
        ("SELECT `ai_query(1)", "unterminated quoted identifier", 7),
        ("SELECT ai_query('e', (x)\nFROM t", "unclosed parenthesis", 15),
        ("SELECT a)\n", "unmatched closing parenthesis", 8),
        ("SELECT ai_query('e', , x)", "empty argument", 21),
        ("SELECT ai_query('e', x =>)", "empty argument", 25),
    ],
)
def test_malformed_sql_raises_with_line_and_column(sql: str, message: str, offset: int) -> None:
    with pytest.raises(SqlScanError) as caught:
        find_calls(sql, AI)
    error = caught.value
    line, column = position(sql, offset)
    assert (error.position, error.line, error.column) == (offset, line, column)
    assert str(error) == f"{message} at line {line}, column {column}"
    assert isinstance(error, ValueError)


def test_error_message_names_line_and_column_not_the_sql() -> None:
    with pytest.raises(SqlScanError, match=r"^unterminated string literal at line 3, column 14$"):
        find_calls("SELECT\n  a,\n  concat(bb, 'secret prompt", AI)


# --- split_statements ---------------------------------------------------------------------


def test_split_statements_ignores_semicolons_in_strings_comments_and_identifiers() -> None:
    script = (
        "-- setup; still a comment\n"
        "SELECT 'a;b', \"c;d\", `e;f` /* ; */ FROM t;\n"
        "\n"
        "  ;  /* only a comment; */ ;\n"
        "SELECT 2 -- trailing;\n"
        ";\n"
        "SELECT r'\\'; SELECT ';'"
    )
    assert split_statements(script) == [
        "-- setup; still a comment\nSELECT 'a;b', \"c;d\", `e;f` /* ; */ FROM t",
        "SELECT 2 -- trailing;",
        "SELECT r'\\'",
        "SELECT ';'",
    ]


def test_split_statements_of_only_blanks_and_comments_is_empty() -> None:
    assert split_statements(" ; -- x\n ;/* y */") == []


def test_split_statements_raises_on_unterminated_literal() -> None:
    with pytest.raises(SqlScanError, match="line 2, column 8"):
        split_statements("SELECT 1;\nSELECT 'x; SELECT 2")


# --- literals -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("'abc'", "abc"),
        ("  'abc'  ", "abc"),
        ("'a' 'b'", "ab"),
        ("'a'\n/* c */ \"b\" -- d", "ab"),
        ("'it''s'", "it's"),
        ('"say ""hi"""', 'say "hi"'),
        ("'a' 'b''c'", "ab'c"),
        ("'\\n\\t\\r\\b\\0\\Z'", "\n\t\r\b\0\x1a"),
        ("'\\'\\\"\\\\'", "'\"\\"),
        ("'\\u0041\\u00e9'", "Aé"),
        ("'\\U0001F600'", "\U0001f600"),
        ("'\\ud83d\\ude00'", "\U0001f600"),
        ("'\\101\\018'", "A\x0018"),
        ("'\\q\\u12'", "qu12"),
        ("'50\\% off\\_'", "50\\% off\\_"),
        ("r'\\n\\'", "\\n\\"),
        ('R"a\'b"', "a'b"),
        ("r'a''b'", "ab"),
        ("''", ""),
    ],
)
def test_string_literal_decodes_like_spark(text: str, value: str) -> None:
    assert string_literal(text) == value


@pytest.mark.parametrize(
    "text",
    ["", "  ", "'a' || 'b'", "col", "42", "'a', 'b'", "'open", "X'1F'", "DATE '2024-01-01'", "`a`"],
)
def test_string_literal_of_anything_else_is_none(text: str) -> None:
    assert string_literal(text) is None


@given(st.text(max_size=60), st.booleans())
def test_string_literal_round_trips_any_text(value: str, double_quotes: bool) -> None:
    escaped = value.replace("\\", "\\\\")
    if double_quotes:
        literal = '"' + escaped.replace('"', '""') + '"'
    else:
        literal = "'" + escaped.replace("'", "\\'") + "'"
    assert string_literal(literal) == value


@pytest.mark.parametrize(
    ("text", "value"),
    [("true", True), ("FALSE", False), (" True ", True), ("'true'", None), ("1", None), ("", None)],
)
def test_bool_literal(text: str, value: bool | None) -> None:
    assert bool_literal(text) is value


# --- find_identifier_path -----------------------------------------------------------------


def test_identifier_path_matches_any_case_and_backtick_quoted_parts() -> None:
    sql = "SELECT * FROM System.AI_GATEWAY.usage u JOIN `system`.`ai_gateway`.usage v"
    spans = find_identifier_path(sql, USAGE)
    assert [sql[s:e] for s, e in spans] == [
        "System.AI_GATEWAY.usage",
        "`system`.`ai_gateway`.usage",
    ]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM system.ai_gateway.usage_x",
        "SELECT * FROM a.system.ai_gateway.usage",
        "SELECT * FROM a . system.ai_gateway.usage",
        "SELECT system.ai_gateway.usage.col FROM t",
        "SELECT * FROM `system.ai_gateway.usage`",
        "SELECT * FROM system . ai_gateway . usage",
        "SELECT 'system.ai_gateway.usage'",
        "SELECT 1 -- system.ai_gateway.usage",
        "SELECT /* system.ai_gateway.usage */ 1",
    ],
)
def test_identifier_path_does_not_match_longer_names_or_literals(sql: str) -> None:
    assert find_identifier_path(sql, USAGE) == []


# --- replace_spans and position ------------------------------------------------------------


def test_replace_spans_accepts_any_order_and_touching_spans() -> None:
    assert replace_spans("abcdef", [(4, 6, "Z"), (0, 2, "X"), (2, 4, "Y"), (6, 6, "!")]) == "XYZ!"


@pytest.mark.parametrize("spans", [[(0, 3, "x"), (2, 4, "y")], [(1, 5, "x"), (2, 2, "y")]])
def test_replace_spans_rejects_overlap(spans: list[tuple[int, int, str]]) -> None:
    with pytest.raises(ValueError, match="overlaps"):
        replace_spans("abcdef", spans)


@pytest.mark.parametrize("span", [(-1, 2, "x"), (3, 2, "x"), (0, 7, "x")])
def test_replace_spans_rejects_spans_outside_the_text(span: tuple[int, int, str]) -> None:
    with pytest.raises(ValueError, match="not within"):
        replace_spans("abcdef", [span])


def test_position_is_one_based_line_and_column() -> None:
    sql = "ab\ncd\n"
    assert [position(sql, i) for i in range(len(sql) + 1)] == [
        (1, 1), (1, 2), (1, 3), (2, 1), (2, 2), (2, 3), (3, 1)
    ]  # fmt: skip
    with pytest.raises(ValueError):
        position(sql, 7)


# --- properties ---------------------------------------------------------------------------

# Each fragment lexes on its own and contains no call to ai_query; joined by whitespace,
# none can merge with its neighbours into one.
DECOYS = [
    "SELECT",
    "FROM t",
    "WHERE a = 1 AND",
    "a + 1,",
    "(1, (2))",
    "concat('a', b)",
    "'ai_query(1)'",
    "\"ai_query('x')\"",
    "'it''s ai_query('",
    "'a\\' ai_query(1)'",
    "-- ai_query('x'\n",
    "-- ai_query( \\\n ai_query(\n",
    "/* ai_query( /* ai_query() */ */",
    "/*+ REPARTITION(2) */",
    "`ai_query`",
    "`odd``ai_query(`",
    "my_ai_query(1)",
    "x.ai_query(2)",
    "AI_QUERYX(3)",
    "r'\\'",
    "';'",
    "ai_query AS c",
]
ARG_EXPRESSIONS = [
    "p",
    "42",
    "0.5",
    "concat('a', b)",
    "named_struct('max_tokens', 10, 'temperature', 0.5)",
    "ai_query('m', 'inner')",
    "x::map<string, int>",
    "a <=> b",
    "(1, (2))",
    "'it''s, ok)'",
]
separators = st.sampled_from([" ", "\n", "\t ", " /* ; */ ", " -- (\n"])
quoted_text = st.text(max_size=20).map(
    lambda t: "'" + t.replace("\\", "\\\\").replace("'", "\\'") + "'"
)
arguments = st.tuples(
    st.sampled_from([None, "returnType", "failOnError", "modelParameters"]),
    st.sampled_from(["=>", " => ", "=> "]),
    st.one_of(st.sampled_from(ARG_EXPRESSIONS), quoted_text),
)


@st.composite
def calls(draw: st.DrawFn) -> tuple[str, list[tuple[str | None, str]]]:
    name = draw(st.sampled_from(["ai_query", "AI_QUERY", "Ai_Query"]))
    gap = draw(st.sampled_from(["", " ", "\n", " /* ( */ ", " -- )\n"]))
    args = draw(st.lists(arguments, max_size=4))
    rendered = [expr if key is None else f"{key}{arrow}{expr}" for key, arrow, expr in args]
    joined = draw(st.sampled_from([",", ", ", " ,\n  "])).join(rendered)
    return f"{name}{gap}({joined})", [(key, expr) for key, _, expr in args]


pieces = st.lists(
    st.one_of(st.sampled_from(DECOYS).map(lambda d: (d, None)), calls()),
    max_size=10,
)


@given(pieces, st.data())
def test_only_inserted_calls_are_found_and_everything_else_is_preserved(
    parts: list[tuple[str, list[tuple[str | None, str]] | None]], data: st.DataObject
) -> None:
    sql = marked = ""
    inserted: list[tuple[int, str, list[tuple[str | None, str]]]] = []
    for text, args in parts:
        gap = data.draw(separators)
        sql += gap
        marked += gap
        if args is None:
            sql += text
            marked += text
        else:
            marked += f"\x00{len(inserted)}\x00"
            inserted.append((len(sql), text, args))
            sql += text

    found = find_calls(sql, AI)

    assert [(c.start, sql[c.start : c.end]) for c in found] == [(s, t) for s, t, _ in inserted]
    assert [arg_pairs(c) for c in found] == [args for _, _, args in inserted]
    replaced = replace_spans(sql, [(c.start, c.end, f"\x00{i}\x00") for i, c in enumerate(found)])
    assert replaced == marked
    restored = replaced
    for i, (_, text, _) in enumerate(inserted):
        restored = restored.replace(f"\x00{i}\x00", text)
    assert restored == sql


@given(st.lists(st.lists(st.sampled_from(DECOYS), max_size=4), min_size=1, max_size=5))
def test_split_statements_returns_each_statement_unchanged(bodies: list[list[str]]) -> None:
    statements = ["SELECT " + " ".join(body) + " 1" for body in bodies]
    assert split_statements(";\n".join(statements) + ";") == statements
