"""How many requests per second the emulator serves on one core.

Starts `aiquery serve` pinned to CPU 0 and drives it from this process pinned to the other
CPU(s) with a bounded aiohttp load loop (a fixed request count and a time cap), then prints
requests/s, latency percentiles and status counts, and writes them as JSON. The `stream`
route streams the chat answer as server-sent events and also reports the time to first byte.

    python -m benchmarks.serve_load [--requests 30000] [--concurrency 64]
                                    [--route chat|stream|embeddings] [--ttft-ms 0]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

BODIES: dict[str, tuple[str, dict[str, Any]]] = {
    "chat": (
        "/serving-endpoints/databricks-gpt-5-4/invocations",
        {
            "messages": [
                {"role": "user", "content": "Summarize: a short benchmark prompt. Two sentences."}
            ]
        },
    ),
    "stream": (
        "/serving-endpoints/databricks-gpt-5-4/invocations",
        {
            "messages": [
                {"role": "user", "content": "Summarize: a short benchmark prompt. Two sentences."}
            ],
            "stream": True,
        },
    ),
    "embeddings": (
        "/serving-endpoints/databricks-gte-large-en/invocations",
        {"input": ["a short text to embed"]},
    ),
}


def start_server(cpu: int | None, ttft_ms: float) -> tuple[subprocess.Popen[str], str, str]:
    command = [sys.executable, "-m", "aiquery.cli", "serve", "--port", "0"]
    command += ["--ttft-ms", str(ttft_ms)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    if cpu is not None:
        os.sched_setaffinity(process.pid, {cpu})
    assert process.stdout is not None
    url = process.stdout.readline().rsplit(" ", 1)[1].strip()
    token = process.stdout.readline().removeprefix("token: ").strip()
    return process, url, token


async def drive(
    url: str, token: str, route: str, requests: int, concurrency: int, seconds: float
) -> dict[str, Any]:
    path, body = BODIES[route]
    payload = json.dumps(body).encode()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    latencies: list[float] = []
    first_bytes: list[float] = []
    statuses: Counter[int] = Counter()
    remaining = requests
    deadline = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(url, headers=headers, connector=connector) as session:

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0 and time.monotonic() < deadline:
                remaining -= 1
                start = time.perf_counter()
                async with session.post(path, data=payload) as response:
                    await response.content.readany()
                    first_bytes.append(time.perf_counter() - start)
                    await response.read()
                    statuses[response.status] += 1
                latencies.append(time.perf_counter() - start)

        # Warm up connections and code paths before timing.
        await asyncio.gather(*(session.post(path, data=payload) for _ in range(concurrency)))
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    first_bytes.sort()
    return {
        "route": route,
        "concurrency": concurrency,
        "requests": len(latencies),
        "seconds": round(elapsed, 3),
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 2),
        "p50_first_byte_ms": round(statistics.median(first_bytes) * 1000, 2),
        "statuses": {str(k): v for k, v in statuses.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=30_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=60.0, help="time cap of the load loop")
    parser.add_argument("--route", choices=sorted(BODIES), action="append")
    parser.add_argument("--ttft-ms", type=float, default=0.0, help="the emulator's --ttft-ms")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/serve_load.json"))
    args = parser.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    server_cpu = cpus[0] if len(cpus) > 1 else None
    if server_cpu is not None:
        os.sched_setaffinity(0, set(cpus[1:]))
    process, url, token = start_server(server_cpu, args.ttft_ms)
    try:
        results = [
            asyncio.run(drive(url, token, route, args.requests, args.concurrency, args.seconds))
            for route in args.route or ["chat", "stream", "embeddings"]
        ]
    finally:
        process.terminate()
        process.wait(timeout=10)
    print(
        f"emulator on {'1 pinned core' if server_cpu is not None else 'a shared core'}, load from the other"
    )
    print(
        f"{'route':<12}{'requests':>10}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'p50 1st byte':>14}  statuses"
    )
    for r in results:
        print(
            f"{r['route']:<12}{r['requests']:>10}{r['requests_per_s']:>10}{r['p50_ms']:>9}"
            f"{r['p99_ms']:>9}{r['p50_first_byte_ms']:>14}  {r['statuses']}"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
