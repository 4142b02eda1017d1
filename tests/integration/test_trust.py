"""Smaller holes of issue 12 (item 6 and the string limits of item 5), on both backends.

Each case was found from outside on 6605833: forged page tokens answered INTERNAL with a traceback;
references differing only by a bidirectional override or a zero-width space, or by NFC/NFD spelling,
both passed the duplicate check; `javascript:` callback URIs were stored; a 9 MB program name was accepted
(and logged in full); a 1-byte HS256 secret was accepted.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import stat
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from gpo.v1 import disbursement_service_pb2 as api_pb
from gpo.v1 import disbursement_service_pb2_grpc as api_grpc
from gpo.v1 import rail_pb2_grpc
from gpo.v1 import resources_pb2 as res_pb

from gpo_server.api.auth import Authenticator, mint_token
from gpo_server.app import Orchestrator
from gpo_server.client import GpoClient, chunked
from gpo_server.config import Settings
from gpo_server.domain.validation import MAX_METADATA_TOTAL
from tests.conftest import Gpo
from tests.integration.test_api import (
    PAYER,
    REJECTED,
    WAIT,
    all_payments,
    deadline,
    expect_error,
    header,
    new_program,
    payment,
    payments,
    raw_upload,
    watch_to_end,
)


async def until(condition: Callable[[], Awaitable[bool]]) -> None:
    """Waits for a condition (polled, since it is state of the server), within WAIT."""
    async with asyncio.timeout(WAIT):
        while True:
            if await condition():
                return
            await asyncio.sleep(0.05)


def forged(position: object, scope: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([position, scope]).encode()).decode()


def forged_tokens(scope: str) -> list[str]:
    nested = base64.urlsafe_b64encode(("[" * 2000 + "]" * 2000).encode()).decode()
    return [
        forged(2**63, scope),  # one past BIGINT
        forged(10**30, scope),
        forged(True, scope),
        forged(-1, scope),
        forged("1", scope),
        nested,  # deeply nested JSON: a RecursionError in the decoder
        base64.urlsafe_b64encode(json.dumps({"position": 1}).encode()).decode(),
        "%%%not-base64%%%",
        "A" * 100_000,
    ]


async def test_forged_page_tokens_are_invalid_arguments(gpo: Gpo) -> None:
    program = new_program()
    client = gpo.client([program])
    uploaded = await deadline(client.upload(header(program), chunked([payment(i) for i in range(3)], 3)))
    await watch_to_end(client, uploaded.batch.name)
    uid = uploaded.batch.name.split("/")[1]
    operator = gpo.client([], ["operator"])
    calls: list[tuple[str, Callable[[str], Awaitable[Any]]]] = [
        (
            f"payments:{uid}:",
            lambda token: client.stub.ListPayments(
                api_pb.ListPaymentsRequest(parent=uploaded.batch.name, page_token=token),
                metadata=client.metadata,
            ),
        ),
        (
            f"batches:{program}",
            lambda token: client.stub.ListBatches(
                api_pb.ListBatchesRequest(program=program, page_token=token), metadata=client.metadata
            ),
        ),
        (
            'search:reference_id = "ref-00001"',
            lambda token: client.stub.ListPayments(
                api_pb.ListPaymentsRequest(
                    parent="batches/-", filter='reference_id = "ref-00001"', page_token=token
                ),
                metadata=client.metadata,
            ),
        ),
        (
            "dead:",
            lambda token: operator.stub.ListDeadLetters(
                api_pb.ListDeadLettersRequest(page_token=token), metadata=operator.metadata
            ),
        ),
    ]
    for scope, call in calls:
        for token in forged_tokens(scope):
            await expect_error(call(token), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PAGE_TOKEN")
        await deadline(call(forged(1, scope)))  # a well-formed position still pages


LOOK_ALIKES = [
    ("ref-\u202eabc", "rjct.reference_id.invalid"),  # RIGHT-TO-LEFT OVERRIDE
    ("ref-\u200babc", "rjct.reference_id.invalid"),  # ZERO WIDTH SPACE
    ("ref-\ufeffabc", "rjct.reference_id.invalid"),  # ZERO WIDTH NO-BREAK SPACE (BOM)
    ("ref-\u200dabc", "rjct.reference_id.invalid"),  # ZERO WIDTH JOINER: no place in an identifier
]


async def test_invisible_characters_and_look_alike_spellings(gpo: Gpo) -> None:
    program = new_program()
    client = gpo.client([program])
    sent = [
        payment(0, reference_id="ref-abc"),
        *(payment(i + 1, reference_id=ref) for i, (ref, _) in enumerate(LOOK_ALIKES)),
        payment(10, reference_id="caf\u00e9"),  # é composed
        payment(11, reference_id="cafe\u0301"),  # é decomposed: the same reference once in NFC
        payment(12, payee_name="Ali\u202e Reza"),
        payment(13, note="paid\u200b"),
        payment(14, payee_name="\u0645\u062d\u0645\u062f\u200c\u0631\u0636\u0627"),  # Persian, with ZWNJ
        payment(15, payee_name="Jose\u0301"),
    ]
    uploaded = await deadline(client.upload(header(program), chunked(sent, len(sent))))
    reasons = {r.index: r.reason_code for r in uploaded.rejections}
    expected = {i + 1: reason for i, (_, reason) in enumerate(LOOK_ALIKES)}
    expected |= {6: "rjct.reference_id.duplicate", 7: "rjct.payee_name.invalid", 8: "rjct.note.invalid"}
    assert reasons == expected
    await watch_to_end(client, uploaded.batch.name)
    by_number = await all_payments(client, uploaded.batch.name)
    assert [p.reference_id for p in by_number[5:7]] == ["caf\u00e9", "caf\u00e9"]  # both stored in NFC
    assert by_number[5].status != REJECTED and by_number[6].status == REJECTED
    assert by_number[9].payee_name == "\u0645\u062d\u0645\u062f\u200c\u0631\u0636\u0627"  # ZWNJ kept
    assert by_number[10].payee_name == "Jos\u00e9"  # stored in NFC


@pytest.mark.parametrize(
    ("uri", "accepted"),
    [
        ("javascript:alert(1)", False),
        ("file:///etc/passwd", False),
        ("http://example.org/callback", False),
        ("http://127.0.0.1:9/callback", False),  # loopback http only where a deployment allows it
        ("https://", False),
        ("https://example.org/cb\u202e", False),
        ("https://" + "a" * 3000 + ".org/", False),
        ("https://example.org/gpo/callback?x=1", True),
    ],
)
async def test_callback_uris_are_https(gpo: Gpo, uri: str, accepted: bool) -> None:
    program = new_program()
    client = gpo.client([program])
    request = api_pb.UploadBatchRequest(header=header(program, callback_uri=uri))
    if accepted:
        uploaded = await deadline(client.upload(request.header, [[payment(1)]]))
        assert uploaded.batch.callback_uri == uri
        return
    _, violations = await expect_error(
        raw_upload(client, [request]), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_HEADER"
    )
    assert [v.field for v in violations] == ["header.callback_uri"]


async def test_program_names_are_bounded(gpo: Gpo) -> None:
    program = "p" * (9 * 1024 * 1024)
    client = gpo.client(["*"])  # a token naming the program itself would not fit gRPC's metadata
    request = api_pb.UploadBatchRequest(
        header=api_pb.BatchHeader(program=program, request_id=str(uuid.uuid4()), payer_fa=PAYER)
    )
    _, violations = await expect_error(
        raw_upload(client, [request]), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_HEADER"
    )
    assert [v.field for v in violations] == ["header.program"]
    assert "longer than 128" in violations[0].description
    await deadline(anext(client.batches(), None))  # listing still works for all-program callers


def test_short_hs256_secrets_are_refused() -> None:
    with pytest.raises(ValueError, match="shorter than 32 bytes"):
        Authenticator([b"x"])
    Authenticator([b"k" * 32])


async def test_watch_streams_per_caller_are_bounded(gpo: Gpo) -> None:
    program = new_program()
    client = gpo.client([program])
    later = Timestamp()
    later.FromDatetime(dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    pending = payment(1)
    pending.schedule_time.CopyFrom(later)  # keeps the batch unfinished while it is watched
    uploaded = await deadline(client.upload(header(program), [[pending]]))
    limit = gpo.orchestrator.disbursements.watches.per_caller
    streams = [
        client.stub.WatchBatch(api_pb.WatchBatchRequest(name=uploaded.batch.name), metadata=client.metadata)
        for _ in range(limit)
    ]
    try:
        for stream in streams:  # each has answered once: all `limit` are open
            await deadline(stream.read())
        one_more = client.stub.WatchBatch(
            api_pb.WatchBatchRequest(name=uploaded.batch.name), metadata=client.metadata
        )
        await expect_error(one_more.read(), grpc.StatusCode.RESOURCE_EXHAUSTED, "TOO_MANY_STREAMS")
        other = gpo.client([program], subject="someone-else")  # another caller is not held back
        await deadline(anext(other.watch(uploaded.batch.name)))
        streams.pop().cancel()

        async def a_slot_is_free() -> bool:
            return gpo.orchestrator.disbursements.watches.open_for("test") < limit

        await until(a_slot_is_free)
        again = client.stub.WatchBatch(
            api_pb.WatchBatchRequest(name=uploaded.batch.name), metadata=client.metadata
        )
        await deadline(again.read())
        streams.append(again)
    finally:
        for stream in streams:
            stream.cancel()


async def test_payment_pages_end_by_bytes_as_well_as_by_count(gpo: Gpo) -> None:
    program = new_program()
    client = gpo.client([program])
    big = {f"k{i}": "v" * 120 for i in range(32)}  # about 4 KB: the most one payment may carry
    assert sum(len(k) + len(v) for k, v in big.items()) <= MAX_METADATA_TOTAL
    sent = [payment(i, metadata=big) for i in range(3_000)]
    too_big = payment(9_999, reference_id="too-big", metadata={**big, "extra": "v" * 200})
    uploaded = await deadline(client.upload(header(program), chunked([*sent, too_big], 1_000)))
    assert [(r.reference_id, r.reason_code) for r in uploaded.rejections] == [
        ("too-big", "rjct.metadata.invalid")
    ]
    reply_bytes = gpo.orchestrator.disbursements.reply_bytes
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = await deadline(
            client.stub.ListPayments(
                api_pb.ListPaymentsRequest(parent=uploaded.batch.name, page_size=10_000, page_token=token),
                metadata=client.metadata,
            )
        )
        pages += 1
        assert page.ByteSize() <= reply_bytes + 64 * 1024, "a page may pass its byte budget by one payment"
        seen.extend(p.reference_id for p in page.payments)
        if not (token := page.next_page_token):
            break
    assert pages >= 3, "3,000 payments of 4 KB do not fit one 4 MB page"
    assert seen == [p.reference_id for p in [*sent, too_big]], "every payment once, in order"


async def test_streaming_calls_are_refused_with_unauthenticated(gpo: Gpo) -> None:
    """Before the interceptor, a rejected streaming call sometimes ended INTERNAL instead."""
    program = new_program()
    client = gpo.client([program])
    uploaded = await deadline(client.upload(header(program), [[payment(1)]]))
    async with grpc.aio.insecure_channel(gpo.target) as channel:
        stub = api_grpc.DisbursementServiceStub(channel)
        for metadata in ((), (("authorization", "Bearer not-a-jwt"),), (("authorization", "Basic abc"),)):
            for _ in range(20):  # the race showed only sometimes
                upload = stub.UploadBatch(metadata=metadata)
                await expect_error(upload.read(), grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED")
                watch = stub.WatchBatch(api_pb.WatchBatchRequest(name=uploaded.batch.name), metadata=metadata)
                await expect_error(watch.read(), grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED")
                rails = rail_pb2_grpc.RailServiceStub(channel).ReportResults(metadata=metadata)
                await expect_error(rails.read(), grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED")


async def test_embedded_data_files_are_private(tmp_path: Path) -> None:
    """The SQLite database and the simulator's ledger were world-readable (0644)."""
    settings = Settings(data_dir=tmp_path / "data", listen="127.0.0.1:0", auth_hs256_secrets=(b"s" * 32,))
    orchestrator = Orchestrator(settings)
    await orchestrator.start()
    try:
        client = GpoClient(f"127.0.0.1:{orchestrator.port}", mint_token(b"s" * 32, "t", ["p"]))
        uploaded = await deadline(client.upload(header("p"), [[payment(1)]]))
        await watch_to_end(client, uploaded.batch.name)
        await client.close()
    finally:
        await orchestrator.stop(grace_s=2)
    data = tmp_path / "data"
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    files = [p for p in data.iterdir() if p.is_file()]
    assert {p.name for p in files} >= {"gpo.db", "simulator-ledger.db"}
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name


