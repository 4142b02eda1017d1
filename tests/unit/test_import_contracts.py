"""The import contracts of pyproject.toml (one direction of dependencies, issue 11): they hold on the tree,
and they fail on a copy of it with one wrong-way import added."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("gpo_kernel", "gpo_server", "rail_sidecars", "gpo_conformance")
LINT_IMPORTS = str(Path(sys.executable).with_name("lint-imports"))


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    # The tree's own packages come first on the path, ahead of the installed (editable) ones.
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [LINT_IMPORTS, "--no-cache", str(tree / "pyproject.toml")],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_tree_keeps_every_contract() -> None:
    run = lint_imports(ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "3 kept, 0 broken" in run.stdout


@pytest.mark.parametrize(
    ("module", "wrong_import", "contract", "edge"),
    [
        (
            "gpo_kernel/money.py",
            "from gpo_server.domain import states",
            "gpo_kernel imports neither the orchestrator nor the sidecars",
            "gpo_kernel.money -> gpo_server.domain",
        ),
        (
            "rail_sidecars/runner.py",
            "from gpo_server.domain import states",
            "rail_sidecars import only the kernel (and gpo.v1), never the orchestrator",
            "rail_sidecars.runner -> gpo_server.domain",
        ),
        (
            "gpo_server/demo.py",
            "from rail_sidecars.rails.simulator import store",
            "gpo_server imports sidecar code only in gpo_server.embedded",
            "gpo_server.demo -> rail_sidecars.rails",
        ),
    ],
)
def test_a_wrong_way_import_breaks_its_contract(
    tmp_path: Path, module: str, wrong_import: str, contract: str, edge: str
) -> None:
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    with (tmp_path / module).open("a") as source:
        source.write(f"\n{wrong_import}  # the wrong way\n")

    run = lint_imports(tmp_path)

    assert run.returncode != 0, run.stdout
    assert f"{contract} BROKEN" in run.stdout
    assert edge in run.stdout
