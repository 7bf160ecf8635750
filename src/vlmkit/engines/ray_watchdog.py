"""Ends the Ray processes vlmkit started once the vlmkit process that started them is gone.

    python -m vlmkit.engines.ray_watchdog MARKER

vlmkit starts this as its own child, in a session of its own (so a Ctrl-C or a kill of vlmkit's
process group does not reach it), then starts Ray with MARKER in the environment, which every
Ray process inherits (raylet, GCS, workers, and the dashboard and runtime-env agents that were
seen outliving a SIGKILLed driver). When vlmkit exits, however it exits (SIGKILL included), this
process is re-parented; it then SIGKILLs every process whose environment holds MARKER (those
agents ignore SIGTERM) and removes Ray's temporary directory, named by MARKER.
Linux only (it reads /proc); stdlib only, so it starts in milliseconds.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time

ENV = "VLMKIT_RAY_SESSION"  # its value: the temporary directory of the Ray vlmkit started
POLL_SECONDS = 0.2


def marked_processes(marker: str) -> list[int]:
    """Pids (other than this one) whose environment says they belong to the Ray session `marker`."""
    needle = f"{ENV}={marker}".encode() + b"\0"
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                if needle in f.read() + b"\0":
                    found.append(int(name))
        except OSError:  # gone, or not ours
            continue
    return found


def sweep(marker: str, rounds: int = 50) -> None:
    """SIGKILL the session's processes until none is left (a dying raylet may still start one)."""
    quiet = 0
    for _ in range(rounds):
        pids = marked_processes(marker)
        quiet = 0 if pids else quiet + 1
        if quiet >= 3:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(POLL_SECONDS)
    shutil.rmtree(marker, ignore_errors=True)


def main(argv: list[str]) -> None:
    marker = argv[0]
    parent = os.getppid()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while os.getppid() == parent:
        time.sleep(POLL_SECONDS)
    sweep(marker)


if __name__ == "__main__":
    main(sys.argv[1:])
