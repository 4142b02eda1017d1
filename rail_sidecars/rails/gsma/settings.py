"""The GSMA rail's settings, from its options in the rails file (docs/rails/gsma.md)."""

from __future__ import annotations

from dataclasses import dataclass, field

from gpo_kernel.rails_config import ConfigError, RailConfig
from rail_sidecars.rails.gsma import transformers as t
from rail_sidecars.sdk.options import Options


@dataclass(frozen=True)
class GsmaSettings:
    base_url: str
    api_key: str = field(default="", repr=False)
    client_id: str = ""
    callback_host: str = "127.0.0.1"
    callback_port: int = 0  # 0: any free port
    callback_url: str = ""  # the listener's public base URL; default http://{host}:{port}
    callback_api_key: str = field(default="", repr=False)  # when set, callbacks must carry it in X-API-Key
    callback_auth: str = "token"  # "token" (a secret in each X-Callback-URL), "api_key" or "none"
    callback_secret: str = field(default="", repr=False)  # the token's key; default: a random one kept as a rail note in GPO
    # What the provider does with a repeated X-CorrelationID, and whether it serves /responses: a
    # provider that does neither makes a lost response indistinguishable from a lost request.
    provider_dedupes_correlation_id: bool = True
    provider_serves_responses: bool = True
    oauth2_token_url: str = ""  # OAuth2 client credentials: token endpoint (absolute URL)
    oauth2_client_id: str = ""
    oauth2_client_secret: str = field(default="", repr=False)
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
    "debit_party",
    "fa_schemes",
    "requesting_organisation",
    "batch_title",
}


def settings_from_config(config: RailConfig) -> GsmaSettings:
    if "state_path" in config.options:
        raise ConfigError(
            f"rail {config.name}: state_path is gone: the GSMA rail keeps what it must remember in GPO"
            " (rail notes), so any replica resumes any batch; remove the option"
        )
    o = Options(config, "GSMA", _OPTIONS)
    base_url = o.required("base_url")
    debit = o.table("debit_party")
    if debit and (set(debit) != {"key", "value"}):
        raise ConfigError(f"{o.where('debit_party')} needs exactly key and value")
    org = o.table("requesting_organisation")
    if org and set(org) != {"type", "identifier"}:
        raise ConfigError(f"{o.where('requesting_organisation')} needs type and identifier")
    body = t.BodyOptions(
        fa_schemes={**t.DEFAULT_FA_SCHEMES, **o.table("fa_schemes")},
        debit_party=((str(debit["key"]), str(debit["value"])),) if debit else (),
        requesting_organisation=(str(org["type"]), str(org["identifier"])) if org else None,
        batch_title=o.text("batch_title", "GPO disbursement"),
    )
    return GsmaSettings(
        base_url=base_url,
        api_key=o.text("api_key"),
        client_id=o.text("client_id"),
        callback_host=o.text("callback_host", "127.0.0.1"),
        callback_port=o.integer("callback_port", 0),
        callback_url=o.text("callback_url"),
        callback_api_key=o.text("callback_api_key"),
        callback_auth=o.text("callback_auth", "token"),
        callback_secret=o.text("callback_secret"),
        provider_dedupes_correlation_id=o.flag("provider_dedupes_correlation_id", True),
        provider_serves_responses=o.flag("provider_serves_responses", True),
        oauth2_token_url=o.text("oauth2_token_url"),
        oauth2_client_id=o.text("oauth2_client_id"),
        oauth2_client_secret=o.text("oauth2_client_secret"),
        oauth2_scope=o.text("oauth2_scope"),
        approval_required=o.flag("approval_required", False),
        max_batch_size=o.integer("max_batch_size", 1000),
        page_size=o.integer("page_size", 500),
        poll_interval_s=o.number("poll_interval_s", 2.0),
        callback_wait_s=o.number("callback_wait_s", 10.0),
        completion_timeout_s=o.number("completion_timeout_s", 120.0),
        in_flight_grace_s=o.number("in_flight_grace_s", 120.0),
        timeout_s=config.timeout_s,
        body=body,
    )
