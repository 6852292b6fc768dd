"""Run an AlpacaDataServer on its own event loop in a thread, so plain (sync) tests can steer it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from tests.alpaca_data_server.server import AlpacaDataServer

T = TypeVar("T")


class ServerThread:
    """``with ServerThread(AlpacaDataServer(...)) as server: server.call(server.server.push_quotes, rows)``."""

    def __init__(self, server: AlpacaDataServer) -> None:
        self.server = server
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="alpaca-data-server", daemon=True)

    def __enter__(self) -> ServerThread:
        self._thread.start()
        self.call(self.server.start)
        return self

    def __exit__(self, *exc: object) -> None:
        self.call(self.server.stop)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def call(self, fn: Callable[..., Coroutine[Any, Any, T]], *args: Any, timeout_s: float = 10.0) -> T:
        """Run ``await fn(*args)`` on the server's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(fn(*args), self._loop).result(timeout_s)

    def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a plain method on the server's loop (for controls that start tasks)."""

        async def wrapper() -> T:
            return fn(*args)

        return self.call(wrapper)

    def url(self, path: str = "/v2/iex") -> str:
        return self.server.url(path)
