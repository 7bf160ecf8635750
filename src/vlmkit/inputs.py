"""Which videos a run covers: files, directories (recursive, by extension) and manifests."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from vlmkit.errors import UsageError

VIDEO_EXTENSIONS = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".mts",
                              ".m2ts", ".flv", ".wmv", ".3gp", ".ogv"})


def collect_videos(paths: Iterable[str | Path] = (), manifests: Iterable[str | Path] = (),
                   warn=lambda message: None) -> list[str]:
    """Every video once, in a stable order: arguments first, then each manifest's lines.

    A named file is taken whatever its extension (a bad one becomes an error record later);
    inside directories only video extensions count. A missing path is kept, so that the run
    reports it as a failed video instead of silently dropping it.
    """
    found: list[str] = []
    for path in map(Path, paths):
        if path.is_dir():
            inside = sorted(str(p) for p in path.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file())
            if not inside:
                warn(f"{path} is a directory with no videos in it ({', '.join(sorted(VIDEO_EXTENSIONS))})")
            found += inside
        else:
            found.append(str(path))
    for manifest in map(Path, manifests):
        found += read_manifest(manifest)
    return list(dict.fromkeys(found))


def read_manifest(path: Path) -> list[str]:
    """One path per line, or JSONL with a `video` field; relative paths are relative to the manifest."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise UsageError(f"Manifest not found: {path}", "Pass an existing file with --list.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"Cannot read manifest {path}: {exc}", "A manifest is UTF-8 text.") from None
    videos = []
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("{"):
            line = _video_field(line, path, number)
        video = Path(line).expanduser()
        videos.append(str(video if video.is_absolute() else path.parent / video))
    return videos


def _video_field(line: str, path: Path, number: int) -> str:
    try:
        value = json.loads(line).get("video")
    except (json.JSONDecodeError, AttributeError):
        raise UsageError(f"{path}:{number}: not valid JSON",
                         "Each JSONL line is an object with a \"video\" field.") from None
    if not isinstance(value, str) or not value:
        raise UsageError(f"{path}:{number}: no \"video\" field", "Each JSONL line needs \"video\": \"path\".")
    return value


def split_unreadable(paths: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """The paths that can be opened, and (path, why) for those that cannot: checked before any model loads."""
    readable, unreadable = [], []
    for path in paths:
        if not os.path.exists(path):
            unreadable.append((path, "no such file"))
        elif os.path.isdir(path):
            unreadable.append((path, "a directory"))
        elif not os.access(path, os.R_OK):
            unreadable.append((path, "permission denied"))
        else:
            readable.append(path)
    return readable, unreadable
