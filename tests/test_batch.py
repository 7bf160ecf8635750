"""Batch captioning: bad videos mixed in, SIGKILL and resume, Ctrl-C, batching, out of memory, segments."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from videos import make_corrupt, make_not_video, make_truncated, make_video
from vlmkit import caption, load
from vlmkit.registry import load_registry

GOOD = 14


@pytest.fixture(scope="module")
def batch_dir(tmp_path_factory) -> Path:
    """GOOD small clips with five bad files mixed in, one in a subdirectory."""
    root = tmp_path_factory.mktemp("batch")
    (root / "sub").mkdir()
    for i in range(GOOD):
        make_video(root / ("sub" if i % 5 == 0 else ".") / f"clip{i:02d}.mp4", seconds=1, fps=10, size=(32, 32))
    make_corrupt(root / "bad_corrupt.mp4")
    make_truncated(root / "bad_truncated.mp4", faststart=False)  # its index is lost: it cannot open
    make_not_video(root / "bad_text.mp4")
    (root / "bad_empty.mkv").write_bytes(b"")
    (root / "notes.txt").write_text("not a video, and not named like one: skipped")
    return root


@pytest.fixture(scope="module")
def qwen3_vl(zoo_registry):
    return load(vlm="tiny-qwen3-vl", registry=load_registry(zoo_registry))


def vlmkit(zoo_registry: Path, *args: str, **popen) -> subprocess.Popen:
    env = os.environ | {"VLMKIT_REGISTRY": str(zoo_registry), "HF_HUB_OFFLINE": "1", "NO_COLOR": "1"}
    return subprocess.Popen([sys.executable, "-m", "vlmkit", "caption", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **popen)


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def wait_for_lines(path: Path, count: int, process: subprocess.Popen, limit: float = 240) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and process.poll() is None:
        if path.exists() and path.read_text().count("\n") >= count:
            return
        time.sleep(0.01)
    raise AssertionError(f"the run wrote fewer than {count} records (exit {process.poll()})")


@pytest.mark.timeout(900)  # four caption runs, each a subprocess
def test_sigkill_midway_then_resume_records_every_video_exactly_once(zoo_registry, batch_dir, tmp_path):
    out = tmp_path / "captions.jsonl"
    args = [str(batch_dir), "--vlm", "tiny-qwen3-vl", "--frames", "2", "--max-new-tokens", "24", "-o", str(out)]
    first = vlmkit(zoo_registry, *args)
    wait_for_lines(out, 3, first)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    assert first.returncode == -signal.SIGKILL  # killed mid-run, not finished
    killed_at = len(records_or_partial := out.read_text().splitlines())
    assert 3 <= killed_at < GOOD + 4, records_or_partial
    with out.open("a") as f:  # as if the kill had landed in the middle of a write
        f.write('{"video": "/half/written", "capt')

    second = vlmkit(zoo_registry, *args)
    _, err = second.communicate(timeout=300)
    assert second.returncode == 1, err  # the bad files failed
    assert "Resuming" in err and "already recorded" in err
    got = records(out)
    videos = [r["video"] for r in got]
    assert len(videos) == len(set(videos)) == GOOD + 4, err  # every video once, the half line gone
    good = [r for r in got if r["status"] == "ok"]
    assert len(good) == GOOD and all(Path(r["video"]).name.startswith("clip") for r in good)
    bad = {Path(r["video"]).name: r["error"] for r in got if r["status"] == "error"}
    assert set(bad) == {"bad_corrupt.mp4", "bad_truncated.mp4", "bad_text.mp4", "bad_empty.mkv"}
    assert all(bad.values())

    third = vlmkit(zoo_registry, *args)  # nothing left but the failures, which are not retried
    _, err = third.communicate(timeout=300)
    assert "skipped 18" in err and len(records(out)) == GOOD + 4

    retry = vlmkit(zoo_registry, *args, "--retry-errors")
    _, err = retry.communicate(timeout=300)
    assert retry.returncode == 1 and "failed 4" in err
    assert sorted(r["video"] for r in records(out)) == sorted(videos)  # retried, not duplicated


def test_ctrl_c_finishes_the_records_in_flight_and_says_how_to_resume(zoo_registry, batch_dir, tmp_path):
    out = tmp_path / "captions.jsonl"
    # batches of 2: the CPU's auto batch (16) would hold most of the folder, and a Ctrl-C after its
    # records could come once nothing is left to stop
    run = vlmkit(zoo_registry, str(batch_dir), "--vlm", "tiny-qwen3-vl", "--frames", "2", "--max-new-tokens", "24",
                 "--batch-size", "2", "-o", str(out))
    wait_for_lines(out, 2, run)
    run.send_signal(signal.SIGINT)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 130, err
    assert "Interrupted. Resume with: vlmkit caption" in err and "Captioned" in err
    assert "Traceback" not in err
    text = out.read_text()
    assert text.endswith("\n") and all(json.loads(line) for line in text.splitlines())
    assert len(text.splitlines()) < GOOD + 4


@pytest.mark.parametrize("vlm", ["tiny-qwen3-vl", "tiny-llava-next-video"])
def test_batch_of_four_gives_the_captions_of_batch_one(zoo_registry, batch_dir, vlm):
    model = load(vlm=vlm, registry=load_registry(zoo_registry))
    clips = sorted(batch_dir.glob("clip*.mp4"))[:6]
    one = caption(clips, model=model, frames=2, max_new_tokens=8, batch_size=1)
    four = caption(clips, model=model, frames=2, max_new_tokens=8, batch_size=4)
    assert [r.caption for r in four] == [r.caption for r in one]
    assert [r.new_tokens for r in four] == [r.new_tokens for r in one]
    if vlm == "tiny-llava-next-video":  # its random weights write visible text: the comparison is not vacuous
        assert all(r.caption for r in one)


def test_uneven_frame_counts_in_one_batch(zoo_registry, batch_dir, tmp_path):
    """LLaVA's processor cannot stack videos of different lengths: vlmkit splits such a batch."""
    model = load(vlm="tiny-llava-next-video", registry=load_registry(zoo_registry))
    short = make_video(tmp_path / "short.mp4", seconds=0.2, fps=10, size=(32, 32))  # 2 frames only
    clips = [short, *sorted(batch_dir.glob("clip*.mp4"))[:2]]
    batched = caption(clips, model=model, frames=4, max_new_tokens=4, batch_size=3)
    alone = caption(clips, model=model, frames=4, max_new_tokens=4, batch_size=1)
    assert [len(r.timestamps) for r in batched] == [2, 4, 4]
    assert [r.notes for r in batched] == [["asked 4 frames, the video has 2"], [], []]  # the shortfall is said
    assert [r.caption for r in batched] == [r.caption for r in alone]


