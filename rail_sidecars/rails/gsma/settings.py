"""The GSMA rail's settings, from its options in the rails file (docs/rails/gsma.md)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from gpo_kernel.rails_config import ConfigError, RailConfig
from rail_sidecars.rails.gsma import transformers as t


@dataclass(frozen=True)
class GsmaSettings:
    base_url: str
    state_path: str
    api_key: str = ""
    client_id: str = ""
    callback_host: str = "127.0.0.1"
    callback_port: int = 0  # 0: any free port
    callback_url: str = ""  # the listener's public base URL; default http://{host}:{port}
    callback_api_key: str = ""  # when set, callbacks must carry it in X-API-Key
    callback_auth: str = "token"  # "token" (a secret in each X-Callback-URL), "api_key" or "none"
    callback_secret: str = ""  # the token's key; default: a random one kept beside state_path
    # What the provider does with a repeated X-CorrelationID, and whether it serves /responses: a
    # provider that does neither makes a lost response indistinguishable from a lost request.
    provider_dedupes_correlation_id: bool = True
    provider_serves_responses: bool = True
    oauth2_token_url: str = ""  # OAuth2 client credentials: token endpoint (absolute URL)
    oauth2_client_id: str = ""
    oauth2_client_secret: str = ""
    oauth2_scope: str = ""
    approval_required: bool = False
    max_batch_size: int = 1000
    page_size: int = 500  # limit= of /completions and /rejections
    poll_interval_s: float = 2.0
    callback_wait_s: float = 10.0  # wait this long for a callback before polling
    # Give up waiting (the chunk comes back and is looked up); keep it well under GPO's claim lease.
    completion_timeout_s: float = 120.0
    # How long a POST or PATCH that got no answer (timeout, broken connection, crash) may still take
    # effect at the provider; until then look_up cannot call its payments absent.
    in_flight_grace_s: float = 120.0
    timeout_s: float = 30.0  # per HTTP call
    body: t.BodyOptions = field(default_factory=lambda: t.BodyOptions(t.DEFAULT_FA_SCHEMES))

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ConfigError(f"gsma base_url must be an http(s) URL, not {self.base_url!r}")
        if not 1 <= self.max_batch_size <= 999_999:  # the spec's maxItems
            raise ConfigError("gsma max_batch_size must be within 1..999999")
        if self.page_size < 1 or self.poll_interval_s <= 0 or self.completion_timeout_s <= 0:
            raise ConfigError("gsma page_size, poll_interval_s and completion_timeout_s must be positive")
        if not (self.provider_dedupes_correlation_id or self.provider_serves_responses):
            raise ConfigError(
                "gsma: a provider that neither refuses a repeated X-CorrelationID nor serves /responses"
                " would execute a batch twice after one lost response; GPO refuses to run against it"
            )
        if self.callback_auth not in ("token", "api_key", "none"):
            raise ConfigError(
                f"gsma callback_auth must be token, api_key or none, not {self.callback_auth!r}"
            )
        if self.callback_auth == "api_key" and not self.callback_api_key:
            raise ConfigError("gsma callback_auth = 'api_key' needs callback_api_key")
        if self.oauth2_token_url and not (self.oauth2_client_id and self.oauth2_client_secret):
            raise ConfigError("gsma oauth2_token_url needs oauth2_client_id and oauth2_client_secret")


_OPTIONS = {
    "base_url",
    "api_key",
    "client_id",
    "callback_host",
    "callback_port",
    "callback_url",
    "callback_api_key",
    "callback_auth",
    "callback_secret",
    "provider_dedupes_correlation_id",
    "provider_serves_responses",
    "oauth2_token_url",
    "oauth2_client_id",
    "oauth2_client_secret",
    "oauth2_scope",
    "approval_required",
    "max_batch_size",
    "page_size",
    "poll_interval_s",
    "callback_wait_s",
    "completion_timeout_s",
    "in_flight_grace_s",
    "state_path",
    "debit_party",
    "fa_schemes",
    "requesting_organisation",
    "batch_title",
}


def settings_from_config(config: RailConfig) -> GsmaSettings:
    unknown = set(config.options) - _OPTIONS
    if unknown:
        raise ConfigError(f"rails.{config.name}.options: unknown GSMA options {sorted(unknown)}")
    if not config.option("base_url"):
        raise ConfigError(f"rails.{config.name}.options.base_url is required")
    data_dir = os.environ.get("GPO_DATA_DIR", ".")
    debit = config.option("debit_party") or {}
    if debit and (set(debit) != {"key", "value"}):
        raise ConfigError(f"rails.{config.name}.options.debit_party needs exactly key and value")
    org = config.option("requesting_organisation") or {}
    if org and set(org) != {"type", "identifier"}:
        raise ConfigError(f"rails.{config.name}.options.requesting_organisation needs type and identifier")
    body = t.BodyOptions(
        fa_schemes={**t.DEFAULT_FA_SCHEMES, **dict(config.option("fa_schemes") or {})},
        debit_party=((str(debit["key"]), str(debit["value"])),) if debit else (),
        requesting_organisation=(str(org["type"]), str(org["identifier"])) if org else None,
        batch_title=str(config.option("batch_title", "GPO disbursement")),
    )
    return GsmaSettings(
        base_url=str(config.option("base_url")),
        state_path=str(config.option("state_path") or Path(data_dir) / f"gsma-{config.name}.db"),
        api_key=str(config.option("api_key", "") or ""),
        client_id=str(config.option("client_id", "") or ""),
        callback_host=str(config.option("callback_host", "127.0.0.1")),
        callback_port=int(config.option("callback_port", 0)),
        callback_url=str(config.option("callback_url", "") or ""),
        callback_api_key=str(config.option("callback_api_key", "") or ""),
        callback_auth=str(config.option("callback_auth", "token")),
        callback_secret=str(config.option("callback_secret", "") or ""),
        provider_dedupes_correlation_id=bool(config.option("provider_dedupes_correlation_id", True)),
        provider_serves_responses=bool(config.option("provider_serves_responses", True)),
        oauth2_token_url=str(config.option("oauth2_token_url", "") or ""),
        oauth2_client_id=str(config.option("oauth2_client_id", "") or ""),
        oauth2_client_secret=str(config.option("oauth2_client_secret", "") or ""),
        oauth2_scope=str(config.option("oauth2_scope", "") or ""),
        approval_required=bool(config.option("approval_required", False)),
        max_batch_size=int(config.option("max_batch_size", 1000)),
        page_size=int(config.option("page_size", 500)),
        poll_interval_s=float(config.option("poll_interval_s", 2.0)),
        callback_wait_s=float(config.option("callback_wait_s", 10.0)),
        completion_timeout_s=float(config.option("completion_timeout_s", 120.0)),
        in_flight_grace_s=float(config.option("in_flight_grace_s", 120.0)),
        timeout_s=config.timeout_s,
        body=body,
    )
