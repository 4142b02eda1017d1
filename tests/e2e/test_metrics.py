"""/metrics of gpo serve, gpo-sidecar and gpo-gateway, scraped while a batch runs through real processes
on PostgreSQL and RabbitMQ; the alert rules and the Grafana dashboard name only metrics the scrapes show."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest
import yaml
from gpo.v1 import disbursement_service_pb2 as api_pb
from gpo.v1 import resources_pb2 as res_pb
from prometheus_client.parser import text_string_to_metric_families

from tests.clients.live import build
from tests.gateway.conftest import start_gateway
from tests.integration.test_api import PAYER, payment
from tests.support.databases import create_database, drop_database
from tests.support.processes import REPO, Cluster, free_port, service_urls

RULES = REPO / "deploy" / "prometheus" / "gpo-rules.yml"
DASHBOARD = REPO / "deploy" / "grafana" / "gpo-dashboard.json"
PAYMENTS = 3000

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    text = httpx.get(url, timeout=5).text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def total(samples: Samples, name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def names(samples: Samples) -> set[str]:
    return {n for n, _ in samples}


def referenced(expressions: list[str]) -> set[str]:
    return {m for e in expressions for m in re.findall(r"\bgpo_[a-z0-9_]+", e)}


def rule_expressions() -> list[str]:
    rules = yaml.safe_load(RULES.read_text())
    return [r["expr"] for g in rules["groups"] for r in g["rules"]]


def dashboard_expressions() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [t["expr"] for p in panels for t in p["targets"]]


@pytest.mark.e2e
async def test_metrics_move_as_a_batch_runs(tmp_path: Path) -> None:
    build("gateway")
    shared_url, amqp_url = service_urls()
    database_url = await create_database(shared_url, prefix="gpo_metrics")
    rail = f"metrics{uuid.uuid4().hex[:10]}"
    orchestrator_port, sidecar_port, gateway_port = free_port(), free_port(), free_port()
    cluster = Cluster(
        workdir=tmp_path,
        database_url=database_url,
        amqp_url=amqp_url,
        extra_env={
            "GPO_DEFAULT_RAIL": rail,
            "GPO_METRICS_PORT": str(orchestrator_port),
            "GPO_METRICS_INTERVAL_S": "0.2",
            "GPO_WORK_CHUNK_SIZE": "500",
        },
    )
    server = f"http://127.0.0.1:{orchestrator_port}/metrics"
    sidecar = f"http://127.0.0.1:{sidecar_port}/metrics"
    gateway_proc = None
    client = None
    try:
        cluster.start_orchestrator()
        before = scrape(server)
        assert total(before, "gpo_intake_payments_total", outcome="accepted") == 0
        # Each chunk of 500 takes the simulator half a second, so the batch is seen in progress.
        cluster.start_sidecar(
            rail, "--metrics-port", str(sidecar_port), "--simulator", "latency_ms=500,failure_rate=0.1,seed=3"
        )
        client = cluster.client(["prog"])
        header = api_pb.BatchHeader(program="prog", request_id=str(uuid.uuid4()), payer_fa=PAYER)
        uploaded = await client.upload(
            header, [[payment(i) for i in range(k, k + 500)] for k in range(0, PAYMENTS, 500)]
        )
        assert uploaded.rejected == 0
        in_flight = 0.0
        seen: set[str] = set()  # gauges of batches in progress leave once the batch completes
        deadline = time.monotonic() + 120
        while (await client.get_batch(uploaded.batch.name)).state != res_pb.BATCH_STATE_COMPLETED:
            assert time.monotonic() < deadline, cluster.sidecars[rail].tail()
            during = scrape(server)
            seen |= names(during)
            in_flight = max(
                in_flight,
                sum(
                    total(during, "gpo_payments", rail=rail, status=s) for s in ("accepted", "queued", "sent")
                ),
            )
            await asyncio.sleep(0.1)
        assert in_flight > 0, "the sampled payments gauge never showed the batch in progress"
        # The SQL gauges are sampled on an interval: wait for a sample taken after completion.
        after = scrape(server)
        while total(after, "gpo_batches", state="completed") != 1:
            assert time.monotonic() < deadline, "no metrics sample showed the batch completed"
            await asyncio.sleep(0.1)
            after = scrape(server)
        assert total(after, "gpo_intake_payments_total", outcome="accepted") == PAYMENTS
        assert total(after, "gpo_outbox_published_chunks_total", rail=rail) >= PAYMENTS / 500
        assert total(after, "gpo_claim_duration_seconds_count") >= PAYMENTS / 500
        assert total(after, "gpo_claimed_payments_total", action="execute") == PAYMENTS
        assert total(after, "gpo_report_duration_seconds_count") >= PAYMENTS / 500
        assert total(after, "gpo_reported_payments_total") == PAYMENTS
        assert total(after, "gpo_batches", state="completed") == 1
        assert total(after, "gpo_payments", rail=rail) == 0  # completed batches leave the gauge
        assert ("gpo_queue_depth", frozenset({("rail", rail)})) in after
        assert total(after, "gpo_dead_letters", rail=rail) == 0
        assert total(after, "gpo_outbox_lag_seconds") == 0

        rail_side = scrape(sidecar)
        assert (
            total(rail_side, "gpo_sidecar_rail_call_duration_seconds_count", rail=rail, operation="execute")
            >= PAYMENTS / 500
        )
        assert total(rail_side, "gpo_sidecar_rail_payments_total", rail=rail, operation="execute") == PAYMENTS
        succeeded = total(rail_side, "gpo_sidecar_outcomes_total", rail=rail, outcome="succeeded")
        failed = total(rail_side, "gpo_sidecar_outcomes_total", rail=rail, outcome="failed")
        assert succeeded + failed == PAYMENTS and failed > 0
        stored = [p async for p in client.payments(uploaded.batch.name)]
        assert failed == sum(1 for p in stored if p.status == res_pb.PAYMENT_STATUS_FAILED)

        # The gateway, over mTLS to GPO: one REST read moves its HTTP and backend counters.
        gateway_metrics = f"127.0.0.1:{gateway_port}"
        url, gateway_proc = start_gateway(
            cluster.target,
            tmp_path / "gateway.log",
            tls=cluster.tls,
            extra_args=["-metrics-addr", gateway_metrics],
        )
        token = cluster.token(["prog"])
        async with httpx.AsyncClient(timeout=10) as http:
            read = await http.get(
                f"{url}/v1/{uploaded.batch.name}", headers={"Authorization": f"Bearer {token}"}
            )
        assert read.status_code == 200, read.text
        gateway = scrape(f"http://{gateway_metrics}/metrics")
        assert total(gateway, "gpo_gateway_http_requests_total", method="GET", code="200") >= 1
        assert (
            total(
                gateway,
                "gpo_gateway_backend_calls_total",
                method="/gpo.v1.DisbursementService/GetBatch",
                code="OK",
            )
            == 1
        )
        assert total(gateway, "gpo_gateway_http_request_duration_seconds_count", method="GET") >= 1

        # Every metric the alert rules and the dashboard use is one these processes expose.
        exposed = seen | names(after) | names(rail_side) | names(gateway)
        assert referenced(rule_expressions()) - exposed == set()
        assert referenced(dashboard_expressions()) - exposed == set()
    finally:
        if client is not None:
            await client.close()
        if gateway_proc is not None:
            gateway_proc.terminate()
        cluster.stop()
        await drop_database(shared_url, database_url)


def test_alert_rules_pass_promtool() -> None:
    """promtool (Debian's prometheus package, installed by scripts/services.sh) checks the rules file."""
    done = subprocess.run(
        ["promtool", "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rule_expressions())} rules found" in done.stdout


def test_dashboard_queries_parse(tmp_path: Path) -> None:
    """Every query of the Grafana dashboard is valid PromQL: promtool checks them as recording rules."""
    expressions = dashboard_expressions()
    assert len(expressions) >= 15
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [{"record": f"gpo:dashboard:{i}", "expr": e} for i, e in enumerate(expressions)],
            }
        ]
    }
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump(rules))
    done = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
