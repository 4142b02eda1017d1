"""Reason codes, from G2P Connect's DisburseStatusReasonCode where the spec has one; shared by the
orchestrator and the sidecars, since rails report them."""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    REFERENCE_ID_INVALID = "rjct.reference_id.invalid"
    REFERENCE_ID_DUPLICATE = "rjct.reference_id.duplicate"
    AMOUNT_INVALID = "rjct.amount.invalid"
    CURRENCY_CODE_INVALID = "rjct.currency_code.invalid"
    PAYER_FA_INVALID = "rjct.payer_fa.invalid"
    PAYEE_FA_INVALID = "rjct.payee_fa.invalid"
    PAYEE_NAME_INVALID = "rjct.payee_name.invalid"
    SCHEDULED_TIMESTAMP_INVALID = "rjct.scheduled_timestamp.invalid"
    # Not in the G2P Connect draft: GPO's own codes keep the spec's "rjct.<field>.<problem>" shape.
    NOTE_INVALID = "rjct.note.invalid"
    PURPOSE_INVALID = "rjct.purpose.invalid"
    METADATA_INVALID = "rjct.metadata.invalid"
    PAYEE_FA_UNROUTABLE = "rjct.payee_fa.unroutable"
    # The beneficiary was already paid, or is being paid, in the batch's cycle (issue 17, item 2).
    BENEFICIARY_DUPLICATE = "rjct.beneficiary.duplicate"
    # Rail outcomes.
    RAIL_INSUFFICIENT_FUNDS = "rjct.payer.insufficient_funds"
    RAIL_ACCOUNT_INVALID = "rjct.payee_fa.invalid"
    RAIL_LIMIT_EXCEEDED = "rjct.amount.limit_exceeded"
    RAIL_ERROR = "rjct.rail.error"
    # The rail could not be reached or did not answer in time: the sidecar reports UNREACHABLE, and GPO
    # stores this code when the sidecar gives none.
    RAIL_UNREACHABLE = "rjct.rail.unreachable"
