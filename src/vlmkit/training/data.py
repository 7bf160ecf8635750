"""Training samples from the manifests people already have: one (video or image, caption) pair each.

Three formats, told apart by their content:
- vlmkit's own caption records (`vlmkit caption -o teacher.jsonl|.csv`, read with `records.CaptionRecord`):
  error records are skipped,
  dense-caption records give one sample per segment window;
- JSONL or CSV of `{"video" | "image": path, "caption": text}` (CSV may say `path,text`, as Open-Sora's),
  paths relative to the manifest's folder;
- LLaVA conversation JSON (a list) or JSONL rows (Cambrian): the first "gpt" turn is the caption,
  images relative to `--image-folder`.
A row that cannot be used is skipped and reported, never fatal; a manifest with no usable sample is.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from vlmkit.errors import UsageError
from vlmkit.records import COLUMNS, REQUIRED_KEYS, CaptionRecord

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif"}


@dataclass(frozen=True)
class Sample:
    path: str  # absolute
    caption: str
    kind: str = "video"  # "video" or "image" (a one-frame video)
    start: float | None = None  # a segment window of a dense-caption record, seconds
    end: float | None = None

    @property
    def key(self) -> str:
        window = "" if self.start is None else f"@{self.start:g}-{self.end:g}"
        return self.path + window


@dataclass(frozen=True)
class Skipped:
    where: str  # the file (and row) or the video
    reason: str


@dataclass
class Dataset:
    samples: list[Sample] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    def split(self, val_fraction: float) -> tuple[list[Sample], list[Sample]]:
        """(train, validation), held out by a stable hash of the path: the same split on every run."""
        val = [s for s in self.samples if _unit_hash(s.key) < val_fraction]
        held = {s.key for s in val}
        return [s for s in self.samples if s.key not in held], val


def read_datasets(manifests: list[str], image_folder: str | None = None) -> Dataset:
    dataset = Dataset()
    for manifest in manifests:
        path = Path(manifest)
        if not path.is_file():
            raise UsageError(f"--data {manifest}: file not found", "Pass a JSONL, CSV or LLaVA JSON manifest.")
        read = _read_one(path, Path(image_folder) if image_folder else None)
        if not read.samples:
            reasons = "; ".join(sorted({s.reason for s in read.skipped})) or "it is empty"
            raise UsageError(f"--data {manifest}: no usable sample ({reasons})",
                             "Each row needs a \"video\" or \"image\" path that exists and a \"caption\".")
        dataset.samples += read.samples
        dataset.skipped += read.skipped
    return dataset


def _read_one(path: Path, image_folder: Path | None) -> Dataset:
    rows = list(_rows(path))
    out = Dataset()
    for where, row in rows:
        if isinstance(row, Skipped):
            out.skipped.append(row)
            continue
        for item in _samples(row, path.parent, image_folder):
            if isinstance(item, Skipped):
                out.skipped.append(Skipped(f"{where}: {item.where}" if item.where else where, item.reason))
            else:
                out.samples.append(item)
    return out


def _rows(path: Path):
    """(where, row dict or Skipped) for every row of a manifest."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--data {path}: cannot read it ({exc})", "Pass a UTF-8 JSONL, CSV or JSON file.") from None
    if path.suffix.lower() == ".csv":
        lines = list(csv.reader(text.splitlines()))
        header = lines[0] if lines else []
        for number, cells in enumerate(lines[1:], start=2):
            if header == COLUMNS:  # vlmkit's own CSV journal: cells hold JSON where records say so
                try:
                    yield f"{path}:{number}", CaptionRecord.from_row(cells).to_dict()
                except ValueError as exc:
                    yield f"{path}:{number}", Skipped(f"{path}:{number}", f"not a caption record ({exc})")
            else:
                yield f"{path}:{number}", dict(zip(header, cells))
        return
    if path.suffix.lower() == ".json" or text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(f"--data {path}: not valid JSON ({exc})", "LLaVA data is one JSON list of rows.") from None
        if not isinstance(rows, list):
            raise UsageError(f"--data {path}: expected a JSON list of rows", "LLaVA data is one JSON list of rows.")
        for number, row in enumerate(rows):
            yield f"{path}[{number}]", row if isinstance(row, dict) else Skipped(f"{path}[{number}]", "not an object")
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            yield f"{path}:{number}", Skipped(f"{path}:{number}", "not a JSON line")
            continue
        yield f"{path}:{number}", row if isinstance(row, dict) else Skipped(f"{path}:{number}", "not an object")


def _samples(row: dict, base: Path, image_folder: Path | None):
    if "conversations" in row:  # LLaVA
        caption = next((t.get("value") for t in row["conversations"] or [] if isinstance(t, dict)
                        and t.get("from") == "gpt"), None)
        kind = "image" if row.get("image") else "video"
        name = row.get("image") or row.get("video")
        yield _sample(name, caption, kind, image_folder or base)
        return
    segments = None
    if REQUIRED_KEYS <= row.keys():  # a record `vlmkit caption -o` wrote
        try:
            record = CaptionRecord.from_dict(row)
        except (TypeError, ValueError) as exc:
            yield Skipped("", f"not a caption record ({exc})")
            return
        if not record.ok:
            yield Skipped(record.video, f"caption record with status {record.status.value}")
            return
        segments = record.segments
    name = row.get("video") or row.get("image") or row.get("path")
    kind = "image" if row.get("image") or Path(str(name or "")).suffix.lower() in IMAGE_SUFFIXES else "video"
    if segments:  # dense captions: one sample per window
        for segment in segments:
            yield _sample(name, segment.get("caption"), kind, base, segment.get("start"), segment.get("end"))
        return
    yield _sample(name, row.get("caption") or row.get("text"), kind, base)


def _sample(name, caption, kind: str, base: Path, start=None, end=None) -> Sample | Skipped:
    if not name:
        return Skipped("", "no \"video\" or \"image\" path")
    path = os.path.abspath(Path(base) / os.path.expanduser(str(name)))
    if not isinstance(caption, str) or not caption.strip():
        return Skipped(path, "no caption")
    if not os.path.isfile(path):
        return Skipped(path, "file not found")
    return Sample(path, caption.strip(), kind, start, end)


def _unit_hash(text: str) -> float:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") / 2**64
