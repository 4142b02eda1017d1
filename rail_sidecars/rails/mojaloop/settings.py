"""The Mojaloop rail's options, read from its `[rails.NAME.options]` table (see docs/rails/mojaloop.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpo_kernel.rails_config import ConfigError, RailConfig
from rail_sidecars.sdk.options import Options

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
    bearer_token: str = field(default="", repr=False)  # sent as `Authorization: Bearer …` when the hub or its gateway wants one
    # Who may call back: the payee FSP of a bulk, and the hub itself (its FSPIOP-Source for the errors it
    # makes, e.g. 3201 or 3210). A callback from anybody else is refused and logged.
    hub_fsp: str = "switch"
    signing_key: str = field(default="", repr=False)  # PEM private key: every POST carries FSPIOP-Signature (JWS, RS256/ES256)
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


_OPTIONS = {
    "base_url",
    "payer_fsp",
    "callback_host",
    "callback_port",
    "callback_prefix",
    "callback_timeout_s",
    "callback_retries",
    "transfer_expiry_s",
    "max_bulk_size",
    "max_in_flight",
    "party_lookup",
    "party_lookup_concurrency",
    "fsp_by_provider",
    "id_types",
    "max_fee",
    "scenario",
    "sub_scenario",
    "initiator_type",
    "verify_fulfilment",
    "bearer_token",
    "hub_fsp",
    "signing_key",
    "verify_keys",
    "require_signatures",
    "tls_cert",
    "tls_key",
    "tls_ca",
    "quote_margin_s",
    "max_requotes",
    "max_transfer_posts",
    "retry_backoff_s",
}


def _pem(o: Options, key: str, value: Any) -> str:
    """An inline PEM text, or the path of a PEM file."""
    text = str(value or "").strip()
    if not text or text.startswith("-----BEGIN"):
        return text
    try:
        return Path(text).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{o.where(key)}: cannot read {text}: {exc}") from None


def settings_from_config(config: RailConfig) -> MojaloopSettings:
    o = Options(config, "Mojaloop", _OPTIONS)
    id_types = {**DEFAULT_ID_TYPES, **{str(k): str(v) for k, v in o.table("id_types").items()}}
    unknown = sorted(set(id_types.values()) - PARTY_ID_TYPES)
    if unknown:
        raise ConfigError(f"{o.where('id_types')}: not FSPIOP PartyIdTypes: {unknown}")
    max_bulk = o.integer("max_bulk_size", MAX_BULK)
    if not 1 <= max_bulk <= MAX_BULK:
        raise ConfigError(f"{o.where('max_bulk_size')} must be 1..{MAX_BULK}")
    prefix = o.text("callback_prefix").rstrip("/")
    if prefix and not prefix.startswith("/"):
        prefix = "/" + prefix
    return MojaloopSettings(
        rail=config.name,
        base_url=o.required("base_url").rstrip("/"),
        payer_fsp=o.required("payer_fsp"),
        callback_host=o.text("callback_host", "127.0.0.1"),
        callback_port=o.integer("callback_port", 4100),
        callback_prefix=prefix,
        request_timeout_s=config.timeout_s,
        callback_timeout_s=o.number("callback_timeout_s", config.timeout_s),
        callback_retries=o.integer("callback_retries", 2),
        transfer_expiry_s=o.number("transfer_expiry_s", 300),
        max_bulk_size=max_bulk,
        max_in_flight=max(1, o.integer("max_in_flight", 4)),
        party_lookup=o.flag("party_lookup", False),
        party_lookup_concurrency=max(1, o.integer("party_lookup_concurrency", 16)),
        fsp_by_provider={str(k): str(v) for k, v in o.table("fsp_by_provider").items()},
        id_types=id_types,
        max_fee=o.text("max_fee", "0"),
        scenario=o.text("scenario", "TRANSFER"),
        sub_scenario=o.text("sub_scenario"),
        initiator_type=o.text("initiator_type", "BUSINESS"),
        verify_fulfilment=o.flag("verify_fulfilment", True),
        bearer_token=o.text("bearer_token"),
        hub_fsp=o.text("hub_fsp", "switch"),
        signing_key=_pem(o, "signing_key", o.get("signing_key")),
        verify_keys={str(k): _pem(o, f"verify_keys.{k}", v) for k, v in o.table("verify_keys").items()},
        require_signatures=o.flag("require_signatures", True),
        tls_cert=o.text("tls_cert"),
        tls_key=o.text("tls_key"),
        tls_ca=o.text("tls_ca"),
        quote_margin_s=o.number("quote_margin_s", 5.0),
        max_requotes=max(0, o.integer("max_requotes", 2)),
        max_transfer_posts=max(1, o.integer("max_transfer_posts", 4)),
        retry_backoff_s=max(0.0, o.number("retry_backoff_s", 1.0)),
    )
