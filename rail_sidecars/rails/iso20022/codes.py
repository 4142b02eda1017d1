"""ISO 20022 status and reason codes, and how they map to GPO outcomes and G2P-Connect-style reason codes.

Statuses are ExternalPaymentGroupStatus1Code / ExternalPaymentTransactionStatus1Code values; reasons are
ExternalStatusReason1Code (pain.002) and ExternalReturnReason1Code (camt.054) values.
"""

from __future__ import annotations

# Final positive statuses by default. ACCP (customer profile accepted), ACTC (technical validation passed),
# ACSP (settlement in process) and ACWC (accepted with change) say nothing about money having moved.
DEFAULT_SUCCESS_STATUSES: frozenset[str] = frozenset({"ACSC", "ACCC"})
REJECTED = "RJCT"
# Group status: some transactions accepted, some rejected; only the listed ones are decided.
PARTIAL = "PART"

# Reasons that say "this copy is a duplicate": they describe the copy, not the payment, so they never
# decide an outcome (the original file or transaction is what counts).
DUPLICATE_REASONS: frozenset[str] = frozenset({"DU01", "DU02", "DU03", "DU04", "DU05", "AM05"})

_RAIL_ERROR = "rjct.rail.error"

# ISO reason -> (GPO reason code, short description).
REASONS: dict[str, tuple[str, str]] = {
    "AC01": ("rjct.payee_fa.invalid", "incorrect account number"),
    "AC02": ("rjct.payer_fa.invalid", "invalid debtor account number"),
    "AC03": ("rjct.payee_fa.invalid", "invalid creditor account number"),
    "AC04": ("rjct.payee_fa.invalid", "closed account number"),
    "AC05": ("rjct.payer_fa.invalid", "closed debtor account number"),
    "AC06": ("rjct.payee_fa.blocked", "blocked account"),
    "AC07": ("rjct.payee_fa.invalid", "closed creditor account number"),
    "AG01": ("rjct.payee_fa.blocked", "transaction forbidden on this account"),
    "AG02": (_RAIL_ERROR, "invalid bank operation code"),
    "AM01": ("rjct.amount.invalid", "zero amount"),
    "AM02": ("rjct.amount.limit_exceeded", "amount not allowed"),
    "AM03": ("rjct.currency_code.invalid", "currency not allowed"),
    "AM04": ("rjct.payer.insufficient_funds", "insufficient funds"),
    "AM09": ("rjct.amount.invalid", "wrong amount"),
    "AM10": ("rjct.amount.invalid", "invalid control sum"),
    "AM12": ("rjct.amount.invalid", "invalid amount"),
    "AM14": ("rjct.amount.limit_exceeded", "amount exceeds the agreed limit"),
    "BE01": ("rjct.payee_fa.invalid", "inconsistent with end customer"),
    "BE04": ("rjct.payee_fa.invalid", "missing creditor address"),
    "BE05": (_RAIL_ERROR, "unrecognised initiating party"),
    "CNOR": ("rjct.payee_fa.invalid", "creditor bank is not registered"),
    "CUST": (_RAIL_ERROR, "requested by customer"),
    "FF01": (_RAIL_ERROR, "invalid file format"),
    "FOCR": (_RAIL_ERROR, "returned following a cancellation request"),
    "MD07": ("rjct.payee_fa.invalid", "end customer deceased"),
    "MS02": (_RAIL_ERROR, "reason not specified (customer)"),
    "MS03": (_RAIL_ERROR, "reason not specified (agent)"),
    "NARR": (_RAIL_ERROR, "see narrative"),
    "RC01": ("rjct.payee_fa.invalid", "bank identifier incorrect"),
    "RR01": ("rjct.payer_fa.invalid", "missing debtor account or identification"),
    "RR02": ("rjct.payer_fa.invalid", "missing debtor name or address"),
    "RR03": ("rjct.payee_name.invalid", "missing creditor name or address"),
    "RR04": (_RAIL_ERROR, "regulatory reason"),
}


def reason(iso_code: str, additional: str = "") -> tuple[str, str]:
    """(GPO reason code, message) for an ISO reason code; unknown codes map to rjct.rail.error."""
    code, text = REASONS.get(iso_code, (_RAIL_ERROR, "reason not mapped"))
    label = f"{iso_code} {text}" if iso_code else text
    message = f"{label}: {additional}" if additional else label
    return code, message[:1000]
