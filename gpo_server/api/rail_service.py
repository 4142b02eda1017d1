"""RailService: rail sidecars claim work chunks and stream their outcomes back."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from gpo.v1 import rail_pb2, rail_pb2_grpc

from gpo_server.api.auth import SIDECAR_ROLE, Authenticator, permission_denied
from gpo_server.api.convert import batch_uid
from gpo_server.api.errors import ApiError, Context, abort, invalid_argument, not_found
from gpo_server.domain.states import PaymentStatus
from gpo_server.storage.store import ResultUpdate, Store

log = logging.getLogger(__name__)

_OUTCOMES = {
    rail_pb2.RAIL_OUTCOME_SUCCEEDED: PaymentStatus.SUCCEEDED,
    rail_pb2.RAIL_OUTCOME_FAILED: PaymentStatus.FAILED,
}


class RailService(rail_pb2_grpc.RailServiceServicer):  # type: ignore[misc]
    def __init__(self, store: Store, auth: Authenticator) -> None:
        self.store = store
        self.auth = auth
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

    async def ClaimWorkChunk(
        self, request: rail_pb2.ClaimWorkChunkRequest, context: Context
    ) -> rail_pb2.ClaimWorkChunkResponse:
        try:
            self._check_sidecar(context)
            batch_id = await self._batch_id(request.batch)
            numbers = list(request.payment_numbers)
            sent, others = await self.store.claim(batch_id, numbers)
            response = rail_pb2.ClaimWorkChunkResponse()
            for number in numbers:
                if number in sent:
                    action = rail_pb2.CLAIM_ACTION_EXECUTE
                elif others.get(number) is PaymentStatus.SENT:
                    # Claimed before: the rail may have executed it already.
                    action = rail_pb2.CLAIM_ACTION_VERIFY
                else:
                    action = rail_pb2.CLAIM_ACTION_SKIP
                response.decisions.add(payment_number=number, action=action)
            if others:
                log.info(
                    "chunk %s redelivered or cancelled in part: %d of %d not newly claimed",
                    request.chunk_id,
                    len(others),
                    len(numbers),
                )
            return response
        except ApiError as error:
            await abort(context, error)

    async def ReportResults(
        self, request_iterator: AsyncIterator[rail_pb2.ReportResultsRequest], context: Context
    ) -> AsyncIterator[rail_pb2.ReportResultsResponse]:
        try:
            self._check_sidecar(context)
            async for request in request_iterator:
                batch_id = await self._batch_id(request.batch)
                updates = []
                for r in request.results:
                    status = _OUTCOMES.get(r.outcome)
                    if status is None:
                        raise invalid_argument(
                            "every result needs outcome SUCCEEDED or FAILED",
                            "INVALID_OUTCOME",
                            [("results.outcome", f"payment {r.payment_number}: {r.outcome}")],
                        )
                    updates.append(
                        ResultUpdate(
                            r.payment_number,
                            status,
                            r.reason_code[:128],
                            r.reason_message[:1024],
                            r.rail_reference[:256],
                        )
                    )
                applied = await self.store.apply_results(batch_id, updates)
                yield rail_pb2.ReportResultsResponse(chunk_id=request.chunk_id, applied_count=applied)
        except ApiError as error:
            await abort(context, error)
