"""Reading one video stream with PyAV: open it, seek and decode forward, turn frames into RGB.

`Reader` seeks to the keyframe before a time and decodes forward from there, counting the frames
it decodes; it learns how far an MP4 index's decode times precede display times, searches files
without an index, skips frames no other frame references while far short of a target, and steps
over damaged packets. The helpers around it open a file (every failure a `VideoError` with a
hint), find its video stream and duration, read the display rotation, and convert a frame to an
upright RGB array the way FFmpeg's `-autorotate` does. `with_deadline` runs a decode with a time
limit and turns any PyAV error into a `VideoError`. `av` and numpy are imported inside functions.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, TypeVar

from vlmkit.deadline import Clock, run_with_deadline
from vlmkit.errors import VideoError

if TYPE_CHECKING:
    import av
    import numpy as np

SEEK_GAP = 1.0  # s: without a keyframe index, seek only when the next target is further ahead than this
SKIP_MARGIN = 0.5  # s: short of a target by more than this, skip decoding frames no other frame references
EPS = 1e-6  # s: frame times are floats of rational timestamps
# Demuxers that read a complete keyframe index with the header (MP4 moov, MKV/WebM cues, AVI idx1).
# Others (MPEG-TS, ...) only index what a seek happened to pass over: their index is not a map.
_INDEXED_FORMATS = {"mov", "mp4", "matroska", "webm", "avi"}
_REENCODE_HINT = "check that it plays, or re-encode it with `ffmpeg -i IN -c:v libx264 OUT.mp4`."
DAMAGED_HINT = "The video data is damaged: " + _REENCODE_HINT

T = TypeVar("T")


class Reader:
    """Seeks and decodes one video stream, counting the frames it decodes."""

    def __init__(self, container: av.container.InputContainer, stream: av.VideoStream, clock: Clock, *,
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
                if attempt == 0 and sought > self._pts(stream_origin(self.stream)):
                    sought -= self._pts(2 * max(SEEK_GAP, self.longest_key_gap))
                    continue
                return iter(())
            if attempt == 0 and first[0] > target + EPS and first[1].pts is not None:
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
        return to_pts(seconds, self.stream)


def to_pts(seconds: float, stream: av.VideoStream) -> int:
    return math.floor(seconds / stream.time_base + EPS)


def to_rgb(frame: av.VideoFrame, shape: tuple[int, ...] | None) -> np.ndarray:
    """[H, W, 3] uint8, upright; scaled to `shape` if the stream changed size mid-way (rare)."""
    rgb = upright(frame.to_ndarray(format="rgb24"), frame)
    if shape is not None and rgb.shape != shape:
        quarter_turn = rgb.shape[:2] != (frame.height, frame.width)
        height, width = shape[1::-1] if quarter_turn else shape[:2]  # as stored, before rotation
        rgb = upright(frame.to_ndarray(format="rgb24", width=width, height=height), frame)
    return rgb


def upright(rgb: np.ndarray, frame: av.VideoFrame) -> np.ndarray:
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


def checked_path(path: str | os.PathLike) -> str:
    path = os.fspath(path)
    if os.path.isdir(path):
        raise VideoError(f"{path} is a directory, not a video file", hint="Pass the path of one video file.")
    if not os.path.exists(path):
        raise VideoError(f"no such file: {path}", hint="Check the path and the current directory.")
    return path


def open_video(path: str) -> av.container.InputContainer:
    import av

    try:
        return av.open(path, metadata_errors="replace")
    except PermissionError as error:
        raise VideoError(f"cannot read {path}: permission denied",
                         hint="Check the file's permissions.") from error
    except (av.error.InvalidDataError, av.error.EOFError) as error:
        raise VideoError(f"{path} is not a video FFmpeg can read ({error.strerror})",
                         hint="If it is a video, it is incomplete or damaged: " + _REENCODE_HINT) from error


def video_stream(container: av.container.InputContainer, path: str) -> av.VideoStream:
    from av.stream import Disposition

    for stream in container.streams.video:
        if not stream.disposition & Disposition.attached_pic:  # cover art is not a video
            return stream
    kinds = sorted({s.type for s in container.streams}) or ["no streams"]
    raise VideoError(f"{path} has no video stream (it has: {', '.join(kinds)})",
                     hint="Pass a video file; audio-only files cannot be captioned.")


def stream_origin(stream: av.VideoStream) -> float:
    """The stream's start (s): timestamps are reported from here, so a video starts at 0."""
    return float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0


def header_duration(container: av.container.InputContainer, stream: av.VideoStream) -> float | None:
    if stream.duration is not None and stream.duration > 0:
        return float(stream.duration * stream.time_base)
    if container.duration is not None and container.duration > 0:
        return container.duration / 1_000_000  # av.time_base
    return None


def scan_duration(container: av.container.InputContainer, stream: av.VideoStream, origin: float,
                   clock: Clock) -> float:
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
    raise VideoError(f"{container.name}: no decodable frames", hint=DAMAGED_HINT)


def first_frame_rotation(path: str, clock: Clock) -> int:
    """Degrees counter-clockwise the first frame is turned for display, in (-180, 180]; 0 if none decodes."""
    import av

    with open_video(path) as container:
        stream = video_stream(container, path)
        try:
            for packet in container.demux(stream):
                clock.check()
                for frame in packet.decode():
                    angle = round(frame.rotation) % 360
                    return angle - 360 if angle > 180 else angle
        except av.error.FFmpegError:
            pass
    return 0


def with_deadline(work: Callable[[Clock], T], path: str, timeout: float | None) -> T:
    """Run `work` in a daemon thread; give up on it after `timeout` s. PyAV errors become `VideoError`s."""

    def guarded(clock: Clock) -> T:
        import av

        try:
            return work(clock)
        except (av.error.FFmpegError, OSError) as error:  # anything else PyAV raises
            raise VideoError(f"{path}: {error}", hint="The file may be damaged: " + _REENCODE_HINT) from error

    return run_with_deadline(guarded, timeout, name=f"vlmkit-decode:{os.path.basename(path)}",
                             timed_out=lambda: _timeout_error(path, timeout))


def _timeout_error(path: str, timeout: float | None) -> VideoError:
    return VideoError(f"{path}: decoding took longer than {timeout:g} s and was abandoned",
                      hint="The file may be damaged or unusually heavy; raise the timeout or re-encode it.")
