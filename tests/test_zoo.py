"""The tiny-model zoo loads and runs through the same transformers calls as the Hub models it mirrors."""

from __future__ import annotations

import hashlib
import time

import numpy as np
import pytest

from zoo import (  # noqa: F401 (zoo_dir, zoo_facts: fixtures; drop once tests/conftest.py provides them)
    BUILDERS,
    BUILT_MARKER,
    CLIP,
    COMPOSED_VISUAL_PLACEHOLDER,
    DINOV3_CONVNEXT,
    DINOV3_VIT,
    LLAVA_NEXT_VIDEO,
    LLAVA_VIDEO_TOKEN,
    PARTIAL_PREFIX,
    QWEN3,
    QWEN3_OMNI,
    QWEN3_VL,
    QWEN_SPECIAL_TOKENS,
    QWEN_THINK_TOKENS,
    SIGLIP,
    build_zoo,
    cache_root,
    cached_zoo,
    zoo_dir,
    zoo_facts,
    zoo_paths,
)

PROMPT = "Describe the video."


def frames(count: int, height: int = 32, width: int = 32, seed: int = 0) -> np.ndarray:
    """Random RGB frames [T, H, W, 3] uint8, as vlmkit's frame sampler returns them."""
    return np.random.default_rng(seed).integers(0, 256, (count, height, width, 3), dtype=np.uint8)


def count_params(model) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


# --- The cache ----------------------------------------------------------------------------------


def test_every_model_is_saved_as_safetensors(zoo_dir):
    for name, path in zoo_paths(zoo_dir).items():
        assert (path / "config.json").is_file(), name
        assert (path / "model.safetensors").is_file(), name
        assert not list(path.glob("*.bin")), name


def test_a_second_call_reuses_the_cached_build(zoo_dir):
    built_at = (zoo_dir / BUILT_MARKER).read_text()
    start = time.perf_counter()
    again = cached_zoo(cache_root())
    assert time.perf_counter() - start < 1.0
    assert again == zoo_dir
    assert (zoo_dir / BUILT_MARKER).read_text() == built_at


def test_a_failed_build_leaves_nothing_and_the_next_one_is_reused(tmp_path):
    def crash(root):
        (root / QWEN3).mkdir()  # half a zoo
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        cached_zoo(tmp_path, build=crash)
    assert list(tmp_path.iterdir()) == []

    builds = []

    def build(root):
        builds.append(root)
        (root / QWEN3).mkdir()

    first = cached_zoo(tmp_path, build=build)
    second = cached_zoo(tmp_path, build=build)
    assert first == second
    assert len(builds) == 1
    assert (first / QWEN3).is_dir()
    assert not list(tmp_path.glob(f"{PARTIAL_PREFIX}*"))


def test_zoo_facts_cover_every_model(zoo_facts):
    import zoo

    assert set(zoo_facts) == set(BUILDERS)
    assert zoo.ZOO_FACTS == zoo_facts
    assert all(facts["params"] > 0 for facts in zoo_facts.values())


# --- Qwen3 --------------------------------------------------------------------------------------


def test_qwen3_template_closes_an_empty_think_block_when_thinking_is_off(zoo_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(zoo_dir / QWEN3)
    messages = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": PROMPT},
    ]

    off = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, enable_thinking=False, tokenize=False
    )
    thinking = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    assert off == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        f"<|im_start|>user\n{PROMPT}<|im_end|>\n"
        "<|im_start|>assistant\n<think>\n\n</think>\n\n"
    )
    assert thinking == off.removesuffix("<think>\n\n</think>\n\n")


def test_qwen3_tokenizer_keeps_its_special_tokens_whole(zoo_dir, zoo_facts):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(zoo_dir / QWEN3)
    facts = zoo_facts[QWEN3]

    for token in QWEN_SPECIAL_TOKENS + QWEN_THINK_TOKENS:
        assert tokenizer(token, add_special_tokens=False).input_ids == [facts["special_tokens"][token]]
    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.pad_token == "<|endoftext|>"
    assert len(tokenizer) <= facts["vocab_size"]
    text = "A red car and a blue video."
    assert tokenizer.decode(tokenizer(text).input_ids) == text
    # The composed backend splices frames in at this token: it must survive the chat template.
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": f"{COMPOSED_VISUAL_PLACEHOLDER}{PROMPT}"}],
        add_generation_prompt=True,
        enable_thinking=False,
        tokenize=False,
    )
    ids = tokenizer(prompt, add_special_tokens=False).input_ids
    assert ids.count(facts["special_tokens"][COMPOSED_VISUAL_PLACEHOLDER]) == 1


