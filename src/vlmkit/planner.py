"""Which models fit a GPU, and why: the tier from the design document, or the best that fits."""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field

import vlmkit.gpu
from vlmkit.errors import UsageError
from vlmkit.memory import DTYPE_BYTES, MemoryEstimate, estimate_composed, estimate_vlm
from vlmkit.model_choice import check_model_options
from vlmkit.registry import LLM, VLM, Encoder, Registry, load_registry
from vlmkit.visual_tokens import DEFAULT_RESOLUTION

DRIVER_RESERVED_BYTES = 480 * 2**20  # what an idle H100 shows as used (NVML) before any process
MAX_FRAMES_SEARCHED = 2048
USUAL_NEW_TOKENS = 128  # the default --max-new-tokens
MAX_BATCH_SEARCHED = 1024
ENCODER_SHARE = 0.10  # when choosing freely, the encoder stays within 10% of the LLM's parameters


@dataclass(frozen=True)
class GpuTarget:
    name: str
    vram_bytes: int
    free_bytes: int
    compute_capability: tuple[int, int] | None
    bf16: bool
    source: str  # "nvml", "--gpu", "--vram" or "cpu"


@dataclass(frozen=True)
class Candidate:
    estimate: MemoryEstimate
    fits: bool
    max_frames: int  # the most frames that still fit (memory and context) at the planned batch size, 0 if none
    max_batch: int = 0  # the largest batch of videos that fits at the planned frames, 0 if none
    encoder: str | None = None
    llm: str | None = None
    vlm: str | None = None
    tier: bool = False  # the design document's combination for this GPU

    @property
    def label(self) -> str:
        return self.vlm or f"{self.encoder} + {self.llm}"

    def keys(self) -> dict[str, str]:
        return {"vlm": self.vlm} if self.vlm else {"encoder": self.encoder, "llm": self.llm}


@dataclass(frozen=True)
class Recommendation:
    gpu: GpuTarget
    dtype: str
    frames: int
    max_new_tokens: int
    choice: Candidate | None  # None when nothing fits
    vlm_choice: Candidate | None  # the end-to-end VLM `caption` uses by default
    candidates: tuple[Candidate, ...]
    reason: str
    warnings: tuple[str, ...] = field(default=())
    batch_size: int = 1
    resolution: tuple[int, int] = DEFAULT_RESOLUTION  # (width, height): Qwen3-VL's tokens depend on it

    def _repr_html_(self) -> str:  # Jupyter shows this table instead of the dataclass repr
        from vlmkit.notebook_html import recommendation_html

        return recommendation_html(self)


