from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.clients.live import BUILD, LiveGpo, build, live_gpo
from tests.support.processes import Proc, free_port


@dataclass
class Gateway:
    url: str
    gpo: LiveGpo
    proc: Proc

    def auth(self, programs: list[str]) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.gpo.token(programs)}"}


def start_gateway(backend: str, log: Path, *, wait_healthy: bool = True, url: str = "") -> tuple[str, Proc]:
    """The real gpo-gateway binary on a free port (or `url`), proxying to `backend`."""
    url = url or f"http://127.0.0.1:{free_port()}"
    proc = Proc(
        "gpo-gateway",
        [str(BUILD / "gpo-gateway"), "-listen", url.removeprefix("http://"), "-backend", backend],
        {},
        log,
    ).start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"gpo-gateway exited early:\n{proc.tail()}")
        try:
            status = httpx.get(f"{url}/healthz", timeout=2).status_code
            if status == 200 or (status == 503 and not wait_healthy):
                return url, proc
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.terminate()
    raise TimeoutError(f"gpo-gateway did not answer /healthz:\n{proc.tail()}")


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    build("gateway")
    workdir = tmp_path_factory.mktemp("gpo-gateway")
    with live_gpo(workdir) as gpo:
        url, proc = start_gateway(gpo.target, workdir / "gateway.log")
        try:
            yield Gateway(url, gpo, proc)
        finally:
            proc.terminate()
