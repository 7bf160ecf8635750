"""Caption many videos: decode ahead on worker threads, batch generation, survive bad files and OOM.

The loop keeps the model busy: while one batch generates, the next videos' frames are decoded on
worker threads (PyAV releases the GIL while decoding). Each finished video becomes one record,
handed to `on_record` at once (the CLI appends it to the journal and syncs it to disk).
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from vlmkit.backends.base import CaptionBackend, Generated, GenerationSettings, Prepared
from vlmkit.backends.watch import GenerationWatch
from vlmkit.errors import VlmkitError
from vlmkit.prompts import SUMMARY_PROMPT
from vlmkit.records import CaptionRecord, RunSummary, Status
from vlmkit.text_cleanup import strip_stock_opening

if TYPE_CHECKING:
    from vlmkit.captioning import Engine, SamplingOptions


LOOKAHEAD_EXTRA = 32  # with batches of 128 (auto on a large GPU), 256 decoded videos would fill the RAM


@dataclass(frozen=True)
class BatchOptions:
    batch_size: int = 1
    workers: int = 2  # decoding threads
    segments: float | None = None  # seconds per window for dense captioning
    summary: bool = False  # with segments: a whole-video summary from the segment captions
    strip_prefix: bool = False
    # Run the processors on a thread of their own while the model generates. None: only on CUDA,
    # where the two use different hardware; on a CPU they compete for the same cores.
    overlap_prepare: bool | None = None
    on_tokens: Callable[[int], None] | None = None  # tokens generated so far by the call in progress
    # Batch videos of equal visual token counts together (less padding); records may come in another order.
    group_by_tokens: bool = True


def local_engine(backend: CaptionBackend, prompt: str, sampling: SamplingOptions, settings: GenerationSettings,
                 options: BatchOptions = BatchOptions(),
                 on_notice: Callable[[str], None] = lambda message: None) -> Engine:
    """The engine that captions on this process's model (see `captioning.Engine`)."""

    def caption(videos: list[str], on_record: Callable[[CaptionRecord], None], stop: threading.Event) -> RunSummary:
        return run_batch(backend, videos, prompt, sampling, settings, options, on_record=on_record, stop=stop,
                         on_notice=on_notice)

    return caption


@dataclass
class _Job:
    video: str
    clips: list = field(default_factory=list)  # VideoFrames, one per segment (one for the whole video)
    windows: list[tuple[float, float]] = field(default_factory=list)
    outputs: dict[int, Generated] = field(default_factory=dict)
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0  # decode + generation time spent on this video
    fewer_frames: bool = False  # the video had fewer distinct frames than asked for


