"""The Mojaloop rail's options, read from its `[rails.NAME.options]` table (see docs/rails/mojaloop.md)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpo_kernel.rails_config import ConfigError, RailConfig

# FSPIOP v1.1 caps a bulk quote and a bulk transfer at 1000 individual items (maxItems in the spec).
MAX_BULK = 1000

# Financial-address schemes (the part before ":") and the FSPIOP PartyIdType each one means.
DEFAULT_ID_TYPES: dict[str, str] = {
    "mobile": "MSISDN",
    "msisdn": "MSISDN",
    "account": "ACCOUNT_ID",
    "iban": "IBAN",
    "email": "EMAIL",
    "alias": "ALIAS",
    "business": "BUSINESS",
    "device": "DEVICE",
    "token": "PERSONAL_ID",
    "id": "PERSONAL_ID",
}
PARTY_ID_TYPES = frozenset(
    {"MSISDN", "EMAIL", "PERSONAL_ID", "BUSINESS", "DEVICE", "ACCOUNT_ID", "IBAN", "ALIAS"}
)


@dataclass(frozen=True)
class MojaloopSettings:
    rail: str
    base_url: str  # the hub (switch) or scheme adapter, e.g. "https://switch.example/switch"
    payer_fsp: str  # our FSP id: FSPIOP-Source of every request, payerFsp of every bulk transfer
    state_path: str  # SQLite file: which bulk transfer each idempotency key was sent in
    callback_host: str = "127.0.0.1"
    callback_port: int = 4100
    callback_prefix: str = ""  # path prefix of the callback routes, e.g. "/fspiop"
    request_timeout_s: float = 30.0  # per HTTP call
    callback_timeout_s: float = 30.0  # wait for a PUT callback before asking again
    callback_retries: int = 2  # how many times to ask again (resend or GET) after a missing callback
    transfer_expiry_s: float = 300.0  # bulk transfer `expiration`
    max_bulk_size: int = MAX_BULK
    max_in_flight: int = 4  # bulks on the wire at once, per sidecar
    party_lookup: bool = False  # GET /parties for every payee instead of reading the FSP from the address
    party_lookup_concurrency: int = 16
    fsp_by_provider: dict[str, str] = field(default_factory=dict)  # address provider -> FSP id
    id_types: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_ID_TYPES))
    max_fee: str = "0"  # the most a quote may add to an amount (transferAmount - amount); decimal string
    scenario: str = "TRANSFER"
    sub_scenario: str = ""
    initiator_type: str = "BUSINESS"
    verify_fulfilment: bool = True  # SHA-256(fulfilment) must equal the quote's condition
    bearer_token: str = ""  # sent as `Authorization: Bearer …` when the hub or its gateway wants one
    # Who may call back: the payee FSP of a bulk, and the hub itself (its FSPIOP-Source for the errors it
    # makes, e.g. 3201 or 3210). A callback from anybody else is refused and logged.
    hub_fsp: str = "switch"
    signing_key: str = ""  # PEM private key: every POST carries FSPIOP-Signature (JWS, RS256/ES256)
    # FSP id -> PEM public key or certificate: callbacks from these FSPs must carry a valid signature.
    verify_keys: dict[str, str] = field(default_factory=dict)
    # With verify_keys set, a callback from an FSP without a key is refused (true) or taken unsigned.
    require_signatures: bool = True
    tls_cert: str = ""  # client certificate (PEM file) for mTLS to the hub
    tls_key: str = ""  # its private key (PEM file)
    tls_ca: str = ""  # CA bundle that the hub's server certificate must chain to (PEM file)
    quote_margin_s: float = 5.0  # a quote expiring sooner than this is quoted again before transferring
    max_requotes: int = 2
    # POSTs of one bulk transfer per process: the hub failed (2xxx) and then did not know it (3210).
    max_transfer_posts: int = 4
    retry_backoff_s: float = 1.0  # before a resend; doubles at each one

    @property
    def listen_url(self) -> str:
        return f"http://{self.callback_host}:{self.callback_port}{self.callback_prefix}"


def _pem(config: RailConfig, key: str, value: Any) -> str:
    """An inline PEM text, or the path of a PEM file."""
    text = str(value or "").strip()
    if not text or text.startswith("-----BEGIN"):
        return text
    try:
        return Path(text).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"rails.{config.name}.options.{key}: cannot read {text}: {exc}") from None


def settings_from_config(config: RailConfig) -> MojaloopSettings:
    def required(key: str) -> str:
        value = config.option(key)
        if not value:
            raise ConfigError(f"rails.{config.name}.options.{key} is required for a mojaloop rail")
        return str(value)

    def number(key: str, default: float) -> float:
        value: Any = config.option(key, default)
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"rails.{config.name}.options.{key}: not a number: {value!r}") from None

    id_types = {**DEFAULT_ID_TYPES, **{str(k): str(v) for k, v in (config.option("id_types") or {}).items()}}
    unknown = sorted(set(id_types.values()) - PARTY_ID_TYPES)
    if unknown:
        raise ConfigError(f"rails.{config.name}.options.id_types: not FSPIOP PartyIdTypes: {unknown}")
    max_bulk = int(number("max_bulk_size", MAX_BULK))
    if not 1 <= max_bulk <= MAX_BULK:
        raise ConfigError(f"rails.{config.name}.options.max_bulk_size must be 1..{MAX_BULK}")
    data_dir = os.environ.get("GPO_DATA_DIR", ".")
    state_path = str(config.option("state_path") or Path(data_dir) / f"mojaloop-{config.name}.db")
    prefix = str(config.option("callback_prefix", "")).rstrip("/")
    if prefix and not prefix.startswith("/"):
        prefix = "/" + prefix
    return MojaloopSettings(
        rail=config.name,
        base_url=required("base_url").rstrip("/"),
        payer_fsp=required("payer_fsp"),
        state_path=state_path,
        callback_host=str(config.option("callback_host", "127.0.0.1")),
        callback_port=int(number("callback_port", 4100)),
        callback_prefix=prefix,
        request_timeout_s=config.timeout_s,
        callback_timeout_s=number("callback_timeout_s", config.timeout_s),
        callback_retries=int(number("callback_retries", 2)),
        transfer_expiry_s=number("transfer_expiry_s", 300),
        max_bulk_size=max_bulk,
        max_in_flight=max(1, int(number("max_in_flight", 4))),
        party_lookup=bool(config.option("party_lookup", False)),
        party_lookup_concurrency=max(1, int(number("party_lookup_concurrency", 16))),
        fsp_by_provider={str(k): str(v) for k, v in (config.option("fsp_by_provider") or {}).items()},
        id_types=id_types,
        max_fee=str(config.option("max_fee", "0")),
        scenario=str(config.option("scenario", "TRANSFER")),
        sub_scenario=str(config.option("sub_scenario", "")),
        initiator_type=str(config.option("initiator_type", "BUSINESS")),
        verify_fulfilment=bool(config.option("verify_fulfilment", True)),
        bearer_token=str(config.option("bearer_token", "") or ""),
        hub_fsp=str(config.option("hub_fsp", "switch")),
        signing_key=_pem(config, "signing_key", config.option("signing_key")),
        verify_keys={
            str(k): _pem(config, f"verify_keys.{k}", v)
            for k, v in (config.option("verify_keys") or {}).items()
        },
        require_signatures=bool(config.option("require_signatures", True)),
        tls_cert=str(config.option("tls_cert", "") or ""),
        tls_key=str(config.option("tls_key", "") or ""),
        tls_ca=str(config.option("tls_ca", "") or ""),
        quote_margin_s=number("quote_margin_s", 5.0),
        max_requotes=max(0, int(number("max_requotes", 2))),
        max_transfer_posts=max(1, int(number("max_transfer_posts", 4))),
        retry_backoff_s=max(0.0, number("retry_backoff_s", 1.0)),
    )
