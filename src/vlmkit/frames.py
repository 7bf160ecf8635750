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
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from vlmkit.errors import UsageError, VideoError, VlmkitError

if TYPE_CHECKING:
    import av
    import numpy as np

SEEK_GAP = 1.0  # s: without a keyframe index, seek only when the next target is further ahead than this
SKIP_MARGIN = 0.5  # s: short of a target by more than this, skip decoding frames no other frame references
_EPS = 1e-6  # s: frame times are floats of rational timestamps
_RATE_TOLERANCE = 1e-3  # --fps 29.97 counts as the rate of a 30000/1001 video
# Demuxers that read a complete keyframe index with the header (MP4 moov, MKV/WebM cues, AVI idx1).
# Others (MPEG-TS, ...) only index what a seek happened to pass over: their index is not a map.
_INDEXED_FORMATS = {"mov", "mp4", "matroska", "webm", "avi"}
_REENCODE_HINT = "check that it plays, or re-encode it with `ffmpeg -i IN -c:v libx264 OUT.mp4`."
_DAMAGED_HINT = "The video data is damaged: " + _REENCODE_HINT

T = TypeVar("T")


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
    path = _checked_path(path)

    def probe(clock: _Clock) -> VideoInfo:
        with _open(path) as container:
            stream = _video_stream(container, path)
            width, height = stream.codec_context.width, stream.codec_context.height
            duration = _header_duration(container, stream)
            if duration is None:  # raw streams (.h264): read the packets, still without decoding
                duration = _scan_duration(container, stream, _origin(stream), clock)
            fps = float(stream.average_rate) if stream.average_rate else None
            codec, frame_count = stream.codec_context.name, stream.frames or None
        rotation = _first_frame_rotation(path, clock)
        if rotation % 180:
            width, height = height, width
        return VideoInfo(path=path, duration=duration, fps=fps, width=width, height=height, codec=codec,
                         frame_count=frame_count, rotation=rotation)

    return _with_deadline(probe, path, timeout)


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
    path = _checked_path(path)

    def sample(clock: _Clock) -> VideoFrames:
        with contextlib.ExitStack() as open_files:

            def open_stream() -> tuple[av.container.InputContainer, av.VideoStream]:
                container = open_files.enter_context(_open(path))
                stream = _video_stream(container, path)
                stream.thread_type = "AUTO"
                return container, stream

            container, stream = open_stream()
            origin = _origin(stream)
            duration = _header_duration(container, stream)
            if duration is None:  # raw streams (.h264, ...): read the packets' times in a second handle
                duration = _scan_duration(*open_stream(), origin, clock)
            times = target_times(duration, num_frames=num_frames, fps=fps, min_frames=min_frames,
                                 max_frames=max_frames, start=start, end=end)
            begin, stop = _window(duration, start, end)
            reader = _Reader(container, stream, clock, reopen=open_stream)
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

    return _with_deadline(sample, path, timeout)


def target_times(duration: float, *, num_frames: int | None = 8, fps: float | None = None,
                 min_frames: int = 1, max_frames: int | None = None,
                 start: float | None = None, end: float | None = None) -> list[float]:
    """The times (s) `sample_frames` aims at: centres of equal segments of [start, end)."""
    start, end = _window(duration, start, end)
    span = end - start
    if fps is not None:
        count = max(min_frames, math.floor(span * fps + _EPS))
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
        rgb = _to_rgb(frame, frames.shape[1:] if frames is not None else None)  # [H, W, 3]
        if frames is None:  # filled in place: no second copy of many frames at the end
            frames = np.empty((max(expected, 1), *rgb.shape), np.uint8)  # [T, H, W, 3]
        elif len(timestamps) == len(frames):  # every frame of a window: more than its duration × rate
            frames = np.concatenate([frames, np.empty_like(frames)])
        frames[len(timestamps)] = rgb
        timestamps.append(round(when - origin, 6))
    if frames is None:
        raise VideoError(f"{path}: no decodable frames", hint=_DAMAGED_HINT)
    if len(timestamps) < len(frames):
        frames = frames[: len(timestamps)].copy()
    return frames, timestamps