def test_out_of_memory_on_one_video_is_retried_with_fewer_frames(qwen3_vl, batch_dir, monkeypatch):
    """The fault-injection hook: the model step runs out of memory on clip03 at more than 2 frames."""
    clips = sorted(batch_dir.glob("clip*.mp4"))[:5]
    backend = qwen3_vl.backend
    real_run = backend.run
    calls = []

    def run(prepared, settings):
        calls.append([(Path(v.path).name, len(v.frames)) for v in prepared.videos])
        if any(Path(v.path).name == "clip03.mp4" and len(v.frames) > 2 for v in prepared.videos):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (fault injection)")
        return real_run(prepared, settings)

    monkeypatch.setattr(backend, "run", run)
    got = caption(clips, model=qwen3_vl, frames=4, max_new_tokens=4, batch_size=2)
    assert [r.status for r in got] == ["ok"] * 5
    retried = next(r for r in got if r.video.endswith("clip03.mp4"))
    assert retried.notes == ["CUDA out of memory with 4 frames; retried with 2"]
    assert len(retried.timestamps) == 2
    assert [("clip03.mp4", 4), ("clip04.mp4", 4)] in calls  # the batch that failed
    assert [("clip03.mp4", 4)] in calls and [("clip03.mp4", 2)] in calls  # alone, then with half the frames
    assert all(not r.notes for r in got if r is not retried)


