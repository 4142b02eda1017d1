"""Payment files for `gpo submit`: CSV or JSON lines, checked whole before anything is sent.

The format (README, "Payment files"; an example is examples/payments.csv):

- CSV: a header row, then one payment per row. Required columns: reference_id, payee_fa, amount,
  currency_code. Optional: payer_fa, payee_name, note, purpose, schedule_time (RFC 3339), and
  metadata.KEY columns (one metadata entry per column, empty cells left out).
- JSON lines: one JSON object per line with the same keys; every value a string (amounts are decimal
  strings such as "10.50", never JSON numbers), metadata an object of strings.

`check_file` reads the file once: it must exist, decode (UTF-8 unless an encoding is declared), name
known columns and have well-formed rows. It returns the file's SHA-256 (the default request id is derived
from the content, never the path) and each payment's line number, for reports. `read_payments` reads it
again to send, and refuses to finish if the bytes changed in between.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import difflib
import hashlib
import io
import json
import uuid
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from gpo.v1 import disbursement_service_pb2 as api_pb

REQUIRED = ("reference_id", "payee_fa", "amount", "currency_code")
OPTIONAL = ("payer_fa", "payee_name", "note", "purpose", "schedule_time")
COLUMNS = REQUIRED + OPTIONAL
METADATA_PREFIX = "metadata."
MAX_REPORTED = 20  # bad rows listed one per line; the rest are counted
# Request ids derived from content: UUIDv5 in this namespace of "sha256:<hex>:<encoding>".
REQUEST_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://gpo.dev/cli/submit")
CSV_SUFFIXES = (".csv",)
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")


class FileProblem(Exception):
    """The file cannot be sent at all. `lines` are the one-line reports (path:line: message)."""

    def __init__(self, message: str, lines: list[str] | None = None) -> None:
        super().__init__(message)
        self.lines = lines or []


@dataclass
class CheckedFile:
    path: Path
    format: str  # "csv" or "jsonl"
    encoding: str
    sha256: str
    payments: int
    lines: array[int] = field(default_factory=lambda: array("L"))  # line of payment number i+1
    rows_without_payer: int = 0

    @property
    def request_id(self) -> str:
        return str(uuid.uuid5(REQUEST_ID_NAMESPACE, f"sha256:{self.sha256}:{self.encoding}"))

    def line_of(self, number: int) -> int:
        """The file line of the payment numbered `number` (1-based) in its batch."""
        return self.lines[number - 1] if 0 < number <= len(self.lines) else 0


class _Hashing(io.RawIOBase):
    """A binary file that feeds every byte it hands out into a SHA-256."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.raw.read(len(buffer))
        buffer[: len(data)] = data
        self.digest.update(data)
        return len(data)


def file_format(path: Path, declared: str = "") -> str:
    if declared:
        return declared
    suffix = path.suffix.lower()
    if suffix in CSV_SUFFIXES:
        return "csv"
    if suffix in JSONL_SUFFIXES:
        return "jsonl"
    raise FileProblem(f"{path}: cannot tell the format from the name; pass --format csv or --format jsonl")


def _encoding(name: str) -> str:
    try:
        canonical = codecs.lookup(name or "utf-8").name
    except LookupError:
        raise FileProblem(f"unknown encoding {name!r}") from None
    return "utf-8-sig" if canonical == "utf-8" else canonical  # a UTF-8 byte order mark is skipped


def _open(path: Path) -> IO[bytes]:
    if not path.exists():
        raise FileProblem(f"{path}: no such file")
    if path.is_dir():
        raise FileProblem(f"{path}: is a directory, not a payments file")
    try:
        return path.open("rb")
    except OSError as exc:
        raise FileProblem(f"{path}: cannot be read ({exc.strerror or exc})") from None


