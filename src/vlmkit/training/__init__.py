"""Training a projector so that a frozen encoder and a frozen LLM caption together (`vlmkit train`).

    data.py          manifests -> samples (three formats; bad rows skipped and reported)
    features.py      samples -> encoder features, with the on-disk feature cache
    loop.py          the optimizer loop, loss, evaluation, checkpoints
    run_folder.py    --output: config, projector, resume state, metrics, report; atomic writes
    distributed.py   torchrun / DistributedDataParallel set-up
    run.py           `train()`: the whole run, as the CLI and notebooks call it
    commands.py      the commands that produce and use a projector (light: no torch)

Only `run.py`, `loop.py`, `features.py` import torch, and only when `train` is called.
"""

from __future__ import annotations

from typing import Any

__all__ = ["train", "TrainSummary"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from vlmkit.training import run

        return getattr(run, name)
    raise AttributeError(f"module 'vlmkit.training' has no attribute {name!r}")
