"""sample_frames / probe_video on real PyAV-encoded clips (see videos.py for the counter pattern).

The shared clips (video_dir, counter_video, long_video, red_video, blue_video) come from videos.py
through tests/conftest.py.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import vlmkit.decoding
from videos import (
    CODEC_CONTAINERS,
    has_marker_at,
    make_audio_only,
    make_corrupt,
    make_not_video,
    make_truncated,
    make_video,
    read_index,
    vfr_times,
)
from vlmkit.errors import UsageError, VideoError
from vlmkit.frames import probe_video, sample_frames, target_times

FPS = 30


def indices(result) -> list[int]:
    return [read_index(frame) for frame in result.frames]


def empty_file(path):
    path.write_bytes(b"")
    return path


def assert_shown(result, targets: list[float], frame_times: list[float]) -> None:
    """The timestamps are those of the frames a player shows at the targets: the last frame at or before each."""
    expected = [max((t for t in frame_times if t <= target + 1e-6), default=frame_times[0]) for target in targets]
    assert result.timestamps == pytest.approx(expected, abs=1e-5)


# --- which frames, at which times ---------------------------------------------------------------


def test_uniform_sampling_returns_the_frames_shown_at_segment_centres(counter_video):
    result = sample_frames(counter_video, num_frames=8)

    assert result.frames.shape == (8, 48, 64, 3) and result.frames.dtype == np.uint8
    assert (result.width, result.height) == (64, 48)
    assert result.duration == pytest.approx(2.0)
    assert indices(result) == [round(t * FPS) for t in result.timestamps]  # pixels match times
    assert_shown(result, target_times(2.0, num_frames=8), [i / FPS for i in range(60)])


def test_fps_mode_counts_frames_from_duration_and_clamps(counter_video):
    assert len(sample_frames(counter_video, num_frames=None, fps=2).timestamps) == 4  # 2 s × 2 fps
    assert len(sample_frames(counter_video, fps=10, max_frames=5).timestamps) == 5
    assert len(sample_frames(counter_video, fps=0.1, min_frames=3).timestamps) == 3
    spaced = sample_frames(counter_video, fps=4).timestamps
    assert np.diff(spaced) == pytest.approx(0.25, abs=1 / FPS)


def test_start_end_window(counter_video):
    result = sample_frames(counter_video, num_frames=4, start=0.5, end=1.0)

    assert all(0.5 <= t <= 1.0 for t in result.timestamps)
    assert indices(result) == [round(t * FPS) for t in result.timestamps]
    assert_shown(result, target_times(2.0, num_frames=4, start=0.5, end=1.0), [i / FPS for i in range(60)])


def test_timestamps_are_presentation_times_of_a_variable_frame_rate_clip(tmp_path):
    for name in ("vfr.mkv", "vfr.mp4"):
        path = make_video(tmp_path / name, vfr=True, seconds=2, fps=30)
        times = vfr_times(60)

        result = sample_frames(path, num_frames=10)

        for index, timestamp in zip(indices(result), result.timestamps, strict=True):
            assert timestamp == pytest.approx(times[index], abs=1e-3)  # not index / average fps
        assert_shown(result, target_times(result.duration, num_frames=10), times)


def test_fewer_frames_than_asked_gives_each_frame_once(tmp_path):
    path = make_video(tmp_path / "three.mp4", seconds=3 / FPS)

    result = sample_frames(path, num_frames=8)

    assert indices(result) == [0, 1, 2]
    assert result.timestamps == pytest.approx([0, 1 / FPS, 2 / FPS], abs=1e-5)
    assert (result.asked, result.note) == (8, "asked 8 frames, the video has 3")


# --- seeking ---------------------------------------------------------------------------------------


def test_seeking_decodes_a_fraction_of_a_long_clip(long_video):
    result = sample_frames(long_video, num_frames=8)  # 600 frames, a keyframe every 30

    assert indices(result) == [round(t * FPS) for t in result.timestamps]
    assert result.decoded_frames <= 8 * 30  # at most one GOP per target
    assert result.decoded_frames < 600 // 2


def test_targets_within_one_gop_are_decoded_in_one_pass(long_video):
    # 8 targets between keyframes 300 and 330: seeking back for each would decode ~8 × 15 frames
    result = sample_frames(long_video, num_frames=8, start=10.0, end=10.95)

    assert len(result.timestamps) == 8
    assert indices(result) == [round(t * FPS) for t in result.timestamps]
    assert result.decoded_frames <= 30


# --- codecs, containers, geometry, colour -----------------------------------------------------------


@pytest.mark.parametrize(
    ("codec", "ext"), [(codec, ext) for codec, exts in CODEC_CONTAINERS.items() for ext in exts]
)
def test_every_codec_and_container(tmp_path, codec, ext):
    path = make_video(tmp_path / f"clip{ext}", codec=codec, seconds=1, gop=10)  # skips without encoder

    result = sample_frames(path, num_frames=5)

    assert len(result.timestamps) == 5
    assert indices(result) == [round(t * FPS) for t in result.timestamps]
    assert_shown(result, target_times(result.duration, num_frames=5), [i / FPS for i in range(30)])
    info = probe_video(path)
    assert (info.width, info.height, info.fps) == (64, 48, pytest.approx(30))


@pytest.mark.parametrize("ext", [".ts", ".h264"])
def test_streams_without_index_or_timestamps(tmp_path, ext):
    # MPEG-TS: no keyframe index, so seeks are searches; raw H.264: no timestamps, no seeking at all
    path = make_video(tmp_path / f"broadcast{ext}", seconds=4, gop=15)

    result = sample_frames(path, num_frames=8)

    assert indices(result) == [round(t * FPS) for t in result.timestamps]
    assert_shown(result, target_times(4.0, num_frames=8), [i / FPS for i in range(120)])
    assert probe_video(path).duration == pytest.approx(4.0)  # from the packets when the header has none


@pytest.mark.parametrize(
    ("rotation", "marker"), [(90, "bottom-left"), (-90, "top-right"), (180, "bottom-right"), (0, "top-left")]
)
def test_display_matrix_rotation_is_applied_to_pixels(tmp_path, rotation, marker):
    path = make_video(tmp_path / "phone.mp4", rotation=rotation)  # stored 64×48

    result = sample_frames(path, num_frames=3)

    quarter = rotation % 180 != 0
    assert (result.width, result.height) == ((48, 64) if quarter else (64, 48))
    assert result.frames.shape[1:3] == (result.height, result.width)
    assert all(has_marker_at(frame, marker) for frame in result.frames)
    stored = [np.rot90(frame, -rotation // 90) for frame in result.frames]  # undo: back to as-encoded
    assert [read_index(f) for f in stored] == [round(t * FPS) for t in result.timestamps]
    info = probe_video(path)
    assert (info.rotation, info.width, info.height) == (rotation, result.width, result.height)


@pytest.mark.parametrize("name", ["odd.mp4", "odd.webm"])
def test_odd_frame_size(video_dir, name):
    result = sample_frames(video_dir / name, num_frames=4)

    assert result.frames.shape == (4, 61, 97, 3)
    assert indices(result) == [round(t * FPS) for t in result.timestamps]


@pytest.mark.parametrize(("fixture", "rgb"), [("red_video", (255, 0, 0)), ("blue_video", (0, 0, 255))])
def test_solid_colours_decode_accurately(request, fixture, rgb):
    frames = sample_frames(request.getfixturevalue(fixture), num_frames=4).frames.astype(int)

    assert np.abs(frames - np.array(rgb)).max() <= 3


def test_probe_reads_headers(counter_video):
    info = probe_video(counter_video)

    assert info.duration == pytest.approx(2.0)
    assert info.fps == pytest.approx(30)
    assert (info.width, info.height, info.codec, info.frame_count, info.rotation) == (64, 48, "h264", 60, 0)


# --- damaged and wrong inputs ---------------------------------------------------------------------


def test_truncated_file_returns_what_decodes(tmp_path):
    path = make_truncated(tmp_path / "cut.mp4")  # index intact, second half of the data gone

    result = sample_frames(path, num_frames=8)

    assert 1 <= len(result.timestamps) < 8  # late targets fall back to the last decodable frame
    assert indices(result) == [round(t * FPS) for t in result.timestamps]
    assert np.all(np.diff(result.timestamps) > 0)


def test_garbled_middle_still_samples(tmp_path):
    path = make_corrupt(tmp_path / "scratched.mp4", region=(0.4, 0.6))

    result = sample_frames(path, num_frames=8)

    assert len(result.timestamps) >= 4
    assert np.all(np.diff(result.timestamps) > 0)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.mp4", "no such file"),
        (lambda d: d, "is a directory"),
        (lambda d: make_not_video(d / "notes.mp4"), "not a video FFmpeg can read"),
        (lambda d: make_audio_only(d / "podcast.mp4"), "no video stream"),
        (lambda d: make_truncated(d / "index_lost.mp4", faststart=False), "not a video FFmpeg can read"),
        (lambda d: make_corrupt(d / "garbage.mp4"), "no decodable frames"),
        (lambda d: empty_file(d / "empty.mp4"), "not a video FFmpeg can read"),
    ],
    ids=["missing", "directory", "not-video", "audio-only", "index-lost", "garbage-body", "empty"],
)
def test_bad_inputs_raise_video_error_with_hint(tmp_path, make, message):
    path = make(tmp_path)

    with pytest.raises(VideoError, match=message) as caught:
        sample_frames(path)
    assert caught.value.hint
    with pytest.raises(VideoError, match=message):  # every frame asked for (--fps at the video's rate)
        sample_frames(path, fps=30)
    assert not type(caught.value).__module__.startswith("av")
    if message not in ("no decodable frames",):  # probing reads headers only
        with pytest.raises(VideoError, match=message):
            probe_video(path)


def test_timeout_abandons_a_slow_decode_in_bounded_time(long_video, monkeypatch):
    time_of = vlmkit.decoding.Reader._time_of

    def crawl(reader, frame):  # every decoded frame now takes 20 ms
        time.sleep(0.02)
        return time_of(reader, frame)

    monkeypatch.setattr(vlmkit.decoding.Reader, "_time_of", crawl)
    started = time.monotonic()

    with pytest.raises(VideoError, match="took longer than 0.3 s"):
        sample_frames(long_video, num_frames=8, timeout=0.3)

    assert time.monotonic() - started < 1.0
    deadline = time.monotonic() + 2.0  # the worker notices the deadline at its next packet
    while any(t.name.startswith("vlmkit-decode") for t in threading.enumerate()):
        assert time.monotonic() < deadline, "decode worker kept running after the timeout"
        time.sleep(0.01)


def test_tiny_timeout_on_a_long_clip(long_video):
    started = time.monotonic()
    with pytest.raises(VideoError, match="took longer"):
        sample_frames(long_video, fps=30, timeout=0.001)
    assert time.monotonic() - started < 0.5


@pytest.mark.parametrize(
    "options",
    [{"num_frames": 0}, {"num_frames": None}, {"fps": -1}, {"fps": 1, "min_frames": 3, "max_frames": 2},
     {"start": 1.5, "end": 1.0}, {"start": 5.0}, {"timeout": 0}],
)
def test_bad_options_are_usage_errors(counter_video, options):
    with pytest.raises(UsageError):
        sample_frames(counter_video, **options)


def test_importing_the_module_loads_neither_av_nor_numpy():
    code = "import sys, vlmkit.frames; print(sorted({'av', 'numpy'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_target_times_defaults_are_eight_frames_and_at_least_one():
    from vlmkit.frames import target_times

    assert target_times(10.0) == [0.625 + 1.25 * i for i in range(8)]  # centres of 8 equal segments
    assert target_times(10.0, num_frames=None, fps=0.05) == [5.0]  # half a frame at 0.05 fps: still one


@pytest.mark.parametrize("options, ok", [
    ({"num_frames": 1}, True), ({"num_frames": 0}, False),
    ({"num_frames": None, "fps": 0.01}, True), ({"num_frames": None, "fps": 0}, False),
    ({"min_frames": 3, "max_frames": 3}, True), ({"min_frames": 3, "max_frames": 2}, False),
    ({"start": 0}, True), ({"start": -0.1}, False),
    ({"start": 2, "end": 2.1}, True), ({"start": 2, "end": 2}, False),
    ({"end": 0.5}, True), ({"end": 0}, False),
])
def test_sampling_option_boundaries(options, ok):
    from vlmkit.frames import check_sampling_options

    given = {"num_frames": 8, "fps": None, "min_frames": 1, "max_frames": None, "start": None, "end": None,
             "timeout": None} | options
    if ok:
        check_sampling_options(**given)
        return
    with pytest.raises(UsageError) as caught:
        check_sampling_options(**given)
    assert caught.value.hint == "See `vlmkit caption --help` for the sampling options."
    assert isinstance(caught.value.message, str) and caught.value.message


def test_a_start_at_the_very_end_of_the_video_is_refused():
    with pytest.raises(UsageError, match=r"start=2 s is at or past the end of the video \(2.00 s long\)"):
        target_times(2.0, start=2.0)
    assert target_times(2.0, num_frames=1, start=1.5) == [1.75]
