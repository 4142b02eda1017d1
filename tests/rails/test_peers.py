"""The test peers implement their schemes from the specifications alone (issue 14.5): none imports the
code under test, so a misreading of a scheme in the sidecar cannot be repeated by its peer."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PEERS = Path(__file__).resolve().parents[1] / "peers"


@pytest.mark.parametrize("peer", ["mojaloop_hub.py", "gsma_provider.py", "bank.py", "conformance.py"])
def test_a_peer_imports_nothing_from_the_sidecars(peer: str) -> None:
    tree = ast.parse((PEERS / peer).read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    shared = sorted(name for name in imported if name.split(".")[0] in ("rail_sidecars", "gpo_server"))
    assert shared == [], f"{peer} imports {shared}"
