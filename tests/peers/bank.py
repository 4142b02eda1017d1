"""A bank for tests: its corporate file channel and its books.

It collects pain.001 files from its inbound folder (written there directly, or over its own SFTP server on
127.0.0.1), checks each against the pain.001.001.09 XSD and its own control totals, executes the credit
transfers into its ledger (once per EndToEndId, ever), and answers in its outbound folder with pain.002
status reports and camt.054 debit notifications, as banks do. Tests can make it reject transfers, answer
late, answer twice, give an interim status first, hold its answers, refuse uploads, and return a paid
transfer later (camt.054 credit with return information, or a pain.002 rejection after the acceptance).

It is written from the standard, not from the sidecar's code: it shares nothing with rail_sidecars.

Conformance: every pain.001 it takes is checked against the pain.001.001.09 XSD, and every pain.002 and
camt.054 it writes against the pain.002.001.11 and camt.054.001.08 XSDs beside it (`report_violations`);
names and remittance texts must be in the SWIFT/EPC Latin character set (`charset_violations`), as banks
enforce. It honours BtchBookg: a block asking for batch booking is booked as one camt.054 entry (Btch,
no transaction details). It can answer ACSP (settlement in process) where others answer ACSC.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncssh
from lxml import etree

from tests.peers.conformance import counted

PAIN001 = "urn:iso:std:iso:20022:tech:xsd:pain.001.001.09"
PAIN002 = "urn:iso:std:iso:20022:tech:xsd:pain.002.001.11"
CAMT054 = "urn:iso:std:iso:20022:tech:xsd:camt.054.001.08"
_N = {"p": PAIN001}


@dataclass(frozen=True)
class Instruction:
    """One CdtTrfTxInf as the bank read it."""

    msg_id: str
    payment_information_id: str
    end_to_end_id: str
    amount: Decimal
    currency: str
    creditor_name: str
    creditor_account: str  # the IBAN or the other identifier
    creditor_agent: str
    remittance: str = ""
    batch_booking: bool = False  # its block's BtchBookg


@dataclass
class LedgerEntry:
    instruction: Instruction
    status: str  # ACSC (paid) or RJCT
    reason: str = ""
    reference: str = ""
    returned: bool = False
    return_reason: str = ""


Rule = Callable[[Instruction], "tuple[str, str] | None"]  # -> (ISO reason code, text) to reject


@dataclass
class Behaviour:
    reject: Rule = lambda _instruction: None
    report_delay_s: float = 0.0
    interim_report: bool = False  # an ACTC report (technically accepted, no outcome) before the final one
    duplicate_reports: bool = False  # every report is written twice, under two names
    list_accepted: bool = True  # False: the final pain.002 lists only rejected transfers (group ACSC/PART)
    debit_notifications: bool = True  # a camt.054 with a booked debit per paid transfer
    hold: bool = False  # take files, execute them, but answer only after release()
    refuse_uploads: int = 0  # SFTP: refuse this many uploads (permission denied) before accepting
    success_status: str = (
        "ACSC"  # what a paid transfer is reported as: ACSC, or ACSP for banks that stop there
    )


@dataclass
class SftpAccess:
    host: str
    port: int
    username: str
    client_private_key: str
    host_public_key: str


class Bank:
    def __init__(self, root: Path, xsd_path: Path, behaviour: Behaviour | None = None, poll_s: float = 0.05):
        self.root = root
        self.inbound = root / "inbound"
        self.outbound = root / "outbound"
        self.archive = root / "archive"
        for d in (self.inbound, self.outbound, self.archive):
            d.mkdir(parents=True, exist_ok=True)
        self.schema = etree.XMLSchema(etree.parse(str(xsd_path)))
        self.report_schemas = {
            PAIN002: etree.XMLSchema(etree.parse(str(xsd_path.parent / "pain.002.001.11.xsd"))),
            CAMT054: etree.XMLSchema(etree.parse(str(xsd_path.parent / "camt.054.001.08.xsd"))),
        }
        self.report_violations: list[str] = []  # reports it wrote that fail their XSD (must stay empty)
        self.charset_violations: list[str] = []  # names or texts received outside the SWIFT Latin set
        self.behaviour = behaviour or Behaviour()
        self.poll_s = poll_s
        self.ledger: dict[str, LedgerEntry] = {}
        # Called with the ledger's size after each file the bank takes, before the next: a test acts at an
        # exact point of a run, however late its own polling would see it (one pass may take many files).
        self.on_executed: Callable[[int], None] | None = None
        self.copies: Counter[str] = Counter()  # MsgId -> copies received
        self.invalid: list[tuple[str, str]] = []  # (file, why) for files refused as a whole
        self.duplicate_transfers: Counter[str] = Counter()  # EndToEndIds that came again in another file
        self.files: list[str] = []  # MsgIds in the order received
        self._held: list[Callable[[], Any]] = []
        self._task: asyncio.Task[None] | None = None
        self._answers: set[asyncio.Task[None]] = set()
        self._sequence = itertools.count(1)
        self._reference = itertools.count(1)
        self._server: asyncssh.SSHAcceptor | None = None
        self.batch_entries = 0  # camt.054 entries booked for a whole block

    # Running.

    async def start(self) -> Bank:
        self._task = asyncio.create_task(self._run())
        return self

    async def stop(self) -> None:
        tasks = [*([self._task] if self._task else []), *self._answers]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def start_sftp(self, username: str = "gpo") -> SftpAccess:
        """An SFTP server on 127.0.0.1 whose root is the bank's folder (inbound/, outbound/)."""
        host_key = asyncssh.generate_private_key("ssh-ed25519")
        client_key = asyncssh.generate_private_key("ssh-ed25519")
        authorized = asyncssh.import_authorized_keys(client_key.export_public_key().decode())
        bank = self

        class _Sftp(asyncssh.SFTPServer):
            def __init__(self, chan: asyncssh.SSHServerChannel[bytes]) -> None:
                super().__init__(chan, chroot=str(bank.root).encode())

            def open(self, path: bytes, pflags: int, attrs: asyncssh.SFTPAttrs) -> object:
                if pflags & asyncssh.FXF_WRITE and bank.behaviour.refuse_uploads > 0:
                    bank.behaviour.refuse_uploads -= 1
                    raise asyncssh.SFTPPermissionDenied("uploads are closed for maintenance")
                return super().open(path, pflags, attrs)

        self._server = await asyncssh.listen(
            "127.0.0.1",
            0,
            server_host_keys=[host_key],
            authorized_client_keys=authorized,
            sftp_factory=_Sftp,
            allow_scp=False,
        )
        port = self._server.sockets[0].getsockname()[1]
        return SftpAccess(
            "127.0.0.1",
            port,
            username,
            client_key.export_private_key().decode(),
            host_key.export_public_key().decode().strip(),
        )

    async def _run(self) -> None:
        while True:
            for name in sorted(os.listdir(self.inbound)):
                if name.startswith(".") or not name.endswith(".xml"):
                    continue  # a temporary name: the upload is not finished
                path = self.inbound / name
                data = path.read_bytes()
                os.replace(path, self.archive / f"{next(self._sequence):06d}-{name}")
                self._take(name, data)
                if self.on_executed is not None:
                    self.on_executed(len(self.ledger))
            await asyncio.sleep(self.poll_s)

    def release(self) -> None:
        """Sends the answers held back by Behaviour.hold."""
        self.behaviour.hold = False
        held, self._held = self._held, []
        for answer in held:
            answer()

    # Taking a file.

    def _take(self, name: str, data: bytes) -> None:
        try:
            document = etree.fromstring(data)
        except etree.XMLSyntaxError as exc:
            self.invalid.append((name, f"not XML: {exc}"))
            return
        msg_id = document.findtext("p:CstmrCdtTrfInitn/p:GrpHdr/p:MsgId", namespaces=_N) or ""
        valid = self.schema.validate(document)
        counted("iso20022 (XSD)", "pain.001.001.09", [] if valid else [str(self.schema.error_log.last_error)])
        if not valid:
            self.invalid.append((name, str(self.schema.error_log.last_error)))
            self._answer(lambda: self._write_group_rejection(msg_id, "FF01", "invalid against the XSD"))
            return
        self.copies[msg_id] += 1
        if self.copies[msg_id] > 1:
            self._answer(lambda: self._write_group_rejection(msg_id, "DU01", "duplicate message id"))
            return
        instructions = self._instructions(document, msg_id)
        for text in [n for i in instructions for n in (i.creditor_name, i.remittance)]:
            if any(c not in SWIFT_LATIN for c in text):
                self.charset_violations.append(f"{msg_id}: {text!r}")
        totals_ok, why = self._check_totals(document, instructions)
        if not totals_ok:
            self.invalid.append((name, why))
            self._answer(lambda: self._write_group_rejection(msg_id, "AM10", why))
            return
        self.files.append(msg_id)
        decided: list[LedgerEntry] = []
        for instruction in instructions:
            if instruction.end_to_end_id in self.ledger:
                # Executed before from another file: refuse the copy, never pay twice.
                self.duplicate_transfers[instruction.end_to_end_id] += 1
                decided.append(LedgerEntry(instruction, "RJCT", "AM05", ""))
                continue
            rejection = self.behaviour.reject(instruction)
            entry = LedgerEntry(
                instruction,
                "RJCT" if rejection else "ACSC",  # the ledger's word for paid; reported as success_status
                rejection[0] if rejection else "",
                f"BNK{next(self._reference):012d}",
            )
            self.ledger[instruction.end_to_end_id] = entry
            decided.append(entry)
        self._answer(lambda: self._write_outcomes(msg_id, len(instructions), decided), interim_for=msg_id)

    def _instructions(self, document: Any, msg_id: str) -> list[Instruction]:
        found = []
        for block in document.iterfind("p:CstmrCdtTrfInitn/p:PmtInf", namespaces=_N):
            block_id = block.findtext("p:PmtInfId", namespaces=_N)
            batch_booking = (block.findtext("p:BtchBookg", namespaces=_N) or "").strip() in ("true", "1")
            for tx in block.iterfind("p:CdtTrfTxInf", namespaces=_N):
                amount = tx.find("p:Amt/p:InstdAmt", namespaces=_N)
                account = tx.findtext("p:CdtrAcct/p:Id/p:IBAN", namespaces=_N) or tx.findtext(
                    "p:CdtrAcct/p:Id/p:Othr/p:Id", namespaces=_N
                )
                agent = tx.findtext("p:CdtrAgt/p:FinInstnId/p:BICFI", namespaces=_N) or tx.findtext(
                    "p:CdtrAgt/p:FinInstnId/p:Othr/p:Id", namespaces=_N
                )
                found.append(
                    Instruction(
                        msg_id=msg_id,
                        payment_information_id=block_id or "",
                        end_to_end_id=tx.findtext("p:PmtId/p:EndToEndId", namespaces=_N) or "",
                        amount=Decimal(amount.text),
                        currency=amount.get("Ccy"),
                        creditor_name=tx.findtext("p:Cdtr/p:Nm", namespaces=_N) or "",
                        creditor_account=account or "",
                        creditor_agent=agent or "",
                        remittance=tx.findtext("p:RmtInf/p:Ustrd", namespaces=_N) or "",
                        batch_booking=batch_booking,
                    )
                )
        return found

    def _check_totals(self, document: Any, instructions: list[Instruction]) -> tuple[bool, str]:
        header = document.find("p:CstmrCdtTrfInitn/p:GrpHdr", namespaces=_N)
        if int(header.findtext("p:NbOfTxs", namespaces=_N)) != len(instructions):
            return False, "NbOfTxs differs from the transactions"
        control = header.findtext("p:CtrlSum", namespaces=_N)
        if control is None or Decimal(control) != sum((i.amount for i in instructions), Decimal(0)):
            return False, "CtrlSum differs from the sum of the amounts"
        for block in document.iterfind("p:CstmrCdtTrfInitn/p:PmtInf", namespaces=_N):
            amounts = [
                Decimal(a.text) for a in block.iterfind("p:CdtTrfTxInf/p:Amt/p:InstdAmt", namespaces=_N)
            ]
            if int(block.findtext("p:NbOfTxs", namespaces=_N) or -1) != len(amounts):
                return False, "a block's NbOfTxs is wrong"
            if Decimal(block.findtext("p:CtrlSum", namespaces=_N) or "-1") != sum(amounts, Decimal(0)):
                return False, "a block's CtrlSum is wrong"
        return True, ""

    # Answering.

    def _answer(self, write: Callable[[], None], interim_for: str = "") -> None:
        async def later() -> None:
            if interim_for and self.behaviour.interim_report:
                self._write_interim(interim_for)
            await asyncio.sleep(self.behaviour.report_delay_s)
            if self.behaviour.hold:
                self._held.append(write)
            else:
                write()

        task = asyncio.create_task(later())
        self._answers.add(task)
        task.add_done_callback(self._answers.discard)

    def _write_outcomes(self, msg_id: str, count: int, entries: list[LedgerEntry]) -> None:
        rejected = [e for e in entries if e.status == "RJCT"]
        paid_status = self.behaviour.success_status
        group = "RJCT" if len(rejected) == len(entries) else "PART" if rejected else paid_status
        listed = entries if self.behaviour.list_accepted else rejected
        self._write_report(msg_id, group, None, listed)
        paid = [e for e in entries if e.status == "ACSC"]
        if paid and self.behaviour.debit_notifications:
            single = [e for e in paid if not e.instruction.batch_booking]
            if single:
                self._write_notification([(e, False) for e in single])
            blocks: dict[str, list[LedgerEntry]] = {}
            for e in paid:
                if e.instruction.batch_booking:
                    blocks.setdefault(e.instruction.payment_information_id, []).append(e)
            for block in blocks.values():
                self._write_batch_notification(block)

    def _write_interim(self, msg_id: str) -> None:
        self._write_report(msg_id, "ACTC", None, [])

    def _write_group_rejection(self, msg_id: str, reason: str, text: str) -> None:
        self._write_report(msg_id, "RJCT", (reason, text), [])

    def return_payment(self, end_to_end_id: str, reason: str = "AC04", via: str = "camt.054") -> None:
        """The payee's bank sends a paid transfer back; the bank tells its customer."""
        entry = self.ledger[end_to_end_id]
        assert entry.status == "ACSC" and not entry.returned, "only a paid transfer can be returned"
        entry.returned, entry.return_reason = True, reason
        if via == "camt.054":
            self._write_notification([(entry, True)])
        else:  # a pain.002 rejecting a transfer reported paid before
            returned = LedgerEntry(entry.instruction, "RJCT", reason, entry.reference)
            self._write_report(entry.instruction.msg_id, "PART", None, [returned])

    def _write_report(
        self, msg_id: str, group: str, group_reason: tuple[str, str] | None, entries: list[LedgerEntry]
    ) -> None:
        number = next(self._sequence)
        root = ET.Element("Document", {"xmlns": PAIN002})
        report = _sub(root, "CstmrPmtStsRpt")
        header = _sub(report, "GrpHdr")
        _sub(header, "MsgId", f"BNKSTS{number:08d}")
        _sub(header, "CreDtTm", _now())
        original = _sub(report, "OrgnlGrpInfAndSts")
        _sub(original, "OrgnlMsgId", msg_id)
        _sub(original, "OrgnlMsgNmId", "pain.001.001.09")
        _sub(original, "GrpSts", group)
        if group_reason:
            _reason(original, *group_reason)
        blocks: dict[str, list[LedgerEntry]] = {}
        for e in entries:
            blocks.setdefault(e.instruction.payment_information_id, []).append(e)
        for block_id, listed in blocks.items():
            block = _sub(report, "OrgnlPmtInfAndSts")
            _sub(block, "OrgnlPmtInfId", block_id)
            for e in listed:
                tx = _sub(block, "TxInfAndSts")
                _sub(tx, "OrgnlEndToEndId", e.instruction.end_to_end_id)
                _sub(tx, "TxSts", self.behaviour.success_status if e.status == "ACSC" else e.status)
                if e.reason:
                    _reason(tx, e.reason, "refused by the bank")
                if e.reference:
                    _sub(tx, "AcctSvcrRef", e.reference)
        self._publish(f"pain002_{number:08d}.xml", root)

    def _write_notification(self, entries: list[tuple[LedgerEntry, bool]]) -> None:
        number = next(self._sequence)
        root, notification = _notification(number)
        for entry, is_return in entries:
            i = entry.instruction
            indicator = "CRDT" if is_return else "DBIT"
            reference = f"BNK{next(self._reference):012d}" if is_return else entry.reference
            ntry = _sub(notification, "Ntry")
            _sub(ntry, "Amt", str(i.amount)).set("Ccy", i.currency)
            _sub(ntry, "CdtDbtInd", indicator)
            _sub(_sub(ntry, "Sts"), "Cd", "BOOK")
            _sub(_sub(ntry, "BookgDt"), "Dt", datetime.now(UTC).date().isoformat())
            _sub(ntry, "AcctSvcrRef", reference)
            domain = _sub(_sub(ntry, "BkTxCd"), "Domn")
            _sub(domain, "Cd", "PMNT")
            family = _sub(domain, "Fmly")
            _sub(family, "Cd", "ICDT")
            _sub(family, "SubFmlyCd", "RRTN" if is_return else "ESCT")
            tx = _sub(_sub(ntry, "NtryDtls"), "TxDtls")
            refs = _sub(tx, "Refs")
            _sub(refs, "MsgId", i.msg_id)
            _sub(refs, "PmtInfId", i.payment_information_id)
            _sub(refs, "EndToEndId", i.end_to_end_id)
            _sub(tx, "Amt", str(i.amount)).set("Ccy", i.currency)
            _sub(tx, "CdtDbtInd", indicator)
            if is_return:
                info = _sub(tx, "RtrInf")
                _sub(_sub(info, "Rsn"), "Cd", entry.return_reason)
                _sub(info, "AddtlInf", "returned by the creditor's bank")
        self._publish(f"camt054_{number:08d}.xml", root)

    def _write_batch_notification(self, entries: list[LedgerEntry]) -> None:
        """One booked debit for a whole block that asked for batch booking: NtryDtls/Btch, no TxDtls."""
        number = next(self._sequence)
        first = entries[0].instruction
        total = sum((e.instruction.amount for e in entries), Decimal(0))
        root, notification = _notification(number)
        ntry = _sub(notification, "Ntry")
        _sub(ntry, "Amt", str(total)).set("Ccy", first.currency)
        _sub(ntry, "CdtDbtInd", "DBIT")
        _sub(_sub(ntry, "Sts"), "Cd", "BOOK")
        _sub(_sub(ntry, "BookgDt"), "Dt", datetime.now(UTC).date().isoformat())
        _sub(ntry, "AcctSvcrRef", f"BNKB{next(self._reference):011d}")
        domain = _sub(_sub(ntry, "BkTxCd"), "Domn")
        _sub(domain, "Cd", "PMNT")
        family = _sub(domain, "Fmly")
        _sub(family, "Cd", "ICDT")
        _sub(family, "SubFmlyCd", "ESCT")
        batch = _sub(_sub(ntry, "NtryDtls"), "Btch")
        _sub(batch, "MsgId", first.msg_id)
        _sub(batch, "PmtInfId", first.payment_information_id)
        _sub(batch, "NbOfTxs", str(len(entries)))
        _sub(batch, "TtlAmt", str(total)).set("Ccy", first.currency)
        _sub(batch, "CdtDbtInd", "DBIT")
        self.batch_entries += 1
        self._publish(f"camt054_{number:08d}.xml", root)

    def _publish(self, name: str, root: ET.Element) -> None:
        data = ET.tostring(root, encoding="utf-8", xml_declaration=True)
        namespace = root.get("xmlns", "")
        schema = self.report_schemas[namespace]
        valid = schema.validate(etree.fromstring(data))
        problem = [] if valid else [f"{name}: {schema.error_log.last_error}"]
        self.report_violations += counted("iso20022 (XSD)", namespace.rsplit(":", 1)[-1], problem)
        copies = [name, name.replace(".xml", "_copy.xml")] if self.behaviour.duplicate_reports else [name]
        for copy in copies:
            temporary = self.outbound / f".{copy}.tmp"
            temporary.write_bytes(data)
            os.replace(temporary, self.outbound / copy)

    # What tests check.

    def paid(self) -> dict[str, LedgerEntry]:
        """Transfers whose money left (and did not come back)."""
        return {k: e for k, e in self.ledger.items() if e.status == "ACSC" and not e.returned}

    def rejected(self) -> dict[str, LedgerEntry]:
        return {k: e for k, e in self.ledger.items() if e.status == "RJCT"}


