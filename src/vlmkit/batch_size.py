"""`--batch-size auto`: the largest batch whose estimated peak fits the GPU's free memory.

On CUDA the free memory is what NVML reports before the model loads (the estimate includes the
weights), less a safety margin for the estimate's error and the caching allocator's fragmentation.
On a CPU the batch is the one benchmarks/bench_caption_cpu.py measured fastest. An explicit batch
size is kept, with a warning before loading when the estimate says it cannot fit.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import vlmkit.gpu
from vlmkit.errors import UsageError, VlmkitError
from vlmkit.memory import MemoryEstimate, estimate_composed, estimate_vlm
from vlmkit.planner import largest_fitting, recommend
from vlmkit.registry import LLM, VLM, Encoder, load_registry
from vlmkit.visual_tokens import RESIZED_FAMILIES

SAFETY_FRACTION = 0.08  # of NVML's free memory, kept back from the estimate
MAX_AUTO_BATCH = 128  # past this, longer prefill per batch buys little on any GPU vlmkit plans for
CPU_BATCH_SIZE = 16  # benchmarks/RESULTS.md section 7c: the fastest batch size measured on the CPU (tiny zoo)
PROBED_VIDEOS = 64  # Qwen3-VL: at most this many videos' sizes are read (evenly spread over the list)
GIB = 2**30


@dataclass(frozen=True)
class BatchChoice:
    size: int
    auto: bool
    estimate: MemoryEstimate | None = None  # at `size`; None on a CPU
    free_bytes: int | None = None  # NVML's free memory at the start; None on a CPU
    warning: str | None = None  # an explicit size the estimate says cannot fit
    resolution: tuple[int, int] | None = None  # the largest video size probed (Qwen3-VL)

    @property
    def message(self) -> str:
        """'batch 48: 61.2 of 79.1 GiB', printed before the run starts."""
        if self.estimate is None or self.free_bytes is None:
            return f"batch {self.size}" + (" (auto on a CPU)" if self.auto else "")
        return (f"batch {self.size}: {self.estimate.total_bytes / GIB:.1f} of {self.free_bytes / GIB:.1f} GiB"
                + (" (auto)" if self.auto else ""))


def choose_batch_size(asked: int | str, *, models: Sequence, frames: int, max_new_tokens: int, dtype: str,
                      device: str, videos: int, resolution: tuple[int, int] | None = None,
                      held_bytes: int = 0) -> BatchChoice:
    """`asked` is a number or "auto"; `models` the registry entries: (vlm,) or (encoder, llm).

    `held_bytes`: what this process holds on the GPU already (a model loaded before), counted as
    free since the estimate includes the weights.
    """
    auto = asked == "auto"
    cap = max(1, min(MAX_AUTO_BATCH, videos))

    def estimate(batch: int) -> MemoryEstimate:
        return estimate_peak(models, frames=frames, max_new_tokens=max_new_tokens, dtype=dtype, batch=batch,
                             resolution=resolution)

    if not device.startswith("cuda"):
        if not auto:
            return BatchChoice(int(asked), False)
        size = min(CPU_BATCH_SIZE, cap)
        ram = _available_ram()
        if models and ram:  # a large model on a small machine: only what the memory holds
            size = max(1, largest_fitting(lambda b: estimate(b).total_bytes <= ram * (1 - SAFETY_FRACTION), size))
        return BatchChoice(size, True)
    free = _free_bytes(device)
    if free is None:  # NVML cannot see the GPU torch uses: no estimate to go by
        return BatchChoice(min(CPU_BATCH_SIZE, cap) if auto else int(asked), auto)
    free += held_bytes
    budget = free * (1 - SAFETY_FRACTION)
    best = largest_fitting(lambda b: estimate(b).total_bytes <= budget, cap)
    if auto:
        size = max(best, 1)
        warning = None if best else _too_big(estimate(1), free, 1)
        return BatchChoice(size, True, estimate(size), free, warning, resolution)
    size = int(asked)
    at_size = estimate(size)
    warning = _too_big(at_size, free, size, best) if at_size.total_bytes > budget else None
    return BatchChoice(size, False, at_size, free, warning, resolution)


@dataclass(frozen=True)
class CaptionPlan:
    choice: BatchChoice
    keys: dict[str, str] | None  # the registry keys planned for (load these); None: a model given
    device: str


def plan_caption(asked: int | str, *, videos: Sequence[str], frames: int | None, max_frames: int | None,
                 max_new_tokens: int, registry=None, vlm: str | None = None, encoder: str | None = None,
                 llm: str | None = None, dtype: str | None = None, device: str | None = None,
                 model=None) -> CaptionPlan:
    """The batch size of a caption run, before its model loads (or for a `model` already loaded).

    Without named models, the VLM is the one `load` would pick (recommend's end-to-end choice),
    and the plan says which, so that the caller loads what was planned for.
    """
    from vlmkit.loading import resolve_device, resolve_dtype

    if asked != "auto" and int(asked) < 1:
        raise UsageError(f"--batch-size {asked}: give a number of at least 1, or auto",
                         "auto picks the largest batch that fits the GPU.")
    keys = None
    if model is not None:
        device, names = str(model.backend.device), dict(model.backend.keys)
        dtype = str(model.backend.dtype).removeprefix("torch.")
    else:
        device = resolve_device(device)
        if not (vlm or encoder):
            plan = recommend(registry=registry, frames=frames or max_frames or 8)
            vlm = plan.vlm_choice.vlm if plan.vlm_choice else None
        names = keys = {"vlm": vlm} if vlm else {"encoder": encoder, "llm": llm}
        dtype = str(resolve_dtype(dtype, device)).removeprefix("torch.")
    registry = registry or load_registry()
    models: tuple = ()
    if any(names.values()):
        try:
            models = (registry.vlm(names["vlm"]),) if names.get("vlm") else (registry.encoder(names["encoder"]),
                                                                              registry.llm(names["llm"]))
        except VlmkitError:  # a model outside the registry: nothing to estimate from
            models = ()
    if not models and device.startswith("cuda"):
        return CaptionPlan(BatchChoice(1 if asked == "auto" else int(asked), asked == "auto"), keys, device)
    held = 0
    if model is not None:
        import torch

        held = torch.cuda.memory_allocated(device)
    choice = plan_caption_batch(asked, models=models, videos=videos, frames=frames, max_frames=max_frames,
                                max_new_tokens=max_new_tokens, dtype=dtype, device=device, held_bytes=held)
    return CaptionPlan(choice, keys, device)


def plan_caption_batch(asked: int | str, *, models: Sequence, videos: Sequence[str], frames: int | None,
                       max_frames: int | None, max_new_tokens: int, dtype: str, device: str,
                       held_bytes: int = 0) -> BatchChoice:
    """The batch for a caption run, decided before the model loads. `frames`: --frames, else
    --max-frames (with --fps), else the model's default.

    For Qwen3-VL on CUDA the videos' sizes are probed (up to PROBED_VIDEOS of them), since its
    visual tokens depend on them; batches are planned for the largest, as a batch pads to it.
    """
    entry = models[0] if models else None
    frames = frames or max_frames or getattr(entry, "default_frames", 8)
    resolution = None
    if device.startswith("cuda") and getattr(entry, "family", None) in RESIZED_FAMILIES:
        resolution = largest_video_size(videos)
    return choose_batch_size(asked, models=models, frames=frames, max_new_tokens=max_new_tokens, dtype=dtype,
                             device=device, videos=len(videos), resolution=resolution, held_bytes=held_bytes)


def parse_batch_size(text: str) -> int | str:
    """'auto' or a whole number of at least 1 (the --batch-size option)."""
    if text.strip().lower() == "auto":
        return "auto"
    if text.strip().isdigit() and int(text) >= 1:
        return int(text)
    raise UsageError(f"--batch-size {text!r}: give a number of at least 1, or auto",
                     "auto (the default) picks the largest batch that fits the GPU.")


def estimate_peak(models: Sequence, *, frames: int, max_new_tokens: int, dtype: str, batch: int,
                  resolution: tuple[int, int] | None = None) -> MemoryEstimate:
    if len(models) == 1 and isinstance(models[0], VLM):
        return estimate_vlm(models[0], frames=frames, max_new_tokens=max_new_tokens, dtype=dtype, batch=batch,
                            resolution=resolution)
    encoder, llm = models
    assert isinstance(encoder, Encoder) and isinstance(llm, LLM)
    return estimate_composed(encoder, llm, frames=frames, max_new_tokens=max_new_tokens, dtype=dtype, batch=batch)


def largest_video_size(paths: Sequence[str], *, limit: int = PROBED_VIDEOS) -> tuple[int, int] | None:
    """The size with the most pixels among up to `limit` of the videos (headers only, no decoding)."""
    from vlmkit.frames import probe_video

    count = min(limit, len(paths))
    picked = sorted({round(i * (len(paths) - 1) / max(1, count - 1)) for i in range(count)})  # first to last
    sizes = []
    for path in (paths[i] for i in picked):
        try:
            info = probe_video(path, timeout=10)
        except Exception:  # noqa: BLE001 - a bad file is reported when the run reaches it
            continue
        sizes.append((info.width, info.height))
    return max(sizes, key=lambda s: s[0] * s[1], default=None)


def _available_ram(meminfo: str = "/proc/meminfo") -> int | None:
    """What a new process can use: Linux's MemAvailable, which counts the page cache the kernel
    drops on demand (sysconf's free pages do not, so they shrink after any large read)."""
    try:
        with open(meminfo, encoding="ascii") as lines:
            for line in lines:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not a POSIX system that says
        return None


def _free_bytes(device: str) -> int | None:
    index = int(device.partition(":")[2] or 0)
    probe = vlmkit.gpu.probe_gpus()  # the seam tests replace
    return probe.devices[index].free_bytes if index < len(probe.devices) else None


def _too_big(estimate: MemoryEstimate, free: int, size: int, best: int | None = None) -> str:
    need = f"batch {size} needs an estimated {estimate.total_bytes / GIB:.1f} GiB; {free / GIB:.1f} GiB is free"
    if best:
        return f"{need}: expect out-of-memory splits (--batch-size auto would choose {best})"
    return f"{need}: even one video may not fit (try fewer --frames or a smaller model)"
