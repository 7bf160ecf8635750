"""Run one piece of work on a daemon thread and give up on it after a deadline.

The work gets a `Clock` and calls `clock.check()` between steps (packets, requests): once the
deadline passes, or the caller gives up (Ctrl-C), the next check raises `Abandoned` and the
work stops. A single native call that never returns cannot be interrupted: its daemon thread is
left behind and the caller still gets its error on time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class Abandoned(Exception):
    """Raised inside the worker once the caller has given up on it."""


class Clock:
    def __init__(self, timeout: float | None) -> None:
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.abandoned = threading.Event()

    def check(self) -> None:
        if self.abandoned.is_set() or (self.deadline is not None and time.monotonic() > self.deadline):
            raise Abandoned


def run_with_deadline(work: Callable[[Clock], T], timeout: float | None, *, name: str,
                      timed_out: Callable[[], Exception]) -> T:
    """`work(clock)` on a daemon thread named `name`; its result, or its exception re-raised here.

    After `timeout` s (None: no limit) the caller gets `timed_out()` and the worker is told to stop.
    """
    clock = Clock(timeout)
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["value"] = work(clock)
        except Abandoned:
            outcome["error"] = timed_out()
        except BaseException as error:  # re-raised in the caller's thread
            outcome["error"] = error

    worker = threading.Thread(target=run, name=name, daemon=True)
    worker.start()
    try:
        worker.join(timeout)
    except BaseException:  # Ctrl-C: stop the worker too
        clock.abandoned.set()
        raise
    if worker.is_alive():
        clock.abandoned.set()
        raise timed_out()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
