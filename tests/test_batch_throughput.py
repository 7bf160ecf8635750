"""Throughput by default: out-of-memory batches split and lower the batch size; equal token counts batch together."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from videos import make_video
from vlmkit import load
from vlmkit.backends.base import GenerationSettings
from vlmkit.batch import BatchOptions, run_batch
from vlmkit.captioning import SamplingOptions
from vlmkit.registry import load_registry

SETTINGS = GenerationSettings(max_new_tokens=4)
PROMPT = "Describe the video."


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[Path]:
    """Alternating 2-frame and 4-frame videos at two sizes: visual token counts differ between neighbours."""
    root = tmp_path_factory.mktemp("throughput")
    made = []
    for i in range(8):
        short, wide = i % 2 == 1, i % 4 >= 2
        made.append(make_video(root / f"v{i}.mp4", seconds=0.2 if short else 1, fps=10,
                               size=(64, 32) if wide else (32, 32)))
    return made


@pytest.fixture(scope="module")
def llava(zoo_registry):
    return load(vlm="tiny-llava-next-video", registry=load_registry(zoo_registry)).backend


@pytest.fixture(scope="module")
def qwen(zoo_registry):
    return load(vlm="tiny-qwen3-vl", registry=load_registry(zoo_registry)).backend


def spy(backend, monkeypatch, fail_above: int | None = None) -> list[list[tuple[str, int]]]:
    """Record each model call's videos; with fail_above, a batch of more videos runs out of memory."""
    calls, real_run = [], backend.run

    def run(prepared, settings):
        calls.append([(Path(v.path).name, len(v.frames)) for v in prepared.videos])
        if fail_above is not None and len(prepared.videos) > fail_above:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB (fault injection)")
        return real_run(prepared, settings)

    monkeypatch.setattr(backend, "run", run)
    return calls


def oom_notes(record) -> list[str]:
    """(Short videos also carry a note that they had fewer frames than asked.)"""
    return [note for note in record.notes if "out of memory" in note]


def caption(backend, clips, **options):
    records, notices = [], []
    summary = run_batch(backend, [str(c) for c in clips], PROMPT, SamplingOptions(num_frames=4), SETTINGS,
                        BatchOptions(**options), on_record=records.append, on_notice=notices.append)
    return records, summary, notices


def comparable(records) -> dict[str, dict]:
    return {r.video: dataclasses.asdict(r) | {"elapsed_seconds": None} for r in records}


def test_out_of_memory_splits_the_batch_and_lowers_the_size_once(llava, clips, monkeypatch):
    alone = comparable(caption(llava, clips, batch_size=1)[0])
    calls = spy(llava, monkeypatch, fail_above=2)
    records, summary, notices = caption(llava, clips, batch_size=4, group_by_tokens=False)
    assert comparable(records) == alone  # every video captioned, as alone, and no fewer frames anywhere
    assert not any(oom_notes(r) for r in records) and summary.retried_oom == 0
    assert len(calls[0]) == 4 and all(len(c) <= 2 for c in calls[1:])  # split, then 2 for the rest of the run
    assert summary.batch_size == 2
    assert notices == ["Out of GPU memory with a batch of 4 videos: split it; batches of at most 2 from now on"]


def test_a_single_video_out_of_memory_still_falls_back_to_fewer_frames(llava, clips, monkeypatch):
    calls, real_run = [], llava.run

    def run(prepared, settings):
        calls.append(len(prepared.videos))
        if any(len(v.frames) > 2 for v in prepared.videos):
            raise torch.OutOfMemoryError("CUDA out of memory (fault injection)")
        return real_run(prepared, settings)

    monkeypatch.setattr(llava, "run", run)
    records, summary, notices = caption(llava, clips[:2], batch_size=2, group_by_tokens=False)
    assert calls[:3] == [2, 1, 1]  # the batch split first; only then the 4-frame video alone, then halved
    assert summary.batch_size == 1 and len(notices) == 1
    assert [oom_notes(r) for r in records] == [["CUDA out of memory with 4 frames; retried with 2"], []]


@pytest.mark.parametrize("model", ["llava", "qwen"])
def test_grouping_by_tokens_keeps_every_record(request, model, clips, monkeypatch):
    backend = request.getfixturevalue(model)
    plain_calls = spy(backend, monkeypatch)
    plain, _, _ = caption(backend, clips, batch_size=2, group_by_tokens=False)
    monkeypatch.undo()
    grouped_calls = spy(backend, monkeypatch)
    grouped, _, _ = caption(backend, clips, batch_size=2)
    assert comparable(grouped) == comparable(plain)
    assert [r.video for r in grouped] != [r.video for r in plain]  # the order did change

    def tokens(call):
        return {backend.visual_tokens(next(_sampled(backend, clips, name))) for name, _ in call}
    assert all(len(tokens(call)) == 1 for call in grouped_calls)  # no padding in any batch
    assert any(len(tokens(call)) > 1 for call in plain_calls)  # while the plain order mixed them
    if model == "llava":  # its random weights write visible text: captions are attached to their videos
        alone = comparable(caption(backend, clips, batch_size=1)[0])
        assert comparable(grouped) == alone and all(r.caption for r in grouped)


def _sampled(backend, clips, name):
    from vlmkit.frames import sample_frames

    yield sample_frames(next(str(c) for c in clips if c.name == name), num_frames=4)


def test_qwen_tokens_follow_the_processors_rule(qwen, clips):
    from vlmkit.frames import sample_frames

    for clip in clips[:4]:
        frames = sample_frames(str(clip), num_frames=4)
        inputs = qwen._inputs([frames], PROMPT)
        t, h, w = inputs["video_grid_thw"][0].tolist()
        assert qwen.visual_tokens(frames) == t * h * w // 4
