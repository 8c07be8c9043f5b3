"""The scheduled batch notebooks, executed headless as a scheduler runs them, run after run.

Each notebook runs in a Jupyter kernel (another process, with its own Spark session), so
everything checked here is observed from outside it: the test emulator's request log
(the kernel reaches it through DATABRICKS_HOST/DATABRICKS_TOKEN), and the output and usage
Delta tables, read with delta-rs. One kernel (one JVM start) serves the module: each
notebook runs there several times, as "Run All" again would and as a job on a long-lived
cluster does. Python state carries over between runs, so each run after the first must
find its work in the Delta tables alone.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import nbformat
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake
from jupyter_client import KernelManager

from aiquery.protocols.common import Message
from aiquery.serving.control import EmulatorControl
from aiquery.serving.embedding import embed
from aiquery.serving.models import chat_reply
from aiquery.serving.server import EmulatorServer
from aiquery.usage.report import load_rows

pytestmark = [pytest.mark.spark, pytest.mark.timeout(900)]

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
JOB_TAGS = '{"job": "nightly-test", "team": "data-eng"}'


def _load_runner() -> ModuleType:
    spec = importlib.util.spec_from_file_location("run_notebook", NOTEBOOKS / "run_notebook.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


runner = _load_runner()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The kernel's working directory; its Spark warehouse (and usage table) is in it."""
    return tmp_path_factory.mktemp("notebooks")


@pytest.fixture(scope="module")
def kernel(emulator_server: EmulatorServer, workdir: Path) -> Iterator[KernelManager]:
    """A python3 kernel whose aiquery sends the databricks-* names to the test emulator."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AIQUERY_", "DATABRICKS_"))
    }
    env.update(DATABRICKS_HOST=emulator_server.url, DATABRICKS_TOKEN=emulator_server.token)
    km = KernelManager(kernel_name="python3")
    km.start_kernel(env=env, cwd=str(workdir))
    yield km
    km.shutdown_kernel()


def run(km: KernelManager, notebook: str, workdir: Path, **parameters: Any) -> None:
    """One scheduled run; the executed notebook is kept in `workdir/runs` for debugging."""
    parameters = {"warehouse": str(workdir / "warehouse"), "request_tags": JOB_TAGS, **parameters}
    runner.execute_notebook(
        NOTEBOOKS / notebook,
        parameters,
        output=workdir / "runs" / f"{parameters['run_id']}.ipynb",
        km=km,
        timeout=600,
    )


def rows_by_id(path: Path) -> dict[int, dict[str, Any]]:
    return {row["id"]: row for row in DeltaTable(str(path)).to_pyarrow_table().to_pylist()}


def received(control: EmulatorControl, run_id: str) -> list[dict[str, Any]]:
    """The requests the emulator got with this run's tag."""
    return [r for r in control.requests() if (r["request_tags"] or {}).get("run_id") == run_id]


def usage(workdir: Path, run_id: str) -> list[dict[str, Any]]:
    """The run's rows of the usage table (system.ai_gateway.usage) in the kernel's warehouse."""
    rows = load_rows(workdir / "warehouse" / "ai_gateway.db" / "usage")
    return [r for r in rows if (r["request_tags"] or {}).get("run_id") == run_id]


def assert_usage_matches_requests(workdir: Path, sent: list[dict[str, Any]], run_id: str) -> None:
    recorded = usage(workdir, run_id)
    assert sorted(r["request_id"] for r in recorded) == sorted(r["request_id"] for r in sent)
    for row in recorded:
        assert row["request_tags"] == {"job": "nightly-test", "team": "data-eng", "run_id": run_id}


def summary_of(text: str) -> str:
    return chat_reply([Message("user", "Summarize: " + text)]).text


