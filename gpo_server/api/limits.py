"""Per-caller limits on long-lived calls, so one caller cannot take every stream the server can serve."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator

import grpc

from gpo_server.api.errors import ApiError


class StreamLimit:
    """At most `per_caller` streams of one kind open at once for one caller (the token's subject)."""

    def __init__(self, what: str, per_caller: int) -> None:
        self.what = what
        self.per_caller = per_caller
        self._open: Counter[str] = Counter()

    @contextlib.contextmanager
    def held(self, caller: str) -> Iterator[None]:
        if self._open[caller] >= self.per_caller:
            raise ApiError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"this caller has {self._open[caller]} {self.what} streams open already, the most allowed: "
                "close one first",
                "TOO_MANY_STREAMS",
            )
        self._open[caller] += 1
        try:
            yield
        finally:
            self._open[caller] -= 1
            if not self._open[caller]:
                del self._open[caller]

    def open_for(self, caller: str) -> int:
        return self._open[caller]