def recommend(*, registry: Registry | None = None, gpu: str | None = None, vram_gb: float | None = None,
              frames: int = 8, max_new_tokens: int = 128, encoder: str | None = None, llm: str | None = None,
              vlm: str | None = None, dtype: str | None = None, device: str | int | None = None, batch_size: int = 1,
              resolution: tuple[int, int] = DEFAULT_RESOLUTION) -> Recommendation:
    """Plan for this machine's GPU (NVML), a named GPU, or a memory size.

    device: as everywhere in vlmkit: "cpu", "cuda" (GPU 0), "cuda:N", or N for GPU N.
    """
    registry = registry or load_registry()
    _check_options(gpu, vram_gb, frames, max_new_tokens, encoder, llm, vlm, dtype)
    if batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, not {batch_size}", "Plan for one video: --batch-size 1.")
    target, warnings = _target(registry, gpu, vram_gb, vlmkit.gpu.parse_device(device))
    dtype, dtype_warning = _dtype(target, dtype)
    warnings += [dtype_warning] if dtype_warning else []
    plan = _Planner(registry, target, dtype, frames, max_new_tokens, batch_size, resolution)
    extra = dict(batch_size=batch_size, resolution=resolution)

    if vlm or encoder or llm:
        given = plan.vlm(registry.vlm(vlm)) if vlm else plan.composed(registry.encoder(encoder), registry.llm(llm))
        reason = "the combination you asked for " + ("fits" if given.fits else "does not fit")
        return Recommendation(target, dtype, frames, max_new_tokens, given, given if vlm else None, (given,),
                              reason + _why_not(given, target), tuple(warnings), **extra)

    candidates = plan.all_candidates()
    composed = [c for c in candidates if not c.vlm]
    vlms = [c for c in candidates if c.vlm]
    tier = next((c for c in composed if c.tier), None)
    if target.source == "cpu":
        smallest = _smallest_ungated(registry)
        choice = plan.composed(*smallest) if smallest else None
        vlm_choice = min(vlms, key=lambda c: c.estimate.total_bytes, default=None)
        reason = ("no GPU: the smallest combination that needs no access approval, to run on the CPU (slowly); "
                  "plan for a GPU with --gpu NAME")
    elif tier and tier.fits:
        choice, reason = tier, f"the design document's combination for {target.name}, and it fits"
        vlm_choice = _tier_vlm(registry, target, vlms)
    else:
        choice = next((c for c in composed if c.fits), None)
        vlm_choice = next((c for c in vlms if c.fits), None)
        if tier:
            reason = f"the design document's {tier.label} does not fit at {frames} frames; the largest that does"
        else:
            reason = "the largest combination that fits"
        if choice is None:
            reason = _why_nothing_fits(registry, target, dtype, frames, max_new_tokens)
            reason += " (or a smaller --batch-size)" if batch_size > 1 else ""
    return Recommendation(target, dtype, frames, max_new_tokens, choice, vlm_choice, tuple(candidates), reason,
                          tuple(warnings), **extra)


class _Planner:
    def __init__(self, registry: Registry, target: GpuTarget, dtype: str, frames: int, max_new_tokens: int,
                 batch_size: int = 1, resolution: tuple[int, int] = DEFAULT_RESOLUTION):
        self.registry, self.target, self.dtype = registry, target, dtype
        self.frames, self.max_new_tokens = frames, max_new_tokens
        self.batch_size, self.resolution = batch_size, resolution
        self.tier = registry.tier(target.name) if target.source != "--vram" else None
        self.on_gpu = target.source != "cpu"

    def composed(self, encoder: Encoder, llm: LLM) -> Candidate:
        def estimate(frames: int, batch: int) -> MemoryEstimate:
            return estimate_composed(encoder, llm, frames=frames, max_new_tokens=self.max_new_tokens,
                                     dtype=self.dtype, on_gpu=self.on_gpu, batch=batch)
        is_tier = bool(self.tier and (self.tier.encoder, self.tier.llm) == (encoder.key, llm.key))
        return self._candidate(estimate, encoder=encoder.key, llm=llm.key, tier=is_tier)

    def vlm(self, vlm: VLM) -> Candidate:
        def estimate(frames: int, batch: int) -> MemoryEstimate:
            return estimate_vlm(vlm, frames=frames, max_new_tokens=self.max_new_tokens, dtype=self.dtype,
                                on_gpu=self.on_gpu, batch=batch, resolution=self.resolution)
        return self._candidate(estimate, vlm=vlm.key, tier=bool(self.tier and self.tier.vlm == vlm.key))

    def all_candidates(self) -> list[Candidate]:
        """Each LLM with the largest fitting encoder within ENCODER_SHARE, the tier, and every VLM."""
        registry = self.registry
        pairs: list[tuple[Encoder, LLM]] = []
        # an encoder whose repo has no safetensors cannot be loaded: never pick one unasked
        encoders = sorted((e for e in registry.encoders.values() if e.safetensors), key=lambda e: e.params,
                          reverse=True)
        for llm in registry.llms.values():
            small_enough = [e for e in encoders if e.params <= ENCODER_SHARE * llm.params] or encoders[-1:]
            fitting = [e for e in small_enough if self.composed(e, llm).fits]
            pairs.append(((fitting or small_enough)[0], llm))
        if self.tier:
            pairs.append((registry.encoders[self.tier.encoder], registry.llms[self.tier.llm]))
        unique = {(e.key, m.key): (e, m) for e, m in pairs}.values()
        composed = [self.composed(e, m) for e, m in unique]
        composed.sort(key=lambda c: (c.fits, registry.llms[c.llm].params, registry.encoders[c.encoder].params),
                      reverse=True)
        vlms = [self.vlm(v) for v in registry.vlms.values()]
        vlms.sort(key=lambda c: (c.fits, registry.vlms[c.vlm].params), reverse=True)
        return composed + vlms

    def _candidate(self, estimate, **keys) -> Candidate:
        at_frames = estimate(self.frames, self.batch_size)
        fits = self._fits(at_frames)
        max_frames = largest_fitting(lambda n: self._fits(estimate(n, self.batch_size)), MAX_FRAMES_SEARCHED)
        max_batch = largest_fitting(lambda b: self._fits(estimate(self.frames, b)), MAX_BATCH_SEARCHED)
        return Candidate(at_frames, fits, max_frames, max_batch, **keys)

    def _fits(self, estimate: MemoryEstimate) -> bool:
        return estimate.within_context and estimate.total_bytes <= self.target.free_bytes