def test_qwen3_generates_from_ids_and_from_embeddings(zoo_dir, zoo_facts):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(zoo_dir / QWEN3)
    model = AutoModelForCausalLM.from_pretrained(zoo_dir / QWEN3, use_safetensors=True)
    assert count_params(model) == zoo_facts[QWEN3]["params"]
    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": PROMPT}],
        add_generation_prompt=True,
        enable_thinking=False,
        return_dict=True,
        return_tensors="pt",
    )
    length = inputs["input_ids"].shape[1]

    from_ids = model.generate(**inputs, max_new_tokens=3, min_new_tokens=3)
    embeds = model.get_input_embeddings()(inputs["input_ids"])  # [1, L, hidden]
    with torch.no_grad():
        from_embeds = model.generate(
            inputs_embeds=embeds, attention_mask=inputs["attention_mask"], max_new_tokens=3, min_new_tokens=3
        )

    assert from_ids.shape == (1, length + 3)
    assert from_embeds.tolist() == from_ids[:, length:].tolist()  # only new tokens; same greedy choice


# --- Vision encoders ----------------------------------------------------------------------------

ENCODER_CLASSES = {
    SIGLIP: "SiglipVisionModel",
    CLIP: "CLIPVisionModel",
    DINOV3_VIT: "AutoModel",
    DINOV3_CONVNEXT: "AutoModel",
}


@pytest.mark.parametrize("name", list(ENCODER_CLASSES))
def test_vision_encoder_yields_its_tokens_per_frame(zoo_dir, zoo_facts, name):
    import transformers

    facts = zoo_facts[name]
    model_class = getattr(transformers, ENCODER_CLASSES[name])
    model, loading = model_class.from_pretrained(
        zoo_dir / name, use_safetensors=True, output_loading_info=True
    )
    processor = transformers.AutoImageProcessor.from_pretrained(zoo_dir / name)

    pixel_values = processor(images=list(frames(2, height=48, width=40)), return_tensors="pt").pixel_values
    hidden = model(pixel_values=pixel_values).last_hidden_state

    assert type(model).__name__ == facts["architecture"]
    assert not loading["missing_keys"]
    # A full SigLIP/CLIP checkpoint holds a text tower too; loading the vision tower skips it.
    assert all(not key.startswith("vision_model.") for key in loading["unexpected_keys"])
    assert count_params(model) == facts["params"]
    assert pixel_values.shape == (2, 3, facts["image_size"], facts["image_size"])
    assert hidden.shape == (2, facts["prefix_tokens"] + facts["tokens_per_frame"], facts["feature_dim"])


# --- End-to-end video VLMs ----------------------------------------------------------------------


def test_llava_next_video_captions_a_video(zoo_dir, zoo_facts):
    from transformers import AutoProcessor, LlavaNextVideoForConditionalGeneration

    facts = zoo_facts[LLAVA_NEXT_VIDEO]
    processor = AutoProcessor.from_pretrained(zoo_dir / LLAVA_NEXT_VIDEO)
    model = LlavaNextVideoForConditionalGeneration.from_pretrained(
        zoo_dir / LLAVA_NEXT_VIDEO, use_safetensors=True
    )
    conversation = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": PROMPT}]}]

    prompt = processor.apply_chat_template(conversation, add_generation_prompt=True)
    inputs = processor(text=prompt, videos=[frames(8, height=48, width=64)], return_tensors="pt")
    output = model.generate(**inputs, max_new_tokens=3, min_new_tokens=3)

    assert prompt == f"USER: {LLAVA_VIDEO_TOKEN}\n{PROMPT} ASSISTANT:"
    input_ids = inputs["input_ids"][0]
    assert input_ids[0] == processor.tokenizer.bos_token_id
    video_token_id = facts["special_tokens"][LLAVA_VIDEO_TOKEN]
    assert model.config.video_token_id == video_token_id
    assert (input_ids == video_token_id).sum() == 8 * facts["tokens_per_frame"]
    assert inputs["pixel_values_videos"].shape == (1, 8, 3, facts["image_size"], facts["image_size"])
    assert output.shape == (1, len(input_ids) + 3)
    assert count_params(model) == facts["params"]


