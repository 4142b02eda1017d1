from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.clients.live import LiveGpo, live_gpo


@pytest.fixture(scope="session")
def gpo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGpo]:
    with live_gpo(tmp_path_factory.mktemp("gpo-clients")) as server:
        yield server
