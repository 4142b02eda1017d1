"""G2P Connect message signatures: verify senders' and sign GPO's own, over the exact body bytes.

The spec (MsgSignature) gives the shape but no canonical algorithm: `keyId="{sender_id}|{unique_key_id}|
{algorithm}"`, `algorithm="ed25519"`, `created`, `expires`, `headers="(created) (expires) digest"` and
`signature="Base64(signing content)"`. It borrows Beckn's HTTP signature, so GPO follows Beckn for the
rest: the signing string is

    (created): {created}
    (expires): {expires}
    digest: BLAKE-512={base64 BLAKE2b-512 of the body}

and the signature is ed25519 or RSASSA-PKCS1-v1_5 with SHA-256 ("rsa-sha256") over it, base64. The
digest covers the whole HTTP body exactly as sent (its "header" and "message"), so nothing is re-serialised.
The header is the HTTP `Signature` header; the spec's example writes `kidId`, which is accepted too.
All cryptography is the `cryptography` package's.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

ALGORITHMS = ("ed25519", "rsa-sha256")
SIGNED_HEADERS = "(created) (expires) digest"
_PARAM = re.compile(r'([A-Za-z]+)\s*=\s*"([^"]*)"')


class SignatureError(Exception):
    """A signature that is malformed, expired or does not verify (err.signature.invalid)."""


@dataclass(frozen=True, slots=True)
class ParsedSignature:
    sender_id: str
    unique_key_id: str
    algorithm: str
    created: int
    expires: int
    signature: bytes


def digest(body: bytes) -> str:
    return "BLAKE-512=" + base64.b64encode(hashlib.blake2b(body, digest_size=64).digest()).decode()


def signing_string(created: int, expires: int, body: bytes) -> bytes:
    return f"(created): {created}\n(expires): {expires}\ndigest: {digest(body)}".encode()


def parse(header: str) -> ParsedSignature:
    text = header.strip()
    for prefix in ("Signature:", "Signature"):
        if text[: len(prefix)].lower() == prefix.lower():
            text = text[len(prefix) :]
            break
    params = {k.lower(): v for k, v in _PARAM.findall(text)}
    key_id = params.get("keyid") or params.get("kidid") or ""
    parts = key_id.split("|")
    if len(parts) != 3 or not all(parts):
        raise SignatureError('keyId must be "{sender_id}|{unique_key_id}|{algorithm}"')
    algorithm = params.get("algorithm", parts[2]).lower()
    if algorithm != parts[2].lower() or algorithm not in ALGORITHMS:
        raise SignatureError(f"algorithm must be one of {', '.join(ALGORITHMS)} and match the keyId's")
    if params.get("headers", SIGNED_HEADERS) != SIGNED_HEADERS:
        raise SignatureError(f'headers must be "{SIGNED_HEADERS}"')
    try:
        created, expires = int(params["created"]), int(params["expires"])
        signature = base64.b64decode(params["signature"], validate=True)
    except (KeyError, ValueError) as exc:
        raise SignatureError(f"created, expires and a base64 signature are required ({exc})") from None
    return ParsedSignature(parts[0], parts[1], algorithm, created, expires, signature)


def verify(
    body: bytes, parsed: ParsedSignature, key: Any, *, now: float | None = None, skew_s: int = 300
) -> None:
    """Raises SignatureError unless `parsed` signs `body` with `key` and is within its time window."""
    now = time.time() if now is None else now
    if parsed.created > now + skew_s or parsed.expires < now - skew_s or parsed.expires < parsed.created:
        raise SignatureError("the signature is expired or not yet valid (created/expires)")
    message = signing_string(parsed.created, parsed.expires, body)
    try:
        if parsed.algorithm == "ed25519" and isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(parsed.signature, message)
        elif parsed.algorithm == "rsa-sha256" and isinstance(key, rsa.RSAPublicKey):
            key.verify(parsed.signature, message, padding.PKCS1v15(), hashes.SHA256())
        else:
            raise SignatureError(
                f"the sender's key {parsed.unique_key_id!r} is not an {parsed.algorithm} key"
            )
    except InvalidSignature:
        raise SignatureError("the signature does not verify over the message") from None


@dataclass(frozen=True)
class Signer:
    """Signs bodies as `sender_id` with a private ed25519 or RSA key."""

    sender_id: str
    key_id: str
    key: Any  # Ed25519PrivateKey | RSAPrivateKey
    ttl_s: int = 3600

    @property
    def algorithm(self) -> str:
        return "ed25519" if isinstance(self.key, ed25519.Ed25519PrivateKey) else "rsa-sha256"

    def sign(self, body: bytes, *, now: float | None = None) -> str:
        created = int(time.time() if now is None else now)
        expires = created + self.ttl_s
        message = signing_string(created, expires, body)
        if isinstance(self.key, ed25519.Ed25519PrivateKey):
            raw = self.key.sign(message)
        elif isinstance(self.key, rsa.RSAPrivateKey):
            raw = self.key.sign(message, padding.PKCS1v15(), hashes.SHA256())
        else:
            raise TypeError("a G2P Connect signing key must be ed25519 or RSA")
        return (
            f'Signature keyId="{self.sender_id}|{self.key_id}|{self.algorithm}",'
            f'algorithm="{self.algorithm}",created="{created}",expires="{expires}",'
            f'headers="{SIGNED_HEADERS}",signature="{base64.b64encode(raw).decode()}"'
        )