# --- decoding -------------------------------------------------------------------------------------


def _shown_frames(cursor: _Cursor, targets: list[float], segment_ends: list[float]
                  ) -> Iterator[tuple[float, av.VideoFrame]]:
    """(time, frame) shown at each target (absolute s, ascending), each frame once.

    A target whose shown frame went to the previous target takes the next frame if it starts
    before the target's segment ends (`segment_ends`), and otherwise gives nothing.
    """
    taken = None  # time of the last frame given
    for target, segment_end in zip(targets, segment_ends):
        shown, following = cursor.at(target)
        if shown is not None and (taken is None or shown[0] > taken + _EPS):
            pick = shown
        elif following is not None and following[0] < segment_end - _EPS and (
                taken is None or following[0] > taken + _EPS):
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
    while following is not None and following[0] < end - _EPS:
        if taken is None or following[0] > taken + _EPS:
            taken = following[0]
            yield following
        shown, following = cursor.at(following[0])


class _Cursor:
    """The decoded frames in presentation order, walked forward: which frame is shown at a time.

    It keeps the frame shown at the latest time asked (`shown`) and the frame decoded after it
    (`following`, None at the end), and seeks only when a keyframe lies between where decoding
    stands and the time asked.
    """

    def __init__(self, reader: _Reader) -> None:
        self.reader = reader
        self.frames: Iterator[tuple[float, av.VideoFrame]] | None = None  # since the last seek; None at the end
        self.shown: tuple[float, av.VideoFrame] | None = None
        self.following: tuple[float, av.VideoFrame] | None = None
        self.newest: tuple[float, av.VideoFrame] | None = None  # the latest frame decoded at all

    def at(self, when: float) -> tuple[tuple[float, av.VideoFrame] | None, tuple[float, av.VideoFrame] | None]:
        """(the frame shown at `when`, the frame after it); before the first frame, the first frame."""
        if self.following is None or self.following[0] <= when + _EPS:
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
            if self.shown is None or item[0] <= when + _EPS:
                self.shown = item
            else:
                self.following = item
                return
        self.frames = None  # ran out (end of file or of readable data)


