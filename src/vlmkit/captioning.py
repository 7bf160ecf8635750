"""`caption`: sampled frames in, one record per video out, through any backend."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from vlmkit.backends.base import GenerationSettings
from vlmkit.errors import UsageError
from vlmkit.prompts import DEFAULT_PROMPT


@dataclass(frozen=True)
class SamplingOptions:
    num_frames: int | None = None  # None: the model's default from the registry
    fps: float | None = None
    min_frames: int = 1
    max_frames: int | None = None
    start: float | None = None
    end: float | None = None
    timeout: float = 60.0

    def validate(self) -> None:
        """Reject impossible options before any model loads (not once per video after it did)."""
        from vlmkit.frames import check_sampling_options

        if self.fps is not None and self.num_frames is not None:
            raise UsageError("Both --frames and --fps given", "Give --frames N for N frames, or --fps F.")
        check_sampling_options(self.num_frames or 1, self.fps, self.min_frames, self.max_frames, self.start,
                               self.end, self.timeout)


@dataclass(frozen=True)
class CaptionRecord:
    video: str
    caption: str | None
    models: dict[str, str]
    timestamps: list[float]
    prompt: str
    new_tokens: int
    elapsed_seconds: float
    status: str = "ok"  # "ok" or "error"
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    segments: list[dict] | None = None  # dense captioning: [{"start", "end", "caption"}]
    summary: str | None = None  # dense captioning: the whole video in one paragraph


def caption(videos: str | Path | Iterable[str | Path], *, vlm: str | None = None, encoder: str | None = None,
            llm: str | None = None, projector: str | Path | None = None, prompt: str = DEFAULT_PROMPT,
            frames: int | None = None, fps: float | None = None, min_frames: int = 1, max_frames: int | None = None,
            start: float | None = None, end: float | None = None, max_new_tokens: int = 128,
            temperature: float | None = None, seed: int | None = None, dtype: str | None = None,
            device: str | None = None, offline: bool = False, registry=None, model=None, batch_size: int = 1,
            segments: float | None = None, summary: bool = False, strip_prefix: bool = False) -> list[CaptionRecord]:
    """Caption one video or many; a video that fails becomes a record with status 'error'.

    `model` reuses a `vlmkit.load(...)` result instead of loading again (handy in notebooks).
    """
    paths = [videos] if isinstance(videos, (str, Path)) else list(videos)
    sampling = SamplingOptions(frames, fps, min_frames, max_frames, start, end)
    sampling.validate()
    if model is None:
        model = load_for_captioning(vlm=vlm, encoder=encoder, llm=llm, projector=projector, dtype=dtype,
                                    device=device, offline=offline, registry=registry)
    from vlmkit.batch import BatchOptions, run_batch

    settings = GenerationSettings(max_new_tokens, temperature, seed)
    records: list[CaptionRecord] = []
    run_batch(model.backend, [str(p) for p in paths], prompt, sampling, settings,
              BatchOptions(batch_size=batch_size, segments=segments, summary=summary, strip_prefix=strip_prefix),
              on_record=records.append)
    return records


def load_for_captioning(*, vlm=None, encoder=None, llm=None, projector=None, **kwargs):
    """Refuses a composed pipeline without a trained projector before any download starts."""
    from vlmkit.loading import load
    from vlmkit.model_choice import check_model_options

    check_model_options(vlm=vlm, encoder=encoder, llm=llm, projector=projector)
    if encoder and not projector:
        raise UsageError(
            "Captioning with --encoder/--llm needs a trained projector (--projector FILE.safetensors)",
            "An untrained projector maps frames to noise. Use --vlm KEY for an end-to-end model, "
            "or `vlmkit load --encoder ... --llm ...` to try the models without captioning.")
    return load(vlm=vlm, encoder=encoder, llm=llm, projector=projector, default="vlm", **kwargs)
