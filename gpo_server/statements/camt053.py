"""End-of-day account statements, ISO 20022 camt.053.001.08, checked against the official XSD first."""

from __future__ import annotations

import datetime as dt
from functools import cache
from pathlib import Path

from lxml import etree

from gpo_server.statements.records import EntryRecord, ParsedStatement, StatementInvalid, hundredths

NAMESPACE = "urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"
XSD_NAME = "camt.053.001.08.xsd"
_N = {"c": NAMESPACE}


def xsd_path(specs_dir: Path) -> Path:
    """Where the official schema lies under the specs folder (GPO_SPECS_DIR)."""
    return specs_dir / "iso20022" / XSD_NAME


@cache
def _schema(path: Path) -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(path), _parser()))


def _parser() -> etree.XMLParser:
    # No entities, no DTDs, no network: a statement comes from outside.
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


def parse(data: bytes, xsd: Path) -> list[ParsedStatement]:
    """Every statement (Stmt) of a camt.053.001.08 document. Raises StatementInvalid."""
    if not xsd.is_file():
        raise FileNotFoundError(f"the camt.053 schema {xsd} is missing (GPO_SPECS_DIR)")
    try:
        tree = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        raise StatementInvalid(f"camt.053: not well-formed XML: {exc}") from None
    if tree.getroottree().docinfo.doctype:
        raise StatementInvalid("camt.053: a document type declaration is not accepted")
    if etree.QName(tree).namespace != NAMESPACE:
        raise StatementInvalid(
            f"camt.053: the document's namespace is {etree.QName(tree).namespace!r}, not {NAMESPACE}"
        )
    schema = _schema(xsd)
    if not schema.validate(tree):
        problems = "; ".join(f"line {e.line}: {e.message}" for e in list(schema.error_log)[:5])
        raise StatementInvalid(f"camt.053: fails the camt.053.001.08 schema: {problems}")
    return [_statement(s) for s in tree.iterfind("c:BkToCstmrStmt/c:Stmt", _N)]


def _statement(stmt: etree._Element) -> ParsedStatement:
    statement_id = _text(stmt, "c:Id")
    account = _text(stmt, "c:Acct/c:Id/c:IBAN") or _text(stmt, "c:Acct/c:Id/c:Othr/c:Id")
    created = _text(stmt, "c:CreDtTm")
    entries = tuple(
        _entry(statement_id, number, n) for number, n in enumerate(stmt.iterfind("c:Ntry", _N), 1)
    )
    return ParsedStatement(
        format="camt.053",
        statement_id=statement_id,
        account=account,
        created=dt.datetime.fromisoformat(created) if created else None,
        entries=entries,
    )


def _entry(statement_id: str, number: int, ntry: etree._Element) -> EntryRecord:
    where = f"statement {statement_id} entry {number}"
    amount = ntry.find("c:Amt", _N)
    assert amount is not None  # the schema requires it
    credit = _text(ntry, "c:CdtDbtInd") == "CRDT"
    reversal = _text(ntry, "c:RvslInd") in ("true", "1")
    booking = _text(ntry, "c:BookgDt/c:Dt") or _text(ntry, "c:BookgDt/c:DtTm")[:10]
    details = ntry.findall("c:NtryDtls/c:TxDtls", _N)
    batch = ntry.find("c:NtryDtls/c:Btch", _N)
    returns = [d.find("c:RtrInf", _N) for d in details if d.find("c:RtrInf", _N) is not None]
    reason = ""
    if returns:
        first = returns[0]
        code = _text(first, "c:Rsn/c:Cd") or _text(first, "c:Rsn/c:Prtry")
        reason = " ".join(x for x in (code, *(i.text or "" for i in first.iterfind("c:AddtlInf", _N))) if x)
    count = _text(batch, "c:NbOfTxs") if batch is not None else ""
    return EntryRecord(
        number=number,
        amount_hundredths=hundredths(amount.text or "", where),
        currency=amount.get("Ccy", ""),
        credit=credit,
        booked=_text(ntry, "c:Sts/c:Cd") == "BOOK",
        booking_date=dt.date.fromisoformat(booking) if booking else None,
        end_to_end_ids=tuple(
            e for d in details if (e := _text(d, "c:Refs/c:EndToEndId")) and e != "NOTPROVIDED"
        ),
        servicer_reference=_text(ntry, "c:AcctSvcrRef"),
        batch_reference=(_text(batch, "c:PmtInfId") if batch is not None else "")
        or (_text(details[0], "c:Refs/c:PmtInfId") if len(details) > 1 else ""),
        batch_count=int(count) if count else 0,
        # Money back on the account for a debit: a return (RtrInf) or a reversal of a debit booking.
        returned=credit and (bool(returns) or reversal),
        return_reason=reason[:200],
    )


def _text(element: etree._Element | None, path: str) -> str:
    if element is None:
        return ""
    found = element.find(path, _N)
    return (found.text or "").strip() if found is not None else ""
