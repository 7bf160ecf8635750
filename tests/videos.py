"""Small real videos for tests, encoded with PyAV (the FFmpeg inside its wheel).

Every helper writes one file and returns its path. The clips are tiny (tens of pixels, a few
seconds) so that a whole set encodes in about a second on two cores.

Pattern clips ("counter" clips) make each frame's content say which frame it is: the picture is a
4 × 4 grid of cells; the top-left cell is a red orientation marker and the other 15 cells are the
bits of the frame index, white for 1 and black for 0 (most significant bit first, row by row).
`read_index` reads the number back from a decoded RGB frame, which lets tests check that the
frame returned for a time is the frame shown at that time. Each frame differs from the last, so
codecs do real inter-frame work. Keep HEVC counter clips at 64×48 or more: at 32×32 x265's
artefacts flip the odd bit.

The fixtures at the end (`video_dir`, session-scoped, holds a standard set; `counter_video`,
`long_video`, `red_video`, `blue_video` name clips in it) are shared by importing them into a
test module or tests/conftest.py, e.g. `from videos import video_dir, counter_video`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

GRID = 4  # the pattern is a GRID × GRID grid of cells
INDEX_BITS = GRID * GRID - 1  # cell 0 is the orientation marker
MARKER_RGB = (255, 0, 0)

# Codec name → container extensions it is tested in (first one is the default).
CODEC_CONTAINERS = {
    "libx264": (".mp4", ".mkv"),
    "mpeg4": (".avi", ".mp4"),
    "libvpx-vp9": (".webm", ".mkv"),
    "libx265": (".mp4", ".mkv"),
}

# Pixel formats that keep solid colours exact (no chroma subsampling) where the encoder has one.
_FULL_CHROMA = {"libx264": "yuv444p", "libx265": "yuv444p", "libvpx-vp9": "yuv444p"}


def counter_frame(index: int, width: int, height: int) -> np.ndarray:
    """The RGB picture [H, W, 3] of frame `index` in a counter clip."""
    if not 0 <= index < 2**INDEX_BITS:
        raise ValueError(f"frame index {index} does not fit in {INDEX_BITS} bits")
    picture = np.zeros((height, width, 3), np.uint8)
    for cell in range(GRID * GRID):
        rows, cols = _cell_slices(cell, width, height)
        if cell == 0:
            picture[rows, cols] = MARKER_RGB
        elif (index >> (INDEX_BITS - cell)) & 1:
            picture[rows, cols] = 255
    return picture


def read_index(rgb: np.ndarray) -> int:
    """The frame index a decoded counter frame [H, W, 3] shows (inverse of `counter_frame`)."""
    height, width = rgb.shape[:2]
    index = 0
    for cell in range(1, GRID * GRID):
        rows, cols = _cell_slices(cell, width, height, margin=True)
        bit = int(rgb[rows, cols].mean() > 127)
        index = (index << 1) | bit
    return index


def has_marker_at(rgb: np.ndarray, corner: str) -> bool:
    """Whether the red orientation marker sits in `corner` ("top-left", "bottom-left", ...)."""
    height, width = rgb.shape[:2]
    ch, cw = max(1, height // (2 * GRID)), max(1, width // (2 * GRID))
    rows = slice(0, ch) if corner.startswith("top") else slice(height - ch, height)
    cols = slice(0, cw) if corner.endswith("left") else slice(width - cw, width)
    r, g, b = rgb[rows, cols].reshape(-1, 3).mean(axis=0)
    return r > 150 and g < 100 and b < 100


def _cell_slices(cell: int, width: int, height: int, *, margin: bool = False) -> tuple[slice, slice]:
    row, col = divmod(cell, GRID)
    y0, y1 = row * height // GRID, (row + 1) * height // GRID
    x0, x1 = col * width // GRID, (col + 1) * width // GRID
    if margin:  # read only the middle of a cell: edges blur under chroma subsampling and DCT
        dy, dx = (y1 - y0) // 4, (x1 - x0) // 4
        y0, y1, x0, x1 = y0 + dy, y1 - dy, x0 + dx, x1 - dx
    return slice(y0, y1), slice(x0, x1)


def vfr_times(count: int) -> list[float]:
    """Irregular presentation times (seconds, millisecond grid) for a variable-frame-rate clip."""
    steps_ms = (20, 45, 30, 90, 25, 60)  # a repeating, uneven cadence: 15-50 fps
    times, now = [], 0
    for i in range(count):
        times.append(now / 1000)
        now += steps_ms[i % len(steps_ms)]
    return times


def make_video(
    path: str | os.PathLike,
    *,
    codec: str = "libx264",
    seconds: float = 1.0,
    fps: int | Fraction = 30,
    size: tuple[int, int] = (64, 48),
    color: tuple[int, int, int] | None = None,
    gop: int | None = None,
    rotation: int | None = None,
    vfr: bool = False,
    faststart: bool = False,
    times: Sequence[float] | None = None,
    time_base: Fraction | None = None,
    encoder_options: dict[str, str] | None = None,
    cues: bool = True,
) -> Path:
    """Encode a clip and return its path; the container follows the extension.

    `color=None` gives a counter clip (see the module docstring); `color=(r, g, b)` a solid
    colour, encoded without chroma subsampling where the codec allows and at high quality so
    that decoded pixels stay within a couple of levels of the colour. Odd sizes are 4:4:4 in
    x264/x265 (their 4:2:0 needs even sizes) and 4:2:0 in VP9. `gop` is the keyframe
    interval in frames. `rotation` writes display-matrix metadata (degrees counter-clockwise, as
    FFmpeg and `VideoFrame.rotation` report it) without touching the pixels. `vfr=True` stamps
    frames with the irregular times of `vfr_times` instead of 1/fps apart. `faststart` puts an
    MP4's index (moov) before the media data, as streaming-ready files have it.

    `times` gives every frame's presentation time (s) instead (negative ones make an MP4 edit
    list: those frames decode but are never shown), in `time_base` (default 1/1000 s for
    irregular times, 1/fps otherwise). `encoder_options` override the fast defaults (B-frames,
    open GOP, ...). `cues=False` writes through a stream that cannot seek, as a pipe or a live
    recorder does: an MKV then has no cues (no keyframe index) and states no duration.
    """
    import av

    path = Path(path)
    if codec not in av.codecs_available:
        pytest.skip(f"this PyAV build has no {codec} encoder")
    width, height = size
    count = max(1, round(seconds * fps))
    irregular = vfr or times is not None
    if times is None:
        times = vfr_times(count) if vfr else [i / fps for i in range(count)]
    time_base = time_base or (Fraction(1, 1000) if irregular else 1 / Fraction(fps))

    options = {"movflags": "+faststart"} if faststart and path.suffix in (".mp4", ".mov") else {}
    target = str(path) if cues else _Unseekable(path)
    with av.open(target, "w", options=options, format=None if cues else _FORMATS[path.suffix]) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = width, height
        stream.time_base = time_base
        stream.codec_context.time_base = time_base
        odd = width % 2 or height % 2  # 4:2:0 in x264/x265 needs even sizes; libvpx pads itself
        full_chroma = color is not None or (odd and codec in ("libx264", "libx265"))
        stream.pix_fmt = _FULL_CHROMA.get(codec, "yuv420p") if full_chroma else "yuv420p"
        stream.options = _encoder_options(codec, solid=color is not None, gop=gop) | (encoder_options or {})
        if gop is not None:
            stream.codec_context.gop_size = gop
        if rotation:
            stream.set_display_rotation(rotation)
        solid = None if color is None else np.full((height, width, 3), color, np.uint8)
        for i, t in enumerate(times):
            rgb = solid if solid is not None else counter_frame(i, width, height)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = round(t / time_base)
            frame.time_base = time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    if not cues:
        target.close()
    return path


_FORMATS = {".mkv": "matroska", ".webm": "webm", ".ts": "mpegts", ".mp4": "mp4"}


class _Unseekable:
    """A file object without `seek`: FFmpeg's muxers then write what a pipe gets."""

    def __init__(self, path: Path) -> None:
        self._file = open(path, "wb")  # closed by make_video

    def write(self, data: bytes) -> int:
        return self._file.write(data)

    def close(self) -> None:
        self._file.close()


