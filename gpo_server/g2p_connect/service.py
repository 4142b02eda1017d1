"""G2pConnectService: the G2P Connect disbursement endpoints, behind the REST gateway, as HttpBody RPCs.

Each request goes through the same checks, in this order, each with the spec's code:
bearer token (401 err.request.unauthorized) -> JSON envelope (err.request.bad) -> sender_id configured
(err.sender_id.invalid) -> Signature present where required (err.signature.missing) and valid
(err.signature.invalid) -> encryption (err.encryption.invalid: not supported) -> receiver_id
(err.receiver_id.invalid) -> sender_uri for async calls (err.sender_uri.invalid) -> program allowed for
the token and the sender (403 err.request.forbidden). Then the header (MsgHeaderStatusReasonCode:
rjct.version.invalid, rjct.message_ts.invalid, rjct.action.invalid, rjct.total_count.invalid,
rjct.total_count.limit_exceeded, rjct.message_id.duplicate) and each disbursement (DisburseStatusReasonCode).

A disburse becomes an ordinary GPO batch through the submission service (`gpo_server/submission.py`):
request_id = uuid5(sender_id, transaction_id), so sending a transaction again never pays twice; each
reference_id is a payment. The async answer (ACK) is sent only once the batch and the message record are
committed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import jwt
from google.api import httpbody_pb2  # type: ignore[import-untyped]
from gpo.v1 import disbursement_service_pb2 as api_pb
from gpo.v1 import g2p_connect_service_pb2_grpc as g2p_grpc

from gpo_server.api.audit import audit_event
from gpo_server.api.auth import Authenticator, Caller
from gpo_server.api.errors import ApiError, Context
from gpo_server.domain.cycles import (
    CYCLE_BUDGET_EXCEEDED,
    CYCLE_CLOSED,
    CYCLE_NOT_FOUND,
    CYCLE_REQUIRED,
    cycle_id_problem,
)
from gpo_server.domain.states import FINAL, BatchState, PaymentStatus
from gpo_server.g2p_connect import messages as msg
from gpo_server.g2p_connect import signatures
from gpo_server.g2p_connect.callbacks import ON_SEARCH, ON_STATUS, CallbackWorker, callback_uri, dumps
from gpo_server.g2p_connect.config import G2pSettings, SenderConfig
from gpo_server.g2p_connect.keymanager import KeymanagerClient, KeyServiceUnavailable
from gpo_server.g2p_connect.mapper import MapperClient, MapperUnavailable
from gpo_server.g2p_connect.storage import G2pStore, MessageRecord
from gpo_server.storage.store import BatchRecord, NewBatch, Store
from gpo_server.submission import Refused, Submissions

log = logging.getLogger(__name__)

# Namespace of the batch request_ids made from G2P Connect transaction_ids.
REQUEST_NAMESPACE = uuid.UUID("6b3f1c2e-9d4a-5e7b-8c1f-2a0d4e6b8f10")
SEARCH_LIMIT = 1000
# The draft's action enums for txn/status and sync/disburse are copied from search (see the specs'
# README); the evident intent is accepted beside what the text says, so clients of either kind work.
DISBURSE_ACTIONS = frozenset({"disburse"})
SYNC_DISBURSE_ACTIONS = frozenset({"disburse", "search"})
STATUS_ACTIONS = frozenset(
    {"status", "txn-status", "txn/status", "on-disburse", "on-search", "search", "subscribe"}
)
SEARCH_ACTIONS = frozenset({"search"})


class Refusal(Exception):
    """A request refused before its content is considered: an Error code of the spec."""

    def __init__(self, code: str, message: str, http_status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.http_status = code, message, http_status


@dataclass(frozen=True)
class Reply:
    body: dict[str, Any]
    http_status: int = 200


@dataclass(frozen=True)
class Request:
    raw: bytes
    digest: str
    header: dict[str, Any]
    message: Any
    sender: SenderConfig
    sender_uri: str  # async: validated; sync: as given (may be empty)
    caller_programs: frozenset[str] | None
    caller: Caller | None = None  # who sent it, for the audit trail


class G2pConnectService(g2p_grpc.G2pConnectServiceServicer):
    def __init__(
        self,
        store: Store,
        submissions: Submissions,
        auth: Authenticator,
        settings: G2pSettings,
        callbacks: CallbackWorker,
        mapper: MapperClient,
    ) -> None:
        self.store = store
        self.g2p = G2pStore(store)
        self.submissions = submissions
        self.auth = auth
        self.settings = settings
        self.callbacks = callbacks
        self.mapper = mapper
        self._jwks: dict[str, jwt.PyJWKClient] = {}
        self.keymanager = KeymanagerClient()

    # ---- RPCs ----------------------------------------------------------------------------------

    async def Disburse(self, request: httpbody_pb2.HttpBody, context: Context) -> httpbody_pb2.HttpBody:
        return await self._serve(
            request, context, self._disburse, sync=False, actions=DISBURSE_ACTIONS, kind="disburse"
        )

    async def SyncDisburse(self, request: httpbody_pb2.HttpBody, context: Context) -> httpbody_pb2.HttpBody:
        return await self._serve(
            request, context, self._disburse, sync=True, actions=SYNC_DISBURSE_ACTIONS, kind="disburse"
        )

    async def TxnStatus(self, request: httpbody_pb2.HttpBody, context: Context) -> httpbody_pb2.HttpBody:
        return await self._serve(
            request, context, self._txn_status, sync=False, actions=STATUS_ACTIONS, kind="txn/status"
        )

    async def SyncTxnStatus(self, request: httpbody_pb2.HttpBody, context: Context) -> httpbody_pb2.HttpBody:
        return await self._serve(
            request, context, self._txn_status, sync=True, actions=STATUS_ACTIONS, kind="txn/status"
        )

    async def Search(self, request: httpbody_pb2.HttpBody, context: Context) -> httpbody_pb2.HttpBody:
        return await self._serve(
            request, context, self._search, sync=False, actions=SEARCH_ACTIONS, kind="search"
        )

    async def SyncSearch(self, request: httpbody_pb2.HttpBody, context: Context) -> httpbody_pb2.HttpBody:
        return await self._serve(
            request, context, self._search, sync=True, actions=SEARCH_ACTIONS, kind="search"
        )

    async def GetJwks(self, request: httpbody_pb2.HttpBody, context: Context) -> httpbody_pb2.HttpBody:
        """GPO's public signing keys (public, no token): partners verify GPO's JWS signatures with them."""
        return httpbody_pb2.HttpBody(
            content_type="application/jwk-set+json", data=dumps(self.settings.signer.jwks()).encode()
        )

    async def OnResolve(self, request: httpbody_pb2.HttpBody, context: Context) -> httpbody_pb2.HttpBody:
        """The mapper's answer to an asynchronous resolve. It carries no bearer token (SPAR sends none):
        it is accepted only as the answer to a resolve GPO is waiting for, by its secret transaction_id."""
        try:
            matched = self.mapper.on_resolve(json.loads(bytes(request.data)))
        except ValueError:
            matched = False
        if matched:
            body = msg.ack("ACK", str(uuid.uuid4()))
        else:
            body = msg.ack("ERR", str(uuid.uuid4()), "err.request.bad", "no resolve awaits this answer")
            await context.send_initial_metadata((("x-http-code", "400"),))
        return httpbody_pb2.HttpBody(content_type="application/json", data=dumps(body).encode())

    # ---- common --------------------------------------------------------------------------------

    async def _serve(
        self,
        request: httpbody_pb2.HttpBody,
        context: Context,
        handler: Any,
        *,
        sync: bool,
        actions: frozenset[str],
        kind: str,
    ) -> httpbody_pb2.HttpBody:
        try:
            req = await self._accept(bytes(request.data), context, sync=sync)
            reply: Reply = await handler(req, sync=sync, actions=actions)
        except Refusal as refusal:
            reply = self._refusal_reply(refusal, sync=sync, kind=kind, raw=bytes(request.data))
        except Exception:
            log.exception("G2P Connect: unexpected error")
            reply = self._refusal_reply(
                Refusal("err.service.unavailable", "internal error; the server log has the details", 500),
                sync=sync,
                kind=kind,
                raw=bytes(request.data),
            )
        if reply.http_status != 200:
            await context.send_initial_metadata((("x-http-code", str(reply.http_status)),))
        return httpbody_pb2.HttpBody(content_type="application/json", data=dumps(reply.body).encode())

    async def _accept(self, raw: bytes, context: Context, *, sync: bool) -> Request:
        try:
            caller = self.auth.caller(context)
        except ApiError as exc:
            raise Refusal("err.request.unauthorized", exc.message, 401) from None
        if caller.is_approver:
            raise Refusal(
                "err.request.unauthorized", "an approver's token approves batches; it never pays", 403
            )
        try:
            body = json.loads(raw)
        except ValueError:
            raise Refusal("err.request.bad", "the body is not JSON") from None
        if not isinstance(body, dict) or not isinstance(body.get("header"), dict) or "message" not in body:
            raise Refusal("err.request.bad", "the body must be an object with header and message")
        header: dict[str, Any] = body["header"]
        message_id = header.get("message_id")
        if not isinstance(message_id, str) or not message_id or len(message_id) > 256:
            raise Refusal("err.request.bad", "header.message_id must be a non-empty string")
        sender = self.settings.senders.get(str(header.get("sender_id", "")))
        if sender is None:
            raise Refusal("err.sender_id.invalid", "header.sender_id is not a sender configured in GPO")
        if not sender.may_be(caller.subject):
            raise Refusal("err.sender_id.invalid", "the bearer token may not act as this sender_id", 403)
        await self._verify(raw, _metadata(context, "signature"), sender, sync=sync)
        if header.get("is_msg_encrypted") is True:
            raise Refusal("err.encryption.invalid", "encrypted messages are not supported by GPO")
        receiver = header.get("receiver_id")
        if receiver not in (None, "", self.settings.receiver_id):
            raise Refusal("err.receiver_id.invalid", f"receiver_id must be {self.settings.receiver_id!r}")
        if not isinstance(body["message"], dict):
            raise Refusal("err.request.bad", "message must be an object")
        uri = header.get("sender_uri") or ("" if sync else sender.default_callback_uri)
        if not sync or uri:
            uri = _checked_uri(uri, sender)
        return Request(
            raw,
            # The exact bytes (a replay is the same bytes) and the message's content, whatever its header
            # (a transaction sent again must carry the same content).
            f"{hashlib.sha256(raw).hexdigest()}:{_content_digest(body['message'])}",
            header,
            body["message"],
            sender,
            uri,
            caller.programs,
            caller,
        )

    async def _verify(self, raw: bytes, header: str, sender: SenderConfig, *, sync: bool) -> None:
        status = 401 if sync else 400
        if not header:
            if sender.require_signature:
                raise Refusal("err.signature.missing", "the Signature header is required", status)
            return
        try:
            if sender.signature_scheme == "jws":
                await self._verify_jws(raw, header, sender)
                return
            parsed = signatures.parse(header)
            if parsed.sender_id != sender.sender_id:
                raise signatures.SignatureError("the keyId's sender_id is not the header's sender_id")
            key = await self._sender_key(sender, parsed.unique_key_id)
            signatures.verify(raw, parsed, key, skew_s=self.settings.signature_skew_s)
        except signatures.SignatureError as exc:
            raise Refusal("err.signature.invalid", str(exc), status) from None
        except KeyServiceUnavailable as exc:
            raise Refusal("err.service.unavailable", str(exc), 503) from None

    async def _verify_jws(self, raw: bytes, header: str, sender: SenderConfig) -> None:
        """A detached JWS: verified with the sender's key by kid (configured or JWKS), else through the
        Keymanager-compatible verify endpoint that holds the sender's certificate."""
        parsed = signatures.jws_parse(header)
        if parsed.kid in sender.keys or (sender.jwks_url and not sender.keymanager_verify_url):
            signatures.jws_verify(raw, parsed, await self._sender_key(sender, parsed.kid))
            return
        if not sender.keymanager_verify_url:
            raise signatures.SignatureError(f"no key {parsed.kid!r} is configured for the sender")
        if not await self.keymanager.verify(sender, raw, parsed):
            raise signatures.SignatureError("the key service did not verify the JWS")

    async def _sender_key(self, sender: SenderConfig, key_id: str) -> Any:
        if key_id in sender.keys:
            return sender.keys[key_id]
        if sender.jwks_url:
            client = self._jwks.setdefault(
                sender.sender_id, jwt.PyJWKClient(sender.jwks_url, cache_keys=True)
            )
            try:
                return (await asyncio.to_thread(client.get_signing_key, key_id)).key
            except jwt.PyJWTError as exc:
                raise signatures.SignatureError(f"no key {key_id!r} in the sender's JWKS: {exc}") from None
        raise signatures.SignatureError(f"no key {key_id!r} is configured for the sender")

    def _refusal_reply(self, refusal: Refusal, *, sync: bool, kind: str, raw: bytes) -> Reply:
        """401 and 403 carry the spec's HttpErrorResponse; other refusals an ERR envelope (async) or a
        rjct header and an empty answer of the endpoint's kind (sync, whose replies are header and
        message), with the action of that answer."""
        if refusal.http_status in (401, 403):
            return Reply(msg.http_error(refusal.code, refusal.message), refusal.http_status)
        if not sync:
            return Reply(
                msg.ack("ERR", str(uuid.uuid4()), refusal.code, refusal.message), refusal.http_status
            )
        request_header, message = _loose_envelope(raw)
        header = msg.callback_header(
            _SYNC_ACTIONS[kind],
            "rjct",
            sender_id=self.settings.receiver_id,
            receiver_id="",
            reason_message=f"{refusal.code}: {refusal.message}",
        )
        header.pop("receiver_id")
        if isinstance(request_header.get("sender_id"), str) and request_header["sender_id"]:
            header["receiver_id"] = request_header["sender_id"]
        if _is_id(request_header.get("message_id")):
            header["message_id"] = request_header["message_id"]
        return Reply({"header": header, "message": _empty_answer(kind, message, "")}, refusal.http_status)

    def _program(self, req: Request) -> str:
        meta = req.header.get("meta")
        program = (
            meta.get("program")
            if isinstance(meta, dict) and meta.get("program")
            else req.sender.default_program
        )
        if not isinstance(program, str) or not program:
            raise Refusal(
                "err.request.bad", "no program: set header.meta.program or the sender's default_program"
            )
        allowed = program in req.sender.programs and (
            req.caller_programs is None or program in req.caller_programs
        )
        if not allowed:
            raise Refusal("err.request.forbidden", f"the sender may not pay for program {program!r}", 403)
        return program

    def _header(self, req: Request, action: str, status: str, **extra: Any) -> dict[str, Any]:
        return msg.callback_header(
            action, status, sender_id=self.settings.receiver_id, receiver_id=req.sender.sender_id, **extra
        )

    async def _header_rejection(
        self,
        req: Request,
        rejection: msg.HeaderRejection,
        *,
        sync: bool,
        action: str,
        path: str,
        kind: str,
        existing: MessageRecord | None = None,
    ) -> Reply:
        """A message refused for its header: a rjct header, in the sync reply or in a callback after ACK."""
        header = self._header(
            req,
            _SYNC_ACTIONS[kind] if sync else action,
            "rjct",
            reason_code=rejection.code,
            reason_message=rejection.message,
        )
        # The refusal names the message it refuses (its message_id) and carries the transaction and
        # correlation ids, so the sender can match it.
        header["message_id"] = req.header["message_id"]
        correlation_id = str(uuid.uuid4())
        answer = _empty_answer(kind, req.message, correlation_id)
        if sync:
            return Reply({"header": header, "message": answer})
        callback = [(callback_uri(req.sender_uri, path), dumps({"header": header, "message": answer}))]
        if existing is not None:  # the message_id is taken: the callback hangs off the first message
            await self.g2p.insert_callbacks(existing.id, callback)
        else:
            await self.g2p.insert_message(self._record(req, kind, correlation_id, reported=True), callback)
        self.callbacks.wake()
        return Reply(msg.ack("ACK", correlation_id))

    def _record(self, req: Request, kind: str, correlation_id: str, **values: Any) -> dict[str, Any]:
        transaction_id = req.message.get("transaction_id") if isinstance(req.message, dict) else ""
        return {
            "sender_id": req.sender.sender_id,
            "message_id": req.header["message_id"],
            "body_digest": req.digest,
            "action": kind,
            "correlation_id": correlation_id,
            "transaction_id": transaction_id if isinstance(transaction_id, str) else "",
            "sender_uri": req.sender_uri,
            **values,
        }

    async def _seen(self, req: Request) -> tuple[MessageRecord | None, msg.HeaderRejection | None]:
        """A message_id already received: the same bytes again (a replay) or other bytes (a duplicate)."""
        found = await self.g2p.find_message(req.sender.sender_id, req.header["message_id"])
        if found is None or found.body_digest.split(":")[0] == req.digest.split(":")[0]:
            return found, None
        return found, msg.HeaderRejection(
            "rjct.message_id.duplicate", "message_id was already used for another message"
        )

    # ---- disburse ------------------------------------------------------------------------------

    async def _disburse(self, req: Request, *, sync: bool, actions: frozenset[str]) -> Reply:
        program = self._program(req)
        action = "on-disburse"
        seen, duplicate = await self._seen(req)
        if duplicate is not None:
            return await self._header_rejection(
                req, duplicate, sync=sync, action=action, path="/on-disburse", kind="disburse", existing=seen
            )
        if seen is not None:  # a replay: the same answer, nothing stored twice
            return await self._disburse_reply(req, seen, sync=sync)
        rejection = msg.check_header(req.header, actions, self.settings.max_disbursements)
        items = req.message.get("disbursements")
        if rejection is None and isinstance(items, list) and req.header["total_count"] != len(items):
            rejection = msg.HeaderRejection(
                "rjct.total_count.invalid",
                f"total_count is {req.header['total_count']}; {len(items)} disbursements sent",
            )
        if rejection is None and isinstance(items, list) and len(items) > self.settings.max_disbursements:
            rejection = msg.HeaderRejection(
                "rjct.total_count.limit_exceeded",
                f"at most {self.settings.max_disbursements} disbursements per message",
            )
        if rejection is not None:
            return await self._header_rejection(
                req, rejection, sync=sync, action=action, path="/on-disburse", kind="disburse"
            )
        try:
            parsed = msg.parse_disbursements(
                req.message, default_currency=req.sender.default_currency, id_providers=self._id_providers()
            )
        except ValueError as exc:
            raise Refusal("err.request.bad", str(exc)) from None
        others = await self.g2p.disburse_messages(req.sender.sender_id, transaction_id=parsed.transaction_id)
        content = req.digest.split(":")[-1]
        if any(":" in m.body_digest and m.body_digest.split(":")[-1] != content for m in others):
            raise Refusal(
                "err.request.bad",
                f"transaction_id {parsed.transaction_id!r} was already sent with other content; "
                "a transaction's disbursements cannot change: send them under a new transaction_id",
            )
        if parsed.person_ids:
            await self._resolve(parsed)
        batch = await self._store_batch(req, program, parsed)
        # A transaction sent again under a new message_id is the same batch; its callbacks already go to
        # the first message's sender_uri, so this record asks for none.
        first = not any(m.batch_id == batch.id for m in others)
        record = await self.g2p.insert_message(
            self._record(
                req, "disburse", str(uuid.uuid4()), batch_id=batch.id, reported=not (first and req.sender_uri)
            )
        )
        self.callbacks.wake()
        log.info(
            "G2P Connect disburse %s from %s: batch %s, %d disbursements",
            req.header["message_id"][:64],
            req.sender.sender_id,
            batch.uid,
            len(parsed.payments),
        )
        return await self._disburse_reply(req, record, sync=sync)

    async def _disburse_reply(self, req: Request, record: MessageRecord, *, sync: bool) -> Reply:
        if not sync:
            return Reply(msg.ack("ACK", record.correlation_id))
        rows = await self.g2p.payments([record.batch_id] if record.batch_id is not None else [])
        statuses = [msg.disbursement_status(r._mapping) for r in rows]
        done = sum(1 for r in rows if PaymentStatus(r.status) in FINAL)
        return Reply(
            {
                # The draft's sync/disburse reply says action "on-search" (copied from search; see the
                # specs' README): GPO answers the evident "on-disburse".
                "header": self._header(
                    req, "on-disburse", "succ", total_count=len(rows), completed_count=done
                ),
                "message": {"transaction_id": record.transaction_id, "disbursements_status": statuses},
            }
        )

    def _id_providers(self) -> frozenset[str]:
        return self.settings.mapper.id_providers if self.mapper.enabled else frozenset()

    async def _resolve(self, parsed: msg.ParsedDisbursements) -> None:
        try:
            answers = await self.mapper.resolve(list(parsed.person_ids.values()))
        except MapperUnavailable as exc:
            raise Refusal("err.service.unavailable", str(exc), 503) from None
        for index, person_id in parsed.person_ids.items():
            answer = answers[person_id]
            payment = parsed.payments[index]
            if answer.fa:
                payment.payee_fa = answer.fa
                payment.metadata[msg.META_PAYEE_ID] = person_id
            else:
                parsed.rejections[index] = (
                    "rjct.payee_fa.not_resolved",
                    f"the ID mapper did not resolve the payee: {answer.reason_code} {answer.reason_message}".strip(),
                )

    async def _store_batch(self, req: Request, program: str, parsed: msg.ParsedDisbursements) -> BatchRecord:
        request_id = str(uuid.uuid5(REQUEST_NAMESPACE, f"{req.sender.sender_id}\n{parsed.transaction_id}"))
        new = NewBatch(
            program=program,
            request_id=request_id,
            payer_fa="",
            callback_uri=req.sender_uri,
            schedule_time=None,
            expected_payment_count=0,
            expected_total_hundredths=None,
            cycle=self._cycle(req),
        )
        audit = (
            audit_event(
                req.caller,
                "g2p.disburse",
                request_id=request_id,
                detail={
                    "sender_id": req.sender.sender_id,
                    "message_id": str(req.header.get("message_id", ""))[:256],
                    "transaction_id": parsed.transaction_id[:256],
                    "program": program,
                },
            )
            if req.caller is not None
            else None
        )
        try:
            batch = await self.submissions.open(new, audit=audit)
            if batch.state is BatchState.UPLOADING and batch.last_chunk_sequence == 0 and parsed.payments:
                # Refusals decided here (bad types, unresolved IDs) are stored as they came, with their
                # reasons.
                chunk = api_pb.PaymentChunk(sequence=1, payments=parsed.payments)
                await self.submissions.upload(batch).add(chunk, rejected=parsed.rejections)
            if batch.state is BatchState.UPLOADING:
                finish = await self.submissions.finish(
                    batch,
                    audit=None if audit is None else dataclasses.replace(audit, action="g2p.disburse.upload"),
                )
                batch = finish.batch
        except Refused as refused:
            if refused.reason not in _CYCLE_REASONS:
                raise
            # The program's cycle refuses the disbursement (docs/TREASURY.md): nothing is paid. A batch
            # refused at its end stays held; the same transaction sent again (once the cycle fits it)
            # finishes it. The spec's Error codes have none for a budget, so GPO's code leads the message.
            raise Refusal("err.request.bad", f"{_CYCLE_REASONS[refused.reason]}: {refused.message}") from None
        return batch

    def _cycle(self, req: Request) -> str:
        """The program's cycle the disbursement pays in: header.meta.cycle, "" for none."""
        meta = req.header.get("meta")
        cycle = meta.get("cycle") if isinstance(meta, dict) else None
        if cycle is None or cycle == "":
            return ""
        if not isinstance(cycle, str) or cycle_id_problem(cycle) is not None:
            raise Refusal("err.request.bad", 'header.meta.cycle must be a cycle ID such as "2026-12"')
        return cycle

    # ---- txn/status ----------------------------------------------------------------------------

    async def _txn_status(self, req: Request, *, sync: bool, actions: frozenset[str]) -> Reply:
        seen, duplicate = await self._seen(req)
        path = ON_STATUS
        if duplicate is not None:
            return await self._header_rejection(
                req, duplicate, sync=sync, action="on-disburse", path=path, kind="txn/status", existing=seen
            )
        if seen is not None and not sync:
            return Reply(msg.ack("ACK", seen.correlation_id))
        rejection = msg.check_header(req.header, actions, self.settings.max_disbursements)
        if rejection is not None:
            return await self._header_rejection(
                req, rejection, sync=sync, action="on-disburse", path=path, kind="txn/status"
            )
        query = req.message.get("txnstatus_request")
        transaction_id = req.message.get("transaction_id")
        if not isinstance(query, dict) or not isinstance(transaction_id, str):
            raise Refusal(
                "err.request.bad", "message must be a TxnStatusRequest (transaction_id, txnstatus_request)"
            )
        kind, value = query.get("attribute_type"), query.get("attribute_value")
        sender = req.sender.sender_id
        if query.get("txn_type") != "disburse":
            raise Refusal("err.request.bad", "txnstatus_request.txn_type: GPO answers for 'disburse' only")
        correlation_id = ""
        original_tid = transaction_id
        if kind == "transaction_id" and isinstance(value, str):
            found = await self.g2p.disburse_messages(sender, transaction_id=value)
            rows = await self.g2p.payments(
                sorted({m.batch_id for m in found if m.batch_id is not None}), programs=req.caller_programs
            )
            original_tid = value
            correlation_id = found[0].correlation_id if found else ""
        elif kind == "correlation_id" and isinstance(value, str):
            found = await self.g2p.disburse_messages(sender, correlation_id=value)
            rows = await self.g2p.payments(
                [m.batch_id for m in found if m.batch_id is not None], programs=req.caller_programs
            )
            correlation_id = value if found else ""
            original_tid = found[0].transaction_id if found else transaction_id
        elif (
            kind == "reference_id_list" and isinstance(value, list) and all(isinstance(v, str) for v in value)
        ):
            rows = await self.g2p.payments(
                await self.g2p.sender_batch_ids(sender), reference_ids=value, programs=req.caller_programs
            )
        else:
            raise Refusal("err.request.bad", "txnstatus_request.attribute_type/attribute_value are invalid")
        rows = rows[: self.settings.max_disbursements]
        response = {
            "transaction_id": transaction_id,
            "correlation_id": correlation_id or str(uuid.uuid4()),
            "txnstatus_response": {
                "txn_type": "on-disburse",
                "txn_status": {
                    "transaction_id": original_tid,
                    "disbursements_status": [msg.disbursement_status(r._mapping) for r in rows],
                },
            },
        }
        # The draft's on-status and sync status actions are "on-disburse"/"on-search" and
        # "on-search"/"notify": GPO uses a value the schema allows.
        header = self._header(
            req,
            "on-search" if sync else "on-disburse",
            "succ",
            total_count=len(rows),
            completed_count=len(rows),
        )
        return await self._answer(
            req, {"header": header, "message": response}, sync=sync, path=path, kind="txn/status"
        )

    async def _answer(self, req: Request, body: dict[str, Any], *, sync: bool, path: str, kind: str) -> Reply:
        if sync:
            return Reply(body)
        correlation_id = str(uuid.uuid4())
        callback = [(callback_uri(req.sender_uri, path), dumps(body))]
        record = await self.g2p.insert_message(
            self._record(req, kind, correlation_id, reported=True), callback
        )
        self.callbacks.wake()
        return Reply(msg.ack("ACK", record.correlation_id))

    # ---- search --------------------------------------------------------------------------------

    async def _search(self, req: Request, *, sync: bool, actions: frozenset[str]) -> Reply:
        seen, duplicate = await self._seen(req)
        if duplicate is not None:
            return await self._header_rejection(
                req, duplicate, sync=sync, action="on-search", path=ON_SEARCH, kind="search", existing=seen
            )
        if seen is not None and not sync:
            return Reply(msg.ack("ACK", seen.correlation_id))
        rejection = msg.check_header(req.header, actions, self.settings.max_disbursements)
        criteria = req.message.get("search_criteria")
        transaction_id = req.message.get("transaction_id")
        if rejection is None and isinstance(criteria, list) and req.header["total_count"] != len(criteria):
            rejection = msg.HeaderRejection(
                "rjct.total_count.invalid", "total_count is not the number of search_criteria"
            )
        if rejection is not None:
            return await self._header_rejection(
                req, rejection, sync=sync, action="on-search", path=ON_SEARCH, kind="search"
            )
        if not isinstance(criteria, list) or not isinstance(transaction_id, str):
            raise Refusal(
                "err.request.bad", "message must be a SearchRequest (transaction_id, search_criteria)"
            )
        batch_ids = await self.g2p.sender_batch_ids(req.sender.sender_id)
        records: list[dict[str, Any]] = []
        for criterion in criteria:
            records.extend(await self._search_one(criterion, batch_ids, req.caller_programs))
        header = self._header(
            req, "on-search", "succ", total_count=len(records), completed_count=len(records)
        )
        body = {
            "header": header,
            "message": {"transaction_id": transaction_id, "disbursements_status": records},
        }
        return await self._answer(req, body, sync=sync, path=ON_SEARCH, kind="search")

    async def _search_one(
        self, criterion: Any, batch_ids: Sequence[int], programs: frozenset[str] | None
    ) -> list[dict[str, Any]]:
        """One criterion's records, among the batches of `programs` (the caller's; None: all)."""
        if not isinstance(criterion, dict):
            return []
        ref = criterion.get("reference_id")
        ref = ref if isinstance(ref, str) else ""

        def refused(code: str, text: str) -> list[dict[str, Any]]:
            return [
                {
                    "reference_id": ref,
                    "timestamp": msg.now(),
                    "status": "rjct",
                    "status_reason_code": code,
                    "status_reason_message": text,
                }
            ]

        if criterion.get("request_type") != "disburse":
            return refused("rjct.request_type.invalid", "request_type must be 'disburse'")
        attribute = criterion.get("attribute_type")
        if attribute not in ("payer_fa", "payee_fa"):
            return refused("rjct.attribute_type.invalid", "attribute_type must be payer_fa or payee_fa")
        value = criterion.get("attribute_value")
        if not isinstance(value, str) or not value:
            return refused(f"rjct.srch_{attribute}.invalid", f"attribute_value must be a {attribute}")
        rows = await self.g2p.payments(
            batch_ids, column=str(attribute), value=value, limit=SEARCH_LIMIT + 1, programs=programs
        )
        if len(rows) > SEARCH_LIMIT:
            return refused(
                "rjct.srch.too_many_records_found", f"more than {SEARCH_LIMIT} disbursements match"
            )
        found: list[dict[str, Any]] = []
        for row in rows:
            item = msg.disbursement_status(row._mapping)
            # SearchResponse records carry only these; its reason codes are about the search itself.
            found.append(
                {
                    k: item[k]
                    for k in ("reference_id", "timestamp", "status", "status_reason_message", "locale")
                    if k in item
                }
            )
        return found


