"""Captioning throughput and peak GPU memory of real-size architectures with random weights.

    python benchmarks/bench_gpu.py [--out DIR] [--quick]  # one GPU; sized for < 5 min on an H100
    python benchmarks/bench_gpu.py --tiny                 # on the CPU: tiny configs, 2 new tokens
    python benchmarks/bench_gpu.py --check-configs        # on the CPU: real-size configs on the meta device
    python benchmarks/bench_gpu.py --caption [--tiny]     # vlmkit's default batch vs the plain loop (caption_gpu.py)

Nothing is downloaded: each model is built from its config with random weights, directly on the
device, and its processor and tokenizer are built locally (tokenizers trained on a few sentences,
as tests/zoo.py does; the models keep their real vocabulary sizes). Frames are random uint8 arrays,
so PyAV is not needed.

1. Throughput, 8 frames per video and exactly `--new-tokens` new tokens per video (min_new_tokens
   is set on the model's generation_config, since vlmkit's GenerationSettings has no such field):
   videos/min and generated tokens/s through vlmkit's backends (EndToEndBackend for
   LLaVA-NeXT-Video-7B, ComposedBackend for DINOv3-ViT-L/16 + projector + Qwen3-8B) at batch
   sizes 1, 4, 16, 32, against a plain transformers loop (processor -> model.generate, one video
   at a time) on the same videos. Times include preprocessing, as a caption run pays it.
2. Peak memory of one video (batch 1) against vlmkit.memory's estimate from the registry:
   llava-next-video-7b at 8/16/32 frames, dinov3-vitl16 + qwen3-8b and + qwen3-32b at 8/32
   frames. "measured" is what NVML would show at the peak: torch.cuda.max_memory_reserved plus
   what NVML sees of the process beyond the allocator (CUDA context, cuBLAS workspaces). vlmkit's
   own `measure_gpu_bytes` (what `vlmkit load` reports) is recorded beside it.

3. Training a projector (unless --skip-train): siglip-base + qwen3-1.7b and dinov3-vitb16 + qwen3-8b,
   8 frames, pool 2, batch 8 through vlmkit's training loop; samples/s, tokens/s and peak memory
   beside `vlmkit.memory.estimate_training` (see benchmarks/bench_train.py, `gpu_training`).

Results go to DIR/bench_gpu.json (DIR: --out, else $OUT, else benchmarks/results/), rewritten after
every case, so a run cut short still leaves what it measured. A time budget (--budget-s) skips
what would not finish; skipped cases are listed in the JSON.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
import types
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "src"))  # vlmkit from this tree, installed or not
sys.path.insert(0, str(ROOT / "tests"))  # tests/zoo.py: tokenizers and chat templates
sys.path.insert(0, str(HERE))  # bench_train.py: the training part

PROMPT = "Describe what happens in this video."
FULL = {"batch_sizes": [1, 4, 16, 32], "iters": 2, "plain_videos": 2}
QUICK = {"batch_sizes": [1, 32], "iters": 1, "plain_videos": 1}
TINY = {"batch_sizes": [1, 4], "iters": 3, "plain_videos": 2}
MEMORY_CASES = [  # (name, frames)
    ("llava-next-video-7b", 8),
    ("llava-next-video-7b", 16),
    ("llava-next-video-7b", 32),
    ("dinov3-vitl16+qwen3-8b", 8),
    ("dinov3-vitl16+qwen3-8b", 32),
    ("dinov3-vitl16+qwen3-32b", 8),
    ("dinov3-vitl16+qwen3-32b", 32),
]


def import_zoo():
    """tests/zoo.py imports pytest at the top for its fixtures; stand in for it where it is absent."""
    try:
        import pytest  # noqa: F401
    except ImportError:
        stub = types.ModuleType("pytest")
        stub.fixture = lambda *a, **k: a[0] if a and callable(a[0]) else (lambda f: f)
        sys.modules["pytest"] = stub
    import zoo

    return zoo


# --- architectures --------------------------------------------------------------------------------


@dataclass
class Built:
    name: str
    backend: object  # a vlmkit CaptionBackend
    plain: object  # callable(video, new_tokens) -> generated token count: the plain transformers loop
    params: int
    registry_params: int


def build_on_device(model_class, config, device: str, dtype):
    """Random weights, allocated and initialised on the device (no CPU copy of a 65 GB model)."""
    import torch

    with torch.device(device):
        model = model_class._from_config(config, dtype=dtype, attn_implementation="sdpa")
    return model.eval()


def build_llava(tiny: bool, device: str, dtype, registry) -> Built:
    import torch
    from transformers import (
        CLIPVisionConfig,
        GenerationConfig,
        LlamaConfig,
        LlavaNextImageProcessor,
        LlavaNextVideoConfig,
        LlavaNextVideoForConditionalGeneration,
        LlavaNextVideoProcessor,
        LlavaNextVideoVideoProcessor,
    )

    from vlmkit.backends.end_to_end import EndToEndBackend

    zoo = import_zoo()
    entry = registry.vlm("llava-next-video-7b")
    tokenizer = zoo.make_llama_tokenizer()
    ids = dict(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    if tiny:
        text = LlamaConfig(
            vocab_size=entry.vocab_size,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=4,
            max_position_embeddings=4096,
            **ids,
        )
        vision = CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            patch_size=4,
            projection_dim=32,
        )
    else:  # Vicuna-7B and CLIP ViT-L/14 at 336 px, as in llava-hf/LLaVA-NeXT-Video-7B-hf's config.json
        text = LlamaConfig(
            vocab_size=entry.vocab_size,
            hidden_size=entry.hidden_size,
            intermediate_size=entry.intermediate_size,
            num_hidden_layers=entry.layers,
            num_attention_heads=entry.heads,
            num_key_value_heads=entry.kv_heads,
            max_position_embeddings=entry.max_context,
            rms_norm_eps=1e-5,
            **ids,
        )
        vision = CLIPVisionConfig(
            hidden_size=1024,
            intermediate_size=4096,
            num_hidden_layers=24,
            num_attention_heads=16,
            image_size=336,
            patch_size=14,
            projection_dim=768,
            hidden_act="quick_gelu",
        )
    size, patch, stride = vision.image_size, vision.patch_size, 2
    config = LlavaNextVideoConfig(
        text_config=text.to_dict(),
        vision_config=vision.to_dict(),
        video_token_index=tokenizer.convert_tokens_to_ids(zoo.LLAVA_VIDEO_TOKEN),
        image_token_index=tokenizer.convert_tokens_to_ids(zoo.LLAVA_IMAGE_TOKEN),
        spatial_pool_stride=stride,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        image_grid_pinpoints=[[size, 2 * size], [2 * size, size], [2 * size, 2 * size]],
        image_seq_length=(size // patch) ** 2,
        video_seq_length=(size // patch // stride) ** 2,
    )
    model = build_on_device(LlavaNextVideoForConditionalGeneration, config, device, dtype)
    model.generation_config = GenerationConfig(do_sample=False, **ids)
    crop = {"height": size, "width": size}
    processor = LlavaNextVideoProcessor(
        video_processor=LlavaNextVideoVideoProcessor(size={"shortest_edge": size}, crop_size=crop),
        image_processor=LlavaNextImageProcessor(
            size={"shortest_edge": size}, crop_size=crop, image_grid_pinpoints=config.image_grid_pinpoints
        ),
        tokenizer=tokenizer,
        chat_template=zoo.LLAVA_NEXT_VIDEO_CHAT_TEMPLATE,
        patch_size=patch,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
    )
    backend = EndToEndBackend(model, processor, entry, dtype=dtype, device=device)

    @torch.inference_mode()
    def plain(video, new_tokens: int) -> int:
        """What the model card shows: chat template, processor, generate."""
        conversation = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": PROMPT}]}]
        text = processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
        inputs = processor(text=text, videos=[video.frames], return_tensors="pt").to(device, dtype)
        out = model.generate(**inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
        return out.shape[1] - inputs["input_ids"].shape[1]

    params = sum(p.numel() for p in model.parameters())
    return Built("llava-next-video-7b", backend, plain, params, entry.params)


def build_composed(llm_key: str, tiny: bool, device: str, dtype, registry) -> Built:
    import torch
    from transformers import (
        DINOv3ViTConfig,
        DINOv3ViTImageProcessor,
        DINOv3ViTModel,
        GenerationConfig,
        Qwen3Config,
        Qwen3ForCausalLM,
    )

    from vlmkit.backends.composed import VISUAL_PLACEHOLDER, ComposedBackend
    from vlmkit.projector import Projector
    from vlmkit.vision import VisionEncoder

    zoo = import_zoo()
    enc, llm_entry = registry.encoder("dinov3-vitl16"), registry.llm(llm_key)
    tokenizer = zoo.make_qwen_tokenizer(zoo.QWEN3_CHAT_TEMPLATE)
    if tiny:
        vision = DINOv3ViTConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            patch_size=8,
            image_size=32,
            num_register_tokens=4,
        )
        text = Qwen3Config(
            vocab_size=llm_entry.vocab_size,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=16,
            max_position_embeddings=4096,
            tie_word_embeddings=True,
        )
    else:  # facebook/dinov3-vitl16-pretrain-lvd1689m and Qwen/Qwen3-{8B,32B} config.json
        vision = DINOv3ViTConfig(
            hidden_size=enc.hidden_size,
            intermediate_size=enc.intermediate_size,
            num_hidden_layers=enc.layers,
            num_attention_heads=enc.heads,
            patch_size=enc.patch_size,
            image_size=enc.image_size,
            num_register_tokens=4,
        )
        text = Qwen3Config(
            vocab_size=llm_entry.vocab_size,
            hidden_size=llm_entry.hidden_size,
            intermediate_size=llm_entry.intermediate_size,
            num_hidden_layers=llm_entry.layers,
            num_attention_heads=llm_entry.heads,
            num_key_value_heads=llm_entry.kv_heads,
            head_dim=llm_entry.head_dim,
            max_position_embeddings=llm_entry.max_context,
            rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
            tie_word_embeddings=False,
        )
    vit = build_on_device(DINOv3ViTModel, vision, device, dtype)
    size = vision.image_size
    image_processor = DINOv3ViTImageProcessor(size={"height": size, "width": size})
    encoder = VisionEncoder(vit, image_processor, prefix_tokens=1 + vision.num_register_tokens)
    llm = build_on_device(Qwen3ForCausalLM, text, device, dtype)
    llm.generation_config = GenerationConfig(
        do_sample=False, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    with torch.device(device):
        projector = Projector(encoder.feature_dim, text.hidden_size).to(dtype).eval()  # untrained: random
    name = f"dinov3-vitl16+{llm_key}"
    backend = ComposedBackend(
        encoder,
        projector,
        llm,
        tokenizer,
        keys={"encoder": enc.key, "llm": llm_entry.key},
        dtype=dtype,
        device=device,
        tokens_per_frame=(size // vision.patch_size) ** 2,
        max_context=llm_entry.max_context,
    )
    placeholder = tokenizer.convert_tokens_to_ids(VISUAL_PLACEHOLDER)

    @torch.inference_mode()
    def plain(video, new_tokens: int) -> int:
        """The same pipeline written out by hand: encoder, projector, splice, generate."""
        pixels = image_processor(images=list(video.frames), return_tensors="pt")["pixel_values"].to(
            device, dtype
        )
        features = vit(pixel_values=pixels).last_hidden_state[
            :, 1 + vision.num_register_tokens :
        ]  # [T, N, D]
        visual = projector(features).flatten(0, 1)  # [T*N, H]
        text_in = tokenizer.apply_chat_template(
            [{"role": "user", "content": f"{VISUAL_PLACEHOLDER}\n{PROMPT}"}],
            tokenize=False,
            add_generation_prompt=True,
            enable_thinking=False,
        )
        ids = tokenizer(text_in, add_special_tokens=False).input_ids
        at = ids.index(placeholder)
        embed = llm.get_input_embeddings()
        before, after = (embed(torch.tensor(part, device=device)) for part in (ids[:at], ids[at + 1 :]))
        embeds = torch.cat([before, visual, after])[None]  # [1, L, H]
        mask = torch.ones(embeds.shape[:2], dtype=torch.long, device=device)
        out = llm.generate(
            inputs_embeds=embeds,
            attention_mask=mask,
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
        )
        return out.shape[1]  # with inputs_embeds only, generate returns the new tokens only

    params = sum(p.numel() for m in (vit, projector, llm) for p in m.parameters())
    from vlmkit.memory import projector_params

    return Built(
        name, backend, plain, params, enc.params + projector_params(enc, llm_entry) + llm_entry.params
    )


def generation_config_of(backend):
    return backend.model.generation_config if hasattr(backend, "model") else backend.llm.generation_config


# --- inputs and measurement -----------------------------------------------------------------------


def random_videos(count: int, frames: int, width: int, height: int, seed: int = 0):
    import numpy as np

    from vlmkit.frames import VideoFrames

    rng = np.random.default_rng(seed)
    videos = []
    for i in range(count):
        pixels = rng.integers(0, 256, (frames, height, width, 3), dtype=np.uint8)  # [T, H, W, 3]
        times = [round((k + 0.5) * 60.0 / frames, 3) for k in range(frames)]
        videos.append(
            VideoFrames(
                path=f"<random video {i}>",
                frames=pixels,
                timestamps=times,
                duration=60.0,
                width=width,
                height=height,
                decoded_frames=frames,
            )
        )
    return videos


class Gpu:
    """Synchronised timing and memory readings; everything is a no-op on the CPU."""

    def __init__(self, device: str) -> None:
        self.device, self.cuda = device, device.startswith("cuda")
        self.nvml = None
        self.index = 0
        self.device_used_before: int | None = None
        if self.cuda:
            try:
                import pynvml

                pynvml.nvmlInit()
                self.index = int(device.split(":")[1]) if ":" in device else 0
                self.nvml = pynvml
                self.handle = pynvml.nvmlDeviceGetHandleByIndex(self.index)
                self.device_used_before = pynvml.nvmlDeviceGetMemoryInfo(
                    self.handle
                ).used  # before our context
            except Exception as exc:  # noqa: BLE001 - NVML is optional; the allocator's numbers remain
                print(f"NVML unavailable: {exc}", file=sys.stderr)
                self.nvml = None

    def sync(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize(self.device)

    def reset(self) -> None:
        gc.collect()
        if self.cuda:
            import torch

            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)

    def process_bytes(self) -> tuple[int | None, str]:
        """This process's GPU memory as NVML sees it now, and how it was found."""
        if self.nvml is None:
            return None, "no NVML"
        try:
            for proc in self.nvml.nvmlDeviceGetComputeRunningProcesses(self.handle):
                if proc.pid == os.getpid() and proc.usedGpuMemory is not None:
                    return int(proc.usedGpuMemory), "nvmlDeviceGetComputeRunningProcesses"
            used = self.nvml.nvmlDeviceGetMemoryInfo(self.handle).used
            return int(
                used - (self.device_used_before or 0)
            ), "device used - used before start (pid not visible)"
        except Exception as exc:  # noqa: BLE001
            return None, f"NVML error: {exc}"

    def peak(self) -> dict:
        """Peak readings since the last reset()."""
        if not self.cuda:
            return {}
        import torch

        from vlmkit.loading import measure_gpu_bytes

        reserved_now = torch.cuda.memory_reserved(self.device)
        nvml_now, how = self.process_bytes()
        max_reserved = torch.cuda.max_memory_reserved(self.device)
        beyond = max(0, nvml_now - reserved_now) if nvml_now is not None else 0
        return {
            "max_memory_reserved": max_reserved,
            "max_memory_allocated": torch.cuda.max_memory_allocated(self.device),
            "nvml_process_now": nvml_now,
            "nvml_source": how,
            "nvml_beyond_allocator": beyond,
            "measured_peak": max_reserved + beyond,
            "vlmkit_measure_gpu_bytes": measure_gpu_bytes(self.device),
        }


