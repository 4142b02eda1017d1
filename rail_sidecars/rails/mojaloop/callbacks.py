"""The FSPIOP callback listener: the hub answers every request asynchronously with a PUT to us.

Routes (under an optional prefix): PUT /bulkQuotes/{ID}, PUT /bulkTransfers/{ID}, PUT /parties/{Type}/{ID}
and the /error variant of each. Each callback is handed to whoever waits for that resource and id
(`Mailbox`). A waiter registers BEFORE its request is sent, since the callback may beat the HTTP
response; callbacks nobody waits for (late, duplicated) are kept in a small cache so the next wait for
that id, e.g. a look-up, finds them at once.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)

_CACHE_SIZE = 4096


@dataclass(frozen=True, slots=True)
class Callback:
    resource: str  # "bulkQuotes", "bulkTransfers" or "parties"
    id: str  # the {ID} of the path ("{Type}/{ID}" for parties)
    body: dict[str, Any]
    error: bool  # it came on the /error path


class Mailbox:
    """Callbacks by (resource, id), for any number of waiters at once."""

    def __init__(self) -> None:
        self._waiters: dict[tuple[str, str], list[asyncio.Queue[Callback]]] = {}
        self._recent: collections.OrderedDict[tuple[str, str], Callback] = collections.OrderedDict()

    @asynccontextmanager
    async def expect(self, resource: str, id: str) -> AsyncIterator[asyncio.Queue[Callback]]:
        """A queue receiving every callback for (resource, id) while the block runs."""
        key = (resource, id)
        queue: asyncio.Queue[Callback] = asyncio.Queue()
        self._waiters.setdefault(key, []).append(queue)
        try:
            yield queue
        finally:
            waiting = self._waiters.get(key, [])
            if queue in waiting:
                waiting.remove(queue)
            if not waiting:
                self._waiters.pop(key, None)

    def recent(self, resource: str, id: str) -> Callback | None:
        return self._recent.get((resource, id))

    def forget(self, resource: str, id: str) -> None:
        self._recent.pop((resource, id), None)

    def deliver(self, callback: Callback) -> None:
        key = (callback.resource, callback.id)
        self._recent[key] = callback
        self._recent.move_to_end(key)
        while len(self._recent) > _CACHE_SIZE:
            self._recent.popitem(last=False)
        for queue in self._waiters.get(key, []):
            queue.put_nowait(callback)


def _error(status: int, code: str, description: str) -> web.Response:
    body = {"errorInformation": {"errorCode": code, "errorDescription": description}}
    return web.json_response(body, status=status)


class CallbackListener:
    """An aiohttp server on host:port; `payer_fsp` refuses callbacks addressed to another FSP."""

    def __init__(self, mailbox: Mailbox, payer_fsp: str, host: str, port: int, prefix: str = "") -> None:
        self.mailbox = mailbox
        self.payer_fsp = payer_fsp
        self.host = host
        self.port = port
        self.prefix = prefix
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=6 * 1024 * 1024)  # FSPIOP bodies go up to 5 MB
        p = self.prefix
        app.router.add_put(p + "/bulkQuotes/{id}/error", self._handler("bulkQuotes", error=True))
        app.router.add_put(p + "/bulkQuotes/{id}", self._handler("bulkQuotes", error=False))
        app.router.add_put(p + "/bulkTransfers/{id}/error", self._handler("bulkTransfers", error=True))
        app.router.add_put(p + "/bulkTransfers/{id}", self._handler("bulkTransfers", error=False))
        app.router.add_put(p + "/parties/{type}/{id}/error", self._handler("parties", error=True))
        app.router.add_put(p + "/parties/{type}/{id}", self._handler("parties", error=False))
        return app

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        log.info("FSPIOP callbacks on http://%s:%d%s", self.host, self.port, self.prefix)

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _handler(self, resource: str, *, error: bool) -> Any:
        async def handle(request: web.Request) -> web.Response:
            destination = request.headers.get("FSPIOP-Destination", "")
            if destination and destination != self.payer_fsp:
                return _error(400, "3201", f"this endpoint serves FSP {self.payer_fsp}, not {destination}")
            try:
                body = json.loads(await request.read())
            except ValueError:
                return _error(400, "3101", "malformed JSON")
            if not isinstance(body, dict):
                return _error(400, "3101", "the body must be a JSON object")
            problem = _missing(resource, error, body)
            if problem:
                return _error(400, "3102", problem)
            id = request.match_info["id"]
            if resource == "parties":
                id = f"{request.match_info['type']}/{id}"
            self.mailbox.deliver(Callback(resource, id, body, error))
            return web.Response(status=200)

        return handle


def _missing(resource: str, error: bool, body: dict[str, Any]) -> str:
    """The mandatory element a callback lacks (FSPIOP 3102), or ""; the spec's full schema is checked by
    the conformance tests, not here."""
    if error:
        info = body.get("errorInformation")
        ok = isinstance(info, dict) and "errorCode" in info and "errorDescription" in info
        return "" if ok else "errorInformation with errorCode and errorDescription is required"
    required = {"bulkQuotes": "expiration", "bulkTransfers": "bulkTransferState", "parties": "party"}[
        resource
    ]
    return "" if required in body else f"{required} is required"
