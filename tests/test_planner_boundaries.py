"""The planner at its edges: free memory equal to an estimate to the byte, registries cut down to a few
entries (so that the one pair there is decides), the reason given when nothing fits, and GPU names.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from vlmkit.gpu import GpuDevice
from vlmkit.memory import estimate_composed
from vlmkit.planner import recommend
from vlmkit.registry import GpuSpec, Tier, load_registry

MIB = 2**20


@pytest.fixture(scope="module")
def registry():
    return load_registry()


def only(registry, encoders=(), llms=(), vlms=(), tiers=()):
    """The registry cut down to the named entries and tiers."""
    return replace(registry, encoders={k: registry.encoders[k] for k in encoders},
                   llms={k: registry.llms[k] for k in llms}, vlms={k: registry.vlms[k] for k in vlms}, tiers=tiers)


def gpu(free: int) -> GpuDevice:
    """A card the registry does not know (no tier), bfloat16-capable, with exactly `free` bytes free."""
    return GpuDevice(index=0, name="Accelerator X", total_bytes=free + 500 * MIB, free_bytes=free,
                     used_bytes=500 * MIB, compute_capability=(9, 0))


def need(registry, encoder, llm, frames=8, tokens=128, batch=1) -> int:
    return estimate_composed(registry.encoder(encoder), registry.llm(llm), frames=frames, max_new_tokens=tokens,
                             dtype="bfloat16", batch=batch).total_bytes


def test_a_plan_that_needs_exactly_the_free_memory_fits(registry, fake_gpu):
    """qwen3-4b may take an encoder up to 402M parameters: dinov3-vitl16 (303M) unless only siglip-base fits."""
    two = only(registry, ["dinov3-vitl16", "siglip-base"], ["qwen3-4b"])
    small = need(registry, "siglip-base", "qwen3-4b")
    assert small < need(registry, "dinov3-vitl16", "qwen3-4b")
    fake_gpu(gpu(small))
    result = recommend(registry=two)
    assert result.choice.keys() == {"encoder": "siglip-base", "llm": "qwen3-4b"} and result.choice.fits
    assert result.choice.estimate.total_bytes == result.gpu.free_bytes
    assert result.reason == "the largest combination that fits"
    fake_gpu(gpu(small - 1))
    assert recommend(registry=two).choice is None


def test_an_encoder_of_exactly_a_tenth_of_the_llm_is_allowed(registry, fake_gpu):
    llm = replace(registry.llm("qwen3-0.6b"), params=10 * registry.encoder("siglip-base").params)
    two = replace(only(registry, ["siglip-base", "dinov3-vits16"]), llms={llm.key: llm})
    fake_gpu(gpu(80 * 2**30))
    assert recommend(registry=two).choice.encoder == "siglip-base"


def test_an_llm_with_no_encoder_within_a_tenth_of_its_size_gets_the_smallest(registry, fake_gpu):
    """qwen3-0.6b allows 60M: none of these three, so the smallest (dinov3-vitb16, 86M), even where all fit."""
    three = only(registry, ["dinov3-vitl16", "siglip-base", "dinov3-vitb16"], ["qwen3-0.6b"])
    fake_gpu(gpu(80 * 2**30))
    assert recommend(registry=three).choice.keys() == {"encoder": "dinov3-vitb16", "llm": "qwen3-0.6b"}


ONE_PAIR = (["siglip-base"], ["qwen3-0.6b"])


@pytest.mark.parametrize("free, asked, reason", [
    # the free memory is what siglip-base + qwen3-0.6b needs at (frames, new tokens, batch)
    ((1, 128, 1), dict(frames=2), "no combination fits {free} at 2 frames: try fewer --frames"),
    ((1, 128, 1), dict(frames=1, batch_size=2),
     "no combination fits {free} with these --frames and --max-new-tokens: lower both (or a smaller --batch-size)"),
    ((8, 128, 1), dict(batch_size=2), "no combination fits {free} at 8 frames: try fewer --frames "
                                      "(or a smaller --batch-size)"),
    ((8, 128, 1), dict(max_new_tokens=1000),
     "--max-new-tokens 1,000 is too large: no combination has room for that many new tokens at 8 frames "
     "(in its context and in {free}); ask for fewer"),
    ((1, 1, 1), dict(max_new_tokens=1000),
     "no combination fits {free} with these --frames and --max-new-tokens: lower both"),
    ((1, 1, 1), dict(), "no combination fits {free} with these --frames and --max-new-tokens: lower both"),
])
def test_when_nothing_fits_the_reason_names_what_would(registry, fake_gpu, free, asked, reason):
    """Each reason at its edge: one pair in the registry, and exactly the memory it needs for the named sizes."""
    frames, tokens, batch = free
    free_bytes = need(registry, "siglip-base", "qwen3-0.6b", frames, tokens, batch)
    fake_gpu(gpu(free_bytes))
    result = recommend(registry=only(registry, *ONE_PAIR), **asked)
    assert result.choice is None
    assert result.reason == reason.format(free=f"{free_bytes / 2**30:.1f} GiB")


def test_lower_both_only_when_one_frame_and_one_new_token_fit(registry, fake_gpu):
    free_bytes = need(registry, "siglip-base", "qwen3-0.6b", 1, 1) - 1
    fake_gpu(gpu(free_bytes))
    result = recommend(registry=only(registry, *ONE_PAIR))
    assert result.reason == (f"even the smallest combination needs more than {free_bytes / 2**30:.1f} GiB: "
                             "plan for a larger GPU with --gpu or --vram")


def test_nothing_fits_looks_at_the_encoder_and_llm_pairs_only(registry, fake_gpu):
    """8 GiB: siglip-base + qwen3-8b (16 GB of weights) never fits, Qwen3-VL-2B does; the reason is about the pair."""
    fake_gpu(gpu(8 * 2**30))
    result = recommend(registry=only(registry, ["siglip-base"], ["qwen3-8b"], vlms=["qwen3-vl-2b"]))
    assert result.choice is None and result.vlm_choice.vlm == "qwen3-vl-2b"
    assert result.reason == ("even the smallest combination needs more than 8.0 GiB: plan for a larger GPU "
                             "with --gpu or --vram")


def test_without_llms_or_vlms_a_cpu_plan_has_no_choice(registry, fake_gpu):
    fake_gpu()
    encoders_only = only(registry, ["siglip-base"])
    result = recommend(registry=encoders_only)
    assert result.gpu.source == "cpu" and result.choice is None and result.vlm_choice is None
    assert result.candidates == ()
    pair_only = recommend(registry=only(registry, *ONE_PAIR))
    assert pair_only.choice.keys() == {"encoder": "siglip-base", "llm": "qwen3-0.6b"} and pair_only.vlm_choice is None


def test_a_tier_that_fits_without_any_vlm_that_does(registry):
    """T4's tier pair fits; with no VLM in the registry there is no VLM to name, and that is not an error."""
    result = recommend(registry=replace(registry, vlms={}), gpu="T4")
    assert result.choice.tier and result.choice.fits and result.vlm_choice is None


