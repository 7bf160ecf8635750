"""`load`: download what a choice of models needs, instantiate it, prove it runs, measure it."""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from vlmkit.backends.base import CaptionBackend
from vlmkit.errors import ModelLoadError, OutOfMemoryError, UsageError, VlmkitError
from vlmkit.extras import require_run_extra
from vlmkit.memory import estimate_composed, estimate_vlm
from vlmkit.model_choice import check_model_options, default_choice
from vlmkit.registry import Registry, load_registry


@dataclass(frozen=True)
class LoadReport:
    keys: dict[str, str]
    device: str
    dtype: str
    download_seconds: float
    load_seconds: float
    parameters: int
    estimate_bytes: int  # recommend's estimate for this choice at `frames`
    frames: int
    measured_bytes: int | None  # peak GPU memory used by this process; None on the CPU
    smoke_test: bool
    projector: str | None = None
    untrained_projector: bool = False  # encoder + LLM joined by a random projector: no use for captions


@dataclass
class LoadedModel:
    backend: CaptionBackend
    report: LoadReport


def load(*, vlm: str | None = None, encoder: str | None = None, llm: str | None = None,
         projector: str | Path | None = None, dtype: str | None = None, device: str | None = None,
         offline: bool = False, token: str | None = None, endpoint: str | None = None,
         registry: Registry | None = None, frames: int | None = None, smoke_test: bool = True,
         default: str = "composed") -> LoadedModel:
    """Load a VLM, or encoder + (projector) + LLM; with no keys, what `recommend` picks for this machine."""
    require_run_extra("Loading a model")
    import torch

    registry = registry or load_registry()
    check_model_options(vlm=vlm, encoder=encoder, llm=llm, projector=projector)
    if projector:
        from vlmkit.projector import check_projector_file

        check_projector_file(projector, encoder=encoder, llm=llm)  # before minutes of downloading
    device = resolve_device(device)
    if not (vlm or encoder):
        keys = default_choice(registry, kind=default, frames=frames, device=device).keys
        vlm, encoder, llm = keys.get("vlm"), keys.get("encoder"), keys.get("llm")
    torch_dtype = resolve_dtype(dtype, device)
    dtype_name = str(torch_dtype).removeprefix("torch.")

    from vlmkit.download import fetch_model

    started = time.perf_counter()
    entries = [registry.vlm(vlm)] if vlm else [registry.encoder(encoder), registry.llm(llm)]
    paths = [fetch_model(e, offline=offline, token=token, endpoint=endpoint) for e in entries]
    downloaded = time.perf_counter()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(device)
    names = " + ".join(e.key for e in entries)
    try:
        with _quiet_transformers():
            backend = _build(entries, paths, projector, torch_dtype, device)
            if smoke_test:
                backend.smoke_test()
    except torch.OutOfMemoryError:
        raise OutOfMemoryError(f"Out of GPU memory while loading {names}",
                               "Run `vlmkit recommend` to see what fits, or use a smaller model.") from None
    except VlmkitError:
        raise
    except Exception as exc:  # noqa: BLE001 - corrupt weights, a wrong family, a processor mismatch...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ModelLoadError(f"Cannot load {names}: {type(exc).__name__}: {first}",
                             "Are the files complete, and is the registry entry's `family` right for them? "
                             "VLMKIT_DEBUG=1 shows the traceback.") from exc
    loaded = time.perf_counter()
    frames = frames or backend.default_frames
    on_gpu = device.startswith("cuda")
    estimate = (estimate_vlm(entries[0], frames=frames, max_new_tokens=128, dtype=dtype_name, on_gpu=on_gpu) if vlm
                else estimate_composed(*entries, frames=frames, max_new_tokens=128, dtype=dtype_name, on_gpu=on_gpu))
    report = LoadReport(
        keys=backend.keys, device=device, dtype=dtype_name, download_seconds=downloaded - started,
        load_seconds=loaded - downloaded, parameters=backend.parameter_count(), estimate_bytes=estimate.total_bytes,
        frames=frames,
        measured_bytes=measure_gpu_bytes(device), smoke_test=smoke_test,
        projector=str(projector) if projector else None, untrained_projector=bool(encoder and not projector),
    )
    return LoadedModel(backend, report)


