"""Signatures (ed25519, RSA-SHA256), the mapper client (batches, TTL cache, unavailability) and callback
delivery (retries with backoff, abandonment), without processes."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from gpo.v1 import disbursement_service_pb2 as api_pb
from sqlalchemy import select

from gpo_server.domain.routing import Router
from gpo_server.g2p_connect import signatures
from gpo_server.g2p_connect.callbacks import CallbackWorker, callback_uri
from gpo_server.g2p_connect.config import CallbackConfig, G2pSettings, KeyRing, MapperConfig
from gpo_server.g2p_connect.mapper import MapperClient, MapperUnavailable
from gpo_server.g2p_connect.signatures import Signer
from gpo_server.g2p_connect.storage import G2pStore
from gpo_server.intake import Intake
from gpo_server.storage.store import NewBatch, Store
from gpo_server.storage.tables import g2p_callbacks, g2p_messages
from tests.support.databases import migrated_store


@pytest.mark.parametrize("key", [ed25519.Ed25519PrivateKey.generate(), rsa.generate_private_key(65537, 2048)])
def test_sign_and_verify(key: Any) -> None:
    body = b'{"header": {}, "message": {}}'
    header = Signer("spp", "k1", key).sign(body)
    parsed = signatures.parse(header)
    assert (parsed.sender_id, parsed.unique_key_id) == ("spp", "k1")
    signatures.verify(body, parsed, key.public_key())
    with pytest.raises(signatures.SignatureError):
        signatures.verify(body + b" ", parsed, key.public_key())
    with pytest.raises(signatures.SignatureError):
        signatures.verify(body, parsed, key.public_key(), now=parsed.expires + 3600)
    other = ed25519.Ed25519PrivateKey.generate().public_key()
    with pytest.raises(signatures.SignatureError):
        signatures.verify(body, parsed, other)


def test_parse_accepts_the_specs_example_spelling() -> None:
    header = Signer("spp", "k1", ed25519.Ed25519PrivateKey.generate()).sign(b"x").replace("keyId", "kidId")
    assert signatures.parse("Signature: " + header.removeprefix("Signature ")).unique_key_id == "k1"
    with pytest.raises(signatures.SignatureError):
        signatures.parse('Signature keyId="only-one-part",algorithm="ed25519"')


def test_callback_uri() -> None:
    assert callback_uri("http://h/cb", "/on-disburse") == "http://h/cb/on-disburse"
    assert callback_uri("http://h/cb/on-disburse", "/on-disburse") == "http://h/cb/on-disburse"
    assert callback_uri("http://h/cb/", "/disburse/txn/on-status") == "http://h/cb/disburse/txn/on-status"


async def test_mapper_batches_caches_and_reports_unavailability() -> None:
    calls: list[int] = []
    failing = False

    def handle(request: httpx.Request) -> httpx.Response:
        if failing:
            return httpx.Response(503)
        items = json.loads(request.content)["message"]["resolve_request"]
        calls.append(len(items))
        answers = [
            {
                "reference_id": it["reference_id"],
                "timestamp": "t",
                "status": "succ",
                "fa": f"mobile:{it['id'][6:8]}@m",
            }
            if it["id"].startswith("token:1")
            else {
                "reference_id": it["reference_id"],
                "timestamp": "t",
                "status": "succ",
                "status_reason_code": "succ.fa.not_found",
            }
            for it in items
        ]
        return httpx.Response(200, json={"message": {"resolve_response": answers}})

    config = MapperConfig(url="http://mapper", id_providers=frozenset({"nid"}), batch_size=2, cache_ttl_s=60)
    signer = Signer("gpo", "k", ed25519.Ed25519PrivateKey.generate())
    mapper = MapperClient(config, signer, httpx.AsyncClient(transport=httpx.MockTransport(handle)))
    ids = ["token:10@nid", "token:11@nid", "token:20@nid", "token:10@nid"]
    found = await mapper.resolve(ids)
    assert calls == [2, 1]
    assert found["token:10@nid"].fa and not found["token:20@nid"].fa
    assert found["token:20@nid"].reason_code == "succ.fa.not_found"
    await mapper.resolve(ids)
    assert calls == [2, 1]  # all cached
    failing = True
    with pytest.raises(MapperUnavailable):
        await mapper.resolve(["token:12@nid"])
    await mapper.close()


async def test_the_mapper_cache_keeps_at_most_its_limit_least_recently_used_first() -> None:
    asked: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        items = json.loads(request.content)["message"]["resolve_request"]
        asked.extend(it["id"] for it in items)
        answers = [
            {
                "reference_id": it["reference_id"],
                "timestamp": "t",
                "id": it["id"],
                "fa": f"account:{it['id'].split(':')[1].split('@')[0]}@bank",
                "status": "succ",
                "status_reason_code": "succ.fa.active",
            }
            for it in items
        ]
        return httpx.Response(200, json={"message": {"resolve_response": answers}})

    config = MapperConfig(
        url="http://mapper", id_providers=frozenset({"nid"}), batch_size=100, cache_max_entries=3
    )
    signer = Signer("gpo", "k", ed25519.Ed25519PrivateKey.generate())
    mapper = MapperClient(config, signer, httpx.AsyncClient(transport=httpx.MockTransport(handle)))
    await mapper.resolve([f"token:{i}@nid" for i in range(10)])
    assert mapper.cached == 3  # not 10: a million-person message must not stay in memory
    asked.clear()
    await mapper.resolve(["token:9@nid", "token:7@nid"])  # the three most recent are kept
    assert asked == []
    await mapper.resolve(["token:0@nid"])  # evicted: asked again, and token:8 (least recent) goes
    assert asked == ["token:0@nid"]
    asked.clear()
    await mapper.resolve(["token:8@nid"])
    assert asked == ["token:8@nid"]
    assert mapper.cached == 3
    await mapper.close()


async def test_callbacks_are_retried_with_backoff_then_abandoned(tmp_path: Path) -> None:
    store = Store.open(f"sqlite+aiosqlite:///{tmp_path / 'gpo.db'}")
    await store.migrate()
    g2p = G2pStore(store)
    record = await g2p.insert_message(
        {
            "sender_id": "spp",
            "message_id": "m1",
            "body_digest": "d",
            "action": "search",
            "correlation_id": "c1",
            "sender_uri": "http://sender/cb",
            "reported": True,
        },
        [("http://sender/cb/disburse/on-search", "{}"), ("http://down/cb/disburse/on-search", "{}")],
    )
    attempts: dict[str, int] = {}

    def handle(request: httpx.Request) -> httpx.Response:
        attempts[request.url.host] = attempts.get(request.url.host, 0) + 1
        assert request.headers["Signature"].startswith('Signature keyId="gpo|')
        if request.url.host == "down" or attempts[request.url.host] == 1:
            return httpx.Response(503)
        return httpx.Response(200)

    settings = G2pSettings(
        "gpo",
        KeyRing.holding(Signer("gpo", "k", ed25519.Ed25519PrivateKey.generate())),
        {},
        callbacks=CallbackConfig(max_attempts=3, backoff_s=0.0),
    )
    worker = CallbackWorker(g2p, settings, httpx.AsyncClient(transport=httpx.MockTransport(handle)))
    for _ in range(4):
        await worker.deliver_due()
    assert attempts == {"sender": 2, "down": 3}
    async with store.engine.connect() as conn:
        rows = {r.uri: r for r in (await conn.execute(g2p_callbacks.select())).all()}
    sent, down = rows["http://sender/cb/disburse/on-search"], rows["http://down/cb/disburse/on-search"]
    assert sent.sent_time is not None and sent.attempts == 2
    assert down.abandoned and down.last_error == "HTTP 503" and down.attempts == 3
    assert record.id == sent.message_id
    await store.close()


@pytest.fixture(params=["sqlite", "postgresql"])
async def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """A fresh database: on the shared PostgreSQL database, another run's callback worker would report
    this test's payments first (seen once: one callback of 5 instead of 2, 2, 1)."""
    async with migrated_store(request.param, tmp_path, own_database="gpo_g2p") as store:
        yield store


