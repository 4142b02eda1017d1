"""GPO with OpenG2P's own software: a real SPAR 1.1.0 resolving national IDs (GPO's requests signed as
detached JWS, verified by SPAR through the Keymanager stand-in against the key GPO published), an
OpenG2P sender (openg2p-g2pconnect-common-lib) whose JWS requests GPO verifies through the same
Keymanager, and GPO's callbacks verified with GPO's published JWKS. Every reply and callback is validated
against the spec and parsed with the library's models; the last test reports the counts.

The tests share one environment and run in file order (SPAR is stopped and started again near the end).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import httpx

from tests.g2p_connect.openg2p import (
    CALLBACK_TOKEN,
    GPO_ID,
    LINKED,
    SENDER_ID,
    OpenG2pEnv,
    linked_fa,
    national_id,
)
from tests.peers.g2p_connect import MAPPER_SPEC, MapperSchemas
from tests.support.processes import spec_path


def item(ref: str, payee: str, amount: str = "100.00", **extra: Any) -> dict[str, Any]:
    return {
        "reference_id": ref,
        "payer_fa": "account:treasury@central-bank",
        "payee_fa": payee,
        "amount": amount,
        "currency_code": "KES",
        **extra,
    }


def disburse_message(items: list[dict[str, Any]], transaction_id: str = "") -> dict[str, Any]:
    return {"transaction_id": transaction_id or f"txn-{uuid.uuid4().hex[:16]}", "disbursements": items}


def statuses_of(body: dict[str, Any]) -> list[dict[str, Any]]:
    return list((body.get("message") or {}).get("disbursements_status") or [])


async def final_statuses(env: OpenG2pEnv, transaction_id: str, refs: set[str]) -> dict[str, dict[str, Any]]:
    """The on-disburse statuses of a transaction, once every reference has one."""
    deadline = time.monotonic() + 180
    while True:
        found: dict[str, dict[str, Any]] = {}
        authorizations: set[str] = set()
        for cb in await env.callbacks():
            body = cb["body"]
            if (
                cb["path"].endswith("/on-disburse")
                and (body.get("message") or {}).get("transaction_id") == transaction_id
            ):
                authorizations.add(cb["authorization"])
                for s in statuses_of(body):
                    found[s["reference_id"]] = s
        if refs <= set(found):
            # Callbacks carry the configured bearer token.
            assert authorizations == {f"Bearer {CALLBACK_TOKEN}"}
            return found
        assert time.monotonic() < deadline, f"{len(refs - set(found))} statuses never called back"
        await asyncio.sleep(0.3)


# ---- JWS both ways, through the real SPAR -----------------------------------------------------------


async def test_jwks_publishes_both_keys_the_signing_one_first(openg2p: OpenG2pEnv) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        jwks = (await client.get(f"{openg2p.gateway}/.well-known/jwks.json")).json()
    assert [(k["kid"], k["kty"], k["alg"]) for k in jwks["keys"]] == [
        ("gpo-rsa-1", "RSA", "RS256"),
        ("gpo-ec-2", "EC", "ES256"),
    ]
    assert all("d" not in k for k in jwks["keys"]), "a private key part was published"


async def test_a_disburse_resolved_through_spar_pays_linked_ids_and_rejects_unknown_ones(
    openg2p: OpenG2pEnv,
) -> None:
    before = dict(openg2p.keymanager.verdicts)
    items = [item(f"lnk-{i}", national_id(i)) for i in range(20)]
    items += [item(f"unk-{i}", national_id(1000 + i)) for i in range(5)]
    items += [item(f"fa-{i}", f"mobile:2549{i:08d}@mpesa") for i in range(5)]
    message = disburse_message(items)
    result = await openg2p.send("/disburse", openg2p.header("disburse", len(items)), message)
    assert result["status"] == 200, result
    assert result["body"]["message"]["ack_status"] == "ACK", result
    # The request the library built is the spec's, but for the library's "meta": null (the schema wants
    # an object; GPO takes null as no meta).
    assert result["sent"]["header"]["meta"] is None
    sent = {**result["sent"], "header": {k: v for k, v in result["sent"]["header"].items() if v is not None}}
    assert openg2p.schemas.request("/disburse", sent) == []

    final = await final_statuses(openg2p, message["transaction_id"], {i["reference_id"] for i in items})
    for i in range(20):
        status = final[f"lnk-{i}"]
        assert status["status"] == "succ", status
        # Reported as sent (the national ID), never as the account SPAR resolved it to.
        assert status["payee_fa"] == national_id(i)
        assert linked_fa(i) not in json.dumps(status)
    for i in range(5):
        status = final[f"unk-{i}"]
        assert (status["status"], status["status_reason_code"]) == ("rjct", "rjct.payee_fa.invalid")
        assert "succ.fa.not_linked_to_id" in status["status_reason_message"], status  # SPAR's own code
        assert final[f"fa-{i}"]["status"] == "succ"

    verdicts = {k: v - before.get(k, 0) for k, v in openg2p.keymanager.verdicts.items()}
    # GPO verified the OpenG2P sender's JWS through the Keymanager, and SPAR verified GPO's.
    assert verdicts.get(("PARTNER_OPENG2P_PBMS", True), 0) >= 1
    assert verdicts.get(("PARTNER_GPO.TEST", True), 0) >= 1
    assert not any(v for (_, valid), v in verdicts.items() if not valid)


async def test_a_large_message_resolves_asynchronously_through_spar(openg2p: OpenG2pEnv) -> None:
    """150 IDs (above async_above = 100): /mapper/async/resolve, ACK, SPAR's on-resolve callback to the
    gateway's /mapper/on-resolve."""
    items = [item(f"a-{i}", national_id(i % LINKED if i < 100 else 2000 + i)) for i in range(150)]
    message = disburse_message(items)
    result = await openg2p.send("/disburse", openg2p.header("disburse", len(items)), message)
    assert result["body"]["message"]["ack_status"] == "ACK", result
    final = await final_statuses(openg2p, message["transaction_id"], {i["reference_id"] for i in items})
    assert sum(s["status"] == "succ" for s in final.values()) == 100
    assert all(
        "succ.fa.not_linked_to_id" in final[f"a-{i}"]["status_reason_message"] for i in range(100, 150)
    )


