"""A webhook receiver as a program's system would write one: HTTPS, Standard Webhooks signatures checked with
the third-party `standardwebhooks` library (never GPO's code), events de-duplicated by their id.

`script` says how it answers its first deliveries, in order: "503" (an error status), "hang" (no answer
until the sender gives up), "lost" (the event is taken but the answer is a 500, as when a 2xx is lost on
the way back) or "ok"; after the script, `then`. A delivery whose signature does not verify
is answered 401 and never counted as received.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError


@dataclass
class Delivery:
    webhook_id: str
    verified: bool
    answer: str


@dataclass
class WebhookReceiver:
    secret: str
    ssl_context: ssl.SSLContext
    script: Sequence[str] = ()
    then: str = "ok"
    deliveries: list[Delivery] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)  # accepted, de-duplicated by id, in order
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    most_in_flight: int = 0  # the most deliveries it was answering at once
    _in_flight: int = 0
    _seen: set[str] = field(default_factory=set)
    _release: asyncio.Event = field(default_factory=asyncio.Event)
    _runner: web.AppRunner | None = None
    port: int = 0

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/hooks/gpo"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hooks/gpo", self._receive)
        # A sender that gives up closes its connection: the handler then ends, as a real server's would.
        self._runner = web.AppRunner(app, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.ssl_context)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def close(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def wait_for(self, condition: Any, timeout_s: float = 60) -> None:
        """Until condition() is true, woken by each delivery."""
        async with asyncio.timeout(timeout_s):
            while not condition():
                self.changed.clear()
                await self.changed.wait()

    async def _receive(self, request: web.Request) -> web.Response:
        self._in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self._in_flight)
        try:
            return await self._answer(request)
        finally:
            self._in_flight -= 1

    async def _answer(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = dict(request.headers)
        webhook_id = request.headers.get("webhook-id", "")
        try:
            event = Webhook(self.secret).verify(body, headers)
        except WebhookVerificationError:
            self._record(Delivery(webhook_id, False, "401"))
            return web.Response(status=401)
        n = len(self.deliveries)
        answer = self.script[n] if n < len(self.script) else self.then
        self._record(Delivery(webhook_id, True, answer))
        if answer == "hang":
            await self._release.wait()
            return web.Response(status=503)
        if answer not in ("ok", "lost"):
            return web.Response(status=int(answer))
        if webhook_id not in self._seen:  # de-duplication by the event's id, as the scheme advises
            self._seen.add(webhook_id)
            self.events.append(event)
        self.changed.set()
        return web.Response(status=204 if answer == "ok" else 500)

    def _record(self, delivery: Delivery) -> None:
        self.deliveries.append(delivery)
        self.changed.set()
