"""A Spark standalone cluster on loopback, as the cluster tier starts it (see conftest.py)."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyspark

SPARK_CLASS = str(Path(pyspark.__file__).parent / "bin" / "spark-class")


@dataclass(frozen=True)
class Cluster:
    master_url: str  # spark://127.0.0.1:<port>
    web_url: str  # the master's web UI, whose /json/ lists workers and applications
    root: Path

    def state(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.web_url}/json/", timeout=10) as answer:
            state: dict[str, Any] = json.load(answer)
        return state


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(command: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )


def answers(cluster: Cluster) -> bool:
    try:
        cluster.state()
        return True
    except OSError:
        return False


def wait(ready: Any, what: str, processes: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 120
    while not ready():
        if any(p.poll() is not None for p in processes):
            raise RuntimeError(f"a cluster process exited while waiting for {what}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"waited 120 s for {what}")
        time.sleep(0.5)
