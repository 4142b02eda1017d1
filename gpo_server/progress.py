"""Progress of an upload and of a batch, on stderr: rich bars on a terminal, plain lines otherwise.

On a terminal (stderr is a TTY and TERM is not "dumb"): one bar for the upload, one for the payments that
reached a final status (with rate and time left), and one per status, redrawn in place by `rich`. Not on a
terminal: one plain line at most every `plain_every_s` seconds and on every change of state, so logs
and CI output stay readable. stdout is never touched: it carries the command's JSON.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import IO

from gpo.v1 import resources_pb2 as res_pb
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TaskProgressColumn,
    TextColumn,
)
from rich.text import Text

from gpo_kernel.settings import environment
from gpo_server.client import status_counts

FINAL_STATUSES = ("succeeded", "failed", "rejected", "cancelled", "reversed")
IN_FLIGHT = ("accepted", "queued", "sent")
_STYLES = {
    "succeeded": "green",
    "failed": "red",
    "rejected": "yellow",
    "cancelled": "magenta",
    "reversed": "cyan",
    "in flight": "blue",
}


def _is_tty(stream: IO[str] | None) -> bool:
    try:
        return stream is not None and stream.isatty()
    except ValueError:  # closed
        return False


def on_terminal(stream: IO[str]) -> bool:
    return stream.isatty() and environment().get("TERM", "") != "dumb"


class _RateColumn(ProgressColumn):
    """Payments per second and time left, for the tasks that have a meaningful pace."""

    def render(self, task: Task) -> Text:
        if not task.fields.get("timed"):
            return Text("")
        done = task.completed - task.fields.get("initial", 0)
        if task.finished:
            took = task.finished_time or 0
            rate = f"{done / took:>7,.0f}/s" if took > 0 and done > 0 else "      -/s"
            return Text(f"{rate}  took {_clock(took)}", style="dim")
        speed = task.speed
        if not speed and task.elapsed and done > 0:
            speed = done / task.elapsed  # too few samples yet for rich's own estimate
        if not speed:
            return Text("      -/s  ETA -:--:--", style="dim")
        left = (task.remaining or 0) / speed
        return Text(f"{speed:>7,.0f}/s  ETA {_clock(left)}", style="dim")


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class BatchProgress:
    """Use as a context manager; call `uploaded()` during an upload and `batch()` for every batch view."""

    def __init__(
        self, label: str, *, stream: IO[str] | None = None, plain_every_s: float = 5.0, show: bool = True
    ) -> None:
        self.stream = stream or sys.stderr
        self.label = label
        self.show = show
        self.rich = show and on_terminal(self.stream)
        self.plain_every_s = plain_every_s
        self._plain_at = 0.0
        self._plain_key = ""  # the state of the last plain line: a new state prints at once
        self._plain_text = ""
        self._started = time.monotonic()
        self._tasks: dict[str, TaskID] = {}
        self._progress: Progress | None = None
        self._upload_total = 0
        if self.rich:
            console = Console(file=self.stream, highlight=False)
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(bar_width=None),
                MofNCompleteColumn(),
                TaskProgressColumn(),
                _RateColumn(),
                console=console,
                refresh_per_second=4,
                speed_estimate_period=15,
                expand=True,
                # Lines the command prints on stdout go above the bars when stdout is this terminal too;
                # redirected (to a file, a pipe) they must stay on stdout, not be drawn on stderr.
                redirect_stdout=_is_tty(sys.stdout),
            )

    def __enter__(self) -> BatchProgress:
        if self._progress is not None:
            self._progress.start()
            self._progress.console.print(self.label, style="bold")
        elif self.show:
            self._line(self.label)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._progress is not None:
            self._progress.refresh()
            self._progress.stop()

    # ---- updates --------------------------------------------------------------------------------

    def uploading(self, total: int, already: int = 0) -> None:
        self._upload_total = total
        if self._progress is not None:
            self._tasks["uploaded"] = self._progress.add_task(
                _label("uploaded"), total=total, completed=already, timed=True, initial=already
            )

    def uploaded(self, count: int) -> None:
        if self._progress is not None:
            self._progress.update(self._tasks["uploaded"], completed=count)
        elif self.show:
            self._maybe_line(
                f"uploaded {count}/{self._upload_total} ({_percent(count, self._upload_total)})",
                force=count >= self._upload_total,
            )

    def batch(self, batch: res_pb.Batch) -> None:
        counts = status_counts(batch)
        total = batch.payment_count or batch.expected_payment_count
        final = sum(counts.get(s, 0) for s in FINAL_STATUSES)
        in_flight = sum(counts.get(s, 0) for s in IN_FLIGHT)
        state = res_pb.BatchState.Name(batch.state).removeprefix("BATCH_STATE_")
        if self._progress is not None:
            p = self._progress
            if "finished" not in self._tasks:
                self._tasks["finished"] = p.add_task(
                    _label("finished"), total=total, completed=final, timed=True, initial=final
                )
                for name in (*FINAL_STATUSES, "in flight"):
                    self._tasks[name] = p.add_task(
                        _label(name, _STYLES[name]), total=total, completed=0, visible=False
                    )
            p.update(self._tasks["finished"], total=total, completed=final, description=_label(state.lower()))
            for name in FINAL_STATUSES:
                n = counts.get(name, 0)
                p.update(
                    self._tasks[name],
                    total=total,
                    completed=n,
                    visible=p.tasks[self._tasks[name]].visible or n > 0,
                )
            p.update(self._tasks["in flight"], total=total, completed=in_flight, visible=in_flight > 0)
        elif self.show:
            parts = " ".join(f"{k}={counts[k]}" for k in (*FINAL_STATUSES, *IN_FLIGHT) if counts.get(k))
            elapsed = max(time.monotonic() - self._started, 1e-6)
            rate = final / elapsed
            self._maybe_line(
                f"{batch.name} {state}: {final}/{total} final ({_percent(final, total)}) {parts}"
                + (f" {rate:,.0f}/s" if final else ""),
                force=state in ("COMPLETED", "CANCELLED") or final == total,
                key=state,
            )

    def note(self, text: str) -> None:
        """One line above the bars (or a plain line)."""
        if self._progress is not None:
            self._progress.console.print(text)
        elif self.show:
            self._line(text)

    # ---- plain lines ------------------------------------------------------------------------------

    def _maybe_line(self, text: str, *, force: bool = False, key: str = "") -> None:
        now = time.monotonic()
        if force or (key and key != self._plain_key) or now - self._plain_at >= self.plain_every_s:
            if text != self._plain_text:
                self._line(text)
                self._plain_text = text
            self._plain_at = now
            self._plain_key = key or self._plain_key

    def _line(self, text: str) -> None:
        print(text, file=self.stream, flush=True)


def _label(name: str, style: str = "bold") -> str:
    return f"[{style}]{name:>11}[/]"


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"
