"""``make demo``'s terminal: one line per stage, a spinner or progress bar while it waits, a summary table.

Everything else (Airflow's task logs, warnings, subprocess and JVM output) goes to a log file: file descriptors
1 and 2 are pointed at it for the whole run, so output that bypasses Python's ``sys.stdout`` is caught too,
and the terminal is written through a duplicate of the original descriptor. ``verbose`` also streams the log
file to the terminal (dimmed) above the stage lines.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from rich.console import Console, RenderableType
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

TITLE_WIDTH = 26


def first_line(message: str, limit: int = 200) -> str:
    """A message's first line, shortened for one terminal line (the whole text is in the log)."""
    line = message.strip().splitlines()[0] if message.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


class StageFailed(Exception):
    """A stage found a problem (a failed DAG run, a discrepancy); the message says what, for the terminal."""


class Stage:
    """The handle a stage reports through: ``progress`` while waiting, then ``done`` (or ``fail``)."""

    def __init__(self, progress: Progress | None, task: TaskID | None) -> None:
        self._progress = progress
        self._task = task
        self.summary = ""
        self.failure: str | None = None
        self.warning: str | None = None

    def progress(self, detail: str = "", completed: float | None = None, total: float | None = None) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, detail=detail, completed=completed, total=total)

    def done(self, summary: str) -> None:
        self.summary = summary

    def warn(self, summary: str) -> None:
        """Finished, but with a finding the user must look at (the run will end with exit code 1)."""
        self.summary, self.warning = summary, summary

    def fail(self, message: str) -> StageFailed:
        """Mark the stage failed; returns the exception to raise (``raise stage.fail("...")``)."""
        self.failure = message
        return StageFailed(message)


class DemoConsole:
    """Context manager owning the terminal and the log file for one demo run."""

    def __init__(self, log_path: Path, verbose: bool = False) -> None:
        self.log_path = log_path
        self.verbose = verbose
        self.console: Console | None = None
        self.warnings: list[str] = []
        self._saved_fds: tuple[int, int] | None = None
        self._saved_streams: tuple[IO[str], IO[str]] | None = None
        self._terminal: IO[str] | None = None
        self._follower: threading.Thread | None = None
        self._stop = threading.Event()

    # -- lifecycle ---------------------------------------------------------------------------------------
    def __enter__(self) -> DemoConsole:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        if self.log_path.exists():
            self.log_path.replace(self.log_path.with_name(self.log_path.stem + ".previous.log"))
        sys.stdout.flush()
        sys.stderr.flush()
        self._saved_fds = (os.dup(1), os.dup(2))
        self._terminal = os.fdopen(os.dup(self._saved_fds[0]), "w", buffering=1, encoding="utf-8")
        self.console = Console(file=self._terminal, highlight=False)
        log_fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(log_fd)
        # Python-level writers too, in case sys.stdout/sys.stderr were replaced by objects not on fds 1 and 2.
        self._saved_streams = (sys.stdout, sys.stderr)
        sys.stdout = open(1, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
        sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
        if self.verbose:
            self._follower = threading.Thread(target=self._follow, name="demo-log-follower", daemon=True)
            self._follower.start()
        return self

    def __exit__(self, *exc: object) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        if self._follower is not None:
            self._stop.set()
            self._follower.join(timeout=5)
        if self._saved_streams is not None:
            sys.stdout, sys.stderr = self._saved_streams
            self._saved_streams = None
        if self._saved_fds is not None:
            os.dup2(self._saved_fds[0], 1)
            os.dup2(self._saved_fds[1], 2)
            for fd in self._saved_fds:
                os.close(fd)
            self._saved_fds = None
        if self._terminal is not None:
            self._terminal.flush()
            self._terminal.close()
            self._terminal = None

    def _follow(self) -> None:
        """Stream the log file to the terminal (``-v``), until the run ends and the file is drained."""
        with open(self.log_path, encoding="utf-8", errors="replace") as handle:
            while True:
                line = handle.readline()
                if line:
                    self.print(Text(line.rstrip("\n"), style="dim"))
                elif self._stop.is_set():
                    return
                else:
                    time.sleep(0.2)

    # -- output ------------------------------------------------------------------------------------------
    def print(self, *renderables: RenderableType, **kwargs) -> None:
        assert self.console is not None, "use DemoConsole as a context manager"
        self.console.print(*renderables, **kwargs)

    def log(self, text: str) -> None:
        """A line for the log file only (details behind a stage line)."""
        print(f"[demo] {text}", file=sys.stdout, flush=True)

    @contextlib.contextmanager
    def stage(self, title: str, total: float | None = None) -> Iterator[Stage]:
        """Spinner (or bar, with ``total``) while the block runs; then one line: ✓/!/✗, title, summary, time."""
        assert self.console is not None, "use DemoConsole as a context manager"
        columns = [SpinnerColumn(), TextColumn(f"{{task.description:<{TITLE_WIDTH}}}")]
        if total is not None:
            columns += [BarColumn(bar_width=30), MofNCompleteColumn()]
        columns += [TextColumn("{task.fields[detail]}", style="dim"), TimeElapsedColumn()]
        progress = Progress(
            *columns,
            console=self.console,
            transient=True,
            redirect_stdout=False,  # Airflow writes to sys.stdout: that belongs in the log, not here
            redirect_stderr=False,
        )
        # A spinner only on a terminal: piped output (CI, `| tee`) gets the stage lines alone.
        live = self.console.is_terminal and not self.console.is_dumb_terminal
        stage = (
            Stage(progress, progress.add_task(title, total=total, detail="")) if live else Stage(None, None)
        )
        started = time.monotonic()
        self.log(f"stage {title} …")
        try:
            with progress if live else contextlib.nullcontext():
                yield stage
        except StageFailed:
            raise
        except BaseException as exc:
            stage.failure = stage.failure or f"{type(exc).__name__}: {exc}"
            raise
        finally:
            elapsed = time.monotonic() - started
            if stage.failure is not None:
                mark, style, text = "✗", "bold red", first_line(stage.failure)
            elif stage.warning is not None:
                mark, style, text = "!", "bold yellow", stage.summary
                self.warnings.append(f"{title}: {stage.summary}")
            else:
                mark, style, text = "✓", "green", stage.summary
            line = Text.assemble(
                (f"{mark} ", style),
                (f"{title:<{TITLE_WIDTH}} ", "bold"),
                (text, "red" if stage.failure else ""),
                (f"  {elapsed:.1f} s", "dim"),
            )
            self.print(line)
            self.log(f"stage {title}: {mark} {text} ({elapsed:.1f} s)")
