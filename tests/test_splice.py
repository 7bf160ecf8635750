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


def test_training_rows_are_padded_on_the_right_with_their_features_at_their_slots(composed):
    """Training pads on the right (its labels are built that way): tokens first, then masked padding."""
    from vlmkit.backends.sequence import embed_rows

    embed, placeholder = composed.llm.get_input_embeddings(), composed.placeholder_id
    tokens = composed.tokenizer("a red ball", add_special_tokens=False).input_ids
    rows = [[placeholder] * 2 + tokens + tokens, [placeholder] * 3 + tokens]
    generator = torch.Generator().manual_seed(1)
    visual = [torch.randn(n, composed.llm.config.hidden_size, generator=generator) for n in (2, 3)]

    embeds, mask = embed_rows(composed.llm, rows, visual, placeholder, composed.tokenizer.pad_token_id,
                              padding_side="right")

    length = 2 + 2 * len(tokens)
    assert mask.tolist() == [[1] * length, [1] * (3 + len(tokens)) + [0] * (length - 3 - len(tokens))]
    with torch.inference_mode():
        text = embed(torch.tensor(tokens))
    assert torch.equal(embeds[0, :2], visual[0]) and torch.equal(embeds[1, :3], visual[1])
    assert torch.equal(embeds[0, 2:], torch.cat([text, text])) and torch.equal(embeds[1, 3:3 + len(tokens)], text)
