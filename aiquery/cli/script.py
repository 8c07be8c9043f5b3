"""Running Databricks-style SQL scripts: statements split on `;`, each through `aiquery.sql`.

Used by `aiquery sql` and `aiquery run`; results print as plain-text tables.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, TextIO

from aiquery.spark import sqlscan
from aiquery.usage.report import format_table

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


class ScriptError(Exception):
    """A statement failed; the message names the statement and the reason, without a stack."""


def run_script(
    spark: SparkSession, text: str, *, out: TextIO | None = None, max_rows: int = 20
) -> int:
    """Run every statement of `text`; print each result. Returns the number of statements."""
    from aiquery.spark.sql import sql

    out = out or sys.stdout
    statements = sqlscan.split_statements(text)
    if not statements:
        raise ScriptError("no SQL statements found")
    for number, statement in enumerate(statements, start=1):
        try:
            df = sql(spark, statement)
            rows = df.limit(max_rows + 1).collect() if df.columns else []
        except Exception as e:
            raise ScriptError(f"statement {number} failed: {describe_error(e)}") from None
        if len(statements) > 1:
            first_line = statement.strip().splitlines()[0]
            out.write(f"-- [{number}] {first_line[:100]}\n")
        if df.columns:
            shown = [{c: _display(row[c]) for c in df.columns} for row in rows[:max_rows]]
            out.write(format_table(shown) if shown else "(no rows)")
            out.write("\n")
            if len(rows) > max_rows:
                out.write(f"(first {max_rows} rows shown)\n")
        else:
            out.write("OK\n")
    return len(statements)


def describe_error(error: BaseException) -> str:
    """The useful part of an error from aiquery or Spark, never a raw JVM stack trace."""
    from aiquery.errors import AiQueryError
    from aiquery.spark.sql import error_text

    if isinstance(error, AiQueryError):
        return str(error)
    text = error_text(error)
    if text.startswith(("[AI_", "[UNRECOGNIZED", "[AIQUERY")):
        return text
    message = str(error)
    # Spark's parse and analysis errors: keep the message and its position marker lines.
    lines = [line for line in message.splitlines() if line.strip()]
    kept = [
        line
        for line in lines
        if not line.lstrip().startswith(("at ", "JVM stacktrace", "org.apache"))
    ]
    return "\n".join(kept[:8]) or type(error).__name__


def _display(value: Any) -> Any:
    if isinstance(value, list | tuple) and len(value) > 4:
        head = ", ".join(_short(v) for v in value[:3])
        return f"[{head}, ... ({len(value)} items)]"
    if hasattr(value, "asDict"):
        return str(value.asDict(recursive=True))
    if isinstance(value, str) and len(value) > 80:
        return value[:77] + "..."
    return value


def _short(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)