class _Reader:
    """Seeks and decodes one video stream, counting the frames it decodes."""

    def __init__(self, container: av.container.InputContainer, stream: av.VideoStream, clock: _Clock, *,
                 reopen: Callable[[], tuple[av.container.InputContainer, av.VideoStream]]):
        self.container, self.stream, self.clock = container, stream, clock
        self._reopen = reopen
        self._indexed = bool(_INDEXED_FORMATS & set(self.container.format.name.split(",")))
        self.decoded = 0
        self.reorder = 0  # pts units: how far a keyframe's index (decode) time precedes its display time
        self.longest_key_gap = 0.0  # s, between keyframes seen; used when the file has no index
        self._last_key: float | None = None  # s
        self._untimed_pts: int | None = None  # for streams without timestamps: the sum of durations
        self._untimed_step = 0
        self._skip_before = -(2**63)  # pts: frames shown before this are decoded only if referenced
        self._skipping = False
        self._skipped_upto: int | None = None  # pts: the latest packet decoded with skipping on, since the seek
        self._seekable = True

    def aim_at(self, target: float | None) -> None:
        """Let the decoder skip frames no other frame needs while far short of the target (None: skip none)."""
        self._skip_before = -(2**63) if target is None else self._pts(target - SKIP_MARGIN)

    def dropped_after(self, shown: float) -> bool:
        """Whether a frame shown after time `shown` may have been skipped since the last seek.

        A frame shown for longer than SKIP_MARGIN can be the one on screen at the target and still
        fall among the frames skipped: then the caller decodes that stretch again without skipping.
        """
        return self._skipped_upto is not None and self._skipped_upto > self._pts(shown)

    def keyframe_between(self, position: float, target: float) -> bool:
        """Whether a keyframe lies after the last decoded frame (`position`) and by the target.

        If not, decoding on is cheaper than seeking back to the keyframe already passed. With a
        keyframe index (MP4, MKV/WebM cues, AVI) ask it; otherwise compare with the longest
        keyframe interval seen so far.
        """
        if not self._seekable:
            return False
        entries = self._index()
        if entries is not None:
            i = entries.search_timestamp(self._pts(target) - self.reorder, backward=True)
            return i >= 0 and entries[i].timestamp > self._pts(position)
        return target - position > max(SEEK_GAP, self.longest_key_gap)

    def seek(self, target: float) -> Iterator[tuple[float, av.VideoFrame]]:
        """Frames from the last keyframe at or before `target` on.

        If the first frame shows after the target, or none decodes, seek once more, further back:
        MP4 indexes hold decode times, which precede display times when B-frames are reordered
        (learn that offset from the index), and files without an index are searched approximately
        (an MPEG-TS search can land past the last keyframe). A file that cannot seek (a raw .h264
        stream) is decoded straight through.
        """
        import av

        sought = self._pts(target) - self.reorder
        for attempt in range(2):
            self._skipped_upto = None
            try:
                self.container.seek(sought, stream=self.stream, backward=True, any_frame=False)
            except av.error.FFmpegError:  # no timestamps to seek by; the failed search moved the demuxer
                self._seekable = False
                self.container, self.stream = self._reopen()
                self._untimed_pts = None
                return self._frames()  # from the start, straight through
            frames = self._frames()
            first = next(frames, None)
            if first is None:  # nothing decodes from there: an MPEG-TS search can land past the last keyframe
                if attempt == 0 and sought > self._pts(_origin(self.stream)):
                    sought -= self._pts(2 * max(SEEK_GAP, self.longest_key_gap))
                    continue
                return iter(())
            if attempt == 0 and first[0] > target + _EPS and first[1].pts is not None:
                retry = self._further_back(target, sought, shown=first[1].pts)
                if retry < sought:
                    sought = retry
                    continue
            return itertools.chain([first], frames)
        raise AssertionError("unreachable")

    def _further_back(self, target: float, sought: int, shown: int) -> int:
        """Where to seek after the keyframe found for `target` (sought at pts `sought`) showed at `shown`."""
        entries = self._index()
        i = entries.search_timestamp(sought, backward=True) if entries is not None else -1
        if i >= 0:  # the index holds decode times: learn how far they precede display times
            self.reorder = max(self.reorder, shown - entries[i].timestamp)
            return self._pts(target) - self.reorder
        return sought - 2 * (shown - self._pts(target)) - self._pts(SEEK_GAP)

    def _frames(self) -> Iterator[tuple[float, av.VideoFrame]]:
        """(time s, frame) from the current position on, stepping over packets that fail to decode."""
        import av

        packets = self.container.demux(self.stream)
        while True:
            self.clock.check()
            try:
                packet = next(packets)
            except StopIteration:  # after the demuxer's flush packet has drained the decoder
                return
            except av.error.FFmpegError:  # unreadable from here on (truncated, garbled): drain the decoder
                packet = None
            skip = packet is not None and packet.pts is not None and packet.pts < self._skip_before
            if skip:
                self._skipped_upto = max(self._skipped_upto or packet.pts, packet.pts)
            if skip != self._skipping:
                self.stream.codec_context.skip_frame = "NONREF" if skip else "DEFAULT"
                self._skipping = skip
            try:
                frames = packet.decode() if packet is not None else self.stream.decode(None)
            except av.error.FFmpegError:  # a damaged packet: its frames are lost, later ones may decode
                frames = []
            for frame in frames:
                when = self._time_of(frame)
                self.decoded += 1
                if frame.key_frame:
                    if self._last_key is not None and when > self._last_key:
                        self.longest_key_gap = max(self.longest_key_gap, when - self._last_key)
                    self._last_key = when
                yield when, frame
            if packet is None:
                return

    def _time_of(self, frame: av.VideoFrame) -> float:
        """`frame.time`; for streams without timestamps (raw .h264), the sum of frame durations."""
        if frame.time is not None:
            return frame.time
        self._untimed_pts = 0 if self._untimed_pts is None else self._untimed_pts + self._untimed_step
        rate = self.stream.guessed_rate or self.stream.average_rate or 30
        self._untimed_step = frame.duration or round(1 / (rate * self.stream.time_base))
        return float(self._untimed_pts * self.stream.time_base)

    def _index(self) -> av.index.IndexEntries | None:
        entries = self.stream.index_entries
        return entries if self._indexed and len(entries) else None

    def _pts(self, seconds: float) -> int:
        return _to_pts(seconds, self.stream)


