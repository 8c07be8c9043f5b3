"""A self-contained loopback load generator, run by test_emulator_abuse.py as a subprocess.

    python flood_client.py PORT LIMIT SECONDS CONNECTIONS    (the model token in FLOOD_TOKEN)

CONNECTIONS workers send malformed requests of four kinds, in turn, over raw asyncio sockets,
until LIMIT requests are sent or SECONDS have passed. Prints what each kind of request got
back as JSON: {"sent": n, "seconds": s, "answers": {kind: {status: count}}}, where the
status "None" means no answer within 10 s, or the connection was closed.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections import Counter

PATH = "/serving-endpoints/databricks-gpt-5-4/invocations"


def post(token: str, body: bytes, auth: bool) -> bytes:
    head = f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
    return (head + (f"Authorization: Bearer {token}\r\n" if auth else "") + "\r\n").encode() + body


def request_kinds(token: str) -> dict[str, bytes]:
    return {
        "no token": post(token, b"{}", False),
        "invalid json": post(token, b"{not json", True),
        "deep json": post(token, b"[" * 5000, True),
        "invalid http": b"\x16\x03\x01 NOT HTTP AT ALL\r\n\r\n",
    }


async def response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = 0
    for line in lines[1:]:
        if line.lower().startswith("content-length:"):
            length = int(line.split(":", 1)[1])
    await reader.readexactly(length)
    return int(lines[0].split()[1])


class Flood:
    """What the workers share: the request count and its bound, the deadline, the answers."""

    def __init__(self, port: int, limit: int, seconds: float, kinds: dict[str, bytes]) -> None:
        self.port = port
        self.limit = limit
        self.kinds = kinds
        self.order = list(kinds)
        self.answers: dict[str, Counter[str]] = {k: Counter() for k in kinds}
        self.sent = 0
        self.deadline = time.monotonic() + seconds

    async def worker(self) -> None:
        writer = None
        while self.sent < self.limit and time.monotonic() < self.deadline:
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            kind = self.order[self.sent % len(self.order)]
            self.sent += 1
            writer.write(self.kinds[kind])
            try:
                status: int | None = await asyncio.wait_for(response(reader), 10)
            except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                status = None
            self.answers[kind][str(status)] += 1
            if status is None or kind == "invalid http":  # the server closes after invalid HTTP
                writer.close()
                writer = None
        if writer is not None:
            writer.close()

    async def run(self, conns: int) -> None:
        await asyncio.gather(*(self.worker() for _ in range(conns)))


def main(argv: list[str]) -> None:
    port, limit, seconds, conns = int(argv[1]), int(argv[2]), float(argv[3]), int(argv[4])
    flood = Flood(port, limit, seconds, request_kinds(os.environ["FLOOD_TOKEN"]))
    started = time.monotonic()
    asyncio.run(flood.run(conns))
    answers = {k: dict(v) for k, v in flood.answers.items()}
    print(
        json.dumps({"sent": flood.sent, "seconds": time.monotonic() - started, "answers": answers})
    )


if __name__ == "__main__":
    main(sys.argv)
