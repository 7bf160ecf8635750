"""Training a projector: samples/s with and without the feature cache (tiny zoo, CPU), and the GPU part.

CPU part: N generated clips (640x360, 4 s, so that decoding dominates) captioned "A <colour> video.",
trained for 2 epochs with tiny SigLIP + tiny Qwen3 through `vlmkit.train`, once reading frames
anew every epoch (no --cache-dir) and once with --cache-dir (epoch 1 fills the cache before the
steps, epoch 2 reads only the cache). Reported: samples/s of each epoch's steps, and the wall time
of each run. The cache must make an epoch at least 5x faster when decoding dominates.

    .venv/bin/python benchmarks/bench_train.py [--clips 24] [--frames 8]

GPU part (`gpu_training`, run by `bench_gpu.py` unless --skip-train): real-size architectures with
random weights (siglip-base + qwen3-1.7b, dinov3-vitb16 + qwen3-8b), 8 frames, pool 2, batch 8,
bf16 autocast with gradient checkpointing, through vlmkit's own training loop (`Trainer`) fed
random features of the encoder's shape: samples/s, tokens/s and peak memory beside
`vlmkit.memory.estimate_training`. `--tiny` runs the same code with tiny configs on the CPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests"), str(ROOT / "benchmarks")]

from reporting import machine_summary, table  # noqa: E402

GPU_CASES = [("siglip-base", "qwen3-1.7b"), ("dinov3-vitb16", "qwen3-8b")]
CONFIGS = {"siglip": "SiglipVisionConfig", "clip": "CLIPVisionConfig", "dinov3-vit": "DINOv3ViTConfig"}
CAPTION = "A {} video of a city street at night with cars and people walking."


def epoch_rates(run: Path, steps_per_epoch: int) -> list[float]:
    """samples/s of each epoch's steps, from metrics.jsonl (samples over the step's seconds)."""
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    rates = []
    for epoch in range(len(lines) // steps_per_epoch):
        chunk = lines[epoch * steps_per_epoch:(epoch + 1) * steps_per_epoch]
        seconds = sum(m["samples"] / m["samples_per_s"] for m in chunk)
        rates.append(sum(m["samples"] for m in chunk) / seconds)
    return rates


def cpu_part(args) -> list[list]:
    import torch

    from videos import make_video
    from vlmkit import train
    from vlmkit.registry import load_registry
    from zoo import cache_root, cached_zoo
    from zoo_registry import zoo_registry_text

    torch.set_num_threads(1)  # on a shared CPU, OpenMP threads that wait on each other make timings noise
    work = Path(tempfile.mkdtemp(prefix="bench-train-"))
    (work / "models.toml").write_text(zoo_registry_text(cached_zoo(cache_root())))
    registry = load_registry(work / "models.toml")
    colours = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "white": (255, 255, 255)}
    rows = []
    for i in range(args.clips):
        word = list(colours)[i % len(colours)]
        clip = make_video(work / f"clip-{i}.mp4", color=colours[word], seconds=4, size=(640, 360))
        rows.append(json.dumps({"video": clip.name, "caption": CAPTION.format(word)}))
    (work / "data.jsonl").write_text("\n".join(rows) + "\n")
    common = dict(encoder="tiny-siglip", llm="tiny-qwen3", data=str(work / "data.jsonl"), registry=registry,
                  frames=args.frames, epochs=2, batch_size=4, grad_accum=1, val_fraction=0, lr=1e-3)
    results = []
    for name, cache in (("no cache", None), ("--cache-dir", str(work / "cache"))):
        started = time.perf_counter()
        summary = train(output=str(work / name.strip("-")), cache_dir=cache, **common)
        wall = time.perf_counter() - started
        rates = epoch_rates(work / name.strip("-"), summary.total_steps // 2)
        results.append([name, f"{rates[0]:.2f}", f"{rates[1]:.2f}", f"{wall:.1f}", summary.encoded,
                        summary.cache_hits])
    ratio = float(results[1][2]) / float(results[0][2])
    print(table(["features", "epoch 1 samples/s", "epoch 2 samples/s", "wall s (2 epochs, incl. load)",
                 "encoded", "cache hits"], results))
    print(f"\nepoch 2 with the cache vs without: {ratio:.1f}x faster (target: at least 5x)")
    return results


# --- GPU part (bench_gpu.py calls this) -------------------------------------------------------------

class RandomFeatures:
    """Stands in for FeatureSource: the encoder's output shape for each sample, as the cache would give."""

    def __init__(self, frames: int, tokens: int, dim: int) -> None:
        import torch

        from vlmkit.training.features import FeatureCounts

        self.shape, self.counts = (frames, tokens, dim), FeatureCounts()
        self.generator = torch.Generator().manual_seed(0)

    def __call__(self, sample):
        import torch

        return torch.randn(self.shape, generator=self.generator)


