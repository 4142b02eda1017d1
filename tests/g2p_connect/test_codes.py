"""Every G2P Connect endpoint's success path and each error and reason code GPO emits, through the real
gateway binary; every response and callback body is validated against the spec's schemas."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import jwt
import pytest

from tests.g2p_connect.conftest import JWKS_SENDER_KEY, JWS_SENDER_KEY, PROGRAM, G2pEnv


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as c:
        yield c


def payment(ref: str, n: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "reference_id": ref,
        "payer_fa": "account:treasury@central-bank",
        "payee_fa": f"mobile:2548{n:08d}@mpesa",
        "amount": "25.00",
        "currency_code": "KES",
        **extra,
    }


def disburse(
    g2p: G2pEnv, payments: list[dict[str, Any]], *, total: int | None = None, **header: Any
) -> dict[str, Any]:
    message = {"transaction_id": f"txn-{uuid.uuid4().hex[:12]}", "disbursements": payments}
    return g2p.sender.envelope(
        header.pop("action", "disburse"),
        message,
        message_id=str(uuid.uuid4()),
        total_count=len(payments) if total is None else total,
        **header,
    )


async def send(
    g2p: G2pEnv, client: httpx.AsyncClient, path: str, body: Any, *, token: str | None = None, **kw: Any
) -> tuple[int, dict[str, Any]]:
    response = await g2p.sender.post(client, g2p.url, path, body, token=token or g2p.token(), **kw)
    answer: dict[str, Any] = response.json()
    assert g2p.schemas.response(path, response.status_code, answer) == [], answer
    assert response.headers["content-type"].startswith("application/json")
    return response.status_code, answer


async def callback(g2p: G2pEnv, path: str, match: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for body in g2p.sender.callbacks[path]:
            if match(body):
                assert g2p.sender.violations == []
                return body
        g2p.sender.arrived.clear()
        try:
            await asyncio.wait_for(g2p.sender.arrived.wait(), timeout=1)
        except TimeoutError:
            pass
    raise AssertionError(f"no matching callback on {path}")


def error_code(answer: dict[str, Any]) -> str:
    assert answer["message"]["ack_status"] == "ERR"
    return str(answer["message"]["error"]["code"])


# ---- transport and message errors (ERR envelope, 401, 403) ------------------------------------------


async def test_unsigned_is_err_signature_missing(g2p: G2pEnv, client: httpx.AsyncClient) -> None:
    status, answer = await send(g2p, client, "/disburse", disburse(g2p, [payment("a")]), sign=False)
    assert (status, error_code(answer)) == (400, "err.signature.missing")


async def test_tampered_is_err_signature_invalid(g2p: G2pEnv, client: httpx.AsyncClient) -> None:
    body = disburse(g2p, [payment("a")])
    signed = json.dumps(body).encode()
    signature = g2p.sender.signer.sign(signed)
    tampered = signed.replace(b'"25.00"', b'"99.00"')
    status, answer = await send(
        g2p, client, "/disburse", None, raw=tampered, sign=False, headers={"Signature": signature}
    )
    assert (status, error_code(answer)) == (400, "err.signature.invalid")


async def test_reformatted_json_no_longer_verifies(g2p: G2pEnv, client: httpx.AsyncClient) -> None:
    """The signature covers the bytes sent: the same JSON re-serialised is not what was signed."""
    body = disburse(g2p, [payment("a")])
    signature = g2p.sender.signer.sign(json.dumps(body).encode())
    status, answer = await send(
        g2p,
        client,
        "/disburse",
        None,
        raw=json.dumps(body, indent=2).encode(),
        sign=False,
        headers={"Signature": signature},
    )
    assert (status, error_code(answer)) == (400, "err.signature.invalid")


async def test_unknown_sender_is_err_sender_id_invalid(g2p: G2pEnv, client: httpx.AsyncClient) -> None:
    body = disburse(g2p, [payment("a")], sender_id="stranger.test")
    status, answer = await send(g2p, client, "/disburse", body)
    assert (status, error_code(answer)) == (400, "err.sender_id.invalid")


async def test_unregistered_sender_uri_is_err_sender_uri_invalid(
    g2p: G2pEnv, client: httpx.AsyncClient
) -> None:
    body = disburse(g2p, [payment("a")], sender_uri="http://169.254.169.254/latest")
    status, answer = await send(g2p, client, "/disburse", body)
    assert (status, error_code(answer)) == (400, "err.sender_uri.invalid")


async def test_wrong_receiver_is_err_receiver_id_invalid(g2p: G2pEnv, client: httpx.AsyncClient) -> None:
    status, answer = await send(
        g2p, client, "/disburse", disburse(g2p, [payment("a")], receiver_id="someone.else")
    )
    assert (status, error_code(answer)) == (400, "err.receiver_id.invalid")


async def test_encrypted_is_err_encryption_invalid(g2p: G2pEnv, client: httpx.AsyncClient) -> None:
    status, answer = await send(
        g2p, client, "/disburse", disburse(g2p, [payment("a")], is_msg_encrypted=True)
    )
    assert (status, error_code(answer)) == (400, "err.encryption.invalid")


async def test_not_json_is_err_request_bad(g2p: G2pEnv, client: httpx.AsyncClient) -> None:
    status, answer = await send(g2p, client, "/disburse", None, raw=b"{not json")
    assert (status, error_code(answer)) == (400, "err.request.bad")


async def test_no_bearer_token_is_401(g2p: G2pEnv, client: httpx.AsyncClient) -> None:
    status, answer = await send(g2p, client, "/disburse", disburse(g2p, [payment("a")]), token="not-a-jwt")
    assert status == 401
    assert answer["errors"][0]["code"] == "err.request.unauthorized"


async def test_a_program_the_token_lacks_is_403(g2p: G2pEnv, client: httpx.AsyncClient) -> None:
    status, answer = await send(
        g2p, client, "/disburse", disburse(g2p, [payment("a")]), token=g2p.token(["some-other"])
    )
    assert status == 403
    assert answer["errors"][0]["code"] == "err.request.forbidden"


async def test_a_program_the_sender_lacks_is_403(g2p: G2pEnv, client: httpx.AsyncClient) -> None:
    body = disburse(g2p, [payment("a")], meta={"program": "not-this-senders"})
    status, answer = await send(g2p, client, "/disburse", body, token=g2p.token(["*"]))
    assert (status, answer["errors"][0]["code"]) == (403, "err.request.forbidden")


async def test_a_sender_not_requiring_signatures_may_send_unsigned(
    g2p: G2pEnv, client: httpx.AsyncClient
) -> None:
    body = disburse(g2p, [payment("a")], sender_id="lenient.test", sender_uri="http://127.0.0.1:9/cb")
    status, answer = await send(
        g2p, client, "/disburse", body, sign=False, token=g2p.token(subject="lenient.test")
    )
    assert (status, answer["message"]["ack_status"]) == (200, "ACK")


async def test_a_token_may_not_act_as_another_sender(g2p: G2pEnv, client: httpx.AsyncClient) -> None:
    # The unsigned-friendly sender is the easy target: only its own token may speak for it.
    body = disburse(g2p, [payment("a")], sender_id="lenient.test", sender_uri="http://127.0.0.1:9/cb")
    status, answer = await send(g2p, client, "/disburse", body, sign=False)  # token of another sender
    assert status == 403
    assert answer["errors"][0]["code"] == "err.sender_id.invalid"


# ---- header reason codes (ACK, then a rjct on-disburse header) ------------------------------------------


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"total": 3}, "rjct.total_count.invalid"),
        ({"total": 10_001}, "rjct.total_count.limit_exceeded"),
        ({"version": "0.9"}, "rjct.version.invalid"),
        ({"message_ts": "yesterday"}, "rjct.message_ts.invalid"),
        ({"action": "on-disburse"}, "rjct.action.invalid"),
    ],
)
async def test_header_rejections_are_called_back(
    g2p: G2pEnv, client: httpx.AsyncClient, change: dict[str, Any], code: str
) -> None:
    body = disburse(g2p, [payment("a")], **change)
    status, answer = await send(g2p, client, "/disburse", body)
    assert (status, answer["message"]["ack_status"]) == (200, "ACK")
    header = (await callback(g2p, "/on-disburse", lambda b: b["header"].get("status_reason_code") == code))[
        "header"
    ]
    assert header["status"] == "rjct"
    assert header["receiver_id"] == g2p.sender.sender_id


async def test_message_id_reuse(g2p: G2pEnv, client: httpx.AsyncClient) -> None:
    body = disburse(g2p, [payment("a")])
    _, first = await send(g2p, client, "/disburse", body)
    _, again = await send(g2p, client, "/disburse", body)  # the same bytes: a replay, the same answer
    assert again["message"]["correlation_id"] == first["message"]["correlation_id"]
    other = {**body, "message": {**body["message"], "disbursements": [payment("b")]}}
    status, answer = await send(g2p, client, "/disburse", other)
    assert (status, answer["message"]["ack_status"]) == (200, "ACK")
    await callback(
        g2p, "/on-disburse", lambda b: b["header"].get("status_reason_code") == "rjct.message_id.duplicate"
    )


async def test_a_transaction_sent_again_is_one_batch(g2p: G2pEnv, client: httpx.AsyncClient) -> None:
    body = disburse(g2p, [payment("once", 7)])
    await send(g2p, client, "/disburse", body)
    again = {**body, "header": {**body["header"], "message_id": str(uuid.uuid4())}}
    await send(g2p, client, "/disburse", again)
    query = _status_request(g2p, "transaction_id", body["message"]["transaction_id"])
    status, answer = await send(g2p, client, "/disburse/sync/txn/status", query)
    assert status == 200
    refs = [
        s["reference_id"]
        for s in answer["message"]["txnstatus_response"]["txn_status"]["disbursements_status"]
    ]
    assert refs == ["once"]


# ---- sync endpoints ---------------------------------------------------------------------------------


async def test_sync_disburse_answers_each_payments_status(g2p: G2pEnv, client: httpx.AsyncClient) -> None:
    body = disburse(
        g2p, [payment("ok", 11), payment("bad", 12, amount="1.234"), payment("ok", 13)], action="disburse"
    )
    status, answer = await send(g2p, client, "/disburse/sync/disburse", body)
    assert status == 200
    assert answer["header"]["action"] == "on-disburse"
    statuses = answer["message"]["disbursements_status"]
    # The first may already be on its way (pdng) or paid (succ) when the reply is read.
    assert statuses[0]["reference_id"] == "ok" and statuses[0]["status"] in ("rcvd", "pdng", "succ", "rjct")
    assert [(s["reference_id"], s["status"], s.get("status_reason_code")) for s in statuses[1:]] == [
        ("bad", "rjct", "rjct.amount.invalid"),
        ("ok", "rjct", "rjct.reference_id.duplicate"),
    ]


def _status_request(g2p: G2pEnv, attribute: str, value: Any, action: str = "search") -> dict[str, Any]:
    message = {
        "transaction_id": f"st-{uuid.uuid4().hex[:8]}",
        "txnstatus_request": {
            "reference_id": "q1",
            "txn_type": "disburse",
            "attribute_type": attribute,
            "attribute_value": value,
        },
    }
    return g2p.sender.envelope(action, message, message_id=str(uuid.uuid4()), total_count=1)


async def test_txn_status_sync_and_async(g2p: G2pEnv, client: httpx.AsyncClient) -> None:
    body = disburse(g2p, [payment("s1", 21), payment("s2", 22)])
    _, ack = await send(g2p, client, "/disburse", body)
    query = _status_request(g2p, "correlation_id", ack["message"]["correlation_id"])
    status, answer = await send(g2p, client, "/disburse/sync/txn/status", query)
    assert status == 200
    response = answer["message"]
    assert response["correlation_id"] == ack["message"]["correlation_id"]
    assert {
        s["reference_id"] for s in response["txnstatus_response"]["txn_status"]["disbursements_status"]
    } == {"s1", "s2"}

    query = _status_request(g2p, "reference_id_list", ["s1"], action="on-disburse")
    status, answer = await send(g2p, client, "/disburse/txn/status", query)
    assert (status, answer["message"]["ack_status"]) == (200, "ACK")
    tid = query["message"]["transaction_id"]
    found = await callback(g2p, "/disburse/txn/on-status", lambda b: b["message"]["transaction_id"] == tid)
    assert [
        s["reference_id"]
        for s in found["message"]["txnstatus_response"]["txn_status"]["disbursements_status"]
    ] == ["s1"]


def _search(g2p: G2pEnv, criteria: list[dict[str, Any]]) -> dict[str, Any]:
    message = {"transaction_id": f"sr-{uuid.uuid4().hex[:8]}", "search_criteria": criteria}
    return g2p.sender.envelope("search", message, message_id=str(uuid.uuid4()), total_count=len(criteria))


async def test_search_sync_and_async(g2p: G2pEnv, client: httpx.AsyncClient) -> None:
    payee = "mobile:254899999991@mpesa"
    await send(g2p, client, "/disburse", disburse(g2p, [{**payment("found-me"), "payee_fa": payee}]))
    criteria: list[dict[str, Any]] = [
        {
            "reference_id": "c1",
            "request_type": "disburse",
            "attribute_type": "payee_fa",
            "attribute_value": payee,
        },
        {
            "reference_id": "c2",
            "request_type": "disburse",
            "attribute_type": "payer_fa",
            "attribute_value": 5,
        },
    ]
    body = _search(g2p, criteria)
    status, answer = await send(g2p, client, "/disburse/sync/search", body, raw=json.dumps(body).encode())
    assert status == 200
    records = answer["message"]["disbursements_status"]
    assert [r["reference_id"] for r in records] == ["found-me", "c2"]
    assert records[1]["status_reason_code"] == "rjct.srch_payer_fa.invalid"

    body = _search(g2p, criteria[:1])
    status, answer = await send(g2p, client, "/disburse/search", body)
    assert (status, answer["message"]["ack_status"]) == (200, "ACK")
    tid = body["message"]["transaction_id"]
    found = await callback(g2p, "/disburse/on-search", lambda b: b["message"]["transaction_id"] == tid)
    assert [r["reference_id"] for r in found["message"]["disbursements_status"]] == ["found-me"]


# ---- detached JWS senders (configured key, JWKS) ------------------------------------------------------


def _jws(body: bytes, key: Any, kid: str, alg: str) -> str:
    canonical = json.dumps(json.loads(body), separators=(",", ":")).encode()
    head, _, signature = (
        jwt.api_jws.PyJWS().encode(canonical, key, algorithm=alg, headers={"kid": kid}).split(".")
    )
    return f"{head}..{signature}"


@pytest.mark.parametrize(
    ("sender_id", "kid", "alg"), [("jws.test", "es-1", "ES256"), ("jwks.test", "rs-1", "RS256")]
)
async def test_jws_senders_by_configured_key_and_by_jwks(
    g2p: G2pEnv, client: httpx.AsyncClient, sender_id: str, kid: str, alg: str
) -> None:
    key = JWS_SENDER_KEY if sender_id == "jws.test" else JWKS_SENDER_KEY
    body = disburse(g2p, [payment("j1")], sender_id=sender_id, sender_uri="http://127.0.0.1:9/cb")
    raw = json.dumps(body, indent=1).encode()  # the JWS covers the canonical JSON, not the spacing
    status, answer = await send(
        g2p, client, "/disburse", None, raw=raw, sign=False, headers={"Signature": _jws(raw, key, kid, alg)}
    )
    assert (status, answer["message"]["ack_status"]) == (200, "ACK"), answer
    tampered = raw.replace(b'"25.00"', b'"26.00"')
    status, answer = await send(
        g2p,
        client,
        "/disburse",
        None,
        raw=tampered,
        sign=False,
        headers={"Signature": _jws(raw, key, kid, alg)},
    )
    assert (status, error_code(answer)) == (400, "err.signature.invalid")
    # A sender configured for JWS is not taken at its word in the Beckn scheme, nor with an unknown kid.
    status, answer = await send(g2p, client, "/disburse", body, sign=True)
    assert (status, error_code(answer)) == (400, "err.signature.invalid")
    status, answer = await send(
        g2p,
        client,
        "/disburse",
        None,
        raw=raw,
        sign=False,
        headers={"Signature": _jws(raw, key, "nope", alg)},
    )
    assert (status, error_code(answer)) == (400, "err.signature.invalid")


async def test_sync_refusals_name_the_endpoints_action_and_carry_a_message(
    g2p: G2pEnv, client: httpx.AsyncClient
) -> None:
    status, answer = await send(g2p, client, "/disburse/sync/search", None, raw=b"{not json")
    assert status == 400
    assert answer["header"]["action"] == "on-search" and answer["header"]["status"] == "rjct"
    assert answer["message"] == {"transaction_id": "", "disbursements_status": []}
    body = disburse(g2p, [payment("a")], action="disburse")
    body["message"]["disbursements"] = "not a list"
    status, answer = await send(g2p, client, "/disburse/sync/disburse", body)
    assert (status, answer["header"]["action"]) == (400, "on-disburse")
    assert answer["header"]["message_id"] == body["header"]["message_id"]
    assert answer["message"]["transaction_id"] == body["message"]["transaction_id"]


async def test_a_chunked_body_over_the_limit_is_413_too(g2p: G2pEnv, client: httpx.AsyncClient) -> None:
    """Without a Content-Length the gateway counts the bytes it reads."""

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"header": {}, "message": {"filler": "'
        for _ in range(17):
            yield b"x" * (1024 * 1024)
        yield b'"}}'

    response = await client.post(
        f"{g2p.url}/disburse/sync/search",
        content=chunks(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {g2p.token()}"},
        timeout=120,
    )
    assert response.status_code == 413
    answer = response.json()
    assert g2p.schemas.response("/disburse/sync/search", 413, answer) == []
    assert answer["header"]["action"] == "on-search" and answer["header"]["status"] == "rjct"


async def test_status_and_search_show_only_the_callers_programs(
    g2p: G2pEnv, client: httpx.AsyncClient
) -> None:
    """Issue 12, item 3: a token limited to one program read another program's transaction (payee address,
    name and amount) through txn/status and search. Every read is now scoped by the token's programs."""
    payee = f"mobile:2547{uuid.uuid4().int % 10**8:08d}@mpesa"
    both = g2p.token([PROGRAM, "other-program"])
    mine = disburse(g2p, [{**payment("mine-1"), "payee_fa": payee}])
    theirs = disburse(g2p, [{**payment("theirs-1"), "payee_fa": payee}], meta={"program": "other-program"})
    acks = [(await send(g2p, client, "/disburse", body, token=both))[1] for body in (mine, theirs)]
    assert [a["message"]["ack_status"] for a in acks] == ["ACK", "ACK"]
    only_mine = g2p.token([PROGRAM])

    for token, expected in ((only_mine, {"mine-1"}), (both, {"mine-1", "theirs-1"})):
        query = _status_request(g2p, "reference_id_list", ["mine-1", "theirs-1"])
        status, answer = await send(g2p, client, "/disburse/sync/txn/status", query, token=token)
        assert status == 200
        listed = answer["message"]["txnstatus_response"]["txn_status"]["disbursements_status"]
        assert {s["reference_id"] for s in listed} == expected

        other_tid = acks[1]["message"]["correlation_id"]
        query = _status_request(g2p, "correlation_id", other_tid)
        status, answer = await send(g2p, client, "/disburse/sync/txn/status", query, token=token)
        listed = answer["message"]["txnstatus_response"]["txn_status"]["disbursements_status"]
        assert {s["reference_id"] for s in listed} == expected - {"mine-1"}

        criteria = [
            {
                "reference_id": "c1",
                "request_type": "disburse",
                "attribute_type": "payee_fa",
                "attribute_value": payee,
            }
        ]
        body = _search(g2p, criteria)
        status, answer = await send(g2p, client, "/disburse/sync/search", body, token=token)
        assert status == 200
        assert {r["reference_id"] for r in answer["message"]["disbursements_status"]} == expected
