"""Every string field has a documented maximum length, and GPO refuses a longer value (issue 12, item 5).

At 6605833 two 9 MB program names were accepted and logged in full, after which ListBatches failed for
every all-programs caller. The bounds live in one table (gpo_server/api/bounds.py, MAX_CHARS); these tests
check that every string field of every message in protos/gpo/v1 documents a maximum ("At most N
characters"), that the documented maximum of every request field is the table's, that every string field
reachable from a request is in the table, and, against a running server on both backends, that one
character past each bound is refused: INVALID_ARGUMENT with FIELD_TOO_LONG naming the field, or, for a
payment's own fields, that payment REJECTED with its reason code while a payment at every bound passes.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.api import httpbody_pb2  # type: ignore[import-untyped]
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from gpo.v1 import disbursement_service_pb2 as api_pb
from grpc_status import rpc_status

from gpo_kernel.reasons import Reason
from gpo_server.api import bounds
from gpo_server.client import chunked
from tests.conftest import Gpo
from tests.integration.test_api import REJECTED, deadline, header, new_program

PROTOS = Path(__file__).resolve().parents[2] / "protos" / "gpo" / "v1"
_MESSAGE = re.compile(r"^message (\w+) \{")
_STRING_FIELD = re.compile(r"^\s*(?:repeated )?(?:string|map<string, string>) (\w+) = \d+;")
_BOUND = re.compile(r"At most (?:\d+ entries and )?(\d+) characters")


def documented_bounds() -> dict[str, int | None]:
    """Every string field of protos/gpo/v1 by full name, with the maximum its comment gives (None: none)."""
    found: dict[str, int | None] = {}
    for path in sorted(PROTOS.glob("*.proto")):
        message, comment = "", []
        for line in path.read_text().splitlines():
            stripped = line.strip()
            if m := _MESSAGE.match(line):
                message = m.group(1)
            if stripped.startswith("//"):
                comment.append(stripped)
                continue
            if m := _STRING_FIELD.match(line):
                bound = _BOUND.search(" ".join(comment))
                found[f"gpo.v1.{message}.{m.group(1)}"] = int(bound.group(1)) if bound else None
            comment = []
        if path.name == "g2p_connect_service.proto":  # HttpBody is Google's message: its bound is here
            bound = re.search(r"HttpBody\.content_type: at most (\d+) characters", path.read_text())
            found["google.api.HttpBody.content_type"] = int(bound.group(1)) if bound else None
    return found


def test_every_string_field_documents_its_maximum() -> None:
    documented = documented_bounds()
    assert len(documented) > 100
    assert [name for name, bound in documented.items() if bound is None] == []


def test_every_request_string_field_is_bounded_in_the_table_as_documented() -> None:
    documented = documented_bounds()
    reachable = set(bounds.request_string_fields())
    assert reachable == set(bounds.MAX_CHARS), "bounds.MAX_CHARS must name exactly the request fields"
    assert {name: documented.get(name) for name in bounds.MAX_CHARS} == dict(bounds.MAX_CHARS)


# ---- refused on a running server ------------------------------------------------------------------


def _path_to(
    message: Descriptor, target: str, seen: frozenset[str] = frozenset()
) -> list[FieldDescriptor] | None:
    """The message fields leading from `message` to the message named `target`."""
    if message.full_name == target:
        return []
    for field in message.fields:
        inner = field.message_type
        if inner is None or inner.GetOptions().map_entry or inner.full_name in seen:
            continue
        if (rest := _path_to(inner, target, seen | {message.full_name})) is not None:
            return [field, *rest]
    return None


def _method_reaching(target: str) -> tuple[MethodDescriptor, list[FieldDescriptor]]:
    for file in bounds.SERVICE_FILES:
        for service in file.services_by_name.values():
            for method in service.methods:
                if (path := _path_to(method.input_type, target)) is not None:
                    return method, path
    raise AssertionError(f"no method takes {target}")


def _request_with(name: str, length: int) -> tuple[MethodDescriptor, Message, str]:
    """A request of the method that carries field `name`, that field `length` characters long, and the
    path a violation names."""
    owner, _, field_name = name.rpartition(".")
    method, path = _method_reaching(owner)
    request: Message = _message_class(method.input_type)()
    where, node = "", request
    for field in path:
        if field.is_repeated:
            node = getattr(node, field.name).add()
            where += f"{field.name}[0]."
        else:
            node = getattr(node, field.name)
            where += f"{field.name}."
        node.SetInParent()
    if node.DESCRIPTOR.fields_by_name[field_name].is_repeated:  # e.g. ListRailNotesRequest.tags
        getattr(node, field_name).append("x" * length)
        return method, request, f"{where}{field_name}[0]"
    setattr(node, field_name, "x" * length)
    return method, request, where + field_name


def _message_class(descriptor: Descriptor) -> type[Message]:
    from google.protobuf import message_factory

    return message_factory.GetMessageClass(descriptor)


async def _call(channel: grpc.aio.Channel, method: MethodDescriptor, request: Message, token: str) -> Any:
    path = f"/{method.containing_service.full_name}/{method.name}"
    reply_class = _message_class(method.output_type)
    options: dict[str, Any] = {
        "request_serializer": type(request).SerializeToString,
        "response_deserializer": reply_class.FromString,
    }
    metadata = (("authorization", f"Bearer {token}"),)
    if method.client_streaming:

        async def one() -> AsyncIterator[Message]:
            yield request

        call = channel.stream_stream(path, **options)(one(), metadata=metadata)
        return [reply async for reply in call]
    if method.server_streaming:
        return [reply async for reply in channel.unary_stream(path, **options)(request, metadata=metadata)]
    return await channel.unary_unary(path, **options)(request, metadata=metadata)


def _refusal(error: grpc.aio.AioRpcError) -> tuple[str, list[str], list[str]]:
    """The ErrorInfo reason, and the fields and descriptions of the BadRequest violations."""
    status = rpc_status.from_call(error)
    reason, fields, descriptions = "", [], []
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields = [v.field for v in bad.field_violations]
            descriptions = [f"{v.field}: {v.description}" for v in bad.field_violations]
    return reason, fields, descriptions


async def test_one_character_past_any_request_bound_is_refused_naming_the_field(gpo: Gpo) -> None:
    program_token = gpo.token([new_program()])
    sidecar_token = gpo.token_for_rails([gpo.rail])
    problems = []
    async with grpc.aio.insecure_channel(gpo.target) as channel:
        for name, most in bounds.MAX_CHARS.items():
            if name.startswith(bounds.PER_PAYMENT + "."):
                continue  # rejected payment by payment: the next test
            for length in (most, most + 1):
                method, request, where = _request_with(name, length)
                too_long = bounds.reason_for(name)  # FIELD_TOO_LONG, or the handler's own reason
                descriptions: list[str] = []
                fields: list[str]
                token = sidecar_token if method.containing_service.name == "RailService" else program_token
                try:
                    await deadline(_call(channel, method, request, token))
                    reason, fields = "", []
                except grpc.aio.AioRpcError as error:
                    reason, fields, descriptions = _refusal(error)
                    if reason == too_long and error.code() != grpc.StatusCode.INVALID_ARGUMENT:
                        problems.append(f"{name}: {too_long} as {error.code().name}")
                if length > most and (reason, fields[:1]) != (too_long, [where]):
                    problems.append(f"{name}: {length} characters answered {reason or 'OK'} {fields}")
                if length == most and any(d.startswith(f"{where}: longer than") for d in descriptions):
                    problems.append(f"{name}: {length} characters, its maximum, refused as too long")
    assert problems == []


def _fa(length: int) -> str:
    """A well-formed address of `length` characters (identifiers stop at 200: the provider grows)."""
    return "mobile:" + "1" * 200 + "@" + "p" * (length - len("mobile:@") - 200)


def _at(most: int, fill: str = "a") -> str:
    return fill * most


PAST_THE_BOUND: dict[str, tuple[dict[str, Any], Reason]] = {
    "reference_id": ({"reference_id": "r" * 129}, Reason.REFERENCE_ID_INVALID),
    "payer_fa": ({"payer_fa": _fa(256)}, Reason.PAYER_FA_INVALID),
    "payee_fa": ({"payee_fa": _fa(256)}, Reason.PAYEE_FA_INVALID),
    "amount": ({"amount": "1" * 14 + ".00"}, Reason.AMOUNT_INVALID),
    "currency_code": ({"currency_code": "KESX"}, Reason.CURRENCY_CODE_INVALID),
    "payee_name": ({"payee_name": "a" * 256}, Reason.PAYEE_NAME_INVALID),
    "note": ({"note": "a" * 1025}, Reason.NOTE_INVALID),
    "purpose": ({"purpose": "a" * 129}, Reason.PURPOSE_INVALID),
    # Each entry within its 1,024, together past the payment's 4,096.
    "metadata": ({"metadata": {f"k{i}": "v" * 1000 for i in range(5)}}, Reason.METADATA_INVALID),
}


async def test_a_payment_field_one_character_past_its_bound_rejects_that_payment(gpo: Gpo) -> None:
    per_payment = {n.rpartition(".")[2] for n in bounds.MAX_CHARS if n.startswith(bounds.PER_PAYMENT + ".")}
    assert set(PAST_THE_BOUND) == per_payment  # a new payment field needs a case here
    base = {"payee_fa": "mobile:254700000001@mpesa", "amount": "10.00", "currency_code": "KES"}
    at_every_bound = api_pb.PaymentInput(
        reference_id="b" * 128,
        payer_fa=_fa(255),
        payee_fa=_fa(255),
        amount="1234567890123.45",
        currency_code="KES",
        payee_name=_at(255),
        note=_at(1024),
        purpose=_at(128),
        metadata={f"k{i}": "v" * 1022 for i in range(4)},  # 4 entries of 1,024: 4,096 in all
    )
    assert len(at_every_bound.amount) == 16
    sent = [at_every_bound]
    for i, (fields, _) in enumerate(PAST_THE_BOUND.values()):
        sent.append(api_pb.PaymentInput(**{**base, "reference_id": f"past-{i}", **fields}))
    program = new_program()
    client = gpo.client([program])
    uploaded = await deadline(client.upload(header(program), chunked(sent, len(sent))))
    reasons = {r.index: r.reason_code for r in uploaded.rejections}
    assert 0 not in reasons, f"the payment at every bound was rejected: {uploaded.rejections[:1]}"
    expected = {i + 1: str(reason) for i, (_, reason) in enumerate(PAST_THE_BOUND.values())}
    assert reasons == expected
    stored = [p async for p in client.payments(uploaded.batch.name)]
    assert [p.status == REJECTED for p in stored] == [False] + [True] * len(PAST_THE_BOUND)


async def test_a_long_content_type_on_g2p_connect_is_refused(gpo: Gpo) -> None:
    # HttpBody comes from the gateway; a forged one straight to the gRPC port is bounded all the same.
    async with grpc.aio.insecure_channel(gpo.target) as channel:
        disburse = channel.unary_unary(
            "/gpo.v1.G2pConnectService/Disburse",
            request_serializer=httpbody_pb2.HttpBody.SerializeToString,
            response_deserializer=httpbody_pb2.HttpBody.FromString,
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await deadline(disburse(httpbody_pb2.HttpBody(content_type="x" * 256, data=b"{}")))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _refusal(caught.value)[:2] == ("FIELD_TOO_LONG", ["content_type"])


def test_the_bound_check_costs_nothing_per_payment() -> None:
    # A chunk's payments are checked by intake, not walked again by the interceptor.
    chunk = api_pb.UploadBatchRequest(
        chunk=api_pb.PaymentChunk(sequence=1, payments=[api_pb.PaymentInput(reference_id="r" * 500)])
    )
    assert bounds.violations(chunk) == []
    assert bounds.violations(api_pb.UploadBatchRequest(header=api_pb.BatchHeader(program="p" * 129))) == [
        ("header.program", "longer than 128 characters")
    ]
    assert len(str(uuid.uuid4())) <= bounds.MAX_REQUEST_ID  # a UUID request id fits
