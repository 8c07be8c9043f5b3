"""The driver's coordinator: one small HTTP service that executors on other hosts call.

It serves
- `POST /usage`: usage lines from executors (`aiquery.usage.relay`), stored by the
  `Collector` in the driver's spool for the committer, when there is no shared mount;
- `POST /permits`: leases of an endpoint's job-wide rate limits (`aiquery.client.shared_rate`)
  from the process's one `PermitBank`;
- `POST /budget`: leases of a query's budget (`aiquery.client.budget`) from its `BudgetBank`;
- `POST /estimate`: a dry run's counts from each task (`aiquery.spark.estimate`);
- `POST /cache`: lookups in the response cache's slice of a call site (`aiquery.spark.cache`);
- `POST /share`: the inputs tasks offer to the query's other tasks, and their answers
  (`aiquery.client.exchange`, de-duplication across tasks) in the process's `EXCHANGES`.

It listens where executors can reach the driver: `aiquery.coordinator.host` (default:
Spark's `spark.driver.host` on a classic driver; on a Spark Connect client, the local
address that routes to the Connect server), on `aiquery.coordinator.port` (default: any
free port; set it where a firewall needs one). Every call carries a random bearer token
made here, which travels to executors inside the UDF (never in a plan or a log).
One coordinator per process and driver spool (or none); it starts on first use (from
`aiquery.spark.runtime`) and stops with the process.
"""

from __future__ import annotations

import atexit
import hmac
import json
import logging
import secrets
import socket
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, cast

import orjson

from aiquery.client.budget import BUDGET_PATH, BudgetBank
from aiquery.client.cache import CACHE_PATH
from aiquery.client.exchange import SHARE_PATH, AnswerExchange, offer_from_json
from aiquery.client.shared_rate import PERMITS_PATH, PermitBank
from aiquery.errors import ConfigError
from aiquery.settings import is_classic, is_local, setting
from aiquery.usage.driver.collector import BadBatchError, Collector
from aiquery.usage.relay import CLOSE_HEADER, SEQUENCE_HEADER, USAGE_PATH, WRITER_HEADER

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger("aiquery")

REAP_IDLE_S = 60.0  # a writer silent this long has its file closed (see Collector.reap)
MAX_BODY = 64 * 1024 * 1024
BANK = PermitBank()  # one per process: every coordinator here grants from the same limits
BUDGETS = BudgetBank()  # likewise for query budgets
EXCHANGES = AnswerExchange()  # and for the inputs a query's tasks share


