"""A real Spark Connect server (with Delta) on a loopback port, for the connect tier."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyspark
import pytest

from aiquery.serving.server import EmulatorServer
from aiquery.spark.session import submit_args

SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def connect_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The server's directory: its log, and its warehouse (where the usage table lives)."""
    root: Path = tmp_path_factory.mktemp("connect")
    return root


@pytest.fixture(scope="session")
def connect_url(connect_root: Path, emulator_server: EmulatorServer) -> Iterator[str]:
    """The server is started with `aiquery jvm --args` (Delta, ai_query's SQL extension, the
    system catalog); with no Python driver there, its Python companion analyses calls and
    resolves endpoints from the server's environment (the test emulator's)."""
    root = connect_root
    port = _free_port()
    conf = {
        "spark.connect.grpc.binding.address": "127.0.0.1",
        "spark.connect.grpc.binding.port": str(port),
        "spark.sql.warehouse.dir": str(root / "warehouse"),
        "spark.driver.extraJavaOptions": f"-Dderby.system.home={root / 'derby'}",
        "spark.ui.enabled": "false",
        "spark.sql.shuffle.partitions": "4",
        "spark.databricks.delta.snapshotPartitions": "2",
    }
    command = [
        str(Path(pyspark.__file__).parent / "bin" / "spark-submit"),
        *("--class", SERVER_CLASS, "--master", "local[2]", *submit_args()),
        *(arg for key, value in conf.items() for arg in ("--conf", f"{key}={value}")),
        "spark-internal",
    ]
    log = (root / "server.log").open("wb")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIQUERY_", "DATABRICKS_"))}
    env.update(
        DATABRICKS_HOST=emulator_server.url,
        DATABRICKS_TOKEN=emulator_server.token,
        PYSPARK_PYTHON=sys.executable,
    )
    server = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env
    )
    try:
        deadline = time.monotonic() + 240
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"the Spark Connect server exited; see {root / 'server.log'}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the Spark Connect server did not start in 240 s") from None
                time.sleep(0.5)
        yield f"sc://127.0.0.1:{port}"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()
