"""Parsers for what the bank sends back: pain.002 payment status reports and camt.054 debit/credit
notifications. Elements are matched by local name, so any version of either message (pain.002.001.03 to
.001.12, camt.054.001.02 to .001.11) parses; a file that is neither is reported as such.

The parsers only read; what a status means for a payment is decided in rail.py with codes.py.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field


class ReportError(ValueError):
    """The file is not well-formed XML, or not a message this rail reads."""


@dataclass(frozen=True, slots=True)
class StatusReason:
    code: str  # ExternalStatusReason1Code, e.g. AC04; empty for a proprietary reason
    text: str  # AddtlInf (joined) or the proprietary reason


@dataclass(frozen=True, slots=True)
class TransactionStatus:
    end_to_end_id: str
    status: str  # ExternalPaymentTransactionStatus1Code, e.g. ACSC, RJCT; "" inherits the block's
    reasons: tuple[StatusReason, ...] = ()
    reference: str = ""  # the bank's reference: AcctSvcrRef, else StsId


@dataclass(frozen=True, slots=True)
class PaymentInformationStatus:
    payment_information_id: str
    status: str  # "" when the block carries none
    reasons: tuple[StatusReason, ...] = ()
    transactions: tuple[TransactionStatus, ...] = ()


@dataclass(frozen=True, slots=True)
class StatusReport:
    """pain.002: the status of one original pain.001 message."""

    msg_id: str
    original_msg_id: str
    group_status: str  # "" when the report carries statuses per block or per transaction only
    group_reasons: tuple[StatusReason, ...] = ()
    payment_information: tuple[PaymentInformationStatus, ...] = ()

    def transactions(self) -> Iterator[tuple[TransactionStatus, PaymentInformationStatus]]:
        for block in self.payment_information:
            for tx in block.transactions:
                yield tx, block


@dataclass(frozen=True, slots=True)
class EntryTransaction:
    """One transaction of a camt.054 entry, with what the debtor needs to match it."""

    end_to_end_id: str
    amount: str  # exact decimal text as written by the bank
    currency: str
    credit: bool  # CRDT: money came in (e.g. a return); DBIT: money went out
    booked: bool  # entry status BOOK
    reversal: bool  # the entry reverses an earlier one (RvslInd)
    returned: bool  # carries return information, or a returned-transfer bank transaction code
    return_reason: StatusReason | None
    reference: str


@dataclass(frozen=True, slots=True)
class BatchEntry:
    """A camt.054 entry booked for a whole payment information block (the pain.001 asked for batch
    booking): NtryDtls/Btch names the block, with no transaction details."""

    msg_id: str  # Btch/MsgId, "" when the bank leaves it out
    payment_information_id: str
    transactions: int | None  # Btch/NbOfTxs
    amount: str  # Btch/TtlAmt, else the entry's Amt: exact decimal text
    currency: str
    credit: bool
    booked: bool
    reversal: bool
    reference: str


@dataclass(frozen=True, slots=True)
class Notification:
    """camt.054: booked (or pending) entries on the debtor's account."""

    msg_id: str
    transactions: tuple[EntryTransaction, ...] = field(default_factory=tuple)
    batches: tuple[BatchEntry, ...] = field(default_factory=tuple)


# Bank transaction sub-families of returned credit transfers (ISO external code set, family ICDT).
_RETURN_SUBFAMILIES = frozenset({"RRTN", "RPCR", "ARET"})


def parse(data: bytes) -> StatusReport | Notification:
    """Raises ReportError for anything that is not a readable pain.002 or camt.054."""
    if b"<!DOCTYPE" in data[:4096] or b"<!ENTITY" in data:
        raise ReportError("document type declarations are refused")
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise ReportError(f"not well-formed XML: {exc}") from exc
    message = root[0] if _local(root.tag) == "Document" and len(root) else root
    kind = _local(message.tag)
    if kind == "CstmrPmtStsRpt":
        return _status_report(message)
    if kind == "BkToCstmrDbtCdtNtfctn":
        return _notification(message)
    raise ReportError(f"{kind} is neither a pain.002 CstmrPmtStsRpt nor a camt.054 BkToCstmrDbtCdtNtfctn")


def _status_report(message: ET.Element) -> StatusReport:
    original = _child(message, "OrgnlGrpInfAndSts")
    if original is None:
        raise ReportError("pain.002 without OrgnlGrpInfAndSts")
    original_msg_id = _text(original, "OrgnlMsgId")
    if not original_msg_id:
        raise ReportError("pain.002 without OrgnlMsgId")
    blocks = []
    for block in _children(message, "OrgnlPmtInfAndSts"):
        transactions = tuple(
            TransactionStatus(
                end_to_end_id=_text(tx, "OrgnlEndToEndId"),
                status=_text(tx, "TxSts"),
                reasons=_reasons(tx),
                reference=_text(tx, "AcctSvcrRef") or _text(tx, "StsId"),
            )
            for tx in _children(block, "TxInfAndSts")
            if _text(tx, "OrgnlEndToEndId")
        )
        blocks.append(
            PaymentInformationStatus(
                payment_information_id=_text(block, "OrgnlPmtInfId"),
                status=_text(block, "PmtInfSts"),
                reasons=_reasons(block),
                transactions=transactions,
            )
        )
    return StatusReport(
        msg_id=_text(_child(message, "GrpHdr"), "MsgId"),
        original_msg_id=original_msg_id,
        group_status=_text(original, "GrpSts"),
        group_reasons=_reasons(original),
        payment_information=tuple(blocks),
    )