def run_batch(backend: CaptionBackend, videos: list[str], prompt: str, sampling: SamplingOptions,
              settings: GenerationSettings, options: BatchOptions = BatchOptions(), *,
              on_record: Callable[[CaptionRecord], None] = lambda record: None,
              stop: threading.Event | None = None, skipped: int = 0,
              on_notice: Callable[[str], None] = lambda message: None) -> RunSummary:
    """Caption `videos`; stops between batches once `stop` is set (Ctrl-C).

    Three stages overlap: worker threads decode videos ahead, one thread groups them into batches
    and runs the processors (`backend.prepare`), and this thread runs the model. With
    `group_by_tokens`, videos decoded ahead are batched with others of equal visual token counts,
    so records can come in another order than `videos`. `on_notice` hears, once, that a batch ran
    out of GPU memory and the batch size was lowered.
    """
    summary = RunSummary(skipped=skipped)
    started = time.perf_counter()
    stop = stop or threading.Event()
    watch = GenerationWatch(stop, options.on_tokens)  # a Ctrl-C during a long batch ends it at the next token
    settings = replace(settings, watch=watch)
    # decoded frames held ahead: a second batch's worth (the grouping's choice), at most LOOKAHEAD_EXTRA more
    ahead = options.batch_size + max(options.workers, min(options.batch_size, LOOKAHEAD_EXTRA))
    limit = _BatchLimit(options.batch_size, on_notice)
    memory = PeakMemory(str(getattr(backend, "device", "cpu")))
    token_key = (lambda job: _job_tokens(backend, job)) if options.group_by_tokens else None
    overlap = options.overlap_prepare
    if overlap is None:
        overlap = str(getattr(backend, "device", "cpu")).startswith("cuda")
    decoding: deque[Future] = deque()  # touched by the preparing thread only
    remaining = iter(videos)
    with ThreadPoolExecutor(max_workers=options.workers, thread_name_prefix="vlmkit-decode") as decoders, \
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="vlmkit-prepare") as preparer:

        def next_batch() -> _Batch | None:
            while len(decoding) < ahead and (video := next(remaining, None)) is not None:
                decoding.append(decoders.submit(_decode_job, video, sampling, options.segments,
                                                backend.default_frames))
            if not decoding or stop.is_set():
                return None
            batch = _batch(backend, _next_jobs(decoding, limit.size, token_key), prompt, settings)
            if overlap:
                _prepare(backend, batch)
            return batch

        upcoming = preparer.submit(next_batch)
        try:
            while not stop.is_set() and (batch := upcoming.result()) is not None:
                upcoming = preparer.submit(next_batch)  # decoded (and prepared) while this batch generates
                if not overlap:
                    _prepare(backend, batch)
                _generate(backend, batch, settings, summary, limit)
                memory.sample()
                for job in batch.jobs:
                    record = None if watch.cut else _finish(backend, job, prompt, settings, options)
                    if watch.cut:  # cut short by Ctrl-C: incomplete, so not recorded; a resume redoes it
                        break
                    summary.captioned += record.ok
                    summary.failed += not record.ok
                    summary.fewer_frames += job.fewer_frames and record.ok
                    on_record(record)
                if watch.cut:
                    break
        finally:  # stopped, finished or failed: drop the work started ahead
            upcoming.cancel()
            preparer.submit(lambda: [future.cancel() for future in decoding])
    summary.interrupted = stop.is_set()
    summary.elapsed_seconds = time.perf_counter() - started
    summary.batch_size = limit.size
    summary.peak_allocated_bytes, summary.peak_nvml_used_bytes = memory.peaks()
    return summary


class _BatchLimit:
    """The batch size for the rest of the run: lowered (never raised) when a batch runs out of memory."""

    def __init__(self, size: int, on_notice: Callable[[str], None]) -> None:
        self.size, self.asked, self.on_notice, self.said = size, size, on_notice, False

    def lower(self, size: int) -> None:
        if size >= self.size:
            return
        self.size = size
        if not self.said:  # once per run: the summary gives the size the run ended with
            self.said = True
            self.on_notice(f"Out of GPU memory with a batch of {self.asked} videos: split it; "
                           f"batches of at most {size} from now on")


class PeakMemory:
    """torch's peak allocation on the device, and the most NVML showed used there after any batch."""

    def __init__(self, device: str) -> None:
        self.device, self.nvml_peak = device, None
        if device.startswith("cuda"):
            import torch

            torch.cuda.reset_peak_memory_stats(device)

    def sample(self) -> None:
        if self.device.startswith("cuda"):
            from vlmkit.gpu import used_bytes

            used = used_bytes(_cuda_index(self.device))
            if used is not None:
                self.nvml_peak = max(self.nvml_peak or 0, used)

    def peaks(self) -> tuple[int | None, int | None]:
        if not self.device.startswith("cuda"):
            return None, None
        import torch

        return torch.cuda.max_memory_allocated(self.device), self.nvml_peak


def _cuda_index(device: str) -> int:
    if ":" in device:
        return int(device.partition(":")[2])
    import torch

    return torch.cuda.current_device()


@dataclass
class _Batch:
    jobs: list[_Job]
    prompt: str
    pending: list[tuple[_Job, int, object]]  # (job, clip index, VideoFrames) still to caption
    prepared: Prepared | None = None
    error: Exception | None = None  # what `prepare` raised, handled as a failed generate


def _batch(backend, jobs: list[_Job], prompt: str, settings: GenerationSettings) -> _Batch:
    """The clips to caption; a video too long for the model's context is an error now."""
    pending = [(job, i, clip) for job in jobs if not job.error for i, clip in enumerate(job.clips)]
    for job, _, clip in pending:
        limit = backend.context_limit(len(clip.frames), settings.max_new_tokens)
        if limit:
            job.error = limit
    return _Batch(jobs, prompt, [p for p in pending if not p[0].error])


def _prepare(backend, batch: _Batch) -> None:
    if batch.pending:
        try:
            batch.prepared = backend.prepare([clip for _, _, clip in batch.pending], batch.prompt)
        except Exception as exc:  # noqa: BLE001 - retried video by video in _generate
            batch.error = exc