_SYNC_ACTIONS = {"disburse": "on-disburse", "txn/status": "on-search", "search": "on-search"}


def _content_digest(message: Any) -> str:
    return hashlib.sha256(
        json.dumps(message, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    ).hexdigest()


def _is_id(value: Any) -> bool:
    """A transaction or message id that can be echoed back unchanged (the spec's ids are <= 99)."""
    return isinstance(value, str) and 0 < len(value) <= 99


def _loose_envelope(raw: bytes) -> tuple[dict[str, Any], Any]:
    """The header and message of a body, as far as it is JSON of that shape; else empty."""
    try:
        body = json.loads(raw)
    except ValueError:
        return {}, {}
    if not isinstance(body, dict):
        return {}, {}
    header = body.get("header")
    return (header if isinstance(header, dict) else {}), body.get("message")


def _empty_answer(kind: str, message: Any, correlation_id: str) -> dict[str, Any]:
    """The endpoint's answer with no records, echoing the request's transaction_id (and GPO's
    correlation_id): what a refusal of the whole message carries."""
    request = message if isinstance(message, dict) else {}
    tid = request.get("transaction_id")
    transaction_id = tid if _is_id(tid) else ""
    answer: dict[str, Any] = {"transaction_id": transaction_id}
    if kind == "txn/status":
        answer["correlation_id"] = correlation_id or str(uuid.uuid4())
        answer["txnstatus_response"] = {
            "txn_type": "on-disburse",
            "txn_status": {"transaction_id": transaction_id, "disbursements_status": []},
        }
        return answer
    if correlation_id:
        answer["correlation_id"] = correlation_id
    answer["disbursements_status"] = []
    return answer


def _checked_uri(uri: Any, sender: SenderConfig) -> str:
    if not isinstance(uri, str) or not uri:
        raise Refusal("err.sender_uri.invalid", "header.sender_uri is required for an async call")
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Refusal("err.sender_uri.invalid", "sender_uri must be an http(s) URI")
    if sender.callback_uri_prefixes and not any(uri.startswith(p) for p in sender.callback_uri_prefixes):
        raise Refusal("err.sender_uri.invalid", "sender_uri is not one registered for this sender")
    return uri


# A cycle's refusal (domain/cycles.py) as the G2P Connect code GPO answers with.
_CYCLE_REASONS = {
    CYCLE_BUDGET_EXCEEDED: "rjct.cycle.budget_exceeded",
    CYCLE_CLOSED: "rjct.cycle.closed",
    CYCLE_NOT_FOUND: "rjct.cycle.invalid",
    CYCLE_REQUIRED: "rjct.cycle.invalid",
}


def _metadata(context: Context, key: str) -> str:
    for k, v in context.invocation_metadata() or ():
        if k == key:
            return str(v)
    return ""
