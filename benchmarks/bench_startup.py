"""Start-up time of the light vlmkit commands, each in a fresh process, against `import torch`.

    python benchmarks/bench_startup.py [--runs 15] [--vlmkit PATH]

The light commands (--help, models, recommend) must never import torch, transformers or av; the
anchor is what a command that did would pay at least: `python -c "import torch"` with the same
interpreter. `python -c pass` is shown as the floor (interpreter start-up alone).

Commands run round-robin (one run of each, then the next round), so a burst of load from another
process on the machine hits all of them alike; one untimed round first warms the page cache.
Each process gets its own empty HF_HOME and NO_COLOR=1; output goes to a pipe that is read.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from reporting import machine_summary, median, p90, table

TARGET_S = 0.35  # median, for each vlmkit command


def default_vlmkit() -> str:
    beside = Path(sys.executable).with_name("vlmkit")  # the console script of this interpreter's venv
    return str(beside) if beside.exists() else (shutil.which("vlmkit") or "vlmkit")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="timed runs of each command")
    parser.add_argument("--vlmkit", default=default_vlmkit(), help="the vlmkit console script to time")
    args = parser.parse_args()

    commands = {
        "vlmkit --help": [args.vlmkit, "--help"],
        "vlmkit models --json": [args.vlmkit, "models", "--json"],
        "vlmkit recommend --gpu L4 --json": [args.vlmkit, "recommend", "--gpu", "L4", "--json"],
        'python -c "import torch"': [sys.executable, "-c", "import torch"],
        'python -c "pass"': [sys.executable, "-c", "pass"],
    }
    anchor = 'python -c "import torch"'
    print(machine_summary())
    print(f"vlmkit: {args.vlmkit}\npython: {sys.executable}\nruns: {args.runs} per command, round-robin")

    with tempfile.TemporaryDirectory(prefix="vlmkit-bench-") as home:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING_FACE", "VLMKIT_"))}
        env |= {"HF_HOME": home, "NO_COLOR": "1"}
        for name, argv in commands.items():  # warm-up, and proof that each command works
            done = subprocess.run(argv, capture_output=True, env=env)
            if done.returncode != 0:
                sys.exit(f"{name} failed ({done.returncode}):\n{done.stderr.decode()}")
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.runs):
            for name, argv in commands.items():
                started = time.perf_counter()
                subprocess.run(argv, capture_output=True, env=env, check=True)
                times[name].append(time.perf_counter() - started)

    anchor_median = median(times[anchor])
    rows = []
    for name, values in times.items():
        m = median(values)
        verdict = ""
        if name.startswith("vlmkit"):
            verdict = "met" if m < TARGET_S else "MISSED"
        rows.append(
            [
                name,
                f"{m:.3f}",
                f"{p90(values):.3f}",
                f"{min(values):.3f}",
                f"{m / anchor_median:.2f}",
                verdict,
            ]
        )
    print()
    print(
        table(
            ["command", "median s", "p90 s", "min s", "median / import torch", f"< {TARGET_S} s median"], rows
        )
    )


if __name__ == "__main__":
    main()
