"""`vlmkit caption VIDEO...`: caption videos with an end-to-end VLM or encoder + projector + LLM."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from vlmkit.captioning import DEFAULT_PROMPT
from vlmkit.cli.load import DeviceOpt
from vlmkit.cli.options import DtypeOpt, EncoderOpt, LlmOpt, MaxNewTokensOpt, OfflineOpt, ProjectorOpt, VlmOpt
from vlmkit.cli.render import stderr, stdout, to_jsonable
from vlmkit.cli.state import registry_from


class Format(str, Enum):
    text = "text"
    json = "json"
    jsonl = "jsonl"


def caption(
    ctx: typer.Context,
    videos: Annotated[list[Path], typer.Argument(help="Video files.", show_default=False)],
    vlm: VlmOpt = None,
    encoder: EncoderOpt = None,
    llm: LlmOpt = None,
    projector: ProjectorOpt = None,
    prompt: Annotated[str, typer.Option("--prompt", help="What to ask about each video.")] = DEFAULT_PROMPT,
    frames: Annotated[Optional[int], typer.Option("--frames", min=1, help="Frames per video (default: the model's).")] = None,
    fps: Annotated[Optional[float], typer.Option("--fps", min=0.001, help="Sample this many frames per second instead.")] = None,
    min_frames: Annotated[int, typer.Option("--min-frames", min=1, help="With --fps: at least this many.")] = 1,
    max_frames: Annotated[Optional[int], typer.Option("--max-frames", min=1, help="With --fps: at most this many.")] = None,
    start: Annotated[Optional[float], typer.Option("--start", min=0, help="Start of the window, seconds.")] = None,
    end: Annotated[Optional[float], typer.Option("--end", min=0, help="End of the window, seconds.")] = None,
    max_new_tokens: MaxNewTokensOpt = 128,
    temperature: Annotated[Optional[float], typer.Option("--temperature", min=0, help="Sample at this temperature (default: greedy).")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Random seed for sampling.")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write results to this file.")] = None,
    output_format: Annotated[Format, typer.Option("--format", help="text, json or jsonl.")] = Format.text,
    dtype: DtypeOpt = None,
    device: DeviceOpt = None,
    offline: OfflineOpt = False,
) -> None:
    """Caption videos. Default model: the end-to-end VLM `recommend` picks for this machine."""
    from vlmkit.captioning import caption as run_caption

    records = run_caption(videos, vlm=vlm, encoder=encoder, llm=llm, projector=projector, prompt=prompt,
                          frames=frames, fps=fps, min_frames=min_frames, max_frames=max_frames, start=start, end=end,
                          max_new_tokens=max_new_tokens, temperature=temperature, seed=seed, dtype=dtype,
                          device=device, offline=offline, registry=registry_from(ctx))
    text = _format(records, output_format)
    if output:
        output.write_text(text, encoding="utf-8")
        stderr.print(f"Wrote {len(records)} record(s) to {output}", highlight=False)
    else:
        stdout.out(text, end="", highlight=False)
    failed = [r for r in records if r.status != "ok"]
    for r in failed:
        stderr.print(f"[bold red]Error:[/bold red] {escape(f'{r.video}: {r.error}')}", highlight=False)
    if failed:
        raise typer.Exit(1)


def _format(records, output_format: Format) -> str:
    if output_format is Format.jsonl:
        return "".join(json.dumps(to_jsonable(r)) + "\n" for r in records)
    if output_format is Format.json:
        return json.dumps(to_jsonable(records), indent=2) + "\n"
    return "".join(f"{r.video}: {r.caption}\n" for r in records if r.status == "ok")
