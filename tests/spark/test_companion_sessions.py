"""The companion's sessions (one per distinct set of `aiquery.*` settings its JVM's SQL
sessions had) stay bounded on a long-lived server: the least recently used set is let go,
with its usage committer, after that committer's last flush."""

from __future__ import annotations

import threading

from aiquery.spark.companion import Sessions
from aiquery.usage.driver import committer as committers


def retiring() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "aiquery-retire"]


def test_only_the_most_recently_used_settings_keep_a_session(spark) -> None:  # type: ignore[no-untyped-def]
    sessions = Sessions(spark, limit=2)
    a = sessions({"aiquery.requestTags": '{"q": "a"}', "spark.sql.ansi.enabled": "true"})
    b = sessions({"aiquery.requestTags": '{"q": "b"}'})
    assert a.conf.get("aiquery.requestTags") == '{"q": "a"}'
    assert sessions({"aiquery.requestTags": '{"q": "a"}'}) is a  # only aiquery.* settings count
    b_committer = committers.committer(b)
    b_committer.start(interval_s=3600)
    held = {id(a), id(b)}

    c = sessions({"aiquery.requestTags": '{"q": "c"}'})  # b, the least recently used, goes
    for thread in retiring():
        thread.join(timeout=120)
    assert not retiring()
    assert c is not b and sessions({"aiquery.requestTags": '{"q": "a"}'}) is a
    kept = {key[0] for key in committers._committers} & held
    assert id(b) not in kept, "the evicted session's committer still holds it"
    assert b_committer._thread is None, "the evicted session's committer was not stopped"
    assert sessions({"aiquery.requestTags": '{"q": "b"}'}) is not b  # asked again: a new one
