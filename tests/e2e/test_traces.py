"""One trace across processes: a batch uploaded through the REST gateway to gpo serve, published on
RabbitMQ and paid by a simulator sidecar, each process exporting its spans over OTLP/HTTP to a small
collector run by this test."""

from __future__ import annotations

import asyncio
import gzip
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from gpo.v1 import resources_pb2 as res_pb
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from tests.clients.live import build
from tests.gateway.conftest import start_gateway
from tests.support.databases import create_database, drop_database
from tests.support.processes import Cluster, service_urls

PAYEES = [f"mobile:25471{i:07d}@mpesa" for i in range(5)]
CHUNK_SIZE = 2  # five payments: three work chunks, hence three publishes and three sidecar chunk spans
# The sidecar renews its claim every third of its lease while a chunk executes: a rail call longer than
# that (the simulator's latency) makes every chunk renew at least once.
LEASE_S = 3  # the shortest lease the orchestrator grants
LATENCY_MS = 2500


RENEW = "gpo.v1.RailService/RenewClaim"


@dataclass(frozen=True)
class Span:
    service: str
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, str]


class Collector:
    """An OTLP/HTTP traces receiver (POST /v1/traces, protobuf bodies) keeping every span it gets."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self._lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                collector.take(trace_service_pb2.ExportTraceServiceRequest.FromString(body))
                answer = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def take(self, request: trace_service_pb2.ExportTraceServiceRequest) -> None:
        for resource_spans in request.resource_spans:
            service = next(
                (a.value.string_value for a in resource_spans.resource.attributes if a.key == "service.name"),
                "",
            )
            for scope_spans in resource_spans.scope_spans:
                for s in scope_spans.spans:
                    span = Span(
                        service,
                        s.name,
                        s.kind,
                        s.trace_id.hex(),
                        s.span_id.hex(),
                        s.parent_span_id.hex(),
                        {a.key: _text(a.value) for a in s.attributes},
                    )
                    with self._lock:
                        self.spans.append(span)

    def seen(self) -> list[Span]:
        with self._lock:
            return list(self.spans)


def _text(value: Any) -> str:
    kind = value.WhichOneof("value")
    return str(getattr(value, kind)) if kind else ""


@contextmanager
def collector() -> Iterator[Collector]:
    c = Collector()
    thread = threading.Thread(target=c.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield c
    finally:
        c.server.shutdown()
        c.server.server_close()


def ndjson(lines: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


@pytest.mark.e2e
async def test_one_trace_from_the_gateway_to_the_sidecar(tmp_path: Path) -> None:
    build("gateway")
    shared_url, amqp_url = service_urls()
    database_url = await create_database(shared_url, prefix="gpo_traces")
    rail = f"traces{uuid.uuid4().hex[:10]}"
    with collector() as otlp:
        tracing_env = {"GPO_OTLP_ENDPOINT": otlp.url, "OTEL_BSP_SCHEDULE_DELAY": "100"}
        cluster = Cluster(
            workdir=tmp_path,
            database_url=database_url,
            amqp_url=amqp_url,
            extra_env={"GPO_DEFAULT_RAIL": rail, "GPO_WORK_CHUNK_SIZE": str(CHUNK_SIZE), **tracing_env},
        )
        gateway = None
        client = None
        try:
            cluster.start_orchestrator()
            cluster.start_sidecar(
                rail,
                "--lease-s",
                str(LEASE_S),
                "--simulator",
                f"latency_ms={LATENCY_MS},failure_rate=0,seed=1",
            )
            url, gateway = start_gateway(
                cluster.target, tmp_path / "gateway.log", tls=cluster.tls, env=tracing_env
            )
            program = "prog"
            payments = [
                {"referenceId": f"t{i}", "payeeFa": payee, "amount": "10.00", "currencyCode": "KES"}
                for i, payee in enumerate(PAYEES)
            ]
            lines: list[dict[str, Any]] = [
                {"header": {"program": program, "requestId": str(uuid.uuid4()), "payerFa": "account:t@cb"}},
                {"chunk": {"sequence": "1", "payments": payments}},
            ]
            async with httpx.AsyncClient(timeout=60) as http:
                response = await http.post(
                    f"{url}/v1/batches:upload",
                    content=ndjson(lines),
                    headers={
                        "Authorization": f"Bearer {cluster.token([program])}",
                        "Content-Type": "application/x-ndjson",
                    },
                )
            assert response.status_code == 200, response.text
            replies = [json.loads(line) for line in response.text.splitlines() if line.strip()]
            batch = replies[-1]["result"]["batch"]["name"]

            client = cluster.client([program])
            deadline = time.monotonic() + 60
            while (await client.get_batch(batch)).state != res_pb.BATCH_STATE_COMPLETED:
                assert time.monotonic() < deadline, cluster.sidecars[rail].tail()
                await asyncio.sleep(0.1)

            # Every process exports on its own schedule: wait until each one's last spans have arrived.
            def arrived() -> bool:
                spans = otlp.seen()
                return (
                    sum(s.name == "gpo.sidecar.report" for s in spans) >= 3
                    and any(s.service == "gpo-gateway" and not s.parent_id for s in spans)
                    and any(s.name == "gpo.v1.RailService/ClaimWorkChunk" for s in spans)
                    and sum(s.name == "gpo.v1.RailService/ReportResults" for s in spans) >= 3
                    and len({s.attributes.get("gpo.chunk_id") for s in spans if s.name == RENEW}) >= 3
                )

            while not arrived():
                assert time.monotonic() < deadline, [(s.service, s.name) for s in otlp.seen()]
                await asyncio.sleep(0.1)
        finally:
            if client is not None:
                await client.close()
            if gateway is not None:
                gateway.terminate()
            cluster.stop()
            await drop_database(shared_url, database_url)

        spans = otlp.seen()

    root = next(s for s in spans if s.service == "gpo-gateway" and s.name == "POST /v1/batches:upload")
    assert not root.parent_id, "the gateway's request is the root of the trace"
    trace = [s for s in spans if s.trace_id == root.trace_id]
    by_id = {s.span_id: s for s in trace}
    # Connected: every span but the root has its parent in the same trace.
    assert all(s.parent_id in by_id for s in trace if s is not root), [
        (s.service, s.name) for s in trace if s is not root and s.parent_id not in by_id
    ]
    assert {s.service for s in trace} >= {"gpo-gateway", "gpo-server", f"gpo-sidecar-{rail}"}

    def parent(span: Span) -> Span:
        return by_id[span.parent_id]

    upload = next(
        s for s in trace if s.name == "gpo.v1.DisbursementService/UploadBatch" and s.service == "gpo-server"
    )
    # gateway HTTP span -> gateway gRPC client span -> server span (traceparent in the gRPC metadata)
    assert parent(upload).service == "gpo-gateway" and parent(parent(upload)) is root

    publishes = [s for s in trace if s.name == "gpo.outbox.publish"]
    assert len(publishes) == 3
    assert all(parent(p) is upload for p in publishes), "the outbox row kept the upload's context"
    assert all(p.attributes["gpo.batch"] == batch for p in publishes)
    chunk_ids = {p.attributes["gpo.chunk_id"] for p in publishes}
    assert len(chunk_ids) == 3

    for publish in publishes:
        chunk_id = publish.attributes["gpo.chunk_id"]
        # The sidecar continued the trace from the AMQP headers.
        chunk = next(
            s for s in trace if s.name == "gpo.sidecar.chunk" and s.attributes["gpo.chunk_id"] == chunk_id
        )
        assert chunk.service == f"gpo-sidecar-{rail}" and parent(chunk) is publish
        assert chunk.attributes["gpo.batch"] == batch
        steps = {
            s.name: s for s in trace if s.parent_id == chunk.span_id and s.name.startswith("gpo.sidecar.")
        }
        assert set(steps) == {"gpo.sidecar.claim", "gpo.sidecar.execute", "gpo.sidecar.report"}
        assert all(s.attributes["gpo.chunk_id"] == chunk_id for s in steps.values())
        # ClaimWorkChunk carried the claim span's traceparent to the server.
        claim = next(
            s
            for s in trace
            if s.name == "gpo.v1.RailService/ClaimWorkChunk" and s.attributes.get("gpo.chunk_id") == chunk_id
        )
        assert claim.service == "gpo-server" and parent(claim) is steps["gpo.sidecar.claim"]
        # The report of the chunk, one message on a stream shared by every chunk, carried the report span's
        # traceparent: the server's span for it is that span's child.
        reports = [
            s
            for s in trace
            if s.name == "gpo.v1.RailService/ReportResults" and s.attributes.get("gpo.chunk_id") == chunk_id
        ]
        assert len(reports) == 1, reports
        assert reports[0].service == "gpo-server" and parent(reports[0]) is steps["gpo.sidecar.report"]
        assert reports[0].attributes["gpo.batch"] == batch
        # Each renewal of the chunk's claim carried the chunk span's traceparent.
        renewals = [s for s in spans if s.name == RENEW and s.attributes.get("gpo.chunk_id") == chunk_id]
        assert renewals, "the rail call outlasted a third of the lease, so the claim was renewed"
        assert all(r.service == "gpo-server" and parent(r) is chunk for r in renewals), renewals

    # No span says anything about a payee: attributes are ids.
    for span in spans:
        for value in span.attributes.values():
            assert not any(
                payee in value or payee.split(":")[1].split("@")[0] in value for payee in PAYEES
            ), span
