"""The progress display as a person sees it: `gpo demo` in a real terminal (a tmux pane), read back with
`tmux capture-pane` once it is done. The final screen must be clean: each bar drawn once, in place, at 100%,
nothing overdrawn, then the summary. And, not on a terminal, plain lines without escape codes.

tmux comes from scripts/services.sh (which scripts/test.sh runs); this test fails, rather than skips,
without it."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.support.certificates import cluster_tls, server_tls_settings

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
DEMO = ["demo", "--payments", "3000", "--invalid-every", "101", "--simulator", "failure_rate=0.05,seed=3"]


def tls_env(folder: Path) -> dict[str, str]:
    """GPO_TLS_* of a gpo serve requiring client certificates, and of its clients: every run is mTLS."""
    return server_tls_settings(cluster_tls(folder / "tls"))


def shell_env(env: dict[str, str]) -> str:
    return " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())


class Tmux:
    def __init__(self, width: int = 110, height: int = 40) -> None:
        assert shutil.which("tmux"), "tmux is missing: bash scripts/services.sh installs it"
        self.socket = f"gpo-test-{uuid.uuid4().hex[:10]}"  # a server of our own, never the user's
        self.width, self.height = width, height

    def run(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.socket, "-f", "/dev/null", *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return done.stdout

    def start(self, command: str) -> None:
        self.run("new-session", "-d", "-s", "t", "-x", str(self.width), "-y", str(self.height), command)

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-J", "-t", "t")

    def close(self) -> None:
        subprocess.run(
            ["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=30, check=False
        )


def test_demo_progress_in_a_terminal_ends_on_a_clean_screen(tmp_path: Path) -> None:
    tmux = Tmux()
    command = " ".join(
        [
            f"cd {shlex.quote(str(REPO))} &&",
            f"env GPO_DATA_DIR={shlex.quote(str(tmp_path))} GPO_LOG_LEVEL=WARNING TERM=xterm-256color",
            shell_env(tls_env(tmp_path)),
            shlex.quote(sys.executable),
            "-m gpo_server.cli",
            *DEMO,
            "; echo GPO-EXIT=$?; sleep 3600",
        ]
    )
    try:
        tmux.start(command)
        deadline = time.monotonic() + 300
        screen = ""
        while time.monotonic() < deadline:  # a condition: the command printed its exit status
            screen = tmux.screen()
            if "GPO-EXIT=" in screen:
                break
            time.sleep(0.5)
        assert "GPO-EXIT=0" in screen, screen
    finally:
        tmux.close()
    lines = [line.rstrip() for line in screen.splitlines() if line.strip()]
    print("\n".join(lines))

    def bar(label: str) -> str:
        found = [line for line in lines if line.lstrip().startswith(label + " ") and "━" in line]
        assert len(found) == 1, (label, found)  # redrawn in place: exactly one line per bar
        return found[0]

    assert "3000/3000" in bar("uploaded") and "100%" in bar("uploaded")
    completed = bar("completed")
    assert "3000/3000" in completed and "100%" in completed and "/s" in completed and "took" in completed
    summary = json.loads(next(line for line in lines if line.startswith("{")))
    assert summary["state"] == "BATCH_STATE_COMPLETED" and summary["ledger_duplicates"] == 0
    for status in ("succeeded", "failed", "rejected"):
        line = bar(status)
        assert f"{summary[status]}/3000" in line, (status, line)
    assert not any(line.lstrip().startswith("in flight") for line in lines)  # gone once nothing is
    # Nothing overdrawn: no line carries two bars' labels or two counts, and no stray control characters.
    labels = ("uploaded", "completed", "succeeded", "failed", "rejected", "processing")
    for line in lines:
        if line.startswith("{"):
            continue
        assert sum(line.count(label) for label in labels) <= 1 or "━" not in line, line
        assert line.count("/3000") <= 1, line
        assert all(ch.isprintable() for ch in line), repr(line)
    assert any(line.startswith("demo data removed:") for line in lines)


def demo_off_terminal(data: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "gpo_server.cli", *DEMO, *extra],
        env={**os.environ, "GPO_DATA_DIR": str(data), "GPO_LOG_LEVEL": "WARNING", **tls_env(data)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    return done


def test_progress_not_on_a_terminal_is_plain_lines(tmp_path: Path) -> None:
    done = demo_off_terminal(tmp_path)
    assert "\x1b" not in done.stderr and "\r" not in done.stderr
    lines = done.stderr.splitlines()
    assert "uploaded 3000/3000 (100.0%)" in lines
    assert any(" COMPLETED: 3000/3000 final (100.0%)" in line for line in lines), lines
    summary = json.loads(done.stdout.splitlines()[-1])
    assert summary["data_kept"] is False and not Path(summary["data_dir"]).exists()
    assert summary["data_bytes"] > 0
    assert any(line.startswith(f"demo data removed: {summary['data_dir']}") for line in lines)


def test_demo_keep_keeps_the_data_and_says_where_then_clean_removes_it(tmp_path: Path) -> None:
    done = demo_off_terminal(tmp_path, "--payments", "200", "--keep", "--quiet")
    summary = json.loads(done.stdout.splitlines()[-1])
    kept = Path(summary["data_dir"])
    assert summary["data_kept"] is True and kept.is_dir() and (kept / "gpo.db").exists()
    assert kept.parent == (tmp_path / "demo").resolve()
    assert f"demo data kept in {kept}: " in done.stderr
    assert any(unit in done.stderr for unit in (" KB ", " MB ")), done.stderr
    # The next run says what earlier runs hold; --clean removes them and says how much.
    again = demo_off_terminal(tmp_path, "--payments", "100", "--quiet")
    assert "1 earlier demo runs hold " in again.stderr and "gpo demo --clean" in again.stderr
    clean = demo_off_terminal(tmp_path, "--clean")
    removed = json.loads(clean.stdout.splitlines()[-1])
    assert removed["removed_runs"] == 1 and removed["removed_bytes"] >= summary["data_bytes"]
    assert not kept.exists() and "removed 1 demo runs" in clean.stderr


def test_submit_on_a_terminal_keeps_its_json_on_stdout(tmp_path: Path) -> None:
    """With the bars on the terminal and stdout redirected to a file, the rejection and summary lines go
    to the file, not onto the screen."""
    from tests.support.processes import free_port

    port = free_port()
    data = tmp_path / "data"
    out = tmp_path / "out.jsonl"
    tls = tls_env(tmp_path)
    server = subprocess.Popen(
        [sys.executable, "-m", "gpo_server.cli", "serve"],
        env={**os.environ, "GPO_DATA_DIR": str(data), "GPO_LISTEN": f"127.0.0.1:{port}", **tls},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    tmux = Tmux()
    try:
        assert server.stdout is not None
        assert json.loads(server.stdout.readline())["listening"] == port  # serving
        command = " ".join(
            [
                f"cd {shlex.quote(str(REPO))} &&",
                f"env GPO_DATA_DIR={shlex.quote(str(data))} GPO_SERVER=127.0.0.1:{port} TERM=xterm-256color",
                shell_env(tls),
                shlex.quote(sys.executable),
                "-m gpo_server.cli submit examples/payments.csv --program tmux --watch",
                f"--payer-fa account:treasury@central-bank > {shlex.quote(str(out))}",
                "; echo GPO-EXIT=$?; sleep 3600",
            ]
        )
        tmux.start(command)
        deadline = time.monotonic() + 120
        screen = ""
        while time.monotonic() < deadline and "GPO-EXIT=" not in screen:
            time.sleep(0.3)
            screen = tmux.screen()
    finally:
        tmux.close()
        server.terminate()
        server.wait(timeout=60)
    assert "GPO-EXIT=0" in screen, screen
    assert "{" not in screen, screen  # no JSON drawn on the terminal
    assert "completed" in screen and "5/5" in screen
    rejection, summary = [json.loads(line) for line in out.read_text().splitlines()]
    assert rejection["rejected"] == "cct-2026-06-0005" and rejection["line"] == 6
    assert summary["payments"] == 5 and summary["state"] == "BATCH_STATE_COMPLETED"
