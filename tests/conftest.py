"""Shared fixtures: one emulator per session (reset per test) and one local SparkSession."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from aiquery.serving.control import EmulatorControl
from aiquery.serving.server import EmulatorServer


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
