from __future__ import annotations

import json
import logging

from gpo_kernel.logs import JsonFormatter, redact


def test_redact_masks_every_financial_address_in_text() -> None:
    text = "paid mobile:254700123456@mpesa and account:0011223344@bank-a.ifsc for batch 7"
    out = redact(text)
    assert "254700123456" not in out and "0011223344" not in out
    assert "mobile:***3456@mpesa" in out and "account:***3344@bank-a.ifsc" in out
    assert out.endswith("for batch 7")


def test_json_formatter_emits_one_json_object_with_redacted_message_and_exception() -> None:
    record = logging.LogRecord(
        "gpo", logging.ERROR, __file__, 1, 'payee "%s" failed', ("mobile:254711111111@mpesa",), None
    )
    try:
        raise ValueError("bad account:99887766554433@bank-b")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    entry = json.loads(JsonFormatter().format(record))
    assert entry["level"] == "ERROR" and entry["logger"] == "gpo"
    assert entry["message"] == 'payee "mobile:***1111@mpesa" failed'
    assert "99887766554433" not in entry["exception"] and "account:***4433@bank-b" in entry["exception"]