async def test_final_statuses_become_one_callback_each_and_once(any_store: Store) -> None:
    """report_final on both databases: payments final at intake are reported once, batched, and the
    message is marked reported when its batch is done."""
    store = any_store
    intake = Intake(store, Router.parse("", "simulator"))
    batch, _ = await store.create_or_get_batch(
        NewBatch(f"p-{uuid.uuid4().hex[:8]}", str(uuid.uuid4()), "", "", None, 0, None)
    )
    chunk = api_pb.PaymentChunk(sequence=1)
    for i in range(5):  # all rejected at intake (bad amount), hence final at once
        chunk.payments.add(
            reference_id=f"r{i}",
            payer_fa="account:t@cb",
            payee_fa="mobile:1@m",
            amount="x",
            currency_code="KES",
        )
    await intake.store_chunk(batch.id, chunk)
    await store.finish_upload(batch.id)
    g2p = G2pStore(store)
    await g2p.insert_message(
        {
            "sender_id": "spp",
            "message_id": str(uuid.uuid4()),
            "body_digest": "d",
            "action": "disburse",
            "correlation_id": str(uuid.uuid4()),
            "transaction_id": "t1",
            "sender_uri": "http://sender/cb",
            "batch_id": batch.id,
        }
    )
    settings = G2pSettings(
        "gpo", KeyRing.holding(Signer("gpo", "k", ed25519.Ed25519PrivateKey.generate())), {}
    )
    worker = CallbackWorker(g2p, settings)
    await g2p.report_final(worker.on_disburse, batch_size=2)
    await g2p.report_final(worker.on_disburse, batch_size=2)  # nothing new the second time
    async with store.engine.connect() as conn:
        mine = [
            json.loads(r.body)
            for r in (
                await conn.execute(
                    select(g2p_callbacks).join(g2p_messages).where(g2p_messages.c.batch_id == batch.id)
                )
            ).all()
        ]
        reported = (
            await conn.execute(select(g2p_messages.c.reported).where(g2p_messages.c.batch_id == batch.id))
        ).scalar_one()
    refs = [s["reference_id"] for b in mine for s in b["message"]["disbursements_status"]]
    assert sorted(refs) == [f"r{i}" for i in range(5)]
    assert [len(b["message"]["disbursements_status"]) for b in mine] == [2, 2, 1]
    assert reported is True
    await worker._client.aclose()
