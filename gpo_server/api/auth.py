"""Bearer-JWT authentication: who calls, and what they may do.

Tokens are checked against configured keys: HS256 shared secrets and/or RS256/ES256/EdDSA public keys
(PEM), or a JWKS URL. Claims GPO reads: `sub`, `exp` (required), `aud` = "gpo", and the identity's kind:

- a program caller: `programs` (program ids, or ["*"] for all) and no role; DisbursementService (and G2P
  Connect) for those programs only;
- an operator: `roles` = ["operator"], no programs: reads every program, lists dead letters, retries and
  cancels, never uploads;
- a rail sidecar: `roles` = ["sidecar"] and `rails` (rail names, or ["*"]), no programs: RailService only,
  and only for payments of its rails;
- a reconciler: `roles` = ["reconciler"], no programs: imports bank statements and reads batches'
  reconciliations (ImportStatement, GetBatchReconciliation, GetCycleReconciliation), nothing else;
- an approver: `roles` = ["approver"] and `programs` (the programs whose batches it may approve, or ["*"]):
  reads those programs' batches and approves or rejects the ones awaiting approval (maker-checker,
  docs/TREASURY.md); never uploads, cancels or retries. Its `sub` names the person: a batch is never
  approved by its uploader's subject, nor twice by one subject.

The kinds are disjoint: a token that mixes them is refused. The interceptor (api/interceptor.py) checks
every call against its service's kind before any handler runs.
"""

from __future__ import annotations

import contextvars
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import jwt

from gpo_kernel.tls import peer_certificate_subject
from gpo_server.api.errors import ApiError, Context

AUDIENCE = "gpo"
SIDECAR_ROLE = "sidecar"
OPERATOR_ROLE = "operator"
RECONCILER_ROLE = "reconciler"
APPROVER_ROLE = "approver"


@dataclass(frozen=True, slots=True)
class Caller:
    subject: str
    programs: frozenset[str] | None  # None: every program
    roles: frozenset[str]
    # The verified client certificate's subject (mTLS), "" over plaintext or server-only TLS.
    certificate: str = ""
    rails: frozenset[str] | None = frozenset()  # sidecars: the rails they serve; None: every rail

    def may_use(self, program: str) -> bool:
        return self.programs is None or program in self.programs

    def may_serve(self, rail: str) -> bool:
        return self.rails is None or rail in self.rails

    @property
    def is_sidecar(self) -> bool:
        return SIDECAR_ROLE in self.roles

    @property
    def is_operator(self) -> bool:
        return OPERATOR_ROLE in self.roles

    @property
    def is_reconciler(self) -> bool:
        return RECONCILER_ROLE in self.roles

    @property
    def is_approver(self) -> bool:
        return APPROVER_ROLE in self.roles

    @property
    def kind(self) -> str:
        if self.is_sidecar:
            return "sidecar"
        if self.is_approver:
            return "approver"
        return "operator" if self.is_operator else "reconciler" if self.is_reconciler else "program"


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
        """The authenticated caller of this call: the one the interceptor admitted, else verified now."""
        admitted = _admitted.get()
        if admitted is not None and admitted[0] is context:
            return admitted[1]
        return self.authenticate(context)

    def authenticate(self, context: Context) -> Caller:
        token = _bearer(context.invocation_metadata() or ())
        claims = self.verify(token)
        programs = _strings(claims, "programs")
        roles = frozenset(_strings(claims, "roles"))
        rails = _strings(claims, "rails")
        caller = Caller(
            certificate=peer_certificate_subject(context.auth_context() or {}),
            subject=str(claims.get("sub", "")),
            programs=None if "*" in programs or OPERATOR_ROLE in roles else frozenset(programs),
            roles=roles,
            rails=None if "*" in rails else frozenset(rails),
        )
        approver = APPROVER_ROLE in roles  # an approver's programs are those it may approve for
        kinds = [
            SIDECAR_ROLE in roles,
            OPERATOR_ROLE in roles,
            RECONCILER_ROLE in roles,
            approver,
            bool(programs) and not approver,
        ]
        if sum(kinds) > 1 or (rails and SIDECAR_ROLE not in roles):
            raise permission_denied(
                "a token is for a program caller (programs), an operator (role operator), a reconciler (role"
                " reconciler), an approver (role approver with programs) or a rail sidecar (role sidecar"
                " with rails), never several",
                "ROLES_NOT_DISJOINT",
            )
        return caller

    @staticmethod
    def admit(context: Context, caller: Caller) -> None:
        """Remembers the caller for the rest of this call (the interceptor, once it admitted it)."""
        _admitted.set((context, caller))

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


# The caller the interceptor admitted, for the handler of the same call (each call runs in its own task).
_admitted: contextvars.ContextVar[tuple[Context, Caller] | None] = contextvars.ContextVar(
    "gpo_admitted_caller", default=None
)


def _strings(claims: dict[str, Any], name: str) -> list[str]:
    value = claims.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise unauthenticated(f"the token's {name} claim must be a list of strings")
    return value


def _bearer(metadata: Sequence[tuple[str, Any]]) -> str:
    for key, value in metadata:
        if key == "authorization":
            scheme, _, token = str(value).partition(" ")
            if scheme.lower() == "bearer" and token:
                return token.strip()
    raise unauthenticated("missing 'authorization: Bearer <JWT>' metadata")


def mint_token(
    secret: bytes,
    subject: str,
    programs: Sequence[str],
    roles: Sequence[str] = (),
    ttl_s: int = 86400,
    rails: Sequence[str] | None = None,
) -> str:
    """An HS256 token, for the embedded default, tests and `gpo token`. A sidecar token (role sidecar)
    serves `rails`, every rail when none are named."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": subject,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + ttl_s,
        "programs": list(programs),
        "roles": list(roles),
    }
    if SIDECAR_ROLE in roles:
        claims["rails"] = list(rails) if rails else ["*"]
    return jwt.encode(claims, secret, algorithm="HS256")


def local_secret(data_dir: Path) -> bytes:
    """The embedded default's HS256 secret, created on first use and readable by its owner only."""
    path = data_dir / "auth.secret"
    if not path.exists():
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(48))
    return path.read_text().strip().encode()
