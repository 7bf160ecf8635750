"""The commands that get a projector for an encoder + LLM pair: light, for `recommend` and `caption`'s hints."""

from __future__ import annotations

import shlex


def distillation_commands(encoder: str, llm: str, teacher: str | None = None) -> list[str]:
    """Two steps: caption videos with an end-to-end VLM, then train the projector on its captions."""
    teacher = teacher or "VLM_KEY"
    run = f"runs/{encoder}+{llm}"
    return [
        f"vlmkit caption --vlm {shlex.quote(teacher)} videos/ -o teacher.jsonl",
        f"vlmkit train --encoder {shlex.quote(encoder)} --llm {shlex.quote(llm)} --data teacher.jsonl "
        f"--output {shlex.quote(run)}",
    ]


def caption_command(encoder: str, llm: str, projector: str, prompt: str | None = None) -> str:
    parts = ["vlmkit", "caption", "--encoder", encoder, "--llm", llm, "--projector", projector]
    if prompt:
        parts += ["--prompt", prompt]
    return shlex.join(parts + ["videos/"])