# --- the two benchmarks ---------------------------------------------------------------------------


def throughput(built: Built, gpu: Gpu, args, plan: dict, results: dict, deadline: float, save) -> None:
    import torch

    from vlmkit.backends.base import GenerationSettings

    n = args.new_tokens
    extra = {"static_cache": True} if args.static_cache else {}  # a newer GenerationSettings field
    settings = GenerationSettings(max_new_tokens=n, **extra)
    videos = random_videos(max(plan["batch_sizes"] + [plan["plain_videos"]]), args.frames, *args.frame_size)

    generation_config_of(built.backend).min_new_tokens = None
    built.backend.generate(
        videos[:1], PROMPT, GenerationSettings(max_new_tokens=2, **extra)
    )  # warm-up: kernels, caches
    built.plain(videos[0], 2)
    gpu.sync()
    generation_config_of(
        built.backend
    ).min_new_tokens = n  # exactly n new tokens (no GenerationSettings field)

    rows = results.setdefault("throughput", [])

    def record(kind: str, batch: int, times: list[float], generated: int, extra: dict) -> None:
        best = statistics.median(times)
        row = {
            "model": built.name,
            "path": kind,
            "batch": batch,
            "frames": args.frames,
            "new_tokens": n,
            "times_s": times,
            "median_s": best,
            "videos_per_min": 60 * batch / best,
            "generated_tokens_per_s": generated / best,
            **extra,
        }
        rows.append(row)
        save()
        print(
            f"  {built.name:28} {kind:24} batch {batch:>3}: {row['videos_per_min']:8.1f} videos/min  "
            f"{row['generated_tokens_per_s']:8.1f} tokens/s  ({best:.2f} s)",
            flush=True,
        )

    # the plain transformers loop, one video at a time
    if time.monotonic() < deadline:
        count = plan["plain_videos"]
        times, generated = [], 0
        for _ in range(plan["iters"]):
            gpu.sync()
            started = time.perf_counter()
            generated = sum(built.plain(v, n) for v in videos[:count])
            gpu.sync()
            times.append((time.perf_counter() - started) / count)
        record("plain transformers loop", 1, times, generated / count, {})
    for batch in plan["batch_sizes"]:
        if time.monotonic() > deadline:
            results.setdefault("skipped", []).append(f"throughput {built.name} batch {batch}: time budget")
            continue
        gpu.reset()
        times, reported, out = [], 0, None
        try:
            for _ in range(plan["iters"]):
                gpu.sync()
                started = time.perf_counter()
                out = built.backend.generate(videos[:batch], PROMPT, settings)
                gpu.sync()
                times.append(time.perf_counter() - started)
                reported = sum(g.new_tokens for g in out)
        except torch.OutOfMemoryError:
            rows.append({"model": built.name, "path": "vlmkit backend", "batch": batch, "oom": True})
            print(f"  {built.name} batch {batch}: out of memory", flush=True)
            del out
            gpu.reset()
            continue
        peak = gpu.peak()
        record(
            "vlmkit backend",
            batch,
            times,
            batch * n,
            {"reported_new_tokens": reported, "peak_bytes": peak.get("measured_peak")},
        )


