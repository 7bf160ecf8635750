"""The output journal: appended records, resume, partial last lines, retried errors, CSV."""

from __future__ import annotations

import json
import os

import pytest

from vlmkit.errors import UsageError
from vlmkit.inputs import collect_videos
from vlmkit.journal import Journal
from vlmkit.subtitles import to_srt, to_vtt
from vlmkit.text_cleanup import strip_stock_opening


def record(video: str, status: str = "ok", caption: str = "a cat") -> dict:
    """A record as vlmkit writes it: `video` first."""
    return {"video": video, "caption": caption if status == "ok" else None, "models": {"vlm": "m"},
            "timestamps": [0.5, 1.5], "prompt": "p", "status": status,
            "error": None if status == "ok" else "corrupt"}


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_records_are_on_disk_as_soon_as_written(tmp_path, suffix):
    path = tmp_path / f"out{suffix}"
    journal = Journal.open(path)
    journal.write(record("/v/a.mp4"))
    assert "/v/a.mp4" in path.read_text()  # flushed before close
    journal.write(record("/v/b.mp4", "error"))
    journal.close()
    reopened = Journal.open(path)
    assert reopened.done == {"/v/a.mp4"} and reopened.failed == {"/v/b.mp4"}
    reopened.close()


def test_a_partial_last_line_is_cut_and_never_duplicated(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_text(json.dumps(record("/v/a.mp4")) + "\n" + '{"video": "/v/b.mp4", "sta')
    journal = Journal.open(path)
    assert journal.done == {"/v/a.mp4"}
    journal.write(record("/v/b.mp4"))
    journal.close()
    lines = path.read_text().splitlines()
    assert [json.loads(line)["video"] for line in lines] == ["/v/a.mp4", "/v/b.mp4"]


def test_retry_errors_drops_the_old_error_records(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in [record("/v/a.mp4"), record("/v/b.mp4", "error")]))
    journal = Journal.open(path, retry_errors=True)
    assert journal.failed == set() and journal.done == {"/v/a.mp4"}
    journal.write(record("/v/b.mp4"))
    journal.close()
    videos = [json.loads(line)["video"] for line in path.read_text().splitlines()]
    assert videos == ["/v/a.mp4", "/v/b.mp4"]