async def test_a_forged_signature_is_refused_and_the_keymanager_said_so(openg2p: OpenG2pEnv) -> None:
    header = openg2p.header("disburse", 1)
    body = json.dumps(
        {"header": header, "message": disburse_message([item("forged", national_id(1))])}
    ).encode()
    refused_before = openg2p.keymanager.verdicts[("PARTNER_OPENG2P_PBMS", False)]
    # Signed by the OpenG2P sender's key, then the amount changed in transit.
    tampered = body.replace(b'"100.00"', b'"900.00"')
    # (An async client: the Keymanager stand-in answers on this test's event loop.)
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(
            f"{openg2p.gateway}/disburse",
            content=tampered,
            headers={
                "Content-Type": "application/json",
                "Authorization": f"Bearer {openg2p.token()}",
                "Signature": _jws_of(openg2p, body),
            },
        )
    answer = response.json()
    assert response.status_code == 400
    assert answer["message"]["error"]["code"] == "err.signature.invalid", answer
    assert openg2p.keymanager.verdicts[("PARTNER_OPENG2P_PBMS", False)] == refused_before + 1


def _jws_of(env: OpenG2pEnv, body: bytes) -> str:
    """A detached JWS of body by the OpenG2P sender's key (the client's PEM file)."""
    import jwt

    key = (env.workdir / "client.pem").read_bytes()
    canonical = json.dumps(json.loads(body), separators=(",", ":")).encode()
    head, _, signature = (
        jwt.api_jws.PyJWS().encode(canonical, key, algorithm="RS256", headers={"kid": "pbms-1"}).split(".")
    )
    return f"{head}..{signature}"


# ---- txn status and search, as the OpenG2P library builds them -------------------------------------