def _to_pts(seconds: float, stream: av.VideoStream) -> int:
    return math.floor(seconds / stream.time_base + _EPS)


def _to_rgb(frame: av.VideoFrame, shape: tuple[int, ...] | None) -> np.ndarray:
    """[H, W, 3] uint8, upright; scaled to `shape` if the stream changed size mid-way (rare)."""
    rgb = _upright(frame.to_ndarray(format="rgb24"), frame)
    if shape is not None and rgb.shape != shape:
        quarter_turn = rgb.shape[:2] != (frame.height, frame.width)
        height, width = shape[1::-1] if quarter_turn else shape[:2]  # as stored, before rotation
        rgb = _upright(frame.to_ndarray(format="rgb24", width=width, height=height), frame)
    return rgb


def _upright(rgb: np.ndarray, frame: av.VideoFrame) -> np.ndarray:
    """Apply the frame's display matrix as FFmpeg's autorotate does (fftools get_rotation)."""
    import numpy as np
    from av.sidedata.sidedata import Type

    side_data = frame.side_data.get(Type.DISPLAYMATRIX)
    if side_data is None:
        return rgb
    matrix = np.frombuffer(bytes(side_data), dtype=np.int32)  # [9] native-endian, 16.16 fixed point
    theta = -round(frame.rotation) % 360  # clockwise degrees to turn the picture upright
    if abs(theta - 90) < 1:  # FFmpeg: transpose=cclock_flip if matrix[3] > 0 else transpose=clock
        return rgb.transpose(1, 0, 2) if matrix[3] > 0 else np.rot90(rgb, -1)
    if abs(theta - 270) < 1:  # FFmpeg: transpose=clock_flip if matrix[3] < 0 else transpose=cclock
        return rgb[::-1, ::-1].transpose(1, 0, 2) if matrix[3] < 0 else np.rot90(rgb, 1)
    if abs(theta - 180) < 1:
        return rgb[:: -1 if matrix[4] < 0 else 1, :: -1 if matrix[0] < 0 else 1]
    if matrix[4] < 0:  # 0 degrees (or an angle that is not a quarter turn: left as stored)
        return rgb[::-1]
    return rgb


# --- opening and errors ---------------------------------------------------------------------------


def _checked_path(path: str | os.PathLike) -> str:
    path = os.fspath(path)
    if os.path.isdir(path):
        raise VideoError(f"{path} is a directory, not a video file", hint="Pass the path of one video file.")
    if not os.path.exists(path):
        raise VideoError(f"no such file: {path}", hint="Check the path and the current directory.")
    return path


def _open(path: str) -> av.container.InputContainer:
    import av

    try:
        return av.open(path, metadata_errors="replace")
    except PermissionError as error:
        raise VideoError(f"cannot read {path}: permission denied",
                         hint="Check the file's permissions.") from error
    except (av.error.InvalidDataError, av.error.EOFError) as error:
        raise VideoError(f"{path} is not a video FFmpeg can read ({error.strerror})",
                         hint="If it is a video, it is incomplete or damaged: " + _REENCODE_HINT) from error


def _video_stream(container: av.container.InputContainer, path: str) -> av.VideoStream:
    from av.stream import Disposition

    for stream in container.streams.video:
        if not stream.disposition & Disposition.attached_pic:  # cover art is not a video
            return stream
    kinds = sorted({s.type for s in container.streams}) or ["no streams"]
    raise VideoError(f"{path} has no video stream (it has: {', '.join(kinds)})",
                     hint="Pass a video file; audio-only files cannot be captioned.")


