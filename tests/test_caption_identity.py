"""Every caption belongs to its own video, whatever the batching: the guard for all batching work.

Each test video is a solid colour of its own, with its own size and frame count; a backend that
says what it was shown (colour, frames, size) is run through the real batch pipeline (real
decoding, real batching, real records), and each record's caption must describe its own video.
The videos are in an order that sorting or grouping by frame count, size or name would change.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import pytest

from videos import make_not_video, make_video
from vlmkit.backends.base import CaptionBackend, Generated, GenerationSettings, Prepared
from vlmkit.batch import BatchOptions, _Job, _next_jobs, run_batch
from vlmkit.captioning import SamplingOptions

COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "yellow": (255, 255, 0),
           "magenta": (255, 0, 255), "cyan": (0, 255, 255), "white": (255, 255, 255), "black": (0, 0, 0)}
FRAMES = 4  # asked for; a clip with fewer frames gives the frames it has
# (file name, colour, frames sampled, (width, height)): a clip of 2 or 3 frames at 10 fps gives all it has,
# one of 1 s gives FRAMES. Neither names, frame counts nor
# sizes are sorted, so any reordering of a batch moves some video away from its own position
CLIPS = [("m.mp4", "red", 4, (64, 48)), ("c.mp4", "green", 2, (32, 32)), ("x.mp4", "blue", 3, (48, 32)),
         ("a.mp4", "yellow", 4, (32, 32)), ("q.mp4", "magenta", 2, (64, 48)), ("broken.mp4", None, 0, None),
         ("e.mp4", "cyan", 3, (32, 32)), ("b.mp4", "white", 4, (48, 32)), ("k.mp4", "black", 2, (48, 32))]


def colour_name(frames: np.ndarray) -> str:
    """The palette colour nearest to the frames' mean colour: what a decoded solid clip shows."""
    mean = frames.reshape(-1, 3).mean(axis=0)
    return min(COLOURS, key=lambda name: np.abs(mean - COLOURS[name]).sum())


def description(colour: str, frames: int, width: int, height: int) -> str:
    return f"{colour} video, {frames} frames of {width}x{height}"


class DescribingBackend(CaptionBackend):
    """A test double at the backend seam: its caption says what it was shown, read from the pixels."""

    keys = {"vlm": "describing-double"}
    device = "cpu"
    default_frames = FRAMES

    def prepare(self, videos, prompt: str) -> Prepared:  # what a processor does: look at the pixels
        seen = [description(colour_name(v.frames), len(v.frames), v.frames.shape[2], v.frames.shape[1])
                for v in videos]
        return Prepared(videos, prompt, seen)

    def run(self, prepared: Prepared, settings: GenerationSettings) -> list[Generated]:
        return [Generated(text, settings.max_new_tokens) for text in prepared.inputs]  # as if it wrote them all

    def generate_text(self, prompts: list[str], settings: GenerationSettings) -> list[Generated]:
        return [Generated(f"summary of {prompt.count(' s] ')} segments", settings.max_new_tokens)
                for prompt in prompts]

    def parameter_count(self) -> int:
        return 0


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("identity")
    paths = []
    for name, colour, count, size in CLIPS:
        if colour is None:
            paths.append(make_not_video(root / name))
        else:
            seconds = count / 10 if count < FRAMES else 1.0
            paths.append(make_video(root / name, color=COLOURS[colour], seconds=seconds, fps=10, size=size))
    return paths


def expected(path: Path) -> str | None:
    _, colour, count, size = next(c for c in CLIPS if c[0] == path.name)
    return None if colour is None else description(colour, count, *size)


