"""Each generated client's example (Python, Go, Java, TypeScript) submits a batch in chunks to a live GPO
server and watches it to completion; its summary is checked against the workload and against GPO itself.
The server takes mTLS only, so each example's TLS settings (GPO_TLS_*) are exercised too."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal
from typing import Any

import grpc
import pytest
from gpo.v1 import disbursement_service_pb2 as api
from gpo.v1 import disbursement_service_pb2_grpc as api_grpc
from gpo.v1 import resources_pb2 as res

from tests.clients.live import BUILD, REPO, LiveGpo, build, example_expectations

PAYMENTS, CHUNK_SIZE = 250, 100

COMMANDS = {
    "python": [sys.executable, str(REPO / "clients/python/examples/submit_and_watch.py")],
    "go": [str(BUILD / "go-submit-and-watch")],
    "java": [
        "java",
        "-cp",
        f"{REPO}/clients/java/examples/target/classes:{REPO}/clients/java/examples/target/lib/*",
        "org.gpo.examples.SubmitAndWatch",
    ],
    "typescript": ["node", str(REPO / "clients/typescript/dist/examples/submit-and-watch.js")],
}


@pytest.mark.parametrize("language", sorted(COMMANDS))
def test_example_submits_in_chunks_and_watches_to_completion(language: str, gpo_server: LiveGpo) -> None:
    if language != "python":
        build(language)
    program = f"xlang-{language}"
    tls = gpo_server.tls
    assert tls is not None and tls.cert_file is not None and tls.key_file is not None
    env = {
        **os.environ,
        "GPO_TARGET": gpo_server.target,
        "GPO_TOKEN": gpo_server.token([program]),
        "GPO_PROGRAM": program,
        "GPO_PAYMENTS": str(PAYMENTS),
        "GPO_CHUNK_SIZE": str(CHUNK_SIZE),
        "GPO_TLS_CA_FILE": str(tls.ca_file),
        "GPO_TLS_CLIENT_CERT_FILE": str(tls.cert_file),
        "GPO_TLS_CLIENT_KEY_FILE": str(tls.key_file),
    }
    done = subprocess.run(
        COMMANDS[language], env=env, cwd=REPO, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, f"{language} example failed:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    summary: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])

    valid, amount = example_expectations(PAYMENTS)
    assert summary["state"] == "BATCH_STATE_COMPLETED"
    assert summary["payments"] == PAYMENTS
    assert summary["acknowledged_chunks"] == -(-PAYMENTS // CHUNK_SIZE)
    assert summary["rejected"] == PAYMENTS - valid
    assert summary["watch_updates"] >= 1
    totals = {t["status"]: t for t in summary["totals"]}
    assert {t["currency"] for t in summary["totals"]} == {"KES"}
    assert totals["PAYMENT_STATUS_REJECTED"]["count"] == PAYMENTS - valid
    paid = [totals[s] for s in ("PAYMENT_STATUS_SUCCEEDED", "PAYMENT_STATUS_FAILED") if s in totals]
    assert sum(t["count"] for t in paid) == valid
    # Money is exact end to end: decimal strings in every language, summed without rounding.
    assert sum(Decimal(t["amount"]) for t in paid) == amount

    _check_against_gpo(gpo_server, program, summary)


def _check_against_gpo(gpo_server: LiveGpo, program: str, summary: dict[str, Any]) -> None:
    """What the example reported is what GPO holds, payment by payment."""
    metadata = (("authorization", f"Bearer {gpo_server.token([program])}"),)
    assert gpo_server.tls is not None
    with grpc.secure_channel(gpo_server.target, gpo_server.tls.credentials()) as channel:
        stub = api_grpc.DisbursementServiceStub(channel)
        batch = stub.GetBatch(api.GetBatchRequest(name=summary["batch"]), metadata=metadata)
        assert batch.program == program
        assert res.BatchState.Name(batch.state) == summary["state"]
        assert sorted((res.PaymentStatus.Name(t.status), t.count, t.amount) for t in batch.totals) == sorted(
            (t["status"], t["count"], t["amount"]) for t in summary["totals"]
        )
        rejected = stub.ListPayments(
            api.ListPaymentsRequest(parent=batch.name, filter="status = REJECTED"), metadata=metadata
        ).payments
        assert [p.reference_id[-6:] for p in rejected] == ["000099", "000199"]
        assert {p.reason_code for p in rejected} == {"rjct.amount.invalid"}
        succeeded = stub.ListPayments(
            api.ListPaymentsRequest(parent=batch.name, filter="status = SUCCEEDED", page_size=1000),
            metadata=metadata,
        ).payments
        total = next(t for t in batch.totals if t.status == res.PAYMENT_STATUS_SUCCEEDED)
        assert len(succeeded) == total.count
        assert sum(Decimal(p.amount) for p in succeeded) == Decimal(total.amount)
