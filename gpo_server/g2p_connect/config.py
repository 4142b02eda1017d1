"""G2P Connect settings: GPO's own identity and signing key, the mapper, callbacks, and each sender.

Read from the TOML file named by GPO_G2P_CONFIG (docs/G2P_CONNECT.md shows every key). Without one,
G2P Connect still answers, but knows no sender, so every message is refused with err.sender_id.invalid.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
    load_pem_public_key,
)

from gpo_server.g2p_connect.signatures import Signer


@dataclass(frozen=True)
class SenderConfig:
    sender_id: str
    programs: frozenset[str]  # programs this sender may pay for
    default_program: str  # used when the header's meta names no "program"
    require_signature: bool = True
    keys: dict[str, Any] = field(default_factory=dict)  # unique_key_id -> public key
    jwks_url: str = ""  # keys by "kid" = unique_key_id, when not in `keys`
    # sender_uri must start with one of these; empty allows any http(s) URI (not advised: SSRF).
    callback_uri_prefixes: tuple[str, ...] = ()
    default_callback_uri: str = ""  # used when a message carries no sender_uri
    default_currency: str = ""  # for disbursements without currency_code
    # Bearer-token subjects ("sub") that may act as this sender; default: the sender_id itself. Without
    # this, any valid token holding the program could send as any sender that does not sign.
    subjects: frozenset[str] = frozenset()

    def may_be(self, subject: str) -> bool:
        return subject in (self.subjects or {self.sender_id})


@dataclass(frozen=True)
class MapperConfig:
    url: str = ""  # base URL; /mapper/sync/resolve is appended. Empty: no ID resolution.
    # Payee addresses whose provider (after "@") is one of these are person IDs to resolve.
    id_providers: frozenset[str] = frozenset()
    cache_ttl_s: float = 300.0
    # Resolutions kept at most (least recently used go first): a message can name millions of people.
    cache_max_entries: int = 100_000
    batch_size: int = 500
    timeout_s: float = 30.0
    bearer_token: str = ""


@dataclass(frozen=True)
class CallbackConfig:
    max_attempts: int = 10
    backoff_s: float = 1.0  # doubled on each failed attempt, up to max_backoff_s
    max_backoff_s: float = 300.0
    batch_size: int = 500  # payment statuses per on-disburse callback
    poll_interval_s: float = 0.5
    timeout_s: float = 30.0
    bearer_token: str = ""  # sent as Authorization on callbacks, if set


@dataclass(frozen=True)
class G2pSettings:
    receiver_id: str
    signer: Signer
    senders: dict[str, SenderConfig]
    mapper: MapperConfig = MapperConfig()
    callbacks: CallbackConfig = CallbackConfig()
    max_disbursements: int = 10_000  # per message: rjct.total_count.limit_exceeded above it
    signature_skew_s: int = 300


def load(path: str | Path | None, data_dir: Path) -> G2pSettings:
    raw: dict[str, Any] = tomllib.loads(Path(path).read_text()) if path else {}
    base = Path(path).parent if path else data_dir
    receiver_id = str(raw.get("receiver_id", "gpo"))
    key_file = raw.get("signing_key_file")
    key = _private_key(base / key_file) if key_file else _local_signing_key(data_dir)
    signer = Signer(receiver_id, str(raw.get("signing_key_id", "gpo")), key)
    senders = {sid: _sender(sid, values, base) for sid, values in dict(raw.get("senders", {})).items()}
    m = dict(raw.get("mapper", {}))
    mapper = MapperConfig(
        url=str(m.get("url", "")).rstrip("/"),
        id_providers=frozenset(p.lower() for p in m.get("id_providers", [])),
        cache_ttl_s=float(m.get("cache_ttl_s", 300)),
        cache_max_entries=int(m.get("cache_max_entries", 100_000)),
        batch_size=int(m.get("batch_size", 500)),
        timeout_s=float(m.get("timeout_s", 30)),
        bearer_token=str(m.get("bearer_token", "")),
    )
    c = dict(raw.get("callbacks", {}))
    callbacks = CallbackConfig(
        max_attempts=int(c.get("max_attempts", 10)),
        backoff_s=float(c.get("backoff_s", 1.0)),
        max_backoff_s=float(c.get("max_backoff_s", 300)),
        batch_size=int(c.get("batch_size", 500)),
        poll_interval_s=float(c.get("poll_interval_s", 0.5)),
        timeout_s=float(c.get("timeout_s", 30)),
        bearer_token=str(c.get("bearer_token", "")),
    )
    return G2pSettings(
        receiver_id,
        signer,
        senders,
        mapper,
        callbacks,
        max_disbursements=int(raw.get("max_disbursements", 10_000)),
        signature_skew_s=int(raw.get("signature_skew_s", 300)),
    )


def _sender(sender_id: str, v: dict[str, Any], base: Path) -> SenderConfig:
    programs = [str(p) for p in v.get("programs", [])]
    keys = {
        str(kid): load_pem_public_key(
            value.encode() if value.lstrip().startswith("-----") else (base / value).read_bytes()
        )
        for kid, value in dict(v.get("keys", {})).items()
    }
    return SenderConfig(
        sender_id=sender_id,
        programs=frozenset(programs),
        default_program=str(v.get("default_program", programs[0] if len(programs) == 1 else "")),
        require_signature=bool(v.get("require_signature", True)),
        keys=keys,
        jwks_url=str(v.get("jwks_url", "")),
        callback_uri_prefixes=tuple(str(p) for p in v.get("callback_uri_prefixes", [])),
        default_callback_uri=str(v.get("default_callback_uri", "")),
        default_currency=str(v.get("default_currency", "")),
        subjects=frozenset(str(s) for s in v.get("subjects", [])),
    )


def _private_key(path: Path) -> Any:
    return load_pem_private_key(path.read_bytes(), password=None)


def _local_signing_key(data_dir: Path) -> Any:
    """GPO's ed25519 key for signing callbacks when none is configured, made once, owner-readable only.
    Senders need its public half (docs/G2P_CONNECT.md says how to print it)."""
    path = data_dir / "g2p-signing-key.pem"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
            Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
        )
        path.touch(mode=0o600)
        path.write_bytes(pem)
    return _private_key(path)
