"""Spark servers (Connect, Thrift) started by the connect tier: on a loopback port, with the
test emulator's endpoints in their environment, stopped at the end."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from aiquery.serving.server import EmulatorServer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running(
    name: str, command: list[str], port: int, root: Path, emulator: EmulatorServer
) -> Iterator[None]:
    """`command` running until the block ends, once it listens on `port`; its output in
    `root/server.log`. Endpoints come from its environment: the test emulator's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIQUERY_", "DATABRICKS_"))}
    env.update(
        DATABRICKS_HOST=emulator.url, DATABRICKS_TOKEN=emulator.token, PYSPARK_PYTHON=sys.executable
    )
    with (root / "server.log").open("wb") as log:
        server = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root, start_new_session=True
        )
        try:
            deadline = time.monotonic() + 240
            while True:
                if server.poll() is not None:
                    raise RuntimeError(f"the {name} exited; see {root / 'server.log'}")
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"the {name} did not start in 240 s") from None
                    time.sleep(0.5)
            yield
        finally:
            os.killpg(server.pid, signal.SIGTERM)  # its companion commits the last usage
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
