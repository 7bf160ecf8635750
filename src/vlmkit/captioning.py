"""`caption` and `run`: videos in, one record per video out (resumably, into a journal), through any backend."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vlmkit.backends.base import GenerationSettings
from vlmkit.errors import UsageError, VlmkitError
from vlmkit.prompts import DEFAULT_PROMPT
from vlmkit.records import (
    CaptionRecord,
    Captions,
    RunSummary,
    Status,  # noqa: F401 - re-exported: the record's old home
)
from vlmkit.subtitles import SubtitleNames, write_subtitles

if TYPE_CHECKING:
    from vlmkit.batch import BatchOptions


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


Engine = Callable[[list[str], Callable[[CaptionRecord], None], threading.Event], RunSummary]
"""Captions the videos still to do, handing each record to the callback as it finishes, and stops
between batches once the event is set. `batch.local_engine` runs on this process's model."""


class CaptionRun:
    """One resumable run: the journal, the videos still to do, subtitle files and the summary.

    Opening it reads the output a previous run left (`output=`), refuses another model or prompt
    (`models=`, when known before loading), and works out `todo`; `caption(engine, ...)` captions
    them, appending each record to the journal (synced to disk) as it arrives.
    """

    def __init__(self, videos: Iterable[str | Path], *, prompt: str = DEFAULT_PROMPT, output: str | Path | None = None,
                 retry_errors: bool = False, models: dict[str, str] | None = None, subtitles: str | None = None,
                 subtitle_dir: str | Path | None = None) -> None:
        from vlmkit.journal import Journal

        self.videos, self.prompt = [str(v) for v in videos], prompt
        self.journal = Journal.open(output, retry_errors=retry_errors) if output else None
        self.subtitles = subtitles  # "srt" or "vtt": one file per video with segments
        self.subtitle_files: dict[str, Path] = {}  # video -> the subtitle file written for it in this run
        self._subtitle_names = SubtitleNames(Path(subtitle_dir) if subtitle_dir else
                                             Path(output).parent if output else Path.cwd())
        recorded = (self.journal.done | self.journal.failed) if self.journal else set()
        self.todo = [v for v in self.videos if os.path.abspath(v) not in recorded]
        self.failed_before = len({os.path.abspath(v) for v in self.videos} & self.journal.failed) if self.journal else 0
        if models:
            try:
                self.check_models(models)
            except VlmkitError:
                self.close()
                raise

    @property
    def skipped(self) -> int:
        return len(self.videos) - len(self.todo)

    def check_models(self, models: dict[str, str]) -> None:
        """Resuming with another model or prompt would mix two datasets in one file."""
        if self.journal:
            self.journal.check_same_run(models, self.prompt)

    def summary(self) -> RunSummary:
        """The summary of a run that captions nothing (everything was recorded before)."""
        return RunSummary(skipped=self.skipped, failed_before=self.failed_before)

    def caption(self, engine: Engine, *, models: dict[str, str],
                on_record: Callable[[CaptionRecord], None] | None = None,
                stop: threading.Event | None = None) -> RunSummary:
        """Caption `todo` with `engine`; `models` are the keys its records carry (checked against the output)."""
        self.check_models(models)

        def record(result: CaptionRecord) -> None:
            if self.journal:
                self.journal.write(result)
            if self.subtitles and result.segments:
                self.subtitle_files[result.video] = write_subtitles(
                    result.segments, self.subtitles, self._subtitle_names.path_for(result.video, self.subtitles))
            if on_record:
                on_record(result)

        summary = engine(self.todo, record, stop or threading.Event())
        summary.skipped, summary.failed_before = self.skipped, self.failed_before
        return summary

    def close(self) -> None:
        if self.journal:
            self.journal.close()

    def __enter__(self) -> CaptionRun:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def run(videos: Iterable[str | Path], model=None, *, output: str | Path | None = None, retry_errors: bool = False,
        prompt: str = DEFAULT_PROMPT, sampling: SamplingOptions = SamplingOptions(),
        settings: GenerationSettings | None = None, options: BatchOptions | None = None,
        subtitles: str | None = None, subtitle_dir: str | Path | None = None, models: dict[str, str] | None = None,
        on_record: Callable[[CaptionRecord], None] | None = None, stop: threading.Event | None = None,
        engine: Engine | None = None) -> RunSummary:
    """Caption `videos` resumably: with `output`, videos recorded there before are skipped.

    `model` is a `vlmkit.load(...)` result, or a function returning one, called only when some
    video is left to caption. `models` (registry keys), when known, refuses a mismatched output
    before anything loads. An `engine` (e.g. `engines.ray_engine.RayEngine`) captions instead of
    `model`, whose records carry `models`.
    """
    from vlmkit.batch import BatchOptions, local_engine

    sampling.validate()
    with CaptionRun(videos, prompt=prompt, output=output, retry_errors=retry_errors, models=models,
                    subtitles=subtitles, subtitle_dir=subtitle_dir) as job:
        if not job.todo:
            return job.summary()
        if engine is not None:
            if not models:
                raise UsageError("A caption engine needs the models named", "Give vlm= (or encoder= and llm=).")
            return job.caption(engine, models=models, on_record=on_record, stop=stop)
        loaded = model if hasattr(model, "backend") else model()
        engine = local_engine(loaded.backend, prompt, sampling, settings or GenerationSettings(),
                              options or BatchOptions())
        return job.caption(engine, models=loaded.backend.keys, on_record=on_record, stop=stop)


