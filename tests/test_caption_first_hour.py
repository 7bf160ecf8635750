"""`caption` as a new user meets it: odd file names, subtitles beside other files, bad inputs and limits
found before any model loads, a long batch and Ctrl-C, and a summary that says what happened."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from videos import make_video
from vlmkit import load
from vlmkit.backends.base import Generated, GenerationSettings
from vlmkit.batch import BatchOptions, local_engine
from vlmkit.captioning import CaptionRun, SamplingOptions
from vlmkit.records import RunSummary
from vlmkit.registry import load_registry
from zoo_registry import zoo_registry_text

VLM = "tiny-llava-next-video"  # its random weights write visible text
ODD = os.fsdecode(b"b\xff.mp4")  # a name that is not UTF-8, as Linux allows


def vlmkit(registry: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = os.environ | {"VLMKIT_REGISTRY": str(registry), "HF_HUB_OFFLINE": "1", "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-m", "vlmkit", "caption", *args], capture_output=True, text=True,
                          env=env, timeout=300, cwd=cwd, errors="surrogateescape")


@pytest.fixture(scope="module")
def mix(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mix")
    for name in ("a.mp4", ODD, "c.mp4"):
        make_video(root / name, seconds=1, fps=10, size=(32, 32))
    return root


@pytest.fixture(scope="module")
def model(zoo_registry):
    return load(vlm=VLM, registry=load_registry(zoo_registry))


@pytest.fixture
def unloadable_registry(zoo_dir, tmp_path) -> Path:
    """The zoo, but the VLM's directory is gone: anything that tries to load it fails (exit 1)."""
    path = tmp_path / "models.toml"
    path.write_text(zoo_registry_text(zoo_dir, repos={VLM: str(tmp_path / "gone")}))
    return path


@pytest.mark.parametrize("suffix", ["jsonl", "csv"])
def test_a_name_that_is_not_utf8_is_captioned_recorded_and_resumed(zoo_registry, mix, tmp_path, suffix):
    out = tmp_path / f"mix.{suffix}"
    args = [str(mix), "--vlm", VLM, "--frames", "2", "--max-new-tokens", "4", "-o", str(out)]
    first = vlmkit(zoo_registry, *args)
    assert first.returncode == 0, first.stderr
    assert "Traceback" not in first.stderr and "Captioned 3, skipped 0, failed 0" in first.stderr
    raw = out.read_bytes()
    raw.decode("utf-8")  # the file is valid UTF-8
    assert b"b\\udcff.mp4" in raw  # the byte 0xff, as the escape JSON (and the CSV cell) reads back
    second = vlmkit(zoo_registry, *args)
    assert second.returncode == 0 and "3 of 3 videos already recorded" in second.stderr
    assert "Captioned 0, skipped 3" in second.stderr


def test_a_name_that_is_not_utf8_is_shown_readably(zoo_registry, mix):
    result = vlmkit(zoo_registry, str(mix / ODD), "--vlm", VLM, "--frames", "2", "--max-new-tokens", "4")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{mix}/b\\xff.mp4: ")
    as_json = vlmkit(zoo_registry, str(mix / ODD), "--vlm", VLM, "--frames", "2", "--max-new-tokens", "4", "--json")
    (record,) = json.loads(as_json.stdout)
    assert record["video"] == str(mix / ODD)  # `--json` is `--format json`; the escape reads back as the name


