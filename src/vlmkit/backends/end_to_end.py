"""End-to-end video VLMs through transformers: each model's own processor and chat template.

LLaVA-NeXT-Video, Qwen3-VL and the Qwen3-Omni thinker take sampled frames as a video;
LLaVA-v1.6 (an image model) takes them as a sequence of images. `FAMILIES` says which is which.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vlmkit.backends.base import CaptionBackend, Generated, GenerationSettings, Prepared, generate_and_decode
from vlmkit.registry import VLM
from vlmkit.visual_tokens import RESIZED_FAMILIES, QwenVideoSettings, qwen_video_tokens


@dataclass(frozen=True)
class _Family:
    model_class: str  # a transformers class name
    frames_as: str  # "video": one video per prompt; "images": one image per frame (an image model)
    # Qwen: frames padded to whole temporal patches, with their real times passed as video metadata
    timed_frames: bool = False
    # tokens per frame fixed by the model (LLaVA); Qwen's processors choose them by resolution
    fixed_tokens_per_frame: bool = False


FAMILIES = {
    "llava-next-video": _Family("LlavaNextVideoForConditionalGeneration", "video", fixed_tokens_per_frame=True),
    "llava-next": _Family("LlavaNextForConditionalGeneration", "images", fixed_tokens_per_frame=True),
    "qwen3-vl": _Family("AutoModelForImageTextToText", "video", timed_frames=True),
    "qwen3-vl-moe": _Family("AutoModelForImageTextToText", "video", timed_frames=True),
    # text output only: the thinker, without the talker
    "qwen3-omni": _Family("Qwen3OmniMoeThinkerForConditionalGeneration", "video", timed_frames=True),
}
TIME_SCALE = 1000  # Qwen processors derive times as index / fps: milliseconds carry the real times


class EndToEndBackend(CaptionBackend):
    def __init__(self, model, processor, entry: VLM, *, dtype: torch.dtype, device: str) -> None:
        self.model, self.processor, self.entry = model, processor, entry
        self.family = FAMILIES[entry.family]
        self.keys, self.dtype, self.device = {"vlm": entry.key}, dtype, device
        self.default_frames = entry.default_frames
        if self.family.fixed_tokens_per_frame:
            self.tokens_per_frame, self.max_context = entry.tokens_per_frame, entry.max_context
        processor.tokenizer.padding_side = "left"  # generation continues from the right edge

    @classmethod
    def from_pretrained(cls, path: str, entry: VLM, *, dtype: torch.dtype, device: str) -> EndToEndBackend:
        import transformers

        model_class = getattr(transformers, FAMILIES[entry.family].model_class)
        model = model_class.from_pretrained(path, dtype=dtype, attn_implementation="sdpa", use_safetensors=True)
        processor = transformers.AutoProcessor.from_pretrained(path)
        return cls(model.to(device).eval(), processor, entry, dtype=dtype, device=device)

    def visual_tokens(self, clip) -> int:
        """Qwen3-VL resizes by the video's size: its processor's own rule, with its own settings."""
        if self.entry.family not in RESIZED_FAMILIES:
            return super().visual_tokens(clip)
        video = self.processor.video_processor
        settings = QwenVideoSettings(
            min_pixels=video.size["shortest_edge"], max_pixels=video.size["longest_edge"],
            patch_size=video.patch_size, merge_size=video.merge_size, temporal_patch_size=video.temporal_patch_size,
            max_video_tokens=getattr(video, "max_video_tokens", QwenVideoSettings.max_video_tokens))
        frames = clip.frames  # [T, H, W, 3]
        return qwen_video_tokens(len(frames), frames.shape[2], frames.shape[1], settings)

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def prepare(self, videos, prompt: str) -> Prepared:
        """The processor's work. Videos with different frame counts cannot share a tensor: a group per count."""
        by_count: dict[int, list[int]] = {}
        for index, video in enumerate(videos):
            by_count.setdefault(len(video.frames), []).append(index)
        groups = [(indices, self._inputs([videos[i] for i in indices], prompt)) for indices in by_count.values()]
        return Prepared(videos, prompt, groups)

    def run(self, prepared: Prepared, settings: GenerationSettings) -> list[Generated]:
        results: list[Generated | None] = [None] * len(prepared.videos)
        for indices, inputs in prepared.inputs:
            for index, result in zip(indices, self._run_group(inputs, settings)):
                results[index] = result
        return results

    @torch.inference_mode()
    def _run_group(self, inputs, settings: GenerationSettings) -> list[Generated]:
        inputs = inputs.to(self.device, self.dtype)  # casts floating tensors only
        return generate_and_decode(self.model, self.processor.tokenizer, inputs, settings)

    @torch.inference_mode()
    def generate_text(self, prompts: list[str], settings: GenerationSettings) -> list[Generated]:
        texts = [self.processor.apply_chat_template(
            [{"role": "user", "content": [{"type": "text", "text": p}]}], add_generation_prompt=True, tokenize=False)
            for p in prompts]
        inputs = self.processor(text=texts, padding=True, return_tensors="pt").to(self.device)
        return generate_and_decode(self.model, self.processor.tokenizer, inputs, settings)

    def _inputs(self, videos, prompt: str):
        family = self.family
        if family.frames_as == "images":
            content = [{"type": "image"} for _ in range(len(videos[0].frames))]
        else:
            content = [{"type": "video"}]
        text = self.processor.apply_chat_template(
            [{"role": "user", "content": content + [{"type": "text", "text": prompt}]}],
            add_generation_prompt=True, tokenize=False)
        texts = [text] * len(videos)
        if family.frames_as == "images":
            images = [list(v.frames) for v in videos]
            return self.processor(text=texts, images=images, padding=True, return_tensors="pt")
        frames = [v.frames for v in videos]
        if family.timed_frames:
            frames = [_whole_temporal_patches(f, self.processor.video_processor.temporal_patch_size) for f in frames]
            metadata = [{"fps": TIME_SCALE, "total_num_frames": len(f), "duration": v.duration,
                         "frames_indices": _padded([round(t * TIME_SCALE) for t in v.timestamps], len(f))}
                        for v, f in zip(videos, frames)]
            # cap_pixels_per_frame: the per-frame pixel cap of Qwen's reference implementation (qwen-vl-utils)
            return self.processor(text=texts, videos=frames, video_metadata=metadata, do_sample_frames=False,
                                  cap_pixels_per_frame=True, padding=True, return_tensors="pt")
        return self.processor(text=texts, videos=frames, padding=True, return_tensors="pt")


def _whole_temporal_patches(frames, size: int):
    """Qwen merges `size` frames into one temporal patch and rejects fewer: repeat the last frame."""
    import numpy as np

    missing = -len(frames) % size
    return np.concatenate([frames, frames[-1:].repeat(missing, axis=0)]) if missing else frames


def _padded(values: list, length: int) -> list:
    return values + values[-1:] * (length - len(values))
