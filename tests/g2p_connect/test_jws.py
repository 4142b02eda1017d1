"""Detached JWS as OpenG2P signs and verifies it, GPO's key ring (JWKS, rotation), the Keymanager client,
the mapper in JWS and asynchronously, and callbacks signed per sender: without processes."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from gpo_server.g2p_connect import config, signatures
from gpo_server.g2p_connect.callbacks import CallbackWorker
from gpo_server.g2p_connect.config import (
    CallbackConfig,
    G2pSettings,
    KeyRing,
    MapperConfig,
    SenderConfig,
)
from gpo_server.g2p_connect.keymanager import KeymanagerClient, KeyServiceUnavailable
from gpo_server.g2p_connect.mapper import MapperClient, MapperUnavailable
from gpo_server.g2p_connect.signatures import Signer
from gpo_server.g2p_connect.storage import G2pStore
from gpo_server.storage.store import Store

BODY = json.dumps({"header": {"sender_id": "spp-x", "message_id": "m1"}, "message": {"note": "é"}}, indent=2)


def _openg2p_reconstruct(signature: str, body: bytes) -> str:
    """What openg2p-g2pconnect-common-lib's JWTSignatureValidator sends its key service: the detached
    JWS with the canonical JSON put back as payload."""
    part1, _, part3 = signature.split(".")
    canonical = json.dumps(json.loads(body), separators=(",", ":")).encode("utf-8")
    payload = base64.urlsafe_b64encode(canonical).replace(b"=", b"").decode()
    return f"{part1}.{payload}.{part3}"


@pytest.mark.parametrize(
    ("key", "alg"),
    [(rsa.generate_private_key(65537, 2048), "RS256"), (ec.generate_private_key(ec.SECP256R1()), "ES256")],
)
def test_gpo_signs_as_openg2p_verifies(key: Any, alg: str) -> None:
    body = BODY.encode()
    signature = Signer("gpo", "kid-1", key).sign(body, scheme="jws")
    assert signature.count(".") == 2 and signature.split(".")[1] == ""  # detached
    token = _openg2p_reconstruct(signature, body)
    assert jwt.get_unverified_header(token) == {"alg": alg, "kid": "kid-1", "typ": "JWT"} or (
        jwt.get_unverified_header(token)["kid"] == "kid-1"
    )
    jwt.api_jws.PyJWS().decode_complete(token, key.public_key(), algorithms=[alg])  # verifies
    # Whitespace in transit does not matter (the payload is canonical JSON), content does.
    parsed = signatures.jws_parse(signature)
    signatures.jws_verify(json.dumps(json.loads(body)).encode(), parsed, key.public_key())
    with pytest.raises(signatures.SignatureError):
        signatures.jws_verify(body.replace(b"m1", b"m2"), parsed, key.public_key())


def test_jws_refusals() -> None:
    body = BODY.encode()
    rsa_key = rsa.generate_private_key(65537, 2048)
    good = signatures.jws_sign(body, rsa_key, "k")
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    with pytest.raises(signatures.SignatureError, match="not an RS256 key"):
        signatures.jws_verify(body, signatures.jws_parse(good), other)
    with pytest.raises(signatures.SignatureError, match="detached"):
        signatures.jws_parse(_openg2p_reconstruct(good, body))  # a payload in the middle: not detached
    hs = jwt.api_jws.PyJWS().encode(b"{}", "secret-secret-secret-secret-1234", algorithm="HS256")
    with pytest.raises(signatures.SignatureError, match="alg"):
        signatures.jws_parse(hs.split(".")[0] + ".." + hs.split(".")[2])
    none = base64.urlsafe_b64encode(b'{"alg":"none"}').rstrip(b"=").decode()
    with pytest.raises(signatures.SignatureError):
        signatures.jws_parse(f"{none}..x")
    unencoded = base64.urlsafe_b64encode(b'{"alg":"RS256","b64":false,"crit":["b64"]}').rstrip(b"=").decode()
    with pytest.raises(signatures.SignatureError):
        signatures.jws_parse(f"{unencoded}..x")
    assert signatures.keymanager_reference_id("openg2p-pbms") == "PARTNER_OPENG2P_PBMS"


def _pem(key: Any) -> bytes:
    return bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))


def test_the_key_ring_publishes_every_key_and_rotates_on_a_config_change(tmp_path: Path) -> None:
    (tmp_path / "a.pem").write_bytes(_pem(rsa.generate_private_key(65537, 2048)))
    (tmp_path / "b.pem").write_bytes(_pem(ec.generate_private_key(ec.SECP256R1())))
    toml = tmp_path / "g2p.toml"
    text = 'receiver_id = "gpo.x"\nsigning_key_id = "{}"\nsigning_keys = {{ "a" = "a.pem", "b" = "b.pem" }}\n'
    toml.write_text(text.format("a"))
    settings = config.load(toml, tmp_path)
    ring = settings.signer
    assert [k["kid"] for k in ring.jwks()["keys"]] == ["a", "b"]
    assert not any("d" in k for k in ring.jwks()["keys"])
    first = ring.sign(b'{"a":1}', scheme="jws")
    assert jwt.get_unverified_header(first.replace("..", ".e30.")).get("kid") == "a"
    toml.write_text(text.format("b"))
    ring._checked = 0.0  # the ring looks at the file at most once a second
    import os

    os.utime(toml, (os.path.getmtime(toml) + 5, os.path.getmtime(toml) + 5))
    assert [k["kid"] for k in ring.jwks()["keys"]] == ["b", "a"]
    signature = ring.sign(b'{"a":1}', scheme="jws")
    public = jwt.PyJWK(ring.jwks()["keys"][0]).key
    signatures.jws_verify(b'{"a":1}', signatures.jws_parse(signature), public)
    # The Beckn scheme cannot use the EC key now active: the ring's RSA key signs those.
    assert ring.sign(b"{}", scheme="beckn").startswith('Signature keyId="gpo.x|a|rsa-sha256"')
    with pytest.raises(ValueError, match="signing_key_id"):
        toml.write_text(text.format("c"))
        config.load(toml, tmp_path)


async def test_the_keymanager_client_asks_as_openg2p_does() -> None:
    key = rsa.generate_private_key(65537, 2048)
    body = BODY.encode()
    signature = signatures.jws_sign(body, key, "k1")
    seen: list[dict[str, Any]] = []
    answer = {"valid": True, "status": 200}

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append({"body": json.loads(request.content), "cookie": request.headers.get("cookie")})
        if answer["status"] != 200:
            return httpx.Response(int(answer["status"]))
        return httpx.Response(200, json={"response": {"signatureValid": answer["valid"]}})

    client = KeymanagerClient(httpx.AsyncClient(transport=httpx.MockTransport(handle)))
    sender = SenderConfig(
        "spp-x",
        frozenset(),
        "",
        signature_scheme="jws",
        keymanager_verify_url="http://km/v1/keymanager/jwtVerify",
        keymanager_reference_id=signatures.keymanager_reference_id("spp-x"),
        keymanager_token="tok",
    )
    parsed = signatures.jws_parse(signature)
    assert await client.verify(sender, body, parsed) is True
    request = seen[0]["body"]["request"]
    assert request["referenceId"] == "PARTNER_SPP_X"
    assert request["jwtSignatureData"] == _openg2p_reconstruct(signature, body)
    assert request["actualData"] == request["jwtSignatureData"].split(".")[1]
    assert seen[0]["cookie"] == "Authorization=tok"
    answer["valid"] = False
    assert await client.verify(sender, body, parsed) is False
    answer["status"] = 500
    with pytest.raises(KeyServiceUnavailable):
        await client.verify(sender, body, parsed)
    await client.close()


async def test_the_mapper_signs_jws_takes_spars_codes_and_resolves_asynchronously() -> None:
    key = rsa.generate_private_key(65537, 2048)
    mapper: MapperClient | None = None
    paths: list[str] = []
    call_back = {"on": True}

    def answers(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [
            {"reference_id": it["reference_id"], "timestamp": "t", "status": "succ", "id": it["id"]}
            | (
                {"fa": "mobile:1@m", "status_reason_code": "succ.id.active"}  # SPAR's answer for a link
                if it["id"].startswith("token:1")
                else {"status_reason_code": "succ.fa.not_linked_to_id"}
            )
            for it in items
        ]

    def handle(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        body = json.loads(request.content)
        signatures.jws_verify(
            request.content, signatures.jws_parse(request.headers["Signature"]), key.public_key()
        )
        items = body["message"]["resolve_request"]
        if request.url.path == "/mapper/sync/resolve":
            return httpx.Response(200, json={"message": {"resolve_response": answers(items)}})
        assert body["header"]["sender_uri"] == "http://gw/mapper"
        callback = {
            "header": {"status": "succ", "action": "resolve"},
            "message": {
                "transaction_id": body["message"]["transaction_id"],
                "resolve_response": answers(items),
            },
        }
        assert mapper is not None
        if call_back["on"]:
            asyncio.get_running_loop().call_soon(mapper.on_resolve, callback)
        return httpx.Response(200, json={"message": {"ack_status": "ACK", "correlation_id": "c"}})

    config_ = MapperConfig(
        url="http://spar",
        id_providers=frozenset({"nid"}),
        cache_ttl_s=0,
        signature_scheme="jws",
        async_path="/mapper/async/resolve",
        callback_uri="http://gw/mapper",
        async_above=2,
        async_timeout_s=0.5,
    )
    mapper = MapperClient(
        config_, Signer("gpo", "k", key), httpx.AsyncClient(transport=httpx.MockTransport(handle))
    )
    small = await mapper.resolve(["token:10@nid", "token:20@nid"])
    assert paths == ["/mapper/sync/resolve"]
    assert small["token:10@nid"].fa == "mobile:1@m" and not small["token:20@nid"].fa
    assert small["token:20@nid"].reason_code == "succ.fa.not_linked_to_id"
    large = await mapper.resolve(["token:11@nid", "token:12@nid", "token:21@nid"])
    assert paths[-1] == "/mapper/async/resolve"
    assert [bool(large[i].fa) for i in ("token:11@nid", "token:12@nid", "token:21@nid")] == [
        True,
        True,
        False,
    ]
    assert mapper.on_resolve({"message": {"transaction_id": "unknown", "resolve_response": []}}) is False
    call_back["on"] = False  # the mapper ACKs and never calls back: retryable
    with pytest.raises(MapperUnavailable, match="in time"):
        await mapper.resolve(["token:13@nid", "token:14@nid", "token:15@nid"])
    await mapper.close()


async def test_callbacks_are_signed_in_the_senders_scheme_with_its_token(tmp_path: Path) -> None:
    store = Store.open(f"sqlite+aiosqlite:///{tmp_path / 'gpo.db'}")
    await store.migrate()
    g2p = G2pStore(store)

    def body(receiver: str) -> str:
        return json.dumps({"header": {"receiver_id": receiver}, "message": {}})

    await g2p.insert_message(
        {
            "sender_id": "jws-sender",
            "message_id": "m1",
            "body_digest": "d",
            "action": "search",
            "correlation_id": "c1",
            "sender_uri": "http://a/cb",
            "reported": True,
        },
        [("http://jws/cb", body("jws-sender")), ("http://beckn/cb", body("beckn-sender"))],
    )
    got: dict[str, httpx.Request] = {}

    def handle(request: httpx.Request) -> httpx.Response:
        got[request.url.host] = request
        return httpx.Response(200)

    key = rsa.generate_private_key(65537, 2048)  # RSA signs in both schemes
    senders = {
        "jws-sender": SenderConfig("jws-sender", frozenset(), "", signature_scheme="jws"),
        "beckn-sender": SenderConfig("beckn-sender", frozenset(), "", callback_bearer_token="own-token"),
    }
    settings = G2pSettings(
        "gpo",
        KeyRing.holding(Signer("gpo", "k", key)),
        senders,
        callbacks=CallbackConfig(bearer_token="default-token"),
    )
    worker = CallbackWorker(g2p, settings, httpx.AsyncClient(transport=httpx.MockTransport(handle)))
    await worker.deliver_due()
    jws, beckn = got["jws"], got["beckn"]
    signatures.jws_verify(jws.content, signatures.jws_parse(jws.headers["Signature"]), key.public_key())
    assert jws.headers["Authorization"] == "Bearer default-token"
    assert beckn.headers["Signature"].startswith('Signature keyId="gpo|k|')
    assert beckn.headers["Authorization"] == "Bearer own-token"
    await worker._client.aclose()
    await store.close()