def caption(videos: str | Path | Iterable[str | Path], *, vlm: str | None = None, encoder: str | None = None,
            llm: str | None = None, projector: str | Path | None = None, prompt: str = DEFAULT_PROMPT,
            frames: int | None = None, fps: float | None = None, min_frames: int = 1, max_frames: int | None = None,
            start: float | None = None, end: float | None = None, max_new_tokens: int = 128,
            temperature: float | None = None, seed: int | None = None, dtype: str | None = None,
            device: str | None = None, offline: bool = False, registry=None, model=None, batch_size: int | str = "auto",
            workers: int = 2, static_cache: bool = False, segments: float | None = None, summary: bool = False,
            strip_prefix: bool = False, output: str | Path | None = None,
            retry_errors: bool = False, engine: str = "local", ray_options=None) -> Captions:
    """Caption one video or many; a video that fails becomes a record with status 'error'.

    `model` reuses a `vlmkit.load(...)` result instead of loading again (handy in notebooks).
    With `output` (.jsonl or .csv) each record is appended there as it finishes, and a second call
    captions only the videos not recorded yet (and, with `retry_errors`, those that failed);
    the list returned holds this call's records, in the order of `videos`. `batch_size="auto"`:
    the largest batch whose estimated peak fits the GPU (vlmkit.batch_size).
    `engine="ray"` captions on a pool of Ray workers (`ray_options`: an `engines.ray_engine.RayOptions`),
    each loading the named model itself; `workers` stays the decode threads inside each.
    """
    from vlmkit.batch import BatchOptions
    from vlmkit.batch_size import plan_caption

    paths = [videos] if isinstance(videos, (str, Path)) else list(videos)
    if output:
        check_output_name(Path(output))
    records = Captions()  # a list that Jupyter shows as a table with a summary line
    plan = plan_caption(batch_size, videos=[str(p) for p in paths], frames=frames, max_frames=max_frames,
                        max_new_tokens=max_new_tokens, registry=registry, vlm=vlm, encoder=encoder, llm=llm,
                        dtype=dtype, device=device, model=model)
    if plan.keys and plan.keys.get("vlm") and engine != "ray":
        vlm = plan.keys["vlm"]  # the default model, as planned for
    load_kwargs = dict(vlm=vlm, encoder=encoder, llm=llm, projector=projector, dtype=dtype, device=device,
                       offline=offline, registry=registry)
    sampling = SamplingOptions(frames, fps, min_frames, max_frames, start, end)
    settings = GenerationSettings(max_new_tokens, temperature, seed, static_cache)
    options = BatchOptions(batch_size=plan.choice.size, workers=workers, segments=segments, summary=summary,
                           strip_prefix=strip_prefix)
    named = named_models(registry, vlm=vlm, encoder=encoder, llm=llm) if not model else None
    pool = None
    if engine == "ray":
        pool = ray_engine(named, prompt, sampling, settings, options, ray_options, **load_kwargs)
    elif engine != "local":
        raise UsageError(f"engine={engine!r}: use 'local' or 'ray'", "The local engine captions in this process.")
    run(paths, model or (lambda: load_for_captioning(**load_kwargs)), output=output, retry_errors=retry_errors,
        prompt=prompt, sampling=sampling, settings=settings, options=options,
        models=named if output or pool else None, on_record=records.append, engine=pool)
    return in_input_order(records, paths)


