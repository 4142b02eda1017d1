"""RailService: rail sidecars claim work chunks and stream their outcomes back."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from gpo.v1 import rail_pb2, rail_pb2_grpc

from gpo_server.api.auth import SIDECAR_ROLE, Authenticator, permission_denied
from gpo_server.api.convert import batch_uid
from gpo_server.api.errors import (
    ApiError,
    Context,
    abort,
    abort_internal,
    handles_errors,
    invalid_argument,
    not_found,
)
from gpo_server.domain.states import PaymentStatus
from gpo_server.storage.store import ResultUpdate, Store

log = logging.getLogger(__name__)

# Rail outcome -> (payment status, whether a failure is definite).
_OUTCOMES = {
    rail_pb2.RAIL_OUTCOME_SUCCEEDED: (PaymentStatus.SUCCEEDED, True),
    rail_pb2.RAIL_OUTCOME_FAILED: (PaymentStatus.FAILED, True),
    rail_pb2.RAIL_OUTCOME_UNREACHABLE: (PaymentStatus.FAILED, False),
    rail_pb2.RAIL_OUTCOME_REVERSED: (PaymentStatus.REVERSED, True),
}


class RailService(rail_pb2_grpc.RailServiceServicer):  # type: ignore[misc]
    def __init__(
        self, store: Store, auth: Authenticator, *, lease_s: float = 300, max_sweeps: int = 3
    ) -> None:
        self.store = store
        self.auth = auth
        self.lease_s = lease_s
        self.max_sweeps = max_sweeps
        self._batch_ids: dict[str, int] = {}

    def _check_sidecar(self, context: Context) -> None:
        if SIDECAR_ROLE not in self.auth.caller(context).roles:
            raise permission_denied("only rail sidecars may call RailService", "NOT_A_SIDECAR")

    async def _batch_id(self, name: str) -> int:
        uid = batch_uid(name, "batch")
        if uid not in self._batch_ids:
            batch = await self.store.get_batch(uid)
            if batch is None:
                raise not_found("batch", name)
            if len(self._batch_ids) > 10_000:
                self._batch_ids.clear()
            self._batch_ids[uid] = batch.id
        return self._batch_ids[uid]

    @handles_errors
    async def ClaimWorkChunk(
        self, request: rail_pb2.ClaimWorkChunkRequest, context: Context
    ) -> rail_pb2.ClaimWorkChunkResponse:
        self._check_sidecar(context)
        if not request.claim_id:
            raise invalid_argument("claim_id is required", "CLAIM_ID_MISSING", [("claim_id", "empty")])
        batch_id = await self._batch_id(request.batch)
        numbers = list(request.payment_numbers)
        claim = await self.store.claim(batch_id, numbers, request.claim_id, self.lease_s)
        response = rail_pb2.ClaimWorkChunkResponse()
        response.lease_expire_time.FromDatetime(claim.lease_expire_time)
        response.retry_after.FromTimedelta(claim.retry_after)
        for number in numbers:
            if number in claim.execute:
                action = rail_pb2.CLAIM_ACTION_EXECUTE
            elif number in claim.verify:
                # Claimed before and no longer held: the rail may have executed it already.
                action = rail_pb2.CLAIM_ACTION_VERIFY
            elif number in claim.busy:
                action = rail_pb2.CLAIM_ACTION_BUSY
            else:
                action = rail_pb2.CLAIM_ACTION_SKIP
            response.decisions.add(payment_number=number, action=action)
        if len(claim.execute) < len(numbers):
            log.info(
                "chunk %s by %s: %d execute, %d verify, %d busy, %d skip",
                request.chunk_id,
                request.sidecar,
                len(claim.execute),
                len(claim.verify),
                len(claim.busy),
                len(numbers) - len(claim.execute) - len(claim.verify) - len(claim.busy),
            )
        return response

    async def ReportResults(
        self, request_iterator: AsyncIterator[rail_pb2.ReportResultsRequest], context: Context
    ) -> AsyncIterator[rail_pb2.ReportResultsResponse]:
        try:
            self._check_sidecar(context)
            async for request in request_iterator:
                batch_id = await self._batch_id(request.batch)
                updates = [_result_update(r) for r in request.results]
                applied = await self.store.apply_results(
                    batch_id,
                    updates,
                    owner=request.claim_id,
                    released=list(request.released_payment_numbers),
                    unknown=list(request.unknown_payment_numbers),
                    max_sweeps=self.max_sweeps,
                )
                yield rail_pb2.ReportResultsResponse(chunk_id=request.chunk_id, applied_count=applied)
        except ApiError as error:
            await abort(context, error)
        except Exception:
            await abort_internal(context)


def _result_update(r: rail_pb2.PaymentResult) -> ResultUpdate:
    outcome = _OUTCOMES.get(r.outcome)
    if outcome is None:
        raise invalid_argument(
            "every result needs outcome SUCCEEDED, FAILED, UNREACHABLE or REVERSED",
            "INVALID_OUTCOME",
            [("results.outcome", f"payment {r.payment_number}: {r.outcome}")],
        )
    status, definite = outcome
    code = r.reason_code or (
        "rjct.rail.unreachable" if r.outcome == rail_pb2.RAIL_OUTCOME_UNREACHABLE else ""
    )
    return ResultUpdate(
        r.payment_number,
        status,
        code[:128],
        r.reason_message[:1024],
        r.rail_reference[:256],
        definite if status is PaymentStatus.FAILED else None,
    )