def test_summarize_reviews_runs_incrementally_and_retries_failed_rows(
    kernel: KernelManager, control: EmulatorControl, workdir: Path, tmp_path: Path
) -> None:
    source, output = tmp_path / "reviews", tmp_path / "summaries"
    params = {"source_table": str(source), "output_table": str(output)}

    # Run 1 creates the sample source and summarizes every review, one request each.
    run(kernel, "summarize_reviews.ipynb", workdir, run_id="summarize-1", **params)
    texts = {r["id"]: r["text"] for r in DeltaTable(str(source)).to_pyarrow_table().to_pylist()}
    assert 50 <= len(texts) <= 200
    out = rows_by_id(output)
    assert sorted(out) == sorted(texts)
    for i, row in out.items():
        assert row["summary"] == summary_of(texts[i]) and row["summary"]
        assert (row["error_message"], row["attempts"], row["run_id"]) == (None, 1, "summarize-1")
        assert row["endpoint"] == "databricks-gpt-5-4"
    sent = received(control, "summarize-1")
    assert len(sent) == len(texts) and {r["status"] for r in sent} == {200}
    assert {r["endpoint"] for r in sent} == {"databricks-gpt-5-4"}
    assert_usage_matches_requests(workdir, sent, "summarize-1")

    # Run 2: nothing new. No request at all, and no new version of the output table.
    version = DeltaTable(str(output)).version()
    logged = len(control.requests())
    run(kernel, "summarize_reviews.ipynb", workdir, run_id="summarize-2", **params)
    assert len(control.requests()) == logged
    assert DeltaTable(str(output)).version() == version
    assert rows_by_id(output) == out
    assert usage(workdir, "summarize-2") == []

    # Run 3: three new reviews; one is too large to send (a payload over the 4 MB limit),
    # so only two requests go out and the third row is stored with its error.
    new = {
        9001: "The replacement strap arrived quickly. It fits the watch perfectly.",
        9002: "Setup took an hour longer than promised. The manual skips two steps.",
        9003: "Too long to send. " + "word " * 1_000_000,
    }
    write_deltalake(str(source), _source_rows(source, new), mode="append")
    run(kernel, "summarize_reviews.ipynb", workdir, run_id="summarize-3", **params)
    sent = received(control, "summarize-3")
    assert len(sent) == 2 and {r["status"] for r in sent} == {200}
    assert_usage_matches_requests(workdir, sent, "summarize-3")
    after = rows_by_id(output)
    assert {i: after[i] for i in out} == out  # the first 120 were not touched
    for i in (9001, 9002):
        assert after[i]["summary"] == summary_of(new[i])
        assert (after[i]["error_message"], after[i]["run_id"]) == (None, "summarize-3")
    failed = after[9003]
    assert failed["summary"] is None and failed["attempts"] == 1
    assert "4 MB limit" in failed["error_message"] and "word word" not in failed["error_message"]

    # Run 4: someone shortened the bad review; only it is sent again, and now succeeds.
    fixed = "Shortened by support. The original was a paste accident."
    DeltaTable(str(source)).update(predicate="id = 9003", updates={"text": f"'{fixed}'"})
    run(kernel, "summarize_reviews.ipynb", workdir, run_id="summarize-4", **params)
    sent = received(control, "summarize-4")
    assert len(sent) == 1 and sent[0]["status"] == 200
    assert_usage_matches_requests(workdir, sent, "summarize-4")
    final = rows_by_id(output)
    assert final[9003]["summary"] == summary_of(fixed)
    assert (final[9003]["error_message"], final[9003]["attempts"]) == (None, 2)
    assert {i: r for i, r in final.items() if i != 9003} == {
        i: r for i, r in after.items() if i != 9003
    }


def _source_rows(source: Path, texts: dict[int, str]) -> pa.Table:
    """New rows for the source table, with its own schema (product, rating, date filled in)."""
    schema = DeltaTable(str(source)).schema().to_arrow()
    rows = [
        {"id": i, "product": "Trailhead hiking boots", "rating": 3, "review_date": None, "text": t}
        for i, t in texts.items()
    ]
    return pa.Table.from_pylist(rows, schema=pa.schema(schema))


