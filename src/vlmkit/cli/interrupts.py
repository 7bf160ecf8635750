"""Ctrl-C for long commands: the first one asks the work to stop cleanly, a second one stops at once."""

from __future__ import annotations

import signal
import threading

from vlmkit.cli.render import stderr


class FirstInterruptSets:
    """While active, the first Ctrl-C sets `stop` and prints `message`; a second raises KeyboardInterrupt.

    Only the main thread can install a signal handler; elsewhere (a notebook's worker thread) it does nothing.
    """

    def __init__(self, stop: threading.Event, message: str) -> None:
        self.stop, self.message, self.previous = stop, message, None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)

    def _handle(self, signum, frame) -> None:
        if self.stop.is_set():
            raise KeyboardInterrupt
        self.stop.set()
        stderr.print(f"\n{self.message}", highlight=False)
