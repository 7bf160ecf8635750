"""What a caption run produces: one record per video, and the run's summary.

`CaptionRecord` is the one definition of a record: the journal's JSONL keys and CSV columns are
its fields, in their order. Nothing here imports torch, the backends or the journal.
"""

from __future__ import annotations

import json
import re
from dataclasses import MISSING, asdict, dataclass, field, fields
from enum import Enum


class Status(str, Enum):
    OK = "ok"
    ERROR = "error"


@dataclass(frozen=True, kw_only=True)
class CaptionRecord:
    video: str  # absolute path; the first field, so every JSONL record starts `{"video": `
    status: Status = Status.OK
    caption: str | None = None
    error: str | None = None
    models: dict[str, str]  # registry keys: {"vlm": ...} or {"encoder": ..., "llm": ...}
    timestamps: list[float] = field(default_factory=list)
    prompt: str
    new_tokens: int = 0
    elapsed_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    segments: list[dict] | None = None  # dense captioning: [{"start", "end", "caption"}]
    summary: str | None = None  # dense captioning: the whole video in one paragraph

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", Status(self.status))  # "ok" from a file becomes Status.OK

    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    def to_json(self) -> str:
        """One JSON line (without the newline): see `json_text`."""
        return json_text(self.to_dict())

    def _repr_html_(self) -> str:  # Jupyter shows a one-row table instead of the dataclass repr
        from vlmkit.notebook_html import captions_html

        return captions_html([self])

    def to_dict(self) -> dict:
        """Plain JSON types, keys in field order."""
        data = asdict(self)
        data["status"] = self.status.value
        return data

    @classmethod
    def from_dict(cls, data: dict) -> CaptionRecord:
        """The inverse of `to_dict`; unknown keys are ignored, a missing required key is a ValueError."""
        missing = REQUIRED_KEYS - data.keys()
        if missing:
            raise ValueError(f"a caption record needs {', '.join(sorted(missing))}")
        return cls(**{k: data[k] for k in COLUMNS if k in data})

    def to_row(self) -> list[str]:
        """CSV cells in COLUMNS order: lists and dicts as JSON, None as "", text on one line."""
        return [csv_cell(name, value) for name, value in self.to_dict().items()]

    @classmethod
    def from_row(cls, row: list[str]) -> CaptionRecord:
        """The inverse of `to_row` (whitespace inside text was collapsed to single spaces on the way out)."""
        if len(row) != len(COLUMNS):
            raise ValueError(f"a caption record has {len(COLUMNS)} columns, not {len(row)}")
        return cls.from_dict({name: _uncell(name, text) for name, text in zip(COLUMNS, row)})


class Captions(list):
    """What `vlmkit.caption` returns: a plain list of records that Jupyter shows as a table and a summary."""

    def _repr_html_(self) -> str:
        from vlmkit.notebook_html import captions_html

        return captions_html(self)


COLUMNS = [f.name for f in fields(CaptionRecord)]
REQUIRED_KEYS = {f.name for f in fields(CaptionRecord) if f.default is MISSING and f.default_factory is MISSING}
_JSON_COLUMNS = {"models", "timestamps", "notes", "segments"}


# A file name that is not valid UTF-8 reaches Python as a str with lone surrogates (os.fsdecode's
# surrogateescape: the byte 0xff becomes '\udcff'). UTF-8 cannot store those, so records write
# them as the JSON escape `\udcff`, which reads back as the same str: the path still matches the
# file on resume, and `os.fsencode` gives the original bytes.
_SURROGATE = re.compile("[\ud800-\udfff]")
_ESCAPED_SURROGATE = re.compile(r"\\u(d[89a-f][0-9a-f]{2})")


def json_text(data) -> str:
    """JSON that keeps readable text as it is, with lone surrogates as \\uXXXX escapes (valid UTF-8)."""
    return _escape_surrogates(json.dumps(data, ensure_ascii=False))


def _escape_surrogates(text: str) -> str:
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def readable(text: str) -> str:
    """A str for people: the bytes of a name that is not UTF-8 shown as \\xff escapes."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def csv_cell(name: str, value) -> str:
    """One line per record, so a partial line can be told apart after a crash."""
    if value is None:
        return ""
    if isinstance(value, Enum):
        value = value.value
    if name in _JSON_COLUMNS:
        return json_text(value) if name != "models" else _escape_surrogates(
            json.dumps(value, ensure_ascii=False, sort_keys=True))
    return _escape_surrogates(" ".join(str(value).split()))


def _uncell(name: str, text: str):
    if name in _JSON_COLUMNS:
        return json.loads(text) if text else None
    if name == "new_tokens":
        return int(text or 0)
    if name == "elapsed_seconds":
        return float(text or 0)
    text = _ESCAPED_SURROGATE.sub(lambda m: chr(int(m.group(1), 16)), text)
    return text or None if name in ("caption", "error", "summary") else text


@dataclass
class RunSummary:
    captioned: int = 0
    failed: int = 0
    skipped: int = 0  # already recorded by an earlier run of the same output
    elapsed_seconds: float = 0.0
    interrupted: bool = False
    retried_oom: int = 0
    failed_before: int = 0  # of the skipped, how many have an error record (--retry-errors retries them)
    fewer_frames: int = 0  # videos that had fewer distinct frames than asked for (their records say so)
    batch_size: int = 1  # at the end of the run: lower than asked after a batch ran out of memory
    batch_choice: str | None = None  # how the batch size was chosen, e.g. "batch 48: 61.2 of 79.1 GiB (auto)"
    estimate_bytes: int | None = None  # the estimated peak at that batch size (None on a CPU)
    peak_allocated_bytes: int | None = None  # torch.cuda.max_memory_allocated; None on a CPU
    peak_nvml_used_bytes: int | None = None  # the most NVML showed used on the device after a batch; None on a CPU
    workers: list[str] = field(default_factory=list)  # Ray engine: one line per worker (where, which GPU)
    worker_restarts: int = 0  # Ray engine: worker processes that died and were started again
    startup_seconds: float = 0.0  # Ray engine: starting Ray and loading the model on every worker

    @property
    def videos_per_minute(self) -> float:
        """Throughput of captioning: failures (often instant) do not count."""
        return 60 * self.captioned / self.elapsed_seconds if self.elapsed_seconds else 0.0

    def _repr_html_(self) -> str:
        from vlmkit.notebook_html import run_summary_html

        return run_summary_html(self)
