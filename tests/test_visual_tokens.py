"""Qwen3-VL's visual tokens by resolution: vlmkit's light copy of the resizing rule against the real processor."""

from __future__ import annotations

import numpy as np
import pytest

from vlmkit.errors import UsageError
from vlmkit.registry import load_registry
from vlmkit.visual_tokens import QWEN3_VL_VIDEO, parse_resolution, qwen_video_tokens, video_tokens

# Qwen/Qwen3-VL-*-Instruct's video_preprocessor_config.json (the issue's "published settings")
PUBLISHED_SIZE = {"shortest_edge": 4096, "longest_edge": 25_165_824}


@pytest.mark.parametrize("frames, width, height, expected", [
    (8, 640, 360, 880), (8, 1280, 720, 2880), (8, 1920, 1080, 2880),
    (32, 640, 360, 3520), (32, 1280, 720, 11520),
])
def test_the_issues_published_counts(frames, width, height, expected):
    """transformers' processor with the published settings, as measured for the issue."""
    assert qwen_video_tokens(frames, width, height) == expected


@pytest.fixture(scope="module")
def video_processor(zoo_dir):
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(zoo_dir / "qwen3-vl").video_processor
    # the tiny zoo's ViT uses 8-pixel patches; the published models use 16
    processor.size, processor.patch_size = dict(PUBLISHED_SIZE), QWEN3_VL_VIDEO.patch_size
    assert (processor.merge_size, processor.temporal_patch_size) == (
        QWEN3_VL_VIDEO.merge_size, QWEN3_VL_VIDEO.temporal_patch_size)
    return processor


@pytest.mark.parametrize("frames, width, height", [
    (8, 640, 360), (8, 1280, 720), (8, 1920, 1080), (2, 1920, 1080), (4, 480, 270), (6, 360, 640),
    (8, 100, 20), (16, 854, 480), (40, 320, 240), (2, 24, 24), (64, 160, 90),
])
def test_rule_matches_the_real_processor(video_processor, frames, width, height):
    """The processor's grid (t x h x w patches, merged 2 x 2) is what the LLM sees as video tokens."""
    video = np.zeros((frames, height, width, 3), dtype=np.uint8)
    out = video_processor(videos=[video], do_sample_frames=False, cap_pixels_per_frame=True, size=PUBLISHED_SIZE,
                          return_tensors="np")
    t, h, w = (int(x) for x in out["video_grid_thw"][0])
    assert qwen_video_tokens(frames, width, height) == t * h * w // QWEN3_VL_VIDEO.merge_size ** 2


def test_llava_tokens_do_not_depend_on_resolution():
    registry = load_registry()
    llava, qwen = registry.vlm("llava-next-video-7b"), registry.vlm("qwen3-vl-8b")
    assert video_tokens(llava, 8, (640, 360)) == video_tokens(llava, 8, (1920, 1080)) == 8 * 144
    assert video_tokens(qwen, 8, (640, 360)) == 880 and video_tokens(qwen, 8) == 2880  # default 1280x720


@pytest.mark.parametrize("text", ["1280", "x720", "1280x", "0x720", "axb", "-5x4"])
def test_bad_resolutions_are_usage_errors(text):
    with pytest.raises(UsageError, match="WIDTHxHEIGHT"):
        parse_resolution(text)
    assert parse_resolution("1920X1080") == (1920, 1080)