def test_subtitles_never_replace_a_file_vlmkit_did_not_write_for_that_video(zoo_registry, tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        make_video(tmp_path / folder / "clip.mp4", seconds=4, fps=10, size=(32, 32))
    work = tmp_path / "work"
    work.mkdir()
    (work / "clip.srt").write_text("1\n00:00:00,000 --> 00:00:01,000\nwritten by hand\n")
    args = ["--vlm", VLM, "--segments", "2", "--frames", "2", "--max-new-tokens", "3", "--format", "srt"]

    first = vlmkit(zoo_registry, str(tmp_path / "a" / "clip.mp4"), *args, cwd=work)
    assert first.returncode == 0, first.stderr
    assert (work / "clip.srt").read_text().endswith("written by hand\n")  # untouched
    (written_a,) = [line.removeprefix("wrote ") for line in first.stderr.splitlines() if line.startswith("wrote ")]
    assert Path(written_a).parent == work and Path(written_a).name.startswith("clip-")
    text_a = Path(written_a).read_text()
    assert text_a.startswith("1\n00:00:00,000 --> 00:00:02,000\n")

    second = vlmkit(zoo_registry, str(tmp_path / "b" / "clip.mp4"), *args, cwd=work)
    (written_b,) = [line.removeprefix("wrote ") for line in second.stderr.splitlines() if line.startswith("wrote ")]
    assert written_b != written_a and Path(written_a).read_text() == text_a  # a's file is still a's

    again = vlmkit(zoo_registry, str(tmp_path / "a" / "clip.mp4"), *args, cwd=work)
    assert f"wrote {written_a}" in again.stderr.splitlines()  # its own file, found again and replaced

    elsewhere = vlmkit(zoo_registry, str(tmp_path / "a" / "clip.mp4"), *args, "--subtitles-dir",
                       str(tmp_path / "subs"), cwd=work)
    assert f"wrote {tmp_path / 'subs' / 'clip.srt'}" in elsewhere.stderr.splitlines()


def test_missing_inputs_are_reported_before_any_model_loads(unloadable_registry, mix, tmp_path):
    started = time.perf_counter()
    none_left = vlmkit(unloadable_registry, str(tmp_path / "nope.mp4"), str(tmp_path), "--vlm", VLM)
    assert none_left.returncode == 2, none_left.stderr  # not the load error (exit 1): nothing was loaded
    assert "skipping" in none_left.stderr and "nope.mp4: no such file" in none_left.stderr
    assert "Error: No videos to caption: none of the inputs can be read" in none_left.stderr
    assert time.perf_counter() - started < 30
    some_left = vlmkit(unloadable_registry, str(tmp_path / "nope.mp4"), str(mix / "a.mp4"), "--vlm", VLM)
    warning = some_left.stderr.index("nope.mp4: no such file")
    assert some_left.returncode == 1 and warning < some_left.stderr.index("holds no saved model")  # before loading


def test_max_new_tokens_beyond_the_context_is_refused_before_loading(unloadable_registry, zoo_registry, mix):
    limit = load_registry(zoo_registry).vlm(VLM).max_context
    result = vlmkit(unloadable_registry, str(mix / "a.mp4"), "--vlm", VLM, "--max-new-tokens", "100000")
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"Error: --max-new-tokens 100,000 cannot fit {VLM}'s context of {limit:,} tokens")
    assert "Hint: Use --max-new-tokens" in result.stderr


def test_caption_names_the_default_model_and_why_before_loading(unloadable_registry, zoo_registry, mix):
    from vlmkit.planner import recommend

    expected = recommend(registry=load_registry(zoo_registry), device="cpu").vlm_choice.vlm
    result = vlmkit(zoo_registry, str(mix / "a.mp4"), "--frames", "2", "--max-new-tokens", "2", "--device", "cpu")
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"Model  {expected}: the end-to-end VLM `vlmkit recommend` picks for the CPU")
    assert "--vlm KEY" in first


@pytest.mark.parametrize("args, message", [
    (["--summary"], "--summary needs --segments"),
    (["--retry-errors"], "--retry-errors needs --output"),
    (["--min-frames", "2"], "--min-frames needs --fps"),
    (["--max-frames", "9"], "--max-frames needs --fps"),
    (["--prompt", ""], "--prompt is empty"),
    (["--prompt", "   "], "--prompt is empty"),
    (["--subtitles-dir", "subs"], "--subtitles-dir needs --format srt or vtt"),
    (["--json", "--format", "csv"], "--json and --format csv both given"),
])
def test_options_that_would_be_ignored_are_usage_errors(unloadable_registry, mix, args, message):
    result = vlmkit(unloadable_registry, str(mix / "a.mp4"), "--vlm", VLM, *args)
    assert result.returncode == 2 and result.stderr.startswith(f"Error: {message}"), result.stderr
    assert "\nHint: " in result.stderr


