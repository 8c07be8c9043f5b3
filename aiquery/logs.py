"""aiquery's own log output: `aiquery --log-level DEBUG ...`, or `AIQUERY_LOG_LEVEL` anywhere.

Everything aiquery logs goes to the `aiquery` logger with lazy `%` formatting and never
carries a prompt or a token. Executors read `AIQUERY_LOG_LEVEL` when a task starts (on a
cluster, set it with `spark.executorEnv.AIQUERY_LOG_LEVEL`); their lines land in the
executor's stderr.
"""

from __future__ import annotations

import logging
import os
import sys

ENV = "AIQUERY_LOG_LEVEL"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(process)d]: %(message)s"


def setup(level: str | None = None) -> None:
    """Send the `aiquery` logger to stderr at `level` (default: $AIQUERY_LOG_LEVEL, if set)."""
    chosen = (level or os.environ.get(ENV) or "").upper()
    if not chosen:
        return
    if chosen not in LEVELS:
        raise ValueError(f"log level {chosen!r} is not one of {', '.join(LEVELS)}")
    logger = logging.getLogger("aiquery")
    logger.setLevel(chosen)
    if not any(getattr(h, "_aiquery", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(_FORMAT))
        handler._aiquery = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
