"""Vision encoders for the composed path: DINOv3 (ViT and ConvNeXt), SigLIP and CLIP vision towers.

Each turns sampled frames into patch features [T, N, D] with the CLS, register and pooled tokens
removed, so the projector sees only spatial tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from vlmkit.memory import pooled_tokens
from vlmkit.registry import Encoder

__all__ = ["VisionEncoder", "pool_patches", "pooled_tokens", "FAMILIES"]


@dataclass(frozen=True)
class _Family:
    model_class: str  # a transformers class name
    prefix_tokens: str  # how many leading non-patch tokens to drop: "0", "1", or "registers"
    # The hidden state a projector is trained on by default: the penultimate layer, as LLaVA and
    # Prismatic use; a ConvNeXt's stages differ in width and shape, so its last output.
    train_feature_layer: int = -2


FAMILIES = {
    "siglip": _Family("SiglipVisionModel", "0"),
    "clip": _Family("CLIPVisionModel", "1"),
    "dinov3-vit": _Family("DINOv3ViTModel", "registers"),  # CLS + register tokens
    "dinov3-convnext": _Family("DINOv3ConvNextModel", "1", train_feature_layer=-1),  # the pooled token in front
}


class VisionEncoder(nn.Module):
    def __init__(self, model: nn.Module, processor, prefix_tokens: int, feature_layer: int = -1,
                 pool: int = 1) -> None:
        super().__init__()
        self.model, self.processor = model, processor
        self.prefix_tokens, self.feature_layer, self.pool = prefix_tokens, feature_layer, pool

    @classmethod
    def from_pretrained(cls, path: str, entry: Encoder, *, dtype: torch.dtype, device: str,
                        feature_layer: int = -1) -> VisionEncoder:
        import transformers

        family = FAMILIES[entry.family]
        model_class = getattr(transformers, family.model_class)
        model = model_class.from_pretrained(path, dtype=dtype, attn_implementation=_attention(model_class),
                                            use_safetensors=True).to(device).eval()
        processor = transformers.AutoImageProcessor.from_pretrained(path)
        registers = family.prefix_tokens == "registers"
        prefix = 1 + model.config.num_register_tokens if registers else int(family.prefix_tokens)
        return cls(model, processor, prefix, feature_layer)

    @property
    def feature_dim(self) -> int:
        config = self.model.config
        return getattr(config, "hidden_size", None) or config.hidden_sizes[-1]

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def forward(self, frames) -> torch.Tensor:
        """frames: uint8 [T, H, W, 3] -> patch features [T, N, D]."""
        return self.features(self.pixels(frames))

    def pixels(self, frames) -> torch.Tensor:
        """The image processor alone (CPU work): uint8 [T, H, W, 3] -> float [T, 3, S, S]."""
        return self.processor(images=list(frames), return_tensors="pt")["pixel_values"]

    @torch.inference_mode()
    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels [T, 3, S, S] -> patch features [T, N, D], CLS/register/pooled tokens dropped, grid pooled."""
        pixels = pixels.to(self.device, dtype=next(self.model.parameters()).dtype)
        wants_hidden = self.feature_layer != -1
        output = self.model(pixel_values=pixels, output_hidden_states=wants_hidden)
        hidden = output.hidden_states[self.feature_layer] if wants_hidden else output.last_hidden_state
        return pool_patches(hidden[:, self.prefix_tokens:], self.pool)  # [T, N_patches / pool^2, D]


def pool_patches(features: torch.Tensor, pool: int) -> torch.Tensor:
    """pool x pool average pooling of each frame's square patch grid: [T, g*g, D] -> [T, ceil(g/pool)^2, D].

    LLaVA-Video pools 2 x 2 (https://github.com/LLaVA-VL/LLaVA-NeXT, `get_2dPool`); a grid that does
    not divide evenly keeps its edge, averaged over the patches it has.
    """
    if pool == 1:
        return features
    frames, tokens, dim = features.shape
    side = round(tokens ** 0.5)
    if side * side != tokens:
        raise ValueError(f"cannot pool {tokens} patch tokens per frame: not a square grid")
    grid = features.transpose(1, 2).reshape(frames, dim, side, side)  # [T, D, g, g]
    pooled = nn.functional.avg_pool2d(grid.float(), pool, ceil_mode=True).to(features.dtype)
    return pooled.flatten(2).transpose(1, 2)  # [T, N', D]


def _attention(model_class) -> str:
    return "sdpa" if getattr(model_class, "_supports_sdpa", False) else "eager"
