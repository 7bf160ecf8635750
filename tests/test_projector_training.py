"""Visual information really reaches the LLM through the composed path.

Train only the projector of tiny SigLIP -> projector -> tiny Qwen3 (both frozen, random weights)
so that solid red clips are answered "red" and solid blue clips "blue"; save it; then the real
`vlmkit caption --projector` must name the colour of fresh clips it has never seen.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from videos import make_video
from vlmkit import load
from vlmkit.backends.composed import ComposedBackend
from vlmkit.frames import sample_frames
from vlmkit.projector import Projector, ProjectorInfo, save_projector
from vlmkit.registry import load_registry

PROMPT = "What colour is this video?"
MAX_STEPS = 400
# 4 answer tokens (2 per colour): a mean NLL under 0.15 puts each right token above p = 0.86
TARGET_LOSS = 0.6


def answer_loss(backend: ComposedBackend, projector: Projector, features: torch.Tensor, word: str) -> torch.Tensor:
    """Cross-entropy of ` word<|im_end|>` after the prompt whose placeholder carries projected `features`."""
    embeds, mask = backend._splice(PROMPT, [projector(features).flatten(0, 1)])
    # " red" with its space is one token of the tiny tokenizer; the caption comes back stripped: "red"
    answer = backend.tokenizer(f" {word}<|im_end|>", add_special_tokens=False, return_tensors="pt").input_ids
    answer_embeds = backend.llm.get_input_embeddings()(answer)
    logits = backend.llm(inputs_embeds=torch.cat([embeds, answer_embeds], 1)).logits
    predicted = logits[:, embeds.shape[1] - 1:-1]  # the positions that predict each answer token
    return torch.nn.functional.cross_entropy(predicted.flatten(0, 1), answer.flatten())


@pytest.mark.timeout(600)  # training, then a caption subprocess
def test_trained_projector_tells_red_from_blue(zoo_registry, tmp_path):
    registry = load_registry(zoo_registry)
    backend = load(encoder="tiny-siglip", llm="tiny-qwen3", registry=registry, smoke_test=False).backend
    train = {word: make_video(tmp_path / f"train-{word}.mp4", color=rgb, seconds=1, size=(48, 32))
             for word, rgb in (("red", (255, 0, 0)), ("blue", (0, 0, 255)))}
    features = {word: backend.encoder(sample_frames(path, num_frames=2).frames).clone()  # out of inference mode
                for word, path in train.items()}

    torch.manual_seed(0)
    encoder_dim, llm_dim = backend.encoder.feature_dim, backend.llm.config.hidden_size
    projector = Projector(encoder_dim, llm_dim)
    for module in (backend.encoder.model, backend.llm):
        module.requires_grad_(False)
    optimizer = torch.optim.Adam(projector.parameters(), lr=1e-2)
    for _ in range(MAX_STEPS):
        optimizer.zero_grad()
        loss = sum(answer_loss(backend, projector, f, word) for word, f in features.items())
        if loss.item() < TARGET_LOSS:
            break
        loss.backward()
        optimizer.step()
    assert loss.item() < TARGET_LOSS, f"the projector did not learn: loss {loss.item():.3f}"
    path = save_projector(projector, ProjectorInfo("tiny-siglip", "tiny-qwen3", encoder_dim, llm_dim),
                          tmp_path / "colours.safetensors")

    # fresh clips: other sizes, lengths and codecs than the training clips
    red = make_video(tmp_path / "fresh-red.webm", codec="libvpx-vp9", color=(250, 10, 5), seconds=2, size=(64, 48))
    blue = make_video(tmp_path / "fresh-blue.mp4", color=(5, 10, 250), seconds=1.5, size=(80, 64))
    env = os.environ | {"VLMKIT_REGISTRY": str(zoo_registry), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "vlmkit", "caption", str(red), str(blue), "--encoder", "tiny-siglip",
         "--llm", "tiny-qwen3", "--projector", str(path), "--prompt", PROMPT, "--frames", "3",
         "--max-new-tokens", "4", "--format", "jsonl"], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    captions = [json.loads(line)["caption"] for line in result.stdout.splitlines()]
    assert captions == ["red", "blue"]
