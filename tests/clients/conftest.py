from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.clients.live import LiveGpo, live_gpo
from tests.support.certificates import client_tls, cluster_tls, server_tls_settings


@pytest.fixture(scope="session")
def gpo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGpo]:
    """`gpo serve` on mTLS only: every client's example must reach it with TLS and a client certificate."""
    files = cluster_tls(tmp_path_factory.mktemp("gpo-clients-tls"))
    with live_gpo(
        tmp_path_factory.mktemp("gpo-clients"), server_tls_settings(files), tls=client_tls(files)
    ) as server:
        yield server
