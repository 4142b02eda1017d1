"""The webhook duty of `gpo serve`: makes batch events as they fall due and delivers them.

At least once: an event is committed before it is sent and marked delivered only after a 2xx, so a crash
in between sends it again (same webhook-id, for the receiver's de-duplication). In order per batch: only a
batch's next undelivered event is sent, and the next one waits for its 2xx. Each failed attempt waits
backoff_s * 2^(attempts-1) (at most max_backoff_s); after max_attempts the batch's webhook is marked
failed (logged at ERROR, counted in gpo_webhook_failing_batches) and nothing more is sent for it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import ssl
import time
from dataclasses import dataclass

import httpx

from gpo_server.observability import metrics
from gpo_server.stopping import sleep_unless_stopped
from gpo_server.storage.store import utcnow
from gpo_server.storage.webhooks import DueEvent, WebhookStore
from gpo_server.webhooks import payload, signing
from gpo_server.webhooks.destinations import Destinations, Refused

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WebhookSettings:
    secret: bytes
    progress_every_s: float = 30.0
    max_attempts: int = 12
    backoff_s: float = 2.0
    max_backoff_s: float = 600.0
    timeout_s: float = 10.0
    poll_s: float = 1.0
    parallel: int = 8


class WebhookWorker:
    def __init__(
        self,
        store: WebhookStore,
        settings: WebhookSettings,
        destinations: Destinations,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.destinations = destinations
        # No redirects (a 3xx is a failed attempt: a redirect would skip the destination check), no proxy
        # or .netrc from the environment, TLS verified (against GPO_WEBHOOK_CA_FILE when set).
        self.client = httpx.AsyncClient(
            timeout=settings.timeout_s,
            follow_redirects=False,
            trust_env=False,
            verify=tls if tls is not None else True,
        )
        self._failing_sampled = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                # A stop does not wait for a slow receiver: the attempt is dropped, its lease runs out,
                # and the event is sent again later (at least once).
                work = asyncio.create_task(self.round())
                stopping = asyncio.create_task(stop.wait())
                await asyncio.wait([work, stopping], return_when=asyncio.FIRST_COMPLETED)
                stopping.cancel()
                if not work.done():
                    work.cancel()
                    await asyncio.gather(work, return_exceptions=True)
                    return
                if (error := work.exception()) is not None:
                    log.error("webhooks: a round failed; trying again", exc_info=error)
                await sleep_unless_stopped(stop, self.settings.poll_s)
        finally:
            await self.client.aclose()

    async def round(self) -> None:
        await self.store.make_events(self.settings.progress_every_s, payload.render)
        # The lease outlasts one attempt, so a slow receiver is never sent the same event twice at once.
        due = await self.store.claim_due(lease_s=self.settings.timeout_s * 2 + 30)
        if due:
            limit = asyncio.Semaphore(self.settings.parallel)

            async def one(event: DueEvent) -> None:
                async with limit:
                    await self.deliver(event)

            await asyncio.gather(*(one(e) for e in due))
        if time.monotonic() - self._failing_sampled > 15:
            metrics.WEBHOOK_FAILING.set(await self.store.failing_count())
            self._failing_sampled = time.monotonic()

    async def deliver(self, event: DueEvent) -> None:
        body = event.body.encode()
        try:
            # One bound for the whole attempt, name resolution included, well inside the claim's lease.
            async with asyncio.timeout(self.settings.timeout_s * 2):
                error = await self._attempt(event, body)
        except TimeoutError:
            error = f"no answer within {self.settings.timeout_s * 2:.0f}s"
        if error is None:
            await self.store.delivered(event)
            metrics.WEBHOOK_DELIVERIES.labels("delivered").inc()
            return
        await self._failed(event, error)

    async def _attempt(self, event: DueEvent, body: bytes) -> str | None:
        """None when the receiver answered 2xx, else why not."""
        try:
            target = await self.destinations.resolve(event.uri)
            headers = signing.headers(self.settings.secret, event.event_id, int(time.time()), body)
            headers |= {"content-type": "application/json", "host": target.host_header}
            request = self.client.build_request(
                "POST",
                target.url,
                content=body,
                headers=headers,
                extensions={"sni_hostname": target.server_name},
            )
            # The answer's body is never read: only its status counts.
            response = await self.client.send(request, stream=True)
            await response.aclose()
            if 200 <= response.status_code < 300:
                return None
            return f"HTTP {response.status_code}"
        except Refused as exc:
            return f"refused: {exc}"
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"[:300]

    async def _failed(self, event: DueEvent, error: str) -> None:
        attempts = event.attempts + 1
        if attempts >= self.settings.max_attempts:
            await self.store.attempt_failed(event, error, None)
            metrics.WEBHOOK_DELIVERIES.labels("abandoned").inc()
            self._failing_sampled = 0.0
            log.error(
                "webhook of batch %s abandoned after %d attempts (last: %s); no more events go to it",
                event.batch_uid,
                attempts,
                error,
            )
            return
        delay = min(self.settings.max_backoff_s, self.settings.backoff_s * 2 ** (attempts - 1))
        await self.store.attempt_failed(event, error, utcnow() + dt.timedelta(seconds=delay))
        metrics.WEBHOOK_DELIVERIES.labels("retry").inc()
        log.warning(
            "webhook event %s (batch %s, #%d) failed: %s; retry in %.1fs",
            event.event_id,
            event.batch_uid,
            event.sequence,
            error,
            delay,
        )
