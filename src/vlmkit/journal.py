"""The output file as a journal: one record per video, appended and synced as each finishes.

A run killed at any moment (SIGKILL included) leaves whole lines plus at most one partial line;
the partial line is cut off when the journal is reopened, and the videos already recorded are
skipped, so no record is ever duplicated.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from vlmkit.errors import UsageError

CSV_FIELDS = ["video", "status", "caption", "error", "models", "timestamps", "prompt", "new_tokens",
              "elapsed_seconds", "notes", "segments", "summary"]


@dataclass
class Journal:
    path: Path
    kind: str  # "jsonl" or "csv"
    done: set[str] = field(default_factory=set)  # videos with a good record
    failed: set[str] = field(default_factory=set)  # videos whose last record is an error
    _file: io.TextIOBase | None = None

    @classmethod
    def open(cls, path: str | Path, *, retry_errors: bool = False) -> Journal:
        path = Path(path)
        kind = "csv" if path.suffix.lower() == ".csv" else "jsonl"
        journal = cls(path, kind)
        if path.exists():
            journal._recover(retry_errors)
        path.parent.mkdir(parents=True, exist_ok=True)
        journal._file = path.open("a", encoding="utf-8", newline="")
        if kind == "csv" and path.stat().st_size == 0:
            journal._write_line(csv_line(CSV_FIELDS))
        return journal

    def write(self, record: dict) -> None:
        if self.kind == "csv":
            self._write_line(csv_line(record))
        else:
            self._write_line(json.dumps(record, ensure_ascii=False) + "\n")
        (self.done if record["status"] == "ok" else self.failed).add(record["video"])

    def close(self) -> None:
        if self._file:
            self._file.close()
            self._file = None

    def _write_line(self, line: str) -> None:
        assert self._file is not None
        self._file.write(line)
        self._file.flush()
        os.fsync(self._file.fileno())

    def _recover(self, retry_errors: bool) -> None:
        """Read what a previous run left; cut a partial last line; drop errors that will be retried."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"Cannot read the existing output {self.path}: {exc}",
                             "Resume needs the file an earlier run wrote; pass another --output to start afresh.") from None
        lines = text.splitlines(keepends=True)
        if lines and not lines[-1].endswith("\n"):
            lines.pop()  # the line a killed run was writing
        header = lines[:1] if self.kind == "csv" else []
        entries = [(line, self._parse(line, number)) for number, line in enumerate(lines[len(header):], len(header) + 1)]
        for _, record in entries:
            (self.done if record["status"] == "ok" else self.failed).add(record["video"])
        self.failed -= self.done
        if retry_errors and self.failed:
            entries = [(line, record) for line, record in entries if record["status"] == "ok"]
            self.failed = set()
        new_text = "".join(header + [line for line, _ in entries])
        if new_text != text:  # rewrite atomically: a crash here leaves the old file whole
            temporary = self.path.with_name(self.path.name + ".tmp")
            temporary.write_text(new_text, encoding="utf-8")
            os.replace(temporary, self.path)

    def _parse(self, line: str, number: int) -> dict:
        try:
            if self.kind == "csv":
                record = dict(zip(CSV_FIELDS, next(csv.reader([line]))))
            else:
                record = json.loads(line)
            if not isinstance(record, dict) or not record.get("video") or "status" not in record:
                raise ValueError
            return record
        except (ValueError, StopIteration):
            raise UsageError(f"{self.path}:{number} is not a vlmkit record",
                             "Resume only with a file vlmkit wrote; pass another --output to start afresh.") from None


def csv_line(values: list | dict) -> str:
    """One CSV line; a dict is laid out in CSV_FIELDS order."""
    if isinstance(values, dict):
        values = [_csv_value(values.get(k)) for k in CSV_FIELDS]
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(values)
    return out.getvalue()


def _csv_value(value) -> str:
    """One line per record, so a partial line can be told apart after a crash."""
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return "" if value is None else " ".join(str(value).split())