def test_more_frames_than_the_video_has_is_said_on_the_record_and_in_the_summary(zoo_registry, mix, tmp_path):
    out = tmp_path / "many.jsonl"
    result = vlmkit(zoo_registry, str(mix / "a.mp4"), "--vlm", VLM, "--frames", "50", "--max-new-tokens", "2",
                    "-o", str(out))
    assert result.returncode == 0, result.stderr
    (record,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(record["timestamps"]) == 10  # one second at 10 fps
    assert record["notes"] == ["asked 50 frames, the video has 10"]
    assert "1 video(s) had fewer distinct frames than asked for" in result.stderr


def test_throughput_counts_captioned_videos_only():
    assert RunSummary(captioned=0, failed=1, elapsed_seconds=0.0072).videos_per_minute == 0.0
    assert RunSummary(captioned=2, failed=5, elapsed_seconds=60.0).videos_per_minute == 2.0


def test_an_empty_caption_is_an_error_that_retry_errors_retries(model, mix, tmp_path, monkeypatch):
    """Fault injection at the model step (as for out of memory): the model answers with whitespace."""
    out, video = tmp_path / "empty.jsonl", str(mix / "a.mp4")
    monkeypatch.setattr(model.backend, "run", lambda prepared, settings: [Generated("  \n", 3)] * len(prepared.videos))
    engine = local_engine(model.backend, "Describe.", SamplingOptions(2), GenerationSettings(max_new_tokens=3))
    with CaptionRun([video], prompt="Describe.", output=out) as job:
        summary = job.caption(engine, models=model.backend.keys)
    assert summary.failed == 1 and summary.captioned == 0
    (record,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert record["status"] == "error" and record["error"] == "empty caption"
    with CaptionRun([video], prompt="Describe.", output=out) as job:
        assert job.todo == [] and job.failed_before == 1
    with CaptionRun([video], prompt="Describe.", output=out, retry_errors=True) as job:
        assert job.todo == [video]


def test_ctrl_c_during_a_long_batch_stops_at_the_next_token_and_leaves_it_for_the_resume(model, mix, tmp_path,
                                                                                         monkeypatch):
    monkeypatch.setattr("vlmkit.backends.watch.LONG_BATCH_SECONDS", 0.0)  # every batch counts as long
    out, videos = tmp_path / "cut.jsonl", [str(mix / "a.mp4"), str(mix / "c.mp4")]
    stop, seen = threading.Event(), []

    def on_tokens(count: int) -> None:  # the progress display's hook; Ctrl-C arrives at the third token
        seen.append(count)
        if count == 3:
            stop.set()

    settings = GenerationSettings(max_new_tokens=40, min_new_tokens=40)
    engine = local_engine(model.backend, "Describe.", SamplingOptions(2), settings,
                          BatchOptions(batch_size=2, on_tokens=on_tokens))
    with CaptionRun(videos, prompt="Describe.", output=out) as job:
        summary = job.caption(engine, models=model.backend.keys, stop=stop)
    assert summary.interrupted and summary.captioned == 0
    assert seen[:3] == [1, 2, 3] and max(seen) < 40  # stopped at the next token, not after 40
    assert out.read_text() == ""  # incomplete captions are not recorded
    engine = local_engine(model.backend, "Describe.", SamplingOptions(2), GenerationSettings(max_new_tokens=4))
    with CaptionRun(videos, prompt="Describe.", output=out) as job:
        assert job.todo == videos
        assert job.caption(engine, models=model.backend.keys).captioned == 2


def test_a_short_batch_finishes_after_ctrl_c(model, mix, tmp_path):
    """Below LONG_BATCH_SECONDS the batch in flight is finished and recorded, as before."""
    stop = threading.Event()
    engine = local_engine(model.backend, "Describe.", SamplingOptions(2), GenerationSettings(max_new_tokens=6),
                          BatchOptions(on_tokens=lambda count: stop.set()))
    with CaptionRun([str(mix / "a.mp4"), str(mix / "c.mp4")], prompt="Describe.") as job:
        summary = job.caption(engine, models=model.backend.keys, stop=stop)
    assert summary.captioned == 1 and summary.interrupted