@pytest.mark.parametrize("name, text", [
    ("out.jsonl", "hello\n"),
    ("out.jsonl", '{"my": "precious data"}'),  # no final newline: not a half-written record of ours
    ("out.jsonl", '{"video": "a.mp4", "status": "done"}\n'),
    ("people.csv", "name,age\nbob,3\nalice,4\n"),
    ("people.csv", "name,age\nbob,3"),
])
def test_a_file_vlmkit_did_not_write_is_refused_and_left_alone(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    for retry_errors in (False, True):
        with pytest.raises(UsageError, match="not a vlmkit"):
            Journal.open(path, retry_errors=retry_errors)
    assert path.read_text() == text  # nothing already written is lost


def test_resuming_with_another_model_or_prompt_is_refused(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_text(json.dumps(record("/v/a.mp4")) + "\n")
    journal = Journal.open(path)
    journal.check_same_run({"vlm": "m"}, "p")
    with pytest.raises(UsageError, match="this run uses {\"vlm\": \"other\"}"):
        journal.check_same_run({"vlm": "other"}, "p")
    with pytest.raises(UsageError, match="prompt"):
        journal.check_same_run({"vlm": "m"}, "Count the cars.")
    journal.close()


def test_an_unwritable_output_is_a_usage_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="Cannot write the output"):
        Journal.open(tmp_path / "file" / "out.jsonl")


def test_csv_keeps_one_line_per_record(tmp_path):
    path = tmp_path / "out.csv"
    journal = Journal.open(path)
    journal.write(record("/v/a.mp4", caption="line one\nline two, with a comma"))
    journal.close()
    lines = path.read_text().splitlines()
    assert len(lines) == 2 and lines[0].startswith("video,status,caption")
    assert Journal.open(path).done == {"/v/a.mp4"}


def test_collect_videos_from_files_directories_and_manifests(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    for name in ["d/a.mp4", "d/sub/b.MKV", "d/notes.txt", "c.webm"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "list.txt").write_text("# comment\nc.webm\n\nmissing.mp4\n")
    (tmp_path / "list.jsonl").write_text('{"video": "d/a.mp4", "label": 3}\n')
    found = collect_videos([tmp_path / "d"], [tmp_path / "list.txt", tmp_path / "list.jsonl"])
    assert found == [str(tmp_path / "d/a.mp4"), str(tmp_path / "d/sub/b.MKV"), str(tmp_path / "c.webm"),
                     str(tmp_path / "missing.mp4")]


def test_bad_manifest_lines_name_the_line(tmp_path):
    (tmp_path / "list.jsonl").write_text('{"video": "a.mp4"}\n{"path": "b.mp4"}\n')
    with pytest.raises(UsageError, match="list.jsonl:2"):
        collect_videos([], [tmp_path / "list.jsonl"])
    with pytest.raises(UsageError, match="Manifest not found"):
        collect_videos([], [tmp_path / "nope.txt"])


def test_subtitles():
    segments = [{"start": 0.0, "end": 10.0, "caption": "A dog runs."},
                {"start": 10.0, "end": 3725.5, "caption": "It sleeps."}]
    assert to_srt(segments) == ("1\n00:00:00,000 --> 00:00:10,000\nA dog runs.\n\n"
                                "2\n00:00:10,000 --> 01:02:05,500\nIt sleeps.\n")
    assert to_vtt(segments).startswith("WEBVTT\n\n00:00:00.000 --> 00:00:10.000\nA dog runs.\n")


@pytest.mark.parametrize("before, after", [
    ("The video shows a red car turning left.", "A red car turning left."),
    ("In this video, a man cooks pasta.", "A man cooks pasta."),
    ("This clip depicts two cats.", "Two cats."),
    ("The video begins with a sunrise.", "A sunrise."),
    ("A dog runs on the beach.", "A dog runs on the beach."),
    ("The videographer walks.", "The videographer walks."),
])
def test_strip_stock_opening(before, after):
    assert strip_stock_opening(before) == after


def test_a_named_directory_without_videos_is_reported(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "looks.mp4").mkdir()  # a directory with a video's name
    said = []
    assert collect_videos([tmp_path / "empty", tmp_path / "looks.mp4"], warn=said.append) == []
    assert len(said) == 2 and all("no videos in it" in message for message in said)


def test_a_full_disk_is_one_clear_error(tmp_path):
    from vlmkit.errors import VlmkitError

    journal = Journal.open(tmp_path / "out.jsonl")
    journal.write(record("/v/a.mp4"))
    journal._file.close()
    journal._file = open("/dev/full", "w")  # every write fails with ENOSPC
    with pytest.raises(VlmkitError, match="No space left on device") as info:
        journal.write(record("/v/b.mp4"))
    assert "rerun the same command" in info.value.hint
    assert json.loads((tmp_path / "out.jsonl").read_text())["video"] == "/v/a.mp4"


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_each_record_is_fsynced_after_it_is_written(tmp_path, monkeypatch, suffix):
    """A flush only reaches the OS: without fsync a power cut loses records the user was told are safe.

    A power cut cannot be simulated, so os.fsync is the seam: each call must be on the journal's own
    file, after the line is in it (the file's size at the sync is the size with the record).
    """
    path = tmp_path / f"out{suffix}"
    real_fsync = os.fsync
    synced: list[tuple[int, int]] = []  # (inode, size of the file when it was synced)

    def fsync(fd: int) -> None:
        stat = os.fstat(fd)
        synced.append((stat.st_ino, stat.st_size))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    journal = Journal.open(path)
    header = [(path.stat().st_ino, path.stat().st_size)] if suffix == ".csv" else []
    assert synced == header  # the CSV header is a line the file needs as much as any record
    for i, status in enumerate(["ok", "error", "ok"]):
        journal.write(record(f"/v/{i}.mp4", status))
        # one sync per record, on this file, with the whole record already in it
        assert len(synced) == len(header) + i + 1 and synced[-1] == (path.stat().st_ino, path.stat().st_size)
        assert path.read_text().endswith("\n") and f"/v/{i}.mp4" in path.read_text().splitlines()[-1]
    journal.close()


def test_a_csv_record_reads_back_field_for_field(tmp_path):
    """One line per record; None is empty; lists and dicts are JSON with their text kept; models sorted."""
    import csv

    from vlmkit.journal import CSV_FIELDS

    path = tmp_path / "out.csv"
    journal = Journal.open(path)
    full = record("/v/é.mp4", caption="Un café,\n  deux\tcafés") | {
        "models": {"llm": "b", "encoder": "a"}, "new_tokens": 7, "elapsed_seconds": 1.5, "notes": ["réessayé"],
        "segments": [{"start": 0.0, "end": 3.0, "caption": "thé"}], "summary": None}
    journal.write(full)
    journal.close()
    header, row = list(csv.reader(path.read_text(encoding="utf-8").splitlines()))
    assert header == CSV_FIELDS
    got = dict(zip(header, row))
    assert got == {"video": "/v/é.mp4", "status": "ok", "caption": "Un café, deux cafés", "error": "",
                   "models": '{"encoder": "a", "llm": "b"}', "timestamps": "[0.5, 1.5]", "prompt": "p",
                   "new_tokens": "7", "elapsed_seconds": "1.5", "notes": '["réessayé"]',
                   "segments": '[{"start": 0.0, "end": 3.0, "caption": "thé"}]', "summary": ""}


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_resuming_the_same_run_is_accepted_whatever_the_key_order(tmp_path, suffix):
    path = tmp_path / f"out{suffix}"
    journal = Journal.open(path)
    journal.write(record("/v/a.mp4") | {"models": {"llm": "b", "encoder": "a"}})
    journal.close()
    reopened = Journal.open(path)
    reopened.check_same_run({"encoder": "a", "llm": "b"}, "p")  # no error: the same models and prompt
    with pytest.raises(UsageError, match="holds captions made with"):
        reopened.check_same_run({"encoder": "a", "llm": "c"}, "p")
    reopened.close()


def test_recovery_keeps_every_whole_line_exactly(tmp_path):
    path = tmp_path / "out.jsonl"
    lines = [json.dumps(record(f"/v/{i}.mp4", "error" if i == 1 else "ok")) + "\n" for i in range(3)]
    path.write_text("".join(lines) + '{"video": "/v/3.mp4", "sta')
    Journal.open(path).close()
    assert path.read_text() == "".join(lines)
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]  # no temporary file left behind


@pytest.mark.parametrize("suffix, bad, where", [
    (".jsonl", {"video": "/v/b.mp4", "status": "done", "models": {}, "prompt": "p", "timestamps": []}, 3),
    (".jsonl", {"video": "/v/b.mp4", "status": "ok"}, 3),  # keys missing
    (".jsonl", {"video": "", "status": "ok", "models": {}, "prompt": "p", "timestamps": []}, 3),
    (".csv", {"video": "/v/b.mp4", "status": "done"}, 4),  # the header is line 1
])
def test_a_bad_record_is_refused_with_its_line_number(tmp_path, suffix, bad, where):
    from vlmkit.journal import csv_line

    path = tmp_path / f"out{suffix}"
    journal = Journal.open(path)
    for i in range(2):
        journal.write(record(f"/v/{i}.mp4"))
    journal.close()
    with path.open("a") as f:
        f.write(csv_line(bad) if suffix == ".csv" else json.dumps(bad) + "\n")
    before = path.read_text()
    with pytest.raises(UsageError, match=f"{path.name}:{where} is not a vlmkit record"):
        Journal.open(path)
    assert path.read_text() == before


def test_a_record_with_exactly_the_needed_keys_is_read(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_text(json.dumps({"video": "/v/a.mp4", "status": "ok", "models": {}, "prompt": "p",
                                "timestamps": []}) + "\n")
    journal = Journal.open(path)
    assert journal.done == {"/v/a.mp4"}
    journal.close()


def test_a_new_journal_in_a_new_directory_tracks_what_it_wrote(tmp_path):
    path = tmp_path / "runs" / "today" / "out.jsonl"  # neither directory exists yet
    journal = Journal.open(path)
    assert journal.kind == "jsonl" and Journal.open(tmp_path / "x.CSV").kind == "csv"
    journal.write(record("/v/a.mp4"))
    journal.write(record("/v/b.mp4", "error"))
    assert (journal.done, journal.failed) == ({"/v/a.mp4"}, {"/v/b.mp4"})  # without reopening
    journal.close()
    assert [json.loads(line)["video"] for line in path.read_text().splitlines()] == ["/v/a.mp4", "/v/b.mp4"]


def test_jsonl_keeps_text_readable(tmp_path):
    path = tmp_path / "out.jsonl"
    journal = Journal.open(path)
    journal.write(record("/v/été.mp4", caption="Un café"))
    journal.close()
    assert '"caption": "Un café"' in path.read_text(encoding="utf-8")  # not \u00e9


def test_a_caption_record_is_written_as_its_fields(tmp_path):
    from vlmkit.records import CaptionRecord

    journal = Journal.open(tmp_path / "out.jsonl")
    record = CaptionRecord(video="/v/a.mp4", caption="A red ball.", models={"vlm": "tiny"}, prompt="Describe.")
    journal.write(record)
    journal.close()
    assert json.loads((tmp_path / "out.jsonl").read_text()) == record.to_dict()
    assert journal.done == {"/v/a.mp4"}


UTF8_UNDER_AN_ASCII_LOCALE = r"""
import sys
from vlmkit.journal import Journal
path = sys.argv[1]
journal = Journal.open(path)  # recovers the torn last line: read, then rewritten
journal.write({"video": "/v/\u00e9.mp4", "status": "ok", "caption": "Un caf\u00e9, \u65e5\u672c",
               "models": {"vlm": "x"}, "prompt": "D\u00e9cris."})
journal.close()
print(sorted(Journal.open(path).done))
"""  # ASCII source: the command line itself must survive the ASCII locale


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_the_output_is_utf8_whatever_the_locale(tmp_path, suffix):
    """A C/POSIX locale (ASCII), as in a bare container or cron, or cp1252 on Windows: still UTF-8 files."""
    import subprocess
    import sys

    path = tmp_path / f"out{suffix}"
    journal = Journal.open(path)
    journal.write({"video": "/v/ü.mp4", "status": "ok", "caption": "Über", "models": {"vlm": "x"},
                   "prompt": "Décris."})
    journal.close()
    with path.open("a", encoding="utf-8") as torn:
        torn.write('{"video": "/v/half' if suffix == ".jsonl" else '"/v/half')
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0",
           "PYTHONIOENCODING": "utf-8"}
    run = subprocess.run([sys.executable, "-c", UTF8_UNDER_AN_ASCII_LOCALE, str(path)], env=env,
                         capture_output=True, text=True, encoding="utf-8", check=False)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "['/v/é.mp4', '/v/ü.mp4']"
    text = path.read_bytes().decode("utf-8")  # raises if any byte is not UTF-8
    assert "Un café, 日本" in text and "Über" in text and "half" not in text