@pytest.mark.parametrize("overlap", [False, True])
@pytest.mark.parametrize("batch_size", [1, 2, 5])
def test_every_caption_names_its_own_video(clips, batch_size, overlap):
    records = []
    summary = run_batch(DescribingBackend(), [str(p) for p in clips], "Describe.", SamplingOptions(num_frames=FRAMES),
                        GenerationSettings(max_new_tokens=8),
                        BatchOptions(batch_size=batch_size, workers=2, overlap_prepare=overlap),
                        on_record=records.append, stop=threading.Event())
    assert sorted(Path(r.video).name for r in records) == sorted(p.name for p in clips)  # each video once
    for record in records:
        want = expected(Path(record.video))
        if want is None:
            assert record.status == "error" and record.caption is None
        else:
            assert (record.status, record.caption) == ("ok", want), record.video
            assert len(record.timestamps) == int(want.split(", ")[1].split()[0])
            assert (record.new_tokens, record.prompt, record.models) == (8, "Describe.", DescribingBackend.keys)
            assert record.elapsed_seconds > 0  # the model here is instant: this is its decoding time
    assert (summary.captioned, summary.failed, summary.interrupted) == (len(clips) - 1, 1, False)
    assert summary.fewer_frames == sum(0 < count < FRAMES for _, _, count, _ in CLIPS)  # "asked 4, has 2"
    assert 0 < summary.elapsed_seconds < 120 and summary.videos_per_minute > 0


# --- the same guard through a real end-to-end model ---------------------------------------------


@pytest.fixture(scope="module")
def llava(zoo_registry):
    """The tiny LLaVA-NeXT-Video, whose generate also writes what each batch row's pixels show.

    The real model generates; then each row's new tokens are replaced by the colour and frame count
    read from that row's own `pixel_values_videos`, so an output row that is put back next to
    another video's input is seen.
    """
    import torch

    from vlmkit import load
    from vlmkit.registry import load_registry

    backend = load(vlm="tiny-llava-next-video", registry=load_registry(zoo_registry)).backend
    tokenizer, processor = backend.processor.tokenizer, backend.processor.video_processor
    mean = torch.tensor(processor.image_mean).view(3, 1, 1)
    std = torch.tensor(processor.image_std).view(3, 1, 1)
    real_generate = backend.model.generate

    def generate(**inputs):
        output = real_generate(**inputs)
        start = inputs["input_ids"].shape[1]
        rows = []
        for pixels in inputs["pixel_values_videos"].float():  # [T, 3, S, S], normalised
            rgb = ((pixels * std + mean) * 255).mean(dim=(0, 2, 3)).numpy()  # the row's mean colour
            rows.append(tokenizer(f"{colour_name(rgb)} {len(pixels)}", add_special_tokens=False).input_ids)
        width = max(len(r) for r in rows)
        new = torch.tensor([r + [tokenizer.eos_token_id] * (width - len(r)) for r in rows])
        return torch.cat([output[:, :start], new.to(output.device)], dim=1)

    backend.model.generate = generate
    return backend


def test_end_to_end_results_come_back_in_input_order(llava, clips):
    """LLaVA's processor stacks videos of one frame count only: the groups must be put back in input order."""
    from vlmkit.frames import sample_frames

    videos = [sample_frames(p, num_frames=FRAMES) for p in clips if expected(p)]
    counts = [len(v.frames) for v in videos]
    assert counts != sorted(counts) and len(set(counts)) == 3  # groups of 4, 2 and 3 frames, interleaved
    results = llava.generate(videos, "Describe.", GenerationSettings(max_new_tokens=2))
    assert [r.text for r in results] == [f"{colour_name(v.frames)} {len(v.frames)}" for v in videos]
    assert [r.text.split()[0] for r in results] == [c[1] for c in CLIPS if c[1]]  # what the files hold


@pytest.mark.parametrize("batch_size", [1, 2, 5])
def test_end_to_end_captions_name_their_own_videos(llava, clips, batch_size):
    records = []
    run_batch(llava, [str(p) for p in clips], "Describe.", SamplingOptions(num_frames=FRAMES),
              GenerationSettings(max_new_tokens=2), BatchOptions(batch_size=batch_size), on_record=records.append)
    assert sorted(Path(r.video).name for r in records) == sorted(p.name for p in clips)
    for record in records:
        want = expected(Path(record.video))
        if want is None:
            assert record.status == "error"
        else:
            colour, frames = want.split()[0], want.split(", ")[1].split()[0]
            assert record.caption == f"{colour} {frames}", record.video


