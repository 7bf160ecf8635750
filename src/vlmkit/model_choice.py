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
    size = choice.estimate.total_bytes
    size_text = f"{size / 2**30:.1f} GiB" if size >= 2**30 else f"{size / 2**20:.1f} MiB"
    return DefaultChoice(choice.keys(), f"{what} `vlmkit recommend` picks for {where} "
                                        f"({size_text} at {plan.frames} frames)")


def check_new_tokens_fit(registry, keys: dict[str, str], max_new_tokens: int) -> None:
    """Refuse, before loading, --max-new-tokens that cannot fit the model's context even with one frame."""
    from vlmkit.memory import PROMPT_TOKENS

    entry = registry.vlm(keys["vlm"]) if "vlm" in keys else registry.llm(keys["llm"])
    per_frame = entry.tokens_per_frame if "vlm" in keys else registry.encoder(keys["encoder"]).tokens_per_frame
    room = entry.max_context - PROMPT_TOKENS - per_frame  # new tokens that fit beside the prompt and one frame
    if max_new_tokens > room:
        raise UsageError(
            f"--max-new-tokens {max_new_tokens:,} cannot fit {entry.key}'s context of {entry.max_context:,} tokens "
            f"(the prompt and one frame take {PROMPT_TOKENS + per_frame:,})",
            f"Use --max-new-tokens {max(room, 1):,} or fewer (a caption is rarely over 200 tokens).")
