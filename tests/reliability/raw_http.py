"""Raw HTTP/1.1 against the test emulator, for test_emulator_auth.py and test_emulator_abuse.py.

Not a test module: tests/reliability/conftest.py keeps this directory importable.
"""

from __future__ import annotations

import socket

# The chat request these tests send, and what the emulator answers it.
CHAT_PATH = "/serving-endpoints/databricks-gpt-5-4/invocations"
CHAT = {"messages": [{"role": "user", "content": "Summarize: Spark runs jobs. It is fast."}]}
ANSWER = "Spark runs jobs."


def read_response(sock: socket.socket) -> tuple[int | None, bytes]:
    """Status and body of one HTTP/1.1 response; None when the server closed without one."""
    data = b""
    while b"\r\n\r\n" not in data:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            return None, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    fields = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
    length = int(fields.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), body