def largest_fitting(fits, limit: int) -> int:
    """The largest n in 1..limit with fits(n), 0 if none: a binary search, since memory grows with n."""
    if not fits(1):
        return 0
    low, high = 1, limit
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if fits(mid) else (low, mid - 1)
    return low


def _target(registry: Registry, gpu: str | None, vram_gb: float | None, device: str | None):
    if gpu:
        spec = registry.gpu(gpu)
        free = spec.memory_bytes - DRIVER_RESERVED_BYTES
        return GpuTarget(spec.name, spec.memory_bytes, free, spec.capability, spec.bf16, "--gpu"), []
    if vram_gb is not None:
        total = int(vram_gb * 1e9)
        target = GpuTarget(f"{vram_gb:g} GB GPU", total, total - DRIVER_RESERVED_BYTES, None, True, "--vram")
        return target, ["--vram assumes a GPU with native bfloat16; name the card with --gpu for fp16 cards"]
    probe = vlmkit.gpu.probe_gpus() if device != "cpu" else None  # the seam tests replace
    if probe is None or not probe.devices:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else 0
        target = GpuTarget("CPU", ram, ram, None, False, "cpu")
        if probe is None:
            return target, []
        return target, [f"No GPU: {probe.reason}. Plan for a GPU with --gpu NAME or --vram GB."]
    index = vlmkit.gpu.device_index(device or "cuda")
    if index >= len(probe.devices):
        raise UsageError(f"--device {device}: this machine has {len(probe.devices)} GPU(s)",
                         f"Use --device cuda:0..cuda:{len(probe.devices) - 1} (or cpu).")
    device = index
    d = probe.devices[index]
    known = _registry_gpu_name(registry, d.name, d.total_bytes)
    target = GpuTarget(known or d.name, d.total_bytes, d.free_bytes, d.compute_capability, d.bf16, "nvml")
    warnings = [f"GPU {device} has {_gib(d.used_bytes)} in use already; planning with the {_gib(d.free_bytes)} free"] \
        if d.used_bytes > 2 * DRIVER_RESERVED_BYTES else []
    return target, [*probe.notes, *warnings]  # e.g. MIG mode: each slice is planned on its own