def check_file(path: Path, *, declared_format: str = "", encoding: str = "") -> CheckedFile:
    """Reads the whole file once and raises FileProblem unless every row can be sent."""
    _open(path).close()  # missing, a directory or unreadable: said before anything else
    fmt = file_format(path, declared_format)
    enc = _encoding(encoding)
    checked = CheckedFile(path=path, format=fmt, encoding=enc.removesuffix("-sig"), sha256="", payments=0)
    problems: list[str] = []
    bad = 0
    with _open(path) as raw:
        hashing = _Hashing(raw)
        for line, payment, problem in _rows(path, fmt, enc, hashing):
            if problem:
                bad += 1
                if len(problems) < MAX_REPORTED:
                    problems.append(f"{path}:{line}: {problem}")
                continue
            assert payment is not None
            checked.payments += 1
            checked.lines.append(line)
            if not payment.payer_fa:
                checked.rows_without_payer += 1
        checked.sha256 = hashing.digest.hexdigest()
    if bad:
        if bad > len(problems):
            problems.append(f"{path}: {bad - len(problems)} more bad rows not listed")
        raise FileProblem(f"{path}: {bad} bad row{'s' if bad > 1 else ''}; nothing was sent", problems)
    if checked.payments == 0:
        raise FileProblem(f"{path}: has no payments")
    return checked


def read_payments(checked: CheckedFile, skip: int = 0) -> Iterator[api_pb.PaymentInput]:
    """The payments of a checked file, from payment number skip+1. Raises FileProblem at the end if the
    file's bytes are no longer those checked (callers hold the last chunk back until then)."""
    with _open(checked.path) as raw:
        hashing = _Hashing(raw)
        index = 0
        for _line, payment, problem in _rows(
            checked.path, checked.format, _encoding(checked.encoding), hashing
        ):
            if problem or payment is None:
                raise FileProblem(f"{checked.path}: changed since it was checked; nothing more was sent")
            index += 1
            if index > skip:
                yield payment
        if hashing.digest.hexdigest() != checked.sha256 or index != checked.payments:
            raise FileProblem(f"{checked.path}: changed since it was checked; the upload was stopped")


def chunks_checked(checked: CheckedFile, size: int, skip: int = 0) -> Iterator[list[api_pb.PaymentInput]]:
    """Chunks of `size`; the last one is only handed out once the whole file was read again unchanged,
    so a file edited during the upload never completes its batch (the declared count is not reached)."""
    pending: list[api_pb.PaymentInput] | None = None
    chunk: list[api_pb.PaymentInput] = []
    for payment in read_payments(checked, skip):
        if pending is not None:
            yield pending
            pending = None
        chunk.append(payment)
        if len(chunk) == size:
            pending, chunk = chunk, []
    if pending is not None:
        yield pending
    if chunk:
        yield chunk


def _rows(
    path: Path, fmt: str, encoding: str, raw: io.RawIOBase
) -> Iterator[tuple[int, api_pb.PaymentInput | None, str]]:
    text = io.TextIOWrapper(io.BufferedReader(raw), encoding=encoding, newline="")
    rows = _csv_rows(path, text) if fmt == "csv" else _jsonl_rows(text)
    line = 0
    try:
        for line, payment, problem in rows:
            yield line, payment, problem
    except UnicodeDecodeError as exc:
        hint = "; pass --encoding (e.g. --encoding latin-1) if the file is not UTF-8"
        name = encoding.removesuffix("-sig")
        raise FileProblem(
            f"{path}:{_undecodable_line(path, encoding) or line + 1}: not valid {name} ({exc.reason}){hint}"
        ) from None


def _undecodable_line(path: Path, encoding: str) -> int:
    """Text is decoded in blocks, so the error's place is found again line by line."""
    decoder = codecs.getincrementaldecoder(encoding)()
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                decoder.decode(raw)
            except UnicodeDecodeError:
                return number
    return 0


def _unknown(name: str) -> str:
    close = difflib.get_close_matches(name, COLUMNS, n=1)
    return f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else "")


