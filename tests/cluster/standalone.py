"""A Spark standalone cluster on loopback, as the cluster tier starts it (see conftest.py)."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request
import uuid
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


# --- object storage: a real S3 server (moto's server mode) on loopback ----------------------

# hadoop-aws at the version of PySpark's own Hadoop client jars (hadoop-client-api-3.4.2).
HADOOP_AWS_PACKAGE = "org.apache.hadoop:hadoop-aws:3.4.2"
BUCKET = "lake"


class ObjectStorage:
    """A bucket on a moto S3 server process; each job gets its own root in it."""

    def __init__(self, endpoint: str) -> None:
        import boto3

        self.endpoint = endpoint
        self.client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="test",
            aws_secret_access_key="test",
            region_name="us-east-1",
        )
        self.client.create_bucket(Bucket=BUCKET)
        self._roots = 0
        self.prefix = ""
        self.root = ""

    def new_root(self) -> str:
        # Unique across test sessions too: a driver's spool is kept per table location.
        self._roots += 1
        self.prefix = f"job{self._roots}-{uuid.uuid4().hex[:8]}"
        self.root = f"s3a://{BUCKET}/{self.prefix}"
        return self.root

    def env(self, base: dict[str, str]) -> dict[str, str]:
        """`base` with the standard AWS_* settings that delta-rs and pyarrow read."""
        return {
            **base,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_REGION": "us-east-1",
            "AWS_ALLOW_HTTP": "true",
        }

    def spark_conf(self) -> tuple[str, ...]:
        """s3a settings a user would give: the endpoint, path-style, static keys, no TLS."""
        return (
            f"spark.hadoop.fs.s3a.endpoint={self.endpoint}",
            "spark.hadoop.fs.s3a.endpoint.region=us-east-1",
            "spark.hadoop.fs.s3a.path.style.access=true",
            "spark.hadoop.fs.s3a.connection.ssl.enabled=false",
            "spark.hadoop.fs.s3a.access.key=test",
            "spark.hadoop.fs.s3a.secret.key=test",
            "spark.hadoop.fs.s3a.aws.credentials.provider="
            "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
        )

    def keys(self, under: str) -> list[str]:
        """Object keys under `under` in the latest job's root."""
        listed = self.client.list_objects_v2(Bucket=BUCKET, Prefix=self.prefix + under)
        return [o["Key"] for o in listed.get("Contents", [])]