def _why_nothing_fits(registry: Registry, target: GpuTarget, dtype: str, frames: int, max_new_tokens: int) -> str:
    """Name the option to lower: would the usual 128 new tokens fit? Would one frame?"""
    def fits_any(frames: int, tokens: int) -> bool:
        return any(c.fits for c in _Planner(registry, target, dtype, frames, tokens).all_candidates() if not c.vlm)

    free = _gib(target.free_bytes)
    if max_new_tokens > USUAL_NEW_TOKENS and fits_any(frames, USUAL_NEW_TOKENS):
        return (f"--max-new-tokens {max_new_tokens:,} is too large: no combination has room for that many new "
                f"tokens at {frames} frames (in its context and in {free}); ask for fewer")
    if frames > 1 and fits_any(1, max_new_tokens):
        return f"no combination fits {free} at {frames} frames: try fewer --frames"
    if fits_any(1, 1):
        return f"no combination fits {free} with these --frames and --max-new-tokens: lower both"
    return f"even the smallest combination needs more than {free}: plan for a larger GPU with --gpu or --vram"


def _smallest_ungated(registry: Registry) -> tuple[Encoder, LLM] | None:
    """What runs on a CPU without waiting for any approval; None without encoders or LLMs."""
    if not (registry.encoders and registry.llms):
        return None

    def smallest(entries):
        return min(entries, key=lambda e: (e.gated, not e.safetensors, e.params))
    return smallest(registry.encoders.values()), smallest(registry.llms.values())


def _registry_gpu_name(registry: Registry, nvml_name: str, total: int) -> str | None:
    """'NVIDIA H100 80GB HBM3' -> 'H100', so that the design document's tier applies.

    A registry name is looked for in NVML's, both without spaces or dashes, the registry's also without a
    memory-size suffix ('A100-40GB' -> 'A100', 'RTX-4090' -> 'RTX4090', which an RTX 3090 does not contain);
    the memory then tells the sizes apart.
    """
    compact = re.sub(r"[\s-]", "", nvml_name.upper())
    for spec in sorted(registry.gpus.values(), key=lambda s: len(s.name), reverse=True):
        base = re.sub(r"[\s-]", "", re.sub(r"-\d+GB$", "", spec.name.upper()))
        if base in compact and abs(spec.memory_bytes - total) < 0.08 * spec.memory_bytes:
            return spec.name
    return None


def _dtype(target: GpuTarget, asked: str | None) -> tuple[str, str | None]:
    if asked:
        return asked, None
    if target.source == "cpu":
        return "float32", None
    if target.bf16:
        return "bfloat16", None
    cc = ".".join(map(str, target.compute_capability or ()))
    return "float16", (f"{target.name} (compute capability {cc}) has no native bfloat16: using float16; "
                       "Qwen models trained in bfloat16 can overflow in float16")


def _tier_vlm(registry: Registry, target: GpuTarget, vlms: list[Candidate]) -> Candidate | None:
    tier = registry.tier(target.name)
    named = next((c for c in vlms if tier and c.vlm == tier.vlm and c.fits), None)
    return named or next((c for c in vlms if c.fits), None)


def _why_not(candidate: Candidate, target: GpuTarget) -> str:
    est = candidate.estimate
    if not est.within_context:
        return f": {est.context_tokens:,} tokens exceed the model's {est.max_context:,}-token context"
    if not candidate.fits:
        return f": needs {_gib(est.total_bytes)}, {_gib(target.free_bytes)} free"
    return ""


def _check_options(gpu, vram_gb, frames, max_new_tokens, encoder, llm, vlm, dtype) -> None:
    if gpu and vram_gb is not None:
        raise UsageError("--gpu and --vram both given", "Pick one: a GPU name or a memory size.")
    check_model_options(vlm=vlm, encoder=encoder, llm=llm)
    if frames < 1 or max_new_tokens < 1:
        raise UsageError("--frames and --max-new-tokens must be at least 1", "Plan for at least one frame and token.")
    if vram_gb is not None and not (math.isfinite(vram_gb) and vram_gb > 0):
        raise UsageError(f"--vram must be a positive number of GB, not {vram_gb:g}", "For a 24 GB card: --vram 24.")
    if dtype and dtype not in DTYPE_BYTES:
        raise UsageError(f"Unknown dtype '{dtype}'", f"Use one of: {', '.join(DTYPE_BYTES)}.")


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"
