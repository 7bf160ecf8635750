"""Distillation end to end: a teacher's caption records -> `vlmkit train` -> `vlmkit caption --projector`.

The tiny LLM and encoder are random and frozen; only the projector trains. If the visual features
really reach the LLM through the trained projector (with the pooling, frames and feature layer the
projector records), fresh clips of other sizes and codecs are captioned with their colour.
"""

from __future__ import annotations

import json

import pytest
import torch

from training_helpers import (
    COLOURS,
    PROMPT,
    colour_clips,
    colour_images,
    metrics,
    vlmkit,
    write_caption_records,
)
from videos import make_video
from vlmkit import caption, train
from vlmkit.errors import UsageError
from vlmkit.projector import read_projector_info
from vlmkit.registry import load_registry

# Settings under which the 2-layer random tiny Qwen3 is steered reliably (seeds 0-2 all name every
# colour): 32 visual tokens, a high rate for few steps. Pooling the tiny 4 x 4 grid down to 2 x 2
# leaves too few tokens to steer it every time; test_train.py checks that caption applies pooling.
RECIPE = ["--frames", "2", "--max-steps", "400", "--lr", "0.03", "--batch-size", "3",
          "--val-fraction", "0", "--eval-every", "400", "--prompt", PROMPT]


def fresh_clips(folder):
    folder.mkdir()
    return [make_video(folder / "red.webm", codec="libvpx-vp9", color=(250, 10, 5), seconds=2, size=(64, 48)),
            make_video(folder / "green.mkv", color=(10, 240, 10), seconds=1.5, size=(80, 64)),
            make_video(folder / "blue.avi", codec="mpeg4", color=(5, 10, 250), seconds=1.5, size=(96, 64))]


def names_its_colour(captions: list[str]) -> bool:
    """Each caption names its own colour and no other."""
    return all(set(c.replace(".", " ").split()) & set(COLOURS) == {word} for c, word in zip(captions, COLOURS))


def test_distillation_through_the_cli_captions_fresh_clips_with_their_colour(zoo_registry, tmp_path):
    teacher = write_caption_records(tmp_path / "teacher.jsonl", colour_clips(tmp_path / "clips"))
    run = tmp_path / "run"
    trained = vlmkit(zoo_registry, "train", "--encoder", "tiny-siglip", "--llm", "tiny-qwen3", "--data",
                     str(teacher), "--output", str(run), "--cache-dir", str(tmp_path / "cache"), *RECIPE)
    assert trained.returncode == 0, trained.stderr
    assert f"Caption with: vlmkit caption --encoder tiny-siglip --llm tiny-qwen3 --projector {run}" in trained.stderr
    info = read_projector_info(run / "projector.safetensors")
    assert (info.encoder, info.llm, info.pool, info.frames, info.feature_layer) == ("tiny-siglip", "tiny-qwen3", 1,
                                                                                  2, -2)
    assert metrics(run)[-1]["loss"] < metrics(run)[0]["loss"] / 4
    assert {"step", "loss", "lr", "samples_per_s", "tokens_per_s"} <= set(metrics(run)[-1])
    assert (run / "config.json").is_file() and "finished" in (run / "report.txt").read_text()

    # caption takes the frames (2) and feature layer from the projector's metadata
    captioned = vlmkit(zoo_registry, "caption", *map(str, fresh_clips(tmp_path / "fresh")), "--encoder",
                       "tiny-siglip", "--llm", "tiny-qwen3", "--projector", str(run / "projector.safetensors"),
                       "--prompt", PROMPT, "--max-new-tokens", "6", "--format", "jsonl")
    assert captioned.returncode == 0, captioned.stderr
    captions = [json.loads(line)["caption"] for line in captioned.stdout.splitlines()]
    assert names_its_colour(captions), captions

    other = vlmkit(zoo_registry, "caption", str(tmp_path / "fresh" / "red.webm"), "--encoder", "tiny-clip", "--llm",
                   "tiny-qwen3", "--projector", str(run / "projector.safetensors"))
    assert other.returncode == 2 and "trained for --encoder tiny-siglip, not tiny-clip" in other.stderr


def test_llava_json_on_images_trains_a_projector_that_names_colours(zoo_registry, tmp_path):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        images = colour_images(tmp_path / "images" / "part-0")
        rows = [{"id": word, "image": f"part-0/{path.name}", "conversations": [
            {"from": "human", "value": "<image>\nWhat is in the picture?"},
            {"from": "gpt", "value": f"A {word} video."}]} for word, path in images.items()]
        (tmp_path / "llava.json").write_text(json.dumps(rows))
        registry = load_registry(zoo_registry)
        summary = train(encoder="tiny-siglip", llm="tiny-qwen3", data=str(tmp_path / "llava.json"),
                        image_folder=str(tmp_path / "images"), output=str(tmp_path / "run"), registry=registry,
                        frames=1, max_steps=400, lr=0.03, batch_size=3, val_fraction=0, eval_every=400,
                        prompt=PROMPT)
        assert summary.done and summary.train_samples == 3
        records = caption(fresh_clips(tmp_path / "fresh"), encoder="tiny-siglip", llm="tiny-qwen3",
                          projector=summary.projector, prompt=PROMPT, max_new_tokens=6, registry=registry)
    finally:
        torch.set_num_threads(before)
    assert [len(r.timestamps) for r in records] == [1, 1, 1]  # the projector's one frame per video
    assert names_its_colour([r.caption for r in records]), [r.caption for r in records]


def test_caption_without_a_projector_names_the_train_command(zoo_registry):
    from vlmkit.captioning import load_for_captioning

    with pytest.raises(UsageError) as refused:
        load_for_captioning(encoder="tiny-siglip", llm="tiny-qwen3", registry=load_registry(zoo_registry))
    assert "vlmkit train --encoder tiny-siglip --llm tiny-qwen3 --data teacher.jsonl" in refused.value.hint
    assert "vlmkit caption --vlm" in refused.value.hint
