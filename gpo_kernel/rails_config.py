"""Rail settings: one TOML file (GPO_RAILS_CONFIG) read by the orchestrator (routes) and by sidecars.

[rails.mpesa]
kind = "gsma"                      # the plugin in rail_sidecars/rails/registry.py
routes = ["mobile:*@mpesa"]        # payee financial-address patterns this rail serves
chunk_size = 500                   # payments per work chunk
concurrency = 4                    # chunks a sidecar works on at once (AMQP prefetch)
rate_limit = 100                   # payments per second to the rail; 0 = unlimited
timeout_s = 30                     # per call to the rail
max_call_s = 60                    # the longest a call to the rail can still take effect after it started
                                   # (default 60; 5 for the in-process simulator)
funds_control = false              # true: a batch's funds are blocked with the sponsor bank through this
                                   # rail's sidecar before it dispatches (docs/TREASURY.md); the rail must
                                   # implement the funds hooks, or its sidecar refuses to start
[rails.mpesa.options]              # kind-specific settings
base_url = "http://127.0.0.1:8080"
api_key = { env = "MPESA_API_KEY" }       # secrets: { env = "NAME" } or { file = "/path" }

[defaults]
default_rail = "mpesa"             # where unmatched payees go; omit to reject them
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpo_kernel.settings import ConfigError, references, refuse_unknown, resolve_secret

__all__ = ["ConfigError", "RailConfig", "RailsConfig", "load_rails_config", "resolve_secret"]

_RAIL_KEYS = (
    "kind",
    "routes",
    "chunk_size",
    "concurrency",
    "rate_limit",
    "timeout_s",
    "max_call_s",
    "funds_control",
    "options",
)


@dataclass(frozen=True)
class RailConfig:
    name: str
    kind: str
    routes: tuple[str, ...] = ()
    chunk_size: int = 1000
    concurrency: int = 8
    rate_limit: float = 0
    timeout_s: float = 30
    # How long after it started a call to the rail can still take effect (a request in flight, a queue on
    # the rail's side). GPO keeps a dead sidecar's payments BUSY for this long after its lease lapses.
    max_call_s: float = 60
    # Its sidecar blocks each batch's funds with the sponsor bank before the batch dispatches
    # (docs/TREASURY.md): the orchestrator holds such batches in AWAITING_FUNDS until it has.
    funds_control: bool = False
    options: dict[str, Any] = field(default_factory=dict)

    def option(self, key: str, default: Any = None, env: Mapping[str, str] | None = None) -> Any:
        """A kind-specific option, with {env = …} and {file = …} secrets resolved."""
        return resolve_secret(self.options.get(key, default), f"rails.{self.name}.options.{key}", env)


@dataclass(frozen=True)
class RailsConfig:
    rails: dict[str, RailConfig]
    default_rail: str | None
    source: str = ""  # the file it was read from, for messages

    def references(self) -> set[str]:
        """The environment variables the file's `{ env = "NAME" }` secrets name."""
        return set().union(*(references(r.options) for r in self.rails.values())) if self.rails else set()

    def routes(self) -> str:
        """The rules in the GPO_ROUTES form, in file order."""
        return ",".join(f"{pattern}={r.name}" for r in self.rails.values() for pattern in r.routes)


def load_rails_config(path: str | Path) -> RailsConfig:
    """The rails file, read once by each process at start (Settings.from_env, gpo-sidecar) and passed down."""
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"GPO_RAILS_CONFIG: cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    refuse_unknown(data, ("rails", "defaults"), str(path))
    refuse_unknown(data.get("defaults") or {}, ("default_rail",), f"{path}: defaults")
    rails = {}
    for name, table in (data.get("rails") or {}).items():
        if "kind" not in table:
            raise ConfigError(f"{path}: rails.{name}: 'kind' is required")
        refuse_unknown(table, _RAIL_KEYS, f"{path}: rails.{name}")
        rails[name] = RailConfig(
            name=name,
            kind=str(table["kind"]),
            routes=tuple(table.get("routes", ())),
            chunk_size=int(table.get("chunk_size", 1000)),
            concurrency=int(table.get("concurrency", 8)),
            rate_limit=float(table.get("rate_limit", 0)),
            timeout_s=float(table.get("timeout_s", 30)),
            # The simulator runs inside the sidecar: none of its calls outlives the process by more
            # than a moment.
            max_call_s=float(table.get("max_call_s", 5 if table["kind"] == "simulator" else 60)),
            funds_control=_flag(table.get("funds_control", False), f"{path}: rails.{name}.funds_control"),
            options=dict(table.get("options", {})),
        )
    default = (data.get("defaults") or {}).get("default_rail")
    if default is not None and default not in rails:
        raise ConfigError(f"{path}: defaults.default_rail {default!r} is not a configured rail")
    return RailsConfig(rails, default, str(path))


def _flag(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: must be true or false, not {value!r}")
    return value
