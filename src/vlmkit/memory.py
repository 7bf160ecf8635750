"""Peak GPU memory of batched inference, estimated from registry numbers alone.

The target is what NVML shows as used by the process: weights, the KV cache of B videos padded to
the longest prompt (prompt + visual tokens + new tokens each), the transient memory of whichever
phase peaks highest (see `_inference_peak`), the CUDA context, and the caching allocator's slack
on the transient part.
"""

from __future__ import annotations

from dataclasses import dataclass

from vlmkit.registry import LLM, VLM, Encoder
from vlmkit.visual_tokens import QWEN3_VL_VIDEO, RESIZED_FAMILIES, video_tokens, vision_patches

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
MIB = 2**20
GIB = 2**30

CUDA_CONTEXT_BYTES = 640 * MIB  # CUDA context + cuBLAS/cuDNN workspaces beyond PyTorch's allocator
ALLOCATOR_SLACK = 0.20  # the caching allocator reserves more than transient tensors need
PROMPT_TOKENS = 64  # chat template + a one-line prompt, besides the visual tokens
MOE_ACTIVE_EXPERTS = 8  # Qwen3 MoE: 8 of 128 experts run per token
LOGITS_BYTES = 4  # the last position's logits are upcast to float32
PIXEL_BYTES = 4  # processors hand over float32 pixels


@dataclass(frozen=True)
class MemoryEstimate:
    dtype: str
    frames: int
    context_tokens: int  # prompt + visual tokens + max new tokens, per video
    max_context: int
    breakdown: dict[str, int]  # bytes per term: weights, kv_cache, activations, cuda_context
    batch: int = 1  # videos per generate call, each padded to `context_tokens`

    @property
    def total_bytes(self) -> int:
        return sum(self.breakdown.values())

    @property
    def within_context(self) -> bool:
        return self.context_tokens <= self.max_context


def projector_params(encoder: Encoder, llm: LLM) -> int:
    """LLaVA-style two-layer MLP: encoder features -> LLM width -> LLM width, with biases."""
    return encoder.hidden_size * llm.hidden_size + llm.hidden_size * llm.hidden_size + 2 * llm.hidden_size


def estimate_composed(encoder: Encoder, llm: LLM, *, frames: int, max_new_tokens: int, dtype: str,
                      prompt_tokens: int = PROMPT_TOKENS, on_gpu: bool = True, batch: int = 1) -> MemoryEstimate:
    """encoder + projector + LLM, all on one GPU; `batch` videos per generate call."""
    size = DTYPE_BYTES[dtype]
    prompt = prompt_tokens + frames * encoder.tokens_per_frame
    vision = batch * _vit_activation_bytes(
        frames, encoder.tokens_per_frame + encoder.extra_tokens, encoder.hidden_size,
        encoder.intermediate_size or 4 * encoder.hidden_size, encoder.image_size, size)
    weights = (encoder.params + projector_params(encoder, llm) + llm.params) * size
    return _estimate(llm, dtype, frames, prompt, max_new_tokens, batch, weights, vision, on_gpu)


def estimate_vlm(vlm: VLM, *, frames: int, max_new_tokens: int, dtype: str, prompt_tokens: int = PROMPT_TOKENS,
                 on_gpu: bool = True, batch: int = 1, resolution: tuple[int, int] | None = None) -> MemoryEstimate:
    """An end-to-end VLM: its vision tower runs over every frame of the batch, then its LLM.

    `resolution` (width, height) matters for Qwen3-VL only: its processor resizes by a rule of its
    own (vlmkit.visual_tokens); in a batch, give the largest video's, since all are padded to it.
    """
    size = DTYPE_BYTES[dtype]
    prompt = prompt_tokens + video_tokens(vlm, frames, resolution)
    patches = vision_patches(vlm, frames, resolution)
    vision = batch * (_vit_activation_bytes(1, patches, vlm.vision_hidden_size, 4 * vlm.vision_hidden_size, 0, size)
                      + _pixel_values(vlm, frames, resolution) * PIXEL_BYTES)
    return _estimate(vlm, dtype, frames, prompt, max_new_tokens, batch, vlm.params * size, vision, on_gpu)


def _estimate(llm: LLM, dtype: str, frames: int, prompt: int, new_tokens: int, batch: int, weights: int,
              vision: int, on_gpu: bool) -> MemoryEstimate:
    size = DTYPE_BYTES[dtype]
    kv = kv_cache_bytes(llm, prompt + new_tokens, size, batch)
    transient = _inference_peak(llm, prompt, new_tokens, batch, size, vision) - kv
    return MemoryEstimate(
        dtype=dtype, frames=frames, context_tokens=prompt + new_tokens, max_context=llm.max_context,
        breakdown={
            "weights": weights,
            "kv_cache": kv,
            "activations": round(transient * (1 + ALLOCATOR_SLACK)),
            "cuda_context": CUDA_CONTEXT_BYTES if on_gpu else 0,
        },
        batch=batch,
    )


def _inference_peak(llm: LLM, prompt: int, new_tokens: int, batch: int, size: int, vision: int) -> int:
    """Bytes beyond the weights at the highest of the three phases of one generate call.

    - vision: the encoder over every frame of the batch; no KV cache exists yet.
    - prefill: the KV cache of every layer for the prompt, plus the widest point of one decoder
      layer over the whole (padded) prompt.
    - decoding: the KV cache for prompt + new tokens; transformers' DynamicCache grows by
      concatenation, so one layer's keys and values briefly exist twice; float32 logits.
    For LLaVA-NeXT-Video-7B at 8 frames prefill and decoding are within 3% of each other.
    """
    prefill = kv_cache_bytes(llm, prompt, size, batch) + batch * _prefill_activation_bytes(llm, prompt, size)
    full = kv_cache_bytes(llm, prompt + new_tokens, size, batch)
    decode = full + full // llm.layers + batch * llm.vocab_size * LOGITS_BYTES
    return max(vision, prefill, decode)


