"""The run folder: what `--output` holds, and every write to it atomic.

    config.json              every option; a rerun with other options is refused, naming them
    projector.safetensors    the newest usable projector, replaced at each save
    resume/state.pt          projector, optimizer, step (which fixes data order and position), RNG states
    metrics.jsonl            one line per step (and per evaluation)
    samples/step-N.jsonl     greedy captions of a few validation samples beside their references
    report.txt               the summary of the run

Each file is written under a temporary name, synced, and renamed over the old one, so a run killed
at any moment (SIGKILL included) leaves the previous complete version of every file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from vlmkit.errors import UsageError
from vlmkit.training.options import TrainOptions, config_differences


class RunFolder:
    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.config = self.path / "config.json"
        self.projector = self.path / "projector.safetensors"
        self.state = self.path / "resume" / "state.pt"
        self.metrics = self.path / "metrics.jsonl"
        self.report = self.path / "report.txt"
        self.samples = self.path / "samples"

    def check_or_create(self, options: TrainOptions) -> bool:
        """True when resuming. Refuses a folder made by another command, or one that is not a run folder."""
        if self.config.is_file():
            try:
                recorded = json.loads(self.config.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise UsageError(f"{self.config} is unreadable ({exc})",
                                 "Pass a new --output folder, or restore config.json.") from None
            changed = config_differences(recorded, options)
            if changed:
                raise UsageError(f"--output {self.path} holds a run made with other options: {'; '.join(changed)}",
                                 "Rerun the same command to resume it, or pass a new --output folder.")
            return self.state.is_file()
        if self.path.exists() and (not self.path.is_dir() or any(self.path.iterdir())):
            raise UsageError(f"--output {self.path} exists and is not a vlmkit training run (no config.json)",
                             "Pass a new or empty folder; vlmkit never writes into another folder.")
        return False

    def write_config(self, options: TrainOptions) -> None:
        if not self.config.is_file():
            write_atomic(self.config, json.dumps(options.to_config(), indent=2) + "\n")

    def keep_metrics_until(self, step: int) -> None:
        """On resume: drop lines of steps after the saved one (they will be trained again)."""
        if not self.metrics.is_file():
            return
        kept = []
        for line in self.metrics.read_text().splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    kept.append(line + "\n")
            except json.JSONDecodeError:  # a line cut off by a kill
                continue
        write_atomic(self.metrics, "".join(kept))


def write_atomic(path: Path, data: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    with open(partial, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, path)


def replace_atomic(path: Path, write) -> None:
    """`write(temporary_path)` then rename it over `path` (for writers that take a file name)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    write(partial)
    with open(partial, "rb") as f:
        os.fsync(f.fileno())
    os.replace(partial, path)
