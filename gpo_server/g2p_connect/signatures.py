"""G2P Connect message signatures: verify partners' and sign GPO's own. Two schemes, chosen per partner:

- "jws", as OpenG2P does it (SPAR mapper, G2P Bridge, openg2p-g2pconnect-common-lib's
  JWTSignatureValidator): the `Signature` header is a detached JWS `{protected}..{signature}` whose payload
  is the base64url of the body's canonical JSON, `json.dumps(json.loads(body), separators=(",", ":"))`;
  RS256, ES256 (or EdDSA), with the key's `kid` in the protected header. See `jws_sign`, `jws_verify`.
- "beckn" (below), GPO's first scheme: a Beckn-style HTTP signature over the exact body bytes.

Beckn-style signatures:

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
import json
import re
import time
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from jwt.algorithms import get_default_algorithms
from jwt.api_jws import PyJWS
from jwt.exceptions import PyJWTError

SCHEMES = ("beckn", "jws")
ALGORITHMS = ("ed25519", "rsa-sha256")
JWS_ALGORITHMS = ("RS256", "ES256", "EdDSA")
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

    def sign(self, body: bytes, *, now: float | None = None, scheme: str = "beckn") -> str:
        if scheme == "jws":
            return jws_sign(body, self.key, self.key_id)
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


# ---- detached JWS, as OpenG2P signs and verifies --------------------------------------------------


def canonical_json(body: bytes) -> bytes:
    """The JWS payload OpenG2P signs: the body's JSON re-serialised compactly, ASCII-escaped (Python's
    json.dumps defaults), so whitespace and key spacing in transit do not matter, key order does."""
    try:
        return json.dumps(json.loads(body), separators=(",", ":")).encode()
    except ValueError:
        raise SignatureError("the body is not JSON") from None


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jws_algorithm(key: Any) -> str:
    """RS256 for RSA, ES256 for P-256, EdDSA for ed25519 (private or public keys)."""
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return "RS256"
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        if key.curve.name != "secp256r1":
            raise SignatureError("an EC key must be P-256 (ES256)")
        return "ES256"
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)):
        return "EdDSA"
    raise SignatureError("a JWS key must be RSA, P-256 or ed25519")


def jws_sign(body: bytes, key: Any, kid: str) -> str:
    """A detached JWS of `body`'s canonical JSON: `{protected}..{signature}`."""
    token = PyJWS().encode(canonical_json(body), key, algorithm=jws_algorithm(key), headers={"kid": kid})
    protected, _, signature = token.split(".")
    return f"{protected}..{signature}"


@dataclass(frozen=True, slots=True)
class ParsedJws:
    protected: str
    signature: str
    kid: str
    algorithm: str

    def token(self, body: bytes) -> tuple[str, str]:
        """The compact JWS with the body's canonical payload put back, and that payload (base64url)."""
        payload = b64url(canonical_json(body))
        return f"{self.protected}.{payload}.{self.signature}", payload


def jws_parse(header: str) -> ParsedJws:
    parts = header.strip().split(".")
    if len(parts) != 3 or parts[1] or not parts[0] or not parts[2]:
        raise SignatureError("the Signature must be a detached JWS: {protected}..{signature}")
    try:
        padded = parts[0] + "=" * (-len(parts[0]) % 4)
        protected = json.loads(base64.urlsafe_b64decode(padded))
    except ValueError:
        raise SignatureError("the JWS protected header is not base64url JSON") from None
    if not isinstance(protected, dict):
        raise SignatureError("the JWS protected header is not a JSON object")
    algorithm, kid = protected.get("alg"), protected.get("kid", "")
    if algorithm not in JWS_ALGORITHMS:
        raise SignatureError(f"the JWS alg must be one of {', '.join(JWS_ALGORITHMS)}")
    if protected.get("b64") is False or "crit" in protected:
        raise SignatureError("unencoded (b64=false) or critical JWS headers are not supported")
    return ParsedJws(parts[0], parts[2], kid if isinstance(kid, str) else "", algorithm)


def jws_verify(body: bytes, parsed: ParsedJws, key: Any) -> None:
    """Raises SignatureError unless `parsed` signs `body`'s canonical JSON with `key` (a public key or a
    PyJWK). The key's type must match the JWS alg: no algorithm is taken from the message alone."""
    algo = getattr(key, "algorithm_name", None) or jws_algorithm(key)
    if algo != parsed.algorithm:
        raise SignatureError(f"the key {parsed.kid!r} is not an {parsed.algorithm} key")
    token, _ = parsed.token(body)
    try:
        PyJWS().decode_complete(token, key, algorithms=[parsed.algorithm])
    except PyJWTError:
        raise SignatureError("the JWS does not verify over the message") from None


def public_jwk(key: Any, kid: str) -> dict[str, Any]:
    """The JWK of a private or public key's public half, with kid, alg and use "sig"."""
    public = key.public_key() if hasattr(key, "public_key") else key
    algorithm = jws_algorithm(public)
    jwk: dict[str, Any] = json.loads(get_default_algorithms()[algorithm].to_jwk(public))
    return {**jwk, "kid": kid, "alg": algorithm, "use": "sig"}


def keymanager_reference_id(sender_id: str) -> str:
    """The reference id under which a Keymanager holds a partner's certificate, as OpenG2P's
    JWTSignatureValidator derives it from the header's sender_id."""
    return "PARTNER_" + sender_id.replace("-", "_").upper()