def build_pair(encoder_key: str, llm_key: str, *, tiny: bool, device: str, dtype, registry):
    """Random-weight encoder and LLM of the registry's sizes (tiny configs with --tiny), on the device."""
    import bench_gpu
    import transformers

    from vlmkit.vision import FAMILIES, VisionEncoder

    zoo = bench_gpu.import_zoo()
    encoder, llm = registry.encoder(encoder_key), registry.llm(llm_key)
    tokenizer = zoo.make_qwen_tokenizer(zoo.QWEN3_CHAT_TEMPLATE)
    family = FAMILIES[encoder.family]
    config_class = getattr(transformers, CONFIGS[encoder.family])
    sizes = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, patch_size=8,
                 image_size=32) if tiny else dict(
        hidden_size=encoder.hidden_size, intermediate_size=encoder.intermediate_size or 4 * encoder.hidden_size,
        num_hidden_layers=encoder.layers, num_attention_heads=encoder.heads or encoder.hidden_size // 64,
        patch_size=encoder.patch_size, image_size=encoder.image_size)
    vision = bench_gpu.build_on_device(getattr(transformers, family.model_class), config_class(**sizes), device, dtype)
    text_sizes = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, head_dim=16) if tiny else dict(
        hidden_size=llm.hidden_size, intermediate_size=llm.intermediate_size, num_hidden_layers=llm.layers,
        num_attention_heads=llm.heads, num_key_value_heads=llm.kv_heads, head_dim=llm.head_dim)
    text = transformers.Qwen3Config(vocab_size=llm.vocab_size, max_position_embeddings=llm.max_context,
                                    tie_word_embeddings=llm.hidden_size < 4096, **text_sizes)
    model = bench_gpu.build_on_device(transformers.Qwen3ForCausalLM, text, device, dtype)
    prefix = 1 + getattr(vision.config, "num_register_tokens", 0) if encoder.family.startswith("dinov3") else 0
    tokens = (sizes["image_size"] // sizes["patch_size"]) ** 2
    return VisionEncoder(vision, None, prefix, -2), model, tokenizer, tokens, sizes["hidden_size"]


def gpu_training(device: str, tiny: bool, registry, *, frames: int = 8, pool: int = 2, batch: int = 8,
                 steps: int = 6, deadline: float | None = None) -> list[dict]:
    import torch

    from vlmkit.memory import estimate_training
    from vlmkit.projector import Projector, ProjectorInfo
    from vlmkit.training.data import Sample
    from vlmkit.training.distributed import Distributed
    from vlmkit.training.loop import BatchPlan, Trainer
    from vlmkit.training.options import TrainOptions
    from vlmkit.training.run_folder import RunFolder
    from vlmkit.vision import pooled_tokens

    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    results = []
    for encoder_key, llm_key in GPU_CASES:
        if deadline and time.monotonic() > deadline:
            results.append({"pair": f"{encoder_key}+{llm_key}", "skipped": "time budget"})
            continue
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        encoder, llm, tokenizer, tokens, dim = build_pair(encoder_key, llm_key, tiny=tiny, device=device,
                                                         dtype=dtype, registry=registry)
        llm.requires_grad_(False)
        if device.startswith("cuda"):
            llm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            llm.train()
        features = RandomFeatures(frames, pooled_tokens(tokens, pool), dim)
        samples = [Sample(f"/synthetic/{i}", CAPTION.format("red"), "video") for i in range(batch * (steps + 1))]
        options = TrainOptions(encoder=encoder_key, llm=llm_key, data=("synthetic",), output="", frames=frames,
                               pool=pool, batch_size=batch, grad_accum=1, max_steps=steps + 1, save_every=10**6,
                               eval_every=10**6, sample_count=0)
        plan = BatchPlan.make(options, len(samples), 1)
        timings = []
        with tempfile.TemporaryDirectory() as folder:
            trainer = Trainer(llm=llm, tokenizer=tokenizer, encoder=encoder,
                              projector=Projector(dim, llm.config.hidden_size).to(device), features=features,
                              train=samples, val=[], options=options, plan=plan, dist=Distributed(),
                              folder=RunFolder(folder), dtype=dtype, device=device, keys={},
                              info=ProjectorInfo(encoder_key, llm_key, dim, llm.config.hidden_size),
                              on_step=timings.append)
            try:
                trainer.run()
                oom = False
            except torch.OutOfMemoryError:
                oom = True
        measured = int(torch.cuda.max_memory_reserved(device)) if device.startswith("cuda") else None
        estimate = estimate_training(registry.encoder(encoder_key), registry.llm(llm_key), frames=frames, pool=pool,
                                     batch_size=batch, dtype="float32" if device == "cpu" else "bfloat16",
                                     on_gpu=device.startswith("cuda"))
        timed = timings[1:]  # the first step pays for warm-up
        results.append({
            "pair": f"{encoder_key}+{llm_key}", "tiny": tiny, "frames": frames, "pool": pool, "batch": batch,
            "oom": oom, "samples_per_s": sum(t["samples_per_s"] for t in timed) / len(timed) if timed else None,
            "tokens_per_s": sum(t["tokens_per_s"] for t in timed) / len(timed) if timed else None,
            "peak_reserved_bytes": measured, "estimate_bytes": estimate.total_bytes,
            "estimate_breakdown": dict(estimate.breakdown),
        })
        del trainer, encoder, llm
    return results


def print_gpu_training(rows: list[dict]) -> None:
    def gib(n):
        return f"{n / 2**30:.1f}" if n else "-"
    print("\ntraining a projector (random weights, random features)")
    print(table(["pair", "frames", "pool", "batch", "samples/s", "tokens/s", "peak GiB", "estimate GiB"],
                [[r["pair"], r.get("frames", ""), r.get("pool", ""), r.get("batch", ""),
                  f"{r['samples_per_s']:.1f}" if r.get("samples_per_s") else ("OOM" if r.get("oom") else "-"),
                  f"{r['tokens_per_s']:.0f}" if r.get("tokens_per_s") else "-", gib(r.get("peak_reserved_bytes")),
                  gib(r.get("estimate_bytes"))] for r in rows]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=24)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--tiny-gpu-part", action="store_true", help="also run the GPU part with tiny configs here")
    args = parser.parse_args()
    print(machine_summary())
    cpu_part(args)
    if args.tiny_gpu_part:
        from vlmkit.registry import load_registry

        print_gpu_training(gpu_training("cpu", True, load_registry(), steps=3))


if __name__ == "__main__":
    main()
