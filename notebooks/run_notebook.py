"""Run a notebook headless with parameters, the way a scheduler does (papermill-compatible).

    python notebooks/run_notebook.py notebooks/summarize_reviews.ipynb \\
        -p source_table data/reviews -p row_limit 500 -o runs/summarize-2026-11-01.ipynb

The notebook's cell tagged `parameters` keeps its defaults; a new cell tagged
`injected-parameters` is inserted right after it with the values given, exactly as
papermill does, so `papermill notebook.ipynb out.ipynb -p row_limit 500` works the same.
`-p NAME VALUE` reads VALUE as a Python literal when it is one (`500`, `None`, `True`),
else as a string; `-r NAME VALUE` always takes a string.

The executed notebook (with outputs, also when a cell failed) is written to `-o`; the
exit status is 1 when a cell raised, so the scheduler sees the failure.
"""

from __future__ import annotations

import argparse
import ast
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nbformat
from jupyter_client import KernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"


def inject_parameters(
    nb: nbformat.NotebookNode, parameters: Mapping[str, Any]
) -> nbformat.NotebookNode:
    """Insert (or replace) the `injected-parameters` cell after the `parameters` cell."""
    cells = [c for c in nb.cells if INJECTED_TAG not in c.metadata.get("tags", [])]
    at = next(
        (i for i, c in enumerate(cells) if PARAMETERS_TAG in c.metadata.get("tags", [])), None
    )
    if at is None:
        raise ValueError("the notebook has no cell tagged 'parameters'")
    lines = "".join(f"{name} = {value!r}\n" for name, value in parameters.items())
    source = "# Parameters\n" + lines
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": [INJECTED_TAG]})
    cells.insert(at + 1, cell)
    nb.cells = cells
    return nb


def execute_notebook(
    path: str | Path,
    parameters: Mapping[str, Any] | None = None,
    *,
    output: str | Path | None = None,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    kernel_name: str = "python3",
    timeout: int = 1800,
    km: KernelManager | None = None,
) -> nbformat.NotebookNode:
    """Execute the notebook at `path` in a fresh kernel and return it with its outputs.

    `cwd` is the kernel's working directory (default: the notebook's folder); `env` its
    whole environment (default: this process's). Raises `CellExecutionError` when a cell
    fails, after writing the partly executed notebook to `output`.

    `km`, a kernel already started, runs the notebook in that kernel instead and leaves it
    running, as "Run All" again in an open notebook does (`cwd` and `env` are then the
    kernel's own); the Spark session started by an earlier run is reused.
    """
    nb = nbformat.read(path, as_version=4)
    if parameters:
        inject_parameters(nb, parameters)
    workdir = Path(cwd) if cwd is not None else Path(path).resolve().parent
    client = NotebookClient(
        nb,
        km=km,
        kernel_name=kernel_name,
        timeout=timeout,
        resources={"metadata": {"path": str(workdir)}},
    )
    try:
        client.execute(
            **({} if km is not None else {"env": dict(os.environ if env is None else env)})
        )
    finally:
        if output is not None:
            Path(output).parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, output)
    return nb


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebook")
    parser.add_argument("-o", "--output", help="where to write the executed notebook")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                        metavar=("NAME", "VALUE"), help="a parameter, read as a Python literal")  # fmt: skip
    parser.add_argument("-r", "--raw", nargs=2, action="append", default=[],
                        metavar=("NAME", "VALUE"), help="a parameter, always a string")  # fmt: skip
    parser.add_argument("--cwd", help="the kernel's working directory (default: the notebook's)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    args = parser.parse_args(argv)
    parameters: dict[str, Any] = {name: _literal(value) for name, value in args.parameter}
    parameters.update(dict(args.raw))
    try:
        execute_notebook(
            args.notebook, parameters, output=args.output, cwd=args.cwd, timeout=args.timeout
        )
    except CellExecutionError as e:
        print(f"{args.notebook}: a cell failed\n{e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
