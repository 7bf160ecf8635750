"""Where the composed backend puts the visual tokens: exactly at the prompt's placeholder, nowhere else."""

from __future__ import annotations

import pytest
import torch

from vlmkit import load
from vlmkit.backends.composed import VISUAL_PLACEHOLDER
from vlmkit.registry import load_registry

PROMPT = "Describe this video."


@pytest.fixture(scope="module")
def composed(zoo_registry):
    registry = load_registry(zoo_registry)
    return load(encoder="tiny-siglip", llm="tiny-qwen3", registry=registry, smoke_test=False).backend


def test_visual_features_land_exactly_at_the_placeholder(composed):
    """Before the placeholder: the prompt's own token embeddings; then the features, row for row; then the rest.

    Two videos of different lengths, so the shorter one is left-padded and masked.
    """
    tokenizer, embed = composed.tokenizer, composed.llm.get_input_embeddings()
    text = tokenizer.apply_chat_template([{"role": "user", "content": f"{VISUAL_PLACEHOLDER}\n{PROMPT}"}],
                                         tokenize=False, add_generation_prompt=True, enable_thinking=False)
    ids = tokenizer(text, add_special_tokens=False).input_ids
    at = ids.index(tokenizer.convert_tokens_to_ids(VISUAL_PLACEHOLDER))
    before, after = ids[:at], ids[at + 1:]
    assert before and after and tokenizer.decode(after).startswith("\n")  # the newline after it stays text
    hidden = composed.llm.config.hidden_size
    generator = torch.Generator().manual_seed(0)
    visual = [torch.randn(n, hidden, generator=generator) for n in (6, 3)]  # far from any token embedding

    embeds, mask = composed._splice(PROMPT, visual)

    length = len(before) + 6 + len(after)
    assert embeds.shape == (2, length, hidden) and mask.shape == (2, length)
    with torch.inference_mode():
        before_rows, after_rows = embed(torch.tensor(before)), embed(torch.tensor(after))
    for row, features in enumerate(visual):
        pad = length - (len(before) + len(features) + len(after))
        assert mask[row].tolist() == [0] * pad + [1] * (length - pad)
        start = pad + len(before)
        end = start + len(features)
        assert torch.equal(embeds[row, pad:start], before_rows)
        assert torch.equal(embeds[row, start:end], features.to(embeds.dtype))
        assert torch.equal(embeds[row, end:], after_rows)
