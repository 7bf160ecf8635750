"""`train`: one training run from options to a projector, resumable, as the CLI and notebooks call it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from vlmkit.errors import OutOfMemoryError, UsageError
from vlmkit.memory import estimate_training
from vlmkit.registry import Registry, load_registry
from vlmkit.training.commands import caption_command
from vlmkit.training.data import Skipped, read_datasets
from vlmkit.training.options import TrainOptions
from vlmkit.training.run_folder import RunFolder, write_atomic


@dataclass
class TrainSummary:
    output: str
    projector: str
    steps: int
    total_steps: int
    samples_seen: int
    train_samples: int
    val_samples: int
    global_batch: int
    train_loss: float | None
    val_loss: float | None
    seconds: float
    resumed_from: int  # the step this session started at (0: a new run)
    interrupted: bool
    encoded: int  # encoder calls this session
    cache_hits: int
    skipped: list[Skipped] = field(default_factory=list)
    caption_command: str = ""

    @property
    def done(self) -> bool:
        return self.steps >= self.total_steps


def train(*, encoder: str, llm: str, data: str | list[str], output: str, registry: Registry | None = None,
          on_progress: Callable[[str, dict], None] | None = None, stop: threading.Event | None = None,
          **options) -> TrainSummary:
    """Train a projector for `encoder` + `llm` on captioned videos/images; rerun the same call to resume.

    `options` are TrainOptions' fields (frames, pool, epochs, max_steps, batch_size, grad_accum, lr, ...).
    `on_progress(kind, info)` hears about cache building ("cache") and each step ("step").
    Setting `stop` ends the run at the next step boundary, saved and resumable.
    """
    options = TrainOptions(encoder=encoder, llm=llm, data=tuple([data] if isinstance(data, str) else data),
                           output=str(output), **options)
    options.validate()
    registry = registry or load_registry()
    encoder_entry, llm_entry = registry.encoder(encoder), registry.llm(llm)
    options = _with_keys(options, encoder_entry.key, llm_entry.key)
    folder = RunFolder(output)
    resuming = folder.check_or_create(options)
    dataset = read_datasets(list(options.data), options.image_folder)
    train_samples, val_samples = dataset.split(options.val_fraction)
    if not train_samples:
        raise UsageError(f"All {len(val_samples)} samples were held out for validation",
                         "Lower --val-fraction, or add training data.")

    from vlmkit.training import distributed

    dist, device = distributed.start(options.device)
    try:
        return _run(options, registry, encoder_entry, llm_entry, folder, resuming, dataset, train_samples,
                    val_samples, dist, device, on_progress or (lambda kind, info: None), stop)
    finally:
        distributed.stop(dist)


def _run(options, registry, encoder_entry, llm_entry, folder, resuming, dataset, train_samples, val_samples, dist,
         device, on_progress, stop) -> TrainSummary:
    import torch

    from vlmkit.loading import load, resolve_device, resolve_dtype
    from vlmkit.projector import Projector, ProjectorInfo
    from vlmkit.training import distributed
    from vlmkit.training.features import FeatureSource
    from vlmkit.training.loop import BatchPlan, Trainer

    plan = BatchPlan.make(options, len(train_samples), dist.world)
    check_memory(options, encoder_entry, llm_entry, plan.batch_size, device)  # before loading anything
    device = resolve_device(device)
    dtype = resolve_dtype(options.dtype, device)
    if dist.rank == 0:
        folder.path.mkdir(parents=True, exist_ok=True)
        folder.write_config(options)
    model = load(encoder=encoder_entry.key, llm=llm_entry.key, registry=registry, dtype=options.dtype, device=device,
                 offline=options.offline, smoke_test=False)
    backend = model.backend
    encoder, llm, tokenizer = backend.encoder, backend.llm, backend.tokenizer
    from vlmkit.vision import FAMILIES

    feature_layer = options.feature_layer
    if feature_layer is None:
        feature_layer = FAMILIES[encoder_entry.family].train_feature_layer
    encoder.feature_layer, encoder.pool = feature_layer, options.pool
    llm.requires_grad_(False)
    encoder.model.requires_grad_(False)
    if device.startswith("cuda"):  # recompute each layer in backward instead of keeping its activations
        llm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        llm.train()
    torch.manual_seed(options.seed)
    projector = Projector(encoder.feature_dim, llm.config.hidden_size).to(device)  # float32 weights
    identity = {"encoder": encoder_entry.key, "revision": encoder_entry.revision,
                "feature_layer": feature_layer, "pool": options.pool}
    features = FeatureSource(encoder, frames=options.frames, identity=identity, cache_dir=options.cache_dir)
    skipped = list(dataset.skipped)
    if options.cache_dir:
        train_samples, val_samples = _build_cache(features, train_samples, val_samples, skipped, on_progress, dist,
                                                  stop)
        if not train_samples:
            raise UsageError("No training sample could be decoded", "See the files named above; are they videos?")
        plan = BatchPlan.make(options, len(train_samples), dist.world)

    info = ProjectorInfo(encoder_entry.key, llm_entry.key, encoder.feature_dim, llm.config.hidden_size,
                         feature_layer, options.pool, options.frames, encoder_entry.revision,
                         llm_entry.revision)
    trainer = Trainer(llm=llm, tokenizer=tokenizer, encoder=encoder,
                      projector=distributed.wrap(projector, dist, device), features=features,
                      train=train_samples, val=val_samples, options=options, plan=plan, dist=dist,
                      folder=folder, dtype=dtype, device=device, keys=backend.keys, info=info,
                      on_step=lambda metrics: on_progress("step", metrics), stop=stop)
    if resuming:
        trainer.resume()
    elif dist.rank == 0:
        folder.keep_metrics_until(0)  # a run killed before its first save starts again from nothing
    started_at = trainer.state.step
    began = time.perf_counter()
    try:
        state = trainer.run()
    except torch.OutOfMemoryError:
        raise OutOfMemoryError(f"Out of GPU memory training with --batch-size {plan.batch_size}",
                               f"Try --batch-size {max(1, plan.batch_size // 2)} (with a larger --grad-accum "
                               "to keep the global batch).") from None
    summary = TrainSummary(
        output=str(folder.path), projector=str(folder.projector), steps=state.step, total_steps=plan.total_steps,
        samples_seen=state.samples_seen, train_samples=len(train_samples), val_samples=len(val_samples),
        global_batch=plan.global_batch, train_loss=state.last_loss, val_loss=state.last_val_loss,
        seconds=time.perf_counter() - began, resumed_from=started_at,
        interrupted=state.step < plan.total_steps, encoded=features.counts.encoded,
        cache_hits=features.counts.cache_hits, skipped=skipped + state.skipped,
        caption_command=caption_command(encoder_entry.key, llm_entry.key, str(folder.projector),
                                        None if options.prompt == TrainOptions.prompt else options.prompt))
    if dist.rank == 0 and (summary.steps > started_at or not folder.report.is_file()):  # a finished run's stays
        write_atomic(folder.report, render_report(summary, options, state.elapsed))
    return summary


def check_memory(options: TrainOptions, encoder_entry, llm_entry, batch_size: int, device: str | None) -> None:
    """Refuse before loading when the training estimate exceeds the GPU's free memory."""
    if device == "cpu":
        return
    import vlmkit.gpu

    probe = vlmkit.gpu.probe_gpus()
    if not probe.devices:
        return
    index = int(device.split(":")[1]) if device and ":" in device else 0
    gpu = probe.devices[min(index, len(probe.devices) - 1)]
    dtype = options.dtype or ("bfloat16" if gpu.bf16 else "float16")
    estimate = estimate_training(encoder_entry, llm_entry, frames=options.frames, pool=options.pool,
                                 batch_size=batch_size, dtype=dtype)
    if estimate.total_bytes <= gpu.free_bytes:
        return
    fitting = next((b for b in range(batch_size - 1, 0, -1) if estimate_training(
        encoder_entry, llm_entry, frames=options.frames, pool=options.pool, batch_size=b,
        dtype=dtype).total_bytes <= gpu.free_bytes), None)
    hint = (f"Use --batch-size {fitting} (with --grad-accum to keep the global batch)" if fitting else
            "Even --batch-size 1 does not fit: use a smaller --llm, fewer --frames, or a larger --pool")
    raise OutOfMemoryError(
        f"Training {encoder_entry.key} + {llm_entry.key} at --batch-size {batch_size} needs about "
        f"{estimate.total_bytes / 2**30:.1f} GiB; GPU {index} has {gpu.free_bytes / 2**30:.1f} GiB free",
        hint + "; `vlmkit recommend --train` shows the estimates.")