def test_a_video_too_long_for_the_context_is_an_error_record(zoo_registry, batch_dir):
    model = load(vlm="tiny-llava-next-video", registry=load_registry(zoo_registry))
    limit = model.backend.max_context // model.backend.tokens_per_frame  # 2048 // 16 = 128 frames
    long = make_video(batch_dir.parent / "long_for_context.mp4", seconds=15, fps=10, size=(32, 32))
    (record,) = caption([long], model=model, frames=limit + 10, max_new_tokens=4)
    assert record.status == "error" and "too long for the model's context" in record.error


def test_dense_segments_with_subtitles(zoo_registry, tmp_path):
    video = make_video(tmp_path / "long.mp4", seconds=7, fps=10, size=(32, 32))
    out = tmp_path / "dense.jsonl"
    run = vlmkit(zoo_registry, str(video), "--vlm", "tiny-qwen3-vl", "--segments", "3", "--frames", "2",
                 "--max-new-tokens", "3", "--summary", "--format", "srt", "-o", str(out))
    _, err = run.communicate(timeout=300)
    assert run.returncode == 0, err
    (record,) = records(out)
    assert [(s["start"], s["end"]) for s in record["segments"]] == [(0.0, 3.0), (3.0, 6.0), (6.0, 7.0)]
    assert isinstance(record["summary"], str)
    assert all(3.0 * i <= t for i, s in enumerate(record["segments"]) for t in [s["start"]])
    srt = (tmp_path / "long.srt").read_text()
    assert srt.startswith("1\n00:00:00,000 --> 00:00:03,000\n") and "3\n00:00:06,000 --> 00:00:07,000\n" in srt


def test_manifest_csv_output_and_quiet(zoo_registry, batch_dir, tmp_path):
    clips = sorted(batch_dir.glob("clip*.mp4"))[:2]
    manifest = tmp_path / "videos.jsonl"
    manifest.write_text("".join(json.dumps({"video": str(c)}) + "\n" for c in clips))
    out = tmp_path / "captions.csv"
    run = vlmkit(zoo_registry, "--list", str(manifest), "--vlm", "tiny-qwen3-vl", "--frames", "2",
                 "--max-new-tokens", "3", "-o", str(out), "--quiet")
    _, err = run.communicate(timeout=300)
    assert run.returncode == 0, err
    lines = out.read_text().splitlines()
    assert lines[0].startswith("video,status,caption") and len(lines) == 3
    assert "videos/s" not in err and "Captioned 2, skipped 0, failed 0" in err


def test_bad_output_choices_are_usage_errors(zoo_registry, batch_dir, tmp_path):
    for args, message in [(["-o", str(tmp_path / "x.txt")], "use a .jsonl or .csv file"),
                          (["--format", "srt"], "--format srt needs --segments"),
                          (["--list", str(tmp_path / "none.txt")], "Manifest not found")]:
        run = vlmkit(zoo_registry, str(batch_dir), "--vlm", "tiny-qwen3-vl", *args)
        _, err = run.communicate(timeout=120)
        assert run.returncode == 2 and err.startswith("Error: ") and message in err, err


def test_an_output_that_is_not_a_journal_is_left_alone(zoo_registry, batch_dir, tmp_path):
    out = tmp_path / "precious.jsonl"
    out.write_text("my own notes\n")
    run = vlmkit(zoo_registry, str(batch_dir), "--vlm", "tiny-qwen3-vl", "-o", str(out))
    _, err = run.communicate(timeout=120)
    assert run.returncode == 2 and "is not a vlmkit record" in err
    assert out.read_text() == "my own notes\n"
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_static_cache_gives_the_same_captions(qwen3_vl, batch_dir):
    from vlmkit.backends.base import GenerationSettings
    from vlmkit.frames import sample_frames

    clips = [sample_frames(p, num_frames=2) for p in sorted(batch_dir.glob("clip*.mp4"))[:3]]
    dynamic = qwen3_vl.backend.generate(clips, "Describe.", GenerationSettings(max_new_tokens=6))
    static = qwen3_vl.backend.generate(clips, "Describe.", GenerationSettings(max_new_tokens=6, static_cache=True))
    assert static == dynamic


