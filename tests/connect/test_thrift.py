"""ai_query over JDBC: a Spark Thrift server (no Python driver) with aiquery's SQL extension,
on a loopback port, queried with the `beeline` that ships in PySpark's `bin/`."""

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

from aiquery.protocols.common import Message
from aiquery.serving.control import EmulatorControl
from aiquery.serving.models import chat_reply
from aiquery.serving.server import EmulatorServer
from aiquery.spark.extension import EXTENSION_CLASS, extension_jar

pytestmark = pytest.mark.connect

BIN = Path(pyspark.__file__).parent / "bin"
SERVER_CLASS = "org.apache.spark.sql.hive.thriftserver.HiveThriftServer2"


@pytest.fixture(scope="module")
def jdbc_url(
    tmp_path_factory: pytest.TempPathFactory, emulator_server: EmulatorServer
) -> Iterator[str]:
    root: Path = tmp_path_factory.mktemp("thrift")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIQUERY_", "DATABRICKS_"))}
    env.update(
        DATABRICKS_HOST=emulator_server.url,
        DATABRICKS_TOKEN=emulator_server.token,
        PYSPARK_PYTHON=sys.executable,
    )
    command = [
        str(BIN / "spark-submit"), "--class", SERVER_CLASS, "--master", "local[1]",
        "--jars", str(extension_jar()),
        "--conf", f"spark.sql.extensions={EXTENSION_CLASS}",
        "--conf", f"spark.sql.warehouse.dir={root / 'warehouse'}",
        "--conf", f"spark.driver.extraJavaOptions=-Dderby.system.home={root / 'derby'}",
        "--conf", "spark.ui.enabled=false",
        "--hiveconf", f"hive.server2.thrift.port={port}",
        "--hiveconf", "hive.server2.thrift.bind.host=127.0.0.1",
        "spark-internal",
    ]  # fmt: skip
    log = (root / "server.log").open("wb")
    server = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 240
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"the Thrift server exited; see {root / 'server.log'}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the Thrift server did not start in 240 s") from None
                time.sleep(0.5)
        yield f"jdbc:hive2://127.0.0.1:{port}"
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
        log.close()


def beeline(url: str, statement: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "beeline"), "-u", url, "--silent=true", "--outputformat=csv2", "-e", statement],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_ai_query_over_jdbc_with_the_whole_syntax(
    jdbc_url: str, emulator: EmulatorServer, control: EmulatorControl
) -> None:
    prompt = "Summarize: Asked over JDBC. Answered anyway."
    done = beeline(
        jdbc_url,
        f"SELECT ai_query(request => '{prompt}', endpoint => 'databricks-gpt-5-4', "
        "failOnError => false).result AS a;",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert chat_reply([Message("user", prompt)]).text in done.stdout.splitlines()
    assert len(control.requests()) == 1


def test_a_bad_call_over_jdbc_names_its_class_and_sends_nothing(
    jdbc_url: str, emulator: EmulatorServer, control: EmulatorControl
) -> None:
    done = beeline(jdbc_url, "SELECT ai_query('no-such-endpoint', 'x');")
    assert "AI_FUNCTION_ENDPOINT_NOT_FOUND" in done.stdout + done.stderr
    assert control.requests() == []
