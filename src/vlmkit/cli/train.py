"""`vlmkit train`: align a projector so that an encoder + LLM pair can caption (resumable)."""

from __future__ import annotations

import shlex
import sys
import threading
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from vlmkit.cli.interrupts import FirstInterruptSets
from vlmkit.cli.options import DeviceOpt, DtypeOpt, OfflineOpt, RegistryOpt
from vlmkit.cli.render import stderr
from vlmkit.cli.state import registry_from
from vlmkit.prompts import DEFAULT_PROMPT

PLAIN_EVERY_SECONDS = 10.0


def train(
    ctx: typer.Context,
    encoder: Annotated[str, typer.Option("--encoder", help="Vision encoder key (frozen).", show_default=False)],
    llm: Annotated[str, typer.Option("--llm", help="LLM key (frozen).", show_default=False)],
    data: Annotated[list[Path], typer.Option("--data", help="Captions: vlmkit caption records, JSONL/CSV of {video|image, caption}, or LLaVA JSON. Repeat for more.", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="Run folder; rerun the same command to resume.", show_default=False)],
    image_folder: Annotated[Optional[Path], typer.Option("--image-folder", help="Where LLaVA JSON's image paths start.")] = None,
    prompt: Annotated[str, typer.Option("--prompt", help="The prompt captions answer (use the same with caption).")] = DEFAULT_PROMPT,
    frames: Annotated[int, typer.Option("--frames", min=1, help="Frames per video.")] = 8,
    pool: Annotated[int, typer.Option("--pool", min=1, help="P x P average pooling of each frame's patch grid.")] = 1,
    feature_layer: Annotated[Optional[int], typer.Option("--feature-layer", help="Encoder hidden state to train on (default: the penultimate, -2; a ConvNeXt's last, -1).")] = None,
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Passes over the data.")] = 1,
    max_steps: Annotated[Optional[int], typer.Option("--max-steps", min=1, help="Stop after this many optimizer steps (overrides --epochs).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Samples per forward pass, per process.")] = 8,
    grad_accum: Annotated[Optional[int], typer.Option("--grad-accum", min=1, help="Micro-batches per step (default: a global batch of 256 where data allows).")] = None,
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate (AdamW).")] = 1e-3,
    warmup: Annotated[float, typer.Option("--warmup", help="Fraction of steps of linear warmup, then cosine.")] = 0.03,
    val_fraction: Annotated[float, typer.Option("--val-fraction", help="Samples held out for validation (by a hash of the path).")] = 0.02,
    eval_every: Annotated[int, typer.Option("--eval-every", min=1, help="Validation loss and sample captions every N steps.")] = 200,
    save_every: Annotated[int, typer.Option("--save-every", min=1, help="Save a resumable checkpoint every N steps.")] = 50,
    cache_dir: Annotated[Optional[Path], typer.Option("--cache-dir", help="Keep encoder features here: later epochs and runs skip decoding.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed for the projector's initialisation and the data order.")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    dtype: DtypeOpt = None,
    device: DeviceOpt = None,
    offline: OfflineOpt = False,
    registry: RegistryOpt = None,
) -> None:
    """Train a projector (frozen encoder and LLM) on captioned videos or images, e.g. a VLM's captions."""
    from vlmkit.extras import require_run_extra

    require_run_extra("`vlmkit train`")
    from vlmkit.training import train as run_training

    stop = threading.Event()
    progress = _Progress(quiet)
    with FirstInterruptSets(stop, "Saving at the end of this step (Ctrl-C again to stop now; the last save stands)…"):
        try:
            summary = run_training(
                encoder=encoder, llm=llm, data=[str(d) for d in data], output=str(output),
                image_folder=str(image_folder) if image_folder else None, prompt=prompt, frames=frames, pool=pool,
                feature_layer=feature_layer, epochs=epochs, max_steps=max_steps, batch_size=batch_size,
                grad_accum=grad_accum, lr=lr, warmup=warmup, val_fraction=val_fraction, eval_every=eval_every,
                save_every=save_every, cache_dir=str(cache_dir) if cache_dir else None, seed=seed, dtype=dtype,
                device=device, offline=offline, registry=registry_from(ctx, registry), on_progress=progress, stop=stop)
        finally:
            progress.close()
    _print_summary(summary, quiet)
    if summary.interrupted:
        raise typer.Exit(130)


def _print_summary(summary, quiet: bool) -> None:
    def loss(value):
        return "n/a" if value is None else f"{value:.4f}"

    minutes, seconds = divmod(summary.seconds, 60)
    resumed = f" (resumed at step {summary.resumed_from})" if summary.resumed_from else ""
    stderr.print(f"Trained {summary.steps} of {summary.total_steps} steps{resumed} in {int(minutes)}m{seconds:04.1f}s: "
                 f"train loss {loss(summary.train_loss)}, validation loss {loss(summary.val_loss)}; "
                 f"{summary.train_samples} train / {summary.val_samples} validation samples, "
                 f"global batch {summary.global_batch}", highlight=False)
    stderr.print(f"Features: {summary.encoded} encoded, {summary.cache_hits} from the cache; "
                 f"skipped {len(summary.skipped)} sample(s)" + (" (listed in report.txt)" if summary.skipped else ""),
                 highlight=False)
    for skipped in summary.skipped[:5]:
        stderr.print(f"  skipped {escape(skipped.where)}: {escape(skipped.reason)}", highlight=False)
    if summary.interrupted:
        stderr.print(f"Interrupted; saved at step {summary.steps}. Resume with: "
                     f"{escape(shlex.join(['vlmkit', *sys.argv[1:]]))}", highlight=False)
        return
    stderr.print(f"Projector: {escape(summary.projector)}", highlight=False)
    stderr.print(f"Caption with: {escape(summary.caption_command)}", highlight=False)


class _Progress:
    """A bar with loss, learning rate, samples/s and time left on a terminal; plain lines in a log."""

    def __init__(self, quiet: bool) -> None:
        self.quiet, self.bar, self.task, self.last_line, self.kind = quiet, None, None, 0.0, None
        self.started: float | None = None
        self.first = 0

    def __call__(self, kind: str, info: dict) -> None:
        if self.quiet:
            return
        if kind != self.kind:
            self.close()
            self.kind, self.started = kind, None
            if stderr.is_terminal:
                from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

                label = "caching features" if kind == "cache" else "training"
                self.bar = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(),
                                    TextColumn("{task.fields[status]}"), TimeRemainingColumn(), console=stderr)
                self.task = self.bar.add_task(label, total=info.get("total") or info.get("total_steps"), status="")
                self.bar.start()
        done, total = (info["done"], info["total"]) if kind == "cache" else (info["step"], info["total_steps"])
        status = (f"{info['encoded']} encoded" if kind == "cache" else
                  f"loss {_number(info['loss'])} lr {info['lr']:.2e} {info['samples_per_s']:.1f} samples/s"
                  + (f" val {info['val_loss']:.4f}" if "val_loss" in info else ""))
        if self.bar:
            self.bar.update(self.task, completed=done, status=status)
            return
        now = time.perf_counter()
        if self.started is None:
            self.started, self.first = now, done - 1
        if now - self.last_line >= PLAIN_EVERY_SECONDS or done == total or "val_loss" in info:
            self.last_line = now
            what = "features" if kind == "cache" else "steps"
            rate = (done - self.first) / max(now - self.started, 1e-9)  # this session's pace
            left = f", about {(total - done) / rate:.0f} s left" if done < total and done > self.first + 1 else ""
            stderr.print(f"{done}/{total} {what}, {status}{left}", highlight=False)

    def close(self) -> None:
        if self.bar:
            self.bar.stop()
            self.bar = None


def _number(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"
