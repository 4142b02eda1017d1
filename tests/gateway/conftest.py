from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.clients.live import BUILD, LiveGpo, build, live_gpo
from tests.support.certificates import client_tls, cluster_tls, server_tls_settings
from tests.support.processes import Proc, free_port


@dataclass
class Gateway:
    url: str
    gpo: LiveGpo
    proc: Proc

    def auth(self, programs: list[str]) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.gpo.token(programs)}"}


def start_gateway(
    backend: str,
    log: Path,
    *,
    wait_healthy: bool = True,
    url: str = "",
    tls: Mapping[str, Path] | None = None,
    extra_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> tuple[str, Proc]:
    """The real gpo-gateway binary on a free port (or `url`), proxying to `backend`; with `tls`
    (certificates.cluster_tls files) it reaches GPO over mTLS; `env` is its whole environment."""
    url = url or f"http://127.0.0.1:{free_port()}"
    backend_tls = (
        [
            "-backend-tls",
            str(tls["ca"]),
            "-backend-client-cert",
            str(tls["client_cert"]),
            "-backend-client-key",
            str(tls["client_key"]),
        ]
        if tls is not None
        else []
    )
    proc = Proc(
        "gpo-gateway",
        [
            str(BUILD / "gpo-gateway"),
            "-listen",
            url.removeprefix("http://"),
            "-backend",
            backend,
            *backend_tls,
            *extra_args,
        ],
        dict(env or {}),
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
    # GPO serves mTLS only: the gateway reaches it with a client certificate, as in production.
    files = cluster_tls(workdir / "tls")
    with live_gpo(workdir, server_tls_settings(files), tls=client_tls(files)) as gpo:
        url, proc = start_gateway(gpo.target, workdir / "gateway.log", tls=files)
        try:
            yield Gateway(url, gpo, proc)
        finally:
            proc.terminate()
