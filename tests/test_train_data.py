"""Training manifests: the three formats, bad rows skipped and reported, the stable split, options checks."""

from __future__ import annotations

import json

import pytest

from vlmkit.errors import UsageError
from vlmkit.training.data import read_datasets
from vlmkit.training.options import TrainOptions, config_differences


def touch(path):
    path.write_bytes(b"x")
    return path


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_vlmkit_caption_records_skip_errors_and_split_segments(tmp_path, suffix):
    from vlmkit.journal import Journal
    from vlmkit.records import CaptionRecord

    touch(tmp_path / "a.mp4"), touch(tmp_path / "b.mp4"), touch(tmp_path / "c.mp4")
    manifest = tmp_path / f"teacher{suffix}"
    journal = Journal.open(manifest)  # as `vlmkit caption -o teacher.jsonl|.csv` writes them
    for record in [
        CaptionRecord(video=str(tmp_path / "a.mp4"), caption="A red car.", models={"vlm": "x"}, prompt="p"),
        CaptionRecord(video=str(tmp_path / "b.mp4"), status="error", error="cannot decode", models={"vlm": "x"},
                      prompt="p"),
        CaptionRecord(video=str(tmp_path / "c.mp4"), caption="whole", models={"vlm": "x"}, prompt="p",
                      segments=[{"start": 0.0, "end": 10.0, "caption": "A dog."},
                                {"start": 10.0, "end": 20.0, "caption": "A cat."}]),
    ]:
        journal.write(record)
    journal.close()
    data = read_datasets([str(manifest)])
    assert [(s.path, s.caption, s.start, s.end) for s in data.samples] == [
        (str(tmp_path / "a.mp4"), "A red car.", None, None),
        (str(tmp_path / "c.mp4"), "A dog.", 0.0, 10.0), (str(tmp_path / "c.mp4"), "A cat.", 10.0, 20.0)]
    assert [(s.where, s.reason) for s in data.skipped] == [
        (f"{manifest}:{3 if suffix == '.csv' else 2}: {tmp_path / 'b.mp4'}", "caption record with status error")]


def test_csv_and_jsonl_tables_resolve_paths_next_to_the_manifest(tmp_path):
    (tmp_path / "clips").mkdir()
    touch(tmp_path / "clips" / "one.mp4"), touch(tmp_path / "clips" / "two.png")
    (tmp_path / "table.csv").write_text("path,text\nclips/one.mp4,\"A man, walking.\"\nclips/missing.mp4,Gone.\n")
    (tmp_path / "table.jsonl").write_text(json.dumps({"image": "clips/two.png", "caption": "A tree."}) + "\n"
                                          + "not json\n" + json.dumps({"video": "clips/one.mp4"}) + "\n")
    data = read_datasets([str(tmp_path / "table.csv"), str(tmp_path / "table.jsonl")])
    assert [(s.path, s.caption, s.kind) for s in data.samples] == [
        (str(tmp_path / "clips" / "one.mp4"), "A man, walking.", "video"),
        (str(tmp_path / "clips" / "two.png"), "A tree.", "image")]
    assert sorted(s.reason for s in data.skipped) == ["file not found", "no caption", "not a JSON line"]
    assert any("missing.mp4" in s.where for s in data.skipped)


def test_llava_pretrain_json_with_image_folder(tmp_path):
    images = tmp_path / "images" / "00000"
    images.mkdir(parents=True)
    touch(images / "0.jpg")
    rows = [{"id": "0", "image": "00000/0.jpg", "conversations": [
        {"from": "human", "value": "<image>\nRender a clear and concise summary of the photo."},
        {"from": "gpt", "value": "a red bus on a street"}]},
        {"id": "1", "image": "00000/1.jpg", "conversations": [{"from": "human", "value": "<image>"},
                                                              {"from": "gpt", "value": "gone"}]}]
    (tmp_path / "blip_laion_cc_sbu_558k.json").write_text(json.dumps(rows))
    data = read_datasets([str(tmp_path / "blip_laion_cc_sbu_558k.json")], image_folder=str(tmp_path / "images"))
    assert [(s.path, s.caption, s.kind) for s in data.samples] == [
        (str(images / "0.jpg"), "a red bus on a street", "image")]
    assert [s.reason for s in data.skipped] == ["file not found"]


def test_a_manifest_without_usable_samples_is_one_clear_error(tmp_path):
    (tmp_path / "empty.jsonl").write_text(json.dumps({"video": "nope.mp4", "caption": "x"}) + "\n")
    with pytest.raises(UsageError, match="no usable sample \\(file not found\\)"):
        read_datasets([str(tmp_path / "empty.jsonl")])


def test_validation_split_is_stable_and_by_path(tmp_path):
    rows = []
    for i in range(200):
        touch(tmp_path / f"{i}.mp4")
        rows.append({"video": f"{i}.mp4", "caption": "c"})
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = read_datasets([str(tmp_path / "m.jsonl")])
    train, val = data.split(0.1)
    reversed_data = read_datasets([str(tmp_path / "m.jsonl")])
    reversed_data.samples.reverse()
    train2, val2 = reversed_data.split(0.1)
    assert {s.path for s in val} == {s.path for s in val2} and 5 <= len(val) <= 40
    assert len(train) + len(val) == 200


def test_a_different_command_names_each_difference():
    first = TrainOptions(encoder="e", llm="m", data=("a.jsonl",), output="run", lr=1e-3)
    second = TrainOptions(encoder="e", llm="m", data=("a.jsonl", "b.jsonl"), output="run", lr=1e-2,
                          save_every=5, cache_dir="c")
    changed = config_differences(first.to_config(), second)
    assert len(changed) == 2
    assert changed[0].startswith("--data ") and "b.jsonl" in changed[0]
    assert changed[1] == "--lr 0.01 (the run used 0.001)"
    assert config_differences(first.to_config(), first) == []


@pytest.mark.parametrize("change, message", [({"pool": 0}, "--pool"), ({"warmup": 1.5}, "--warmup"),
                                             ({"val_fraction": 1.0}, "--val-fraction"), ({"lr": 0}, "--lr")])
def test_bad_options_are_refused(change, message):
    with pytest.raises(UsageError, match=message):
        TrainOptions(encoder="e", llm="m", data=("a",), output="o", **change).validate()
