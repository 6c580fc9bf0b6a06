"""Checkpoints: atomic HF-format folders with a weights-only training state; resume continues exactly;
early stopping, best weights, pruning; saved models load in transformers with equal outputs."""

import pytest
import torch
import transformers

import bombus
from bombus.errors import TrainingError
from reference import assert_close
from training_fixtures import (bert_tok, gpt2_tok, bert_tokenizer, classify_rows, gpt2_tokenizer, one_thread, repeat_rows, tiny_bert,
                               tiny_gpt2, write_jsonl)


def _case(name, gpt2_tok, bert_tok, tmp_path):
    """(model factory, tokenizer, train file, eval file, options) of one resumable setup."""
    if name.startswith("classify"):  # shuffled rows, dropout RNG, accumulation across epoch ends
        data = write_jsonl(tmp_path / "train.jsonl", classify_rows(40, 0))
        evals = write_jsonl(tmp_path / "eval.jsonl", classify_rows(16, 1))
        # fp16: the gradient scaler's scale and growth count continue too
        fp16 = {"fp16": True} if name == "classify-fp16" else {}
        return (lambda: tiny_gpt2("for_sequence_classification", len(gpt2_tok), dropout=0.2, seed=3),
                gpt2_tok, data, evals, dict(batch_size=6, gradient_accumulation_steps=2, eval_every=2, steps=11, **fp16))
    # masked-LM: the masking RNG must continue too
    data = write_jsonl(tmp_path / "train.jsonl", repeat_rows(40, 0))
    evals = write_jsonl(tmp_path / "eval.jsonl", repeat_rows(16, 1))
    return (lambda: tiny_bert("for_masked_language_modeling", len(bert_tok), seed=3), bert_tok, data, evals,
            dict(batch_size=8, eval_every=3, steps=9))


def strip(history):
    return [{k: v for k, v in r.items() if k != "tokens_per_second"} for r in history]  # timing differs


