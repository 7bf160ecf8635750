"""The way to a projector is visible: recommend names `vlmkit train`, --train estimates it, `train --help` is light."""

from __future__ import annotations

import json

from vlmkit.cli.app import main


def run(capsys, *args: str) -> tuple[int, str, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def test_recommend_names_the_two_step_distillation_for_its_pair(capsys):
    code, out, _ = run(capsys, "recommend", "--gpu", "L4", "--json")
    doc = json.loads(out)
    encoder, llm = doc["recommendation"]["encoder"], doc["recommendation"]["llm"]
    teacher = doc["vlm_recommendation"]["vlm"]
    caption_step, train_step = doc["projector_commands"]
    assert caption_step == f"vlmkit caption --vlm {teacher} videos/ -o teacher.jsonl"
    assert train_step.startswith(f"vlmkit train --encoder {encoder} --llm {llm} --data teacher.jsonl --output ")
    code, out, _ = run(capsys, "recommend", "--gpu", "L4")
    assert code == 0 and caption_step in out and train_step in out


def test_recommend_train_estimates_with_the_training_estimator(capsys):
    from vlmkit.memory import estimate_training
    from vlmkit.registry import load_registry

    code, out, _ = run(capsys, "recommend", "--gpu", "H100", "--train", "--train-batch-size", "4", "--pool", "2",
                           "--json")
    doc = json.loads(out)
    registry = load_registry()
    first = doc["training"]["estimates"][0]
    encoder, llm = first["label"].split(" + ")
    expected = estimate_training(registry.encoder(encoder), registry.llm(llm), frames=8, pool=2, batch_size=4,
                                 dtype="bfloat16")
    assert first["total_bytes"] == expected.total_bytes
    pooled = estimate_training(registry.encoder(encoder), registry.llm(llm), frames=8, pool=1, batch_size=4,
                               dtype="bfloat16")
    assert expected.context_tokens < pooled.context_tokens  # pooling counts fewer visual tokens
    assert doc["training"]["batch_size"] == 4 and all("fits" in e for e in doc["training"]["estimates"])
    code, out, _ = run(capsys, "recommend", "--gpu", "H100", "--train")
    assert "Training a projector at 8 frames, --batch-size 8, --pool 1" in out


def test_train_estimate_grows_with_the_batch_and_shrinks_with_pooling():
    from vlmkit.memory import estimate_training
    from vlmkit.registry import load_registry

    registry = load_registry()
    encoder, llm = registry.encoder("siglip-base"), registry.llm("qwen3-8b")

    def total(**kw):
        return estimate_training(encoder, llm, frames=8, dtype="bfloat16", **kw).total_bytes
    assert total(batch_size=8) > total(batch_size=4) > total(batch_size=1)
    assert total(batch_size=8, pool=2) < total(batch_size=8)
    one = estimate_training(encoder, llm, frames=8, dtype="bfloat16")
    assert one.breakdown["weights"] == (encoder.params + llm.params) * 2
    assert one.breakdown["projector"] == (768 * 4096 + 4096 * 4096 + 2 * 4096) * 16
