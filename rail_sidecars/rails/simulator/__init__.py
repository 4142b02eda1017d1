"""The simulator rail (a test rail that keeps a ledger; docs/RAILS.md).

Files: rail.py (the Rail hooks), settings.py (options), store.py (the ledger, and `python -m` totals).
"""

from rail_sidecars.rails.simulator.rail import FAILURE_REASONS, SimulatorRail, from_config
from rail_sidecars.rails.simulator.settings import SimulatorSettings

__all__ = ["FAILURE_REASONS", "SimulatorRail", "SimulatorSettings", "from_config"]
