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
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Videos per generate call to plan for.")] = 1,
    resolution: Annotated[str, typer.Option("--resolution", metavar="WxH", help="Video size to plan for (Qwen3-VL's visual tokens depend on it).")] = "1280x720",
    train: Annotated[bool, typer.Option("--train", help="Also estimate training a projector (`vlmkit train`) for each encoder + LLM.")] = False,
    train_batch_size: Annotated[int, typer.Option("--train-batch-size", min=1, help="With --train: `vlmkit train --batch-size`.")] = 8,
    pool: Annotated[int, typer.Option("--pool", min=1, help="With --train: `vlmkit train --pool`.")] = 1,
    as_json: JsonOpt = False,
    registry: RegistryOpt = None,
) -> None:
    """Recommend an encoder + LLM (and an end-to-end VLM) that fit the GPU, with memory estimates."""

    from vlmkit.planner import recommend as plan
    from vlmkit.visual_tokens import parse_resolution

    result = plan(registry=registry_from(ctx, registry), gpu=gpu, vram_gb=vram, frames=frames, max_new_tokens=max_new_tokens,
                  encoder=encoder, llm=llm, vlm=vlm, dtype=dtype, device=device, batch_size=batch_size,
                  resolution=parse_resolution(resolution))
    training = _training_estimates(ctx, result, train_batch_size, pool) if train else None
    for message in result.warnings:
        warn(message)
    if as_json:
        print_json(to_document(result) | _training_document(ctx, result, training, train_batch_size, pool))
    else:
        _print(result)
        _print_training(ctx, result, training, train_batch_size, pool)
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
        "batch_size": result.batch_size,
        "resolution": "{}x{}".format(*result.resolution),
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
            "max_context": e.max_context, "max_frames": c.max_frames, "max_batch": c.max_batch,
            "breakdown": dict(e.breakdown)}


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
    batch = f", batch {result.batch_size}" if result.batch_size > 1 else ""
    stdout.print(f"[bold]dtype[/bold]  {result.dtype}   frames {result.frames}, max new tokens {result.max_new_tokens}"
                 f"{batch}, video {result.resolution[0]}x{result.resolution[1]}", highlight=False)
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
                     f"up to {v.max_frames} frames, batches of up to {v.max_batch} videos "
                     "(the default for `vlmkit caption`)", highlight=False)
    if len(result.candidates) > 1:
        table = Table("candidate", "estimate", "fits", "max frames", "max batch", box=None, pad_edge=False,
                      title=f"\nOther candidates at {result.frames} frames", title_justify="left")
        for c in result.candidates[:CANDIDATE_ROWS]:
            fits = "[green]yes[/green]" if c.fits else (
                "[red]no (context)[/red]" if not c.estimate.within_context else "[red]no[/red]")
            table.add_row(c.label + (" (tier)" if c.tier else ""), gib(c.estimate.total_bytes), fits,
                          str(c.max_frames), str(c.max_batch))
        stdout.print(table)
        if len(result.candidates) > CANDIDATE_ROWS:
            stdout.print(f"… and {len(result.candidates) - CANDIDATE_ROWS} more (--json lists all)")


def _print_estimate(c) -> None:
    e = c.estimate
    parts = ", ".join(f"{name.replace('_', ' ')} {gib(size)}" for name, size in e.breakdown.items() if size)
    verdict = "[green]fits[/green]" if c.fits else "[red]does not fit[/red]"
    stdout.print(f"  estimate {gib(e.total_bytes)} ({parts}) — {verdict}", highlight=False)
    per_video = " per video" if e.batch > 1 else ""
    stdout.print(f"  context {e.context_tokens:,} of {e.max_context:,} tokens{per_video}; up to {c.max_frames} frames "
                 f"fit; at {e.frames} frames, batches of up to {c.max_batch} videos", highlight=False)



# --- Training a projector (`--train`, and how to get a projector for a recommended pair) ----------

def _training_estimates(ctx, result, batch_size: int, pool: int) -> dict[str, object]:
    """{candidate label: MemoryEstimate} for each encoder + LLM, by the estimator `vlmkit train` checks with."""
    from vlmkit.memory import estimate_training

    registry = registry_from(ctx)
    return {c.label: estimate_training(registry.encoder(c.encoder), registry.llm(c.llm), frames=result.frames,
                                       pool=pool, batch_size=batch_size, dtype=result.dtype,
                                       on_gpu=result.gpu.source != "cpu")
            for c in result.candidates if not c.vlm}


def _projector_commands(ctx, result) -> list[str] | None:
    """The two-step distillation for the recommended pair, with a --batch-size whose training fits."""
    from vlmkit.memory import estimate_training
    from vlmkit.training.commands import distillation_commands
    from vlmkit.training.options import TrainOptions

    choice = result.choice
    if not (choice and choice.fits and not choice.vlm):
        return None
    registry = registry_from(ctx)
    encoder, llm = registry.encoder(choice.encoder), registry.llm(choice.llm)
    fitting = next((b for b in range(TrainOptions.batch_size, 0, -1) if estimate_training(
        encoder, llm, frames=result.frames, batch_size=b, dtype=result.dtype,
        on_gpu=result.gpu.source != "cpu").total_bytes <= result.gpu.free_bytes), None)
    commands = distillation_commands(choice.encoder, choice.llm, result.vlm_choice.vlm if result.vlm_choice else None)
    if fitting and fitting < TrainOptions.batch_size:
        commands[1] += f" --batch-size {fitting}"
    return commands


def _training_document(ctx, result, training, batch_size: int, pool: int) -> dict:
    document = {"projector_commands": _projector_commands(ctx, result)}
    if training is not None:
        document["training"] = {"batch_size": batch_size, "pool": pool, "estimates": [
            {"label": label, "total_bytes": e.total_bytes, "fits": e.total_bytes <= result.gpu.free_bytes,
             "breakdown": dict(e.breakdown)} for label, e in training.items()]}
    return document


def _print_training(ctx, result, training, batch_size: int, pool: int) -> None:
    commands = _projector_commands(ctx, result)
    if commands:
        stdout.print(f"\n[bold]Projector[/bold]  none is published for {result.choice.label}; train one "
                     "(captions from an end-to-end VLM, then the projector):", highlight=False)
        for command in commands:
            stdout.print(f"  {command}", highlight=False, soft_wrap=True)
    if training is None:
        return
    table = Table("encoder + LLM", "training estimate", "fits", box=None, pad_edge=False, title_justify="left",
                  title=f"\nTraining a projector at {result.frames} frames, --batch-size {batch_size}, --pool {pool}")
    for label, estimate in list(training.items())[:CANDIDATE_ROWS]:
        fits = estimate.total_bytes <= result.gpu.free_bytes
        table.add_row(label, gib(estimate.total_bytes), "[green]yes[/green]" if fits else "[red]no[/red]")
    stdout.print(table)
