"""A session without Delta Lake is refused before any request, naming the fix (the committer
module alone, with a stand-in for the session's JVM)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from aiquery.errors import ConfigError
from aiquery.usage.driver.settings import DELTA_EXTENSION, require_delta


def session(*, loadable: bool, extensions: str | None) -> SimpleNamespace:
    utils = SimpleNamespace(classIsLoadable=lambda name: loadable and "delta" in name)
    jvm = SimpleNamespace(org=SimpleNamespace(apache=SimpleNamespace(spark=SimpleNamespace(util=SimpleNamespace(Utils=utils)))))  # fmt: skip
    conf = {"spark.sql.extensions": extensions} if extensions else {}
    return SimpleNamespace(
        _jsparkSession=object(),
        sparkContext=SimpleNamespace(_jvm=jvm),
        conf=SimpleNamespace(get=lambda key, default=None: conf.get(key, default)),
    )


def test_a_session_with_delta_passes() -> None:
    require_delta(session(loadable=True, extensions=f"{DELTA_EXTENSION},x.Y"))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("loadable", "extensions", "says"),
    [
        (False, None, "no Delta Lake on its class path"),
        (True, None, "no Delta Lake:"),
        (True, "io.aiquery.spark.AiQueryExtensions", "no Delta Lake:"),
    ],
)
def test_a_session_without_delta_is_told_how_to_add_it(
    loadable: bool, extensions: str | None, says: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        require_delta(session(loadable=loadable, extensions=extensions))  # type: ignore[arg-type]
    assert says in str(caught.value)
    assert "aiquery jvm --args" in str(caught.value)
    assert "aiquery.usage.enabled=false" in str(caught.value)


def test_a_spark_connect_client_is_left_to_its_server() -> None:
    require_delta(SimpleNamespace())  # type: ignore[arg-type]