class Coordinator:
    def __init__(self, host: str, port: int, spool_dir: str | None) -> None:
        self.token = secrets.token_urlsafe(32)
        self.collector = Collector(spool_dir) if spool_dir is not None else None
        handler = type("Handler", (_Handler,), {"coordinator": self})
        try:
            self._server = _Server((host, port), handler)
        except OSError as e:
            raise ConfigError(
                f"aiquery's coordinator cannot listen on {host}:{port} ({e.strerror}); set "
                "aiquery.coordinator.host to an address of this machine that executors can "
                "reach, and aiquery.coordinator.port to a free port (0: any)"
            ) from None
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{self._server.server_address[1]}"
        self._stop = threading.Event()
        threading.Thread(
            target=self._server.serve_forever, name="aiquery-coordinator", daemon=True
        ).start()
        threading.Thread(target=self._reap, name="aiquery-coordinator-reaper", daemon=True).start()
        # At exit, before the committer's last flush (atexit runs last-registered first, and
        # the committer starts before any coordinator): every file closed is committed and
        # removed, not left for the next driver to find.
        atexit.register(self.stop)
        log.info("aiquery: coordinator listening on %s", self.url)

    def _reap(self) -> None:
        while not self._stop.wait(5.0):
            if self.collector is not None:
                self.collector.reap(REAP_IDLE_S)

    def stop(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        if self.collector is not None:
            self.collector.close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # a killed or cancelled task hung up mid-answer: its claims go stale
        log.warning("aiquery: coordinator request from %s failed", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    coordinator: Coordinator
    protocol_version = "HTTP/1.1"  # keep-alive: an executor's batches share a connection

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._answer(413, "batch too large")
            self.close_connection = True
            return
        body = self.rfile.read(length)
        given = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
        if not hmac.compare_digest(given.encode(), self.coordinator.token.encode()):
            self._answer(401, "unknown token: this coordinator belongs to another driver")
            return
        if self.path == PERMITS_PATH:
            self._permits(body)
            return
        if self.path == BUDGET_PATH:
            self._budget(body)
            return
        if self.path == ESTIMATE_PATH:
            self._estimate(body)
            return
        if self.path == CACHE_PATH:
            self._cache(body)
            return
        if self.path == SHARE_PATH:
            self._share(body)
            return
        collector = self.coordinator.collector
        if self.path != USAGE_PATH or collector is None:
            self._answer(404, f"no route {self.path}")
            return
        try:
            sequence = int(self.headers.get(SEQUENCE_HEADER) or "")
            collector.receive(
                self.headers.get(WRITER_HEADER) or "",
                sequence,
                body,
                close=self.headers.get(CLOSE_HEADER) == "1",
            )
        except (BadBatchError, ValueError) as e:
            self._answer(400, str(e))
            return
        self._answer(200, "stored")

    def _permits(self, body: bytes) -> None:
        try:
            asked = json.loads(body)
            wait = BANK.grant(
                str(asked["key"]),
                float(asked["per_minute"]),
                float(asked["want"]),
                float(asked.get("debt", 0.0)),
                float(asked.get("returned", 0.0)),
            )
        except (ValueError, KeyError, TypeError) as e:
            self._answer(400, f"a permit request is JSON with key, per_minute, want ({e})")
            return
        self._answer(200, json.dumps({"wait_s": wait}), "application/json")

    def _budget(self, body: bytes) -> None:
        try:
            asked = json.loads(body)
            granted, exhausted = BUDGETS.lease(
                str(asked["key"]),
                dict(asked["limits"]),
                int(asked["want"]),
                tokens=int(asked.get("tokens", 0)),
                cost=float(asked.get("cost", 0.0)),
                returned=int(asked.get("returned", 0)),
            )
        except (ValueError, KeyError, TypeError) as e:
            self._answer(400, f"a budget request is JSON with key, limits, want ({e})")
            return
        answer = {"granted": granted, "exhausted": exhausted}
        self._answer(200, json.dumps(answer), "application/json")

    def _cache(self, body: bytes) -> None:
        try:
            asked = json.loads(body)
            hits = CACHES.lookup(str(asked["slice"]), [str(k) for k in asked["keys"]])
        except (ValueError, KeyError, TypeError) as e:
            self._answer(400, f"a cache lookup is JSON with slice and keys ({e})")
            return
        self._answer(200, json.dumps({"hits": hits}), "application/json")

    def _share(self, body: bytes) -> None:
        try:  # orjson: an offer carries a batch's keys (10,000 hashes)
            answer = offer_from_json(EXCHANGES, orjson.loads(body))
        except (ValueError, KeyError, TypeError) as e:
            self._answer(400, f"an offer is JSON with exchange, claimant, keys ({e})")
            return
        self._answer(200, orjson.dumps(answer), "application/json")

    def _estimate(self, body: bytes) -> None:
        try:
            told = json.loads(body)
            tally = {str(k): int(v) for k, v in dict(told["tally"]).items()}
            with _tallies_lock:
                calls = _tallies.setdefault(str(told["key"]), {})
                # By partition: a retried task's count replaces its failed attempt's.
                calls.setdefault(int(told["call"]), {})[int(told["partition"])] = tally
        except (ValueError, KeyError, TypeError) as e:
            self._answer(400, f"an estimate tally is JSON with key, call, partition, tally ({e})")
            return
        self._answer(200, "stored")

    def _answer(
        self, status: int, text: str | bytes, kind: str = "text/plain; charset=utf-8"
    ) -> None:
        data = text.encode() if isinstance(text, str) else text
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("aiquery coordinator: " + format, *args)


class CacheStore:
    """The response cache's slices this driver serves to its tasks, loaded as a call site
    is bound (`aiquery.spark.cache`). The most recently used stay loaded; an older one is
    loaded again if its query still asks."""

    LOADED = 8

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaders: dict[str, Callable[[], dict[str, str]]] = {}
        self._slices: OrderedDict[str, dict[str, str]] = OrderedDict()
        self._loading: dict[str, threading.Lock] = {}

    def register(self, slice_id: str, loader: Callable[[], dict[str, str]]) -> None:
        """Load the slice now (before the query's tasks hold every executor slot: a load is
        a Spark job), and keep the loader for when it must be loaded again."""
        loaded = loader()
        with self._lock:
            self._loaders[slice_id] = loader
            self._loading[slice_id] = threading.Lock()
            self._remember(slice_id, loaded)

    def lookup(self, slice_id: str, keys: list[str]) -> dict[str, str]:
        with self._lock:
            loading = self._loading.get(slice_id)
        if loading is None:
            raise KeyError(f"unknown cache slice {slice_id}")
        with loading:  # the first lookup loads; the others wait for it
            found = self._slices.get(slice_id)
            if found is None:
                found = self._loaders[slice_id]()
            with self._lock:
                self._remember(slice_id, found)
        return {k: found[k] for k in keys if k in found}

    def _remember(self, slice_id: str, found: dict[str, str]) -> None:
        self._slices[slice_id] = found
        self._slices.move_to_end(slice_id)
        while len(self._slices) > self.LOADED:
            self._slices.popitem(last=False)

    def forget(self, slice_id: str) -> None:
        with self._lock:
            self._loaders.pop(slice_id, None)
            self._slices.pop(slice_id, None)
            self._loading.pop(slice_id, None)


CACHES = CacheStore()
ESTIMATE_PATH = "/estimate"
# A dry run's counts (`aiquery.spark.estimate`): by run key, call site, then partition.
_tallies: dict[str, dict[int, dict[int, dict[str, int]]]] = {}
_tallies_lock = threading.Lock()


def take_tallies(key: str) -> dict[int, dict[int, dict[str, int]]]:
    """A dry run's counts by call site and partition, removed from the store."""
    with _tallies_lock:
        return _tallies.pop(key, {})


_coordinators: dict[str | None, Coordinator] = {}
_lock = threading.Lock()


def coordinator(spark: SparkSession, spool_dir: str | None) -> Coordinator:
    """This process's coordinator for `spool_dir` (None: permits only), started on first use."""
    with _lock:
        found = _coordinators.get(spool_dir)
        if found is None:
            host = setting(spark.conf, "coordinator.host") or _driver_host(spark)
            port = setting(spark.conf, "coordinator.port") or "0"
            if not port.isdigit():
                raise ConfigError(f"aiquery.coordinator.port must be a port number, not {port!r}")
            found = _coordinators[spool_dir] = Coordinator(host, int(port), spool_dir)
        return found


def stop_all() -> None:
    """What exit does: every coordinator of this process stopped, its files closed."""
    with _lock:
        found = list(_coordinators.values())
    for c in found:
        c.stop()


def _driver_host(spark: SparkSession) -> str:
    """An address of this process that executors can reach."""
    if is_local(spark) and is_classic(spark):
        return "127.0.0.1"  # executors run in this process: no reason to listen further
    if is_classic(spark):
        return spark.conf.get("spark.driver.host", None) or socket.gethostname()
    # A Spark Connect client: the executors reach what the Connect server reaches, so the
    # local address of the route to the server (no packet is sent to find it).
    server = str(cast(Any, spark).client.host)
    family = socket.AF_INET6 if ":" in server else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.connect((server.strip("[]"), 9))
        address: str = probe.getsockname()[0]
    return address
