"""GSMA Mobile Money API v1.2 batch disbursements rail (docs/rails/gsma.md)."""

from rail_sidecars.rails.gsma.rail import GsmaRail, from_config
from rail_sidecars.rails.gsma.settings import GsmaSettings, settings_from_config

__all__ = ["GsmaRail", "GsmaSettings", "from_config", "settings_from_config"]