async def test_txn_status_and_search_from_the_library(openg2p: OpenG2pEnv) -> None:
    items = [item("st-1", "mobile:254711000001@mpesa"), item("st-2", "mobile:254711000002@mpesa")]
    message = disburse_message(items)
    ack = await openg2p.send("/disburse", openg2p.header("disburse", 2), message)
    correlation_id = ack["body"]["message"]["correlation_id"]
    query = {
        "transaction_id": f"q-{uuid.uuid4().hex[:8]}",
        "txnstatus_request": {
            "reference_id": "q1",
            "txn_type": "disburse",
            "attribute_type": "correlation_id",
            "attribute_value": correlation_id,
        },
    }
    sync = await openg2p.send("/disburse/sync/txn/status", openg2p.header("search", 1), query)
    assert sync["status"] == 200 and sync["parsed"], sync
    found = sync["body"]["message"]["txnstatus_response"]["txn_status"]["disbursements_status"]
    assert {s["reference_id"] for s in found} == {"st-1", "st-2"}

    query = {**query, "transaction_id": f"q-{uuid.uuid4().hex[:8]}"}
    result = await openg2p.send("/disburse/txn/status", openg2p.header("on-disburse", 1), query)
    assert result["body"]["message"]["ack_status"] == "ACK"
    await openg2p.callback(
        lambda b: (b.get("message") or {}).get("transaction_id") == query["transaction_id"]
    )

    criteria = [
        {
            "reference_id": "c1",
            "request_type": "disburse",
            "attribute_type": "payee_fa",
            "attribute_value": "mobile:254711000002@mpesa",
        }
    ]
    search = {"transaction_id": f"s-{uuid.uuid4().hex[:8]}", "search_criteria": criteria}
    sync = await openg2p.send("/disburse/sync/search", openg2p.header("search", 1), search)
    assert [r["reference_id"] for r in sync["body"]["message"]["disbursements_status"]] == ["st-2"]
    search = {**search, "transaction_id": f"s-{uuid.uuid4().hex[:8]}"}
    result = await openg2p.send("/disburse/search", openg2p.header("search", 1), search)
    assert result["body"]["message"]["ack_status"] == "ACK"
    await openg2p.callback(
        lambda b: (b.get("message") or {}).get("transaction_id") == search["transaction_id"]
    )


# ---- the edges found from outside -------------------------------------------------------------------


async def test_a_refused_message_is_called_back_with_the_ids_a_sender_matches_it_by(
    openg2p: OpenG2pEnv,
) -> None:
    header = openg2p.header("disburse", 5)  # one disbursement sent: rjct.total_count.invalid
    message = disburse_message([item("tc-1", "mobile:254711000003@mpesa")])
    result = await openg2p.send("/disburse", header, message)
    correlation_id = result["body"]["message"]["correlation_id"]
    cb = await openg2p.callback(lambda b: b["header"].get("message_id") == header["message_id"])
    assert cb["body"]["header"]["status"] == "rjct"
    assert cb["body"]["header"]["status_reason_code"] == "rjct.total_count.invalid"
    assert cb["body"]["message"]["transaction_id"] == message["transaction_id"]
    assert cb["body"]["message"]["correlation_id"] == correlation_id


async def test_a_message_over_the_size_limit_is_413_with_a_g2p_connect_body(openg2p: OpenG2pEnv) -> None:
    filler = "x" * 990
    items = [item(f"big-{i}", "mobile:254711000004@mpesa", instruction=filler) for i in range(18_000)]
    body = json.dumps({"header": openg2p.header("disburse", len(items)), "message": disburse_message(items)})
    assert len(body) > 16 * 1024 * 1024
    result = await openg2p.send("/disburse", {}, None, raw_body=body)
    assert result["status"] == 413, result["status"]
    assert result["body"]["message"]["ack_status"] == "ERR"
    assert result["body"]["message"]["error"]["code"] == "err.request.bad"
    assert result["parsed"], result["parse_error"]
    result = await openg2p.send("/disburse/sync/disburse", {}, None, raw_body=body)
    assert result["status"] == 413, result["status"]
    assert result["body"]["header"]["status"] == "rjct"
    assert result["body"]["header"]["action"] == "on-disburse"
    assert result["body"]["message"]["disbursements_status"] == []
    assert result["parsed"], result["parse_error"]


async def test_sync_refusals_carry_a_message_and_the_endpoints_action(openg2p: OpenG2pEnv) -> None:
    query = {
        "transaction_id": "q-bad-action",
        "txnstatus_request": {
            "reference_id": "q1",
            "txn_type": "disburse",
            "attribute_type": "transaction_id",
            "attribute_value": "nothing",
        },
    }
    result = await openg2p.send("/disburse/sync/txn/status", openg2p.header("link", 1), query)
    header = result["body"]["header"]
    assert (header["status"], header["status_reason_code"], header["action"]) == (
        "rjct",
        "rjct.action.invalid",
        "on-search",
    )
    assert result["body"]["message"]["transaction_id"] == "q-bad-action"
    assert result["parsed"], result["parse_error"]  # SyncResponse requires a message

    search = {"transaction_id": "s-bad", "search_criteria": "not a list"}
    result = await openg2p.send("/disburse/sync/search", openg2p.header("search", 0), search)
    header = result["body"]["header"]
    assert (result["status"], header["status"], header["action"]) == (400, "rjct", "on-search")
    assert header["status_reason_message"].startswith("err.request.bad")
    assert result["body"]["message"]["transaction_id"] == "s-bad"
    assert result["parsed"], result["parse_error"]