def _next_jobs(decoding: deque, batch_size: int, token_key: Callable[[_Job], int | None] | None = None) -> list[_Job]:
    """Jobs whose clips fill about one batch (one long video with many segments is a batch alone).

    With `token_key`, the next video in line is batched first with the videos decoded ahead whose
    visual token counts equal its own (no padding), then with those nearest to it.
    """
    if token_key is None or batch_size == 1:
        order = list(range(len(decoding)))
    else:
        ready = [future.result() for future in decoding]  # the window decoded ahead
        want = token_key(ready[0])

        def distance(i: int) -> tuple[int, int]:
            key = token_key(ready[i])
            return (0 if key in (want, None) else 1, abs((key or 0) - (want or 0)))  # failed videos cost nothing
        order = [0, *sorted(range(1, len(ready)), key=distance)]
    chosen, clips = [], 0
    for i in order:
        size = max(1, len(decoding[i].result().clips))
        if chosen and clips + size > batch_size:
            if token_key is None:
                break  # in order: the next batch starts here
            continue
        chosen.append(i)
        clips += size
    jobs = [decoding[i].result() for i in chosen]
    taken = set(chosen)
    kept = [future for i, future in enumerate(decoding) if i not in taken]
    decoding.clear()
    decoding.extend(kept)
    return jobs


def _job_tokens(backend, job: _Job) -> int | None:
    """The visual tokens of the job's largest clip; None for a video that failed to decode."""
    return max((backend.visual_tokens(clip) for clip in job.clips), default=None)


def _decode_job(video: str, sampling: SamplingOptions, segments: float | None, default_frames: int) -> _Job:
    from vlmkit.frames import probe_video, sample_frames

    job, started = _Job(video), time.perf_counter()
    num = None if sampling.fps else (sampling.num_frames or default_frames)
    try:
        if segments:
            info = probe_video(video, timeout=sampling.timeout)
            begin, end = sampling.start or 0.0, min(sampling.end or float("inf"), info.duration or 0.0)
            count = max(1, math.ceil((end - begin) / segments))
            job.windows = [(begin + i * segments, min(begin + (i + 1) * segments, end)) for i in range(count)]
        windows = job.windows or [(sampling.start, sampling.end)]
        for lo, hi in windows:
            job.clips.append(sample_frames(video, num_frames=num, fps=sampling.fps, min_frames=sampling.min_frames,
                                           max_frames=sampling.max_frames, start=lo, end=hi,
                                           timeout=sampling.timeout))
        job.notes.extend(clip.note for clip in job.clips if clip.note)  # "asked 16 frames, the video has 9"
        job.fewer_frames = any(clip.note for clip in job.clips)  # counted in the summary
    except VlmkitError as exc:
        job.error, job.clips = exc.message, []
    except Exception as exc:  # noqa: BLE001 - one bad file never ends the run
        job.error, job.clips = f"{type(exc).__name__}: {exc}", []
    job.seconds = time.perf_counter() - started
    return job


def _generate(backend, batch: _Batch, settings: GenerationSettings, summary: RunSummary,
              limit: _BatchLimit | None = None) -> None:
    if not batch.pending:
        return
    prompt = batch.prompt
    started = time.perf_counter()
    clips = [clip for _, _, clip in batch.pending]
    if limit and len(clips) > limit.size:  # formed before a batch ran out of memory: the new size holds
        outputs = _in_chunks(backend, clips, prompt, settings, limit)
    else:
        outputs = _generate_or_split(backend, clips, prompt, settings, batch.prepared, batch.error, limit)
    share = (time.perf_counter() - started) / len(batch.pending)
    for (job, index, clip), result in zip(batch.pending, outputs):
        job.seconds += share
        if isinstance(result, Generated):
            job.outputs[index] = result
        elif not is_out_of_memory(result):
            job.error = f"the model failed on this video: {_describe(result)}"
        else:
            fewer = (len(clip.frames) + 1) // 2
            summary.retried_oom += 1
            halved = replace(clip, frames=clip.frames[::2], timestamps=clip.timestamps[::2])
            retried = _generate_or_split(backend, [halved], prompt, settings)[0]
            if isinstance(retried, Generated):
                job.clips[index], job.outputs[index] = halved, retried
                job.notes.append(f"CUDA out of memory with {len(clip.frames)} frames; retried with {fewer}")
            else:
                job.error = (f"CUDA out of memory, even with {fewer} frames" if is_out_of_memory(retried)
                             else f"the model failed on this video: {_describe(retried)}")


