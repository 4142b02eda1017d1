"""G2P Connect settings: GPO's own identity and signing key, the mapper, callbacks, and each sender.

Read once at start from the TOML file named by GPO_G2P_CONFIG (docs/G2P_CONNECT.md shows every key) with
gpo_kernel.settings' rules: an unknown key is refused (with the key meant, when one is close), and the
tokens (bearer_token, keymanager_token, callback_bearer_token) may be `{ env = "NAME" }` or
`{ file = "/path" }` secrets, left out of every repr. Without a file, G2P Connect still answers, but knows
no sender, so every message is refused with err.sender_id.invalid. Only the signing keys are read again,
when their files change (KeyRing), so that a key rotates without a restart.
"""

from __future__ import annotations

import threading
import time
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
    load_pem_public_key,
)

from gpo_kernel.settings import ConfigError, refuse_unknown, resolve_secret
from gpo_server.g2p_connect.signatures import SCHEMES, Signer, keymanager_reference_id, public_jwk


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
    # "beckn" (GPO's first scheme) or "jws" (detached JWS, as OpenG2P signs): what this sender's requests
    # must carry, and how GPO signs the callbacks it sends to this sender.
    signature_scheme: str = "beckn"
    # JWS only: a Keymanager-compatible JWT verify endpoint (MOSIP's /v1/keymanager/jwtVerify) that holds
    # the sender's certificate under keymanager_reference_id (default PARTNER_<SENDER_ID>); used when the
    # JWS's kid is in neither `keys` nor the JWKS.
    keymanager_verify_url: str = ""
    keymanager_reference_id: str = ""
    keymanager_application_id: str = ""
    keymanager_token: str = field(default="", repr=False)  # sent as the Authorization cookie and bearer token
    # Sent as Authorization: Bearer on callbacks to this sender; default: [callbacks].bearer_token.
    callback_bearer_token: str = field(default="", repr=False)

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
    bearer_token: str = field(default="", repr=False)
    signature_scheme: str = "beckn"  # how GPO signs its mapper requests: "beckn" or "jws" (OpenG2P SPAR)
    sync_path: str = "/mapper/sync/resolve"  # appended to url
    # Asynchronous resolve (/mapper/resolve, answered by an on-resolve callback to GPO): used for messages
    # with more than async_above person IDs, when callback_uri is set (GPO's own address as the mapper
    # reaches it, e.g. the gateway's https://gpo.example.org/mapper; "/on-resolve" is appended by the mapper).
    async_path: str = "/mapper/resolve"
    callback_uri: str = ""
    async_above: int = 0
    async_timeout_s: float = 120.0


@dataclass(frozen=True)
class CallbackConfig:
    max_attempts: int = 10
    backoff_s: float = 1.0  # doubled on each failed attempt, up to max_backoff_s
    max_backoff_s: float = 300.0
    batch_size: int = 500  # payment statuses per on-disburse callback
    poll_interval_s: float = 0.5
    timeout_s: float = 30.0
    bearer_token: str = field(default="", repr=False)  # sent as Authorization on callbacks, if set