def _notification(message: ET.Element) -> Notification:
    transactions: list[EntryTransaction] = []
    batches: list[BatchEntry] = []
    for notification in _children(message, "Ntfctn"):
        for entry in _children(notification, "Ntry"):
            entry_amount = _child(entry, "Amt")
            credit = _text(entry, "CdtDbtInd") == "CRDT"
            reversal = _text(entry, "RvslInd").lower() in ("true", "1")
            status = _child(entry, "Sts")
            # Sts is <Sts><Cd>BOOK</Cd></Sts> from camt.054.001.08 on, plain text before.
            status_code = _text(status, "Cd") if status is not None and len(status) else _text(entry, "Sts")
            entry_returned = _subfamily(entry) in _RETURN_SUBFAMILIES
            details = [tx for d in _children(entry, "NtryDtls") for tx in _children(d, "TxDtls")]
            named = [
                tx for tx in details if _text(_child(tx, "Refs"), "EndToEndId") not in ("", "NOTPROVIDED")
            ]
            for batch in (b for d in _children(entry, "NtryDtls") for b in _children(d, "Btch")):
                if named or not _text(batch, "PmtInfId"):
                    continue  # transactions listed one by one decide; a batch must name its block
                total = _first_present(_child(batch, "TtlAmt"), entry_amount)
                count = _text(batch, "NbOfTxs")
                indicator = _text(batch, "CdtDbtInd")
                batches.append(
                    BatchEntry(
                        msg_id=_text(batch, "MsgId"),
                        payment_information_id=_text(batch, "PmtInfId"),
                        transactions=int(count) if count.isascii() and count.isdigit() else None,
                        amount=(total.text or "").strip() if total is not None else "",
                        currency=total.get("Ccy", "") if total is not None else "",
                        credit=(indicator == "CRDT") if indicator else credit,
                        booked=status_code == "BOOK",
                        reversal=reversal,
                        reference=_text(entry, "AcctSvcrRef"),
                    )
                )
            for tx in details:
                end_to_end_id = _text(_child(tx, "Refs"), "EndToEndId")
                if not end_to_end_id or end_to_end_id == "NOTPROVIDED":
                    continue
                amount = _first_present(
                    _first(tx, ("AmtDtls", "TxAmt", "Amt")), _child(tx, "Amt"), entry_amount
                )
                return_info = _child(tx, "RtrInf")
                tx_indicator = _text(tx, "CdtDbtInd")
                transactions.append(
                    EntryTransaction(
                        end_to_end_id=end_to_end_id,
                        amount=(amount.text or "").strip() if amount is not None else "",
                        currency=amount.get("Ccy", "") if amount is not None else "",
                        credit=(tx_indicator == "CRDT") if tx_indicator else credit,
                        booked=status_code == "BOOK",
                        reversal=reversal,
                        returned=return_info is not None
                        or entry_returned
                        or _subfamily(tx) in _RETURN_SUBFAMILIES,
                        return_reason=_return_reason(return_info),
                        reference=_text(_child(tx, "Refs"), "AcctSvcrRef") or _text(entry, "AcctSvcrRef"),
                    )
                )
    return Notification(
        msg_id=_text(_child(message, "GrpHdr"), "MsgId"),
        transactions=tuple(transactions),
        batches=tuple(batches),
    )


def _reasons(parent: ET.Element) -> tuple[StatusReason, ...]:
    reasons = []
    for info in _children(parent, "StsRsnInf"):
        why = _child(info, "Rsn")
        code = _text(why, "Cd")
        text = " ".join(t for t in (_text(why, "Prtry"), *(_all_text(info, "AddtlInf"))) if t)
        reasons.append(StatusReason(code, text))
    return tuple(reasons)


def _return_reason(info: ET.Element | None) -> StatusReason | None:
    if info is None:
        return None
    why = _child(info, "Rsn")
    return StatusReason(
        _text(why, "Cd"), " ".join(t for t in (_text(why, "Prtry"), *_all_text(info, "AddtlInf")) if t)
    )


def _subfamily(parent: ET.Element) -> str:
    family = _first(parent, ("BkTxCd", "Domn", "Fmly"))
    return _text(family, "SubFmlyCd")


def _first_present(*elements: ET.Element | None) -> ET.Element | None:
    # Not `or`: an element without children is falsy.
    return next((e for e in elements if e is not None), None)


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _children(parent: ET.Element | None, name: str) -> list[ET.Element]:
    if parent is None:
        return []
    return [c for c in parent if _local(c.tag) == name]


def _child(parent: ET.Element | None, name: str) -> ET.Element | None:
    found = _children(parent, name)
    return found[0] if found else None


def _first(parent: ET.Element | None, path: tuple[str, ...]) -> ET.Element | None:
    node = parent
    for name in path:
        node = _child(node, name)
    return node


def _text(parent: ET.Element | None, name: str) -> str:
    node = _child(parent, name)
    return (node.text or "").strip() if node is not None else ""


def _all_text(parent: ET.Element, name: str) -> list[str]:
    return [(c.text or "").strip() for c in _children(parent, name) if (c.text or "").strip()]
