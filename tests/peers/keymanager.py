"""A stand-in for the two MOSIP Keymanager / OAuth endpoints OpenG2P's services call, for tests, on 127.0.0.1:

- `POST /v1/keymanager/jwtVerify`: the body openg2p-g2pconnect-common-lib's JWTSignatureValidator sends
  (`request.jwtSignatureData` a compact JWS, `request.actualData` its payload, `request.referenceId`
  e.g. PARTNER_<SENDER_ID>); answers `response.signatureValid` after REALLY verifying the JWS with the
  public keys registered under that reference id (by the JWS's kid), and that actualData is its payload.
  Nothing registered, a wrong key, a changed payload: false.
- `POST /oauth/token`: a client-credentials token (SPAR fetches one before calling jwtVerify, and sends
  it as the `Authorization` cookie); jwtVerify refuses calls without a token it issued (or `static_tokens`).

Keys are registered by the test (`register`), e.g. from a partner's published JWKS. Only PyJWT and
cryptography: nothing of GPO.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
from collections import Counter
from typing import Any

import jwt
from aiohttp import web

from tests.peers.serving import serve_app


class Keymanager:
    def __init__(self, static_tokens: tuple[str, ...] = ()) -> None:
        self.keys: dict[str, dict[str, Any]] = {}  # reference id -> kid -> public key
        self.tokens: set[str] = set(static_tokens)
        self.verdicts: Counter[tuple[str, bool]] = Counter()  # (reference id, valid) -> calls
        self.verified: dict[str, list[Any]] = {}  # reference id -> the JSON bodies whose JWS verified
        self._runner: web.AppRunner | None = None
        self.url = ""

    @property
    def verify_url(self) -> str:
        return f"{self.url}/v1/keymanager/jwtVerify"

    @property
    def token_url(self) -> str:
        return f"{self.url}/oauth/token"

    def register(self, reference_id: str, kid: str, public_key: Any) -> None:
        self.keys.setdefault(reference_id, {})[kid] = public_key

    def register_jwks(self, reference_id: str, jwks: dict[str, Any]) -> None:
        for jwk in jwks["keys"]:
            self.register(reference_id, jwk["kid"], jwt.PyJWK(jwk).key)

    async def start(self) -> str:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/keymanager/jwtVerify", self._verify)
        app.router.add_post("/oauth/token", self._token)
        self._runner, self.url = await serve_app(app)
        return self.url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _token(self, request: web.Request) -> web.Response:
        token = secrets.token_urlsafe(24)
        self.tokens.add(token)
        return web.json_response({"access_token": token, "token_type": "Bearer", "expires_in": 900})

    async def _verify(self, request: web.Request) -> web.Response:
        cookie = request.cookies.get("Authorization", "")
        bearer = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if cookie not in self.tokens and bearer not in self.tokens:
            return web.json_response({"errors": [{"errorCode": "KER-ATH-401"}]}, status=401)
        body = await request.json()
        req = body.get("request", {})
        reference_id = str(req.get("referenceId", ""))
        valid, message = self._check(
            str(req.get("jwtSignatureData", "")), req.get("actualData"), reference_id
        )
        self.verdicts[(reference_id, valid)] += 1
        if valid:
            payload = str(req["actualData"])
            signed = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
            self.verified.setdefault(reference_id, []).append(json.loads(signed))
        return web.json_response(
            {
                "id": body.get("id"),
                "version": body.get("version"),
                "responsetime": dt.datetime.now(dt.UTC).isoformat(),
                "metadata": None,
                "response": {"signatureValid": valid, "message": message, "trustValid": "TRUST_NOT_VERIFIED"},
                "errors": None,
            }
        )

    def _check(self, token: str, actual: Any, reference_id: str) -> tuple[bool, str]:
        keys = self.keys.get(reference_id)
        if not keys:
            return False, f"no certificate for {reference_id}"
        parts = token.split(".")
        if len(parts) != 3 or parts[1] != actual:
            return False, "actualData is not the JWS payload"
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            return False, f"bad JWS header: {exc}"
        kid, algorithm = header.get("kid"), header.get("alg")
        candidates = [keys[kid]] if kid in keys else list(keys.values())
        for key in candidates:
            try:
                jwt.api_jws.PyJWS().decode_complete(token, key, algorithms=[str(algorithm)])
                return True, "Validation Successful"
            except jwt.PyJWTError:
                continue
        return False, "signature does not verify"
