"""`recommend`: the design document's tiers, the estimator's terms, and what happens when nothing fits."""

from __future__ import annotations

import pytest

from gpus import H100, T4
from vlmkit.errors import UsageError
from vlmkit.gpu import GpuDevice
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


@pytest.mark.parametrize("gpu, vlm", [("T4", "qwen3-vl-4b"), ("L4", "llava-next-video-7b"),
                                      ("A100-40GB", "qwen3-vl-8b"), ("H100", "qwen3-vl-32b")])
def test_the_default_vlm_is_the_tier_s_own(registry, gpu, vlm):
    """`caption` uses vlm_choice by default: the tier's VLM where it fits, not merely the first that fits."""
    result = recommend(registry=registry, gpu=gpu)
    assert result.vlm_choice.vlm == vlm and result.vlm_choice.fits


def _nvml(name: str, mib: int) -> GpuDevice:
    total = mib * 2**20
    return GpuDevice(index=0, name=name, total_bytes=total, free_bytes=total - 500 * 2**20,
                     used_bytes=500 * 2**20, compute_capability=(8, 0))


@pytest.mark.parametrize("nvml_name, mib, known", [
    ("NVIDIA L4", 23_034, "L4"), ("NVIDIA A10G", 23_028, "A10G"),
    ("NVIDIA GeForce RTX 4090", 24_564, "RTX-4090"),
    ("NVIDIA A100-SXM4-40GB", 40_960, "A100-40GB"), ("NVIDIA A100-SXM4-80GB", 81_920, "A100-80GB"),
    ("NVIDIA H200", 143_771, "H200"),
    ("NVIDIA A100-SXM4-80GB", 76_000, "A100-80GB"),  # within 8% of the registry's size
    ("NVIDIA A100-SXM4-80GB", 75_000, None),  # more than 8% off: not that card
    ("NVIDIA H100 PCIe", 40_960, None),  # an H100's name but not its memory
    ("NVIDIA RTX A6000", 49_140, None),
])
def test_a_detected_gpu_gets_its_registry_name_by_name_and_memory(registry, fake_gpu, nvml_name, mib, known):
    fake_gpu(_nvml(nvml_name, mib))
    result = recommend(registry=registry)
    assert result.gpu.name == (known or nvml_name)
    assert (registry.tier(result.gpu.name) is not None) == (known is not None)


def test_nothing_fits_says_how_much_memory_there_was(registry):
    result = recommend(registry=registry, vram_gb=2)
    free = 2e9 - 480 * 2**20  # --vram 2 less the driver's reserve: 1.39 GiB
    assert result.choice is None
    assert result.reason == ("even the smallest combination needs more than 1.4 GiB: plan for a larger GPU "
                             "with --gpu or --vram")
    assert result.gpu.free_bytes == int(free)
    assert recommend(registry=registry, vram_gb=2, batch_size=2).reason.endswith(" (or a smaller --batch-size)")


def test_a_given_combination_that_does_not_fit_says_what_it_needs(registry):
    result = recommend(registry=registry, vram_gb=2, encoder="siglip-base", llm="qwen3-4b")
    needs = result.choice.estimate.total_bytes / 2**30
    assert result.reason == (f"the combination you asked for does not fit: needs {needs:.1f} GiB, "
                             f"{(2e9 - 480 * 2**20) / 2**30:.1f} GiB free")
    assert 4 < needs < 20  # a 4B model's bf16 weights alone are 8 GB


def test_a_given_combination_that_fits_says_so_and_nothing_more(registry):
    assert recommend(registry=registry, gpu="H100", encoder="siglip-base", llm="qwen3-4b").reason == \
        "the combination you asked for fits"


