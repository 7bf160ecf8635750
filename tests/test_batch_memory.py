"""The estimator knows batches: memory per extra video against the issue's H100 measurements."""

from __future__ import annotations

import json

import pytest

from test_cli import run
from vlmkit.memory import estimate_vlm
from vlmkit.planner import recommend
from vlmkit.registry import load_registry

GIB = 2**30
# torch.cuda.max_memory_allocated on an H100, LLaVA-NeXT-Video-7B architecture, bf16, 8 frames,
# 128 new tokens, plain transformers (issue 13): batch size -> GiB
H100_PEAK_ALLOCATED_GIB = {1: 13.88, 4: 15.95, 16: 24.22, 32: 35.25}


@pytest.fixture(scope="module")
def registry():
    return load_registry()


def llava(registry, batch: int, **kw):
    return estimate_vlm(registry.vlm("llava-next-video-7b"), frames=8, max_new_tokens=128, dtype="bfloat16",
                        batch=batch, **kw)


@pytest.mark.parametrize("batch", [4, 16, 32])
def test_per_video_increment_matches_the_h100_measurements(registry, batch):
    measured = H100_PEAK_ALLOCATED_GIB[batch] - H100_PEAK_ALLOCATED_GIB[1]
    estimated = (llava(registry, batch).total_bytes - llava(registry, 1).total_bytes) / GIB
    assert estimated == pytest.approx(measured, rel=0.10)


def test_estimate_is_above_what_torch_allocated_by_no_more_than_context_and_slack(registry):
    """The estimate targets NVML's used memory: torch's allocations plus the CUDA context and allocator slack."""
    for batch, measured in H100_PEAK_ALLOCATED_GIB.items():
        estimate = llava(registry, batch)
        assert measured < estimate.total_bytes / GIB < measured + 0.7 + 0.1 * (measured - 13.16)


def test_batch_pads_every_video_to_the_longest_prompt(registry):
    qwen = registry.vlm("qwen3-vl-8b")
    small = estimate_vlm(qwen, frames=8, max_new_tokens=128, dtype="bfloat16", batch=4, resolution=(640, 360))
    hd = estimate_vlm(qwen, frames=8, max_new_tokens=128, dtype="bfloat16", batch=4, resolution=(1280, 720))
    assert small.context_tokens == 64 + 880 + 128 and hd.context_tokens == 64 + 2880 + 128
    kv_per_token = 2 * qwen.layers * qwen.kv_heads * qwen.head_dim * 2
    assert hd.breakdown["kv_cache"] == 4 * hd.context_tokens * kv_per_token
    assert hd.total_bytes > small.total_bytes


def test_recommend_gives_the_largest_batch_that_fits(registry):
    result = recommend(registry=registry, gpu="H100", vlm="llava-next-video-7b")
    choice, free = result.choice, result.gpu.free_bytes
    assert choice.max_batch > 32
    assert llava(registry, choice.max_batch).total_bytes <= free < llava(registry, choice.max_batch + 1).total_bytes
    at_16 = recommend(registry=registry, gpu="H100", vlm="llava-next-video-7b", batch_size=16)
    assert at_16.choice.estimate.batch == 16 and at_16.choice.estimate.total_bytes == llava(registry, 16).total_bytes
    on_l4 = [recommend(registry=registry, gpu="L4", vlm="llava-next-video-7b", batch_size=b).choice for b in (1, 16)]
    assert on_l4[1].max_frames < on_l4[0].max_frames  # 16 videos' KV caches leave room for fewer frames
    too_many = recommend(registry=registry, gpu="H100", vlm="llava-next-video-7b", batch_size=choice.max_batch + 1)
    assert not too_many.choice.fits


def test_qwen_resolution_changes_the_plan(registry):
    low = recommend(registry=registry, gpu="L4", vlm="qwen3-vl-8b", resolution=(640, 360))
    hd = recommend(registry=registry, gpu="L4", vlm="qwen3-vl-8b", resolution=(1920, 1080))
    assert low.choice.estimate.context_tokens - hd.choice.estimate.context_tokens == 880 - 2880
    assert low.choice.max_batch > hd.choice.max_batch


def test_recommend_cli_shows_batch_and_resolution(capsys):
    code, out, err = run(capsys, "recommend", "--gpu", "H100", "--batch-size", "16", "--resolution", "640x360",
                         "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["batch_size"] == 16 and doc["resolution"] == "640x360"
    assert all(c["max_batch"] >= 0 for c in doc["candidates"])
    qwen = next(c for c in doc["candidates"] if c.get("vlm") == "qwen3-vl-8b")
    assert qwen["context_tokens"] == 64 + 880 + 128  # 8 frames (recommend's default) at 640x360
    assert run(capsys, "recommend", "--gpu", "H100")[1].count("max batch") == 1
    code, out, err = run(capsys, "recommend", "--resolution", "hd")
    assert code == 2 and "Error: --resolution 'hd'" in err and "Hint:" in err
