"""`recommend`: the design document's tiers, the estimator's terms, and what happens when nothing fits."""

from __future__ import annotations

import pytest

from gpus import H100, T4
from vlmkit.errors import UsageError
from vlmkit.memory import estimate_composed, estimate_vlm, kv_cache_bytes
from vlmkit.planner import recommend
from vlmkit.registry import load_registry

KIB = 1024


@pytest.fixture(scope="module")
def registry():
    return load_registry()


@pytest.mark.parametrize("gpu, encoder, llm, dtype", [
    ("T4", "siglip-base", "qwen3-4b", "float16"),
    ("L4", "dinov3-vitb16", "qwen3-8b", "bfloat16"),
    ("A100-40GB", "dinov3-vitl16", "qwen3-14b", "bfloat16"),
    ("H100", "dinov3-vith16plus", "qwen3-32b", "bfloat16"),
])
def test_design_document_tiers(registry, gpu, encoder, llm, dtype):
    result = recommend(registry=registry, gpu=gpu)
    assert result.choice.keys() == {"encoder": encoder, "llm": llm}
    assert result.dtype == dtype and result.choice.fits and result.choice.tier


def test_t4_warns_about_float16(registry):
    result = recommend(registry=registry, gpu="T4")
    assert any("float16" in w and "overflow" in w for w in result.warnings)


def test_kv_cache_matches_the_reference_per_token_sizes(registry):
    """shared/reference/video-and-memory.md: KiB per token in bf16."""
    expected = {"qwen3-0.6b": 112, "qwen3-4b": 144, "qwen3-8b": 144, "qwen3-14b": 160, "qwen3-32b": 256,
                "qwen3-30b-a3b": 96}
    for key, kib in expected.items():
        assert kv_cache_bytes(registry.llm(key), 1, 2) == kib * KIB
    assert kv_cache_bytes(registry.vlm("llava-next-video-7b"), 1, 2) == 512 * KIB


def test_estimate_grows_with_frames_and_counts_every_term(registry):
    enc, llm = registry.encoder("dinov3-vitl16"), registry.llm("qwen3-8b")
    e8 = estimate_composed(enc, llm, frames=8, max_new_tokens=128, dtype="bfloat16")
    e32 = estimate_composed(enc, llm, frames=32, max_new_tokens=128, dtype="bfloat16")
    assert set(e8.breakdown) == {"weights", "kv_cache", "activations", "cuda_context"}
    assert e8.context_tokens == 64 + 8 * 196 + 128
    assert e32.total_bytes > e8.total_bytes and e32.breakdown["weights"] == e8.breakdown["weights"]
    # weights dominate: bf16 bytes of encoder + projector + LLM
    assert e8.breakdown["weights"] == 2 * (enc.params + 1024 * 4096 + 4096 * 4096 + 2 * 4096 + llm.params)


def test_moe_is_sized_by_all_experts(registry):
    moe = registry.llm("qwen3-30b-a3b")
    est = estimate_composed(registry.encoder("siglip-base"), moe, frames=8, max_new_tokens=128, dtype="bfloat16")
    assert est.breakdown["weights"] > 2 * 30e9


def test_llava_32_frames_exceed_its_context(registry):
    est = estimate_vlm(registry.vlm("llava-next-video-7b"), frames=32, max_new_tokens=128, dtype="bfloat16")
    assert est.context_tokens > 4096 and not est.within_context
    result = recommend(registry=registry, gpu="H100", vlm="llava-next-video-7b", frames=32)
    assert not result.choice.fits and "context" in result.reason
    assert 0 < result.choice.max_frames < 32


def test_tier_that_does_not_fit_falls_back_to_the_largest_that_does(registry):
    result = recommend(registry=registry, gpu="T4", frames=200)
    # (Qwen3-VL's tier VLM does fit: its processor shrinks frames so that 200 cost at most 12,288 tokens)
    assert not any(c.tier and c.fits for c in result.candidates if not c.vlm)
    assert result.choice is None or result.choice.fits
    assert "does not fit" in result.reason or "nothing fits" in result.reason


def test_max_frames_is_the_boundary(registry):
    result = recommend(registry=registry, gpu="L4")
    n = result.choice.max_frames
    assert recommend(registry=registry, gpu="L4", encoder="dinov3-vitb16", llm="qwen3-8b", frames=n).choice.fits
    assert not recommend(registry=registry, gpu="L4", encoder="dinov3-vitb16", llm="qwen3-8b",
                         frames=n + 1).choice.fits


def test_vram_plans_for_any_size(registry):
    small = recommend(registry=registry, vram_gb=8)
    large = recommend(registry=registry, vram_gb=48)
    assert small.choice.fits and large.choice.fits
    assert registry.llm(large.choice.llm).params > registry.llm(small.choice.llm).params


def test_detected_gpu_is_matched_to_its_tier(registry, fake_gpu):
    fake_gpu(H100)
    result = recommend(registry=registry)
    assert result.gpu.name == "H100" and result.gpu.source == "nvml"
    assert result.choice.keys() == {"encoder": "dinov3-vith16plus", "llm": "qwen3-32b"}
    fake_gpu(T4)
    assert recommend(registry=registry).dtype == "float16"


def test_no_gpu_recommends_a_cpu_plan(registry, fake_gpu):
    fake_gpu()
    result = recommend(registry=registry)
    assert result.gpu.source == "cpu" and result.dtype == "float32"
    assert result.choice.keys() == {"encoder": "siglip-base", "llm": "qwen3-0.6b"}
    assert any("--gpu" in w for w in result.warnings)


@pytest.mark.parametrize("kwargs", [
    {"gpu": "T4", "vram_gb": 16}, {"vlm": "llava-next-video-7b", "encoder": "siglip-base"},
    {"encoder": "siglip-base"}, {"dtype": "int3"}, {"gpu": "T4", "frames": 0},
])
def test_conflicting_options_are_usage_errors(registry, kwargs):
    with pytest.raises(UsageError):
        recommend(registry=registry, **kwargs)


def test_mig_slices_are_planned_one_by_one_and_said_so(registry, monkeypatch):
    from dataclasses import replace

    from vlmkit.gpu import GpuProbe

    slice_ = replace(H100, name="NVIDIA H100 80GB HBM3 MIG 3g.40gb", total_bytes=40 * 2**30,
                     free_bytes=39 * 2**30, mig=True)
    probe = GpuProbe(devices=(slice_,), driver="580", cuda_driver="13.0",
                     notes=("GPU 0 is in MIG mode: each slice is listed with its own memory",))
    monkeypatch.setattr("vlmkit.gpu.probe_gpus", lambda: probe)
    result = recommend(registry=registry)
    assert any("MIG mode" in w for w in result.warnings)
    assert result.gpu.free_bytes == 39 * 2**30 and result.choice.estimate.total_bytes <= 39 * 2**30
