"""Every option of a training run, checked before anything loads, and compared on resume."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields

from vlmkit.errors import UsageError
from vlmkit.prompts import DEFAULT_PROMPT

DEFAULT_GLOBAL_BATCH = 256  # LLaVA-1.5 stage 1 and Prismatic align
# Options that change how a run is watched or where it keeps things, not what it computes:
# a resumed run may change them.
RESUMABLE_CHANGES = frozenset({"cache_dir", "save_every", "offline", "quiet"})


@dataclass(frozen=True)
class TrainOptions:
    encoder: str
    llm: str
    data: tuple[str, ...]
    output: str
    image_folder: str | None = None  # LLaVA JSON: where its relative image paths start
    prompt: str = DEFAULT_PROMPT
    frames: int = 8
    pool: int = 1
    feature_layer: int | None = None  # None: the family's (the penultimate layer, as LLaVA and Prismatic use)
    epochs: int = 1
    max_steps: int | None = None  # overrides epochs
    batch_size: int = 8
    grad_accum: int | None = None  # None: up to a global batch of 256 where the data allows
    lr: float = 1e-3
    warmup: float = 0.03  # fraction of the steps
    weight_decay: float = 0.0
    val_fraction: float = 0.02
    eval_every: int = 200
    save_every: int = 50
    sample_count: int = 4  # validation videos captioned at each evaluation
    cache_dir: str | None = None
    seed: int = 0
    dtype: str | None = None
    device: str | None = None
    offline: bool = False

    def validate(self) -> None:
        def bad(message: str, hint: str) -> UsageError:
            return UsageError(message, hint)

        if not self.data:
            raise bad("No training data given", "Pass --data FILE (JSONL, CSV or LLaVA JSON); repeat for more.")
        positive = {"--frames": self.frames, "--pool": self.pool, "--epochs": self.epochs,
                    "--batch-size": self.batch_size, "--eval-every": self.eval_every, "--save-every": self.save_every}
        for name, value in positive.items():
            if value < 1:
                raise bad(f"{name} must be at least 1, not {value}", f"Give {name} 1 or more.")
        for name, value in (("--max-steps", self.max_steps), ("--grad-accum", self.grad_accum)):
            if value is not None and value < 1:
                raise bad(f"{name} must be at least 1, not {value}", f"Give {name} 1 or more, or leave it out.")
        if not self.lr > 0:
            raise bad(f"--lr must be positive, not {self.lr:g}", "The alignment recipes use --lr 1e-3.")
        if not 0 <= self.warmup < 1:
            raise bad(f"--warmup is a fraction of the steps in [0, 1), not {self.warmup:g}",
                      "The recipes warm up 3%: 0.03.")
        if not 0 <= self.val_fraction < 1:
            raise bad(f"--val-fraction must be in [0, 1), not {self.val_fraction:g}",
                      "Hold out 2%: --val-fraction 0.02.")

    def to_config(self) -> dict:
        return asdict(self) | {"data": [os.path.abspath(d) for d in self.data],
                               "output": os.path.abspath(self.output),
                               "image_folder": os.path.abspath(self.image_folder) if self.image_folder else None,
                               "cache_dir": os.path.abspath(self.cache_dir) if self.cache_dir else None}


def config_differences(recorded: dict, options: TrainOptions) -> list[str]:
    """What a rerun changes against the run folder's config.json: `--lr 0.001 (was 0.01)`, ..."""
    current = options.to_config()
    names = [f.name for f in fields(TrainOptions) if f.name not in RESUMABLE_CHANGES and f.name != "output"]
    changed = []
    for name in names:
        was, now = recorded.get(name), current.get(name)
        if isinstance(was, list) or isinstance(now, (list, tuple)):
            was, now = list(was or []), list(now or [])
        if was != now:
            changed.append(f"--{name.replace('_', '-')} {_shown(now)} (the run used {_shown(was)})")
    return changed


def _shown(value) -> str:
    if isinstance(value, list):
        return " ".join(map(str, value)) or "none"
    return "default" if value is None else str(value)
