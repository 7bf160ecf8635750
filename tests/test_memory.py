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






def test_the_context_limit_is_inclusive(registry):
    vlm = registry.vlm("llava-next-video-7b")  # 4096 tokens: 64 + 27 x 144 + 144 fills it exactly
    assert estimate_vlm(vlm, frames=27, max_new_tokens=144, dtype="bfloat16").within_context
    assert not estimate_vlm(vlm, frames=27, max_new_tokens=145, dtype="bfloat16").within_context





def test_the_kv_cache_grows_with_the_batch(registry):
    from vlmkit.memory import kv_cache_bytes

    llm = registry.llm("qwen3-8b")
    assert kv_cache_bytes(llm, 100, 2, batch=4) == 4 * kv_cache_bytes(llm, 100, 2) == 4 * 100 * 144 * 1024
