"""Does `aiquery usage` exit cleanly, run after run? (issue 16: deltalake aborted ~40% at exit)

Runs `aiquery usage --table T` (the summary) and `aiquery usage dashboard` against a usage
table, `--runs` times in a row, and counts exit codes: 0 is a clean exit, -6 an abort
(SIGABRT, "terminate called without an active exception"), anything else a failure. The
table is the one `aiquery demo` leaves in `spark-warehouse/` (run it first), or `--table`.
Prints the counts and the mean time per run; nothing is asserted.

    python -m benchmarks.cli_exit [--runs 200] [--table spark-warehouse/ai_gateway.db/usage]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--table", default="spark-warehouse/ai_gateway.db/usage")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/cli_exit.json"))
    args = parser.parse_args(argv)
    if not (Path(args.table) / "_delta_log").is_dir():
        print(f"no usage table at {args.table}: run `aiquery demo` first, or pass --table")
        return 2
    codes: Counter[int] = Counter()
    errors: list[str] = []
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        for run in range(args.runs):
            command = ["usage", "--table", args.table]
            if run % 2:  # every other run writes the dashboard
                command = [
                    "usage",
                    "dashboard",
                    "--table",
                    args.table,
                    "--out",
                    f"{scratch}/u.html",
                ]
            done = subprocess.run(
                [sys.executable, "-m", "aiquery.cli", *command],
                capture_output=True,
                text=True,
                timeout=120,
            )
            codes[done.returncode] += 1
            if done.returncode != 0 and len(errors) < 3:
                errors.append(done.stderr[-500:])
    seconds = time.perf_counter() - began
    report = {
        "runs": args.runs,
        "clean": codes[0],
        "aborted": codes[-6],
        "other": sum(n for code, n in codes.items() if code not in (0, -6)),
        "exit_codes": {str(code): n for code, n in sorted(codes.items())},
        "mean_s_per_run": round(seconds / max(1, args.runs), 3),
    }
    print(json.dumps(report, indent=2))
    for text in errors:
        print(f"--- stderr of a failed run:\n{text}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