async def test_a_transaction_sent_again_with_other_content_is_refused(openg2p: OpenG2pEnv) -> None:
    message = disburse_message([item("tx-1", "mobile:254711000005@mpesa")])
    first = await openg2p.send("/disburse", openg2p.header("disburse", 1), message)
    assert first["body"]["message"]["ack_status"] == "ACK"
    same = await openg2p.send("/disburse", openg2p.header("disburse", 1), message)  # new message_id
    assert same["body"]["message"]["ack_status"] == "ACK"
    changed = {**message, "disbursements": [item("tx-1", "mobile:254711000005@mpesa", amount="999.00")]}
    result = await openg2p.send("/disburse", openg2p.header("disburse", 1), changed)
    assert result["status"] == 400
    assert result["body"]["message"]["ack_status"] == "ERR"
    assert "already sent with other content" in result["body"]["message"]["error"]["message"]


async def test_an_over_long_reference_id_is_refused_before_anything_is_stored(openg2p: OpenG2pEnv) -> None:
    ref = "r" * 300
    message = disburse_message([item(ref, "mobile:254711000006@mpesa")])
    result = await openg2p.send("/disburse", openg2p.header("disburse", 1), message)
    assert (result["status"], result["body"]["message"]["error"]["code"]) == (400, "err.request.bad")
    status = await openg2p.send(
        "/disburse/sync/txn/status",
        openg2p.header("search", 1),
        {
            "transaction_id": "q-long",
            "txnstatus_request": {
                "reference_id": "q1",
                "txn_type": "disburse",
                "attribute_type": "transaction_id",
                "attribute_value": message["transaction_id"],
            },
        },
    )
    assert status["body"]["message"]["txnstatus_response"]["txn_status"]["disbursements_status"] == []


async def test_spec_field_limits_have_reason_codes(openg2p: OpenG2pEnv) -> None:
    items = [
        item("fl-note", "mobile:254711000007@mpesa", note="n" * 100),
        item("fl-purpose", "mobile:254711000008@mpesa", purpose="p" * 100),
        item("fl-locale", "mobile:254711000009@mpesa", locale="en"),
        item("fl-instruction", "mobile:254711000012@mpesa", instruction="i" * 1000),
        {**item("fl-nocur", "mobile:254711000010@mpesa"), "currency_code": None},
        item("fl-ok", "mobile:254711000011@mpesa", note="n" * 99, purpose="p" * 99, locale="eng"),
    ]
    del items[4]["currency_code"]  # not required by the spec: the sender's default_currency (KES) applies
    result = await openg2p.send(
        "/disburse/sync/disburse", openg2p.header("disburse", len(items)), disburse_message(items)
    )
    assert result["parsed"], result["parse_error"]
    got = {s["reference_id"]: s for s in result["body"]["message"]["disbursements_status"]}
    for ref, code in (
        ("fl-note", "rjct.note.invalid"),
        ("fl-purpose", "rjct.purpose.invalid"),
        ("fl-locale", "rjct.locale.invalid"),
        ("fl-instruction", "rjct.instruction.invalid"),
    ):
        assert got[ref]["status"] == "rjct", got[ref]
        assert got[ref]["status_reason_message"].startswith(code), got[ref]
    assert got["fl-nocur"]["status"] != "rjct" and got["fl-nocur"]["currency_code"] == "KES"
    assert got["fl-ok"]["status"] != "rjct", got["fl-ok"]


# ---- rotation, SPAR down, the counts ----------------------------------------------------------------


