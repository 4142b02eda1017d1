"""Prints how many messages the rail tests' peers validated against the official schemas."""

from __future__ import annotations

from typing import Any

from tests.peers.conformance import summary


def pytest_terminal_summary(terminalreporter: Any) -> None:
    lines = summary()
    if lines:
        terminalreporter.section("messages validated against the official schemas")
        for line in lines:
            terminalreporter.write_line(line)
