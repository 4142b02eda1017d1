"""ISO 20022 bank-file rail: pain.001.001.09 out, pain.002 and camt.054 back (docs/rails/iso20022.md).

Files: rail.py (the Rail hooks), pain001.py (writer), reports.py (pain.002/camt.054 parsers), codes.py
(status and reason mapping), store.py (the durable key map), settings.py (options), delivery.py (the
transport interface) with delivery_folder.py and delivery_sftp.py.
"""

from rail_sidecars.rails.iso20022.rail import Iso20022Rail, from_config

__all__ = ["Iso20022Rail", "from_config"]
