"""Dense captions as subtitle files: SRT and WebVTT."""

from __future__ import annotations

from pathlib import Path


def _clock(seconds: float, separator: str) -> str:
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def to_srt(segments: list[dict]) -> str:
    cues = [f"{i}\n{_clock(s['start'], ',')} --> {_clock(s['end'], ',')}\n{s['caption']}\n"
            for i, s in enumerate(segments, 1)]
    return "\n".join(cues)


def to_vtt(segments: list[dict]) -> str:
    cues = [f"{_clock(s['start'], '.')} --> {_clock(s['end'], '.')}\n{s['caption']}\n" for s in segments]
    return "WEBVTT\n\n" + "\n".join(cues)


def write_subtitles(segments: list[dict], kind: str, path: Path) -> Path:
    """Written whole through a temporary file: a crash never leaves half a subtitle file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(to_srt(segments) if kind == "srt" else to_vtt(segments), encoding="utf-8")
    temporary.replace(path)
    return path


class SubtitleNames:
    """`<dir>/<video name>.srt`, unless two videos of this run share a name: then the second gets a suffix."""

    def __init__(self, directory: Path) -> None:
        self.directory, self.owners = directory, {}

    def path_for(self, video: str, kind: str) -> Path:
        import hashlib

        name = f"{Path(video).stem}.{kind}"
        if self.owners.setdefault(name, video) != video:
            name = f"{Path(video).stem}-{hashlib.sha1(video.encode()).hexdigest()[:8]}.{kind}"
            self.owners[name] = video
        return self.directory / name