def _build_cache(features, train_samples, val_samples, skipped, on_progress, dist, stop):
    """Encode every sample once into the cache (resumable: finished shards are kept); drop the bad ones."""
    from vlmkit.training.features import SampleError

    everything = train_samples + val_samples
    mine = everything[dist.rank::dist.world]
    bad = set()
    for done, sample in enumerate(mine, start=1):
        if stop is not None and stop.is_set() and dist.world == 1:  # Ctrl-C: the shards written so far are kept
            break
        try:
            features(sample)
        except SampleError as exc:
            bad.add(sample.key)
            skipped.append(Skipped(sample.key, str(exc)))
        on_progress("cache", {"done": done, "total": len(mine), "encoded": features.counts.encoded})
    if dist.world > 1:  # every process needs the same sample list
        import torch.distributed

        gathered = [None] * dist.world
        torch.distributed.all_gather_object(gathered, sorted(bad))
        bad = set().union(*map(set, gathered))
    return [s for s in train_samples if s.key not in bad], [s for s in val_samples if s.key not in bad]


def _with_keys(options: TrainOptions, encoder: str, llm: str) -> TrainOptions:
    """Aliases resolved to registry keys, so that `--llm Qwen/Qwen3-8B` and `--llm qwen3-8b` are one run."""
    from dataclasses import replace

    return replace(options, encoder=encoder, llm=llm)


def render_report(summary: TrainSummary, options: TrainOptions, trained_seconds: float) -> str:
    def loss(value):
        return "n/a" if value is None else f"{value:.4f}"

    state = "finished" if summary.done else f"stopped at step {summary.steps} of {summary.total_steps}, resumable"
    lines = [
        f"vlmkit train: {options.encoder} + {options.llm}, {state}",
        f"steps            {summary.steps} of {summary.total_steps} (global batch {summary.global_batch})",
        f"samples          {summary.train_samples} train, {summary.val_samples} validation; "
        f"{summary.samples_seen} trained on",
        f"train loss       {loss(summary.train_loss)} (last step)",
        f"validation loss  {loss(summary.val_loss)}",
        f"training time    {trained_seconds:.1f} s",
        f"features         {summary.encoded} encoded, {summary.cache_hits} read from the cache (this session)",
        f"skipped          {len(summary.skipped)} sample(s)",
    ]
    lines += [f"  {s.where}: {s.reason}" for s in summary.skipped]
    lines += [f"projector        {Path(summary.projector)}", f"caption with     {summary.caption_command}"]
    return "\n".join(lines) + "\n"
