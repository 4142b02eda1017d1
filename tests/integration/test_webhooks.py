"""Webhooks on a batch's callback_uri (issue 16, item 5), on both backends: a real HTTPS receiver (a CA made
at test time) verifies every delivery with the third-party `standardwebhooks` library and misbehaves first
(an error status, no answer until GPO's timeout, an acceptance whose 2xx is lost), then accepts. A batch
runs to COMPLETED; the receiver gets its events in sequence and one completion event after de-duplication.
A receiver that never accepts, or holds a different secret, leaves the batch's webhook visibly failed."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import datetime as dt
import json
import logging
import os
import secrets
import ssl
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from decimal import Decimal
from pathlib import Path

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from gpo.v1 import disbursement_service_pb2 as api_pb
from gpo.v1 import resources_pb2 as res_pb
from prometheus_client import REGISTRY

from gpo_server.api.auth import OPERATOR_ROLE
from gpo_server.app import Orchestrator
from gpo_server.client import chunked
from gpo_server.demo import synthetic_payments
from gpo_server.storage.webhooks import WebhookStatus, WebhookStore
from tests.conftest import SIMULATOR, Gpo, running_gpo
from tests.integration.test_cli import cli
from tests.integration.test_payment_history import wait_final
from tests.peers.webhook_receiver import WebhookReceiver
from tests.support import certificates
from tests.support.databases import create_database, drop_database

PROGRAM = "webhooks"


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@pytest.fixture(params=["embedded", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def database(backend: str) -> AsyncIterator[dict[str, str]]:
    """On PostgreSQL, a database of the test's own: the webhook duty serves every batch with a callback
    URI it finds, and other tests' batches (with unreachable URIs) must not share its rounds."""
    shared = os.environ.get("GPO_TEST_DATABASE_URL", "")
    if backend != "postgres" or not shared:
        yield {}
        return
    fresh = await create_database(shared, "gpo_webhooks")
    try:
        yield {"database_url": fresh}
    finally:
        await drop_database(shared, fresh)


@pytest.fixture
def ca(tmp_path: Path) -> certificates.TestCa:
    return certificates.TestCa(tmp_path / "ca")


def server_tls(ca: certificates.TestCa) -> ssl.SSLContext:
    issued = ca.issue("localhost", server=True)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(issued.cert_file, issued.key_file)
    return context


@contextlib.asynccontextmanager
async def receiving(receiver: WebhookReceiver) -> AsyncIterator[WebhookReceiver]:
    await receiver.start()
    try:
        yield receiver
    finally:
        await receiver.close()


def gpo_settings(ca: certificates.TestCa, secret: str, **more: object) -> dict[str, object]:
    return {
        "webhook_secret": secret,
        "webhook_ca_file": str(ca.cert_file),
        "webhook_allow_networks": "127.0.0.0/8",  # the receiver is on loopback
        "webhook_progress_s": 0.2,
        "webhook_backoff_s": 0.05,
        "webhook_max_backoff_s": 0.2,
        "webhook_timeout_s": 2.0,  # "hang" costs this; shorter risks a TLS handshake timing out under load
        **more,
    }


async def upload(gpo: Gpo, callback_uri: str, count: int, invalid_every: int = 0) -> str:
    client = gpo.client([PROGRAM])
    header = api_pb.BatchHeader(
        program=PROGRAM,
        request_id=str(uuid.uuid4()),
        payer_fa="account:treasury@cb",
        callback_uri=callback_uri,
    )
    uploaded = await client.upload(header, chunked(synthetic_payments(count, invalid_every), 50))
    return str(uploaded.batch.name)


async def webhook_status(gpo: Gpo, name: str, until: object, timeout_s: float = 30) -> WebhookStatus:
    """The batch's webhook row once `until(status)` holds (polled: it changes in GPO's database)."""
    store = WebhookStore(gpo.orchestrator.store.engine)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = await store.status(name.removeprefix("batches/"))
        if status is not None and until(status):  # type: ignore[operator]
            return status
        await asyncio.sleep(0.05)
    raise AssertionError(f"webhook of {name} never reached the expected state: {status}")


