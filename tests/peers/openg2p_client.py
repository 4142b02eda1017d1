"""An OpenG2P sender, for tests: run with the SPAR environment's python (.tools/spar-venv, made by
scripts/spar.sh), never with GPO's. It speaks G2P Connect the way OpenG2P's own code does:

- requests are built with openg2p-g2pconnect-common-lib's models (`Request`, `RequestHeader`) and sent as
  their `model_dump_json()`, signed as a detached JWS over the body's canonical JSON
  (`json.dumps(body, separators=(",", ":"))`, what `JWTSignatureValidator` re-creates), RS256, kid in the
  protected header;
- every reply is parsed with the library's models (`AsyncResponse` for async endpoints, `SyncResponse`
  for sync ones), every callback with `AsyncCallbackRequest`, and each callback's signature is verified
  with the JWKS the receiver publishes (GPO's /.well-known/jwks.json).

It imports nothing of GPO. Control (JSON over HTTP, from the test process):
  POST /send {"url", "path", "header": {...RequestHeader fields}, "message": {...}, "raw_body"?: str}
       -> {"status", "body" (the reply as JSON), "sent" (the body sent), "parsed", "parse_error"}
  GET  /callbacks -> [{"path", "body", "parsed", "parse_error", "signature_valid", "authorization"}]
  POST /callback/{path} <- callbacks from GPO
Environment: CLIENT_KEY (PEM file of the RSA private key), CLIENT_KID, CLIENT_PORT, GPO_JWKS_URL.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import httpx
import jwt
import uvicorn
from fastapi import FastAPI, Request
from openg2p_g2pconnect_common_lib.schemas import (
    AsyncCallbackRequest,
    AsyncResponse,
    RequestHeader,
    SyncResponse,
)
from openg2p_g2pconnect_common_lib.schemas import Request as G2pRequest
from pydantic import ValidationError

KEY = open(os.environ["CLIENT_KEY"], "rb").read()
KID = os.environ["CLIENT_KID"]
JWKS_URL = os.environ["GPO_JWKS_URL"]

app = FastAPI()
received: list[dict[str, Any]] = []


def canonical(body: bytes) -> bytes:
    return json.dumps(json.loads(body), separators=(",", ":")).encode("utf-8")


def detached_jws(body: bytes) -> str:
    token = jwt.api_jws.PyJWS().encode(canonical(body), KEY, algorithm="RS256", headers={"kid": KID})
    head, _, signature = token.split(".")
    return f"{head}..{signature}"


def verify_detached(body: bytes, signature: str) -> str:
    """'' when the detached JWS verifies with the receiver's published key (by kid), else why not."""
    try:
        head, middle, tail = signature.split(".")
        if middle:
            return "not detached"
        payload = jwt.utils.base64url_encode(canonical(body)).decode()
        token = f"{head}.{payload}.{tail}"
        kid = str(jwt.get_unverified_header(token).get("kid", ""))
        jwk = jwt.PyJWKClient(JWKS_URL, cache_keys=False).get_signing_key(kid)
        jwt.api_jws.PyJWS().decode_complete(token, jwk.key, algorithms=[jwk.algorithm_name])
        return ""
    except Exception as exc:  # every failure is a finding, reported to the test
        return f"{type(exc).__name__}: {exc}"


@app.post("/send")
async def send(control: dict[str, Any]) -> dict[str, Any]:
    path: str = control["path"]
    if "raw_body" in control:
        body = control["raw_body"].encode()
    else:
        request = G2pRequest(header=RequestHeader(**control["header"]), message=control["message"])
        body = request.model_dump_json().encode()
    headers = {"Content-Type": "application/json", "Signature": detached_jws(body)}
    if control.get("token"):
        headers["Authorization"] = f"Bearer {control['token']}"
    async with httpx.AsyncClient(timeout=120) as client:
        response = await client.post(control["url"] + path, content=body, headers=headers)
    answer = response.json()
    model = SyncResponse if "/sync/" in path else AsyncResponse
    error = ""
    try:
        model.model_validate(answer)
    except ValidationError as exc:
        error = str(exc)[:2000]
    return {
        "status": response.status_code,
        "body": answer,
        "sent": json.loads(body),
        "parsed": not error,
        "parse_error": error,
    }


@app.post("/callback/{path:path}")
async def callback(path: str, request: Request) -> dict[str, Any]:
    raw = await request.body()
    body = json.loads(raw)
    error = ""
    try:
        AsyncCallbackRequest.model_validate(body)
    except ValidationError as exc:
        error = str(exc)[:2000]
    why = verify_detached(raw, request.headers.get("Signature", ""))
    received.append(
        {
            "path": "/" + path,
            "body": body,
            "parsed": not error,
            "parse_error": error,
            "signature_valid": not why,
            "signature_error": why,
            "authorization": request.headers.get("Authorization", ""),
        }
    )
    return {"message": {"ack_status": "ACK", "timestamp": "2026-01-01T00:00:00Z", "correlation_id": "x"}}


@app.get("/callbacks")
async def callbacks() -> list[dict[str, Any]]:
    return received


@app.get("/ready")
async def ready() -> dict[str, str]:
    return {"status": "ok"}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ["CLIENT_PORT"]), log_level="warning")
    sys.exit(0)
