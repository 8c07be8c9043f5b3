"""aiquery on a real standalone cluster: the CLI with `--master`, a `spark-submit`ted job with
`spark.aiquery.*` settings, usage exactly once per request, and the embedded default refused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyspark
import pytest
from standalone import HADOOP_AWS_PACKAGE, Cluster, ObjectStorage

from aiquery.serving.control import EmulatorControl
from aiquery.serving.embedding import embed
from aiquery.serving.server import EmulatorServer
from aiquery.spark.session import delta_package, submit_args
from aiquery.usage.report import load_rows

pytestmark = pytest.mark.cluster

DELTA_PACKAGE = delta_package()  # the driver's JVM starts before Python
# Two 1-core workers with 1 GB each: small executors, one per worker.
SMALL = ("--conf", "spark.executor.memory=512m", "--conf", "spark.cores.max=2")
SUBMIT_JOB = """
import aiquery
from aiquery.spark.session import spark_session
from aiquery.usage.driver.settings import usage_settings

spark = spark_session("aiquery-submit")  # no master here: spark-submit's stands
print("master", spark.conf.get("spark.master"))
print("delivery", usage_settings(spark).delivery)
frame = aiquery.sql(
    spark, "SELECT ai_query('databricks-gpt-5-4', concat('Summarize: Row ', id, ' is here. More.')) AS a FROM range(12)"
)
print("answered", frame.where("a IS NOT NULL").count())
aiquery.flush_usage(spark)
"""


def _env(emulator: EmulatorServer | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS_", "AIQUERY_"))}
    if emulator is not None:
        env.update(DATABRICKS_HOST=emulator.url, DATABRICKS_TOKEN=emulator.token)
    return env


def cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aiquery.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _why(done: subprocess.CompletedProcess[str]) -> str:
    """The Python error in a failed run's output, without Spark's INFO lines."""
    lines = [line for line in done.stderr.splitlines() if " INFO " not in line]
    start = next(
        (i for i, line in enumerate(lines) if "Traceback" in line), max(0, len(lines) - 40)
    )
    return "\n".join(lines[start : start + 60])


def _usage_ids(warehouse: Path) -> list[str]:
    return sorted(r["request_id"] for r in load_rows(warehouse / "ai_gateway.db" / "usage"))


def _apps(cluster: Cluster) -> list[str]:
    state = cluster.state()
    return [a["name"] for a in state["activeapps"] + state["completedapps"]]


def test_aiquery_run_on_the_cluster_sends_each_input_once_and_records_each_request_once(
    cluster: Cluster, emulator: EmulatorServer, control: EmulatorControl, tmp_path: Path
) -> None:
    job = tmp_path / "job.sql"
    job.write_text(
        # 40 rows in 4 partitions on two executors; each review twice, in two partitions.
        """SET aiquery.requestTags = '{"tier": "cluster"}';
        SELECT count(*) AS answered FROM (
          SELECT ai_query('databricks-gpt-5-4', concat('Summarize: Review ', id % 20, ' is fine. More.')) AS a
          FROM range(0, 40, 1, 4)) WHERE a IS NOT NULL;"""
    )
    warehouse = tmp_path / "warehouse"
    done = cli(
        ["run", str(job), "--master", cluster.master_url, "--warehouse", str(warehouse),
         "--no-progress", *SMALL],
        _env(emulator),
        tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, _why(done)
    assert "40" in done.stdout.splitlines()[-1]
    assert "aiquery-sql" in _apps(cluster)  # it ran on the cluster, not in local mode
    served = control.requests()
    assert len(served) == 20  # repeats in other partitions (and executors) were not sent
    assert _usage_ids(warehouse) == sorted(r["request_id"] for r in served)
    assert all(r["request_tags"] == {"tier": "cluster"} for r in served)


def test_a_spark_submitted_job_keeps_its_master_and_its_spark_aiquery_settings(
    cluster: Cluster, emulator: EmulatorServer, control: EmulatorControl, tmp_path: Path
) -> None:
    script = tmp_path / "job.py"
    script.write_text(SUBMIT_JOB)
    warehouse = tmp_path / "warehouse"
    submit = str(Path(pyspark.__file__).parent / "bin" / "spark-submit")
    done = subprocess.run(
        [submit, "--master", cluster.master_url, "--packages", DELTA_PACKAGE, *SMALL,
         "--conf", f"spark.sql.warehouse.dir={warehouse}",
         "--conf", 'spark.aiquery.requestTags={"tier": "submit"}',
         "--conf", "spark.aiquery.usage.requester=scheduler",
         # A spool on a mount every executor shares: they write it themselves.
         "--conf", f"spark.aiquery.usage.spoolDir={tmp_path / 'shared-spool'}",
         str(script)],
        env={**_env(emulator), "PYSPARK_PYTHON": sys.executable},
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, _why(done)
    assert f"master {cluster.master_url}" in done.stdout
    assert "answered 12" in done.stdout
    assert "Ignoring non-Spark config property" not in done.stderr
    served = control.requests()
    assert len(served) == 12 and all(r["request_tags"] == {"tier": "submit"} for r in served)
    rows = load_rows(warehouse / "ai_gateway.db" / "usage")
    assert sorted(r["request_id"] for r in rows) == sorted(r["request_id"] for r in served)
    assert {r["requester"] for r in rows} == {"scheduler"}
    assert "delivery spool" in done.stdout  # executors wrote the shared spool themselves


VECTORS_JOB = """
import json
import aiquery
from aiquery.spark.session import spark_session