async def test_a_batch_reports_progress_in_order_and_completes_once_through_failures(
    backend: str, database: dict[str, str], ca: certificates.TestCa, tmp_path: Path
) -> None:
    secret = new_secret()
    # Event 1 is refused (503), then not answered before GPO's 2 s timeout, then taken with its 2xx lost:
    # GPO sends it a fourth time. Everything after is accepted at once.
    receiver = WebhookReceiver(secret, server_tls(ca), script=["503", "hang", "lost"])
    async with receiving(receiver):
        settings = (
            gpo_settings(
                ca,
                secret,
                webhook_max_attempts=6,
                work_chunk_size=20,
                simulator=f"{SIMULATOR},latency_ms=100",
            )
            | database
        )
        async with running_gpo(backend, tmp_path, **settings) as gpo:
            name = await upload(gpo, receiver.url, 200, invalid_every=10)
            client = gpo.client([PROGRAM])
            await wait_final(client, name)
            await receiver.wait_for(lambda: any(e["type"] == "batch.completed" for e in receiver.events))
            status = await webhook_status(gpo, name, lambda s: s.delivered_sequence == s.last_sequence)
            payments = [p async for p in client.payments(name)]
            shown = (await client.get_batch(name)).webhook_delivery

    assert all(d.verified for d in receiver.deliveries), (
        "every signature verifies with the receiver's library"
    )
    first = receiver.deliveries[0].webhook_id
    assert [(d.webhook_id, d.answer) for d in receiver.deliveries[:4]] == [
        (first, "503"),
        (first, "hang"),
        (first, "lost"),
        (first, "ok"),
    ]
    events = receiver.events
    assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))
    assert status.last_sequence == len(events) and status.failed_time is None
    assert shown.state == res_pb.WEBHOOK_DELIVERY_STATE_DELIVERED and not shown.HasField("fail_time")
    assert shown.event_count == shown.delivered_event_count == len(events) and not shown.last_error
    assert [e["type"] for e in events[:-1]] == ["batch.progress"] * (len(events) - 1)
    assert events[-1]["type"] == "batch.completed" and len(events) >= 2
    assert [e["event_id"] for e in events] == [d.webhook_id for d in receiver.deliveries if d.answer == "ok"]
    assert len({e["event_id"] for e in events}) == len(events)
    times = [e["occurred_at"] for e in events]
    assert times == sorted(times)
    unfinished = [e["unfinished_count"] for e in events]
    assert unfinished == sorted(unfinished, reverse=True) and unfinished[-1] == 0
    assert all(e["state"] == "processing" for e in events[:-1])

    done = events[-1]
    assert (done["batch"], done["program"], done["state"], done["payment_count"]) == (
        name,
        PROGRAM,
        "completed",
        200,
    )
    counts: dict[str, int] = defaultdict(int)
    amounts: dict[str, Decimal] = defaultdict(Decimal)
    for p in payments:
        status_name = res_pb.PaymentStatus.Name(p.status).removeprefix("PAYMENT_STATUS_").lower()
        counts[status_name] += 1
        if status_name != "rejected":
            amounts[status_name] += Decimal(p.amount)
    assert {s: v["count"] for s, v in done["statuses"].items()} == counts
    assert counts["succeeded"] and counts["failed"] and counts["rejected"] == 20
    for status_name, total in amounts.items():
        sent = done["statuses"][status_name]["amounts"]["KES"]
        assert isinstance(sent, str) and Decimal(sent) == total and sent == f"{total:.2f}"


