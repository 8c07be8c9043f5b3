"""The sql/ examples run as `aiquery run` runs them, and the CLI's SQL commands and errors."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aiquery.cli.script import ScriptError, run_script
from aiquery.serving.control import EmulatorControl
from aiquery.serving.server import EmulatorServer

pytestmark = pytest.mark.spark
ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted((ROOT / "sql").glob("*.sql"))


@pytest.fixture(autouse=True)
def _in_tmp(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # the scripts write under ./spark-warehouse


def run(spark, path: Path) -> str:  # type: ignore[no-untyped-def]
    out = io.StringIO()
    try:
        run_script(spark, path.read_text(), out=out)
    finally:
        spark.conf.unset("aiquery.requestTags")
    return out.getvalue()


def test_there_are_ten_examples() -> None:
    assert [p.name[:2] for p in SCRIPTS] == [f"{i:02d}" for i in range(1, 11)]


def test_every_example_runs_in_order(spark, workspace, control: EmulatorControl) -> None:  # type: ignore[no-untyped-def]
    outputs = {p.name[:2]: run(spark, p) for p in SCRIPTS}
    # 01: four tickets summarised, each the first sentence of its body.
    assert "My order arrived two weeks late." in outputs["01"]
    assert outputs["01"].count("\n") >= 4
    # 02: typed struct from returnType, labels from the schema's enum.
    for label in ("'sentiment': 'positive'", "'sentiment': 'negative'", "'sentiment': 'neutral'"):
        assert label in outputs["02"]
    # 03: from_json columns.
    assert "vendor" in outputs["03"] and "INV-1002" in outputs["03"]
    # 04: 1024-dimension embeddings written to Delta and read back.
    assert outputs["04"].count("1,024") == 3
    # 05: a NULL prompt is "no input", the others are "ok".
    lines = [line.split() for line in outputs["05"].splitlines() if line.strip()[:1].isdigit()]
    assert [line[-1] for line in lines] == ["ok", "input", "ok"]  # "no input" splits in two
    # 06/07: the usage table answers, with this run's requests by endpoint and by script tag.
    assert "databricks-gpt-5-4" in outputs["06"] and "databricks-gte-large-en" in outputs["06"]
    for script in ("summarize", "classify", "extract", "embeddings", "errors"):
        assert script in outputs["07"]
    # 08-10: Databricks' AI functions.
    assert "billing" in outputs["08"] and '"response":["shipping"]' in outputs["08"].replace(
        " ", ""
    )
    assert "billing@acme.example" in outputs["09"] and "1250.0" in outputs["09"]
    assert "Acme Corp" in outputs["09"]
    assert "[MASKED] lives in New York. His email is [MASKED]." in outputs["10"]
    assert "Call [MASKED] at [MASKED] or write to [MASKED]." in outputs["10"]
    tags = {r["request_tags"]["script"] for r in control.requests()}
    assert tags == {"summarize", "classify", "extract", "embeddings", "errors", "ai_classify",
                    "ai_extract", "ai_mask"}  # fmt: skip


def test_a_failing_statement_names_itself_and_the_cause(
    spark, workspace, control: EmulatorControl
) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ScriptError) as caught:
        run_script(spark, "SELECT 1; SELECT ai_query('no-such-endpoint', 'x')", out=io.StringIO())
    assert "statement 2 failed" in str(caught.value)
    assert "AI_FUNCTION_ENDPOINT_NOT_FOUND" in str(caught.value)
    assert control.requests() == []


def cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aiquery.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env},
        cwd=cwd,
    )


def test_cli_run_and_sql_report_results_and_errors(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    env = {"DATABRICKS_HOST": emulator.url, "DATABRICKS_TOKEN": emulator.token}
    ok = cli(
        "run",
        str(ROOT / "sql" / "01_summarize.sql"),
        str(ROOT / "sql" / "07_usage_by_tag.sql"),
        env=env,
        cwd=tmp_path,
    )
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "My order arrived two weeks late." in ok.stdout
    assert "summarize" in ok.stdout.split("07_usage_by_tag.sql", 1)[1]

    bad = cli(
        "sql",
        "SELECT 1;\nSELEC ai_query('databricks-gpt-5-4', 'x')",
        "--no-progress",
        env=env,
        cwd=tmp_path,
    )
    assert bad.returncode == 1
    assert "statement 2 failed" in bad.stderr and "PARSE_SYNTAX_ERROR" in bad.stderr
    assert "at org.apache" not in bad.stderr and "Traceback" not in bad.stderr

    missing = cli("run", "nope.sql", env=env, cwd=tmp_path)
    assert missing.returncode == 2 and "no such SQL file: nope.sql" in missing.stderr


def test_cli_endpoints_lists_where_names_point_without_the_token(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    listing = cli(
        "endpoints",
        env={"DATABRICKS_HOST": emulator.url, "DATABRICKS_TOKEN": emulator.token},
        cwd=tmp_path,
    )
    assert listing.returncode == 0
    assert "databricks-gpt-5-4" in listing.stdout and emulator.url in listing.stdout
    assert emulator.token not in listing.stdout + listing.stderr
    embedded = cli("endpoints", env={"DATABRICKS_HOST": "", "DATABRICKS_TOKEN": ""}, cwd=tmp_path)
    assert "embedded local emulator" in embedded.stdout
