"""TLS and mTLS on the gRPC port (issue 12, item 4), with a CA made at test time.

The orchestrator serves TLS only; with a client CA it also requires a client certificate that CA signed.
Refused: plaintext, a client that trusts another CA, a client without a certificate, a certificate from
another CA. Accepted: a client with the right CA and certificate, whose certificate subject reaches the
handlers beside the token's.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from gpo.v1 import disbursement_service_pb2 as api_pb
from gpo.v1 import resources_pb2 as res_pb

from gpo_kernel.tls import ClientTls
from gpo_server.api.auth import Caller, mint_token
from gpo_server.app import Orchestrator
from gpo_server.client import GpoClient
from gpo_server.config import Settings
from rail_sidecars.rails.simulator.store import read_totals
from tests.integration.test_api import PAYER, payment, watch_to_end
from tests.support.certificates import Issued, TestCa, cluster_tls
from tests.support.databases import create_database, drop_database
from tests.support.processes import Cluster, service_urls

WAIT = 30.0


@dataclass
class TlsWorld:
    orchestrator: Orchestrator
    secret: bytes
    ca: TestCa
    client_cert: Issued
    folder: Path

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.orchestrator.port}"

    def client(self, tls: ClientTls | None) -> GpoClient:
        return GpoClient(self.target, mint_token(self.secret, "tls-test", ["prog"]), tls=tls)


@pytest.fixture(params=["tls", "mtls"])
async def world(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[TlsWorld]:
    ca = TestCa(tmp_path / "ca")
    server = ca.issue("gpo-server", server=True, client=True)  # the embedded sidecars present it (mTLS)
    client_cert = ca.issue("program-client", client=True)
    secret = secrets.token_bytes(32)
    settings = Settings(
        data_dir=tmp_path / "data",
        listen="127.0.0.1:0",
        auth_hs256_secrets=(secret,),
        tls_cert_file=str(server.cert_file),
        tls_key_file=str(server.key_file),
        tls_client_ca_file=str(ca.cert_file) if request.param == "mtls" else "",
        tls_ca_file=str(ca.cert_file),
    )
    orchestrator = Orchestrator(settings)
    await orchestrator.start()
    try:
        yield TlsWorld(orchestrator, secret, ca, client_cert, tmp_path)
    finally:
        await orchestrator.stop(grace_s=5)


async def refused(client: GpoClient) -> grpc.StatusCode:
    try:
        async with asyncio.timeout(WAIT):
            await client.get_batch(f"batches/{uuid.uuid4()}")
    except grpc.aio.AioRpcError as error:
        return error.code()
    finally:
        await client.close()
    raise AssertionError("the call went through")


async def test_a_trusted_client_pays_over_tls(world: TlsWorld) -> None:
    mtls = world.orchestrator.settings.tls_client_ca_file != ""
    tls = ClientTls(world.ca.cert_file, world.client_cert.cert_file, world.client_cert.key_file)
    client = world.client(tls)
    try:
        header = api_pb.BatchHeader(program="prog", request_id=str(uuid.uuid4()), payer_fa=PAYER)
        async with asyncio.timeout(WAIT):
            uploaded = await client.upload(header, [[payment(i) for i in range(5)]])
        final = await watch_to_end(client, uploaded.batch.name)  # the in-process sidecar settles it over TLS
        assert sum(t.count for t in final.totals) == 5
    finally:
        await client.close()
    if mtls:
        # Who called: the certificate's subject travels with the token's.
        seen = []
        original = world.orchestrator.auth.caller

        def recording(context: grpc.aio.ServicerContext) -> Caller:
            caller = original(context)
            seen.append(caller.certificate)
            return caller

        world.orchestrator.auth.caller = recording  # type: ignore[method-assign]
        assert await refused(world.client(tls)) == grpc.StatusCode.NOT_FOUND
        assert seen == ["program-client"]


async def test_plaintext_is_refused(world: TlsWorld) -> None:
    assert await refused(world.client(None)) == grpc.StatusCode.UNAVAILABLE


async def test_a_client_trusting_another_ca_is_refused(world: TlsWorld) -> None:
    other = TestCa(world.folder / "other", "Another CA")
    tls = ClientTls(other.cert_file, world.client_cert.cert_file, world.client_cert.key_file)
    assert await refused(world.client(tls)) == grpc.StatusCode.UNAVAILABLE


async def test_client_certificates_when_required(world: TlsWorld) -> None:
    mtls = world.orchestrator.settings.tls_client_ca_file != ""
    without = ClientTls(world.ca.cert_file)
    if not mtls:
        # Server-only TLS: a client without a certificate is served (its token still decides).
        assert await refused(world.client(without)) == grpc.StatusCode.NOT_FOUND
        return
    assert await refused(world.client(without)) == grpc.StatusCode.UNAVAILABLE
    stranger = TestCa(world.folder / "stranger", "Stranger CA").issue("intruder", client=True)
    foreign = ClientTls(world.ca.cert_file, stranger.cert_file, stranger.key_file)
    assert await refused(world.client(foreign)) == grpc.StatusCode.UNAVAILABLE


def test_half_configured_tls_is_an_error_at_start(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="both"):
        Settings(tls_cert_file=str(tmp_path / "cert.pem")).server_tls()
    with pytest.raises(ValueError, match="needs TLS"):
        Settings(tls_client_ca_file=str(tmp_path / "ca.pem")).server_tls()


@pytest.mark.e2e
async def test_separate_processes_pay_over_mtls(tmp_path: Path) -> None:
    """`gpo serve` and `gpo-sidecar` as processes on PostgreSQL and RabbitMQ, mTLS between them; the
    simulator's ledger agrees with GPO."""
    shared_url, amqp_url = service_urls()
    database_url = await create_database(shared_url, prefix="gpo_tls")
    rail = f"tls{uuid.uuid4().hex[:10]}"
    cluster = Cluster(
        workdir=tmp_path,
        database_url=database_url,
        amqp_url=amqp_url,
        extra_env={"GPO_DEFAULT_RAIL": rail},
        tls=cluster_tls(tmp_path / "ca"),
    )
    client: GpoClient | None = None
    try:
        cluster.start_orchestrator()
        ledger = tmp_path / "ledger.db"
        sidecar = cluster.start_sidecar(rail, "--ledger", str(ledger))
        client = cluster.client(["prog"])
        header = api_pb.BatchHeader(program="prog", request_id=str(uuid.uuid4()), payer_fa=PAYER)
        uploaded = await client.upload(header, [[payment(i) for i in range(200)]])
        assert uploaded.rejected == 0
        final = await watch_to_end(client, uploaded.batch.name)
        assert final.state == res_pb.BATCH_STATE_COMPLETED, sidecar.tail()
        stored = [p async for p in client.payments(uploaded.batch.name)]
        assert read_totals(ledger).executions == len(stored) == 200
        # A plaintext client of the same server is refused.
        plain = GpoClient(cluster.target, cluster.token(["prog"]))
        assert await refused(plain) == grpc.StatusCode.UNAVAILABLE
    finally:
        if client is not None:
            await client.close()
        cluster.stop()
        await drop_database(shared_url, database_url)
