"""Vision encoder -> projector -> Qwen3: visual tokens spliced into the LLM's input embeddings.

The prompt carries one placeholder token; it is expanded to frames x tokens_per_frame copies, and
their embeddings are replaced by projected vision features, as LLaVA does
(https://github.com/huggingface/transformers/blob/main/src/transformers/models/llava/modeling_llava.py).
"""

from __future__ import annotations

import torch

from vlmkit.backends.base import CaptionBackend, Generated, GenerationSettings, Prepared, generate_and_decode
from vlmkit.errors import ModelLoadError
from vlmkit.projector import Projector
from vlmkit.vision import VisionEncoder

VISUAL_PLACEHOLDER = "<|video_pad|>"  # a special token of Qwen3's tokenizer, unused by the text model


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
        features = [self.projector(self.encoder.features(p).to(self.dtype)) for p in prepared.inputs]  # [T, N, H]
        embeds, mask = self._splice(prepared.prompt, [f.flatten(0, 1) for f in features])
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
        text = self.tokenizer.apply_chat_template(
            [{"role": "user", "content": f"{VISUAL_PLACEHOLDER}\n{prompt}"}],
            tokenize=False, add_generation_prompt=True, enable_thinking=False)
        ids = self.tokenizer(text, add_special_tokens=False).input_ids
        at = ids.index(self.placeholder_id)
        rows = [ids[:at] + [self.placeholder_id] * len(v) + ids[at + 1:] for v in visual]
        length = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        input_ids = torch.tensor([[pad] * (length - len(r)) + r for r in rows], device=self.device)
        mask = torch.tensor([[0] * (length - len(r)) + [1] * len(r) for r in rows], device=self.device)
        embeds = self.llm.get_input_embeddings()(input_ids)  # [B, L, H]
        slots = (input_ids == self.placeholder_id) & mask.bool()
        embeds = embeds.masked_scatter(slots.unsqueeze(-1), torch.cat(visual).to(embeds.dtype))
        return embeds, mask
