"""Memory estimates worked by hand from the formulas in memory.py's docstrings: training, the vision tower, batches.

Every expected number is written out as arithmetic on models.toml's figures; no test asks memory.py for
its own answer. The vision tower is the peak only when its activations outweigh the LLM's prefill, which
no VLM in models.toml reaches at the sizes people use, so those tests give a registry entry a narrow LLM
(`dataclasses.replace`): a small language model behind a large vision tower.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from vlmkit.memory import estimate_composed, estimate_training, estimate_vlm, pooled_tokens
from vlmkit.registry import load_registry

MIB = 2**20
CUDA_CONTEXT = 640 * MIB
SLACK = 1.2  # the caching allocator's 20% on the transient part
QWEN_VOCAB = 151_936


@pytest.fixture(scope="module")
def registry():
    return load_registry()


def narrow(model):
    """The LLM part of a registry entry made small: 2 layers, width 256, 4 query heads and 1 KV head of 64."""
    return replace(model, layers=2, hidden_size=256, heads=4, kv_heads=1, head_dim=64, intermediate_size=512)


# per prompt token of `narrow`, in bfloat16: KV 2 x 2 layers x 1 x 64 x 2 B; prefill max(3 x 512, 4 x 4 x 64) + 3 x 256
NARROW_KV = 2 * 2 * 1 * 64 * 2
NARROW_PREFILL = (max(3 * 512, 4 * 4 * 64) + 3 * 256) * 2


@pytest.mark.parametrize("tokens, pool, pooled", [
    (196, 1, 196),  # a 14 x 14 grid, not pooled
    (196, 2, 49),  # 7 x 7
    (196, 3, 25),  # ceil(14 / 3) = 5 a side: a partial window still makes a token
    (196, 4, 16),  # ceil(14 / 4) = 4
    (729, 2, 196),  # 27 x 27 -> ceil(27 / 2) = 14 a side
    (576, 2, 144),  # 24 x 24 -> 12 x 12
    (49, 7, 1),
    (1728, 2, 1728),  # not a square grid: left as it is
    (195, 2, 195),  # next to a square (14 x 14 = 196), not one
])
def test_pooled_tokens_by_hand(tokens, pool, pooled):
    assert pooled_tokens(tokens, pool) == pooled


def test_training_estimate_by_hand_with_every_option_set(registry):
    """siglip-base + qwen3-8b in float32, 8 frames pooled 2 x 2, batch 3, 50 prompt and 32 caption tokens."""
    encoder, llm = registry.encoder("siglip-base"), registry.llm("qwen3-8b")
    est = estimate_training(encoder, llm, frames=8, pool=2, batch_size=3, caption_tokens=32, dtype="float32",
                            prompt_tokens=50)
    tokens = 50 + 8 * 49 + 32  # prompt + 8 frames of 7 x 7 pooled tokens + caption
    checkpoints = 36 * 3 * tokens * 4096 * 4  # each layer's input [B, L, H], float32
    # one layer: MLP 3 x 12288, residual 4 x 4096, attention 4 x 32 heads x 128
    layer = tokens * (3 * 12288 + 4 * 4096 + 4 * 32 * 128) * 4
    one_layer = 2 * 3 * layer  # its activations and their gradients, for 3 videos
    logits = 2 * 3 * 32 * QWEN_VOCAB * 4  # caption positions, float32, with their gradient
    vision = 8 * 196 * (2 * 3072 + 4 * 768) * 4 + 8 * 3 * 224 * 224 * 4  # one ViT layer + float32 pixels
    assert vision < checkpoints + one_layer + logits
    assert (est.dtype, est.frames, est.batch, est.context_tokens, est.max_context) == ("float32", 8, 1, tokens, 40960)
    assert est.breakdown == {
        "weights": (92_884_224 + 8_190_735_360) * 4,
        "projector": (768 * 4096 + 4096 * 4096 + 2 * 4096) * 16,  # float32 weights, gradients, 2 AdamW moments
        "activations": round((checkpoints + one_layer + logits) * SLACK),
        "cuda_context": CUDA_CONTEXT,
    }
    on_cpu = estimate_training(encoder, llm, frames=8, pool=2, batch_size=3, caption_tokens=32, dtype="float32",
                               prompt_tokens=50, on_gpu=False)
    assert on_cpu.breakdown == est.breakdown | {"cuda_context": 0}


def test_training_estimate_by_hand_with_the_defaults_and_a_moe_llm(registry):
    """siglip-base + qwen3-30b-a3b: no pooling, batch 1, 64 prompt and 64 caption tokens, bfloat16, on a GPU."""
    encoder, llm = registry.encoder("siglip-base"), registry.llm("qwen3-30b-a3b")
    est = estimate_training(encoder, llm, frames=8)
    tokens = 64 + 8 * 196 + 64
    checkpoints = 48 * tokens * 2048 * 2
    layer = tokens * (3 * 768 * 8 + 4 * 2048 + 4 * 32 * 128) * 2  # 8 active experts of width 768
    logits = 2 * 64 * QWEN_VOCAB * 4
    vision = 8 * 196 * (2 * 3072 + 4 * 768) * 2 + 8 * 3 * 224 * 224 * 4
    assert vision < checkpoints + 2 * layer + logits
    assert (est.dtype, est.context_tokens, est.max_context) == ("bfloat16", tokens, 40960)
    assert est.breakdown == {
        "weights": (92_884_224 + 30_500_000_000) * 2,
        "projector": (768 * 2048 + 2048 * 2048 + 2 * 2048) * 16,
        "activations": round((checkpoints + 2 * layer + logits) * SLACK),
        "cuda_context": CUDA_CONTEXT,
    }


def test_training_estimate_when_the_encoder_peaks(registry):
    """128 frames through dinov3-convnext-tiny (no intermediate size in models.toml: 4 x hidden), pooled 4 x 4
    to 2 x 2 tokens a frame, for qwen3-0.6b: the encoder over every frame outweighs the LLM's step."""
    encoder, llm = registry.encoder("dinov3-convnext-tiny"), registry.llm("qwen3-0.6b")
    est = estimate_training(encoder, llm, frames=128, pool=4)
    tokens = 64 + 128 * 4 + 64  # ceil(7 / 4) = 2 a side
    llm_step = 28 * tokens * 1024 * 2 + 2 * tokens * (3 * 3072 + 4 * 1024 + 4 * 16 * 128) * 2 + 2 * 64 * QWEN_VOCAB * 4
    vision = 128 * (49 + 1) * (2 * 4 * 768 + 4 * 768) * 2 + 128 * 3 * 224 * 224 * 4  # 49 patches + 1 pooled token
    assert vision > llm_step
    assert est.context_tokens == tokens
    assert est.breakdown["activations"] == round(vision * SLACK)