def _generate_or_split(backend, clips, prompt, settings, prepared: Prepared | None = None,
                       error: Exception | None = None, limit: _BatchLimit | None = None) -> list[Generated | Exception]:
    """A batch out of memory is split in halves, and the batch size lowered for the rest of the run;
    a batch failing otherwise is retried one video at a time, so one bad video cannot sink the others.
    A single video out of memory is returned as such (the caller retries it with fewer frames).
    """
    try:
        if error is not None:
            raise error
        return backend.run(prepared, settings) if prepared else backend.generate(clips, prompt, settings)
    except Exception as exc:  # noqa: BLE001 - reported per video below
        out_of_memory = is_out_of_memory(exc)
        if out_of_memory:
            free_gpu_memory()
        if len(clips) == 1:
            return [exc]
        if out_of_memory and limit is not None:
            limit.lower((len(clips) + 1) // 2)
            return _in_chunks(backend, clips, prompt, settings, limit)
    return [out for clip in clips for out in _generate_or_split(backend, [clip], prompt, settings)]


def generate_in_batches(backend, clips: list, prompt: str, settings: GenerationSettings, batch_size: int,
                        on_notice: Callable[[str], None] = lambda message: None
                        ) -> tuple[list[Generated | Exception], int]:
    """Decoded clips through the model as a caption run batches them, out-of-memory splits included.

    Returns one result per clip and the batch size the run ended with (benchmarks use it).
    """
    limit = _BatchLimit(batch_size, on_notice)
    return _in_chunks(backend, clips, prompt, settings, limit), limit.size


def _in_chunks(backend, clips, prompt, settings, limit: _BatchLimit) -> list[Generated | Exception]:
    """Batches of the current limit, which a chunk running out of memory lowers for the chunks after it."""
    outputs: list[Generated | Exception] = []
    while len(outputs) < len(clips):
        part = clips[len(outputs):len(outputs) + limit.size]
        outputs += _generate_or_split(backend, part, prompt, settings, limit=limit)
    return outputs


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _finish(backend, job: _Job, prompt: str, settings: GenerationSettings, options: BatchOptions) -> CaptionRecord:
    video = os.path.abspath(job.video)
    if job.error:
        return CaptionRecord(video=video, status=Status.ERROR, error=job.error, models=backend.keys, prompt=prompt,
                             elapsed_seconds=round(job.seconds, 3), notes=job.notes)
    clean = strip_stock_opening if options.strip_prefix else (lambda text: text)
    captions = [clean(job.outputs[i].text) for i in range(len(job.clips))]
    new_tokens = sum(job.outputs[i].new_tokens for i in range(len(job.clips)))
    stamps = [round(t, 3) for clip in job.clips for t in clip.timestamps]
    if not any(c.strip() for c in captions):  # as if it had not run: an error that --retry-errors retries
        return CaptionRecord(video=video, status=Status.ERROR, error="empty caption", models=backend.keys,
                             prompt=prompt, elapsed_seconds=round(job.seconds, 3), notes=job.notes)
    if not options.segments:
        return CaptionRecord(video=video, caption=captions[0], models=backend.keys, timestamps=stamps, prompt=prompt,
                             new_tokens=new_tokens, elapsed_seconds=round(job.seconds, 3), notes=job.notes)
    segments = [{"start": round(lo, 3), "end": round(hi, 3), "caption": text}
                for (lo, hi), text in zip(job.windows, captions)]
    whole = None
    if options.summary and len(segments) > 1:
        started = time.perf_counter()
        listing = "\n".join(f"[{s['start']:.0f}-{s['end']:.0f} s] {s['caption']}" for s in segments)
        made = backend.generate_text([SUMMARY_PROMPT.format(segments=listing)], settings)[0]
        whole, new_tokens = clean(made.text), new_tokens + made.new_tokens
        job.seconds += time.perf_counter() - started
    return CaptionRecord(video=video, caption=whole or " ".join(c for c in captions if c), models=backend.keys,
                         timestamps=stamps, prompt=prompt, new_tokens=new_tokens,
                         elapsed_seconds=round(job.seconds, 3), notes=job.notes, segments=segments, summary=whole)


def is_out_of_memory(exc: BaseException | Generated) -> bool:
    import torch

    return isinstance(exc, torch.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "CUDA out of memory" in str(exc))


def free_gpu_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