class FailingBackend(DescribingBackend):
    """Runs out of memory on any batch holding the red clip at more than 2 frames; fails outright on cyan."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.prompts: set[str] = set()

    def run(self, prepared: Prepared, settings: GenerationSettings) -> list[Generated]:
        import torch

        self.calls.append(prepared.inputs)
        self.prompts.add(prepared.prompt)
        if any(seen.startswith(("red", "blue")) and ", 2 frames" not in seen for seen in prepared.inputs):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (test double)")
        if any(seen.startswith("cyan") for seen in prepared.inputs):
            raise ValueError("the model cannot read this one\nsecond line")
        return super().run(prepared, settings)


def test_a_batch_that_fails_is_retried_video_by_video(clips):
    """Out of memory: each video alone, then the one that still fails with half its frames; captions stay put."""
    backend = FailingBackend()
    records = []
    summary = run_batch(backend, [str(p) for p in clips], "Describe.", SamplingOptions(num_frames=FRAMES),
                        GenerationSettings(max_new_tokens=8), BatchOptions(batch_size=5), on_record=records.append)
    by_name = {Path(r.video).name: r for r in records}
    assert sorted(Path(r.video).name for r in records) == sorted(p.name for p in clips)
    red, blue, cyan = by_name["m.mp4"], by_name["x.mp4"], by_name["e.mp4"]
    assert (red.status, red.caption) == ("ok", description("red", 2, 64, 48)) and len(red.timestamps) == 2
    assert "CUDA out of memory with 4 frames; retried with 2" in red.notes
    assert (blue.caption, len(blue.timestamps)) == (description("blue", 2, 48, 32), 2)  # frames 0 and 2 of 3
    assert "CUDA out of memory with 3 frames; retried with 2" in blue.notes
    assert cyan.status == "error"
    assert cyan.error == "the model failed on this video: ValueError: the model cannot read this one"
    for name, record in by_name.items():
        if record not in (red, blue, cyan):
            assert record.caption == expected(Path(name)), name
            assert not any("out of memory" in note for note in record.notes), name
    assert (summary.captioned, summary.failed, summary.retried_oom) == (len(clips) - 2, 2, 2)
    assert [description("red", 4, 64, 48)] in backend.calls and [description("red", 2, 64, 48)] in backend.calls
    assert backend.prompts == {"Describe."}  # retries keep the prompt


class ThreadNoting(DescribingBackend):
    def __init__(self, device: str) -> None:
        self.device, self.prepared_on, self.sizes, self.prompts = device, set(), [], set()

    def prepare(self, videos, prompt: str) -> Prepared:
        self.prepared_on.add(threading.current_thread().name)
        self.prompts.add(prompt)
        self.sizes.append(len(videos))
        return super().prepare(videos, prompt)


@pytest.mark.parametrize("device, overlap, worker", [
    ("cpu", None, False),  # on a CPU the processors and the model share the cores: one after the other
    ("cpu", True, True),
])
def test_where_the_processors_run_and_how_many_videos_each_batch_holds(clips, device, overlap, worker):
    backend = ThreadNoting(device)
    records = []
    # no frame count given: the backend's default (FRAMES)
    summary = run_batch(backend, [str(p) for p in clips], "Describe.", SamplingOptions(),
                        GenerationSettings(), BatchOptions(batch_size=2, overlap_prepare=overlap),
                        on_record=records.append, skipped=3)
    caller = threading.current_thread().name
    assert (caller not in backend.prepared_on) if worker else backend.prepared_on == {caller}
    assert max(backend.sizes) == 2 and sum(backend.sizes) == len(clips) - 1  # each good video prepared once
    assert backend.prompts == {"Describe."}
    assert all(r.caption == expected(Path(r.video)) for r in records if r.status == "ok")
    assert (summary.skipped, summary.captioned, summary.interrupted) == (3, len(clips) - 1, False)
    assert run_batch(backend, [], "Describe.", SamplingOptions(), GenerationSettings()).skipped == 0


class TimeNoting(DescribingBackend):
    """Says which stretch of the video it was shown, from the frames' timestamps."""

    def prepare(self, videos, prompt: str) -> Prepared:
        return Prepared(videos, prompt, [f"{colour_name(v.frames)} {v.timestamps[0]:.2f}-{v.timestamps[-1]:.2f}"
                                         for v in videos])


