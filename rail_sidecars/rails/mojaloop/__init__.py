"""Mojaloop FSPIOP v1.1 rail: bulk quotes and bulk transfers through a hub, with a callback listener."""

from rail_sidecars.rails.mojaloop.rail import MojaloopRail, from_config
from rail_sidecars.rails.mojaloop.settings import MojaloopSettings, settings_from_config

__all__ = ["MojaloopRail", "MojaloopSettings", "from_config", "settings_from_config"]