@contextmanager
def _quiet_transformers():
    """vlmkit reports what matters itself; transformers' load reports and per-tensor bars are noise.

    Restored afterwards: a notebook's own settings (and the Hub's download bars) are left as found.
    """
    from transformers.utils import logging as transformers_logging

    verbosity, bars = transformers_logging.get_verbosity(), transformers_logging.is_progress_bar_enabled()
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        transformers_logging.set_verbosity(verbosity)
        if bars:
            transformers_logging.enable_progress_bar()


def _build(entries, paths, projector, torch_dtype, device) -> CaptionBackend:
    if len(entries) == 1:
        from vlmkit.backends.end_to_end import EndToEndBackend

        return EndToEndBackend.from_pretrained(str(paths[0]), entries[0], dtype=torch_dtype, device=device)
    return _build_composed(entries, paths, projector, torch_dtype, device)


def _build_composed(entries, paths, projector_path, torch_dtype, device):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from vlmkit.backends.composed import ComposedBackend
    from vlmkit.projector import load_projector
    from vlmkit.vision import VisionEncoder, pooled_tokens

    encoder_entry, llm_entry = entries
    llm = AutoModelForCausalLM.from_pretrained(str(paths[1]), dtype=torch_dtype, attn_implementation="sdpa",
                                               use_safetensors=True).to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(paths[1]))
    encoder = VisionEncoder.from_pretrained(str(paths[0]), encoder_entry, dtype=torch_dtype, device=device)
    projector = None
    if projector_path:
        projector, info = load_projector(projector_path, encoder=encoder_entry.key, llm=llm_entry.key,
                                         encoder_dim=encoder.feature_dim, llm_dim=llm.config.hidden_size)
        projector = projector.to(device, torch_dtype).eval()
        encoder.feature_layer, encoder.pool = info.feature_layer, info.pool  # as it was trained
    keys = {"encoder": encoder_entry.key, "llm": llm_entry.key}
    backend = ComposedBackend(encoder, projector, llm, tokenizer, keys=keys, dtype=torch_dtype, device=device,
                              tokens_per_frame=pooled_tokens(encoder_entry.tokens_per_frame, encoder.pool),
                              max_context=llm_entry.max_context)
    if projector is not None and info.frames:
        backend.default_frames = info.frames
    return backend


def resolve_device(device: str | int | None) -> str:
    """cpu, cuda, cuda:N, or N for cuda:N (the same meaning as `recommend --device`)."""
    import torch

    from vlmkit.gpu import device_index, parse_device

    device = parse_device(device)
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {device}: no CUDA GPU is available to PyTorch", "Use --device cpu.")
    if device.startswith("cuda") and device_index(device) >= torch.cuda.device_count():
        raise UsageError(f"--device {device}: PyTorch sees {torch.cuda.device_count()} GPU(s)",
                         f"Use --device cuda:0..cuda:{torch.cuda.device_count() - 1} (or cpu).")
    return device


def resolve_dtype(dtype: str | None, device: str):
    """bfloat16 where the GPU has it natively (compute capability >= 8.0), float16 before; float32 on the CPU."""
    import torch

    if dtype:
        if dtype not in ("float32", "bfloat16", "float16"):
            raise UsageError(f"Unknown dtype '{dtype}'", "Use float32, bfloat16 or float16.")
        return getattr(torch, dtype)
    if device == "cpu":
        return torch.float32
    return torch.bfloat16 if torch.cuda.get_device_capability(device) >= (8, 0) else torch.float16


def measure_gpu_bytes(device: str) -> int | None:
    """Peak memory PyTorch reserved on the device, plus the CUDA context NVML sees beyond it."""
    if not device.startswith("cuda"):
        return None
    import torch

    peak = torch.cuda.max_memory_reserved(device)
    now_nvml = _nvml_process_bytes(torch.cuda.current_device() if device == "cuda" else int(device.split(":")[1]))
    if now_nvml is None:
        return peak
    return peak + max(0, now_nvml - torch.cuda.memory_reserved(device))


def _nvml_process_bytes(index: int) -> int | None:
    import os

    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        for process in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
            if process.pid == os.getpid():
                return process.usedGpuMemory
    except Exception:  # noqa: BLE001 - measurement is best effort; the allocator's number stands
        return None
    return None
