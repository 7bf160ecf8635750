"""The memory estimate's terms: the CUDA context is paid on a GPU and only there."""

from __future__ import annotations

import pytest

from vlmkit.memory import estimate_composed, estimate_vlm
from vlmkit.planner import recommend
from vlmkit.registry import load_registry

CUDA_CONTEXT = 671_088_640  # 640 MiB, as README's `recommend --json` example shows


@pytest.fixture(scope="module")
def registry():
    return load_registry()


def estimates(registry, on_gpu: bool):
    where = {} if on_gpu else {"on_gpu": False}  # a GPU is the default
    composed = estimate_composed(registry.encoder("siglip-base"), registry.llm("qwen3-4b"), frames=8,
                                 max_new_tokens=128, dtype="bfloat16", **where)
    vlm = estimate_vlm(registry.vlm("llava-next-video-7b"), frames=8, max_new_tokens=128, dtype="bfloat16", **where)
    return composed, vlm


def test_a_gpu_plan_pays_for_the_cuda_context(registry):
    for estimate in estimates(registry, on_gpu=True):
        assert estimate.breakdown["cuda_context"] == CUDA_CONTEXT
        assert estimate.total_bytes == sum(estimate.breakdown.values())


def test_a_cpu_plan_has_no_cuda_context(registry):
    on_gpu, on_cpu = estimates(registry, on_gpu=True), estimates(registry, on_gpu=False)
    for gpu, cpu in zip(on_gpu, on_cpu):
        assert cpu.breakdown["cuda_context"] == 0
        assert gpu.total_bytes - cpu.total_bytes == CUDA_CONTEXT  # nothing else differs


def test_recommend_counts_the_cuda_context_on_a_gpu_only(registry, fake_gpu):
    """Through the planner: a named GPU, a detected GPU, and a machine without one."""
    from gpus import H100

    assert recommend(registry=registry, gpu="L4").choice.estimate.breakdown["cuda_context"] == CUDA_CONTEXT
    fake_gpu(H100)
    assert recommend(registry=registry).choice.estimate.breakdown["cuda_context"] == CUDA_CONTEXT
    fake_gpu()
    cpu = recommend(registry=registry)
    assert cpu.gpu.source == "cpu" and cpu.choice.estimate.breakdown["cuda_context"] == 0
    vlms = [c for c in cpu.candidates if c.vlm]  # the end-to-end VLMs are planned for the CPU too
    assert vlms and all(c.estimate.breakdown["cuda_context"] == 0 for c in vlms)


def test_the_context_limit_is_inclusive(registry):
    vlm = registry.vlm("llava-next-video-7b")  # 4096 tokens: 64 + 27 x 144 + 144 fills it exactly
    assert estimate_vlm(vlm, frames=27, max_new_tokens=144, dtype="bfloat16").within_context
    assert not estimate_vlm(vlm, frames=27, max_new_tokens=145, dtype="bfloat16").within_context


def test_the_kv_cache_grows_with_the_batch(registry):
    from vlmkit.memory import kv_cache_bytes

    llm = registry.llm("qwen3-8b")
    assert kv_cache_bytes(llm, 100, 2, batch=4) == 4 * kv_cache_bytes(llm, 100, 2) == 4 * 100 * 144 * 1024


def test_an_estimate_records_what_it_was_made_for_and_sizes_the_kv_cache_by_hand(registry):
    """The KV cache by hand (2 x layers x kv_heads x head_dim x 2 bytes x tokens); the fields read back."""
    from vlmkit.visual_tokens import video_tokens

    def kv(model, tokens):
        return 2 * model.layers * model.kv_heads * model.head_dim * 2 * tokens

    encoder, llm = registry.encoder("siglip-base"), registry.llm("qwen3-4b")
    composed = estimate_composed(encoder, llm, frames=8, max_new_tokens=128, dtype="bfloat16")
    assert (composed.dtype, composed.frames, composed.batch) == ("bfloat16", 8, 1)
    assert composed.breakdown["kv_cache"] == kv(llm, composed.context_tokens)
    three = estimate_composed(encoder, llm, frames=8, max_new_tokens=128, dtype="bfloat16", batch=3)
    assert three.batch == 3 and three.breakdown["kv_cache"] == 3 * kv(llm, composed.context_tokens)
    for key, resolution in (("qwen3-vl-4b", (640, 360)), ("qwen3-vl-4b", (1920, 1080)), ("llava-next-video-7b", None)):
        vlm = registry.vlm(key)
        est = estimate_vlm(vlm, frames=8, max_new_tokens=128, dtype="bfloat16", resolution=resolution)
        assert (est.dtype, est.frames, est.batch) == ("bfloat16", 8, 1)
        assert est.context_tokens == 64 + video_tokens(vlm, 8, resolution) + 128
        assert est.breakdown["kv_cache"] == kv(vlm, est.context_tokens)
        assert est.breakdown["weights"] == vlm.params * 2
    small, large = (estimate_vlm(registry.vlm("qwen3-vl-4b"), frames=8, max_new_tokens=128, dtype="bfloat16",
                                 resolution=r).context_tokens for r in ((640, 360), (1920, 1080)))
    assert small < large  # Qwen3-VL's token count follows the video's size


@pytest.mark.parametrize("llm_key, frames, new, batch, kv_per_token, prefill_per_token, phase", [
    # qwen3-4b: KV 2 x 36 layers x 8 x 128 x 2 B; prefill max(3 x 9728, 4 x 32 x 128) + 3 x 2560 values x 2 B
    ("qwen3-4b", 8, 128, 1, 147_456, 73_728, "prefill"),
    ("qwen3-4b", 8, 128, 3, 147_456, 73_728, "prefill"),  # each of 3 videos has its cache and its layer's width
    ("qwen3-4b", 1, 20_000, 1, 147_456, 73_728, "decode"),  # a long answer: the cache, grown, is the peak
    ("qwen3-4b", 1, 20_000, 3, 147_456, 73_728, "decode"),
    # qwen3-30b-a3b (MoE, 8 experts of width 768 per token): KV 2 x 48 x 4 x 128 x 2; max(3 x 6144, 4096) + 6144
    ("qwen3-30b-a3b", 8, 128, 1, 98_304, 49_152, "prefill"),
])
def test_activations_by_hand(registry, llm_key, frames, new, batch, kv_per_token, prefill_per_token, phase):
    """activations = (the highest phase - the final KV cache) x 1.2 allocator slack, terms from the docstrings."""
    llm = registry.llm(llm_key)
    est = estimate_composed(registry.encoder("siglip-base"), llm, frames=frames, max_new_tokens=new, dtype="bfloat16",
                            batch=batch)
    logits = 151_936 * 4  # the last position's float32 logits, one row per video
    prompt = est.context_tokens - new
    assert prompt == 64 + frames * 196
    full = batch * kv_per_token * (prompt + new)
    prefill = batch * (kv_per_token * prompt + prefill_per_token * prompt + logits)
    decode = full + full // llm.layers + batch * logits
    assert est.breakdown["kv_cache"] == full
    assert (prefill > decode) == (phase == "prefill")
    assert est.breakdown["activations"] == round((max(prefill, decode) - full) * 1.2)