def in_input_order(records: list[CaptionRecord], videos: Iterable[str | Path]) -> Captions:
    """Batches group videos by visual tokens, so records arrive in another order: put them back."""
    order: dict[str, int] = {}
    for index, video in enumerate(videos):
        order.setdefault(os.path.abspath(video), index)
    return Captions(sorted(records, key=lambda record: order.get(record.video, len(order))))


def ray_engine(models: dict[str, str] | None, prompt: str, sampling: SamplingOptions, settings: GenerationSettings,
               options: BatchOptions, ray_options=None, **load_kwargs) -> Engine:
    """The Ray engine for named models (each worker loads them: a default picked per machine could differ)."""
    from vlmkit.engines import load_ray_engine

    check_models_named_for_ray(models)
    if load_kwargs.get("encoder") and not load_kwargs.get("projector"):
        load_for_captioning(**load_kwargs)  # refuses it with the usual message, before Ray starts
    ray = load_ray_engine()
    return ray.RayEngine(ray.ray_loader(**load_kwargs), models, prompt, sampling, settings, options,
                         ray_options or ray.RayOptions())


def check_models_named_for_ray(models: dict[str, str] | None) -> None:
    if not models:
        raise UsageError("--engine ray needs the model named: --vlm KEY (or --encoder KEY --llm KEY --projector FILE)",
                         "Each Ray worker loads it on its own machine; `vlmkit recommend` suggests one.")


def named_models(registry, *, vlm: str | None = None, encoder: str | None = None,
                 llm: str | None = None) -> dict[str, str] | None:
    """The registry keys records will carry, when the models are named (None: the default model)."""
    if not (vlm or (encoder and llm)):
        return None
    if registry is None:
        from vlmkit.registry import load_registry

        registry = load_registry()
    return {"vlm": registry.vlm(vlm).key} if vlm else {"encoder": registry.encoder(encoder).key,
                                                       "llm": registry.llm(llm).key}


def check_output_name(output: Path) -> None:
    if output.suffix.lower() not in (".jsonl", ".csv"):
        raise UsageError(f"--output {output}: use a .jsonl or .csv file",
                         "Records are appended as each video finishes, so that a rerun resumes.")


def load_for_captioning(*, vlm=None, encoder=None, llm=None, projector=None, **kwargs):
    """Refuses a composed pipeline without a trained projector before any download starts."""
    from vlmkit.loading import load
    from vlmkit.model_choice import check_model_options

    check_model_options(vlm=vlm, encoder=encoder, llm=llm, projector=projector)
    require_projector(encoder, llm, projector, kwargs.get("registry"))
    return load(vlm=vlm, encoder=encoder, llm=llm, projector=projector, default="vlm", **kwargs)


def require_projector(encoder, llm, projector, registry=None) -> None:
    """Refuses a composed pipeline without a trained projector (before anything else happens)."""
    if encoder and not projector:
        from vlmkit.training.commands import distillation_commands

        steps = distillation_commands(encoder, llm, _teacher(registry))
        raise UsageError(
            "Captioning with --encoder/--llm needs a trained projector (--projector FILE.safetensors)",
            f"Train one on an end-to-end VLM's captions: `{steps[0]}`, then `{steps[1]}`. "
            "Or use --vlm KEY to caption with an end-to-end model directly.")


def _teacher(registry) -> str | None:
    """The end-to-end VLM `recommend` picks for this machine: the teacher to distil from."""
    from vlmkit.errors import VlmkitError
    from vlmkit.planner import recommend

    try:
        choice = recommend(registry=registry).vlm_choice
    except VlmkitError:
        return None
    return choice.vlm if choice else None
