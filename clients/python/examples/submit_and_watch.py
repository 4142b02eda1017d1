"""Submits a batch in chunks over the bidirectional UploadBatch stream, then watches it to completion.

Needs only the generated client (`pip install ./clients/python`). Settings: GPO_TARGET (host:port),
GPO_TOKEN, GPO_PROGRAM, GPO_PAYMENTS, GPO_CHUNK_SIZE. The last line printed is a JSON summary.
TLS: GPO_TLS_CA_FILE (the CA of GPO's certificate; set, the channel is TLS) and, where GPO requires a
client certificate, GPO_TLS_CLIENT_CERT_FILE and GPO_TLS_CLIENT_KEY_FILE, all PEM files.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
from gpo.v1 import disbursement_service_pb2 as api
from gpo.v1 import disbursement_service_pb2_grpc as api_grpc
from gpo.v1 import resources_pb2 as res


def payment(i: int) -> api.PaymentInput:
    """Payment i has an exact decimal amount; every 100th is deliberately invalid (three decimals)."""
    amount = "12.345" if i % 100 == 99 else f"{i % 50 + 1}.{i * 7 % 100:02d}"
    return api.PaymentInput(
        reference_id=f"py-{i:06d}",
        payee_fa=f"mobile:2547{i:08d}@mpesa",
        amount=amount,
        currency_code="KES",
        payee_name=f"Beneficiary {i}",
        purpose="cash-transfer",
    )


def requests(program: str, count: int, chunk_size: int) -> Iterator[api.UploadBatchRequest]:
    """The header, then numbered chunks; gRPC pulls them as flow control allows."""
    header = api.BatchHeader(
        program=program, request_id=str(uuid.uuid4()), payer_fa="account:treasury@central-bank"
    )
    yield api.UploadBatchRequest(header=header)
    for sequence, start in enumerate(range(0, count, chunk_size), start=1):
        payments = [payment(i) for i in range(start, min(start + chunk_size, count))]
        yield api.UploadBatchRequest(chunk=api.PaymentChunk(sequence=sequence, payments=payments))


def channel(target: str) -> grpc.Channel:
    """TLS (mTLS with a client certificate) when GPO_TLS_CA_FILE is set; plaintext for loopback only."""
    ca_file = os.environ.get("GPO_TLS_CA_FILE", "")
    if not ca_file:
        return grpc.insecure_channel(target)
    cert_file, key_file = (
        os.environ.get("GPO_TLS_CLIENT_CERT_FILE", ""),
        os.environ.get("GPO_TLS_CLIENT_KEY_FILE", ""),
    )
    credentials = grpc.ssl_channel_credentials(
        root_certificates=Path(ca_file).read_bytes(),
        private_key=Path(key_file).read_bytes() if key_file else None,
        certificate_chain=Path(cert_file).read_bytes() if cert_file else None,
    )
    return grpc.secure_channel(target, credentials)


def main() -> int:
    token = os.environ.get("GPO_TOKEN", "")
    if not token:
        sys.exit("set GPO_TOKEN to a bearer token (e.g. `gpo token`)")
    count = int(os.environ.get("GPO_PAYMENTS", "250"))
    chunk_size = int(os.environ.get("GPO_CHUNK_SIZE", "100"))
    metadata = (("authorization", f"Bearer {token}"),)

    with channel(os.environ.get("GPO_TARGET", "127.0.0.1:50051")) as conn:
        stub = api_grpc.DisbursementServiceStub(conn)
        batch, acknowledged, rejected = res.Batch(), 0, 0
        upload = requests(os.environ.get("GPO_PROGRAM", "demo-program"), count, chunk_size)
        for response in stub.UploadBatch(upload, metadata=metadata):
            if response.acknowledged_sequence:
                acknowledged += 1
                rejected += len(response.rejections)  # each with reference_id and reason_code
            else:
                batch = response.batch
        print(f"uploaded {batch.name}: {batch.payment_count} payments, {rejected} rejected", file=sys.stderr)

        # Watch: one message per change, ending once every payment is final.
        updates = 0
        for update in stub.WatchBatch(api.WatchBatchRequest(name=batch.name), metadata=metadata):
            batch, updates = update.batch, updates + 1

    if batch.state != res.BATCH_STATE_COMPLETED:
        sys.exit(f"watch ended with the batch {res.BatchState.Name(batch.state)}")
    summary = {
        "batch": batch.name,
        "state": res.BatchState.Name(batch.state),
        "payments": batch.payment_count,
        "acknowledged_chunks": acknowledged,
        "rejected": rejected,
        "watch_updates": updates,
        "totals": [
            {
                "status": res.PaymentStatus.Name(t.status),
                "currency": t.currency_code,
                "count": t.count,
                "amount": t.amount,
            }
            for t in batch.totals
        ],
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
