"""The callback listener: the provider PUTs the final batch representation (or an errorObject) to the
X-Callback-URL the sidecar gave, which names the batch's X-CorrelationID.

    PUT {base}/gsma/callbacks/{correlationId}            batchTransactionsSuccessEvent / FailureEvent
    PUT {base}/gsma/callbacks/{correlationId}/approval   batchTransactionsUpdateSuccessEvent / FailureEvent

Answers (the spec's callback responses): 204 accepted, 400 not a callback body, 401 wrong X-API-Key,
404 a correlation id this sidecar never used. Callbacks are hints, never the source of results: a
duplicate is accepted and changes nothing, and results are always read from /completions and /rejections.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from rail_sidecars.rails.gsma.transformers import is_batch_object, is_error_object

log = logging.getLogger(__name__)

PATH = "/gsma/callbacks"


@dataclass
class CallbackSlot:
    """What arrived for one batch; `event` is set at each callback."""

    event: asyncio.Event = field(default_factory=asyncio.Event)
    batch: dict[str, Any] | None = None  # the last responseBatchTransaction
    error: dict[str, Any] | None = None  # an errorObject: the provider refused the batch
    approval_error: dict[str, Any] | None = None  # an errorObject for the approval PATCH
    received: int = 0


class CallbackListener:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        public_url: str = "",
        api_key: str = "",
        is_known: Callable[[str], Awaitable[bool]],
    ) -> None:
        self.host = host
        self.port = port
        self._public_url = public_url.rstrip("/")
        self._api_key = api_key
        self._is_known = is_known
        self._slots: dict[str, CallbackSlot] = {}
        self._runner: web.AppRunner | None = None
        self.accepted = 0  # callbacks answered 204, duplicates included

    async def start(self) -> None:
        app = web.Application(client_max_size=1024 * 1024)
        app.router.add_put(PATH + "/{correlation_id}", self._batch_callback)
        app.router.add_put(PATH + "/{correlation_id}/approval", self._approval_callback)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        # Our own socket, so that port 0 (any free port) can be read back for the callback URL.
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = int(sock.getsockname()[1])
        await web.SockSite(self._runner, sock).start()
        log.info("GSMA callback listener on %s:%d", self.host, self.port)

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def base_url(self) -> str:
        return self._public_url or f"http://{self.host}:{self.port}"

    def url_for(self, correlation_id: str) -> str:
        return f"{self.base_url}{PATH}/{correlation_id}"

    def approval_url_for(self, correlation_id: str) -> str:
        return f"{self.url_for(correlation_id)}/approval"

    def slot(self, correlation_id: str) -> CallbackSlot:
        """The slot of a batch; open it before posting so an early callback is not missed."""
        return self._slots.setdefault(correlation_id, CallbackSlot())

    def forget(self, correlation_id: str) -> None:
        self._slots.pop(correlation_id, None)

    # -- handlers

    async def _read(self, request: web.Request) -> tuple[str, Any] | web.Response:
        if self._api_key and request.headers.get("X-API-Key") != self._api_key:
            return _error(401, "authorisation", "clientAuthorisationError", "missing or wrong X-API-Key")
        correlation_id = request.match_info["correlation_id"]
        try:
            body = json.loads(await request.read())
        except ValueError:
            return _error(400, "validation", "formatError", "the body is not JSON")
        if correlation_id not in self._slots and not await self._is_known(correlation_id):
            return _error(404, "identification", "genericError", "unknown correlation id")
        return correlation_id, body

    async def _batch_callback(self, request: web.Request) -> web.Response:
        read = await self._read(request)
        if isinstance(read, web.Response):
            return read
        correlation_id, body = read
        if not (is_batch_object(body) or is_error_object(body)):
            return _error(400, "validation", "formatError", "neither a batch transaction nor an error")
        slot = self.slot(correlation_id)
        if is_batch_object(body):
            slot.batch = body
        else:
            slot.error = body
            log.warning(
                "provider refused batch %s: %s/%s",
                correlation_id,
                body.get("errorCategory"),
                body.get("errorCode"),
            )
        slot.received += 1
        slot.event.set()
        self.accepted += 1
        return web.Response(status=204)

    async def _approval_callback(self, request: web.Request) -> web.Response:
        read = await self._read(request)
        if isinstance(read, web.Response):
            return read
        correlation_id, body = read
        if is_error_object(body):
            slot = self.slot(correlation_id)
            slot.approval_error = body
            slot.event.set()
            log.warning("approval of batch %s refused: %s", correlation_id, body.get("errorCode"))
        elif not (isinstance(body, dict) and body.get("result") == "success"):
            return _error(400, "validation", "formatError", "neither an update success nor an error")
        self.accepted += 1
        return web.Response(status=204)


def _error(status: int, category: str, code: str, description: str) -> web.Response:
    return web.json_response(
        {"errorCategory": category, "errorCode": code, "errordescription": description}, status=status
    )
