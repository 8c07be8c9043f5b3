"""The embedded default: a local emulator started on demand in the driver process.

Started only through `aiquery.spark.runtime`, when a call site is bound for execution.

When a query uses a built-in endpoint name and nothing routes it elsewhere (no
DATABRICKS_HOST/DATABRICKS_TOKEN, endpoints file or Python config), aiquery serves it
from an emulator on an ephemeral loopback port in this process. Spark's local-mode
Python workers reach it there; on a real cluster, configure real endpoints instead.
"""

from __future__ import annotations

import atexit
import logging
import threading

from aiquery.serving.server import EmulatorServer

log = logging.getLogger("aiquery")
_lock = threading.Lock()
_server: EmulatorServer | None = None


def ensure_emulator() -> tuple[str, str]:
    """(base URL, token) of the embedded emulator, starting it on first use."""
    global _server
    with _lock:
        if _server is None:
            _server = EmulatorServer().start()
            atexit.register(_server.stop)
            log.info("aiquery: started the embedded local emulator at %s", _server.url)
        return _server.url, _server.token


def embedded_server() -> EmulatorServer | None:
    """The running embedded emulator, if any (tests and the demo read its request log)."""
    return _server
