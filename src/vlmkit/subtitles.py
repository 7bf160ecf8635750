"""Dense captions as subtitle files: SRT and WebVTT."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
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


OWNERS_FILE = ".vlmkit-subtitles.json"


class SubtitleNames:
    """Where each video's subtitle file goes: `<dir>/<video name>.srt`, never over a file vlmkit did not
    write for this same video.

    `<dir>/.vlmkit-subtitles.json` records, across runs, which video each subtitle file vlmkit wrote
    belongs to. A name that is taken (by a file vlmkit did not write, or by another video's) goes to
    `<video name>-<hash of the video's path>.srt`, then `-2`, `-3`... A rerun for the same video
    finds its own file again and replaces it.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.owners_path = self.directory / OWNERS_FILE
        self.owners: dict[str, str] = self._read_owners()

    def path_for(self, video: str, kind: str) -> Path:
        stem = Path(video).stem
        digest = hashlib.sha1(os.fsencode(video)).hexdigest()[:8]
        names = itertools.chain([f"{stem}.{kind}", f"{stem}-{digest}.{kind}"],
                                (f"{stem}-{digest}-{n}.{kind}" for n in itertools.count(2)))
        for name in names:
            owner = self.owners.get(name)
            if owner == video:
                return self.directory / name
            if owner is None and not os.path.lexists(self.directory / name):
                self.owners[name] = video  # claimed before the file is written: a crash leaves it ours
                self._write_owners()
                return self.directory / name
        raise AssertionError("unreachable: the names never run out")

    def _read_owners(self) -> dict[str, str]:
        try:
            owners = json.loads(self.owners_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return {k: v for k, v in owners.items() if isinstance(v, str)} if isinstance(owners, dict) else {}

    def _write_owners(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        temporary = self.owners_path.with_name(self.owners_path.name + ".tmp")
        temporary.write_text(json.dumps(self.owners, indent=1, sort_keys=True), encoding="utf-8")  # ASCII escapes
        temporary.replace(self.owners_path)
