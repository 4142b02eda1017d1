"""Issue 11.6: `pip install .` on its own gives working `gpo` and `gpo-sidecar` commands.

The repository's files (tracked, or new and not ignored) are copied first, so the build writes nothing into
the working tree. pip's wheel cache (PIP_CACHE_DIR, else pip's default) keeps repeated runs fast.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _run(*args: str | Path, cwd: Path | None = None, timeout: float = 600) -> str:
    # Nothing of this checkout's environment: no PYTHONPATH, no active venv, no GPO_* settings.
    drop = ("PYTHONPATH", "VIRTUAL_ENV", "PIP_REQUIRE_VIRTUALENV")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("GPO_")}
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, (
        f"{args}: exit {done.returncode}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    )
    return done.stdout


def test_pip_install_of_the_repository_gives_working_commands(tmp_path: Path) -> None:
    source = tmp_path / "src"
    listed = _run("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=REPO)
    for name in filter(None, listed.split("\0")):
        path = REPO / name
        if path.is_file():  # a tracked file deleted in the working tree is not copied
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, source / name)
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", venv)
    _run(venv / "bin" / "pip", "install", "-q", "--disable-pip-version-check", source, timeout=1200)

    assert "gpo-client" not in _run(venv / "bin" / "pip", "list", "--format=freeze").lower()
    assert "usage: gpo" in _run(venv / "bin" / "gpo", "--help")
    assert "usage: gpo-sidecar" in _run(venv / "bin" / "gpo-sidecar", "--help")
    # The generated code and the migrations come with the distribution, not from this checkout.
    where = _run(
        venv / "bin" / "python",
        "-c",
        "import gpo.v1.rail_pb2 as r, gpo_server.storage.migrations as m; print(r.__file__); print(m.__file__)",
        cwd=tmp_path,
    )
    assert all(str(venv) in line for line in where.splitlines()), where
    # So do the web console's templates and assets: it loads nothing from anywhere else.
    shipped = _run(
        venv / "bin" / "python",
        "-c",
        "import pathlib, gpo_server.console as c; d = pathlib.Path(c.__file__).parent;"
        " print(*sorted(p.name for p in [*d.glob('templates/*.html'), *d.glob('static/*')]))",
        cwd=tmp_path,
    )
    assert {"base.html", "batch.html", "console.css", "progress.js"} <= set(shipped.split()), shipped
    # And the installed server runs: the embedded demo pays a small batch and checks it against the ledger.
    last = _run(venv / "bin" / "gpo", "demo", "--payments", "20", cwd=tmp_path, timeout=300).splitlines()[-1]
    summary = json.loads(last)
    assert (summary["payments"], summary["ledger_duplicates"]) == (20, 0)
    assert summary["amount_succeeded"] == summary["ledger_amount"]
