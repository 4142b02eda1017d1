"""The /metrics endpoint of a GPO process (orchestrator or sidecar)."""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, start_http_server


class MetricsServer:
    """/metrics over HTTP in a thread of its own (prometheus_client's server), off the event loop; port 0
    takes any free port (tests)."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry = REGISTRY) -> None:
        self._server, self._thread = start_http_server(port, addr=host, registry=registry)
        self.port = int(self._server.server_address[1])

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
