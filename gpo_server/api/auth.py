"""Bearer-JWT authentication: who calls, and which programs they may act on.

Tokens are checked against configured keys: HS256 shared secrets and/or RS256/ES256/EdDSA public keys
(PEM), or a JWKS URL. Claims GPO reads: `sub`, `exp` (required), `aud` = "gpo", `programs` (a list of
program ids, or ["*"] for all), and `roles` (["sidecar"] lets a rail sidecar report results).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import jwt

from gpo_server.api.errors import ApiError, Context
from gpo_server.tls import peer_certificate_subject

AUDIENCE = "gpo"
SIDECAR_ROLE = "sidecar"


@dataclass(frozen=True, slots=True)
class Caller:
    subject: str
    programs: frozenset[str] | None  # None: every program
    roles: frozenset[str]
    # The verified client certificate's subject (mTLS), "" over plaintext or server-only TLS.
    certificate: str = ""

    def may_use(self, program: str) -> bool:
        return self.programs is None or program in self.programs


def unauthenticated(message: str) -> ApiError:
    return ApiError(grpc.StatusCode.UNAUTHENTICATED, message, "UNAUTHENTICATED")


def permission_denied(message: str, reason: str = "PERMISSION_DENIED") -> ApiError:
    return ApiError(grpc.StatusCode.PERMISSION_DENIED, message, reason)


MIN_HS256_SECRET_BYTES = 32


class Authenticator:
    def __init__(
        self,
        hs256_secrets: Sequence[bytes] = (),
        public_keys: Sequence[Any] = (),
        jwks_url: str | None = None,
        issuer: str | None = None,
    ) -> None:
        if not hs256_secrets and not public_keys and not jwks_url:
            raise ValueError("an Authenticator needs at least one secret, public key or JWKS URL")
        if short := [s for s in hs256_secrets if len(s) < MIN_HS256_SECRET_BYTES]:
            raise ValueError(
                f"{len(short)} HS256 secret(s) shorter than {MIN_HS256_SECRET_BYTES} bytes: a secret must be "
                "at least as long as the hash (RFC 7518, section 3.2); make one with `openssl rand -base64 48`"
            )
        self._keys: list[tuple[Any, list[str]]] = [(s, ["HS256"]) for s in hs256_secrets]
        self._keys += [(k, ["RS256", "ES256", "EdDSA"]) for k in public_keys]
        self._jwks = jwt.PyJWKClient(jwks_url, cache_keys=True) if jwks_url else None
        self._issuer = issuer

    def caller(self, context: Context) -> Caller:
        token = _bearer(context.invocation_metadata() or ())
        claims = self.verify(token)
        programs = claims.get("programs", [])
        if not isinstance(programs, list) or not all(isinstance(p, str) for p in programs):
            raise unauthenticated("the token's programs claim must be a list of strings")
        roles = claims.get("roles", [])
        return Caller(
            certificate=peer_certificate_subject(context.auth_context() or {}),
            subject=str(claims.get("sub", "")),
            programs=None if "*" in programs else frozenset(programs),
            roles=frozenset(r for r in roles if isinstance(r, str))
            if isinstance(roles, list)
            else frozenset(),
        )

    def verify(self, token: str) -> dict[str, Any]:
        options: Any = {"require": ["exp"]}
        keys = list(self._keys)
        if self._jwks is not None:
            try:
                keys.append((self._jwks.get_signing_key_from_jwt(token).key, ["RS256", "ES256", "EdDSA"]))
            except jwt.PyJWTError as exc:
                raise unauthenticated(f"no JWKS key for the token: {exc}") from None
        last: Exception | None = None
        for key, algorithms in keys:
            try:
                claims: dict[str, Any] = jwt.decode(
                    token, key, algorithms=algorithms, audience=AUDIENCE, issuer=self._issuer, options=options
                )
                return claims
            except jwt.InvalidSignatureError as exc:
                last = exc  # try the next key
            except jwt.PyJWTError as exc:
                raise unauthenticated(f"bearer token rejected: {exc}") from None
        raise unauthenticated(f"bearer token rejected: {last}")


def _bearer(metadata: Sequence[tuple[str, Any]]) -> str:
    for key, value in metadata:
        if key == "authorization":
            scheme, _, token = str(value).partition(" ")
            if scheme.lower() == "bearer" and token:
                return token.strip()
    raise unauthenticated("missing 'authorization: Bearer <JWT>' metadata")


def mint_token(
    secret: bytes, subject: str, programs: Sequence[str], roles: Sequence[str] = (), ttl_s: int = 86400
) -> str:
    """An HS256 token, for the embedded default, tests and `gpo token`."""
    now = int(time.time())
    claims = {
        "sub": subject,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + ttl_s,
        "programs": list(programs),
        "roles": list(roles),
    }
    return jwt.encode(claims, secret, algorithm="HS256")


def local_secret(data_dir: Path) -> bytes:
    """The embedded default's HS256 secret, created on first use and readable by its owner only."""
    path = data_dir / "auth.secret"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(48))
    return path.read_text().strip().encode()