def _origin(stream: av.VideoStream) -> float:
    """The stream's start (s): timestamps are reported from here, so a video starts at 0."""
    return float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0


def _header_duration(container: av.container.InputContainer, stream: av.VideoStream) -> float | None:
    if stream.duration is not None and stream.duration > 0:
        return float(stream.duration * stream.time_base)
    if container.duration is not None and container.duration > 0:
        return container.duration / 1_000_000  # av.time_base
    return None


def _scan_duration(container: av.container.InputContainer, stream: av.VideoStream, origin: float,
                   clock: _Clock) -> float:
    """Duration from the packets (read, not decoded), for files whose header states none."""
    import av

    last_end, durations, count = None, 0, 0
    try:
        for packet in container.demux(stream):
            clock.check()
            if packet.size == 0:  # the demuxer's closing flush packet
                continue
            count, durations = count + 1, durations + (packet.duration or 0)
            stamp = packet.pts if packet.pts is not None else packet.dts
            if stamp is not None:
                last_end = max(last_end or stamp, stamp + (packet.duration or 0))
    except av.error.FFmpegError:
        pass
    rate = stream.guessed_rate or stream.average_rate
    if last_end is not None:
        return float(last_end * stream.time_base) - origin
    if durations:  # raw streams (.h264) carry no timestamps, only durations
        return float(durations * stream.time_base)
    if count and rate:
        return count / float(rate)
    raise VideoError(f"{container.name}: no decodable frames", hint=_DAMAGED_HINT)


def _first_frame_rotation(path: str, clock: _Clock) -> int:
    """Degrees counter-clockwise the first frame is turned for display, in (-180, 180]; 0 if none decodes."""
    import av

    with _open(path) as container:
        stream = _video_stream(container, path)
        try:
            for packet in container.demux(stream):
                clock.check()
                for frame in packet.decode():
                    angle = round(frame.rotation) % 360
                    return angle - 360 if angle > 180 else angle
        except av.error.FFmpegError:
            pass
    return 0


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


# --- deadline -------------------------------------------------------------------------------------


class _Abandoned(Exception):
    """Raised inside the worker once the caller has given up on it."""


class _Clock:
    def __init__(self, timeout: float | None) -> None:
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.abandoned = threading.Event()

    def check(self) -> None:
        if self.abandoned.is_set() or (self.deadline is not None and time.monotonic() > self.deadline):
            raise _Abandoned


def _with_deadline(work: Callable[[_Clock], T], path: str, timeout: float | None) -> T:
    """Run `work` in a daemon thread; give up on it after `timeout` s.

    The worker checks the clock between packets and stops soon after the deadline; if a single
    FFmpeg call never returns, the daemon thread is left behind and the caller still gets its
    error on time.
    """
    import av

    clock = _Clock(timeout)
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["value"] = work(clock)
        except _Abandoned:
            outcome["error"] = _timeout_error(path, timeout)
        except VlmkitError as error:
            outcome["error"] = error
        except (av.error.FFmpegError, OSError) as error:  # anything else PyAV raises
            wrapped = VideoError(f"{path}: {error}", hint="The file may be damaged: " + _REENCODE_HINT)
            wrapped.__cause__ = error
            outcome["error"] = wrapped
        except BaseException as error:  # a bug: re-raised in the caller's thread
            outcome["error"] = error

    worker = threading.Thread(target=run, name=f"vlmkit-decode:{os.path.basename(path)}", daemon=True)
    worker.start()
    try:
        worker.join(timeout)
    except BaseException:  # Ctrl-C: stop the worker too
        clock.abandoned.set()
        raise
    if worker.is_alive():
        clock.abandoned.set()
        raise _timeout_error(path, timeout)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _timeout_error(path: str, timeout: float | None) -> VideoError:
    return VideoError(f"{path}: decoding took longer than {timeout:g} s and was abandoned",
                      hint="The file may be damaged or unusually heavy; raise the timeout or re-encode it.")
