"""Structured logs: one JSON object per line, with financial addresses masked as a last line of defence.

Code should never log an account number in the first place (log batch ids and counts, or mask_fa);
the redaction here catches what slips through, in the message and in the exception text.
"""

from __future__ import annotations

import json
import logging
import re
import sys

from gpo_kernel.masking import mask_fa

# scheme:identifier@provider, as the API takes them; identifiers of 5+ characters are masked.
_FA = re.compile(r"\b[a-z][a-z0-9_-]{0,31}:[A-Za-z0-9._+-]{5,200}@[A-Za-z0-9][A-Za-z0-9._-]{0,120}")


def redact(text: str) -> str:
    return _FA.sub(lambda m: mask_fa(m.group(0)), text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


def configure(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aio-pika and aiormq log every reconnect attempt at INFO; warnings are what an operator needs.
    for noisy in ("aio_pika", "aiormq"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