@pytest.mark.parametrize("key, patches, width", [
    ("clip-vit-l-336", 576 + 1, 2 * 4096 + 4 * 1024),  # 24 x 24 patches + CLS; MLP 4096 twice, 4 x 1024
    ("dinov3-convnext-tiny", 49 + 1, 2 * 4 * 768 + 4 * 768),  # 7 x 7 + a pooled token; no MLP size: 4 x 768
])
def test_composed_estimate_when_the_encoder_peaks_in_a_batch(registry, key, patches, width):
    """An encoder over 2 videos of 8 frames before a narrow LLM: the vision phase is the peak."""
    encoder, llm = registry.encoder(key), narrow(registry.llm("qwen3-0.6b"))
    est = estimate_composed(encoder, llm, frames=8, max_new_tokens=128, dtype="bfloat16", batch=2)
    prompt = 64 + 8 * encoder.tokens_per_frame
    # one ViT layer over 8 frames, then the float32 pixels
    vision = 2 * (8 * patches * width * 2 + 8 * 3 * encoder.image_size ** 2 * 4)
    full = 2 * NARROW_KV * (prompt + 128)
    prefill = 2 * NARROW_KV * prompt + 2 * (NARROW_PREFILL * prompt + QWEN_VOCAB * 4)
    decode = full + full // 2 + 2 * QWEN_VOCAB * 4
    assert vision > max(prefill, decode)
    assert (est.context_tokens, est.batch) == (prompt + 128, 2)
    assert est.breakdown["kv_cache"] == full
    assert est.breakdown["activations"] == round((vision - full) * SLACK)