@pytest.mark.parametrize("args, message", [
    (["--start", "5", "--end", "1"], "need 0 <= start < end"),
    (["--fps", "2", "--frames", "4"], "Both --frames and --fps given"),
    (["--fps", "2", "--min-frames", "5", "--max-frames", "2"], "min_frames <= max_frames"),
    (["--encoder", "tiny-siglip", "--llm", "tiny-qwen3", "--projector", "/nonexistent.safetensors"],
     "Projector file not found"),
])
def test_impossible_options_fail_before_any_model_loads(zoo_registry, batch_dir, tmp_path, args, message):
    out = tmp_path / "out.jsonl"
    started = time.perf_counter()
    run = vlmkit(zoo_registry, str(batch_dir), "--vlm", "tiny-qwen3-vl", *args, "-o", str(out)) \
        if "--encoder" not in args else vlmkit(zoo_registry, str(batch_dir), *args, "-o", str(out))
    _, err = run.communicate(timeout=120)
    assert run.returncode == 2 and err.startswith("Error: ") and message in err and "Hint: " in err, err
    assert not out.exists()  # refused before the journal was touched
    assert time.perf_counter() - started < 30


def test_resuming_with_another_model_is_refused(zoo_registry, batch_dir, tmp_path):
    out = tmp_path / "out.jsonl"
    clip = str(sorted(batch_dir.glob("clip*.mp4"))[0])
    first = vlmkit(zoo_registry, clip, "--vlm", "tiny-qwen3-vl", "--frames", "2", "--max-new-tokens", "2",
                   "-o", str(out))
    first.communicate(timeout=300)
    other = vlmkit(zoo_registry, clip, "--vlm", "tiny-llava-next-video", "--frames", "2", "-o", str(out))
    _, err = other.communicate(timeout=300)
    assert other.returncode == 2 and "holds captions made with" in err
    assert len(records(out)) == 1


def test_the_python_api_with_output_resumes_like_the_cli(qwen3_vl, batch_dir, tmp_path):
    from vlmkit.backends.base import GenerationSettings
    from vlmkit.captioning import SamplingOptions, run
    from vlmkit.errors import UsageError

    videos = [batch_dir / "clip01.mp4", batch_dir / "clip02.mp4", batch_dir / "bad_corrupt.mp4"]
    out = tmp_path / "captions.jsonl"
    first = caption(videos, model=qwen3_vl, frames=2, max_new_tokens=4, output=out, workers=1)
    assert [r.status for r in first] == ["ok", "ok", "error"]
    assert [r["video"] for r in records(out)] == [str(v) for v in videos]

    assert caption(videos, model=qwen3_vl, frames=2, max_new_tokens=4, output=out) == []  # all recorded
    summary = run(videos, lambda: pytest.fail("nothing to caption, yet the model was loaded"), output=out,
                  sampling=SamplingOptions(num_frames=2), settings=GenerationSettings(max_new_tokens=4))
    assert (summary.captioned, summary.failed, summary.skipped, summary.failed_before) == (0, 0, 3, 1)
    assert len(records(out)) == 3
    videos.append(batch_dir / "clip03.mp4")  # one more: only it is captioned
    summary = run(videos, qwen3_vl, output=out, sampling=SamplingOptions(num_frames=2),
                  settings=GenerationSettings(max_new_tokens=4))
    assert (summary.captioned, summary.failed, summary.skipped, summary.failed_before) == (1, 0, 3, 1)
    assert records(out)[-1]["video"] == str(videos[-1]) and len(records(out)) == 4

    retried = caption(videos, model=qwen3_vl, frames=2, max_new_tokens=4, output=out, retry_errors=True)
    assert [(Path(r.video).name, r.status) for r in retried] == [("bad_corrupt.mp4", "error")]
    assert sorted(r["video"] for r in records(out)) == sorted(str(v) for v in videos)  # retried, not duplicated

    with pytest.raises(UsageError, match="prompt"):  # another prompt: refused before any model loads
        run(videos + [batch_dir / "clip04.mp4"], lambda: pytest.fail("loaded"), output=out, prompt="Count the cats.",
            models=qwen3_vl.backend.keys)
    assert len(records(out)) == 4