def _csv_rows(path: Path, text: IO[str]) -> Iterator[tuple[int, api_pb.PaymentInput | None, str]]:
    reader = csv.reader(text, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise FileProblem(f"{path}: is empty; the first line must name the columns") from None
    except csv.Error as exc:
        raise FileProblem(f"{path}:1: the header row is not valid CSV ({exc})") from None
    names = [h.strip() for h in header]
    unknown = [n for n in names if n not in COLUMNS and not (n.startswith(METADATA_PREFIX) and len(n) > 9)]
    missing = [n for n in REQUIRED if n not in names]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if unknown or missing or repeated:
        parts = []
        if missing:
            parts.append("missing required column" + ("s " if len(missing) > 1 else " ") + ", ".join(missing))
        if unknown:
            parts.append(
                "unknown column" + ("s " if len(unknown) > 1 else " ") + ", ".join(map(_unknown, unknown))
            )
        if repeated:
            parts.append("repeated column " + ", ".join(repeated))
        raise FileProblem(
            f"{path}:1: {'; '.join(parts)} (columns: {', '.join(REQUIRED)}, optionally "
            f"{', '.join(OPTIONAL)}, metadata.KEY)"
        )
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield reader.line_num, None, f"not valid CSV ({exc})"
            continue
        if not any(cell.strip() for cell in row):
            continue  # a blank line, or one of empty cells as spreadsheets export them
        if len(row) != len(names):
            yield reader.line_num, None, f"{len(row)} fields; the header has {len(names)}"
            continue
        record = dict(zip(names, row, strict=True))
        metadata = {
            k[len(METADATA_PREFIX) :]: v for k, v in record.items() if k.startswith(METADATA_PREFIX) and v
        }
        fields = {k: v for k, v in record.items() if k in COLUMNS and v}
        payment, problem = _payment(fields, metadata)
        yield reader.line_num, payment, problem


def _jsonl_rows(text: IO[str]) -> Iterator[tuple[int, api_pb.PaymentInput | None, str]]:
    for line, raw in enumerate(text, start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except json.JSONDecodeError as exc:
            yield line, None, f"not valid JSON ({exc.msg} at column {exc.colno})"
            continue
        if not isinstance(record, dict):
            yield line, None, "not a JSON object"
            continue
        unknown = [k for k in record if k not in COLUMNS and k != "metadata"]
        if unknown:
            yield (
                line,
                None,
                "unknown key" + ("s " if len(unknown) > 1 else " ") + ", ".join(map(_unknown, unknown)),
            )
            continue
        missing = [k for k in REQUIRED if k not in record]
        if missing:
            yield line, None, "missing " + ", ".join(missing)
            continue
        not_text = [k for k, v in record.items() if k != "metadata" and not isinstance(v, str)]
        if not_text:
            yield (
                line,
                None,
                ("not a string: " + ", ".join(not_text) + ' (amounts are decimal strings such as "10.50")'),
            )
            continue
        metadata = record.get("metadata") or {}
        if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
            yield line, None, "metadata must be an object of strings"
            continue
        fields = {k: v for k, v in record.items() if k != "metadata" and v}
        payment, problem = _payment(fields, metadata)
        yield line, payment, problem


def _payment(fields: dict[str, str], metadata: dict[str, str]) -> tuple[api_pb.PaymentInput | None, str]:
    schedule = fields.pop("schedule_time", "")
    payment = api_pb.PaymentInput(**fields, metadata=metadata)  # type: ignore[arg-type]
    if schedule:
        try:
            when = dt.datetime.fromisoformat(schedule)
        except ValueError:
            return None, f"schedule_time {schedule[:40]!r} is not an RFC 3339 time"
        if when.tzinfo is None:
            return None, f"schedule_time {schedule[:40]!r} has no time zone (add Z or +HH:MM)"
        payment.schedule_time.FromDatetime(when.astimezone(dt.UTC))
    return payment, ""
