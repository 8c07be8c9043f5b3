"""A real Spark standalone cluster on loopback: a master and two workers, each worker with its
own work directory, HOME and loopback address (127.0.0.1 and 127.0.0.2, so two hosts as
Spark sees them), started with the `spark-class` that PySpark ships; and an S3 server (moto's server mode, its
own process on loopback) for jobs whose tables live on `s3a://`.

The tests import the helpers of `standalone.py` by plain name (this directory is put on
sys.path below, as pytest's default import mode does anyway).
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = str(Path(__file__).parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from standalone import (  # noqa: E402
    SPARK_CLASS,
    Cluster,
    ObjectStorage,
    answers,
    free_port,
    start,
    wait,
)


@pytest.fixture(scope="session")
def object_storage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObjectStorage]:
    """moto's S3 server as its own process on a loopback port (no AWS account, no internet)."""
    import urllib.request

    root: Path = tmp_path_factory.mktemp("s3")
    port = free_port()
    server = start(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        root / "moto.log",
        dict(os.environ),
    )

    def up() -> bool:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).close()
            return True
        except OSError:
            return False

    try:
        wait(up, "the S3 server", [server])
        yield ObjectStorage(f"http://127.0.0.1:{port}")
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root: Path = tmp_path_factory.mktemp("cluster")
    port, web = free_port(), free_port()
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1"}
    processes = [
        start(
            [SPARK_CLASS, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
             "--port", str(port), "--webui-port", str(web)],
            root / "master.log",
            env,
        )
    ]  # fmt: skip
    found = Cluster(f"spark://127.0.0.1:{port}", f"http://127.0.0.1:{web}", root)
    try:
        wait(lambda: answers(found), "the master's web UI", processes)
        for n in (1, 2):
            home = root / f"worker{n}-home"
            home.mkdir()
            processes.append(
                start(
                    [SPARK_CLASS, "org.apache.spark.deploy.worker.Worker", "--host", f"127.0.0.{n}",
                     "--cores", "1", "--memory", "1g", "--webui-port", "0",
                     "--work-dir", str(root / f"worker{n}-work"), found.master_url],
                    root / f"worker{n}.log",
                    # Each worker (and its executors) on its own loopback address: two
                    # hosts, as Spark sees them, so speculative copies have somewhere to go.
                    {**env, "HOME": str(home), "SPARK_LOCAL_IP": f"127.0.0.{n}"},
                )
            )  # fmt: skip
        wait(
            lambda: sum(w["state"] == "ALIVE" for w in found.state()["workers"]) == 2,
            "two workers registered",
            processes,
        )
        yield found
    finally:
        for process in processes:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