@pytest.mark.parametrize("batch_size", [1, 3])
def test_each_segment_caption_belongs_to_its_own_window(clips, batch_size):
    """Dense captioning: 0.4 s windows over 1 s clips; each window's caption saw frames from that window only."""
    long_clips = [p for p in clips if expected(p) and f", {FRAMES} frames" in expected(p)]
    records = []
    run_batch(TimeNoting(), [str(p) for p in long_clips], "Describe.", SamplingOptions(num_frames=2),
              GenerationSettings(max_new_tokens=5), BatchOptions(batch_size=batch_size, segments=0.4, summary=True),
              on_record=records.append)
    assert [Path(r.video).name for r in records] == [p.name for p in long_clips]
    for record in records:
        assert record.summary == record.caption == "summary of 3 segments" and record.new_tokens == 4 * 5
        colour = expected(Path(record.video)).split()[0]
        assert [(s["start"], s["end"]) for s in record.segments] == [(0.0, 0.4), (0.4, 0.8), (0.8, 1.0)]
        for segment in record.segments:
            name, span = segment["caption"].split()
            first, last = map(float, span.split("-"))
            assert name == colour and segment["start"] <= first <= last <= segment["end"], segment


def test_a_stop_ends_the_run_between_batches(clips):
    stop = threading.Event()
    records = []

    def on_record(record) -> None:
        records.append(record)
        stop.set()  # as Ctrl-C does

    summary = run_batch(DescribingBackend(), [str(p) for p in clips], "Describe.", SamplingOptions(num_frames=FRAMES),
                        GenerationSettings(), BatchOptions(batch_size=2), on_record=on_record, stop=stop)
    assert summary.interrupted and len(records) == 2 == summary.captioned  # the batch in flight, then no more
    assert all(r.caption == expected(Path(r.video)) for r in records)


def test_a_clip_too_long_for_the_context_is_an_error_and_the_others_keep_their_captions(clips):
    backend = DescribingBackend()
    backend.tokens_per_frame, backend.max_context = 100, 64 + 3 * 100 + 8  # 3 frames and 8 new tokens fit, 4 do not
    records = []
    run_batch(backend, [str(p) for p in clips], "Describe.", SamplingOptions(num_frames=FRAMES),
              GenerationSettings(max_new_tokens=8), BatchOptions(batch_size=5), on_record=records.append)
    for record in records:
        want = expected(Path(record.video))
        if want and f", {FRAMES} frames" in want:
            assert record.status == "error" and "4 frames x 100 tokens" in record.error, record.video
        elif want:
            assert record.caption == want, record.video
    assert sum(r.status == "ok" for r in records) == 5


class OneAtATime(DescribingBackend):
    """A GPU that holds one video at a time: any batch of more runs out of memory."""

    def __init__(self) -> None:
        self.sizes = []

    def run(self, prepared: Prepared, settings: GenerationSettings) -> list[Generated]:
        import torch

        self.sizes.append(len(prepared.videos))
        if len(prepared.videos) > 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (test double)")
        return super().run(prepared, settings)


