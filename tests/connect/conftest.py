"""A real Spark Connect server (with Delta) on a loopback port, for the connect tier."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyspark
import pytest
from spark_servers import free_port, running

from aiquery.serving.server import EmulatorServer
from aiquery.spark.session import submit_args

SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"


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
    port = free_port()
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
    with running("Spark Connect server", command, port, root, emulator_server):
        yield f"sc://127.0.0.1:{port}"
