"""REST through the real gateway binary: create (the NDJSON upload stream), get, list with pagination,
watch (NDJSON), cancel, and the error bodies (bad amount, unknown batch, unauthenticated)."""

from __future__ import annotations

import json
import socket
import uuid
from typing import Any

import httpx
import pytest

from tests.gateway.conftest import Gateway, start_gateway
from tests.support.processes import free_port

NDJSON = "application/x-ndjson"


def ndjson(lines: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def payment(ref: str, amount: str = "10.00", n: int = 1) -> dict[str, Any]:
    return {
        "referenceId": ref,
        "payeeFa": f"mobile:2547{n:08d}@mpesa",
        "amount": amount,
        "currencyCode": "KES",
    }


def header(program: str, **extra: Any) -> dict[str, Any]:
    return {
        "header": {"program": program, "requestId": str(uuid.uuid4()), "payerFa": "account:t@cb", **extra}
    }


def upload(gw: Gateway, program: str, *lines: dict[str, Any]) -> tuple[httpx.Response, list[dict[str, Any]]]:
    """POST /v1/batches:upload with one JSON object per line; returns the response and its lines."""
    response = httpx.post(
        f"{gw.url}/v1/batches:upload",
        content=ndjson(list(lines)),
        headers={**gw.auth([program]), "Content-Type": NDJSON},
        timeout=60,
    )
    return response, [json.loads(line) for line in response.text.splitlines() if line.strip()]


def create(gw: Gateway, program: str, payments: list[dict[str, Any]], **header_extra: Any) -> dict[str, Any]:
    response, lines = upload(
        gw, program, header(program, **header_extra), {"chunk": {"sequence": "1", "payments": payments}}
    )
    assert response.status_code == 200, response.text
    assert all("result" in line for line in lines), lines
    batch: dict[str, Any] = lines[-1]["result"]["batch"]
    return batch


def watch(gw: Gateway, program: str, name: str) -> list[dict[str, Any]]:
    with httpx.stream("GET", f"{gw.url}/v1/{name}:watch", headers=gw.auth([program]), timeout=60) as r:
        assert r.status_code == 200
        assert r.headers["content-type"] == NDJSON
        return [json.loads(line) for line in r.iter_lines() if line.strip()]


def error_info(body: dict[str, Any]) -> dict[str, Any]:
    info: dict[str, Any] = next(
        d for d in body["details"] if d["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"
    )
    assert info["domain"] == "gpo.dev"
    return info


def program() -> str:
    return f"rest-{uuid.uuid4().hex[:10]}"


def test_healthz_reports_the_servers_grpc_health(gateway: Gateway, tmp_path: Any) -> None:
    response = httpx.get(f"{gateway.url}/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "SERVING"}
    # A gateway whose GPO server is down says so, and so does every call through it.
    url, proc = start_gateway(f"127.0.0.1:{free_port()}", tmp_path / "down.log", wait_healthy=False)
    try:
        assert httpx.get(f"{url}/healthz").status_code == 503
        down = httpx.get(f"{url}/v1/batches", headers=gateway.auth(["x"]))
        assert down.status_code == 503
        assert down.json()["code"] == 14  # UNAVAILABLE
    finally:
        proc.terminate()


def test_create_streams_acknowledgements_and_rejections(gateway: Gateway) -> None:
    p = program()
    response, lines = upload(
        gateway,
        p,
        header(p),
        {"chunk": {"sequence": "1", "payments": [payment("a1", "10.50", 1), payment("a2", "1.234", 2)]}},
        {"chunk": {"sequence": "2", "payments": [payment("a3", "0.05", 3)]}},
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == NDJSON
    results = [line["result"] for line in lines]
    # The header's reply, one acknowledgement per chunk, then the batch once the upload is complete.
    assert [r["acknowledgedSequence"] for r in results] == ["0", "1", "2", "0"]
    first, ack1, ack2, last = results
    assert first["batch"]["state"] == "BATCH_STATE_UPLOADING"
    assert first["batch"]["name"].startswith("batches/")
    # A bad amount rejects that payment alone, with a G2P Connect reason code.
    assert ack1["rejections"] == [
        {
            "referenceId": "a2",
            "index": 1,
            "reasonCode": "rjct.amount.invalid",
            "message": ack1["rejections"][0]["message"],
        }
    ]
    assert ack2["rejections"] == []
    assert last["batch"]["paymentCount"] == "3"
    assert last["batch"]["state"] in ("BATCH_STATE_PROCESSING", "BATCH_STATE_COMPLETED")


def test_create_accepts_proto_field_names(gateway: Gateway) -> None:
    p = program()
    snake = {"header": {"program": p, "request_id": str(uuid.uuid4()), "payer_fa": "account:t@cb"}}
    snake_payment = {"reference_id": "s1", "payee_fa": "mobile:254700000001@mpesa", "amount": "1.00"}
    chunk = {"chunk": {"sequence": 1, "payments": [{**snake_payment, "currency_code": "KES"}]}}
    response, lines = upload(gateway, p, snake, chunk)
    assert response.status_code == 200, response.text
    assert lines[-1]["result"]["batch"]["paymentCount"] == "1"


def test_a_bad_line_cancels_the_upload_instead_of_completing_it(gateway: Gateway) -> None:
    """Full duplex over HTTP/1.1: chunk 1 is acknowledged while the body is still open; then a bad line
    cancels the upload. The batch keeps chunk 1 and waits, resumable, instead of being paid as it is."""
    p = program()
    host, port = gateway.url.removeprefix("http://").split(":")
    request = (
        f"POST /v1/batches:upload HTTP/1.1\r\nHost: {host}\r\nContent-Type: {NDJSON}\r\n"
        f"Authorization: {gateway.auth([p])['Authorization']}\r\nTransfer-Encoding: chunked\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    first = ndjson([header(p), {"chunk": {"sequence": "1", "payments": [payment("g1")]}}])
    bad = b'{"chunk": {"sequence": "2", "payments": [{"amount": 5}]}}\n'
    received = b""
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(request + http_chunk(first))
        while b'"acknowledgedSequence":"1"' not in received:
            data = conn.recv(65536)
            assert data, f"the connection closed before chunk 1 was acknowledged: {received!r}"
            received += data
        conn.sendall(http_chunk(bad) + http_chunk(b""))
        while data := conn.recv(65536):
            received += data
    assert b" 200 OK" in received.split(b"\r\n", 1)[0]
    [error_line] = [line for line in received.split(b"\n") if line.startswith(b'{"error"')]
    error = json.loads(error_line)["error"]
    assert error["code"] == 3
    assert error_info(error)["reason"] == "INVALID_UPLOAD_BODY"
    assert error_info(error)["metadata"] == {"value": "3"}
    batches = httpx.get(f"{gateway.url}/v1/batches", params={"program": p}, headers=gateway.auth([p])).json()
    [batch] = batches["batches"]
    assert (batch["state"], batch["lastChunkSequence"], batch["paymentCount"]) == (
        "BATCH_STATE_UPLOADING",
        "1",
        "1",
    )


def http_chunk(data: bytes) -> bytes:
    """One chunk of an HTTP/1.1 chunked body; an empty one ends the body."""
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def test_a_body_cut_short_does_not_complete_the_upload(gateway: Gateway) -> None:
    """A client that disconnects midway must not have its partial upload taken as the whole batch."""
    p = program()
    body = ndjson([header(p), {"chunk": {"sequence": "1", "payments": [payment("cut1")]}}])
    host, port = gateway.url.removeprefix("http://").split(":")
    request = (
        f"POST /v1/batches:upload HTTP/1.1\r\nHost: {host}\r\nContent-Type: {NDJSON}\r\n"
        f"Authorization: {gateway.auth([p])['Authorization']}\r\nContent-Length: {len(body) + 1000}\r\n\r\n"
    ).encode()
    received = b""
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(request + body)
        while b'"acknowledgedSequence":"1"' not in received:
            data = conn.recv(65536)
            assert data, f"the connection closed before chunk 1 was acknowledged: {received!r}"
            received += data
        conn.shutdown(socket.SHUT_WR)  # the body ends 1000 bytes short of its Content-Length
        while conn.recv(65536):
            pass
    batches = httpx.get(f"{gateway.url}/v1/batches", params={"program": p}, headers=gateway.auth([p])).json()
    assert [(b["state"], b["paymentCount"]) for b in batches["batches"]] == [("BATCH_STATE_UPLOADING", "1")]


def test_get_watch_and_list_payments(gateway: Gateway) -> None:
    p = program()
    amounts = ["10.50", "0.01", "99999.99", "1.10", "7.00"]
    batch = create(gateway, p, [payment(f"r{i}", a, i) for i, a in enumerate(amounts)])
    name = batch["name"]

    updates = watch(gateway, p, name)
    assert all(set(u) == {"result"} and u["result"]["readTime"] for u in updates)
    final = updates[-1]["result"]["batch"]
    assert final["state"] == "BATCH_STATE_COMPLETED"

    got = httpx.get(f"{gateway.url}/v1/{name}", headers=gateway.auth([p]))
    assert got.status_code == 200
    assert got.headers["content-type"] == "application/json"
    body = got.json()
    assert body["name"] == name and body["program"] == p and body["state"] == "BATCH_STATE_COMPLETED"
    assert body["paymentCount"] == "5"  # int64 is a JSON string, as proto3 JSON says
    assert body["totals"] == final["totals"]

    refs, token, pages = [], "", 0
    while True:
        page = httpx.get(
            f"{gateway.url}/v1/{name}/payments",
            params={"pageSize": 2, "pageToken": token},
            headers=gateway.auth([p]),
        ).json()
        pages += 1
        assert len(page["payments"]) <= 2
        refs += [(x["referenceId"], x["amount"], x["currencyCode"]) for x in page["payments"]]
        token = page["nextPageToken"]
        if not token:
            break
    assert pages == 3
    assert refs == [(f"r{i}", a, "KES") for i, a in enumerate(amounts)]  # upload order, exact amounts

    failed_or_done = httpx.get(
        f"{gateway.url}/v1/{name}/payments",
        params={"filter": "status = SUCCEEDED OR status = FAILED"},
        headers=gateway.auth([p]),
    ).json()["payments"]
    assert len(failed_or_done) == 5


def test_list_batches_with_pagination(gateway: Gateway) -> None:
    p = program()
    names = [create(gateway, p, [payment(f"b{i}")])["name"] for i in range(3)]
    url, auth = f"{gateway.url}/v1/batches", gateway.auth([p])

    first = httpx.get(url, params={"pageSize": 2, "program": p}, headers=auth).json()
    assert [b["name"] for b in first["batches"]] == names[::-1][:2]  # newest first
    assert first["nextPageToken"]
    second = httpx.get(
        url, params={"pageSize": 2, "program": p, "pageToken": first["nextPageToken"]}, headers=auth
    ).json()
    assert [b["name"] for b in second["batches"]] == names[:1]
    assert second["nextPageToken"] == ""
    # A caller sees only the programs its token names.
    assert httpx.get(url, params={"program": p}, headers=gateway.auth(["other"])).json()["batches"] == []


def test_cancel(gateway: Gateway) -> None:
    p = program()
    # Declaring more payments than are sent holds the batch in UPLOADING, so nothing is paid yet.
    batch = create(gateway, p, [payment("c1"), payment("c2", n=2)], expectedPaymentCount="10")
    assert batch["state"] == "BATCH_STATE_UPLOADING"
    name = batch["name"]

    cancelled = httpx.post(
        f"{gateway.url}/v1/{name}:cancel", json={"requestId": str(uuid.uuid4())}, headers=gateway.auth([p])
    )
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["state"] == "BATCH_STATE_CANCELLED"
    assert httpx.get(f"{gateway.url}/v1/{name}", headers=gateway.auth([p])).json()["state"] == (
        "BATCH_STATE_CANCELLED"
    )
    payments = httpx.get(f"{gateway.url}/v1/{name}/payments", headers=gateway.auth([p])).json()["payments"]
    assert {x["status"] for x in payments} == {"PAYMENT_STATUS_CANCELLED"}
    assert watch(gateway, p, name)[-1]["result"]["batch"]["state"] == "BATCH_STATE_CANCELLED"
    # Cancelling again is harmless.
    again = httpx.post(f"{gateway.url}/v1/{name}:cancel", json={}, headers=gateway.auth([p]))
    assert again.status_code == 200 and again.json()["state"] == "BATCH_STATE_CANCELLED"


def test_operator_routes_cancel_one_payment_search_by_reference_and_stream_the_report(
    gateway: Gateway,
) -> None:
    p = program()
    held = create(gateway, p, [payment("=o1"), payment("o2", "12.34", 2)], expectedPaymentCount="10")
    name, auth = held["name"], gateway.auth([p])

    cancelled = httpx.post(
        f"{gateway.url}/v1/{name}/payments/o2:cancel", json={"requestId": str(uuid.uuid4())}, headers=auth
    )
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "PAYMENT_STATUS_CANCELLED"
    found = httpx.get(
        f"{gateway.url}/v1/batches/-/payments", params={"filter": 'reference_id = "o2"'}, headers=auth
    ).json()["payments"]
    assert [x["name"] for x in found] == [f"{name}/payments/o2"]

    with httpx.stream("GET", f"{gateway.url}/v1/{name}:exportPayments", headers=auth, timeout=60) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/csv")
        text = r.read().decode()
    lines = text.split("\r\n")
    assert lines[0].startswith("reference_id,amount,currency_code,status,")
    assert lines[1].startswith("'=o1,10.00,KES,ACCEPTED,") and lines[2].startswith("o2,12.34,KES,CANCELLED,")
    assert lines[3:] == [""]
    missing = httpx.get(f"{gateway.url}/v1/{name}:exportPayments", headers=gateway.auth(["other"]))
    assert missing.status_code == 404


def test_bad_amount_in_the_header_is_a_field_violation(gateway: Gateway) -> None:
    p = program()
    response, lines = upload(gateway, p, header(p, expectedTotalAmount="12.345"))
    assert response.status_code == 400
    # A stream that fails before its first message: the HTTP status says so, the body is {"error": Status}.
    error = lines[0]["error"]
    assert error["code"] == 3  # INVALID_ARGUMENT
    assert error_info(error)["reason"] == "INVALID_HEADER"
    bad_request = next(d for d in error["details"] if d["@type"].endswith("google.rpc.BadRequest"))
    assert [v["field"] for v in bad_request["fieldViolations"]] == ["header.expected_total_amount"]


def test_unknown_batch_is_404(gateway: Gateway) -> None:
    p, name = program(), f"batches/{uuid.uuid4()}"
    for response in (
        httpx.get(f"{gateway.url}/v1/{name}", headers=gateway.auth([p])),
        httpx.get(f"{gateway.url}/v1/{name}/payments", headers=gateway.auth([p])),
        httpx.post(f"{gateway.url}/v1/{name}:cancel", json={}, headers=gateway.auth([p])),
    ):
        assert response.status_code == 404, response.text
        assert response.json()["code"] == 5
        assert error_info(response.json()) == {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "BATCH_NOT_FOUND",
            "domain": "gpo.dev",
            "metadata": {"name": name},
        }
    watched = httpx.get(f"{gateway.url}/v1/{name}:watch", headers=gateway.auth([p]))
    assert watched.status_code == 404
    assert error_info(watched.json()["error"])["reason"] == "BATCH_NOT_FOUND"
    # A name that is not a batch name at all is a bad request, not a missing batch.
    malformed = httpx.get(f"{gateway.url}/v1/batches/not-a-uuid", headers=gateway.auth([p]))
    assert malformed.status_code == 400


@pytest.mark.parametrize(
    "authorization", [None, "Bearer not-a-jwt", "Basic dXNlcjpwYXNz"], ids=["missing", "garbage", "basic"]
)
def test_unauthenticated_is_401(gateway: Gateway, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    p = program()
    for response in (
        httpx.get(f"{gateway.url}/v1/batches", headers=headers),
        httpx.get(f"{gateway.url}/v1/batches/{uuid.uuid4()}:watch", headers=headers),
        httpx.post(f"{gateway.url}/v1/batches:upload", content=ndjson([header(p)]), headers=headers),
    ):
        assert response.status_code == 401, response.text
        assert response.headers["www-authenticate"] == 'Bearer realm="gpo"'
        body = response.json()
        status = body.get("error", body)  # streams wrap their error
        assert status["code"] == 16
        assert error_info(status)["reason"] == "UNAUTHENTICATED"


def test_malformed_requests_are_4xx(gateway: Gateway) -> None:
    auth = gateway.auth(["x"])
    bad_json = httpx.post(f"{gateway.url}/v1/batches:upload", content=b"{not json\n", headers=auth)
    assert bad_json.status_code == 400
    assert httpx.get(f"{gateway.url}/v1/batches", params={"pageSize": "ten"}, headers=auth).status_code == 400
    negative = httpx.get(f"{gateway.url}/v1/batches", params={"pageSize": -1}, headers=auth)
    assert negative.status_code == 400
    assert error_info(negative.json())["reason"] == "INVALID_PAGE_SIZE"
    wrong_method = httpx.delete(f"{gateway.url}/v1/batches", headers=auth)
    assert wrong_method.status_code == 405
    assert wrong_method.headers["allow"] == "GET"
    assert httpx.get(f"{gateway.url}/v2/nothing", headers=auth).status_code == 404