def test_prefill_when_attention_is_wider_than_the_mlp(registry):
    """qwen3-0.6b with an MLP of 1024: queries, keys, values and output (4 x 16 heads x 128) are the widest point."""
    llm = replace(registry.llm("qwen3-0.6b"), intermediate_size=1024)
    est = estimate_composed(registry.encoder("siglip-base"), llm, frames=8, max_new_tokens=128, dtype="bfloat16")
    prompt = 64 + 8 * 196
    kv = 2 * 28 * 8 * 128 * 2  # per token
    widest = (max(3 * 1024, 4 * 16 * 128) + 3 * 1024) * 2
    prefill = kv * prompt + widest * prompt + QWEN_VOCAB * 4
    full = kv * (prompt + 128)
    assert prefill > full + full // 28 + QWEN_VOCAB * 4
    assert est.breakdown["activations"] == round((prefill - full) * SLACK)


def test_vlm_estimate_when_the_vision_tower_peaks(registry):
    """LLaVA-NeXT-Video's vision tower (CLIP-L/14 at 336 px) over 2 videos of 8 frames, before a narrow LLM."""
    vlm = narrow(registry.vlm("llava-next-video-7b"))
    est = estimate_vlm(vlm, frames=8, max_new_tokens=128, dtype="bfloat16", batch=2, prompt_tokens=20)
    prompt = 20 + 8 * 144
    patches = 8 * ((336 // 14) ** 2 + 1)  # 24 x 24 patches + CLS a frame
    vision = 2 * (patches * (2 * 4 * 1024 + 4 * 1024) * 2 + 8 * 3 * 336 * 336 * 4)  # + float32 pixels
    full = 2 * NARROW_KV * (prompt + 128)
    prefill = 2 * NARROW_KV * prompt + 2 * (NARROW_PREFILL * prompt + 32_064 * 4)
    assert vision > max(prefill, full + full // 2 + 2 * 32_064 * 4)
    assert est.context_tokens == prompt + 128
    assert est.breakdown["activations"] == round((vision - full) * SLACK)


def test_qwen3_vl_estimate_when_the_vision_tower_peaks(registry):
    """Qwen3-VL-4B's vision tower over 3 videos of 8 frames at 640 x 360, before a narrow LLM.

    The processor resizes 640 x 360 to 640 x 352 (multiples of 32); 8 frames make 4 temporal patches of
    (352 / 16) x (640 / 16) = 880 patches each, merged 2 x 2 into 880 x 4 / 4 = 880 tokens.
    """
    vlm = narrow(registry.vlm("qwen3-vl-4b"))
    est = estimate_vlm(vlm, frames=8, max_new_tokens=128, dtype="bfloat16", batch=3, resolution=(640, 360))
    tokens = 4 * 22 * 40 // 4
    patches = 4 * 22 * 40  # each spans 2 frames
    pixel_values = patches * 3 * 2 * 16 * 16  # one row of 3 channels x 2 frames x 16 x 16 per patch
    vision = 3 * (patches * (2 * 4 * 1024 + 4 * 1024) * 2 + pixel_values * 4)
    prompt = 64 + tokens
    full = 3 * NARROW_KV * (prompt + 128)
    prefill = 3 * NARROW_KV * prompt + 3 * (NARROW_PREFILL * prompt + QWEN_VOCAB * 4)
    assert vision > max(prefill, full + full // 2 + 3 * QWEN_VOCAB * 4)
    assert est.context_tokens == prompt + 128
    assert est.breakdown["activations"] == round((vision - full) * SLACK)