class KeyRing:
    """GPO's own signing keys: the active one signs, all of them are published (JWKS), so a key is rotated
    without downtime: add the new key beside the old (both published), switch `signing_key_id` to it, and
    remove the old one once partners' JWKS caches have expired. The TOML file is re-read when it (or a key
    file) changes, checked at most once a second, so a rotation needs no restart."""

    def __init__(self, path: Path | None, data_dir: Path, receiver_id: str) -> None:
        self.path, self.data_dir, self.sender_id = path, data_dir, receiver_id
        self._lock = threading.Lock()
        self._checked = 0.0
        self._stamp: tuple[float, ...] = ()
        self._load()

    @classmethod
    def holding(cls, signer: Signer) -> KeyRing:
        """A ring of one key the caller already holds, with no files behind it, so never reloaded."""
        ring = cls.__new__(cls)
        ring.path, ring.data_dir, ring.sender_id = None, Path(), signer.sender_id
        ring._lock = threading.Lock()
        ring._checked = float("inf")  # _fresh() never looks at files
        ring._signers, ring._active = {signer.key_id: signer}, signer
        ring._files_now, ring._stamp = {}, ()
        return ring

    def _files(self, raw: dict[str, Any]) -> tuple[str, dict[str, Path]]:
        base = self.path.parent if self.path else self.data_dir
        keys = {str(k): base / str(v) for k, v in dict(raw.get("signing_keys", {})).items()}
        active = str(raw.get("signing_key_id", "gpo"))
        if raw.get("signing_key_file"):
            keys.setdefault(active, base / str(raw["signing_key_file"]))
        if not keys:
            keys[active] = _local_signing_key_path(self.data_dir)
        if active not in keys:
            raise ValueError(f"signing_key_id {active!r} is not one of signing_keys")
        return active, keys

    def _stamps(self, files: dict[str, Path]) -> tuple[float, ...]:
        paths = ([self.path] if self.path else []) + list(files.values())
        return tuple(p.stat().st_mtime if p.exists() else 0.0 for p in paths)

    def _load(self) -> None:
        raw: dict[str, Any] = tomllib.loads(self.path.read_text()) if self.path else {}
        active, files = self._files(raw)
        keys = {kid: _private_key(path) for kid, path in files.items()}
        self._signers = {kid: Signer(self.sender_id, kid, key) for kid, key in keys.items()}
        self._active = self._signers[active]
        self._files_now = files
        self._stamp = self._stamps(files)

    def _fresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < 1.0:
            return
        with self._lock:
            self._checked = now
            try:
                if self._stamps(self._files_now) != self._stamp:
                    self._load()
            except Exception:  # a half-written file: keep the keys in use, try again next time
                import logging

                logging.getLogger(__name__).exception("G2P Connect: signing keys not reloaded")

    @property
    def active(self) -> Signer:
        self._fresh()
        return self._active

    @property
    def key_id(self) -> str:
        return self.active.key_id

    def sign(self, body: bytes, *, scheme: str = "beckn", now: float | None = None) -> str:
        """Signed with the active key; for the Beckn scheme (ed25519 or RSA only), with the first such key
        of the ring when the active one is an EC key."""
        signer = self.active
        if scheme == "beckn" and not isinstance(signer.key, (ed25519.Ed25519PrivateKey, rsa.RSAPrivateKey)):
            signer = next(
                (
                    s
                    for s in self._signers.values()
                    if isinstance(s.key, (ed25519.Ed25519PrivateKey, rsa.RSAPrivateKey))
                ),
                signer,
            )
        return signer.sign(body, scheme=scheme, now=now)

    def jwks(self) -> dict[str, Any]:
        """The public JWKS of every configured key, the active one first."""
        active = self.active
        signers = [active] + [s for kid, s in self._signers.items() if kid != active.key_id]
        return {"keys": [public_jwk(s.key, s.key_id) for s in signers]}


@dataclass(frozen=True)
class G2pSettings:
    receiver_id: str
    signer: KeyRing
    senders: dict[str, SenderConfig]
    mapper: MapperConfig = MapperConfig()
    callbacks: CallbackConfig = CallbackConfig()
    max_disbursements: int = 10_000  # per message: rjct.total_count.limit_exceeded above it
    signature_skew_s: int = 300


_TOP = (
    "receiver_id",
    "signing_key_file",
    "signing_key_id",
    "signing_keys",
    "max_disbursements",
    "signature_skew_s",
    "senders",
    "mapper",
    "callbacks",
)
_MAPPER = tuple(f.name for f in fields(MapperConfig))
_CALLBACKS = tuple(f.name for f in fields(CallbackConfig))
_SENDER = tuple(f.name for f in fields(SenderConfig) if f.name != "sender_id")


def _read(path: str | Path) -> dict[str, Any]:
    try:
        return tomllib.loads(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"GPO_G2P_CONFIG: cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def _table(raw: dict[str, Any], key: str, known: tuple[str, ...], where: str) -> dict[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: [{key}] must be a table")
    refuse_unknown(value, known, f"{where}: [{key}]")
    return dict(value)