@pytest.mark.parametrize("receiver_kind", ["never accepts", "wrong secret"])
async def test_a_receiver_that_never_accepts_marks_the_batch_webhook_failed_after_the_bound(
    backend: str,
    database: dict[str, str],
    ca: certificates.TestCa,
    tmp_path: Path,
    receiver_kind: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = new_secret()
    receiver_secret, then = (secret, "503") if receiver_kind == "never accepts" else (new_secret(), "ok")
    receiver = WebhookReceiver(receiver_secret, server_tls(ca), then=then)
    abandoned_before = abandoned()
    caplog.set_level(logging.ERROR, logger="gpo_server.webhooks.worker")
    async with receiving(receiver):
        async with running_gpo(
            backend, tmp_path, **gpo_settings(ca, secret, webhook_max_attempts=3), **database
        ) as gpo:
            name = await upload(gpo, receiver.url, 5)
            status = await webhook_status(gpo, name, lambda s: s.failed_time is not None)
            await wait_final(gpo.client([PROGRAM]), name)
            operator = gpo.client([], [OPERATOR_ROLE], subject="webhook-operator")
            audited = [e async for e in operator.audit_events(name) if e.action == "webhook.abandoned"]
            # GetBatch, and so `gpo status`, tell an operator the receiver was given up on, and why.
            shown = (await gpo.client([PROGRAM]).get_batch(name)).webhook_delivery
            status_run = await cli(gpo, "status", name, tmp=tmp_path)

    deliveries: Sequence[object] = receiver.deliveries
    assert len(deliveries) == 3, deliveries  # the bound, each attempt reaching the receiver
    assert len({d.webhook_id for d in receiver.deliveries}) == 1  # event 1, never passed
    assert receiver.events == []
    if receiver_kind == "wrong secret":
        assert not any(d.verified for d in receiver.deliveries)
        assert status.last_error == "HTTP 401"
    else:
        assert all(d.verified for d in receiver.deliveries)
        assert status.last_error == "HTTP 503"
    assert status.attempts == 3 and status.delivered_sequence == 0
    assert abandoned() == abandoned_before + 1
    (event,) = audited  # an operator sees it in the batch's audit trail (gpo audit)
    assert event.caller_kind == "system" and status.last_error in event.detail_json
    assert any(name.removeprefix("batches/") in r.getMessage() for r in caplog.records)
    assert shown.state == res_pb.WEBHOOK_DELIVERY_STATE_FAILED
    # Progress events made while event 1 was retried wait behind it: none was delivered.
    assert shown.event_count == status.last_sequence >= 1 and shown.delivered_event_count == 0
    assert shown.failed_attempt_count == 3
    assert shown.last_error == status.last_error and status.failed_time is not None
    assert shown.fail_time.ToDatetime(dt.UTC) == status.failed_time
    assert status_run.code == 0, status_run.err
    printed = json.loads(status_run.out)["webhook_delivery"]
    assert printed["state"] == "WEBHOOK_DELIVERY_STATE_FAILED" and printed["last_error"] == status.last_error


def abandoned() -> float:
    return REGISTRY.get_sample_value("gpo_webhook_deliveries_total", {"outcome": "abandoned"}) or 0.0


async def test_a_cancelled_batch_says_so_with_its_cancelled_payments(
    backend: str, database: dict[str, str], ca: certificates.TestCa, tmp_path: Path
) -> None:
    secret = new_secret()
    async with receiving(WebhookReceiver(secret, server_tls(ca))) as receiver:
        async with running_gpo(backend, tmp_path, **gpo_settings(ca, secret), **database) as gpo:
            client = gpo.client([PROGRAM])
            later = Timestamp()
            later.FromDatetime(dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
            header = api_pb.BatchHeader(
                program=PROGRAM,
                request_id=str(uuid.uuid4()),
                payer_fa="account:treasury@cb",
                callback_uri=receiver.url,
                schedule_time=later,  # nothing is paid before the cancel
            )
            name = (await client.upload(header, chunked(synthetic_payments(5, 0), 5))).batch.name
            await receiver.wait_for(lambda: len(receiver.events) == 1)
            await client.cancel(name, str(uuid.uuid4()))
            await receiver.wait_for(lambda: len(receiver.events) == 2)

    progress, cancelled = receiver.events
    assert (progress["type"], progress["state"], progress["unfinished_count"]) == (
        "batch.progress",
        "processing",
        5,
    )
    assert (cancelled["type"], cancelled["sequence"], cancelled["state"]) == (
        "batch.cancelled",
        2,
        "cancelled",
    )
    assert cancelled["unfinished_count"] == 0
    assert list(cancelled["statuses"]) == ["cancelled"] and cancelled["statuses"]["cancelled"]["count"] == 5
    total = sum(Decimal(p.amount) for p in synthetic_payments(5, 0))
    assert cancelled["statuses"]["cancelled"]["amounts"] == {"KES": f"{total:.2f}"}


@pytest.mark.parametrize("backend", ["postgres"])
async def test_two_replicas_send_each_batch_s_events_once_at_a_time_and_in_order(
    backend: str, database: dict[str, str], ca: certificates.TestCa, tmp_path: Path
) -> None:
    """Two orchestrators on one PostgreSQL both run the webhook duty: the receiver never gets two of the
    batch's events at once (a hanging attempt keeps the other replica off), and gets them in sequence."""
    secret = new_secret()
    receiver = WebhookReceiver(secret, server_tls(ca), script=["hang", "503"])
    async with receiving(receiver):
        settings = gpo_settings(ca, secret, work_chunk_size=20, simulator=f"{SIMULATOR},latency_ms=100")
        # Retries wait 0.3 s: far longer than the receiver takes to see a given-up attempt's connection
        # close, so "at once" below means two sends, not one send's tail.
        settings |= {"webhook_backoff_s": 0.3, "webhook_max_backoff_s": 0.3}
        async with running_gpo(backend, tmp_path, **settings, **database) as gpo:
            second = Orchestrator(dataclasses.replace(gpo.orchestrator.settings, listen="127.0.0.1:0"))
            await second.start()
            try:
                name = await upload(gpo, receiver.url, 200)
                await wait_final(gpo.client([PROGRAM]), name)
                await receiver.wait_for(lambda: any(e["type"] == "batch.completed" for e in receiver.events))
            finally:
                await second.stop(grace_s=5)

    assert receiver.most_in_flight == 1
    assert all(d.verified for d in receiver.deliveries)
    events = receiver.events
    assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))
    assert [e["type"] for e in events].count("batch.completed") == 1 and events[-1][
        "type"
    ] == "batch.completed"
    ok = [d.webhook_id for d in receiver.deliveries if d.answer == "ok"]
    assert ok == [e["event_id"] for e in events]  # each accepted exactly once: no replica sent one twice
