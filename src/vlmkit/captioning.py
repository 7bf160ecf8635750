"""`caption`: sampled frames in, one record per video out, through any backend."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from vlmkit.backends.base import GenerationSettings
from vlmkit.errors import UsageError, VlmkitError

DEFAULT_PROMPT = "Describe what happens in this video in one or two sentences."


@dataclass(frozen=True)
class SamplingOptions:
    num_frames: int | None = None  # None: the model's default from the registry
    fps: float | None = None
    min_frames: int = 1
    max_frames: int | None = None
    start: float | None = None
    end: float | None = None
    timeout: float = 60.0


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


def caption(videos: str | Path | Iterable[str | Path], *, vlm: str | None = None, encoder: str | None = None,
            llm: str | None = None, projector: str | Path | None = None, prompt: str = DEFAULT_PROMPT,
            frames: int | None = None, fps: float | None = None, min_frames: int = 1, max_frames: int | None = None,
            start: float | None = None, end: float | None = None, max_new_tokens: int = 128,
            temperature: float | None = None, seed: int | None = None, dtype: str | None = None,
            device: str | None = None, offline: bool = False, registry=None, model=None) -> list[CaptionRecord]:
    """Caption one video or many; a video that fails becomes a record with status 'error'.

    `model` reuses a `vlmkit.load(...)` result instead of loading again (handy in notebooks).
    """
    paths = [videos] if isinstance(videos, (str, Path)) else list(videos)
    if model is None:
        model = load_for_captioning(vlm=vlm, encoder=encoder, llm=llm, projector=projector, dtype=dtype,
                                    device=device, offline=offline, registry=registry)
    sampling = SamplingOptions(frames, fps, min_frames, max_frames, start, end)
    settings = GenerationSettings(max_new_tokens, temperature, seed)
    return list(caption_stream(model.backend, [str(p) for p in paths], prompt, sampling, settings))


def load_for_captioning(*, vlm=None, encoder=None, llm=None, projector=None, **kwargs):
    """Refuses a composed pipeline without a trained projector before any download starts."""
    from vlmkit.loading import load

    if encoder and not projector:
        raise UsageError(
            "Captioning with --encoder/--llm needs a trained projector (--projector FILE.safetensors)",
            "An untrained projector maps frames to noise. Use --vlm KEY for an end-to-end model, "
            "or `vlmkit load --encoder ... --llm ...` to try the models without captioning.")
    return load(vlm=vlm, encoder=encoder, llm=llm, projector=projector, default="vlm", **kwargs)


def caption_stream(backend, paths: list[str], prompt: str, sampling: SamplingOptions,
                   settings: GenerationSettings, batch_size: int = 1) -> Iterator[CaptionRecord]:
    """Records in input order; frames for the next batch decode on a worker thread meanwhile."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="vlmkit-decode") as pool:
        batches = [paths[i:i + batch_size] for i in range(0, len(paths), batch_size)]
        pending = [pool.submit(_decode, p, sampling, backend.default_frames) for p in batches[0]] if batches else []
        for index, batch in enumerate(batches):
            decoded = [f.result() for f in pending]
            following = batches[index + 1] if index + 1 < len(batches) else []
            pending = [pool.submit(_decode, p, sampling, backend.default_frames) for p in following]
            yield from _caption_batch(backend, decoded, prompt, settings)


def _decode(path: str, sampling: SamplingOptions, default_frames: int):
    """(path, frames or None, error or None, seconds)."""
    from vlmkit.frames import sample_frames

    started = time.perf_counter()
    try:
        num = None if sampling.fps else (sampling.num_frames or default_frames)
        frames = sample_frames(path, num_frames=num, fps=sampling.fps, min_frames=sampling.min_frames,
                               max_frames=sampling.max_frames, start=sampling.start, end=sampling.end,
                               timeout=sampling.timeout)
        return path, frames, None, time.perf_counter() - started
    except VlmkitError as exc:
        return path, None, exc.message, time.perf_counter() - started


def _caption_batch(backend, decoded, prompt: str, settings: GenerationSettings) -> Iterator[CaptionRecord]:
    good = [(path, frames, seconds) for path, frames, _, seconds in decoded if frames is not None]
    for path, frames, error, seconds in decoded:
        if frames is None:
            yield CaptionRecord(path, None, backend.keys, [], prompt, 0, round(seconds, 3), "error", error)
    if not good:
        return
    started = time.perf_counter()
    outputs = backend.generate([frames for _, frames, _ in good], prompt, settings)
    share = (time.perf_counter() - started) / len(good)
    for (path, frames, seconds), out in zip(good, outputs):
        yield CaptionRecord(path, out.text, backend.keys, [round(t, 3) for t in frames.timestamps], prompt,
                            out.new_tokens, round(seconds + share, 3))