spark = spark_session("aiquery-vectors")
frame = aiquery.sql(
    spark, "SELECT id, ai_query('databricks-gte-large-en', concat('cluster ', id)) AS v FROM range(0, 6, 1, 2)"
)
packed = "UnsafeArrayData.fromPrimitiveArray" in frame._jdf.queryExecution().executedPlan().toString()
print(json.dumps({"packed": packed, "vectors": {r.id: r.v for r in frame.collect()}}))
"""


def test_executors_unpack_embeddings_with_spark_alone_and_refuse_a_foreign_layout(
    cluster: Cluster, emulator: EmulatorServer, tmp_path: Path
) -> None:
    """The executors have no aiquery class (only the driver loads the extension): the packed
    vectors come back exact. An executor JVM laying out arrays unlike the driver's fails the
    job with the way out, instead of reading the wrong bytes."""
    script = tmp_path / "vectors.py"
    script.write_text(VECTORS_JOB)
    submit = str(Path(pyspark.__file__).parent / "bin" / "spark-submit")

    def run(*conf: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            # The extension on the driver's class path, as `aiquery jvm --args` gives it.
            [submit, "--master", cluster.master_url, *submit_args(), *SMALL,
             "--conf", f"spark.sql.warehouse.dir={tmp_path / 'warehouse'}",
             "--conf", "spark.aiquery.usage.enabled=false", "--conf", "spark.task.maxFailures=1",
             *(arg for setting in conf for arg in ("--conf", setting)), str(script)],
            env={**_env(emulator), "PYSPARK_PYTHON": sys.executable},
            cwd=tmp_path, capture_output=True, text=True, timeout=600,
        )  # fmt: skip

    done = run()
    assert done.returncode == 0, _why(done)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["packed"] is True
    assert report["vectors"] == {
        str(i): np.asarray(embed(f"cluster {i}", 1024), dtype=np.float32).tolist() for i in range(6)
    }
    # 24 bytes before a byte array's data instead of the driver's 16.
    foreign = run("spark.executor.extraJavaOptions=-XX:-UseCompressedClassPointers")
    assert foreign.returncode != 0
    assert "a packed embedding's header is not where this driver's JVM expects it" in foreign.stderr
    assert "give the executors the driver's JVM options" in foreign.stderr


def test_the_embedded_default_is_refused_on_a_cluster_with_the_way_out(
    cluster: Cluster, tmp_path: Path
) -> None:
    done = cli(
        ["sql", "SELECT ai_query('databricks-gpt-5-4', 'hello') AS a", "--master",
         cluster.master_url, "--warehouse", str(tmp_path / "warehouse"), *SMALL],
        _env(None),
        tmp_path,
    )  # fmt: skip
    assert done.returncode == 1
    assert "embedded local emulator" in done.stderr and cluster.master_url in done.stderr
    assert "aiquery serve --host" in done.stderr and "Traceback" not in done.stderr


# --- faults on the cluster: nothing lost, nothing doubled -----------------------------------

JOB = Path(__file__).with_name("cluster_job.py")


def _executor_pids() -> list[int]:
    """Executor JVMs on this machine (the cluster tier's are the only ones)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if proc.name.isdigit() and b"CoarseGrainedExecutorBackend" in cmdline:
            pids.append(int(proc.name))
    return pids


def _submit(cluster: Cluster, emulator: EmulatorServer, tmp_path: Path, shape: str,
            *conf: str, storage: ObjectStorage | None = None) -> subprocess.Popen[str]:  # fmt: skip
    """`cluster_job.py` submitted to the cluster; its table and usage on `storage` if given."""
    submit = str(Path(pyspark.__file__).parent / "bin" / "spark-submit")
    packages, root = DELTA_PACKAGE, str(tmp_path)
    if storage is not None:
        packages += "," + HADOOP_AWS_PACKAGE
        root = storage.new_root()
        conf = (*storage.spark_conf(), *conf)
    command = [
        submit, "--master", cluster.master_url, "--packages", packages, *SMALL,
        "--conf", f"spark.sql.warehouse.dir={root}/warehouse",
        *(arg for setting in conf for arg in ("--conf", setting)),
        str(JOB), f"{root}/out", shape,
    ]  # fmt: skip
    return subprocess.Popen(
        command,
        env={**_env(emulator), "PYSPARK_PYTHON": sys.executable},
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _report(job: subprocess.Popen[str]) -> dict[str, Any]:
    stdout, stderr = job.communicate(timeout=600)
    done = subprocess.CompletedProcess(job.args, job.returncode, stdout, stderr)
    assert job.returncode == 0, _why(done)
    report: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    return report


def _assert_usage_is_the_server_log(
    rows: list[dict[str, Any]], served: list[dict[str, Any]]
) -> None:
    """Exactly once: a row for every request the server saw, no request twice."""
    ids = [r["request_id"] for r in rows]
    assert len(ids) == len(set(ids)), "a request has two usage rows"
    served_ids = {r["request_id"] for r in served}
    assert served_ids <= set(ids), "a request the server saw has no usage row"
    # Rows the server never saw: requests a dying worker recorded as started, unanswered.
    assert all(r["status_code"] is None for r in rows if r["request_id"] not in served_ids)
    assert all(r["spark_app_id"] and r["spark_task"] for r in rows)


def test_a_whole_executor_killed_mid_job_loses_and_doubles_nothing_on_object_storage(
    cluster: Cluster,
    emulator: EmulatorServer,
    control: EmulatorControl,
    object_storage: ObjectStorage,
    tmp_path: Path,
) -> None:
    """The output table, the warehouse and the usage table on s3a:// (a real S3 server on
    loopback); usage reaches the driver over HTTP, not through any shared directory."""
    control.set_faults(latency_ms=150)
    job = _submit(
        cluster, emulator, tmp_path, "even", "spark.aiquery.concurrencyPerTask=4",
        storage=object_storage,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while len(control.requests()) < 30:  # the job is sending: now kill an executor
            assert job.poll() is None and time.monotonic() < deadline, "the job never got going"
            time.sleep(0.2)
        victims = _executor_pids()
        assert victims
        os.kill(victims[0], signal.SIGKILL)
        report = _report(job)
    finally:
        if job.poll() is None:
            job.kill()
    usage = report.pop("usage")
    report.pop("shared")  # the reran tasks may take answers the lost ones published
    # Spark reran the lost tasks; usage went to the driver (no spool shared with executors).
    # delta-rs merged the usage table on S3 in the driver's process (no Spark job).
    assert report == {
        "rows": 160, "ids": 160, "answered": 160, "delivery": "driver", "merged_by": "delta-rs",
    }  # fmt: skip
    served = control.requests()
    _assert_usage_is_the_server_log(usage, served)
    assert len(served) >= 160
    assert object_storage.keys("/warehouse/ai_gateway.db/usage/_delta_log/"), "usage not on S3"
    # The CLI reads the table where it is (delta-rs and pyarrow, with the AWS_* settings).
    table = object_storage.root + "/warehouse/ai_gateway.db/usage"
    done = cli(
        ["usage", "--table", table, "--by", "endpoint"], object_storage.env(_env(None)), tmp_path
    )
    assert done.returncode == 0, _why(done)
    line = next(line for line in done.stdout.splitlines() if "databricks-gpt-5-4" in line)
    assert line.split()[1] == str(len(usage))  # endpoint, requests


def test_speculative_copies_of_a_straggler_double_no_row_and_no_request_on_object_storage(
    cluster: Cluster,
    emulator: EmulatorServer,
    control: EmulatorControl,
    object_storage: ObjectStorage,
    tmp_path: Path,
) -> None:
    control.set_faults(latency_ms=200)
    job = _submit(
        cluster, emulator, tmp_path, "skewed",
        "spark.aiquery.concurrencyPerTask=1", "spark.speculation=true",
        "spark.speculation.interval=200ms", "spark.speculation.quantile=0.5",
        "spark.speculation.multiplier=2",
        # Both hosts' executors before the first task (standalone schedules at the first
        # one by default): a copy runs only on a host without an attempt, and after the
        # test that kills an executor, the second host's core can come too late for one.
        "spark.scheduler.minRegisteredResourcesRatio=1.0",
        "spark.scheduler.maxRegisteredResourcesWaitingTime=120s",
        storage=object_storage,
    )  # fmt: skip
    report = _report(job)
    rows = report.pop("usage")
    shared = report.pop("shared")
    assert report == {
        "rows": 43, "ids": 43, "answered": 43, "delivery": "driver", "merged_by": "delta-rs",
    }  # fmt: skip
    served = control.requests()
    _assert_usage_is_the_server_log(rows, served)
    # Every id is distinct: only a copy of the straggler offers an input a second time.
    assert shared > 0, "no speculative copy ran: the test proves nothing"
    # The copy took the straggler's answers from the driver's exchange: each row sent once.
    assert len(served) == 43


def test_the_spark_sql_shell_on_the_cluster_sends_usage_to_its_companion_on_object_storage(
    cluster: Cluster,
    emulator: EmulatorServer,
    control: EmulatorControl,
    object_storage: ObjectStorage,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`spark-sql` (no Python driver) on the cluster, its warehouse on s3a://: the JVM's
    Python companion hosts the coordinator the executors send usage to, and commits it to
    the table on S3 before the shell exits."""
    args = [*submit_args(), "--packages", HADOOP_AWS_PACKAGE]  # s3a: Hadoop's, through Ivy
    root = object_storage.new_root()
    conf = (
        *object_storage.spark_conf(),
        f"spark.sql.warehouse.dir={root}/warehouse",
        "spark.aiquery.usage.delivery=driver",
        f"spark.driver.extraJavaOptions=-Dderby.system.home={tmp_path / 'derby'}",
        "spark.ui.enabled=false",
    )
    shell = str(Path(pyspark.__file__).parent / "bin" / "spark-sql")
    done = subprocess.run(
        [shell, "--master", cluster.master_url, *args, *SMALL,
         *(arg for setting in conf for arg in ("--conf", setting)),
         "-e", "SELECT 'answered', count(a) FROM (SELECT ai_query('databricks-gpt-5-4', "
               "concat('Summarize: Row ', id, ' is here. More.')) AS a FROM range(0, 12, 1, 4))"],
        env={**_env(emulator), "PYSPARK_PYTHON": sys.executable,
             "PYSPARK_DRIVER_PYTHON": sys.executable},
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, _why(done)
    assert "answered\t12" in done.stdout.splitlines()
    for name, value in object_storage.env({}).items():
        monkeypatch.setenv(name, value)
    rows = load_rows(f"{root}/warehouse/ai_gateway.db/usage")
    served = control.requests()
    assert len(served) == 12
    _assert_usage_is_the_server_log(rows, served)
    assert len(rows) == 12