def memory(built: Built, frames: int, gpu: Gpu, args, registry, results: dict, save) -> None:
    import torch

    from vlmkit.backends.base import GenerationSettings
    from vlmkit.memory import estimate_composed, estimate_vlm

    n = args.new_tokens
    generation_config_of(built.backend).min_new_tokens = n
    if built.name.startswith("llava"):
        estimate = estimate_vlm(
            registry.vlm("llava-next-video-7b"), frames=frames, max_new_tokens=n, dtype="bfloat16"
        )
    else:
        estimate = estimate_composed(
            registry.encoder("dinov3-vitl16"),
            registry.llm(built.name.split("+")[1]),
            frames=frames,
            max_new_tokens=n,
            dtype="bfloat16",
        )
    row = {
        "model": built.name,
        "frames": frames,
        "new_tokens": n,
        "estimate_bytes": estimate.total_bytes,
        "estimate_breakdown": estimate.breakdown,
        "context_tokens": estimate.context_tokens,
        "within_context": estimate.within_context,
    }
    video = random_videos(1, frames, *args.frame_size, seed=frames)
    gpu.reset()
    try:
        out = built.backend.generate(video, PROMPT, GenerationSettings(max_new_tokens=n))
        gpu.sync()
        row |= gpu.peak() | {"reported_new_tokens": out[0].new_tokens}
    except torch.OutOfMemoryError:
        row |= {"oom": True}
    if row.get("measured_peak"):
        row["measured_over_estimate"] = row["measured_peak"] / estimate.total_bytes
    results.setdefault("memory", []).append(row)
    save()
    measured = f"{row['measured_peak'] / 2**30:6.2f} GiB" if row.get("measured_peak") else "  (no GPU)"
    print(
        f"  {built.name:28} {frames:>3} frames: measured {measured}, "
        f"estimate {estimate.total_bytes / 2**30:6.2f} GiB",
        flush=True,
    )


