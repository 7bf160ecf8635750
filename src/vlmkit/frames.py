"""Sample frames from a video by seeking to keyframes, with PyAV.

Which frames: the frame at time t is the frame a player shows at t, the last frame whose
presentation time is <= t (FFmpeg's meaning, and every player's). The targets are the centres
of equal segments of the window, so on a constant-frame-rate video N frames from a window that
holds at least N frames are N distinct frames, in order, one from each segment. No frame is
returned twice: when a frame is shown through two targets (variable frame rate, or fewer frames
than asked), the later target takes the next frame if it starts inside that target's segment,
and otherwise gives nothing; the result then says "asked 16 frames, the video has 9" (`note`).
`fps` at or above the video's own rate returns every frame shown during the window, once each.

How: for each target, `sample_frames` seeks to the keyframe before it and decodes forward only
as far as the target, so a few frames from a long video cost a few GOPs of decoding, not the
whole stream. When the next target lies in the GOP being decoded it keeps decoding instead of
seeking back to that GOP's keyframe; while still far short of a target the decoder skips the
frames no other frame references (most B-frames), and decodes again without skipping in the rare
case that a skipped frame turns out to be the one on screen at the target. Only the frames
returned are converted to RGB.

Timestamps are each frame's presentation time (`frame.time`), measured from the stream's start,
so variable-frame-rate files get their real times. Rotation metadata (a display matrix) is
applied to the pixels the way FFmpeg's `-autorotate` does. Decoding runs in a worker thread with
a deadline, so a pathological file costs at most `timeout` seconds. Every failure is a
`VideoError` (or `UsageError` for bad options) with a hint; no PyAV exception escapes. `av` and
numpy are imported inside functions: the light commands never load them.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from vlmkit.deadline import Clock
from vlmkit.decoding import (
    DAMAGED_HINT,
    EPS,
    Reader,
    checked_path,
    first_frame_rotation,
    header_duration,
    open_video,
    scan_duration,
    stream_origin,
    to_rgb,
    video_stream,
    with_deadline,
)
from vlmkit.errors import UsageError, VideoError

if TYPE_CHECKING:
    import av
    import numpy as np

_RATE_TOLERANCE = 1e-3  # --fps 29.97 counts as the rate of a 30000/1001 video


@dataclass(frozen=True)
class VideoInfo:
    path: str
    duration: float | None  # seconds
    fps: float | None  # average frame rate
    width: int  # as displayed, after rotation
    height: int
    codec: str
    frame_count: int | None  # from the container header, when it states one
    rotation: int  # degrees counter-clockwise the stored picture is turned for display (FFmpeg's sign)


@dataclass(frozen=True)
class VideoFrames:
    path: str
    frames: np.ndarray  # [T, H, W, 3] uint8 RGB, upright
    timestamps: list[float]  # seconds from the start of the video, one per frame, increasing
    duration: float | None  # seconds
    width: int  # after rotation
    height: int
    decoded_frames: int  # frames decoded to get these (seeking and skipping keep this small)
    asked: int = 0  # frames the sampling options asked for (0: not stated)
    note: str | None = None  # when fewer came back than asked: "asked 16 frames, the video has 9"


def probe_video(path: str | os.PathLike, *, timeout: float | None = 60.0) -> VideoInfo:
    """Duration, frame rate, size, codec from the headers; rotation from the first frame.

    Files whose header states no duration (raw .h264 streams) have their packets read for it.
    The rotation is the first frame's display rotation (`VideoFrame.rotation`, from an MP4 display
    matrix or MKV projection), so one frame is decoded; a file whose first frame does not decode
    reports 0.
    """
    path = checked_path(path)

    def probe(clock: Clock) -> VideoInfo:
        with open_video(path) as container:
            stream = video_stream(container, path)
            width, height = stream.codec_context.width, stream.codec_context.height
            duration = header_duration(container, stream)
            if duration is None:  # raw streams (.h264): read the packets, still without decoding
                duration = scan_duration(container, stream, stream_origin(stream), clock)
            fps = float(stream.average_rate) if stream.average_rate else None
            codec, frame_count = stream.codec_context.name, stream.frames or None
        rotation = first_frame_rotation(path, clock)
        if rotation % 180:
            width, height = height, width
        return VideoInfo(path=path, duration=duration, fps=fps, width=width, height=height, codec=codec,
                         frame_count=frame_count, rotation=rotation)

    return with_deadline(probe, path, timeout)


def sample_frames(
    path: str | os.PathLike,
    *,
    num_frames: int | None = 8,
    fps: float | None = None,
    min_frames: int = 1,
    max_frames: int | None = None,
    start: float | None = None,
    end: float | None = None,
    timeout: float | None = 60.0,
) -> VideoFrames:
    """Decode frames spread evenly over a video (or over [start, end) seconds of it).

    The frame at time t is the frame a player shows at t: the last frame whose presentation time
    is <= t (the first frame, for a t before it). With `num_frames`, the targets are the centres of
    `num_frames` equal segments of the window, and each target gets the frame shown at it. With
    `fps` (which takes precedence) there is one segment per 1/fps seconds, clamped to
    [min_frames, max_frames]; an `fps` at or above the video's own (average) rate returns every
    frame shown during the window, each once: the frame already on screen at `start`, then every
    frame that starts before `end` (or before the last frame, when the window runs to the end of
    the video), unless that is more than `max_frames`.

    No frame is returned twice. When the frame shown at a target was already returned for the
    previous one (a frame shown longer than a segment, as in variable-frame-rate video, or fewer
    frames than asked), the target takes the next frame instead if that frame starts inside the
    target's own segment, and otherwise gives nothing. So on a constant-frame-rate video, N frames
    from a window in which at least N frames start are N distinct frames, one from each segment,
    in order; and when fewer come back than asked, `note` says so ("asked 16 frames, the video
    has 9", counting distinct frames by this rule).
    """
    check_sampling_options(num_frames, fps, min_frames, max_frames, start, end, timeout)
    path = checked_path(path)

    def sample(clock: Clock) -> VideoFrames:
        with contextlib.ExitStack() as open_files:

            def open_stream() -> tuple[av.container.InputContainer, av.VideoStream]:
                container = open_files.enter_context(open_video(path))
                stream = video_stream(container, path)
                stream.thread_type = "AUTO"
                return container, stream

            container, stream = open_stream()
            origin = stream_origin(stream)
            duration = header_duration(container, stream)
            if duration is None:  # raw streams (.h264, ...): read the packets' times in a second handle
                duration = scan_duration(*open_stream(), origin, clock)
            times = target_times(duration, num_frames=num_frames, fps=fps, min_frames=min_frames,
                                 max_frames=max_frames, start=start, end=end)
            begin, stop = _window(duration, start, end)
            reader = Reader(container, stream, clock, reopen=open_stream)
            rate = float(stream.average_rate or stream.guessed_rate or 0)
            picked = None
            if fps is not None and rate and fps >= rate * (1 - _RATE_TOLERANCE) and (
                    max_frames is None or (stop - begin) * rate < max_frames + 1):
                # to the end of the video: also frames a header's duration leaves out (VFR MP4 with B-frames)
                until = math.inf if end is None or end >= duration else origin + stop
                every = _every_frame(_Cursor(reader), origin + begin, until)
                picked = _rgb_frames(every, origin, len(times), path)
                if max_frames is not None and len(picked[1]) > max_frames:  # denser than its average rate
                    picked = None
            if picked is None:
                cursor = _Cursor(reader)
                width = (stop - begin) / len(times)
                segment_ends = [origin + begin + (i + 1) * width for i in range(len(times))]
                picked = _rgb_frames(_shown_frames(cursor, [origin + t for t in times], segment_ends),
                                     origin, len(times), path)
            frames, timestamps = picked
            note = None
            if len(timestamps) < len(times):
                where = "the video" if start is None and end is None else f"{begin:g}-{stop:g} s of the video"
                note = f"asked {len(times)} frames, {where} has {len(timestamps)}"
            return VideoFrames(path=path, frames=frames, timestamps=timestamps, duration=duration,
                               width=frames.shape[2], height=frames.shape[1], decoded_frames=reader.decoded,
                               asked=len(times), note=note)

    return with_deadline(sample, path, timeout)


def target_times(duration: float, *, num_frames: int | None = 8, fps: float | None = None,
                 min_frames: int = 1, max_frames: int | None = None,
                 start: float | None = None, end: float | None = None) -> list[float]:
    """The times (s) `sample_frames` aims at: centres of equal segments of [start, end)."""
    start, end = _window(duration, start, end)
    span = end - start
    if fps is not None:
        count = max(min_frames, math.floor(span * fps + EPS))
        count = min(count, max_frames) if max_frames is not None else count
    else:
        count = num_frames
    return [start + (i + 0.5) * span / count for i in range(count)]


def _window(duration: float, start: float | None, end: float | None) -> tuple[float, float]:
    """[start, end) seconds, the end clamped to the video's."""
    start = 0.0 if start is None else start
    end = duration if end is None else min(end, duration)
    if start >= duration:
        raise UsageError(f"start={start:g} s is at or past the end of the video ({duration:.2f} s long)",
                         hint="Pick a start time inside the video.")
    return start, max(end, start)


def _rgb_frames(picked: Iterator[tuple[float, av.VideoFrame]], origin: float, expected: int, path: str
                ) -> tuple[np.ndarray, list[float]]:
    """The picked frames as one [T, H, W, 3] array, converted one by one, and their times from the start."""
    import numpy as np

    timestamps, frames = [], None
    for when, frame in picked:
        rgb = to_rgb(frame, frames.shape[1:] if frames is not None else None)  # [H, W, 3]
        if frames is None:  # filled in place: no second copy of many frames at the end
            frames = np.empty((max(expected, 1), *rgb.shape), np.uint8)  # [T, H, W, 3]
        elif len(timestamps) == len(frames):  # every frame of a window: more than its duration × rate
            frames = np.concatenate([frames, np.empty_like(frames)])
        frames[len(timestamps)] = rgb
        timestamps.append(round(when - origin, 6))
    if frames is None:
        raise VideoError(f"{path}: no decodable frames", hint=DAMAGED_HINT)
    if len(timestamps) < len(frames):
        frames = frames[: len(timestamps)].copy()
    return frames, timestamps


# --- which decoded frame each target gets ---------------------------------------------------------


def _shown_frames(cursor: _Cursor, targets: list[float], segment_ends: list[float]
                  ) -> Iterator[tuple[float, av.VideoFrame]]:
    """(time, frame) shown at each target (absolute s, ascending), each frame once.

    A target whose shown frame went to the previous target takes the next frame if it starts
    before the target's segment ends (`segment_ends`), and otherwise gives nothing.
    """
    taken = None  # time of the last frame given
    for target, segment_end in zip(targets, segment_ends):
        shown, following = cursor.at(target)
        if shown is not None and (taken is None or shown[0] > taken + EPS):
            pick = shown
        elif following is not None and following[0] < segment_end - EPS and (
                taken is None or following[0] > taken + EPS):
            pick = following
        else:
            continue
        taken = pick[0]
        yield pick


def _every_frame(cursor: _Cursor, begin: float, end: float) -> Iterator[tuple[float, av.VideoFrame]]:
    """Every frame shown during [begin, end) (absolute s): the one on screen at `begin`, then on."""
    shown, following = cursor.at(begin)
    taken = shown[0] if shown is not None else None
    if shown is not None:
        yield shown
    while following is not None and following[0] < end - EPS:
        if taken is None or following[0] > taken + EPS:
            taken = following[0]
            yield following
        shown, following = cursor.at(following[0])


class _Cursor:
    """The decoded frames in presentation order, walked forward: which frame is shown at a time.

    It keeps the frame shown at the latest time asked (`shown`) and the frame decoded after it
    (`following`, None at the end), and seeks only when a keyframe lies between where decoding
    stands and the time asked.
    """

    def __init__(self, reader: Reader) -> None:
        self.reader = reader
        self.frames: Iterator[tuple[float, av.VideoFrame]] | None = None  # since the last seek; None at the end
        self.shown: tuple[float, av.VideoFrame] | None = None
        self.following: tuple[float, av.VideoFrame] | None = None
        self.newest: tuple[float, av.VideoFrame] | None = None  # the latest frame decoded at all

    def at(self, when: float) -> tuple[tuple[float, av.VideoFrame] | None, tuple[float, av.VideoFrame] | None]:
        """(the frame shown at `when`, the frame after it); before the first frame, the first frame."""
        if self.following is None or self.following[0] <= when + EPS:
            position = self.following or self.shown
            seek = position is None or self.reader.keyframe_between(position[0], when)
            if seek or self.following is not None:
                self.reader.aim_at(when)
                self._walk_to(when, seek=seek)
            if self.shown is not None and self.reader.dropped_after(self.shown[0]):
                self.reader.aim_at(None)  # the frame shown at `when` was skipped: decode it this time
                self._walk_to(when, seek=True)
        return self.shown or self.newest, self.following

    def _walk_to(self, when: float, *, seek: bool) -> None:
        if seek:
            self.frames, self.shown, self.following = self.reader.seek(when), None, None
        pending, self.following = [self.following] if self.following else [], None
        for item in itertools.chain(pending, self.frames or ()):
            if self.newest is None or item[0] > self.newest[0]:
                self.newest = item
            if self.shown is None or item[0] <= when + EPS:
                self.shown = item
            else:
                self.following = item
                return
        self.frames = None  # ran out (end of file or of readable data)


def check_sampling_options(num_frames, fps, min_frames, max_frames, start, end, timeout) -> None:
    def bad(message: str) -> UsageError:
        return UsageError(message, hint="See `vlmkit caption --help` for the sampling options.")

    if fps is None and num_frames is None:
        raise bad("give num_frames or fps")
    if fps is None and num_frames < 1:
        raise bad(f"num_frames must be at least 1, not {num_frames}")
    if fps is not None and not fps > 0:
        raise bad(f"fps must be positive, not {fps}")
    if min_frames < 1 or (max_frames is not None and max_frames < min_frames):
        raise bad(f"need 1 <= min_frames <= max_frames, got {min_frames} and {max_frames}")
    if (start is not None and start < 0) or (end is not None and end <= (start or 0)):
        raise bad(f"need 0 <= start < end, got start={start} and end={end}")
    if timeout is not None and not timeout > 0:
        raise bad(f"timeout must be positive, not {timeout}")