@pytest.mark.parametrize("name", ["classify-dropout", "classify-fp16", "masked-lm"])
def test_resume_continues_exactly(tmp_path, gpt2_tok, bert_tok, name):
    make, tok, data, evals, options = _case(name, gpt2_tok, bert_tok, tmp_path)
    full = make()
    uninterrupted = bombus.train(full, data, tokenizer=tok, eval_data=evals, learning_rate=2e-3, seed=7,
                                 checkpoint_every=3, output_dir=tmp_path / "run", progress=False, **options)
    assert [p.rsplit("-", 1)[-1] for p in uninterrupted.checkpoints] == ["3", "6", "9"][: options["steps"] // 3]
    if options.get("fp16"):  # the gradient scaler's state is saved (and restored on resume)
        state = torch.load(tmp_path / "run" / "checkpoint-3" / "training_state.pt", weights_only=True)
        assert state["scaler"]["scale"] > 0 and "_growth_tracker" in state["scaler"]
    for start in (3, 6):
        resumed_model = make()
        torch.manual_seed(123)  # whatever the global RNG holds now, the checkpoint's state wins
        resumed = bombus.train(resumed_model, data, tokenizer=tok, eval_data=evals, learning_rate=2e-3, seed=7,
                               resume_from=tmp_path / "run" / f"checkpoint-{start}", progress=False, **options)
        assert resumed.step == uninterrupted.step
        assert strip(resumed.history) == strip(uninterrupted.history), f"from step {start}"
        assert resumed.evaluations == uninterrupted.evaluations
        for (n, a), b in zip(resumed_model.state_dict().items(), full.state_dict().values()):
            assert torch.equal(a, b), f"{n} differs after resuming from step {start}"


def test_resume_latest_and_errors(tmp_path, gpt2_tok):
    data = write_jsonl(tmp_path / "train.jsonl", classify_rows(24, 0))
    make = lambda: tiny_gpt2("for_sequence_classification", len(gpt2_tok), seed=1)
    options = dict(tokenizer=gpt2_tok, batch_size=4, steps=9, progress=False, output_dir=tmp_path / "out")
    first = bombus.train(make(), data, checkpoint_every=3, **options)
    # 6 batches an epoch: checkpoint-6 sits at an epoch's end, and the run goes on in the next one
    boundary = bombus.train(make(), data, resume_from=tmp_path / "out" / "checkpoint-6", **options)
    assert strip(boundary.history) == strip(first.history)
    again = bombus.train(make(), data, resume_from=True, **options)  # the newest: checkpoint-9, nothing left
    assert again.step == 9 and again.history == first.history
    with pytest.raises(TrainingError, match="no checkpoint"):
        bombus.train(make(), data, resume_from=True, **{**options, "output_dir": tmp_path / "empty"})
    with pytest.raises(TrainingError, match="training_state.pt"):
        bombus.train(make(), data, resume_from=tmp_path / "out", **options)  # the final model, not a checkpoint
    wider = tiny_gpt2("for_sequence_classification", len(gpt2_tok) + 5, seed=1)
    with pytest.raises(TrainingError, match="does not fit"):
        bombus.train(wider, data, resume_from=tmp_path / "out" / "checkpoint-3", **options)


@pytest.mark.filterwarnings("ignore:this tokenizer has no pad token")
def test_checkpoint_files_state_and_transformers_parity(tmp_path, gpt2_tok):
    data = write_jsonl(tmp_path / "train.jsonl", classify_rows(32, 0))
    model = tiny_gpt2("for_sequence_classification", len(gpt2_tok), seed=2)
    result = bombus.train(model, data, tokenizer=gpt2_tok, batch_size=8, steps=8, checkpoint_every=4,
                          keep_checkpoints=1, output_dir=tmp_path / "out", progress=False)
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["checkpoint-8"], "keep_checkpoints=1 prunes"
    assert not [p for p in out.rglob(".*")], "no temporary files or folders are left"
    folder = out / "checkpoint-8"
    assert {"config.json", "model.safetensors", "tokenizer.json", "training_state.pt"} <= {p.name for p in
                                                                                          folder.iterdir()}
    state = torch.load(folder / "training_state.pt", weights_only=True)
    assert state["step"] == 8 and state["position"] == {"epoch": 2, "batch": 0}
    assert {"optimizer", "scheduler", "rng", "data_rng", "history"} <= set(state)
    assert state["scheduler"]["last_epoch"] == 8
    # the labels the data named are in the saved config, for transformers too
    reference = transformers.GPT2ForSequenceClassification.from_pretrained(folder).eval()
    assert reference.config.id2label == {0: "no", 1: "yes"} and reference.config.pad_token_id == 0
    batch = gpt2_tok(["the dog runs", "a red bird sits near one big fish"])
    with torch.no_grad():
        ours = model(**batch).logits
        assert_close(ours, reference(**batch).logits, what="checkpoint in transformers")
        assert_close(ours, bombus.load_model(out)(**batch).logits, what="final model in bombus")
    assert result.checkpoints == [str(out / "checkpoint-4"), str(folder)]
    assert bombus.load_tokenizer(out).encode("the dog") == gpt2_tok.encode("the dog")


def test_early_stopping_and_restore_best(tmp_path, gpt2_tok):
    rows = classify_rows(64, 0)
    flipped = [{**r, "label": "no" if r["label"] == "yes" else "yes"} for r in rows]
    # training on flipped labels makes the evaluation worse after the first steps
    model = tiny_gpt2("for_sequence_classification", len(gpt2_tok), seed=4)
    result = bombus.train(model, flipped, tokenizer=gpt2_tok, eval_data=rows, steps=60, batch_size=8,
                          learning_rate=3e-3, eval_every=2, early_stopping_patience=3, restore_best=True,
                          progress=False)
    losses = [e["loss"] for e in result.evaluations]
    assert result.stopped_early and result.step < 60
    best = min(range(len(losses)), key=losses.__getitem__)
    assert len(losses) == best + 1 + 3, "stops after 3 evaluations without improvement"
    assert result.best == result.evaluations[best]
    again = bombus.evaluate(model, rows, tokenizer=gpt2_tok)
    assert again["loss"] == pytest.approx(result.best["loss"], rel=1e-5), "the best weights are restored"
    # a threshold larger than any change: the first evaluation stays the best
    model = tiny_gpt2("for_sequence_classification", len(gpt2_tok), seed=4)
    result = bombus.train(model, rows, tokenizer=gpt2_tok, eval_data=rows, steps=60, batch_size=8,
                          learning_rate=1e-6, eval_every=1, early_stopping_patience=2,
                          early_stopping_metric="accuracy", early_stopping_threshold=0.5, progress=False)
    assert result.stopped_early and result.step == 3 and result.best["step"] == 1
