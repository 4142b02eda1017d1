"""GPO_HEALTH_PORT: a plaintext port for Kubernetes' gRPC probes (which cannot speak TLS) that serves the
health service and nothing else, while the API port requires mTLS."""

from __future__ import annotations

import dataclasses
import secrets
from pathlib import Path

import grpc
import pytest
from google.protobuf import empty_pb2
from gpo.v1 import disbursement_service_pb2 as api_pb
from gpo.v1 import rail_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gpo_kernel import tls
from gpo_server.api.auth import mint_token
from gpo_server.app import Orchestrator
from gpo_server.config import Settings
from tests.support.certificates import client_tls, cluster_tls, server_tls_settings

# Every other service GPO serves, with one method each: the health port must know none of them.
OTHER_METHODS = [
    ("/gpo.v1.DisbursementService/GetBatch", api_pb.GetBatchRequest(name="batches/x")),
    ("/gpo.v1.DisbursementService/ListBatches", api_pb.ListBatchesRequest()),
    ("/gpo.v1.RailService/RenewClaim", rail_pb2.RenewClaimRequest()),
    ("/gpo.v1.G2pConnectService/GetJwks", empty_pb2.Empty()),
    ("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", empty_pb2.Empty()),
    ("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", empty_pb2.Empty()),
]


async def test_the_health_port_serves_health_only_in_plaintext(tmp_path: Path) -> None:
    files = cluster_tls(tmp_path / "tls")
    secret = secrets.token_bytes(32)
    settings = dataclasses.replace(
        Settings.from_env({"GPO_DATA_DIR": str(tmp_path), "GPO_LISTEN": "127.0.0.1:0", **server_tls_settings(files)}),
        auth_hs256_secrets=(secret,),
        health_port=0,
    )
    orchestrator = Orchestrator(settings)
    await orchestrator.start()
    try:
        assert orchestrator.health_port and orchestrator.health_port != orchestrator.port
        token = mint_token(secret, "probe", ["*"], [])
        metadata = (("authorization", f"Bearer {token}"),)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{orchestrator.health_port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for service in ("", "gpo.v1.DisbursementService", "gpo.v1.RailService"):
                reply = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
                assert reply.status == health_pb2.HealthCheckResponse.SERVING, service
            for method, request in OTHER_METHODS:
                call = channel.unary_unary(method, request_serializer=type(request).SerializeToString)
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await call(request, metadata=metadata, timeout=10)
                assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED, method

        # The API port itself stays mTLS only: plaintext fails, the client certificate is served.
        async with grpc.aio.insecure_channel(f"127.0.0.1:{orchestrator.port}") as plain:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await health_pb2_grpc.HealthStub(plain).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        async with tls.channel(f"127.0.0.1:{orchestrator.port}", client_tls(files)) as secure:
            reply = await health_pb2_grpc.HealthStub(secure).Check(
                health_pb2.HealthCheckRequest(), timeout=10
            )
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await orchestrator.stop(grace_s=2)


async def test_without_the_setting_there_is_no_health_port(tmp_path: Path) -> None:
    settings = Settings.from_env({"GPO_DATA_DIR": str(tmp_path), "GPO_LISTEN": "127.0.0.1:0"})
    assert settings.health_port is None
    assert Settings.from_env({"GPO_HEALTH_PORT": "8081"}).health_port == 8081
    settings = dataclasses.replace(settings, auth_hs256_secrets=(secrets.token_bytes(32),))
    orchestrator = Orchestrator(settings)
    await orchestrator.start()
    try:
        assert orchestrator.health_server is None and orchestrator.health_port == 0
    finally:
        await orchestrator.stop(grace_s=2)