def test_out_of_memory_halves_the_batch_until_it_fits_and_says_so_once(clips):
    good = [p for p in clips if expected(p)]
    backend, notices, records = OneAtATime(), [], []
    summary = run_batch(backend, [str(p) for p in good], "Describe.", SamplingOptions(num_frames=FRAMES),
                        GenerationSettings(), BatchOptions(batch_size=8), on_record=records.append,
                        on_notice=notices.append)
    assert backend.sizes[:4] == [8, 4, 2, 1] and set(backend.sizes[4:]) == {1}  # each split lowers the size
    assert summary.batch_size == 1 and summary.retried_oom == 0
    assert notices == ["Out of GPU memory with a batch of 8 videos: split it; batches of at most 4 from now on"]
    assert sorted(r.caption for r in records) == sorted(expected(p) for p in good)
    assert all(r.caption == expected(Path(r.video)) for r in records)


class PreparingFails(DescribingBackend):
    """The processors reject a batch holding the cyan video; alone, the cyan video fails in the model too."""

    def __init__(self) -> None:
        self.prepared, self.prompts = [], set()

    def prepare(self, videos, prompt: str) -> Prepared:
        prepared = super().prepare(videos, prompt)
        self.prepared.append(len(videos))
        self.prompts.add(prompt)
        if len(videos) > 1 and any(seen.startswith("cyan") for seen in prepared.inputs):
            raise ValueError("the processor cannot read one of these")
        return prepared

    def run(self, prepared: Prepared, settings: GenerationSettings) -> list[Generated]:
        if any(seen.startswith("cyan") for seen in prepared.inputs):
            raise ValueError("the model cannot read this one")
        return super().run(prepared, settings)


@pytest.mark.parametrize("overlap", [False, True])
def test_a_batch_the_processors_reject_is_not_prepared_again_but_video_by_video(clips, overlap):
    backend, records = PreparingFails(), []
    run_batch(backend, [str(p) for p in clips], "Describe.", SamplingOptions(num_frames=FRAMES),
              GenerationSettings(), BatchOptions(batch_size=len(clips), overlap_prepare=overlap), on_record=records.append)
    assert backend.prepared == [8] + [1] * 8  # the whole batch once, then each of its good videos alone
    assert backend.prompts == {"Describe."}
    by_name = {Path(r.video).name: r for r in records}
    assert by_name["e.mp4"].error == "the model failed on this video: ValueError: the model cannot read this one"
    assert all(r.caption == expected(Path(r.video)) for r in records if r.status == "ok")
    assert sum(r.status == "ok" for r in records) == len(clips) - 2


class SlowModel(DescribingBackend):
    SECONDS = 0.3  # per generate call, whatever the batch

    def run(self, prepared: Prepared, settings: GenerationSettings) -> list[Generated]:
        time.sleep(self.SECONDS)
        return super().run(prepared, settings)


def test_each_record_takes_its_share_of_the_batchs_generation_time(clips):
    good = [str(p) for p in clips if expected(p)][:3]
    records = []
    run_batch(SlowModel(), good, "Describe.", SamplingOptions(num_frames=FRAMES), GenerationSettings(),
              BatchOptions(batch_size=3), on_record=records.append)
    share = SlowModel.SECONDS / 3
    assert all(share <= r.elapsed_seconds < SlowModel.SECONDS for r in records), [r.elapsed_seconds for r in records]


# --- grouping by visual tokens: which decoded videos make the next batch ------------------------


def decoded(*jobs: tuple[str, int]) -> deque:
    """The decode-ahead queue: (video, clips) jobs, already decoded."""
    queue = deque()
    for video, count in jobs:
        future = Future()
        future.set_result(_Job(video, clips=[object()] * count))
        queue.append(future)
    return queue


def batches(queue: deque, size: int, tokens: dict[str, int | None] | None) -> list[list[str]]:
    key = None if tokens is None else (lambda job: tokens[job.video])
    out = []
    while queue:
        out.append([job.video for job in _next_jobs(queue, size, key)])
    return out


def test_in_order_batches_stop_at_a_video_that_does_not_fit():
    # b has two segments: with a in the batch of 2 it does not fit, so the next batch starts at b
    assert batches(decoded(("a", 1), ("b", 2), ("c", 1)), 2, None) == [["a"], ["b"], ["c"]]


