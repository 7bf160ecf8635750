"""One definition of a caption record: dict and CSV round trips, and the journal's columns are its fields."""

from __future__ import annotations

import csv
import json
from dataclasses import fields

import pytest

from vlmkit.journal import CSV_FIELDS, Journal, csv_line
from vlmkit.records import CaptionRecord, Status

DENSE = CaptionRecord(video="/v/a.mp4", caption="A cat sleeps, then wakes.", models={"vlm": "m"},
                      timestamps=[0.5, 1.5, 2.5], prompt="What happens?", new_tokens=12, elapsed_seconds=0.25,
                      notes=["CUDA out of memory with 8 frames; retried with 4"],
                      segments=[{"start": 0.0, "end": 10.0, "caption": "A cat sleeps."}], summary="A cat naps.")
FAILED = CaptionRecord(video="/v/b.mp4", status="error", error="corrupt file", models={"encoder": "e", "llm": "l"},
                       prompt="p")


@pytest.mark.parametrize("record", [DENSE, FAILED])
def test_to_dict_from_dict_round_trip_through_json(record):
    data = json.loads(json.dumps(record.to_dict()))
    assert data["status"] in ("ok", "error") and list(data)[0] == "video"
    assert CaptionRecord.from_dict(data) == record


@pytest.mark.parametrize("record", [DENSE, FAILED])
def test_to_row_from_row_round_trip_through_csv(record):
    (row,) = csv.reader([csv_line(record.to_row())])
    assert CaptionRecord.from_row(row) == record


def test_status_from_a_file_is_the_enum_and_an_unknown_one_is_refused():
    assert FAILED.status is Status.ERROR and not FAILED.ok and DENSE.ok
    with pytest.raises(ValueError):
        CaptionRecord.from_dict(DENSE.to_dict() | {"status": "done"})
    with pytest.raises(ValueError, match="prompt"):
        CaptionRecord.from_dict({k: v for k, v in DENSE.to_dict().items() if k != "prompt"})


def test_the_journal_columns_are_the_record_fields(tmp_path):
    assert CSV_FIELDS == [f.name for f in fields(CaptionRecord)]
    for suffix in (".jsonl", ".csv"):
        path = tmp_path / f"out{suffix}"
        journal = Journal.open(path)
        journal.write(DENSE)
        journal.write(FAILED)
        journal.close()
        lines = path.read_text().splitlines()
        if suffix == ".csv":
            assert next(csv.reader(lines[:1])) == CSV_FIELDS
            assert [CaptionRecord.from_row(row) for row in csv.reader(lines[1:])] == [DENSE, FAILED]
        else:
            assert [CaptionRecord.from_dict(json.loads(line)) for line in lines] == [DENSE, FAILED]
        reopened = Journal.open(path)
        assert reopened.done == {DENSE.video} and reopened.failed == {FAILED.video}
        reopened.close()
