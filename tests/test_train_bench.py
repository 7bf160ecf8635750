"""bench_gpu.py's training part, in its tiny mode on the CPU: the code a GPU run will use, exercised here."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


def test_the_gpu_training_benchmark_runs_tiny_on_the_cpu():
    import bench_train

    from vlmkit.memory import estimate_training
    from vlmkit.registry import load_registry

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rows = bench_train.gpu_training("cpu", True, load_registry(), steps=2, batch=2)
    finally:
        torch.set_num_threads(before)
    registry = load_registry()
    assert [r["pair"] for r in rows] == ["siglip-base+qwen3-1.7b", "dinov3-vitb16+qwen3-8b"]
    for row, (encoder, llm) in zip(rows, bench_train.GPU_CASES):
        assert not row["oom"] and row["samples_per_s"] > 0 and row["tokens_per_s"] > 0
        assert row["estimate_bytes"] == estimate_training(registry.encoder(encoder), registry.llm(llm), frames=8,
                                                          pool=2, batch_size=2, dtype="float32",
                                                          on_gpu=False).total_bytes