def kv_cache_bytes(llm: LLM, tokens: int, dtype_bytes: int, batch: int = 1) -> int:
    """Keys and values for every layer: 2 x layers x kv_heads x head_dim x bytes per token."""
    return 2 * llm.layers * llm.kv_heads * llm.head_dim * dtype_bytes * tokens * batch


def _prefill_activation_bytes(llm: LLM, tokens: int, size: int) -> int:
    """The widest point of one decoder layer over one video's prompt, beside the layer's input.

    With SDPA no T x T score matrix exists. In the MLP, act(gate), up and their product are live at
    once (3 x intermediate); in attention, queries and the keys and values that transformers repeats
    up to the query heads, plus the output (4 x heads x head_dim). Either way the residual stream,
    the layer's normalised input and the model's input embeddings are live too (3 x hidden).
    """
    mlp_width = llm.intermediate_size * (MOE_ACTIVE_EXPERTS if llm.active_params else 1)
    per_token = max(3 * mlp_width, 4 * llm.heads * llm.head_dim) + 3 * llm.hidden_size
    return tokens * per_token * size + llm.vocab_size * LOGITS_BYTES


def _layer_activation_bytes(llm: LLM, tokens: int, size: int) -> int:
    """Everything one decoder layer computes over `tokens` (training keeps all of it for backward):
    MLP (gate, up, their product), attention (q and the repeated k, v, output) and the residual stream.
    """
    mlp_width = llm.intermediate_size * (MOE_ACTIVE_EXPERTS if llm.active_params else 1)
    return tokens * (3 * mlp_width + 4 * llm.hidden_size + 4 * llm.heads * llm.head_dim) * size


def _pixel_values(vlm: VLM, frames: int, resolution: tuple[int, int] | None) -> int:
    """Values of the pixel tensor the processor hands over for one video (3 channels)."""
    if vlm.family in RESIZED_FAMILIES:  # one row of 3 x 2 frames x 16 x 16 values per patch
        return vision_patches(vlm, frames, resolution) * 3 * QWEN3_VL_VIDEO.temporal_patch_size * \
            vlm.vision_patch_size ** 2
    return frames * 3 * vlm.vision_image_size ** 2


def _vit_activation_bytes(frames: int, tokens: int, hidden: int, mlp: int, image_size: int, size: int) -> int:
    """One ViT layer over all frames at once, plus the float32 pixels the processor hands over."""
    pixels = frames * 3 * image_size * image_size * PIXEL_BYTES
    return frames * tokens * (2 * mlp + 4 * hidden) * size + pixels


# --- Training a projector (`vlmkit train`) -------------------------------------------------------

TRAINABLE_BYTES = 4 * 4  # float32 projector weights, gradients, and AdamW's two moments
CAPTION_TOKENS = 64  # a one- or two-sentence caption plus <|im_end|>


def pooled_tokens(tokens_per_frame: int, pool: int) -> int:
    """Visual tokens per frame after pool x pool average pooling of the (square) patch grid."""
    side = round(tokens_per_frame ** 0.5)
    return ((side + pool - 1) // pool) ** 2 if side * side == tokens_per_frame else tokens_per_frame


def estimate_training(encoder: Encoder, llm: LLM, *, frames: int, pool: int = 1, batch_size: int = 1,
                      caption_tokens: int = CAPTION_TOKENS, dtype: str = "bfloat16", on_gpu: bool = True,
                      prompt_tokens: int = PROMPT_TOKENS) -> MemoryEstimate:
    """Frozen encoder and LLM in `dtype`, a float32 projector with AdamW, one micro-batch of `batch_size`.

    With gradient checkpointing each LLM layer keeps only its input [B, L, H]; backward recomputes one
    layer at a time, whose activations and their gradients are live together. Logits are computed for
    the caption positions only, in float32, with their gradient.
    """
    size = DTYPE_BYTES[dtype]
    tokens = prompt_tokens + frames * pooled_tokens(encoder.tokens_per_frame, pool) + caption_tokens
    checkpoints = llm.layers * batch_size * tokens * llm.hidden_size * size
    one_layer = 2 * batch_size * _layer_activation_bytes(llm, tokens, size)
    logits = 2 * batch_size * caption_tokens * llm.vocab_size * LOGITS_BYTES
    vision = _vit_activation_bytes(frames, encoder.tokens_per_frame + encoder.extra_tokens, encoder.hidden_size,
                                   encoder.intermediate_size or 4 * encoder.hidden_size, encoder.image_size, size)
    return MemoryEstimate(
        dtype=dtype, frames=frames, context_tokens=tokens, max_context=llm.max_context,
        breakdown={
            "weights": (encoder.params + llm.params) * size,
            "projector": projector_params(encoder, llm) * TRAINABLE_BYTES,
            "activations": round(max(vision, checkpoints + one_layer + logits) * (1 + ALLOCATOR_SLACK)),
            "cuda_context": CUDA_CONTEXT_BYTES if on_gpu else 0,
        },
    )