def _encoder_options(codec: str, *, solid: bool, gop: int | None) -> dict[str, str]:
    """Fast settings; near-lossless for solid colours; a fixed keyframe interval when asked."""
    fixed_gop = [f"keyint={gop}", f"min-keyint={gop}", "scenecut=0"] if gop else []
    if codec == "libx264":
        options = {"crf": "1" if solid else "18", "preset": "ultrafast" if solid else "superfast"}
        if fixed_gop:
            options["x264-params"] = ":".join(fixed_gop)
        return options
    if codec == "libx265":
        params = ":".join(["log-level=error", *fixed_gop])
        return {"crf": "4" if solid else "10", "preset": "ultrafast", "x265-params": params}
    if codec == "libvpx-vp9":
        return {"crf": "4" if solid else "30", "b": "0", "deadline": "realtime", "cpu-used": "8"}
    if codec == "mpeg4":
        return {"qscale": "2"}
    return {}


def make_audio_only(path: str | os.PathLike, *, seconds: float = 1.0) -> Path:
    """An MP4 with one AAC audio stream and no video."""
    import av

    path = Path(path)
    rate = 16000
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=rate)
        stream.layout = "mono"
        samples = np.sin(np.arange(int(seconds * rate)) * 2 * np.pi * 440 / rate).astype(np.float32)
        step = 1024
        for start in range(0, len(samples), step):
            chunk = samples[start : start + step].reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
            frame.sample_rate = rate
            frame.pts = start
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def make_truncated(path: str | os.PathLike, *, faststart: bool = True, **video: object) -> Path:
    """A valid MP4 cut in half, as an interrupted download or copy leaves it.

    With `faststart=True` (the default) the index (moov) comes first and survives; the cut falls
    in the middle of the media data, so the first half of the clip decodes and the rest is gone.
    With `faststart=False` the index is written last, the cut (at half the file) removes it, and
    the file cannot be opened at all.
    """
    path = Path(path)
    make_video(path, **{"seconds": 2.0, "gop": 10, "faststart": faststart, **video})
    data = path.read_bytes()
    if faststart:
        body_start, body_end = _mdat_payload(data)
        cut = (body_start + body_end) // 2
    else:
        cut = len(data) // 2
    path.write_bytes(data[:cut])
    return path


