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


def test_each_term_is_worked_out_by_hand_when_the_llm_prefill_dominates(registry):
    """dinov3-vitl16 + qwen3-8b, 8 frames, 128 new tokens, bfloat16 (2 bytes); numbers from the model cards."""
    est = estimate_composed(registry.encoder("dinov3-vitl16"), registry.llm("qwen3-8b"), frames=8,
                            max_new_tokens=128, dtype="bfloat16")
    context = 64 + 8 * 196 + 128  # prompt + 196 patch tokens per frame + new tokens
    assert est.context_tokens == context == 1760 and est.max_context == 40960
    assert (est.dtype, est.frames) == ("bfloat16", 8)
    assert est.breakdown["kv_cache"] == 2 * 36 * 8 * 128 * 2 * context  # K and V x layers x kv heads x head dim
    # one ViT layer over every frame: (196 patches + CLS + 4 registers) x (2 x MLP 4096 + 4 x 1024); float32 pixels
    vision = 8 * 201 * (2 * 4096 + 4 * 1024) * 2 + 8 * 3 * 224 * 224 * 4
    # one decoder layer over the prompt: 3 x MLP 12288 + 4 x hidden 4096 + 4 x 32 heads x 128; float32 logits
    prefill = (context - 128) * (3 * 12288 + 4 * 4096 + 4 * 32 * 128) * 2 + 151936 * 4
    assert prefill > vision and est.breakdown["activations"] == round(prefill * 1.2)


def test_each_term_is_worked_out_by_hand_when_the_vision_encoder_dominates(registry):
    """dinov3-vit7b16 + qwen3-0.6b, 8 frames, float32 (4 bytes): a huge encoder before a small LLM."""
    est = estimate_composed(registry.encoder("dinov3-vit7b16"), registry.llm("qwen3-0.6b"), frames=8,
                            max_new_tokens=128, dtype="float32")
    projector = 4096 * 1024 + 1024 * 1024 + 2 * 1024  # encoder width -> LLM width -> LLM width, with biases
    assert est.breakdown["weights"] == (6_700_000_000 + projector + 596_049_920) * 4
    vision = 8 * 201 * (2 * 8192 + 4 * 4096) * 4 + 8 * 3 * 224 * 224 * 4
    prefill = 1632 * (3 * 3072 + 4 * 1024 + 4 * 16 * 128) * 4 + 151936 * 4
    assert vision > prefill and est.breakdown["activations"] == round(vision * 1.2)


def test_a_moe_prefill_counts_the_active_experts(registry):
    est = estimate_composed(registry.encoder("dinov3-vitl16"), registry.llm("qwen3-30b-a3b"), frames=8,
                            max_new_tokens=128, dtype="bfloat16")
    prefill = 1632 * (3 * 768 * 8 + 4 * 2048 + 4 * 32 * 128) * 2 + 151936 * 4  # 8 experts of 768 per token
    assert est.breakdown["activations"] == round(prefill * 1.2)
    assert est.breakdown["kv_cache"] == 2 * 48 * 4 * 128 * 2 * 1760


def test_an_end_to_end_vlm_is_worked_out_by_hand(registry):
    """llava-next-video-7b: CLIP ViT-L/14 at 336 px (576 patches + CLS), Vicuna-7B, 144 tokens per frame."""
    est = estimate_vlm(registry.vlm("llava-next-video-7b"), frames=8, max_new_tokens=128, dtype="bfloat16")
    context = 64 + 8 * 144 + 128
    assert est.context_tokens == context and est.max_context == 4096
    assert (est.dtype, est.frames) == ("bfloat16", 8)
    assert est.breakdown["weights"] == 7_063_427_072 * 2
    assert est.breakdown["kv_cache"] == 2 * 32 * 32 * 128 * 2 * context
    vision = 8 * 577 * (2 * 4096 + 4 * 1024) * 2 + 8 * 3 * 336 * 336 * 4
    prefill = (context - 128) * (3 * 11008 + 4 * 4096 + 4 * 32 * 128) * 2 + 32064 * 4
    assert est.breakdown["activations"] == round(max(vision, prefill) * 1.2)


def test_the_context_limit_is_inclusive(registry):
    vlm = registry.vlm("llava-next-video-7b")  # 4096 tokens: 64 + 27 x 144 + 144 fills it exactly
    assert estimate_vlm(vlm, frames=27, max_new_tokens=144, dtype="bfloat16").within_context
    assert not estimate_vlm(vlm, frames=27, max_new_tokens=145, dtype="bfloat16").within_context


def test_an_end_to_end_vlm_whose_vision_tower_dominates(registry):
    """qwen3-vl-2b: a 768 px tower (48 x 48 patches + 1) before a 2B LLM that gets 256 tokens per frame."""
    est = estimate_vlm(registry.vlm("qwen3-vl-2b"), frames=8, max_new_tokens=128, dtype="bfloat16")
    vision = 8 * (48 * 48 + 1) * (2 * 4096 + 4 * 1024) * 2 + 8 * 3 * 768 * 768 * 4
    prefill = (64 + 8 * 256) * (3 * 6144 + 4 * 2048 + 4 * 16 * 128) * 2 + 151936 * 4
    assert vision > prefill and est.breakdown["activations"] == round(vision * 1.2)


def test_an_encoder_without_an_mlp_width_counts_four_times_its_width(registry):
    from dataclasses import replace

    encoder = replace(registry.encoder("dinov3-vit7b16"), intermediate_size=None)  # hidden 4096
    est = estimate_composed(encoder, registry.llm("qwen3-0.6b"), frames=8, max_new_tokens=128, dtype="float32")
    vision = 8 * 201 * (2 * 4 * 4096 + 4 * 4096) * 4 + 8 * 3 * 224 * 224 * 4
    assert est.breakdown["activations"] == round(vision * 1.2)


def test_a_vision_tower_counts_whole_patches_only(registry):
    from dataclasses import replace

    vlm = replace(registry.vlm("qwen3-vl-2b"), vision_image_size=760)  # 47.5 patches a side: 47 whole ones
    est = estimate_vlm(vlm, frames=8, max_new_tokens=128, dtype="bfloat16")
    vision = 8 * (47 * 47 + 1) * (2 * 4096 + 4 * 1024) * 2 + 8 * 3 * 760 * 760 * 4
    assert est.breakdown["activations"] == round(vision * 1.2)


def test_the_kv_cache_grows_with_the_batch(registry):
    from vlmkit.memory import kv_cache_bytes

    llm = registry.llm("qwen3-8b")
    assert kv_cache_bytes(llm, 100, 2, batch=4) == 4 * kv_cache_bytes(llm, 100, 2) == 4 * 100 * 144 * 1024
