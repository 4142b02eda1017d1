"""The local RabbitMQ node, driven as an operator would (rabbitmqctl), for tests that cut connections."""

from __future__ import annotations

import subprocess


def close_connection_named(name: str) -> bool:
    """Has the broker force-close a connection (as a broker shutdown does); False if rabbitmqctl can't."""
    try:
        listing = subprocess.run(
            ["rabbitmqctl", "-q", "list_connections", "--no-table-headers", "pid", "client_properties"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    for line in listing.splitlines():
        if f'"connection_name","{name}"' in line:
            pid = line.split("\t")[0]
            subprocess.run(["rabbitmqctl", "-q", "close_connection", pid, "test"], timeout=30, check=True)
            return True
    return False
