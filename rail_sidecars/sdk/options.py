"""A rail's options (its [rails.NAME.options] table), read the same way by every rail: unknown keys are
refused at once (a typo must not fall back to a default), `{ env = "NAME" }` and `{ file = "/path" }`
secrets are resolved (gpo_kernel.rails_config), and a value of the wrong type is a ConfigError that names
the option."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from gpo_kernel.rails_config import ConfigError, RailConfig
from gpo_kernel.settings import Environment, did_you_mean


class Options:
    def __init__(self, config: RailConfig, kind: str, known: Iterable[str]) -> None:
        self.config = config
        self.env = Environment()  # the process's documented GPO_* settings (GPO_DATA_DIR, GPO_SPECS_DIR)
        known = set(known)
        unknown = sorted(set(config.options) - known)
        if unknown:
            raise ConfigError(
                f"rails.{config.name}.options: unknown {kind} options {unknown}{did_you_mean(unknown[0], known)}"
            )

    def where(self, key: str) -> str:
        return f"rails.{self.config.name}.options.{key}"

    def get(self, key: str, default: Any = None) -> Any:
        """The raw value (secrets resolved), or default when absent."""
        return self.config.option(key, default)

    def required(self, key: str) -> str:
        value = self.get(key)
        if value is None or value == "":
            raise ConfigError(f"{self.where(key)} is required")
        return str(value)

    def text(self, key: str, default: str = "") -> str:
        value = self.get(key)
        return default if value is None or value == "" else str(value)

    def number(self, key: str, default: float) -> float:
        value = self.get(key, default)
        if isinstance(value, bool):
            raise ConfigError(f"{self.where(key)}: not a number: {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{self.where(key)}: not a number: {value!r}") from None

    def integer(self, key: str, default: int) -> int:
        value = self.number(key, default)
        if value != int(value):
            raise ConfigError(f"{self.where(key)}: not a whole number: {value!r}")
        return int(value)

    def flag(self, key: str, default: bool) -> bool:
        value = self.get(key, default)
        if not isinstance(value, bool):
            raise ConfigError(f"{self.where(key)}: not true or false: {value!r}")
        return value

    def table(self, key: str) -> dict[str, Any]:
        value = self.get(key) or {}
        if not isinstance(value, dict):
            raise ConfigError(f"{self.where(key)}: not a table: {value!r}")
        return value

    def state_path(self, prefix: str) -> str:
        """Where the rail keeps its state file: the state_path option, else
        $GPO_DATA_DIR/{prefix}-{rail name}.db."""
        data_dir = self.env.text("GPO_DATA_DIR", ".")
        return self.text("state_path") or str(Path(data_dir) / f"{prefix}-{self.config.name}.db")