# --- configs, without a GPU ------------------------------------------------------------------------


def check_configs(args, registry) -> dict:
    """Build the real-size models on the meta device (no memory, no weights) and run their processors.

    Parameters are compared with the registry (which vlmkit's estimates use) and the visual tokens
    the processors produce for one video with the registry's tokens_per_frame.
    """
    import torch

    videos = random_videos(1, args.frames, *args.frame_size)
    report = []
    builders = [
        lambda: build_llava(False, "meta", torch.bfloat16, registry),
        lambda: build_composed("qwen3-8b", False, "meta", torch.bfloat16, registry),
        lambda: build_composed("qwen3-32b", False, "meta", torch.bfloat16, registry),
    ]
    for build in builders:
        built = build()
        backend = built.backend
        if built.name.startswith("llava"):
            processor = backend.processor
            conversation = [
                {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": PROMPT}]}
            ]
            text = processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
            ids = processor(text=text, videos=[videos[0].frames], return_tensors="pt")["input_ids"]
            visual = int((ids == backend.model.config.video_token_index).sum()) // args.frames
            expected = registry.vlm("llava-next-video-7b").tokens_per_frame
        else:
            pixels = backend.encoder.processor(images=list(videos[0].frames), return_tensors="pt")[
                "pixel_values"
            ]
            patch = backend.encoder.model.config.patch_size
            visual = (pixels.shape[-2] // patch) * (pixels.shape[-1] // patch)
            expected = registry.encoder("dinov3-vitl16").tokens_per_frame
        row = {
            "model": built.name,
            "params": built.params,
            "registry_params": built.registry_params,
            "tokens_per_frame": visual,
            "registry_tokens_per_frame": expected,
        }
        report.append(row)
        print(
            f"  {built.name:26} params {built.params:>14,} (registry {built.registry_params:>14,}, "
            f"{built.params / built.registry_params - 1:+.4%}); visual tokens per frame {visual} "
            f"(registry {expected})",
            flush=True,
        )
    return {"configs": report}


# --- main -----------------------------------------------------------------------------------------


def free(built: Built | None, gpu: Gpu) -> None:
    if built is not None:
        built.backend = built.plain = None
    gpu.reset()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", type=Path, default=None, help="directory for bench_gpu.json ($OUT by default)"
    )
    parser.add_argument("--quick", action="store_true", help="batch sizes 1 and 32, one timed call each")
    parser.add_argument(
        "--tiny", action="store_true", help="tiny configs on the CPU, 2 new tokens: a dry run"
    )
    parser.add_argument("--device", default=None, help="cuda (default when available) or cpu")
    parser.add_argument("--frames", type=int, default=8, help="frames per video for the throughput part")
    parser.add_argument("--new-tokens", type=int, default=None, help="default 128 (2 with --tiny)")
    parser.add_argument(
        "--frame-size",
        type=lambda s: tuple(int(x) for x in s.split("x")),
        default=None,
        help="WxH of the random frames (default 640x360; 64x48 with --tiny)",
    )
    parser.add_argument("--budget-s", type=float, default=270, help="stop starting new cases after this")
    parser.add_argument(
        "--check-configs",
        action="store_true",
        help="no GPU needed: build the real-size models on the meta device, count parameters "
        "and visual tokens against the registry, then stop",
    )
    parser.add_argument(
        "--static-cache",
        action="store_true",
        help="throughput with GenerationSettings(static_cache=True); torch.compile eats the time budget",
    )
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--caption", action="store_true",
                        help="LLaVA-NeXT-Video-7B and Qwen3-VL-8B: plain batch-1 loop, vlmkit's default batch, "
                        "and with static cache (see caption_gpu.py); then stop")
    parser.add_argument("--videos", type=int, default=None, help="with --caption: videos per case (256; 6 with --tiny)")
    parser.add_argument("--plain-videos", type=int, default=None, help="with --caption: plain-loop videos (4; 2 tiny)")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-train", action="store_true", help="skip training a projector (bench_train.py)")
    args = parser.parse_args()
    started = time.monotonic()
    deadline = started + args.budget_s
    args.new_tokens = args.new_tokens or (2 if args.tiny else 128)
    args.frame_size = args.frame_size or ((64, 48) if args.tiny else (640, 360))
    out_dir = args.out or Path(os.environ.get("OUT") or HERE / "results")
    out_dir.mkdir(parents=True, exist_ok=True)
    args.videos = args.videos or (6 if args.tiny else 256)
    args.plain_videos = args.plain_videos or (2 if args.tiny else 4)
    out_file = out_dir / (
        ("bench_gpu_caption_tiny.json" if args.tiny else "bench_gpu_caption.json")
        if args.caption
        else "bench_gpu_configs.json"
        if args.check_configs
        else "bench_gpu_tiny.json"
        if args.tiny
        else "bench_gpu.json"
    )

    import torch
    import transformers

    from vlmkit.registry import load_registry

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and args.tiny:
        print("note: --tiny on a GPU measures tiny models; memory numbers will not match the estimates")
    if device == "cpu":
        torch.set_num_threads(1)  # on a shared CPU, OpenMP threads that wait on each other make timings noise
    gpu = Gpu(device)  # NVML's baseline is read before torch creates its CUDA context
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    plan = TINY if args.tiny else QUICK if args.quick else FULL
    registry = load_registry()
    results: dict = {
        "settings": {
            "static_cache": args.static_cache,
            "tiny": args.tiny,
            "quick": args.quick,
            "device": device,
            "dtype": str(dtype),
            "frames": args.frames,
            "new_tokens": args.new_tokens,
            "frame_size": list(args.frame_size),
            "prompt": PROMPT,
            **plan,
        },
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "platform": platform.platform(),
            "gpu": torch.cuda.get_device_name(device) if device.startswith("cuda") else None,
            "gpu_total_bytes": (
                torch.cuda.get_device_properties(device).total_memory if device.startswith("cuda") else None
            ),
        },
        "models": [],
        "throughput": [],
        "memory": [],
        "skipped": [],
    }

    def save() -> None:
        results["elapsed_s"] = round(time.monotonic() - started, 1)
        out_file.write_text(json.dumps(results, indent=2, default=str) + "\n")

    if args.check_configs:
        print("real-size configs on the meta device:")
        results |= check_configs(args, registry)
        save()
        return
    if args.caption:
        run_caption(args, gpu, device, dtype, registry, results, save, deadline)
        print(f"\nwrote {out_file} ({results['elapsed_s']} s)")
        return
    save()
    print(
        f"device {device} ({results['machine']['gpu'] or platform.processor()}), writing {out_file}",
        flush=True,
    )
    torch.manual_seed(0)

    builders = {  # the 32B model first: it is needed for memory only, and a tight budget cuts from the end
        "dinov3-vitl16+qwen3-32b": lambda: build_composed("qwen3-32b", args.tiny, device, dtype, registry),
        "llava-next-video-7b": lambda: build_llava(args.tiny, device, dtype, registry),
        "dinov3-vitl16+qwen3-8b": lambda: build_composed("qwen3-8b", args.tiny, device, dtype, registry),
    }
    for name, build in builders.items():
        wanted_memory = [f for m, f in MEMORY_CASES if m == name and not args.skip_memory]
        wants_throughput = name != "dinov3-vitl16+qwen3-32b" and not args.skip_throughput
        if not (wanted_memory or wants_throughput):
            continue
        if time.monotonic() > deadline:
            results["skipped"].append(f"{name}: time budget")
            save()
            continue
        t0 = time.perf_counter()
        built = build()
        gpu.sync()
        results["models"].append(
            {
                "name": name,
                "params": built.params,
                "registry_params": built.registry_params,
                "build_s": round(time.perf_counter() - t0, 1),
            }
        )
        save()
        print(
            f"{name}: {built.params / 1e9:.3f} B parameters (registry: {built.registry_params / 1e9:.3f} B), "
            f"built in {time.perf_counter() - t0:.1f} s",
            flush=True,
        )
        for frames in wanted_memory:  # before throughput: the peaks are of one video on a fresh model
            if time.monotonic() > deadline:
                results["skipped"].append(f"memory {name} {frames} frames: time budget")
                continue
            memory(built, frames, gpu, args, registry, results, save)
        if wants_throughput:
            throughput(built, gpu, args, plan, results, deadline, save)
        free(built, gpu)
        del built
        free(None, gpu)
        if gpu.cuda:
            results["models"][-1]["allocated_after_free"] = torch.cuda.memory_allocated(device)
            save()
    if not args.skip_train:  # 3. training a projector: bench_train.gpu_training
        from bench_train import gpu_training, print_gpu_training

        results["training"] = gpu_training(device, args.tiny, registry, steps=3 if args.tiny else 6,
                                           deadline=deadline)
        save()
        print_gpu_training(results["training"])
    save()
    print_tables(results)
    print(f"\nwrote {out_file} ({results['elapsed_s']} s)")