def test_grouping_takes_equal_token_counts_first_then_failed_videos_then_the_nearest():
    tokens = {"a": 10, "b": 40, "c": 18, "d": 1, "e": 10}
    assert batches(decoded(*((v, 1) for v in "abcde")), 2, tokens) == [["a", "e"], ["b", "c"], ["d"]]
    tokens = {"a": 10, "failed": None, "e": 10, "c": 12}
    assert batches(decoded(*((v, 1) for v in tokens)), 2, tokens) == [["a", "e"], ["failed", "c"]]
    tokens = {"a": 10, "failed": None, "c": 12}
    assert batches(decoded(*((v, 1) for v in tokens)), 2, tokens) == [["a", "failed"], ["c"]]
    tokens = {"a": 1, "failed": None, "e": 1}
    assert batches(decoded(*((v, 1) for v in tokens)), 2, tokens) == [["a", "e"], ["failed"]]


def test_grouping_skips_a_video_that_does_not_fit_and_takes_the_next():
    tokens = {"a": 10, "b": 10, "c": 10}  # b has two segments and does not fit beside a; c does
    assert batches(decoded(("a", 1), ("b", 2), ("c", 1)), 2, tokens) == [["a", "c"], ["b"]]


class TooBigEvenHalved(DescribingBackend):
    """Red runs out of memory at any frame count; yellow at 4 frames, then fails otherwise at 2."""

    def run(self, prepared: Prepared, settings: GenerationSettings) -> list[Generated]:
        import torch

        if any(seen.startswith("red") for seen in prepared.inputs) or any(
                seen.startswith("yellow") and ", 4 frames" in seen for seen in prepared.inputs):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (test double)")
        if any(seen.startswith("yellow") for seen in prepared.inputs):
            raise ValueError("the halved clip is unreadable")
        return super().run(prepared, settings)


def test_a_video_that_still_fails_with_half_its_frames_says_why(clips):
    records = []
    summary = run_batch(TooBigEvenHalved(), [str(p) for p in clips], "Describe.", SamplingOptions(num_frames=FRAMES),
                        GenerationSettings(), BatchOptions(batch_size=3), on_record=records.append)
    by_name = {Path(r.video).name: r for r in records}
    assert by_name["m.mp4"].error == "CUDA out of memory, even with 2 frames"  # red: 4 frames, then 2
    assert by_name["a.mp4"].error == "the model failed on this video: ValueError: the halved clip is unreadable"
    assert all(r.caption == expected(Path(r.video)) for r in records if r.status == "ok")
    assert (summary.captioned, summary.failed, summary.retried_oom) == (len(clips) - 3, 3, 2)


class GpuPeaks:
    """Stands in for batch.PeakMemory, the one part of a run that talks to a GPU (none here)."""

    devices: list[str] = []

    def __init__(self, device: str) -> None:
        self.devices.append(device)
        self.samples = 0

    def sample(self) -> None:
        self.samples += 1

    def peaks(self) -> tuple[int, int]:
        return 1000 * self.samples, 2000 * self.samples


def test_on_a_gpu_the_processors_overlap_and_the_peaks_are_measured_on_that_gpu(clips, monkeypatch):
    from vlmkit import batch

    monkeypatch.setattr(batch, "PeakMemory", GpuPeaks)
    monkeypatch.setattr(GpuPeaks, "devices", [])
    backend = ThreadNoting("cuda:1")
    summary = run_batch(backend, [str(p) for p in clips], "Describe.", SamplingOptions(num_frames=FRAMES),
                        GenerationSettings(), BatchOptions(batch_size=4))  # overlap not given: the device decides
    assert threading.current_thread().name not in backend.prepared_on  # prepared while the model ran
    assert GpuPeaks.devices == ["cuda:1"]
    batches = -(-len(clips) // 4)
    assert (summary.peak_allocated_bytes, summary.peak_nvml_used_bytes) == (1000 * batches, 2000 * batches)
    run_batch(ThreadNoting("cpu"), [], "Describe.", SamplingOptions(), GenerationSettings())
    assert GpuPeaks.devices == ["cuda:1", "cpu"]
