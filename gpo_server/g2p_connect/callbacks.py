"""Callbacks to senders: on-disburse for payments that reached a final status, and the on-status /
on-search answers, delivered from the g2p_callbacks table with retries and exponential backoff, each
attempt signed afresh with GPO's own key.

Final statuses become callbacks in the same transaction that records them as reported, so each final
status of each payment is called back once, batched (callbacks.batch_size per message), and none is lost
if GPO stops: an undelivered callback is retried after a restart. A callback the sender acknowledged with
2xx is done; after max_attempts failures it is abandoned and logged (it stays in the table).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from collections.abc import Sequence
from typing import Any

import httpx
from sqlalchemy import Row

from gpo_server.g2p_connect.config import G2pSettings
from gpo_server.g2p_connect.messages import callback_header, disbursement_status
from gpo_server.g2p_connect.storage import Callback, G2pStore, MessageRecord

log = logging.getLogger(__name__)

ON_DISBURSE, ON_STATUS, ON_SEARCH = "/on-disburse", "/disburse/txn/on-status", "/disburse/on-search"


def callback_uri(sender_uri: str, path: str) -> str:
    """sender_uri is taken as the base of the sender's callback endpoints; a sender_uri that already ends
    with the endpoint's path (as in the spec's example, ".../callback/on-search") is used as it is."""
    base = sender_uri.rstrip("/")
    last = path.rsplit("/", 1)[1]
    return base if base.endswith("/" + last) else base + path


def dumps(body: dict[str, Any]) -> str:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


class CallbackWorker:
    def __init__(
        self, store: G2pStore, settings: G2pSettings, client: httpx.AsyncClient | None = None
    ) -> None:
        self.store = store
        self.settings = settings
        self.config = settings.callbacks
        self._client = client or httpx.AsyncClient(timeout=self.config.timeout_s)
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    def on_disburse(self, message: MessageRecord, rows: Sequence[Row[Any]]) -> list[tuple[str, str]]:
        statuses = [disbursement_status(r._mapping) for r in rows]
        body = {
            "header": callback_header(
                "on-disburse",
                "succ",
                sender_id=self.settings.receiver_id,
                receiver_id=message.sender_id,
                total_count=len(statuses),
                completed_count=len(statuses),
            ),
            "message": {"transaction_id": message.transaction_id, "disbursements_status": statuses},
        }
        return [(callback_uri(message.sender_uri, ON_DISBURSE), dumps(body))]

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                try:
                    await self.store.report_final(self.on_disburse, self.config.batch_size)
                    await self.deliver_due()
                except Exception:
                    log.exception("G2P Connect callbacks: a round failed; trying again")
                self._wake.clear()
                waits = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
                await asyncio.wait(
                    waits, timeout=self.config.poll_interval_s, return_when=asyncio.FIRST_COMPLETED
                )
                for w in waits:
                    w.cancel()
        finally:
            await self._client.aclose()

    async def deliver_due(self) -> None:
        due = await self.store.due_callbacks(50)
        if due:
            limit = asyncio.Semaphore(8)

            async def one(cb: Callback) -> None:
                async with limit:
                    await self._deliver(cb)

            await asyncio.gather(*(one(cb) for cb in due))

    async def _deliver(self, cb: Callback) -> None:
        body = cb.body.encode()
        # The callback goes to the sender its header names as receiver: signed in that sender's scheme,
        # with its bearer token (or the callbacks' default one).
        try:
            receiver = str(json.loads(cb.body)["header"].get("receiver_id", ""))
        except (ValueError, KeyError, AttributeError):
            receiver = ""
        sender = self.settings.senders.get(receiver)
        scheme = sender.signature_scheme if sender is not None else "beckn"
        token = (sender.callback_bearer_token if sender is not None else "") or self.config.bearer_token
        headers = {
            "Content-Type": "application/json",
            "Signature": self.settings.signer.sign(body, scheme=scheme),
        }
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            response = await self._client.post(cb.uri, content=body, headers=headers)
            if 200 <= response.status_code < 300:
                await self.store.callback_sent(cb.id)
                return
            error = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        attempts = cb.attempts + 1
        if attempts >= self.config.max_attempts:
            log.error(
                "G2P Connect callback %d to %s abandoned after %d attempts: %s",
                cb.id,
                cb.uri,
                attempts,
                error,
            )
            await self.store.callback_failed(cb.id, error, None)
            return
        delay = min(self.config.max_backoff_s, self.config.backoff_s * 2 ** (attempts - 1))
        log.warning("G2P Connect callback %d to %s failed (%s); retry in %.1fs", cb.id, cb.uri, error, delay)
        await self.store.callback_failed(cb.id, error, dt.datetime.now(dt.UTC) + dt.timedelta(seconds=delay))
