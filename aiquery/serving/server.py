"""Running the emulator: in the foreground for `aiquery serve`, or on a background thread."""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections.abc import Callable
from types import TracebackType

from aiohttp import web

from aiquery.serving.config import EmulatorConfig, load_config
from aiquery.serving.emulator import Emulator
from aiquery.serving.routes import app


def new_token() -> str:
    return "dapi" + secrets.token_hex(16)


def base_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


async def start_site(
    emulator: Emulator, host: str, port: int, *, shutdown_timeout: float = 60.0
) -> tuple[web.AppRunner, int]:
    """Bind the emulator's app; returns the runner and the port it really got (for port 0).

    On shutdown, requests still in progress get `shutdown_timeout` seconds to finish
    before they are cancelled and their connections closed.
    """
    # handler_cancellation: a client that gives up on a hung request frees its handler.
    runner = web.AppRunner(
        app(emulator),
        access_log=None,
        handler_cancellation=True,
        shutdown_timeout=shutdown_timeout,
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024, reuse_address=True)
    await site.start()
    addresses = runner.addresses
    assert addresses, "the emulator did not bind a socket"
    return runner, int(addresses[0][1])


async def serve_forever(
    emulator: Emulator, host: str, port: int, on_ready: Callable[[int], None]
) -> None:
    runner, bound = await start_site(emulator, host, port)
    on_ready(bound)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


class EmulatorServer:
    """The emulator on its own event loop in a daemon thread, on an ephemeral loopback port.

    >>> with EmulatorServer() as server:
    ...     server.url  # 'http://127.0.0.1:<port>'
    """

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        admin_token: str | None = None,
        shutdown_timeout: float = 60.0,
    ) -> None:
        self.host = host
        self.config = config or load_config()
        self.shutdown_timeout = shutdown_timeout
        self.token = token or new_token()
        self.admin_token = admin_token or new_token()
        self.emulator = Emulator(self.config, token=self.token, admin_token=self.admin_token)
        self._requested_port = port
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="aiquery-emulator", daemon=True
        )
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return base_url(self.host, self.port)

    def start(self) -> EmulatorServer:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(
            start_site(
                self.emulator,
                self.host,
                self._requested_port,
                shutdown_timeout=self.shutdown_timeout,
            ),
            self._loop,
        )
        self._runner, self.port = future.result(timeout=30)
        return self

    def call(self, fn: Callable[[], object]) -> None:
        """Run `fn` on the server's loop (state changes must not race its handlers)."""

        async def run() -> None:
            fn()

        asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=30)

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=30)
            self._runner = None
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)
        self._loop.close()

    def restarted(self) -> EmulatorServer:
        """Stop this server and start a fresh one on the same port with the same tokens.

        Like a redeployed endpoint: requests in progress are cut off after the shutdown
        timeout, and the new server starts from the start-up configuration with an empty
        log (this server's log stays readable in `self.emulator.log`).
        """
        self.stop()
        fresh = EmulatorServer(
            self.config,
            host=self.host,
            port=self.port,
            token=self.token,
            admin_token=self.admin_token,
            shutdown_timeout=self.shutdown_timeout,
        )
        return fresh.start()

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
