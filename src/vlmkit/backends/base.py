"""What every captioning backend offers: caption a batch of sampled videos."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from vlmkit.backends.watch import GenerationWatch
    from vlmkit.frames import VideoFrames


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = 128
    temperature: float | None = None  # None or 0: greedy
    seed: int | None = None
    # A preallocated KV cache; on CUDA transformers then compiles the decoding step (torch.compile),
    # which pays off over a long run once the first batch has paid for compiling.
    static_cache: bool = False
    min_new_tokens: int | None = None  # benchmarks force a fixed length with it
    watch: GenerationWatch | None = field(default=None, compare=False)  # progress and Ctrl-C inside a call

    @property
    def sampling(self) -> bool:
        return bool(self.temperature and self.temperature > 0)

    def generate_kwargs(self, pad_token_id: int | None) -> dict:
        kwargs = {"max_new_tokens": self.max_new_tokens, "do_sample": self.sampling, "pad_token_id": pad_token_id}
        if self.static_cache:
            kwargs["cache_implementation"] = "static"
        if self.min_new_tokens:
            kwargs["min_new_tokens"] = self.min_new_tokens
        if self.watch is not None:
            kwargs["stopping_criteria"] = self.watch.stopping_criteria()
        if self.sampling:
            kwargs["temperature"] = self.temperature
        else:  # a model's generation_config may carry sampling defaults; greedy means greedy
            kwargs.update(temperature=None, top_p=None, top_k=None)
        return kwargs


@dataclass
class Prepared:
    """A batch after the CPU-side work (processors, pixel tensors), ready for the model.

    `prepare` runs on a worker thread while the previous batch generates, so the GPU does not wait
    for the CPU between batches.
    """

    videos: list  # VideoFrames
    prompt: str
    inputs: Any = None  # whatever the backend's `run` needs


@dataclass(frozen=True)
class Generated:
    text: str
    new_tokens: int


class CaptionBackend(ABC):
    """A loaded model that turns sampled frames plus a prompt into text."""

    keys: dict[str, str]  # registry keys: {"vlm": ...} or {"encoder": ..., "llm": ...}
    dtype: torch.dtype
    device: str
    default_frames: int = 8
    tokens_per_frame: int | None = None  # fixed visual tokens per frame, where the model has a fixed number
    max_context: int | None = None

    def prepare(self, videos: list[VideoFrames], prompt: str) -> Prepared:
        """CPU work only (safe on a worker thread); the default leaves everything to `run`."""
        return Prepared(videos, prompt)

    @abstractmethod
    def run(self, prepared: Prepared, settings: GenerationSettings) -> list[Generated]:
        """One caption per video of a prepared batch."""

    def generate(self, videos: list[VideoFrames], prompt: str, settings: GenerationSettings) -> list[Generated]:
        """One caption per video, batched in one generate call."""
        return self.run(self.prepare(videos, prompt), settings)

    @abstractmethod
    def generate_text(self, prompts: list[str], settings: GenerationSettings) -> list[Generated]:
        """Text in, text out (no frames): used to summarise segment captions."""

    def visual_tokens(self, clip: VideoFrames) -> int:
        """The visual tokens one clip costs: videos with equal counts batch without padding."""
        return len(clip.frames) * (self.tokens_per_frame or 1)

    def context_limit(self, frames: int, max_new_tokens: int) -> str | None:
        """Why `frames` frames do not fit the model's context, or None when they do."""
        if not (self.tokens_per_frame and self.max_context):
            return None
        from vlmkit.memory import PROMPT_TOKENS

        needed = frames * self.tokens_per_frame + PROMPT_TOKENS + max_new_tokens
        if needed <= self.max_context:
            return None
        return (f"too long for the model's context: {frames} frames x {self.tokens_per_frame} tokens + prompt + "
                f"{max_new_tokens} new tokens = {needed:,} > {self.max_context:,}; use fewer --frames or --max-frames")

    @abstractmethod
    def parameter_count(self) -> int:
        """Parameters held in memory."""

    def smoke_test(self) -> None:
        """One small forward pass, to prove the weights and processors work together."""
        import numpy as np

        from vlmkit.frames import VideoFrames

        frames = np.zeros((2, 64, 64, 3), dtype=np.uint8)
        video = VideoFrames(path="<smoke test>", frames=frames, timestamps=[0.0, 0.5], duration=1.0,
                            width=64, height=64, decoded_frames=2)
        self.generate([video], "Describe.", GenerationSettings(max_new_tokens=1))


def generate_and_decode(model, tokenizer, inputs, settings: GenerationSettings) -> list[Generated]:
    """The tail every backend shares: generate from prepared inputs, decode each row's new tokens.

    `inputs` are `generate`'s keyword arguments. With `input_ids` the output repeats the prompt,
    which is cut off; with `inputs_embeds` only, the output holds the new tokens alone.
    """
    seed_everything(settings.seed)
    if settings.watch is not None:
        settings.watch.begin()
    output = model.generate(**inputs, **settings.generate_kwargs(tokenizer.pad_token_id))
    prompt_length = inputs["input_ids"].shape[1] if "input_ids" in inputs else 0
    return [decode_new_tokens(row, tokenizer, model.generation_config) for row in output[:, prompt_length:]]


def decode_new_tokens(tokens, tokenizer, generation_config) -> Generated:
    """Text up to the first stop token; the count is of real new tokens, not padding."""
    eos = generation_config.eos_token_id
    stops = set(eos if isinstance(eos, list) else [eos]) | {tokenizer.eos_token_id, tokenizer.pad_token_id}
    ids = tokens.tolist()
    end = next((i for i, t in enumerate(ids) if t in stops - {None}), len(ids))
    return Generated(tokenizer.decode(ids[:end], skip_special_tokens=True).strip(), end)


def seed_everything(seed: int | None) -> None:
    if seed is not None:
        import torch

        torch.manual_seed(seed)
