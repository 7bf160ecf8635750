"""`sample_frames` against a full decode: every answer checked frame by frame.

For each generated file the reference is every frame PyAV decodes, sorted by presentation time.
For many requests per file this checks:
  1. every returned frame is pixel-identical to the reference frame with the same time;
  2. every returned frame is the one a player shows at its target (the last frame whose time is
     <= the target), or, where that frame went to the previous target, the next frame if it
     starts inside the target's own segment; timestamps strictly increase;
  3. N frames from a window holding >= N frames are N frames; `fps` at or above the video's
     rate returns every frame shown during the window once; fewer frames than asked carry a note;
  4. `probe_video` agrees with the reference on the displayed size and, within a frame, the duration.
The reference rule in `expected_times` is written out plainly here, apart from vlmkit's code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from videos import make_video, vfr_times
from vlmkit.frames import probe_video, sample_frames

EPS = 1e-6
SMALL = (32, 32)
B_FRAMES = {"preset": "superfast", "x264-params": "bframes=3:b-pyramid=normal:keyint=15:min-keyint=15:scenecut=0"}


@dataclass
class Reference:
    times: list[float]  # presentation times (s) from the stream's start, increasing
    pictures: list[np.ndarray]  # [H, W, 3] RGB, upright
    rate: float | None  # the stream's average frame rate


def decode_all(path: Path) -> Reference:
    """Every frame, in presentation order, turned upright by its display rotation."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        origin = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        frames = sorted(
            ((frame.time - origin, np.rot90(frame.to_ndarray(format="rgb24"), round(frame.rotation) // 90))
             for frame in container.decode(stream)), key=lambda pair: pair[0])
        rate = stream.average_rate or stream.guessed_rate
        rate = float(rate) if rate else None
    return Reference([t for t, _ in frames], [p for _, p in frames], rate)


def shown_at(times: list[float], when: float) -> float:
    """The time of the frame a player shows at `when` (the first frame, before it starts)."""
    before = [t for t in times if t <= when + EPS]
    return before[-1] if before else times[0]


def expected_times(times: list[float], begin: float, end: float, count: int) -> list[float]:
    """The rule: per segment centre the shown frame; if taken, the next frame when it starts in the segment."""
    width = (end - begin) / count
    out: list[float] = []
    for i in range(count):
        shown = shown_at(times, begin + (i + 0.5) * width)
        if not out or shown > out[-1] + EPS:
            out.append(shown)
            continue
        later = [t for t in times if t > out[-1] + EPS]
        if later and later[0] < begin + (i + 1) * width - EPS:
            out.append(later[0])
    return out


def every_frame(times: list[float], begin: float, end: float) -> list[float]:
    """The frames shown during [begin, end): the one on screen at `begin`, then each that starts before `end`."""
    first = shown_at(times, begin)
    return [first] + [t for t in times if first + EPS < t < end - EPS]


def check(path: Path, ref: Reference, *, num_frames: int | None = None, fps: float | None = None,
          start: float | None = None, end: float | None = None, max_frames: int | None = None,
          constant_rate: bool = True) -> None:
    """Sample `path` once and hold the result to properties 1-3."""
    result = sample_frames(path, num_frames=num_frames, fps=fps, start=start, end=end, max_frames=max_frames)
    begin, stop = start or 0.0, min(end, result.duration) if end is not None else result.duration
    asked = num_frames if fps is None else max(1, math.floor((stop - begin) * fps + EPS))
    asked = min(asked, max_frames) if max_frames is not None else asked
    request = f"{path.name} num_frames={num_frames} fps={fps} start={start} end={end} max_frames={max_frames}"

    # 1. pixel-identical to the reference frame with the same presentation time
    for when, picture in zip(result.timestamps, result.frames, strict=True):
        matches = [i for i, t in enumerate(ref.times) if abs(t - when) < 1e-4]
        assert matches, f"{request}: returned a frame at {when} s that the full decode does not have"
        assert np.array_equal(picture, ref.pictures[matches[0]]), f"{request}: the frame at {when} s differs"
    # 2. the frame shown at each target (or the permitted next one), strictly increasing
    assert all(b > a for a, b in zip(result.timestamps, result.timestamps[1:])), request
    to_the_end = math.inf if end is None or end >= result.duration else stop
    every = fps is not None and ref.rate and fps >= ref.rate * 0.999 and (
        max_frames is None or len(every_frame(ref.times, begin, to_the_end)) <= max_frames)
    want = every_frame(ref.times, begin, to_the_end) if every else expected_times(ref.times, begin, stop, asked)
    assert result.timestamps == pytest.approx(want, abs=1e-4), request
    # 3. counts, and the note when short
    in_window = sum(1 for t in ref.times if begin - EPS <= t < stop - EPS)
    if constant_rate and not every and in_window >= asked:
        assert len(result.timestamps) == asked, request
    if len(result.timestamps) < asked:
        assert result.note and result.note.startswith(f"asked {asked} frames,"), request
        assert result.note.endswith(f" has {len(result.timestamps)}"), request
    else:
        assert result.note is None, request


def check_probe(path: Path, ref: Reference) -> None:
    """4. size after rotation as decoded; duration within one frame of the last frame's end."""
    info = probe_video(path)
    height, width = ref.pictures[0].shape[:2]
    assert (info.width, info.height) == (width, height), path.name
    if len(ref.times) > 1:
        step = max(b - a for a, b in zip(ref.times, ref.times[1:]))
        assert abs(info.duration - ref.times[-1]) <= step + EPS, path.name


# --- the files ------------------------------------------------------------------------------------

NTSC = Fraction(30000, 1001)


def _vfr_long_hold(count: int = 40) -> list[float]:
    """Irregular times with one frame held 1.2 s: longer than the decoder's skip margin."""
    times = vfr_times(count // 2)
    return times + [times[-1] + 1.2 + t for t in vfr_times(count - count // 2)]


FILES = {  # name: (make_video arguments, constant frame rate)
    "bframes.mp4": ({"seconds": 2, "encoder_options": B_FRAMES}, True),
    "open-gop.mp4": ({"seconds": 2, "encoder_options": {
        "preset": "superfast", "x264-params": "open-gop=1:bframes=3:keyint=15:min-keyint=15:scenecut=0"}}, True),
    "open-gop.mkv": ({"seconds": 2, "encoder_options": {
        "preset": "superfast", "x264-params": "open-gop=1:bframes=3:keyint=15:min-keyint=15:scenecut=0"}}, True),
    "long-gop.mp4": ({"seconds": 10, "gop": 300, "encoder_options": {"preset": "superfast"}}, True),
    "all-intra.mp4": ({"seconds": 1, "gop": 1}, True),
    "ntsc.mp4": ({"seconds": 2, "fps": NTSC, "encoder_options": B_FRAMES}, True),
    "pal.mkv": ({"seconds": 2, "fps": 25, "gop": 12}, True),
    "vfr.mp4": ({"vfr": True, "seconds": 2, "encoder_options": B_FRAMES}, False),
    "vfr-held.mkv": ({"times": _vfr_long_hold(), "encoder_options": B_FRAMES}, False),
    "offset.ts": ({"times": [10 + i / 30 for i in range(45)], "time_base": Fraction(1, 90000), "gop": 15}, True),
    "edit-list.mp4": ({"times": [(i - 3) / 30 for i in range(40)], "time_base": Fraction(1, 30),
                       "encoder_options": B_FRAMES}, True),
    "no-cues.mkv": ({"seconds": 2, "gop": 15, "cues": False, "encoder_options": B_FRAMES}, True),
    "vp9.webm": ({"codec": "libvpx-vp9", "seconds": 1, "gop": 10}, True),
    "mpeg4.avi": ({"codec": "mpeg4", "seconds": 1, "gop": 10}, True),
    "hevc.mp4": ({"codec": "libx265", "seconds": 1, "gop": 10, "size": (64, 48)}, True),
    "rot90.mp4": ({"rotation": 90, "size": (32, 16)}, True),
    "rot180.mp4": ({"rotation": 180, "size": (32, 16)}, True),
    "rot270.mp4": ({"rotation": -90, "size": (32, 16)}, True),
    "rot90.mkv": ({"rotation": 90, "size": (32, 16)}, True),
    "rot270.mkv": ({"rotation": -90, "size": (32, 16)}, True),
    **{f"{n}-frames.mp4": ({"seconds": n / 32, "fps": 32}, True) for n in (1, 2, 3, 4)},
}


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("conformance")
    made: dict[str, tuple[Path, Reference]] = {}

    def get(name: str) -> tuple[Path, Reference]:
        if name not in made:
            arguments, _ = FILES[name]
            path = make_video(root / name, **{"size": SMALL, **arguments})  # skips without the encoder
            made[name] = path, decode_all(path)
        return made[name]

    return get


@pytest.mark.parametrize("name", list(FILES))
def test_conforms_to_a_full_decode(clips, name):
    path, ref = clips(name)
    constant = FILES[name][1]
    duration = probe_video(path).duration  # the end of every window (checked against the frames below)
    rate = ref.rate or 30
    for n in (1, 2, 3, 4, 7, 8, 16, len(ref.times), len(ref.times) + 3):
        check(path, ref, num_frames=n, constant_rate=constant)
    for k in sorted({0, len(ref.times) // 2, len(ref.times) - 1}):  # a window of one frame
        after = ref.times[k + 1] if k + 1 < len(ref.times) else duration
        if ref.times[k] < after <= duration:
            check(path, ref, num_frames=1, start=ref.times[k], end=after, constant_rate=constant)
            check(path, ref, num_frames=3, start=ref.times[k], end=after, constant_rate=constant)
    middle = ref.times[len(ref.times) // 2]
    check(path, ref, num_frames=5, start=middle, end=duration + 5, constant_rate=constant)  # past the end
    for fps in (rate / 3, rate, 2 * rate):
        check(path, ref, fps=fps, constant_rate=constant)
        if middle > 0:
            check(path, ref, fps=fps, start=middle / 3, end=middle, constant_rate=constant)
    check(path, ref, fps=rate, max_frames=3, constant_rate=constant)
    check_probe(path, ref)


# --- the two symptoms that started this -------------------------------------------------------------


def test_four_frames_from_a_four_frame_clip_are_all_four(clips):
    path, _ = clips("4-frames.mp4")  # frames at 0, 1/32, 2/32, 3/32 s

    result = sample_frames(path, num_frames=4)

    assert result.timestamps == pytest.approx([0, 1 / 32, 2 / 32, 3 / 32], abs=1e-5)
    assert result.note is None


def test_fps_at_the_native_rate_returns_every_frame_of_the_window(tmp_path):
    path = make_video(tmp_path / "thirty.mp4", seconds=1, fps=30, size=SMALL)

    result = sample_frames(path, num_frames=None, fps=30, start=0, end=0.2)

    assert result.timestamps == pytest.approx([i / 30 for i in range(6)], abs=1e-5)


# --- random clips -----------------------------------------------------------------------------------


@st.composite
def clip_and_request(draw):
    if draw(st.booleans()):
        fps = draw(st.sampled_from([Fraction(24), Fraction(25), NTSC, Fraction(30), Fraction(32), Fraction(60)]))
        count = draw(st.integers(1, 40))
        times, constant, time_base = [float(i / fps) for i in range(count)], True, 1 / fps
    else:
        steps = draw(st.lists(st.integers(5, 700), min_size=0, max_size=39))  # ms between frames
        times, constant, time_base = [sum(steps[:i]) / 1000 for i in range(len(steps) + 1)], False, None
        fps = 30
    video = {"times": times, "fps": fps, "time_base": time_base, "gop": draw(st.sampled_from([1, 5, 15, 250])),
             "encoder_options": draw(st.sampled_from([{}, B_FRAMES]))}
    ext = draw(st.sampled_from([".mp4", ".mkv"]))
    request = {"start": None, "end": None}
    if draw(st.booleans()):
        span = times[-1] + 0.05
        a, b = sorted(draw(st.lists(st.floats(0, 1.2), min_size=2, max_size=2)))
        request = {"start": round(a * span, 4) if a * span < times[-1] else None, "end": round(max(b, 0.01) * span, 4)}
        if request["start"] is not None and request["end"] <= request["start"]:
            request["end"] = None
    if draw(st.booleans()):
        request["num_frames"] = draw(st.integers(1, 50))
    else:
        request["fps"] = draw(st.floats(0.5, 90))
    return video, ext, constant, request


@settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=clip_and_request())
def test_random_clips_conform(tmp_path, case):
    video, ext, constant, request = case
    path = make_video(tmp_path / f"random{ext}", size=SMALL, **video)
    ref = decode_all(path)
    check(path, ref, constant_rate=constant, **request)