def test_qwen3_vl_samples_and_captions_a_video_from_the_chat_template(zoo_dir, zoo_facts):
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from transformers.video_utils import VideoMetadata

    facts = zoo_facts[QWEN3_VL]
    processor = AutoProcessor.from_pretrained(zoo_dir / QWEN3_VL)
    model = AutoModelForImageTextToText.from_pretrained(zoo_dir / QWEN3_VL, use_safetensors=True)
    messages = [
        {"role": "user", "content": [{"type": "video", "video": frames(8)}, {"type": "text", "text": PROMPT}]}
    ]

    # 8 frames at 4 fps is 2 s; the processor samples 2 fps -> 4 frames -> 2 temporal groups.
    inputs = processor.apply_chat_template(
        messages,
        add_generation_prompt=True,
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
        processor_kwargs={
            "video_metadata": [VideoMetadata(total_num_frames=8, fps=4.0)],
            "fps": 2,
            "cap_pixels_per_frame": True,
        },
    )
    output = model.generate(**inputs, max_new_tokens=3, min_new_tokens=3)

    assert type(model).__name__ == facts["architecture"]
    assert inputs["video_grid_thw"].tolist() == [[2, 4, 4]]
    video_pad = facts["special_tokens"]["<|video_pad|>"]
    assert (inputs["input_ids"][0] == video_pad).sum() == 4 * facts["tokens_per_frame"]
    assert output.shape == (1, inputs["input_ids"].shape[1] + 3)


def test_qwen3_vl_takes_presampled_frames_with_their_times(zoo_dir):
    """vlmkit samples frames itself and passes their times as indices into a 1000 fps clock."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(zoo_dir / QWEN3_VL)
    processor.tokenizer.padding_side = "left"
    model = AutoModelForImageTextToText.from_pretrained(zoo_dir / QWEN3_VL, use_safetensors=True)
    text = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": PROMPT}]}],
        add_generation_prompt=True,
    )
    videos = [frames(4, seed=1), frames(4, height=48, width=32, seed=2)]
    metadata = [{"fps": 1000, "total_num_frames": 4, "frames_indices": [0, 500, 1000, 1500]}] * 2

    inputs = processor(
        text=[text, text],
        videos=videos,
        video_metadata=metadata,
        do_sample_frames=False,
        cap_pixels_per_frame=True,
        padding=True,
        return_tensors="pt",
    )
    output = model.generate(**inputs, max_new_tokens=3, min_new_tokens=3)

    assert inputs["video_grid_thw"].tolist() == [[2, 4, 4], [2, 6, 4]]
    first = processor.decode(inputs["input_ids"][0])
    assert "<0.2 seconds><|vision_start|>" in first  # frames 0 and 0.5 s, averaged (0.25 rounds down)
    assert "<1.2 seconds><|vision_start|>" in first
    assert output.shape == (2, inputs["input_ids"].shape[1] + 3)


def test_qwen3_omni_thinker_loads_from_the_full_checkpoint_and_captions_a_video(zoo_dir, zoo_facts):
    from transformers import AutoProcessor, Qwen3OmniMoeThinkerForConditionalGeneration

    facts = zoo_facts[QWEN3_OMNI]
    processor = AutoProcessor.from_pretrained(zoo_dir / QWEN3_OMNI)
    model, loading = Qwen3OmniMoeThinkerForConditionalGeneration.from_pretrained(
        zoo_dir / QWEN3_OMNI, use_safetensors=True, output_loading_info=True
    )
    text = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": PROMPT}]}],
        add_generation_prompt=True,
    )
    inputs = processor(
        text=[text],
        videos=[frames(4)],
        video_metadata=[{"fps": 1000, "total_num_frames": 4, "frames_indices": [0, 500, 1000, 1500]}],
        do_sample_frames=False,
        cap_pixels_per_frame=True,
        use_audio_in_video=False,
        return_tensors="pt",
    )
    output = model.generate(**inputs, max_new_tokens=3, min_new_tokens=3)

    assert not loading["missing_keys"]
    assert count_params(model) == facts["params"]
    video_pad = facts["special_tokens"]["<|video_pad|>"]
    assert (inputs["input_ids"][0] == video_pad).sum() == 4 * facts["tokens_per_frame"]
    assert output.shape == (1, inputs["input_ids"].shape[1] + 3)


def test_a_rebuild_writes_the_same_bytes(zoo_dir, tmp_path):
    """Fixed seeds and a fixed corpus: a cached zoo is exactly what a fresh build would give."""

    def digests(root):
        return {
            path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(root.rglob("*"))
            if path.is_file() and path.name != BUILT_MARKER
        }

    build_zoo(tmp_path)
    assert digests(tmp_path) == digests(zoo_dir)
