"""Progress for long caption runs: a bar on a terminal, plain lines in a log, nothing with --quiet."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from vlmkit.cli.render import stderr

PLAIN_EVERY_SECONDS = 10.0


class ProgressReporter:
    def __init__(self, total: int, quiet: bool = False, status: Callable[[], str] | None = None) -> None:
        self.total, self.quiet, self.done = total, quiet, 0
        self.status = status or (lambda: "")  # e.g. the Ray engine's "2 workers alive"
        self.started = time.perf_counter()  # restarted on entering: model loading is not captioning
        self.last_line = 0.0
        self.bar: Progress | None = None
        if not quiet and stderr.is_terminal:
            self.bar = Progress(TextColumn("captioning"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
                                TextColumn("{task.fields[tokens]}"), console=stderr)
            self.task = self.bar.add_task("captioning", total=total, rate="", tokens="")
        self.last_tokens_line = time.perf_counter()

    def __enter__(self) -> ProgressReporter:
        self.started = time.perf_counter()
        if self.bar:
            self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.bar:
            self.bar.stop()

    def advance(self, record) -> None:
        self.done += 1
        rate = self.done / max(time.perf_counter() - self.started, 1e-9)
        if self.bar:
            self.bar.update(self.task, advance=1, rate=", ".join(filter(None, [f"{rate:.2f} videos/s", self.status()])))
            if record.status != "ok":
                self.bar.console.print(f"[red]failed[/red] {escape(_failure(record))}", highlight=False)
            return
        if self.quiet:
            return
        now = time.perf_counter()
        if record.status != "ok":
            stderr.print(f"failed {escape(_failure(record))}", highlight=False)
        if now - self.last_line >= PLAIN_EVERY_SECONDS or self.done == self.total:
            self.last_line = now
            left = (self.total - self.done) / rate if rate else 0
            status = self.status()
            stderr.print(f"{self.done}/{self.total} videos, {rate:.2f} videos/s, about {left:.0f} s left"
                         + (f", {status}" if status else ""), highlight=False)


    def tokens(self, count: int) -> None:
        """Tokens generated so far by the batch in progress: signs of life during a long generate call."""
        if self.bar:
            self.bar.update(self.task, tokens=f"batch: {count} tokens")
            return
        now = time.perf_counter()
        if count == 1:  # a generate call starts
            self.last_tokens_line = now
        elif not self.quiet and now - self.last_tokens_line >= PLAIN_EVERY_SECONDS:
            self.last_tokens_line = now
            stderr.print(f"generating: {count} tokens so far in this batch", highlight=False)

    def note(self, message: str) -> None:
        """One line between the progress updates (the bar stays below it)."""
        if self.quiet:
            return
        (self.bar.console if self.bar else stderr).print(message, highlight=False)


def _failure(record) -> str:
    """The error names the file already when it comes from decoding; otherwise say which video."""
    from vlmkit.records import readable

    error = readable(record.error or "unknown error")
    return error if Path(record.video).name in record.error or "" else f"{readable(record.video)}: {error}"
