"""Rail notes (issue 19, item 1): what a rail remembers across attempts, kept by GPO through RailService
(RecordRailNotes, ListRailNotes), on both backends, through the SDK's GrpcRailNotes as a sidecar uses it.

A chunk's notes are one call (one request, one transaction, one audit event); notes are write-once; a
sidecar reads and writes only the notes of the rails its token names.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import grpc
from gpo.v1 import rail_pb2
from gpo.v1 import resources_pb2 as res_pb

from rail_sidecars.sdk.notes import RailNote
from rail_sidecars.sdk.notes_grpc import GrpcRailNotes
from tests.conftest import Gpo, running_gpo
from tests.integration.test_api import deadline, expect_error, header, new_program, payment, watch_to_end
from tests.integration.test_audit import trail
from tests.support.processes import free_port


def _rail() -> str:
    return f"notes{uuid.uuid4().hex[:10]}"


async def test_a_chunk_of_1000_keys_is_recorded_in_one_call_and_read_back(gpo: Gpo) -> None:
    rail = _rail()
    keys = [str(uuid.uuid4()) for _ in range(1000)]
    bulk = str(uuid.uuid4())
    chunk = [
        RailNote(bulk, key, json.dumps({"transfer": i, "fsp": "payeefsp"}).encode())
        for i, key in enumerate(keys)
    ]
    chunk.append(RailNote(bulk, "", b'{"bulk": "body"}'))  # a note about the whole request
    async with grpc.aio.insecure_channel(gpo.target) as channel:
        notes = GrpcRailNotes(channel, rail=rail, token=gpo.token_for_rails([rail]))
        await deadline(notes.record(chunk))

        by_key = await deadline(notes.for_keys(keys[::-1]))
        assert list(by_key) == chunk[:1000]  # in the order recorded, whatever order was asked
        assert list(await deadline(notes.for_tags([bulk]))) == chunk
        assert list(await deadline(notes.for_keys(["never-recorded"]))) == []
        # Pages of 300 give the same notes (ListRailNotes' next_page_token is followed).
        paged = GrpcRailNotes(channel, rail=rail, token=gpo.token_for_rails([rail]), page_size=300)
        assert list(await deadline(paged.for_tags([bulk]))) == chunk

    operator = gpo.client([], ["operator"], subject="ops")
    recorded = [e for e in await trail(operator) if e["action"] == "rail.notes.record"]
    recorded = [e for e in recorded if e["detail"].get("rail") == rail]
    # One call: one event (and one transaction) for the 1,001 notes.
    assert [(e["kind"], e["detail"]) for e in recorded] == [("sidecar", {"rail": rail, "notes": 1001})]


async def test_notes_are_write_once_the_first_body_wins(gpo: Gpo) -> None:
    rail = _rail()
    async with grpc.aio.insecure_channel(gpo.target) as channel:
        token = gpo.token_for_rails([rail])
        notes = GrpcRailNotes(channel, rail=rail, token=token)
        await deadline(notes.record([RailNote("bulk-1", "k1", b"first")]))
        # A replica that crashed after recording records again; another one's different body loses too.
        await deadline(notes.record([RailNote("bulk-1", "k1", b"second"), RailNote("bulk-1", "k2", b"new")]))
        assert list(await deadline(notes.for_keys(["k1", "k2"]))) == [
            RailNote("bulk-1", "k1", b"first"),
            RailNote("bulk-1", "k2", b"new"),
        ]
        # The same key under another tag is another note.
        await deadline(notes.record([RailNote("bulk-2", "k1", b"retry")]))
        assert [n.tag for n in await deadline(notes.for_keys(["k1"]))] == ["bulk-1", "bulk-2"]

        stub_answer = await deadline(
            notes._stub.RecordRailNotes(
                rail_pb2.RecordRailNotesRequest(
                    rail=rail, notes=[rail_pb2.RailNote(tag="bulk-1", idempotency_key="k1", body=b"third")]
                ),
                metadata=(("authorization", f"Bearer {token}"),),
            )
        )
        assert stub_answer.recorded_count == 0


async def test_a_sidecar_reads_and_writes_only_the_notes_of_its_own_rails(gpo: Gpo) -> None:
    rail_a, rail_b = _rail(), _rail()
    async with grpc.aio.insecure_channel(gpo.target) as channel:
        of_b = GrpcRailNotes(channel, rail=rail_b, token=gpo.token_for_rails([rail_b]))
        await deadline(of_b.record([RailNote("bulk-b", "kb", b"b's")]))

        # A token for rail A, asking for rail B's notes: refused, reading and writing.
        a_as_b = GrpcRailNotes(channel, rail=rail_b, token=gpo.token_for_rails([rail_a]))
        await expect_error(a_as_b.for_keys(["kb"]), grpc.StatusCode.PERMISSION_DENIED, "RAIL_FORBIDDEN")
        await expect_error(a_as_b.for_tags(["bulk-b"]), grpc.StatusCode.PERMISSION_DENIED, "RAIL_FORBIDDEN")
        await expect_error(
            a_as_b.record([RailNote("bulk-b", "kb", b"forged")]),
            grpc.StatusCode.PERMISSION_DENIED,
            "RAIL_FORBIDDEN",
        )
        # Rail A's own notes never show B's, even for the same key and tag.
        of_a = GrpcRailNotes(channel, rail=rail_a, token=gpo.token_for_rails([rail_a]))
        assert list(await deadline(of_a.for_keys(["kb"]))) == []
        await deadline(of_a.record([RailNote("bulk-b", "kb", b"a's")]))
        assert list(await deadline(of_a.for_tags(["bulk-b"]))) == [RailNote("bulk-b", "kb", b"a's")]
        assert list(await deadline(of_b.for_tags(["bulk-b"]))) == [RailNote("bulk-b", "kb", b"b's")]

        # Only sidecars: a program's token is refused.
        program = GrpcRailNotes(channel, rail=rail_a, token=gpo.token(["some-program"]))
        await expect_error(program.for_keys(["kb"]), grpc.StatusCode.PERMISSION_DENIED)


async def test_bad_notes_are_refused_with_a_clear_error(gpo: Gpo) -> None:
    rail = _rail()
    metadata = (("authorization", f"Bearer {gpo.token_for_rails([rail])}"),)
    async with grpc.aio.insecure_channel(gpo.target) as channel:
        stub = GrpcRailNotes(channel, rail=rail, token="")._stub
        _, violations = await expect_error(
            stub.RecordRailNotes(
                rail_pb2.RecordRailNotesRequest(rail=rail, notes=[rail_pb2.RailNote(tag="", body=b"x")]),
                metadata=metadata,
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_NOTE",
        )
        assert [v.field for v in violations] == ["notes[0].tag"]
        await expect_error(
            stub.RecordRailNotes(
                rail_pb2.RecordRailNotesRequest(
                    rail=rail, notes=[rail_pb2.RailNote(tag="t", body=b"x" * (1024 * 1024 + 1))]
                ),
                metadata=metadata,
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_NOTE",
        )
        await expect_error(
            stub.ListRailNotes(rail_pb2.ListRailNotesRequest(tags=["t"]), metadata=metadata),
            grpc.StatusCode.INVALID_ARGUMENT,
            "RAIL_MISSING",
        )
        await expect_error(
            stub.ListRailNotes(
                rail_pb2.ListRailNotesRequest(rail=rail, tags=["t"], page_token="forged"), metadata=metadata
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_PAGE_TOKEN",
        )


async def test_embedded_mode_keeps_a_configured_rails_notes_in_its_own_database(tmp_path: Path) -> None:
    """Embedded mode builds a configured rail with notes kept by the in-process server: a Mojaloop batch
    leaves its key map in the embedded database, not in a file of the rail's."""
    from tests.peers.mojaloop_hub import MojaloopHub
    from tests.rails.test_mojaloop import PAYER_FSP, specs

    hub = MojaloopHub(spec=specs(), payee_fsps={"payeefsp1"}).start()
    port = free_port()
    hub.register(PAYER_FSP, f"http://127.0.0.1:{port}")
    config = tmp_path / "rails.toml"
    config.write_text(
        '[rails.ml]\nkind = "mojaloop"\nroutes = ["mobile:*@payeefsp1"]\ntimeout_s = 30\n[rails.ml.options]\n'
        f'base_url = "{hub.base_url}"\npayer_fsp = "{PAYER_FSP}"\ncallback_port = {port}\n'
        "callback_timeout_s = 1.5\n"
    )
    try:
        async with running_gpo("embedded", tmp_path, rails_config=str(config)) as gpo:
            program = new_program()
            client = gpo.client([program])
            sent = [payment(i, payee_fa=f"mobile:2547{i:08d}@payeefsp1") for i in range(1, 21)]
            uploaded = await deadline(client.upload(header(program), [sent]))
            done = await watch_to_end(client, uploaded.batch.name)
            assert done.state == res_pb.BATCH_STATE_COMPLETED
            keys = [p.idempotency_key async for p in client.payments(uploaded.batch.name)]
            async with grpc.aio.insecure_channel(gpo.target) as channel:
                notes = GrpcRailNotes(channel, rail="ml", token=gpo.token_for_rails(["ml"]))
                recorded = await deadline(notes.for_keys(keys))
    finally:
        hub.stop()
    assert {n.idempotency_key for n in recorded} == set(keys)  # each key's bulk, noted before the POST
    assert set(hub.snapshot()) == set(keys) and all(t.executions == 1 for t in hub.snapshot().values())
