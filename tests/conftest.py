"""Shared fixtures: one emulator per session (reset per test) and one local SparkSession.

Every Spark process the tests start (this one's JVM, CLI and spark-submit subprocesses, the
cluster and Connect servers) inherits SPARK_LOCAL_IP, so Spark binds and advertises loopback
addresses only, never the machine's own interface address.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from aiquery.serving.control import EmulatorControl
from aiquery.serving.server import EmulatorServer

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")


@pytest.fixture(scope="session")
def emulator_server() -> Iterator[EmulatorServer]:
    with EmulatorServer() as server:
        yield server


@pytest.fixture(scope="session")
def _control(emulator_server: EmulatorServer) -> Iterator[EmulatorControl]:
    control = EmulatorControl(emulator_server.url, emulator_server.admin_token)
    yield control
    control.close()


@pytest.fixture
def emulator(emulator_server: EmulatorServer, _control: EmulatorControl) -> EmulatorServer:
    """The session's emulator with its start-up configuration and an empty request log."""
    _control.reset()
    return emulator_server


@pytest.fixture
def control(emulator: EmulatorServer, _control: EmulatorControl) -> EmulatorControl:
    return _control


@pytest.fixture
def workspace(
    emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[EmulatorServer]:
    """Route the databricks-* names to the test emulator, as DATABRICKS_HOST/TOKEN would."""
    from aiquery.endpoints.registry import reset_configuration

    monkeypatch.setenv("DATABRICKS_HOST", emulator.url)
    monkeypatch.setenv("DATABRICKS_TOKEN", emulator.token)
    monkeypatch.delenv("AIQUERY_ENDPOINTS", raising=False)
    yield emulator
    reset_configuration()


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from aiquery.spark.session import spark_session

    root: Path = tmp_path_factory.mktemp("spark")
    session = spark_session(
        "aiquery-tests",
        master="local[2]",
        warehouse=root / "warehouse",
        conf={"spark.driver.extraJavaOptions": f"-Dderby.system.home={root / 'derby'}"},
    )
    yield session
    session.stop()