def make_corrupt(
    path: str | os.PathLike, *, region: Sequence[float] = (0.0, 1.0), seed: int = 0, **video: object
) -> Path:
    """A valid MP4 header and index with random bytes over part of the media data.

    `region` is the (start, end) fraction of the media data that is overwritten: the default
    garbles all of it (nothing decodes); (0.4, 0.6) garbles the middle (the rest decodes).
    """
    path = Path(path)
    make_video(path, **{"seconds": 2.0, "gop": 10, "faststart": True, **video})
    data = bytearray(path.read_bytes())
    body_start, body_end = _mdat_payload(data)
    lo = body_start + int(region[0] * (body_end - body_start))
    hi = body_start + int(region[1] * (body_end - body_start))
    data[lo:hi] = np.random.default_rng(seed).integers(0, 256, hi - lo, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    return path


def _mdat_payload(data: bytes | bytearray) -> tuple[int, int]:
    """Byte range of the first top-level `mdat` box's payload in an MP4."""
    offset = 0
    while offset + 8 <= len(data):
        size = int.from_bytes(data[offset : offset + 4], "big")
        kind = bytes(data[offset + 4 : offset + 8])
        header = 8
        if size == 1:
            size, header = int.from_bytes(data[offset + 8 : offset + 16], "big"), 16
        elif size == 0:
            size = len(data) - offset
        if kind == b"mdat":
            return offset + header, offset + size
        offset += size
    raise ValueError("no mdat box")


def make_not_video(path: str | os.PathLike) -> Path:
    """A text file with a video's name."""
    path = Path(path)
    path.write_text("This is a shopping list, not a video.\n" * 20)
    return path


@pytest.fixture(scope="session")
def video_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with the standard clips, encoded once per test session.

    counter.mp4 (H.264, 2 s, 30 fps, 64×48, keyframe every 15 frames), long.mp4 (H.264 counter,
    20 s, 30 fps, 32×32, keyframe every 30 frames), red.mp4 / blue.mp4 (solid, 1 s, 64×48),
    rotated90.mp4 (counter with 90° display matrix, 64×48 stored), odd.mp4 / odd.webm (97×61,
    H.264 4:4:4 / VP9 4:2:0), vfr.mkv
    (H.264, irregular times), audio.mp4, truncated.mp4, corrupt.mp4, not_video.mp4.
    """
    root = tmp_path_factory.mktemp("videos")
    make_video(root / "counter.mp4", seconds=2, fps=30, gop=15)
    make_video(root / "long.mp4", seconds=20, fps=30, size=(32, 32), gop=30)
    make_video(root / "red.mp4", color=(255, 0, 0))
    make_video(root / "blue.mp4", color=(0, 0, 255))
    make_video(root / "rotated90.mp4", rotation=90)
    make_video(root / "odd.mp4", size=(97, 61))
    make_video(root / "odd.webm", codec="libvpx-vp9", size=(97, 61))
    make_video(root / "vfr.mkv", vfr=True, seconds=2)
    make_audio_only(root / "audio.mp4")
    make_truncated(root / "truncated.mp4")
    make_corrupt(root / "corrupt.mp4")
    make_not_video(root / "not_video.mp4")
    return root


@pytest.fixture(scope="session")
def counter_video(video_dir: Path) -> Path:
    """The 2 s, 30 fps H.264 counter clip (60 frames, keyframe every 15)."""
    return video_dir / "counter.mp4"


@pytest.fixture(scope="session")
def long_video(video_dir: Path) -> Path:
    """The 20 s, 30 fps H.264 counter clip (600 frames, 32×32, keyframe every 30)."""
    return video_dir / "long.mp4"


@pytest.fixture(scope="session")
def red_video(video_dir: Path) -> Path:
    """A solid red 1 s clip."""
    return video_dir / "red.mp4"


@pytest.fixture(scope="session")
def blue_video(video_dir: Path) -> Path:
    """A solid blue 1 s clip."""
    return video_dir / "blue.mp4"