def test_a_sized_gpu_never_takes_a_tier_even_one_named_like_it(registry):
    """--vram 24 is called "24 GB GPU"; a registry tier for a GPU of that name is still not applied."""
    tier = Tier(gpu="24 GB GPU", encoder="siglip-base", llm="qwen3-0.6b")
    result = recommend(registry=replace(registry, tiers=(tier,)), vram_gb=24)
    assert not any(c.tier for c in result.candidates)
    assert result.reason == "the largest combination that fits"


def _nvml(name: str, mib: int) -> GpuDevice:
    return GpuDevice(index=0, name=name, total_bytes=mib * MIB, free_bytes=(mib - 500) * MIB, used_bytes=500 * MIB,
                     compute_capability=(8, 6))


@pytest.mark.parametrize("nvml_name, mib", [
    ("NVIDIA GeForce RTX 3090", 24_576),  # 24 GB like an RTX 4090, another card
    ("NVIDIA RTX A5000", 24_564),  # exactly an RTX 4090's memory
])
def test_an_rtx_card_is_not_taken_for_another_of_the_same_size(registry, fake_gpu, nvml_name, mib):
    fake_gpu(_nvml(nvml_name, mib))
    assert recommend(registry=registry).gpu.name == nvml_name


def test_the_longest_registry_name_that_matches_wins(registry, fake_gpu):
    """An RTX 4090 D (24 GB, a registry entry of its own here) is not called an RTX 4090."""
    d = GpuSpec("RTX-4090-D", 24_564, "8.9", True)
    fake_gpu(_nvml("NVIDIA GeForce RTX 4090 D", 24_564))
    assert recommend(registry=replace(registry, gpus=registry.gpus | {"RTX-4090-D": d})).gpu.name == "RTX-4090-D"
    fake_gpu(_nvml("NVIDIA GeForce RTX 4090", 24_564))
    assert recommend(registry=replace(registry, gpus=registry.gpus | {"RTX-4090-D": d})).gpu.name == "RTX-4090"


def test_memory_exactly_8_percent_off_is_another_card(registry, fake_gpu):
    """25,000 MiB x 0.08 is a whole number of bytes (2,097,152,000): that far off is too far."""
    card = GpuSpec("Z100", 25_000, "9.0", True)
    with_card = replace(registry, gpus=registry.gpus | {"Z100": card})
    off = 2_097_152_000
    fake_gpu(replace(_nvml("NVIDIA Z100", 25_000), total_bytes=25_000 * MIB - off))
    assert recommend(registry=with_card).gpu.name == "NVIDIA Z100"
    fake_gpu(replace(_nvml("NVIDIA Z100", 25_000), total_bytes=25_000 * MIB - off + 1))
    assert recommend(registry=with_card).gpu.name == "Z100"


def test_device_cpu_plans_for_the_cpu_on_a_machine_with_a_gpu(registry, fake_gpu):
    from gpus import H100

    fake_gpu(H100)
    result = recommend(registry=registry, device="cpu")
    assert result.gpu.source == "cpu" and result.gpu.name == "CPU" and result.dtype == "float32"
    assert result.warnings == ()


def test_a_cpu_plan_without_os_sysconf_counts_no_memory(registry, fake_gpu, monkeypatch):
    """Where Python has no os.sysconf (Windows) the machine's RAM is unknown: 0 bytes, and the plan still comes."""
    import os

    fake_gpu()
    monkeypatch.delattr(os, "sysconf")
    result = recommend(registry=registry)
    assert result.gpu.source == "cpu" and result.gpu.vram_bytes == result.gpu.free_bytes == 0
    assert result.choice.keys() == {"encoder": "siglip-base", "llm": "qwen3-0.6b"} and not result.choice.fits


def test_a_recommendation_shows_as_a_table_in_a_notebook(registry):
    result = recommend(registry=registry, gpu="L4")
    html = result._repr_html_()
    assert html.startswith("<") and "dinov3-vitb16" in html and "qwen3-8b" in html
