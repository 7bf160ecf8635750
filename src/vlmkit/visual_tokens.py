"""How many visual tokens a video costs the LLM, without loading any processor.

LLaVA-style models spend a fixed number per frame (the registry's `tokens_per_frame`). Qwen3-VL
resizes each video by a rule of its own, so its count depends on the resolution; this module
repeats that rule (`smart_resize` in transformers' `video_processing_qwen3_vl.py`) with the
settings Qwen3-VL's published `video_preprocessor_config.json` uses and the per-frame cap vlmkit
asks for (`cap_pixels_per_frame=True` in `backends/end_to_end.py`). A test compares it with the
real processor's `video_grid_thw`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from vlmkit.errors import UsageError

RESIZED_FAMILIES = ("qwen3-vl", "qwen3-vl-moe")  # families whose visual tokens depend on the resolution
DEFAULT_RESOLUTION = (1280, 720)


@dataclass(frozen=True)
class QwenVideoSettings:
    """Qwen/Qwen3-VL-*-Instruct's video_preprocessor_config.json, plus transformers' per-frame cap."""

    min_pixels: int = 4096  # size.shortest_edge
    max_pixels: int = 25_165_824  # size.longest_edge: the budget for all frames together
    patch_size: int = 16
    merge_size: int = 2
    temporal_patch_size: int = 2
    max_video_tokens: int = 768  # per frame, in merged-patch units (qwen-vl-utils' VIDEO_MAX_TOKEN_NUM)

    @property
    def factor(self) -> int:
        return self.patch_size * self.merge_size


QWEN3_VL_VIDEO = QwenVideoSettings()


def qwen_resized_size(frames: int, width: int, height: int,
                      settings: QwenVideoSettings = QWEN3_VL_VIDEO) -> tuple[int, int]:
    """(width, height) after the processor's resize, for `frames` frames of width x height.

    `frames` is the count the processor sees; vlmkit pads it to whole temporal patches first.
    """
    factor, temporal = settings.factor, settings.temporal_patch_size
    frame_cap = settings.max_video_tokens * factor * factor
    per_frame = max(min(frame_cap, settings.max_pixels // frames), int(settings.min_pixels * 1.05))
    max_pixels, min_pixels = per_frame * frames, settings.min_pixels
    if height < factor or width < factor:
        scale = max(factor / height, factor / width)
        height, width = int(height * scale), int(width * scale)
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    t_bar = round(frames / temporal) * temporal
    if t_bar * h_bar * w_bar > max_pixels:
        beta = math.sqrt(frames * height * width / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif t_bar * h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (frames * height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return w_bar, h_bar


def qwen_video_tokens(frames: int, width: int, height: int, settings: QwenVideoSettings = QWEN3_VL_VIDEO) -> int:
    """Visual tokens the LLM sees for one video: (temporal patches) x (merged patches per frame pair)."""
    padded = frames + (-frames % settings.temporal_patch_size)  # as `_whole_temporal_patches` pads
    w, h = qwen_resized_size(padded, width, height, settings)
    grid_t = padded // settings.temporal_patch_size
    return grid_t * (h // settings.patch_size) * (w // settings.patch_size) // settings.merge_size ** 2


def video_tokens(vlm, frames: int, resolution: tuple[int, int] | None = None) -> int:
    """Visual tokens of one `frames`-frame video for an end-to-end VLM registry entry."""
    if vlm.family in RESIZED_FAMILIES:
        width, height = resolution or DEFAULT_RESOLUTION
        return qwen_video_tokens(frames, width, height)
    return frames * vlm.tokens_per_frame


def vision_patches(vlm, frames: int, resolution: tuple[int, int] | None = None) -> int:
    """Patches the vision tower runs over for one video (before any merging)."""
    if vlm.family in RESIZED_FAMILIES:
        return video_tokens(vlm, frames, resolution) * QWEN3_VL_VIDEO.merge_size ** 2  # each spans 2 frames
    return frames * ((vlm.vision_image_size // vlm.vision_patch_size) ** 2 + 1)


def parse_resolution(text: str) -> tuple[int, int]:
    """'1280x720' -> (1280, 720)."""
    width, sep, height = text.lower().partition("x")
    if sep and width.strip().isdigit() and height.strip().isdigit() and int(width) > 0 and int(height) > 0:
        return int(width), int(height)
    raise UsageError(f"--resolution {text!r}: expected WIDTHxHEIGHT", "For HD video: --resolution 1280x720.")
