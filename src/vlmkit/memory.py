"""Peak GPU memory of batch-1 inference, estimated from registry numbers alone.

The target is what NVML shows as used by the process: weights, the KV cache for the whole
context (prompt + frames x tokens_per_frame + new tokens), the largest transient activations
(vision encoder over all frames at once, LLM prefill with SDPA attention), the CUDA context,
and the caching allocator's slack on activations.
"""

from __future__ import annotations

from dataclasses import dataclass

from vlmkit.registry import LLM, VLM, Encoder

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
MIB = 2**20
GIB = 2**30

CUDA_CONTEXT_BYTES = 640 * MIB  # CUDA context + cuBLAS/cuDNN workspaces beyond PyTorch's allocator
ALLOCATOR_SLACK = 0.20  # the caching allocator reserves more than transient tensors need
PROMPT_TOKENS = 64  # chat template + a one-line prompt, besides the visual tokens
MOE_ACTIVE_EXPERTS = 8  # Qwen3 MoE: 8 of 128 experts run per token
LOGITS_BYTES = 4  # the last position's logits are upcast to float32


@dataclass(frozen=True)
class MemoryEstimate:
    dtype: str
    frames: int
    context_tokens: int  # prompt + visual tokens + max new tokens
    max_context: int
    breakdown: dict[str, int]  # bytes per term: weights, kv_cache, activations, cuda_context

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
                      prompt_tokens: int = PROMPT_TOKENS, on_gpu: bool = True) -> MemoryEstimate:
    """encoder + projector + LLM, all on one GPU."""
    size = DTYPE_BYTES[dtype]
    context = prompt_tokens + frames * encoder.tokens_per_frame + max_new_tokens
    vision = _vit_activation_bytes(frames, encoder.tokens_per_frame + encoder.extra_tokens, encoder.hidden_size,
                                   encoder.intermediate_size or 4 * encoder.hidden_size, encoder.image_size, size)
    prefill = _prefill_activation_bytes(llm, context - max_new_tokens, size)
    return MemoryEstimate(
        dtype=dtype, frames=frames, context_tokens=context, max_context=llm.max_context,
        breakdown={
            "weights": (encoder.params + projector_params(encoder, llm) + llm.params) * size,
            "kv_cache": kv_cache_bytes(llm, context, size),
            # the encoder finishes before prefill starts: only the larger of the two is live
            "activations": round(max(vision, prefill) * (1 + ALLOCATOR_SLACK)),
            "cuda_context": CUDA_CONTEXT_BYTES if on_gpu else 0,
        },
    )


def estimate_vlm(vlm: VLM, *, frames: int, max_new_tokens: int, dtype: str,
                 prompt_tokens: int = PROMPT_TOKENS, on_gpu: bool = True) -> MemoryEstimate:
    """An end-to-end VLM: its vision tower runs over every frame, then its LLM."""
    size = DTYPE_BYTES[dtype]
    context = prompt_tokens + frames * vlm.tokens_per_frame + max_new_tokens
    patches = (vlm.vision_image_size // vlm.vision_patch_size) ** 2 + 1
    vision = _vit_activation_bytes(frames, patches, vlm.vision_hidden_size, 4 * vlm.vision_hidden_size,
                                   vlm.vision_image_size, size)
    prefill = _prefill_activation_bytes(vlm, context - max_new_tokens, size)
    return MemoryEstimate(
        dtype=dtype, frames=frames, context_tokens=context, max_context=vlm.max_context,
        breakdown={
            "weights": vlm.params * size,
            "kv_cache": kv_cache_bytes(vlm, context, size),
            "activations": round(max(vision, prefill) * (1 + ALLOCATOR_SLACK)),
            "cuda_context": CUDA_CONTEXT_BYTES if on_gpu else 0,
        },
    )


def kv_cache_bytes(llm: LLM, tokens: int, dtype_bytes: int, batch: int = 1) -> int:
    """Keys and values for every layer: 2 x layers x kv_heads x head_dim x bytes per token."""
    return 2 * llm.layers * llm.kv_heads * llm.head_dim * dtype_bytes * tokens * batch


def _prefill_activation_bytes(llm: LLM, tokens: int, size: int) -> int:
    """The widest point of one decoder layer over the whole prompt, plus the input embeddings.

    With SDPA no T x T score matrix exists; the MLP (gate, up and their product) dominates.
    transformers repeats grouped K/V heads up to the query heads before SDPA, so they count in full.
    """
    mlp_width = llm.intermediate_size * (MOE_ACTIVE_EXPERTS if llm.active_params else 1)
    per_token = 3 * mlp_width + 4 * llm.hidden_size + 4 * llm.heads * llm.head_dim
    return tokens * per_token * size + llm.vocab_size * LOGITS_BYTES


def _vit_activation_bytes(frames: int, tokens: int, hidden: int, mlp: int, image_size: int, size: int) -> int:
    """One ViT layer over all frames at once, plus the float32 pixels the processor hands over."""
    pixels = frames * 3 * image_size * image_size * 4
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
    one_layer = 2 * batch_size * (_prefill_activation_bytes(llm, tokens, size) - llm.vocab_size * LOGITS_BYTES)
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
