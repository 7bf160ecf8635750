"""Which models a command runs: the options that name them, checked once, and the default when none is named."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vlmkit.errors import UsageError


def check_model_options(*, vlm: str | None = None, encoder: str | None = None, llm: str | None = None,
                        projector: str | Path | None = None) -> None:
    """--vlm KEY, or --encoder KEY --llm KEY [--projector FILE]: anything else is a usage error."""
    if vlm and (encoder or llm):
        given = " and ".join(f"--{name}" for name, value in (("encoder", encoder), ("llm", llm)) if value)
        raise UsageError(f"--vlm conflicts with {given}: they name two different kinds of model",
                         "Give --vlm KEY for an end-to-end VLM, or --encoder KEY --llm KEY for a composed "
                         "pipeline, not both.")
    if vlm and projector:
        raise UsageError("--vlm conflicts with --projector",
                         "An end-to-end VLM has its own projector built in; --projector goes with --encoder and --llm.")
    if bool(encoder) != bool(llm):
        raise UsageError("--encoder and --llm go together", "Give both, or --vlm KEY.")
    if projector and not encoder:
        raise UsageError("--projector goes with --encoder and --llm", "Add --encoder KEY --llm KEY.")


@dataclass(frozen=True)
class DefaultChoice:
    keys: dict[str, str]  # {"vlm": ...} or {"encoder": ..., "llm": ...}
    reason: str  # why this one, in words a user can check (`vlmkit recommend` shows the same plan)

    @property
    def label(self) -> str:
        return " + ".join(self.keys.values())


def default_choice(registry, *, kind: str = "vlm", frames: int | None = None,
                   device: str | None = None) -> DefaultChoice:
    """What `recommend` picks for this machine: an end-to-end VLM (kind "vlm") or encoder + LLM."""
    from vlmkit.errors import ModelLoadError
    from vlmkit.planner import recommend

    plan = recommend(registry=registry, frames=frames or 8, device="cpu" if device == "cpu" else None)
    choice = plan.vlm_choice if kind == "vlm" else plan.choice
    if choice is None:
        raise ModelLoadError("No model fits this machine", "Name one with --vlm or --encoder/--llm.")
    where = "the CPU" if plan.gpu.source == "cpu" else f"this {plan.gpu.name}"
    what = "the end-to-end VLM" if kind == "vlm" else "the encoder + LLM"
    return DefaultChoice(choice.keys(), f"{what} `vlmkit recommend` picks for {where} "
                                        f"({choice.estimate.total_bytes / 2**30:.1f} GiB at {plan.frames} frames)")
