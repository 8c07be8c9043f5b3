"""Client CPU per request of the hot path's HTTP client against an aiohttp session.

    python -m benchmarks.http_client [--requests 10000] [--in-flight 1024] [--rounds 2]

Both clients POST the same ~2 KB chat requests (workload F's prompts) to the local emulator
at a fixed 200 ms latency, `--in-flight` at a time, each in a process of its own, so its CPU
(user + system, from `os.times`) is its own. Rounds alternate the clients. Figures only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from typing import Any

from benchmarks.throughput import long_prompt, start_emulator

ENDPOINT = "databricks-gpt-5-4"
CLIENTS = ("aiohttp", "aiquery")


async def _aiohttp(url: str, headers: dict[str, str], bodies: list[bytes], in_flight: int) -> int:
    import aiohttp

    pending, done = iter(bodies), 0
    connector = aiohttp.TCPConnector(limit=in_flight)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def worker() -> None:
            nonlocal done
            for body in pending:
                async with session.post(url, data=body) as response:
                    await response.read()
                    done += response.status == 200

        await asyncio.gather(*(worker() for _ in range(in_flight)))
    return done


async def _aiquery(url: str, headers: dict[str, str], bodies: list[bytes], in_flight: int) -> int:
    from aiquery.client.http1 import Http1Transport
    from aiquery.client.transport import Request

    pending, done = iter(bodies), 0
    transport = Http1Transport(in_flight)

    async def worker() -> None:
        nonlocal done
        for body in pending:
            response = await transport.send(Request(url, headers, body, 60.0))
            done += response.status == 200

    await asyncio.gather(*(worker() for _ in range(in_flight)))
    await transport.close()
    return done


def child(spec: dict[str, Any]) -> dict[str, Any]:
    bodies = [
        json.dumps({"messages": [{"role": "user", "content": long_prompt(i)}]}).encode()
        for i in range(spec["requests"])
    ]
    headers = {"Authorization": f"Bearer {spec['token']}", "Content-Type": "application/json"}
    run = _aiohttp if spec["client"] == "aiohttp" else _aiquery
    before, started = os.times(), time.perf_counter()
    done = asyncio.run(run(spec["url"], headers, bodies, spec["in_flight"]))
    seconds, after = time.perf_counter() - started, os.times()
    cpu = (after.user - before.user) + (after.system - before.system)
    return {
        "client": spec["client"],
        "ok": done,
        "cpu_ms_per_request": round(cpu * 1000 / max(1, done), 3),
        "requests_per_s": round(done / seconds),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--in-flight", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    results: dict[str, list[dict[str, Any]]] = {c: [] for c in CLIENTS}
    with start_emulator() as emulator:
        url = f"{emulator.url}/serving-endpoints/{ENDPOINT}/invocations"
        for _ in range(args.rounds):
            for client in CLIENTS:
                emulator.configure(ENDPOINT, 200.0)
                spec = {
                    "client": client,
                    "url": url,
                    "token": emulator.token,
                    "requests": args.requests,
                    "in_flight": args.in_flight,
                }
                finished = subprocess.run(
                    [sys.executable, "-m", "benchmarks.http_client", "--child", json.dumps(spec)],
                    capture_output=True,
                    text=True,
                    timeout=600,
                    check=True,
                )
                result = json.loads(finished.stdout.strip().splitlines()[-1])
                results[client].append(result)
                print(json.dumps(result))
    print(f"\n{args.requests:,} requests of ~2 KB, {args.in_flight} in flight, 200 ms latency")
    for client, runs in results.items():
        cpu = ", ".join(str(r["cpu_ms_per_request"]) for r in runs)
        rate = ", ".join(f"{r['requests_per_s']:,}" for r in runs)
        print(f"  {client:<8} client CPU ms/request {cpu}; requests/s {rate}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