# The SWIFT "x" character set (also the EPC's SEPA basic Latin set), which banks enforce.
SWIFT_LATIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/-?:().,'+ ")


def _sub(parent: ET.Element, name: str, text: str | None = None) -> ET.Element:
    element = ET.SubElement(parent, name)
    if text is not None:
        element.text = text
    return element


def _notification(number: int) -> tuple[ET.Element, ET.Element]:
    """A camt.054 document and its one Ntfctn, on the payer's account, for entries to be added."""
    root = ET.Element("Document", {"xmlns": CAMT054})
    message = _sub(root, "BkToCstmrDbtCdtNtfctn")
    header = _sub(message, "GrpHdr")
    _sub(header, "MsgId", f"BNKNTF{number:08d}")
    _sub(header, "CreDtTm", _now())
    notification = _sub(message, "Ntfctn")
    _sub(notification, "Id", f"NTF{number:08d}")
    _sub(notification, "CreDtTm", _now())
    _sub(_sub(_sub(notification, "Acct"), "Id"), "IBAN", "DE89370400440532013000")
    return root, notification


def _reason(parent: ET.Element, code: str, text: str) -> None:
    info = _sub(parent, "StsRsnInf")
    _sub(_sub(info, "Rsn"), "Cd", code)
    _sub(info, "AddtlInf", text)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