async def test_an_idle_watch_ends_and_the_client_watches_again(gpo: Gpo) -> None:
    program = new_program()
    client = gpo.client([program])
    uploaded = await deadline(client.upload(header(program), [payments(1, 2)]))
    await watch_to_end(client, uploaded.batch.name)
    idle = gpo.client([program])
    later = Timestamp()
    later.FromDatetime(dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    pending = payment(1)
    pending.schedule_time.CopyFrom(later)
    standing = await deadline(client.upload(header(program), [[pending]]))
    gpo.orchestrator.disbursements.watch_idle_s = 0.5
    stream = idle.stub.WatchBatch(api_pb.WatchBatchRequest(name=standing.batch.name), metadata=idle.metadata)
    await deadline(stream.read())  # the first view comes at once
    await expect_error(stream.read(), grpc.StatusCode.DEADLINE_EXCEEDED, "WATCH_IDLE")  # then it ends
    assert gpo.orchestrator.disbursements.watches.open_for("test") == 0  # and frees its slot
    # GpoClient.watch opens an idle watch again by itself, and ends only once the batch is final.
    seen: list[int] = []

    async def follow() -> None:
        async for batch in idle.watch(standing.batch.name):
            seen.append(batch.state)

    following = asyncio.ensure_future(follow())
    await asyncio.sleep(2)  # several idle ends meanwhile
    assert not following.done()
    await client.cancel(standing.batch.name)
    await deadline(following)
    assert seen[-1] == res_pb.BATCH_STATE_CANCELLED
