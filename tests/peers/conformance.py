"""What the test peers validated against the official schemas, counted per scheme and kind of message.

Each peer calls `counted(scheme, kind, problems)` for every message it checks (requests it receives,
callbacks and responses it sends, files it reads or writes); tests/rails/conftest.py prints the totals at
the end of the run, so a run shows how many messages on the wire were checked and how many were off.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence

VALIDATED: Counter[tuple[str, str]] = Counter()  # (scheme, kind) -> messages checked
INVALID: Counter[tuple[str, str]] = Counter()  # (scheme, kind) -> messages with a problem
_lock = threading.Lock()


def counted(scheme: str, kind: str, problems: Sequence[str]) -> Sequence[str]:
    with _lock:
        VALIDATED[(scheme, kind)] += 1
        if problems:
            INVALID[(scheme, kind)] += 1
    return problems


def summary() -> list[str]:
    with _lock:
        schemes = sorted({s for s, _ in VALIDATED})
        lines = []
        for scheme in schemes:
            kinds = sorted(k for s, k in VALIDATED if s == scheme)
            total = sum(VALIDATED[(scheme, k)] for k in kinds)
            bad = sum(INVALID[(scheme, k)] for k in kinds)
            detail = ", ".join(f"{k} {VALIDATED[(scheme, k)]}" for k in kinds)
            lines.append(f"{scheme}: {total} messages validated, {bad} invalid ({detail})")
        return lines
