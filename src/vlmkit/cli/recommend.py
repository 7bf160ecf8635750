"""`vlmkit recommend`: what fits this GPU (or another), and why."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.table import Table

from vlmkit.cli.options import (
    DeviceOpt,
    DtypeOpt,
    EncoderOpt,
    FramesOpt,
    JsonOpt,
    LlmOpt,
    MaxNewTokensOpt,
    RegistryOpt,
    VlmOpt,
)
from vlmkit.cli.render import gib, print_json, stdout, warn
from vlmkit.cli.state import registry_from

CANDIDATE_ROWS = 14


def recommend(
    ctx: typer.Context,
    gpu: Annotated[Optional[str], typer.Option("--gpu", help="Plan for this GPU instead (T4, L4, A100-40GB, H100, ...).")] = None,
    vram: Annotated[Optional[float], typer.Option("--vram", help="Plan for a GPU with this many GB.")] = None,
    frames: FramesOpt = 8,
    max_new_tokens: MaxNewTokensOpt = 128,
    encoder: EncoderOpt = None,
    llm: LlmOpt = None,
    vlm: VlmOpt = None,
    dtype: DtypeOpt = None,
    device: DeviceOpt = None,
    as_json: JsonOpt = False,
    registry: RegistryOpt = None,
) -> None:
    """Recommend an encoder + LLM (and an end-to-end VLM) that fit the GPU, with memory estimates."""

    from vlmkit.planner import recommend as plan

    result = plan(registry=registry_from(ctx, registry), gpu=gpu, vram_gb=vram, frames=frames, max_new_tokens=max_new_tokens,
                  encoder=encoder, llm=llm, vlm=vlm, dtype=dtype, device=device)
    for message in result.warnings:
        warn(message)
    if as_json:
        print_json(to_document(result))
    else:
        _print(result)
    if result.choice is None or not result.choice.fits:
        raise typer.Exit(1)


def to_document(result) -> dict:
    gpu = result.gpu
    choice = result.choice
    return {
        "gpu": {"name": gpu.name, "vram_bytes": gpu.vram_bytes, "free_bytes": gpu.free_bytes,
                "compute_capability": ".".join(map(str, gpu.compute_capability)) if gpu.compute_capability else None,
                "bf16": gpu.bf16, "source": gpu.source},
        "dtype": result.dtype,
        "frames": result.frames,
        "max_new_tokens": result.max_new_tokens,
        "reason": result.reason,
        "recommendation": choice.keys() if choice else None,
        "estimate": _estimate(choice) if choice else None,
        "vlm_recommendation": _candidate(result.vlm_choice) if result.vlm_choice else None,
        "candidates": [_candidate(c) for c in result.candidates],
        "warnings": list(result.warnings),
    }


def _estimate(c) -> dict:
    e = c.estimate
    return {"total_bytes": e.total_bytes, "fits": c.fits, "context_tokens": e.context_tokens,
            "max_context": e.max_context, "max_frames": c.max_frames, "breakdown": dict(e.breakdown)}


def _candidate(c) -> dict:
    return c.keys() | {"tier": c.tier} | _estimate(c)


def _print(result) -> None:
    gpu = result.gpu
    cc = f", compute capability {'.'.join(map(str, gpu.compute_capability))}" if gpu.compute_capability else ""
    if gpu.source == "cpu":
        stdout.print(f"[bold]GPU[/bold]    none: planning for the CPU with {gib(gpu.vram_bytes)} of memory", highlight=False)
    else:
        where = {"nvml": "detected", "--gpu": "planned with --gpu", "--vram": "planned with --vram"}[gpu.source]
        stdout.print(f"[bold]GPU[/bold]    {gpu.name} ({where}): {gib(gpu.vram_bytes)} total, "
                     f"{gib(gpu.free_bytes)} usable{cc}", highlight=False)
    stdout.print(f"[bold]dtype[/bold]  {result.dtype}   frames {result.frames}, max new tokens {result.max_new_tokens}",
                 highlight=False)
    choice = result.choice
    if choice and choice.fits:
        stdout.print(f"\n[bold green]Recommended[/bold green]  {choice.label}  — {result.reason}", highlight=False)
        _print_estimate(choice)
    elif choice:
        stdout.print(f"\n[bold red]Does not fit[/bold red]  {choice.label}  — {result.reason}", highlight=False)
        _print_estimate(choice)
    else:
        stdout.print(f"\n[bold red]Nothing fits[/bold red] — {result.reason}", highlight=False)
    if result.vlm_choice and result.vlm_choice is not choice:
        v = result.vlm_choice
        stdout.print(f"[bold]End-to-end VLM[/bold]  {v.label}: {gib(v.estimate.total_bytes)}, "
                     f"up to {v.max_frames} frames (the default for `vlmkit caption`)", highlight=False)
    if len(result.candidates) > 1:
        table = Table("candidate", "estimate", "fits", "max frames", box=None, pad_edge=False,
                      title=f"\nOther candidates at {result.frames} frames", title_justify="left")
        for c in result.candidates[:CANDIDATE_ROWS]:
            fits = "[green]yes[/green]" if c.fits else (
                "[red]no (context)[/red]" if not c.estimate.within_context else "[red]no[/red]")
            table.add_row(c.label + (" (tier)" if c.tier else ""), gib(c.estimate.total_bytes), fits,
                          str(c.max_frames))
        stdout.print(table)
        if len(result.candidates) > CANDIDATE_ROWS:
            stdout.print(f"… and {len(result.candidates) - CANDIDATE_ROWS} more (--json lists all)")


def _print_estimate(c) -> None:
    e = c.estimate
    parts = ", ".join(f"{name.replace('_', ' ')} {gib(size)}" for name, size in e.breakdown.items() if size)
    verdict = "[green]fits[/green]" if c.fits else "[red]does not fit[/red]"
    stdout.print(f"  estimate {gib(e.total_bytes)} ({parts}) — {verdict}", highlight=False)
    stdout.print(f"  context {e.context_tokens:,} of {e.max_context:,} tokens; up to {c.max_frames} frames fit",
                 highlight=False)
