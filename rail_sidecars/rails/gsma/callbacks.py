"""The callback listener: the provider PUTs the final batch representation (or an errorObject) to the
X-Callback-URL the sidecar gave, which names the batch's X-CorrelationID.

    PUT {base}/gsma/callbacks/{token}/{correlationId}            batchTransactionsSuccessEvent / FailureEvent
    PUT {base}/gsma/callbacks/{token}/{correlationId}/approval   batchTransactionsUpdateSuccessEvent / ...

Callbacks are authenticated by default (`callback_auth = "token"`): each X-Callback-URL carries a token,
HMAC-SHA256(secret, correlation id), that only the provider the URL was given to knows; a callback
without the batch's token is refused 401 and logged. With `callback_api_key` set, the X-API-Key header
must match too (`callback_auth = "api_key"` uses that alone, on the token-less routes). Only
`callback_auth = "none"` takes unauthenticated callbacks, and the rail warns at start.

Answers (the spec's callback responses): 204 accepted, 400 not a callback body, 401 not authenticated,
404 a correlation id no replica of this rail ever used (its rail notes hold none). With several replicas
behind one Service, the callback may reach a replica that is not waiting for it: that one answers 204 and
drops it, and the replica that posted the batch polls the provider after callback_wait_s. Callbacks are hints, never the source of results: a
duplicate is accepted and changes nothing, results are always read from /completions and /rejections,
and a failure callback is believed only once the provider's own request state or batch confirms it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from rail_sidecars.rails.gsma.transformers import is_batch_object, is_error_object
from rail_sidecars.sdk.callbacks import CallbackServer, Mailbox, next_callback

log = logging.getLogger(__name__)

PATH = "/gsma/callbacks"


@dataclass(frozen=True, slots=True)
class Callback:
    kind: str  # BATCH, ERROR (the provider refused the batch) or APPROVAL_ERROR
    body: dict[str, Any]


BATCH, ERROR, APPROVAL_ERROR = "batch", "error", "approval_error"


@dataclass
class Heard:
    """What the callbacks for one batch said, as the rail reads them from its mailbox queue."""

    queue: asyncio.Queue[Callback]
    batch: dict[str, Any] | None = None  # the last responseBatchTransaction
    error: dict[str, Any] | None = None  # an errorObject: the provider refused the batch
    approval_error: dict[str, Any] | None = None  # an errorObject for the approval PATCH

    def take(self, callback: Callback | None) -> None:
        if callback is None:
            return
        if callback.kind == BATCH:
            self.batch = callback.body
        elif callback.kind == ERROR:
            self.error = callback.body
        else:
            self.approval_error = callback.body

    def update(self) -> None:
        """Takes every callback that arrived since the last look."""
        while not self.queue.empty():
            self.take(self.queue.get_nowait())

    async def wait(self, seconds: float) -> None:
        """Until the next callback for the batch or `seconds`, whichever comes first."""
        callback: Callback | None = await next_callback(self.queue, seconds)
        self.take(callback)
        self.update()


class CallbackListener:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        public_url: str = "",
        api_key: str = "",
        secret: bytes = b"",
        is_known: Callable[[str], Awaitable[bool]],
    ) -> None:
        self._server = CallbackServer(host, port, public_url)
        self.mailbox: Mailbox[str, Callback] = Mailbox()
        self._api_key = api_key
        self.secret = secret  # empty: no token in the callback URLs (api_key or none); set before start()
        self._is_known = is_known
        self.accepted = 0  # callbacks answered 204, duplicates included
        self.refused = 0  # callbacks refused as unauthenticated

    async def start(self) -> None:
        app = web.Application(client_max_size=1024 * 1024)
        prefix = PATH + "/{token}" if self.secret else PATH
        app.router.add_put(prefix + "/{correlation_id}", self._batch_callback)
        app.router.add_put(prefix + "/{correlation_id}/approval", self._approval_callback)
        if self.secret:  # anything else under PATH lacks a token: refused as unauthenticated, and logged
            app.router.add_put(PATH + "/{tail:.*}", self._no_token)
        await self._server.start(app)
        log.info("GSMA callback listener on %s:%d", self._server.host, self._server.port)

    async def close(self) -> None:
        await self._server.close()

    @property
    def base_url(self) -> str:
        return self._server.base_url

    def token(self, correlation_id: str) -> str:
        return hmac.new(self.secret, correlation_id.encode(), hashlib.sha256).hexdigest()[:40]

    def url_for(self, correlation_id: str) -> str:
        if self.secret:
            return f"{self.base_url}{PATH}/{self.token(correlation_id)}/{correlation_id}"
        return f"{self.base_url}{PATH}/{correlation_id}"

    def approval_url_for(self, correlation_id: str) -> str:
        return f"{self.url_for(correlation_id)}/approval"

    @asynccontextmanager
    async def heard(self, correlation_id: str) -> AsyncIterator[Heard]:
        """What the callbacks of a batch say while the block runs (with the last one that came before);
        open it before posting so an early callback is not missed."""
        async with self.mailbox.expect(correlation_id) as queue:
            heard = Heard(queue)
            heard.take(self.mailbox.recent(correlation_id))
            yield heard

    def forget(self, correlation_id: str) -> None:
        self.mailbox.forget(correlation_id)

    # -- handlers

    async def _read(self, request: web.Request) -> tuple[str, Any] | web.Response:
        correlation_id = request.match_info["correlation_id"]
        why = ""
        if self.secret and not hmac.compare_digest(
            request.match_info.get("token", ""), self.token(correlation_id)
        ):
            why = "wrong callback token"
        elif self._api_key and not hmac.compare_digest(request.headers.get("X-API-Key", ""), self._api_key):
            why = "missing or wrong X-API-Key"
        if why:
            self.refused += 1
            log.warning("refused callback for batch %s: %s", correlation_id[:64], why)
            return _error(401, "authorisation", "clientAuthorisationError", why)
        try:
            body = json.loads(await request.read())
        except ValueError:
            return _error(400, "validation", "formatError", "the body is not JSON")
        if not self.mailbox.expecting(correlation_id):
            if not await self._is_known(correlation_id):
                return _error(404, "identification", "genericError", "unknown correlation id")
            # Another replica posted it (or this one before a restart): whoever waits polls instead.
            log.info(
                "callback for batch %s: no request of this replica waits for it; answered and dropped",
                correlation_id,
            )
        return correlation_id, body

    async def _no_token(self, request: web.Request) -> web.Response:
        self.refused += 1
        log.warning("refused callback PUT %s: no callback token", request.path[:200])
        return _error(401, "authorisation", "clientAuthorisationError", "wrong callback token")

    async def _batch_callback(self, request: web.Request) -> web.Response:
        read = await self._read(request)
        if isinstance(read, web.Response):
            return read
        correlation_id, body = read
        if not (is_batch_object(body) or is_error_object(body)):
            return _error(400, "validation", "formatError", "neither a batch transaction nor an error")
        if is_batch_object(body):
            self.mailbox.deliver(correlation_id, Callback(BATCH, body))
        else:
            self.mailbox.deliver(correlation_id, Callback(ERROR, body))
            log.warning(
                "provider refused batch %s: %s/%s",
                correlation_id,
                body.get("errorCategory"),
                body.get("errorCode"),
            )
        self.accepted += 1
        return web.Response(status=204)

    async def _approval_callback(self, request: web.Request) -> web.Response:
        read = await self._read(request)
        if isinstance(read, web.Response):
            return read
        correlation_id, body = read
        if is_error_object(body):
            self.mailbox.deliver(correlation_id, Callback(APPROVAL_ERROR, body))
            log.warning("approval of batch %s refused: %s", correlation_id, body.get("errorCode"))
        elif not (isinstance(body, dict) and body.get("result") == "success"):
            return _error(400, "validation", "formatError", "neither an update success nor an error")
        self.accepted += 1
        return web.Response(status=204)


def _error(status: int, category: str, code: str, description: str) -> web.Response:
    return web.json_response(
        {"errorCategory": category, "errorCode": code, "errordescription": description}, status=status
    )
