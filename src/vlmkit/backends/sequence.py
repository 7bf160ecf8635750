"""The token and embedding sequence of the composed path, built in one place for captioning and training.

A caption prompt is the LLM's chat template around one placeholder token, with thinking switched
off (Qwen3 then writes an empty think block after the generation prompt). The placeholder is
expanded to one slot per visual token, and the slots' embeddings are replaced by the projected
vision features, as LLaVA does
(https://github.com/huggingface/transformers/blob/main/src/transformers/models/llava/modeling_llava.py).
Training appends the caption's tokens and the closing <|im_end|> to the same prompt.
"""

from __future__ import annotations

import torch

VISUAL_PLACEHOLDER = "<|video_pad|>"  # a special token of Qwen3's tokenizer, unused by the text model
END_OF_TURN = "<|im_end|>"
IGNORE_INDEX = -100  # cross-entropy skips these labels


def prompt_ids(tokenizer, prompt: str) -> list[int]:
    """The chat-templated user turn with one placeholder, ending where the assistant starts writing."""
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": f"{VISUAL_PLACEHOLDER}\n{prompt}"}],
        tokenize=False, add_generation_prompt=True, enable_thinking=False)
    return tokenizer(text, add_special_tokens=False).input_ids


def answer_ids(tokenizer, caption: str) -> list[int]:
    """What the assistant writes: the caption's tokens, then the end of its turn."""
    return tokenizer(caption, add_special_tokens=False).input_ids + [tokenizer.convert_tokens_to_ids(END_OF_TURN)]


def expand_placeholder(ids: list[int], placeholder_id: int, count: int) -> list[int]:
    """One placeholder slot per visual token."""
    at = ids.index(placeholder_id)
    return ids[:at] + [placeholder_id] * count + ids[at + 1:]


def embed_rows(llm, rows: list[list[int]], visual: list[torch.Tensor], placeholder_id: int, pad_id: int | None,
               *, padding_side: str = "left") -> tuple[torch.Tensor, torch.Tensor]:
    """Padded input embeddings [B, L, H] and attention mask [B, L], each row's features at its slots.

    visual[i] is [n_i, H]: the projected features of row i, in the order of its placeholder slots.
    """
    device = llm.get_input_embeddings().weight.device
    length = max(len(r) for r in rows)
    pad = pad_id if pad_id is not None else 0

    def padded(row: list[int], fill: int) -> list[int]:
        extra = [fill] * (length - len(row))
        return extra + row if padding_side == "left" else row + extra

    input_ids = torch.tensor([padded(r, pad) for r in rows], device=device)
    mask = torch.tensor([padded([1] * len(r), 0) for r in rows], device=device)
    embeds = llm.get_input_embeddings()(input_ids)  # [B, L, H]
    slots = (input_ids == placeholder_id) & mask.bool()
    embeds = embeds.masked_scatter(slots.unsqueeze(-1), torch.cat(visual).to(embeds.dtype))
    return embeds, mask