async def test_signing_keys_rotate_without_a_restart(openg2p: OpenG2pEnv) -> None:
    config = openg2p.workdir / "g2p.toml"
    text = config.read_text()
    config.write_text(text.replace('signing_key_id = "gpo-rsa-1"', 'signing_key_id = "gpo-ec-2"'))
    try:
        deadline = time.monotonic() + 30
        while True:
            async with httpx.AsyncClient(timeout=10) as client:
                jwks = (await client.get(f"{openg2p.gateway}/.well-known/jwks.json")).json()
            if jwks["keys"][0]["kid"] == "gpo-ec-2":
                break
            assert time.monotonic() < deadline, "the new key never became the signing one"
            await asyncio.sleep(0.3)
        assert {k["kid"] for k in jwks["keys"]} == {"gpo-rsa-1", "gpo-ec-2"}
        # Callbacks are now signed ES256 with the new key and verify with the JWKS; SPAR (its Keymanager
        # holds both keys) still resolves GPO's requests.
        message = disburse_message([item("rot-1", national_id(3)), item("rot-2", national_id(4))])
        await openg2p.send("/disburse", openg2p.header("disburse", 2), message)
        final = await final_statuses(openg2p, message["transaction_id"], {"rot-1", "rot-2"})
        assert [final[r]["status"] for r in ("rot-1", "rot-2")] == ["succ", "succ"]
        callbacks = [
            cb
            for cb in await openg2p.callbacks()
            if (cb["body"].get("message") or {}).get("transaction_id") == message["transaction_id"]
        ]
        assert callbacks and all(cb["signature_valid"] for cb in callbacks)
    finally:
        config.write_text(text)


async def test_spar_down_refuses_the_message_as_retryable(openg2p: OpenG2pEnv) -> None:
    openg2p.spar.terminate(timeout_s=10)
    try:
        message = disburse_message([item("down-1", national_id(5))])
        result = await openg2p.send("/disburse", openg2p.header("disburse", 1), message, resend=False)
        assert result["status"] == 503, result
        assert result["body"]["message"]["error"]["code"] == "err.service.unavailable"
    finally:
        openg2p.spar.start()
        deadline = time.monotonic() + 120
        while True:
            try:
                async with httpx.AsyncClient(timeout=2) as client:
                    if (await client.get(f"{openg2p.spar_url}/openapi.json")).status_code == 200:
                        break
            except httpx.TransportError:
                pass
            assert openg2p.spar.alive() and time.monotonic() < deadline, openg2p.spar.tail()
            await asyncio.sleep(0.2)
    # Sent again once SPAR is back, the same message is paid.
    result = await openg2p.send("/disburse", openg2p.header("disburse", 1), message)
    assert result["body"]["message"]["ack_status"] == "ACK"
    final = await final_statuses(openg2p, message["transaction_id"], {"down-1"})
    assert final["down-1"]["status"] == "succ"


async def test_every_message_gpo_sent_is_spec_valid_and_parsed_by_the_library(openg2p: OpenG2pEnv) -> None:
    # Every accepted disburse's final statuses have arrived (those refused by header have their rjct).
    refused = {
        (cb["body"].get("message") or {}).get("transaction_id")
        for cb in await openg2p.callbacks()
        if cb["body"]["header"].get("status") == "rjct"
    }
    for transaction_id, refs in openg2p.disbursed.items():
        if transaction_id not in refused:
            await final_statuses(openg2p, transaction_id, refs)
    await openg2p.callbacks()
    counts = openg2p.counts
    # GPO's resolve requests to SPAR, as SPAR's Keymanager verified them, against the mapper spec.
    mapper = MapperSchemas(spec_path(MAPPER_SPEC))
    resolves = openg2p.keymanager.verified.get("PARTNER_GPO.TEST", [])
    invalid = [
        errors
        for body in resolves
        if (
            errors := mapper.request(
                "/mapper/resolve" if body["header"].get("sender_uri") else "/mapper/sync/resolve", body
            )
        )
    ]
    report = {
        "sent": counts.sent,
        "spec_valid": counts.spec_valid,
        "library_parsed": counts.parsed,
        "resolve_requests_to_spar": len(resolves),
        "resolve_requests_spec_valid": len(resolves) - len(invalid),
    }
    assert invalid == []
    assert len(resolves) >= 4
    print(f"\nOpenG2P interop: {json.dumps(report)}")
    (openg2p.workdir / "counts.json").write_text(json.dumps({**report, "failures": counts.failures}))
    assert counts.failures == []
    assert counts.sent == counts.spec_valid == counts.parsed > 20
    assert GPO_ID and SENDER_ID
