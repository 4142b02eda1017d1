"""Where a rail hears back: a callback server (an aiohttp listener) and a mailbox that hands each callback
to whoever waits for its key.

A rail registers its wait (`expect`) BEFORE it sends the request, since the callback may beat the HTTP
response. Callbacks nobody waits for (early, late, duplicated) are kept in a small cache (`recent`), so
the next wait for that key finds them at once. Callbacks are hints for the rail to act on; what they say
is the rail's to check (each rail's callbacks.py authenticates them first).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import socket
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager
from typing import Generic, TypeVar

from aiohttp import web

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

_CACHE_SIZE = 4096


class CallbackServer:
    """An aiohttp server for one rail's callbacks on host:port; port 0 takes any free port, read back
    after start() (so the callback URL can name it)."""

    def __init__(self, host: str, port: int, public_url: str = "") -> None:
        self.host = host
        self.port = port
        self._public_url = public_url.rstrip("/")
        self._runner: web.AppRunner | None = None

    async def start(self, app: web.Application) -> None:
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        # Our own socket, so that port 0 can be read back.
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = int(sock.getsockname()[1])
        await web.SockSite(self._runner, sock).start()

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def base_url(self) -> str:
        """The listener's public base URL: configured, else http://{host}:{port}."""
        return self._public_url or f"http://{self.host}:{self.port}"


class Mailbox(Generic[K, V]):
    """Callbacks by key, for any number of waiters at once."""

    def __init__(self, cache_size: int = _CACHE_SIZE) -> None:
        self._waiters: dict[K, list[asyncio.Queue[V]]] = {}
        self._recent: collections.OrderedDict[K, V] = collections.OrderedDict()
        self._cache_size = cache_size

    @asynccontextmanager
    async def expect(self, key: K) -> AsyncIterator[asyncio.Queue[V]]:
        """A queue receiving every callback for `key` while the block runs."""
        queue: asyncio.Queue[V] = asyncio.Queue()
        self._waiters.setdefault(key, []).append(queue)
        try:
            yield queue
        finally:
            waiting = self._waiters.get(key, [])
            if queue in waiting:
                waiting.remove(queue)
            if not waiting:
                self._waiters.pop(key, None)

    def expecting(self, key: K) -> bool:
        return key in self._waiters

    def recent(self, key: K) -> V | None:
        """The last callback for `key`, if it is still in the cache."""
        return self._recent.get(key)

    def forget(self, key: K) -> None:
        self._recent.pop(key, None)

    def deliver(self, key: K, callback: V) -> None:
        self._recent[key] = callback
        self._recent.move_to_end(key)
        while len(self._recent) > self._cache_size:
            self._recent.popitem(last=False)
        for queue in self._waiters.get(key, []):
            queue.put_nowait(callback)


async def next_callback(queue: asyncio.Queue[V], seconds: float) -> V | None:
    """The next callback from an `expect` queue, or None after `seconds`."""
    try:
        return await asyncio.wait_for(queue.get(), timeout=max(seconds, 0.0))
    except TimeoutError:
        return None