def run_caption(args, gpu, device, dtype, registry, results: dict, save, deadline: float) -> None:
    from caption_gpu import build_qwen3_vl, caption_cases, caption_table

    results["settings"] |= {"videos": args.videos, "plain_videos": args.plain_videos, "caption": True}
    results["caption"] = []

    def llava():
        built = build_llava(args.tiny, device, dtype, registry)
        return built.backend, built.plain, built.params

    def qwen():
        backend, plain, params, _ = build_qwen3_vl(args.tiny, device, dtype, registry, build_on_device, import_zoo,
                                                   PROMPT)
        return backend, plain, params

    models = [("llava-next-video-7b", llava), ("qwen3-vl-8b", qwen)]
    for i, (name, build) in enumerate(models):
        share = (deadline - time.monotonic()) / (len(models) - i)
        if share < 20:
            results["skipped"].append(f"caption {name}: time budget")
            continue
        caption_cases(name, build, registry.vlm(name), gpu=gpu, args=args, results=results, save=save,
                      case_seconds=0.8 * share, random_videos=random_videos, prompt=PROMPT)
        free(None, gpu)
    save()
    print("\n" + caption_table(results))


def print_tables(results: dict) -> None:
    from reporting import table

    rows = []
    plain = {r["model"]: r for r in results["throughput"] if r.get("path") == "plain transformers loop"}
    for r in results["throughput"]:
        if r.get("oom"):
            rows.append([r["model"], r["path"], r["batch"], "OOM", "", "", ""])
            continue
        anchor = plain.get(r["model"])
        ratio = f"{r['videos_per_min'] / anchor['videos_per_min']:.2f}x" if anchor else "-"
        peak = f"{r['peak_bytes'] / 2**30:.1f}" if r.get("peak_bytes") else "-"
        rows.append(
            [
                r["model"],
                r["path"],
                r["batch"],
                f"{r['videos_per_min']:.1f}",
                f"{r['generated_tokens_per_s']:.1f}",
                ratio,
                peak,
            ]
        )
    print("\nthroughput")
    print(table(["model", "path", "batch", "videos/min", "new tokens/s", "vs plain loop", "peak GiB"], rows))
    rows = []
    for r in results["memory"]:
        measured = r.get("measured_peak")
        rows.append(
            [
                r["model"],
                r["frames"],
                r["context_tokens"],
                "yes" if r["within_context"] else "NO",
                f"{r['estimate_bytes'] / 2**30:.2f}",
                f"{measured / 2**30:.2f}" if measured else ("OOM" if r.get("oom") else "-"),
                f"{r['max_memory_reserved'] / 2**30:.2f}" if r.get("max_memory_reserved") else "-",
                f"{r['measured_over_estimate']:.2f}" if r.get("measured_over_estimate") else "-",
            ]
        )
    print("\npeak memory, batch 1")
    print(
        table(
            [
                "model",
                "frames",
                "context tokens",
                "fits context",
                "estimate GiB",
                "measured GiB",
                "max reserved GiB",
                "measured / estimate",
            ],
            rows,
        )
    )
    if results["skipped"]:
        print("\nskipped: " + "; ".join(results["skipped"]))


if __name__ == "__main__":
    main()