def test_embed_documents_runs_in_chunks_then_sends_nothing(
    kernel: KernelManager, control: EmulatorControl, workdir: Path, tmp_path: Path
) -> None:
    source, output = tmp_path / "documents", tmp_path / "embeddings"
    params = {"source_table": str(source), "output_table": str(output)}

    # Run 1 creates the sample source and embeds the first 50 documents only (row_limit).
    run(kernel, "embed_documents.ipynb", workdir, run_id="embed-1", row_limit=50, **params)
    texts = {r["id"]: r["text"] for r in DeltaTable(str(source)).to_pyarrow_table().to_pylist()}
    assert len(texts) > 50
    first = rows_by_id(output)
    assert sorted(first) == sorted(texts)[:50]
    sent = received(control, "embed-1")
    assert sum(r["items"] for r in sent) == 50 and {r["status"] for r in sent} == {200}
    assert_usage_matches_requests(workdir, sent, "embed-1")
    assert sum(r["rows"] for r in usage(workdir, "embed-1")) == 50

    # Run 2 embeds the rest, sending only those.
    run(kernel, "embed_documents.ipynb", workdir, run_id="embed-2", **params)
    sent = received(control, "embed-2")
    assert sum(r["items"] for r in sent) == len(texts) - 50
    assert_usage_matches_requests(workdir, sent, "embed-2")
    out = rows_by_id(output)
    assert sorted(out) == sorted(texts)
    assert {i: out[i] for i in first} == first
    for i, row in out.items():
        assert row["error_message"] is None and row["attempts"] == 1
        assert row["run_id"] == ("embed-1" if i in first else "embed-2")
        vector = row["embedding"]
        assert len(vector) == 1024
        assert vector == pytest.approx(embed(texts[i], 1024), abs=1e-6)

    # Run 3: nothing new. No request, and no new version of the output table.
    version = DeltaTable(str(output)).version()
    logged = len(control.requests())
    run(kernel, "embed_documents.ipynb", workdir, run_id="embed-3", **params)
    assert len(control.requests()) == logged
    assert DeltaTable(str(output)).version() == version
    assert usage(workdir, "embed-3") == []


def test_the_notebooks_are_stored_clean_with_a_papermill_parameters_cell() -> None:
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(not c.outputs and c.execution_count is None for c in code), path.name
        assert "parameters" in code[0].metadata.get("tags", []), path.name
        assert nb.metadata["kernelspec"]["name"] == "python3"
        names = {line.split("=")[0].strip() for line in code[0].source.splitlines() if "=" in line}
        assert {
            "source_table",
            "endpoint",
            "output_table",
            "request_tags",
            "row_limit",
            "warehouse",
            "create_sample_source",
        } <= names, path.name


def test_injected_parameters_follow_the_parameters_cell_as_papermill_puts_them() -> None:
    nb = nbformat.read(NOTEBOOKS / "summarize_reviews.ipynb", as_version=4)
    at = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    runner.inject_parameters(nb, {"row_limit": 5, "request_tags": '{"job": "x"}'})
    runner.inject_parameters(nb, {"row_limit": 7})  # a second injection replaces the first
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and nb.cells[at + 1] is injected[0]
    assert "row_limit = 7\n" in injected[0].source and "request_tags" not in injected[0].source


def _probe_notebook(path: Path, *cells: str) -> Path:
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell(
                "greeting = 'default'\ncount = 1", metadata={"tags": ["parameters"]}
            ),
            *(nbformat.v4.new_code_cell(c) for c in cells),
        ],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}},
    )
    nbformat.write(nb, path)
    return path


def test_the_runner_starts_a_fresh_kernel_with_the_env_cwd_and_parameters_given(
    tmp_path: Path,
) -> None:
    probe = _probe_notebook(
        tmp_path / "probe.ipynb",
        "import os, pathlib\n"
        "print(os.environ['DATABRICKS_HOST'], pathlib.Path.cwd().name, greeting, count)",
    )
    (tmp_path / "jobdir").mkdir()
    env = {**os.environ, "DATABRICKS_HOST": "http://127.0.0.1:9"}
    done = runner.execute_notebook(
        probe, {"greeting": "hello", "count": 3}, cwd=tmp_path / "jobdir", env=env
    )
    assert done.cells[-1].outputs[0]["text"] == "http://127.0.0.1:9 jobdir hello 3\n"


def test_the_runner_cli_keeps_the_failed_notebook_and_exits_1(tmp_path: Path) -> None:
    probe = _probe_notebook(tmp_path / "probe.ipynb", "raise RuntimeError(f'{greeting} failed')")
    out = tmp_path / "runs" / "failed.ipynb"
    status = runner.main([str(probe), "-o", str(out), "-r", "greeting", "nightly"])
    assert status == 1
    error = nbformat.read(out, as_version=4).cells[-1].outputs[0]
    assert (error["ename"], error["evalue"]) == ("RuntimeError", "nightly failed")
