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

from vlmkit.errors import UsageError, VlmkitError
from vlmkit.records import COLUMNS, CaptionRecord, csv_cell, json_text

CSV_FIELDS = COLUMNS  # the record's fields, in order


@dataclass
class Journal:
    path: Path
    kind: str  # "jsonl" or "csv"
    done: set[str] = field(default_factory=set)  # videos with a good record
    failed: set[str] = field(default_factory=set)  # videos whose last record is an error
    made_with: set[tuple[str, str]] = field(default_factory=set)  # (models, prompt) of the records read
    _file: io.TextIOBase | None = None

    @classmethod
    def open(cls, path: str | Path, *, retry_errors: bool = False) -> Journal:
        path = Path(path)
        kind = "csv" if path.suffix.lower() == ".csv" else "jsonl"
        journal = cls(path, kind)
        if path.exists():
            journal._recover(retry_errors)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            journal._file = path.open("a", encoding="utf-8", newline="")
            if kind == "csv" and path.stat().st_size == 0:
                journal._write_line(csv_line(CSV_FIELDS))
        except OSError as exc:
            raise UsageError(f"Cannot write the output {path}: {exc.strerror or exc}",
                             "Pass an --output in a directory you can write to.") from None
        return journal

    def write(self, record: CaptionRecord | dict) -> None:
        data = record.to_dict() if isinstance(record, CaptionRecord) else record
        if self.kind == "csv":
            self._write_line(csv_line(data))
        else:
            self._write_line(json_text(data) + "\n")
        (self.done if data["status"] == "ok" else self.failed).add(data["video"])

    def check_same_run(self, models: dict[str, str], prompt: str) -> None:
        """Resuming with another model or prompt would mix two datasets in one file."""
        if self.made_with and (_models_text(models), prompt) not in self.made_with:
            recorded_models, recorded_prompt = sorted(self.made_with)[0]
            raise UsageError(
                f"{self.path} holds captions made with {recorded_models} and the prompt {recorded_prompt!r}; "
                f"this run uses {_models_text(models)} and {prompt!r}",
                "Resume with the same models and --prompt, or pass another --output.")

    def close(self) -> None:
        if self._file:
            try:
                self._file.close()
            except OSError:  # the write that failed has already been reported
                pass
            self._file = None

    def _write_line(self, line: str) -> None:
        assert self._file is not None
        try:
            self._file.write(line)
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as exc:  # a full disk, a vanished network drive
            raise VlmkitError(f"Writing {self.path} failed: {exc.strerror or exc}",
                              "Every record before this one is on disk: free space, then rerun the same "
                              "command to resume.") from None

    def _recover(self, retry_errors: bool) -> None:
        """Read what a previous run left; cut a partial last line; drop errors that will be retried.

        Only a file vlmkit wrote is touched: anything else is refused before a byte changes.
        """
        try:
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"Cannot read the existing output {self.path}: {exc}", _NOT_OURS_HINT) from None
        lines = text.splitlines(keepends=True)
        header = lines[:1] if self.kind == "csv" else []
        if header and header[0] != csv_line(CSV_FIELDS):
            raise UsageError(f"{self.path} is not a vlmkit output (its header is not vlmkit's)", _NOT_OURS_HINT)
        if lines[len(header):] and not lines[-1].endswith("\n"):
            if not (header or lines[-1].startswith(_JSONL_START)):
                raise UsageError(f"{self.path}:{len(lines)} is not a vlmkit record", _NOT_OURS_HINT)
            lines.pop()  # the line a killed run was writing
        entries = [(line, self._parse(line, number))
                   for number, line in enumerate(lines[len(header):], len(header) + 1)]
        for _, record in entries:
            (self.done if record.ok else self.failed).add(record.video)
            self.made_with.add((_models_text(record.models), record.prompt))
        self.failed -= self.done
        if retry_errors and self.failed:
            entries = [(line, record) for line, record in entries if record.ok]
            self.failed = set()
        new_text = "".join(header + [line for line, _ in entries])
        if new_text != text:  # rewrite atomically: a crash here leaves the old file whole
            temporary = self.path.with_name(self.path.name + ".tmp")
            temporary.write_text(new_text, encoding="utf-8")
            os.replace(temporary, self.path)

    def _parse(self, line: str, number: int) -> CaptionRecord:
        try:
            if self.kind == "csv":
                record = CaptionRecord.from_row(next(csv.reader([line])))
            else:
                data = json.loads(line)
                if not isinstance(data, dict):
                    raise ValueError
                record = CaptionRecord.from_dict(data)
            if not (record.video and isinstance(record.models, dict)):
                raise ValueError
            return record
        except (ValueError, TypeError, StopIteration):
            raise UsageError(f"{self.path}:{number} is not a vlmkit record", _NOT_OURS_HINT) from None


_NOT_OURS_HINT = "vlmkit resumes only a file it wrote, and never changes another; pass another --output."
_JSONL_START = f'{{"{COLUMNS[0]}": '  # every record vlmkit writes starts so (the record's first field)


def _models_text(models: dict[str, str]) -> str:
    return json.dumps(models, sort_keys=True)


def csv_line(values: list | dict) -> str:
    """One CSV line; a dict is laid out in CSV_FIELDS order."""
    if isinstance(values, dict):
        values = [csv_cell(k, values.get(k)) for k in CSV_FIELDS]
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(values)
    return out.getvalue()
