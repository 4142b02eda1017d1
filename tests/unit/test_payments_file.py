"""Payment files for `gpo submit` (gpo_server/payments_file.py): what is accepted, what is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpo_server.payments_file import FileProblem, check_file, read_payments

HEADER = "reference_id,payee_fa,amount,currency_code"


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_spreadsheet_exports_are_read_as_meant(tmp_path: Path) -> None:
    # A byte order mark, CRLF line ends, a quoted comma, metadata columns and trailing empty rows.
    text = (
        f"{HEADER},payee_name,schedule_time,metadata.district\r\n"
        'r1,mobile:1@m,10.50,KES,"Otieno, Amina",2026-06-30T09:00:00Z,Kisumu\r\n'
        "r2,mobile:2@m,3.00,KES,,,\r\n"
        ",,,,,,\r\n"
        "\r\n"
    )
    path = write(tmp_path, "export.csv", "\ufeff".encode() + text.encode())
    checked = check_file(path)
    assert checked.payments == 2 and list(checked.lines) == [2, 3]
    first, second = read_payments(checked)
    assert first.payee_name == "Otieno, Amina" and first.amount == "10.50"
    assert dict(first.metadata) == {"district": "Kisumu"} and not second.metadata
    assert first.schedule_time.ToJsonString() == "2026-06-30T09:00:00Z"
    assert not second.HasField("schedule_time")


def test_the_request_id_follows_the_content_not_the_name(tmp_path: Path) -> None:
    body = f"{HEADER}\nr1,mobile:1@m,1.00,KES\n".encode()
    a = check_file(write(tmp_path, "a.csv", body))
    b = check_file(write(tmp_path, "b.csv", body))
    c = check_file(write(tmp_path, "c.csv", body.replace(b"1.00", b"1.01")))
    assert a.request_id == b.request_id != c.request_id


@pytest.mark.parametrize(
    ("name", "data", "words"),
    [
        ("a.csv", f"{HEADER}\nr1,mobile:1@m,1.00,KES,2026-06-30\n".encode(), "5 fields"),
        (
            "a.csv",
            f"{HEADER},schedule_time\nr1,mobile:1@m,1.00,KES,2026-06-30T09:00\n".encode(),
            "no time zone",
        ),
        (
            "a.jsonl",
            b'{"reference_id": "r1", "payee_fa": "m:1@m", "amount": 1.5, "currency_code": "KES"}\n',
            "not a string",
        ),
        (
            "a.jsonl",
            b'{"reference_id": "r1", "payee": "m:1@m", "amount": "1.50", "currency_code": "KES"}\n',
            "unknown key 'payee'",
        ),
        ("a.jsonl", b'["r1"]\n', "not a JSON object"),
        ("a.txt", f"{HEADER}\nr1,mobile:1@m,1.00,KES\n".encode(), "--format"),
        ("a.csv", b"reference_id,payee_fa,amount,currency_code,amount\n", "repeated column amount"),
    ],
)
def test_refused_with_the_reason(tmp_path: Path, name: str, data: bytes, words: str) -> None:
    with pytest.raises(FileProblem) as caught:
        check_file(write(tmp_path, name, data))
    assert words in " ".join([str(caught.value), *caught.value.lines])


def test_the_undecodable_line_is_named_and_an_encoding_can_be_declared(tmp_path: Path) -> None:
    names = ["Amina"] * 2999
    names[2500] = "Jos\xe9"  # payment 2501, on line 2502: Latin-1, not UTF-8
    rows = "".join(f"r{i},mobile:{i}@m,1.00,KES,{name}\n" for i, name in enumerate(names, start=1))
    path = write(tmp_path, "latin.csv", f"{HEADER},payee_name\n{rows}".encode("latin-1"))
    with pytest.raises(FileProblem, match=r"latin\.csv:2502: not valid utf-8"):
        check_file(path)  # the exact line, though text is decoded in blocks
    checked = check_file(path, encoding="latin-1")
    assert checked.payments == 2999
    assert list(read_payments(checked))[2500].payee_name == "Jos\xe9"
    with pytest.raises(FileProblem, match="unknown encoding"):
        check_file(path, encoding="klingon")
