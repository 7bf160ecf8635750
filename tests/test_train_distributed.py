"""`torchrun --nproc-per-node 2 -m vlmkit train` (gloo on the CPU) trains the projector one process trains."""

from __future__ import annotations

import subprocess
import sys

import torch

from training_helpers import colour_clips, env_for, metrics, projector_tensors, write_caption_records
from vlmkit import train
from vlmkit.registry import load_registry

COMMON = dict(encoder="tiny-siglip", llm="tiny-qwen3", frames=2, pool=2, max_steps=4, lr=0.01, val_fraction=0,
              seed=1, grad_accum=1)


def test_two_processes_match_one_with_the_same_global_batch(zoo_registry, tmp_path):
    teacher = write_caption_records(tmp_path / "teacher.jsonl", colour_clips(tmp_path / "clips"))
    # 3 samples, global batch 2: every second step one process has no sample and still joins the all-reduce
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one = train(data=str(teacher), output=str(tmp_path / "one"), registry=load_registry(zoo_registry),
                    batch_size=2, **COMMON)
    finally:
        torch.set_num_threads(before)
    assert one.global_batch == 2

    args = [f"--{k.replace('_', '-')}={v}" for k, v in COMMON.items()]
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "vlmkit",
         "train", "--data", str(teacher), "--output", str(tmp_path / "two"), "--batch-size", "1",
         "--cache-dir", str(tmp_path / "cache"), "--quiet", *args],
        capture_output=True, text=True, env=env_for(zoo_registry), timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "global batch 2" in result.stderr
    two = projector_tensors(tmp_path / "two" / "projector.safetensors")
    reference = projector_tensors(tmp_path / "one" / "projector.safetensors")
    assert all(torch.allclose(two[k], reference[k], atol=1e-5, rtol=1e-4) for k in reference)
    losses = [m["loss"] for m in metrics(tmp_path / "two")]
    assert len(losses) == 4  # rank 0 alone wrote the metrics
    assert all(abs(a - b) < 1e-4 for a, b in zip(losses, [m["loss"] for m in metrics(tmp_path / "one")]))
    assert [m["samples"] for m in metrics(tmp_path / "two")] == [2, 1, 2, 1]
    # the gradient itself (before clipping), not only the AdamW step that is blind to its scale
    norms = [(m["grad_norm"], n["grad_norm"]) for m, n in zip(metrics(tmp_path / "two"), metrics(tmp_path / "one"))]
    assert all(abs(a - b) <= 1e-4 * b for a, b in norms), norms