@pytest.mark.parametrize("limit", [1, 2, 7, 1024])
def test_largest_fitting_finds_the_boundary_anywhere_in_its_range(limit):
    from vlmkit.planner import largest_fitting

    for boundary in sorted({0, 1, 2, limit // 2, limit - 1, limit}):
        found = largest_fitting(lambda n, b=boundary: n <= b, limit)
        assert found == min(boundary, limit) and type(found) is int


def test_max_batch_is_the_boundary(registry):
    choice = recommend(registry=registry, gpu="L4", frames=32).choice
    n = choice.max_batch
    assert n > 1
    given = dict(registry=registry, gpu="L4", frames=32, encoder=choice.encoder, llm=choice.llm)
    assert recommend(**given, batch_size=n).choice.fits and not recommend(**given, batch_size=n + 1).choice.fits
    vlm = recommend(registry=registry, gpu="L4", vlm="llava-next-video-7b")
    assert vlm.choice.keys() == {"vlm": "llava-next-video-7b"} and vlm.choice.max_batch >= 1
    assert not recommend(registry=registry, gpu="L4", vlm="llava-next-video-7b",
                         batch_size=vlm.choice.max_batch + 1).choice.fits


def test_each_llm_gets_the_largest_encoder_within_a_tenth_of_its_size_that_fits(registry):
    result = recommend(registry=registry, vram_gb=48)
    for c in result.candidates:
        if c.vlm or c.tier:
            continue
        llm, encoder = registry.llm(c.llm), registry.encoder(c.encoder)
        allowed = [e for e in registry.encoders.values() if e.safetensors and e.params <= 0.1 * llm.params]
        fitting = [e for e in allowed
                   if recommend(registry=registry, vram_gb=48, encoder=e.key, llm=llm.key).choice.fits]
        assert encoder.params == max(e.params for e in (fitting or allowed or [encoder]))


def test_vlm_candidates_are_largest_first_and_only_the_tier_s_is_marked(registry):
    result = recommend(registry=registry, vram_gb=48)
    fitting = [c for c in result.candidates if c.vlm and c.fits]
    assert result.vlm_choice.vlm == max(fitting, key=lambda c: registry.vlm(c.vlm).params).vlm
    assert result.reason == "the largest combination that fits"  # a sized GPU has no tier
    h100 = recommend(registry=registry, gpu="H100")
    assert {c.vlm for c in h100.candidates if c.vlm and c.tier} == {"qwen3-vl-32b"}


MIB = 2**20
RESERVE = 480 * MIB  # the driver's share the planner takes off a named or sized GPU


def test_a_plan_carries_the_gpu_and_settings_it_was_made_for(registry):
    from vlmkit.planner import GpuTarget

    default = recommend(registry=registry, gpu="L4")
    assert (default.frames, default.max_new_tokens, default.batch_size, default.resolution) == (8, 128, 1, (1280, 720))
    assert default.gpu == GpuTarget("L4", 23_034 * MIB, 23_034 * MIB - RESERVE, (8, 9), True, "--gpu")
    assert default.vlm_choice is not None and default.dtype == "bfloat16"
    for given in ({}, {"encoder": "siglip-base", "llm": "qwen3-4b"}, {"vlm": "qwen3-vl-4b"}):
        result = recommend(registry=registry, gpu="T4", frames=12, max_new_tokens=64, batch_size=2,
                           resolution=(640, 360), **given)
        assert (result.frames, result.max_new_tokens, result.batch_size, result.resolution) == (12, 64, 2, (640, 360))
        assert result.gpu == GpuTarget("T4", 15_360 * MIB, 15_360 * MIB - RESERVE, (7, 5), False, "--gpu")
        assert result.dtype == "float16" and len(result.warnings) == 1 and "overflow" in result.warnings[0]
        assert result.choice.estimate.breakdown == (
            estimate_vlm(registry.vlm(given["vlm"]), frames=12, max_new_tokens=64, dtype="float16", batch=2,
                         resolution=(640, 360)) if "vlm" in given else
            estimate_composed(registry.encoder(result.choice.encoder), registry.llm(result.choice.llm), frames=12,
                              max_new_tokens=64, dtype="float16", batch=2)).breakdown
        assert result.candidates if not given else result.candidates == (result.choice,)
        assert (result.vlm_choice is result.choice) == ("vlm" in given)
    assert recommend(registry=registry, gpu="T4", dtype="float32").warnings == ()


def test_a_sized_or_missing_gpu_is_described_exactly(registry, fake_gpu):
    from vlmkit.planner import GpuTarget

    sized = recommend(registry=registry, vram_gb=24)
    assert sized.gpu == GpuTarget("24 GB GPU", 24_000_000_000, 24_000_000_000 - RESERVE, None, True, "--vram")
    assert sized.warnings == ("--vram assumes a GPU with native bfloat16; name the card with --gpu for fp16 cards",)
    assert not any(c.tier for c in sized.candidates)
    fake_gpu()
    cpu = recommend(registry=registry)
    import os
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert cpu.gpu == GpuTarget("CPU", ram, ram, None, False, "cpu")
    assert cpu.reason == ("no GPU: the smallest combination that needs no access approval, to run on the CPU (slowly); "
                          "plan for a GPU with --gpu NAME")
    vlms = [c for c in cpu.candidates if c.vlm]
    assert cpu.vlm_choice == min(vlms, key=lambda c: c.estimate.total_bytes)


@pytest.mark.parametrize("used_mib, warned", [(960, False), (961, True)])
def test_memory_already_in_use_is_warned_about_past_twice_the_driver_s_share(registry, fake_gpu, used_mib, warned):
    from dataclasses import replace

    fake_gpu(replace(H100, used_bytes=used_mib * MIB, free_bytes=H100.total_bytes - used_mib * MIB))
    result = recommend(registry=registry)
    assert result.gpu.name == "H100" and result.gpu.free_bytes == H100.total_bytes - used_mib * MIB
    assert result.gpu.compute_capability == (9, 0) and result.gpu.bf16 and result.gpu.vram_bytes == H100.total_bytes
    expected = f"GPU 0 has {used_mib * MIB / 2**30:.1f} GiB in use already; planning with the " \
               f"{(H100.total_bytes - used_mib * MIB) / 2**30:.1f} GiB free"
    assert list(result.warnings) == ([expected] if warned else [])
    with pytest.raises(UsageError, match="this machine has 1 GPU"):
        recommend(registry=registry, device=1)


def test_the_smallest_valid_options_are_accepted_and_the_next_ones_down_refused(registry):
    assert recommend(registry=registry, gpu="H100", frames=1, max_new_tokens=1).frames == 1
    assert recommend(registry=registry, vram_gb=0.5).gpu.vram_bytes == 500_000_000
    for bad in ({"frames": 0}, {"max_new_tokens": 0}, {"vram_gb": 0}, {"vlm": "qwen3-vl-4b", "llm": "qwen3-4b"},
                {"vlm": "qwen3-vl-4b", "encoder": "siglip-base", "llm": "qwen3-4b"}):
        with pytest.raises(UsageError):
            recommend(registry=registry, **({"gpu": "H100"} if "vram_gb" not in bad else {}), **bad)


def test_the_float16_warning_names_the_card_and_its_compute_capability(registry):
    assert recommend(registry=registry, gpu="T4").warnings == (
        "T4 (compute capability 7.5) has no native bfloat16: using float16; "
        "Qwen models trained in bfloat16 can overflow in float16",)