def _secret(table: dict[str, Any], key: str, where: str) -> str:
    return str(resolve_secret(table.get(key, ""), f"{where}.{key}") or "")


def load(path: str | Path | None, data_dir: Path) -> G2pSettings:
    raw: dict[str, Any] = _read(path) if path else {}
    where = str(path)
    refuse_unknown(raw, _TOP, where)
    base = Path(path).parent if path else data_dir
    receiver_id = str(raw.get("receiver_id", "gpo"))
    if not raw.get("signing_key_file") and not raw.get("signing_keys"):
        _local_signing_key(data_dir)
    signer = KeyRing(Path(path) if path else None, data_dir, receiver_id)
    senders = {
        sid: _sender(sid, values, base, f"{where}: [senders.{sid!r}]")
        for sid, values in dict(raw.get("senders", {})).items()
    }
    m = _table(raw, "mapper", _MAPPER, where)
    mapper = MapperConfig(
        url=str(m.get("url", "")).rstrip("/"),
        id_providers=frozenset(p.lower() for p in m.get("id_providers", [])),
        cache_ttl_s=float(m.get("cache_ttl_s", 300)),
        cache_max_entries=int(m.get("cache_max_entries", 100_000)),
        batch_size=int(m.get("batch_size", 500)),
        timeout_s=float(m.get("timeout_s", 30)),
        bearer_token=_secret(m, "bearer_token", "mapper"),
        signature_scheme=_scheme(m.get("signature_scheme", "beckn")),
        sync_path=str(m.get("sync_path", "/mapper/sync/resolve")),
        async_path=str(m.get("async_path", "/mapper/resolve")),
        callback_uri=str(m.get("callback_uri", "")).rstrip("/"),
        async_above=int(m.get("async_above", 0)),
        async_timeout_s=float(m.get("async_timeout_s", 120)),
    )
    c = _table(raw, "callbacks", _CALLBACKS, where)
    callbacks = CallbackConfig(
        max_attempts=int(c.get("max_attempts", 10)),
        backoff_s=float(c.get("backoff_s", 1.0)),
        max_backoff_s=float(c.get("max_backoff_s", 300)),
        batch_size=int(c.get("batch_size", 500)),
        poll_interval_s=float(c.get("poll_interval_s", 0.5)),
        timeout_s=float(c.get("timeout_s", 30)),
        bearer_token=_secret(c, "bearer_token", "callbacks"),
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


def _sender(sender_id: str, v: dict[str, Any], base: Path, where: str) -> SenderConfig:
    if not isinstance(v, dict):
        raise ConfigError(f"{where} must be a table")
    refuse_unknown(v, _SENDER, where)
    secret_where = f"senders.{sender_id}"
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
        signature_scheme=_scheme(v.get("signature_scheme", "beckn")),
        keymanager_verify_url=str(v.get("keymanager_verify_url", "")),
        keymanager_reference_id=str(
            v.get("keymanager_reference_id", "") or keymanager_reference_id(sender_id)
        ),
        keymanager_application_id=str(v.get("keymanager_application_id", "")),
        keymanager_token=_secret(v, "keymanager_token", secret_where),
        callback_bearer_token=_secret(v, "callback_bearer_token", secret_where),
    )


def _scheme(value: Any) -> str:
    if value not in SCHEMES:
        raise ValueError(f"signature_scheme must be one of {', '.join(SCHEMES)}, not {value!r}")
    return str(value)


def _private_key(path: Path) -> Any:
    return load_pem_private_key(path.read_bytes(), password=None)


def _local_signing_key_path(data_dir: Path) -> Path:
    return data_dir / "g2p-signing-key.pem"


def _local_signing_key(data_dir: Path) -> Any:
    """GPO's ed25519 key for signing callbacks when none is configured, made once, owner-readable only.
    Senders need its public half (docs/G2P_CONNECT.md says how to print it)."""
    path = _local_signing_key_path(data_dir)
    if not path.exists():
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
            Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
        )
        path.touch(mode=0o600)
        path.write_bytes(pem)
    return _private_key(path)
