"""FSPIOP-Signature: Mojaloop's JWS profile (API Definition v1.1, "Signature"; the reference implementation
is `@mojaloop/sdk-standard-components`, lib/jws).

The sender signs the body with RS256 (ES256 is accepted too) and a protected header that names the request:

    {"alg": "RS256", "FSPIOP-URI": "/bulkTransfers/{ID}", "FSPIOP-HTTP-Method": "PUT",
     "FSPIOP-Source": "payeefsp1", "FSPIOP-Destination": "gpo-payer", "Date": "Tue, 15 Nov 1994 ..."}

and sends `FSPIOP-Signature: {"signature": "<base64url>", "protectedHeader": "<base64url of that JSON>"}`
beside `FSPIOP-URI` and `FSPIOP-HTTP-Method` headers carrying the same values. The JWS signing input is
`protectedHeader + "." + base64url(body)`. The verifier checks the signature with the public key of the
party in FSPIOP-Source, then that every protected value equals the HTTP header of the same name (Date and
FSPIOP-Destination included when present on either side).

The reference validator signs over `JSON.stringify(parsed body)`; this module verifies the exact bytes
received first and that compact form second, and signs the compact form (what it sends), so both agree.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

ALGORITHMS = ("RS256", "ES256")
# FSPIOP-URI is the path from the resource on: "/bulkTransfers/{ID}", whatever prefix the endpoint has.
_RESOURCES = (
    "participants|parties|quotes|transfers|bulkQuotes|bulkTransfers|transactionRequests|authorizations"
)
_URI = re.compile(rf"(/(?:{_RESOURCES})(?:/.*)?)$")


class SignatureError(Exception):
    """The FSPIOP-Signature is missing, malformed, made with another key, or names another request."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64url(text: str) -> bytes:
    if not re.fullmatch(r"[A-Za-z0-9_-]*", text):
        raise SignatureError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def fspiop_uri(path: str) -> str:
    """The FSPIOP-URI of a request path: "/switch/bulkTransfers/x" -> "/bulkTransfers/x"."""
    match = _URI.search(path.split("?", 1)[0])
    if match is None:
        raise SignatureError(f"no FSPIOP resource in {path!r}")
    return match.group(1)


def load_private_key(pem: str | bytes) -> Any:
    data = pem.encode() if isinstance(pem, str) else pem
    key = serialization.load_pem_private_key(data, password=None)
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ValueError("FSPIOP signing keys are RSA (RS256) or P-256 (ES256)")
    return key


def load_public_key(pem: str | bytes) -> Any:
    """A PEM public key, or the public key of a PEM certificate."""
    data = pem.encode() if isinstance(pem, str) else pem
    if b"CERTIFICATE" in data:
        from cryptography import x509

        key: Any = x509.load_pem_x509_certificate(data).public_key()
    else:
        key = serialization.load_pem_public_key(data)
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise ValueError("FSPIOP validation keys are RSA (RS256) or P-256 (ES256)")
    return key


def compact(body: Any) -> bytes:
    """The body as JSON.stringify writes it: no spaces, non-ASCII characters as they are."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def sign(headers: Mapping[str, str], method: str, path: str, body: bytes, private_key: Any) -> dict[str, str]:
    """The headers to add to a request: FSPIOP-URI, FSPIOP-HTTP-Method and FSPIOP-Signature."""
    lower = {k.lower(): v for k, v in headers.items()}
    alg = "ES256" if isinstance(private_key, ec.EllipticCurvePrivateKey) else "RS256"
    uri, verb = fspiop_uri(path), method.upper()
    protected: dict[str, str] = {
        "alg": alg,
        "FSPIOP-URI": uri,
        "FSPIOP-HTTP-Method": verb,
        "FSPIOP-Source": lower["fspiop-source"],
    }
    if lower.get("fspiop-destination"):
        protected["FSPIOP-Destination"] = lower["fspiop-destination"]
    if lower.get("date"):
        protected["Date"] = lower["date"]
    header64 = b64url(json.dumps(protected, separators=(",", ":")).encode())
    signing_input = f"{header64}.{b64url(body)}".encode()
    if alg == "RS256":
        raw = private_key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    else:
        r, s = decode_dss_signature(private_key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        raw = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    signature = json.dumps({"signature": b64url(raw), "protectedHeader": header64}, separators=(",", ":"))
    return {"FSPIOP-URI": uri, "FSPIOP-HTTP-Method": verb, "FSPIOP-Signature": signature}


def verify(headers: Mapping[str, str], body: bytes, public_keys: Mapping[str, Any]) -> str:
    """Checks a request's FSPIOP-Signature; returns the FSPIOP-Source it proves, raises SignatureError."""
    lower = {k.lower(): v for k, v in headers.items()}
    source = lower.get("fspiop-source", "")
    if not source:
        raise SignatureError("no FSPIOP-Source")
    key = public_keys.get(source)
    if key is None:
        raise SignatureError(f"no validation key for FSPIOP-Source {source!r}")
    for name in ("fspiop-signature", "fspiop-uri", "fspiop-http-method"):
        if not lower.get(name):
            raise SignatureError(f"{name} is required with a signature")
    try:
        envelope = json.loads(lower["fspiop-signature"])
        header64, signature64 = str(envelope["protectedHeader"]), str(envelope["signature"])
        protected = json.loads(_unb64url(header64))
        raw = _unb64url(signature64)
    except (ValueError, KeyError, TypeError) as exc:
        raise SignatureError(f"malformed FSPIOP-Signature: {exc}") from None
    if not isinstance(protected, dict) or protected.get("alg") not in ALGORITHMS:
        raise SignatureError("the protected header's alg must be RS256 or ES256")
    candidates = [body]
    try:
        normal = compact(json.loads(body)) if body else b""
    except ValueError:
        normal = b""
    if normal and normal != body:
        candidates.append(normal)
    if not any(_valid(key, protected["alg"], f"{header64}.{b64url(c)}".encode(), raw) for c in candidates):
        raise SignatureError(f"the signature does not verify with {source}'s key")
    _matches(protected, lower)
    return source


def _valid(key: Any, alg: str, signing_input: bytes, raw: bytes) -> bool:
    try:
        if alg == "RS256" and isinstance(key, rsa.RSAPublicKey):
            key.verify(raw, signing_input, padding.PKCS1v15(), hashes.SHA256())
            return True
        if alg == "ES256" and isinstance(key, ec.EllipticCurvePublicKey) and len(raw) == 64:
            der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
            key.verify(der, signing_input, ec.ECDSA(hashes.SHA256()))
            return True
    except InvalidSignature:
        return False
    return False


def _matches(protected: Mapping[str, Any], lower: Mapping[str, str]) -> None:
    for name in ("FSPIOP-URI", "FSPIOP-HTTP-Method", "FSPIOP-Source"):
        if not protected.get(name) or protected[name] != lower.get(name.lower()):
            raise SignatureError(f"{name} differs from the protected header")
    for name in ("Date", "FSPIOP-Destination"):
        if (protected.get(name) or lower.get(name.lower())) and protected.get(name) != lower.get(
            name.lower()
        ):
            raise SignatureError(f"{name} differs from the protected header")
