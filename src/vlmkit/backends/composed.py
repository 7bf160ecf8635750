"""Vision encoder -> projector -> Qwen3: visual tokens spliced into the LLM's input embeddings.

The prompt carries one placeholder token; it is expanded to frames x tokens_per_frame copies, and
their embeddings are replaced by projected vision features (see `vlmkit.backends.sequence`, which
training shares).
"""

from __future__ import annotations

import torch

from vlmkit.backends.base import CaptionBackend, Generated, GenerationSettings, Prepared, generate_and_decode
from vlmkit.backends.sequence import VISUAL_PLACEHOLDER, embed_rows, expand_placeholder, prompt_ids
from vlmkit.errors import ModelLoadError
from vlmkit.projector import Projector
from vlmkit.vision import VisionEncoder

__all__ = ["ComposedBackend", "VISUAL_PLACEHOLDER"]


class ComposedBackend(CaptionBackend):
    def __init__(self, encoder: VisionEncoder, projector: Projector | None, llm, tokenizer, *,
                 keys: dict[str, str], dtype: torch.dtype, device: str, tokens_per_frame: int | None = None,
                 max_context: int | None = None) -> None:
        self.encoder, self.projector, self.llm, self.tokenizer = encoder, projector, llm, tokenizer
        self.keys, self.dtype, self.device = keys, dtype, device
        self.tokens_per_frame, self.max_context = tokens_per_frame, max_context
        self.placeholder_id = tokenizer.convert_tokens_to_ids(VISUAL_PLACEHOLDER)
        if self.placeholder_id is None or self.placeholder_id == tokenizer.unk_token_id:
            raise ModelLoadError(f"The LLM's tokenizer has no {VISUAL_PLACEHOLDER} token to place frames at",
                                 "Use a Qwen3 (or Qwen2.5) tokenizer, which defines it.")

    def parameter_count(self) -> int:
        modules = [self.encoder.model, self.llm] + ([self.projector] if self.projector else [])
        return sum(p.numel() for m in modules for p in m.parameters())

    def smoke_test(self) -> None:
        if self.projector is None:  # without a projector, prove encoder and LLM separately
            import numpy as np

            self.encoder(np.zeros((1, 64, 64, 3), dtype=np.uint8))
            ids = self.tokenizer("Hello", return_tensors="pt").input_ids.to(self.device)
            with torch.inference_mode():
                self.llm(input_ids=ids, logits_to_keep=1)
            return
        super().smoke_test()

    def prepare(self, videos, prompt: str) -> Prepared:
        """The image processor's work: pixel tensors, one [T, 3, S, S] per video."""
        return Prepared(videos, prompt, [self.encoder.pixels(v.frames) for v in videos])

    @torch.inference_mode()
    def run(self, prepared: Prepared, settings: GenerationSettings) -> list[Generated]:
        if self.projector is None:
            raise ModelLoadError("Captioning with --encoder/--llm needs a trained projector (--projector FILE)",
                                 "An untrained projector only produces noise; use --vlm KEY for an end-to-end model.")
        return self.generate_from_features([self.encoder.features(p) for p in prepared.inputs], prepared.prompt,
                                           settings)

    @torch.inference_mode()
    def generate_from_features(self, features: list[torch.Tensor], prompt: str,
                               settings: GenerationSettings) -> list[Generated]:
        """Captions from encoder features [T, N, D] (one per video); training's samples come this way too."""
        weights = next(self.projector.parameters())  # float32 while training, the model's dtype otherwise
        projected = [self.projector(f.to(weights.device, weights.dtype)).to(self.dtype) for f in features]  # [T, N, H]
        embeds, mask = self._splice(prompt, [f.flatten(0, 1) for f in projected])
        return generate_and_decode(self.llm, self.tokenizer, {"inputs_embeds": embeds, "attention_mask": mask},
                                   settings)

    @torch.inference_mode()
    def generate_text(self, prompts: list[str], settings: GenerationSettings) -> list[Generated]:
        texts = [self.tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                                    add_generation_prompt=True, enable_thinking=False) for p in prompts]
        self.tokenizer.padding_side = "left"
        inputs = self.tokenizer(texts, padding=True, add_special_tokens=False, return_tensors="pt").to(self.device)
        return generate_and_decode(self.llm, self.tokenizer, inputs, settings)

    def _splice(self, prompt: str, visual: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Left-padded embeddings [B, L, H] with each video's features at its placeholder positions."""
        ids = prompt_ids(self.tokenizer, prompt)
        rows = [expand_placeholder(ids, self.placeholder_id, len(v)) for v in visual]
        return embed_rows(self.llm, rows, visual, self.placeholder_id, self.tokenizer.pad_token_id)
