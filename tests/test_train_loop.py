"""The training loop: tiny models learn synthetic tasks; the loop equals a plain PyTorch loop with the
documented optimizer, schedule, clipping and accumulation; seeds, dropout, bf16 and progress output."""

import importlib

import math

import pytest
import torch

import bombus
from bombus.training.loop import _parameter_groups
from training_fixtures import (bert_tok, gpt2_tok, answer_rows, bert_tokenizer, choice_rows, classify_rows, copy_rows, gpt2_tokenizer,
                               one_thread, repeat_rows, tag_rows, tiny_bert, tiny_gpt2)


# task, architecture, rows, model options, train options, the metric that must rise, its floor after training
TASKS = [
    ("causal-lm", "for_causal_language_modeling", copy_rows, {}, {"pack": False}, "accuracy", 0.3),
    ("classify", "for_sequence_classification", classify_rows, {}, {}, "accuracy", 0.85),
    ("tag", "for_token_classification", tag_rows, {"num_labels": 3}, {}, "f1", 0.7),
    ("answer", "for_question_answering", answer_rows, {}, {}, "exact_match", 0.4),
    ("multiple-choice", "for_double_heads", choice_rows, {}, {}, "accuracy", 0.9),
]


@pytest.mark.parametrize("task,arch,rows,model_options,options,metric,floor", TASKS, ids=[t[0] for t in TASKS])
def test_gpt2_learns_synthetic_tasks(gpt2_tok, task, arch, rows, model_options, options, metric, floor):
    model = tiny_gpt2(arch, len(gpt2_tok), **model_options)
    eval_rows = rows(48, seed=1)
    # (batch_size as in training: GPT-2's span logits include padded positions, as in transformers)
    before = bombus.evaluate(model, eval_rows, tokenizer=gpt2_tok, batch_size=16, **options)
    result = bombus.train(model, rows(192, seed=0), task=task, tokenizer=gpt2_tok, eval_data=eval_rows, epochs=3,
                          batch_size=16, learning_rate=3e-3, progress=False, **options)
    after = result.evaluations[-1]
    assert result.step == 3 * 12 and after["step"] == result.step
    assert after["loss"] < 0.6 * before["loss"], (before, after)
    assert after[metric] > before[metric] + 0.2 and after[metric] >= floor, (before, after)
    assert not model.training, "train() leaves the model in eval mode"
    # the result's last evaluation is what evaluate() says about the final weights
    again = bombus.evaluate(model, eval_rows, tokenizer=gpt2_tok, batch_size=16, **options)
    assert again == pytest.approx({k: v for k, v in after.items() if k != "step"}, rel=1e-5)


ENCODER_TASKS = [  # (post-norm BERT learns masked-LM slowly: more epochs, more targets)
    ("masked-lm", "for_masked_language_modeling", repeat_rows, {"epochs": 8, "mlm_probability": 0.3}, "accuracy", 0.3),
    ("multiple-choice", "for_multiple_choice", choice_rows, {}, "accuracy", 0.9),
    ("answer", "for_question_answering", answer_rows, {}, "exact_match", 0.4),
]


@pytest.mark.parametrize("task,arch,rows,options,metric,floor", ENCODER_TASKS, ids=[t[0] for t in ENCODER_TASKS])
def test_bert_learns_synthetic_tasks(bert_tok, task, arch, rows, options, metric, floor):
    model = tiny_bert(arch, len(bert_tok))
    eval_rows = rows(48, seed=1)
    before = bombus.evaluate(model, eval_rows, tokenizer=bert_tok)
    result = bombus.train(model, rows(192, seed=0), task=task, tokenizer=bert_tok, eval_data=eval_rows,
                          batch_size=16, learning_rate=3e-3, progress=False, **{"epochs": 3, **options})
    after = result.evaluations[-1]
    assert after["loss"] < 0.8 * before["loss"], (before, after)
    assert after[metric] > before[metric] + 0.15 and after[metric] >= floor, (before, after)


def _batches(seed: int, n: int = 6, size: int = 4, vocab: int = 50):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ids = torch.randint(1, vocab, (size, 10), generator=g)
        out.append({"input_ids": ids, "labels": (ids == 7).any(-1).long() + (ids == 8).any(-1).long()})
    return out


def _classifier(seed=0, dropout=0.0):
    return tiny_gpt2("for_sequence_classification", 50, dropout=dropout, seed=seed, num_labels=3, pad_token_id=0)


@pytest.mark.parametrize("accumulation,clip,warmup", [(1, 1.0, 0), (2, 0.05, 2), (3, None, 0.5)])
def test_equals_a_plain_pytorch_loop(accumulation, clip, warmup):
    """AdamW with decay on matrices only, linear warm-up then decay, clipping and accumulation, exactly."""
    batches = _batches(0)
    steps, lr, decay = len(batches) // accumulation, 2e-3, 0.5
    model = _classifier()
    reference = _classifier()
    result = bombus.train(model, batches, steps=steps, learning_rate=lr, weight_decay=decay, warmup_steps=warmup,
                          gradient_accumulation_steps=accumulation, max_grad_norm=clip, shuffle=False,
                          progress=False)

    params = list(reference.parameters())
    optimizer = torch.optim.AdamW([{"params": [p for p in params if p.dim() >= 2], "weight_decay": decay},
                                   {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}], lr=lr)
    warm = int(warmup * steps) if isinstance(warmup, float) else warmup
    rates, losses = [], []
    reference.train()
    for step in range(steps):
        rate = lr * ((step + 1) / (warm + 1) if step < warm else (steps - step) / max(1, steps - warm))
        for group in optimizer.param_groups:
            group["lr"] = rate
        total = 0.0
        for batch in batches[step * accumulation:(step + 1) * accumulation]:
            loss = reference(**batch).loss / accumulation
            loss.backward()
            total += float(loss.detach())
        if clip:
            torch.nn.utils.clip_grad_norm_(params, clip)
        optimizer.step()
        optimizer.zero_grad()
        rates.append(rate)
        losses.append(total)
    assert [h["learning_rate"] for h in result.history] == pytest.approx(rates, rel=1e-9)
    assert [h["loss"] for h in result.history] == pytest.approx(losses, rel=1e-5)
    for (name, ours), theirs in zip(model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=5e-6, msg=lambda m: f"{name}: {m}")


def test_weight_decay_skips_biases_and_norms():
    model = _classifier()
    decayed, plain = _parameter_groups(model, 0.3)
    names = {id(p): n for n, p in model.named_parameters()}
    assert decayed["weight_decay"] == 0.3 and plain["weight_decay"] == 0.0
    assert {names[id(p)] for p in plain["params"]} == {n for n, p in model.named_parameters()
                                                       if n.endswith("bias") or "norm" in n}
    assert all(p.dim() == 2 for p in decayed["params"])
    assert len(decayed["params"]) + len(plain["params"]) == len(list(model.parameters()))


def test_seeded_reproducible_and_dropout_only_while_training():
    batches = _batches(1)
    modes = []

    def run(seed):
        model = _classifier(dropout=0.3)
        model.register_forward_hook(lambda m, args, out: modes.append(m.training))
        result = bombus.train(model, batches, epochs=2, learning_rate=1e-3, seed=seed, progress=False)
        return model, [h["loss"] for h in result.history]

    model, a = run(seed=5)
    assert all(modes) and len(modes) == 12, "every training forward runs in train mode"
    _, b = run(seed=5)
    _, c = run(seed=6)
    assert a == b, "the same seed gives the same run"
    assert a != c, "dropout draws follow the seed"
    assert not model.training
    with torch.no_grad():  # eval mode: dropout off, outputs deterministic
        first, second = (model(input_ids=batches[0]["input_ids"]).logits for _ in range(2))
    assert torch.equal(first, second)


def test_bf16_autocast():
    batches = _batches(2)
    seen = []
    for bf16 in (False, True):
        model = _classifier()
        model.score.register_forward_hook(lambda m, args, out: seen.append(out.dtype))
        result = bombus.train(model, batches, epochs=4, learning_rate=3e-3, bf16=bf16, progress=False)
        assert result.history[-1]["loss"] < result.history[0]["loss"]
        assert model.dtype == torch.float32  # weights (and optimizer state) stay float32
    assert set(seen[:24]) == {torch.float32} and set(seen[24:]) == {torch.bfloat16}


def test_fp16_autocast_with_a_gradient_scaler_equals_the_plain_amp_recipe():
    """fp16: float16 autocast, the loss scaled, gradients unscaled before clipping, the step taken by the
    scaler: exactly PyTorch's documented AMP loop (on the CPU here; the device follows the model)."""
    batches = _batches(2)
    model, reference = _classifier(), _classifier()
    seen = []
    model.score.register_forward_hook(lambda m, args, out: seen.append(out.dtype))
    result = bombus.train(model, batches, epochs=2, learning_rate=3e-3, weight_decay=0.0, max_grad_norm=0.5,
                          fp16=True, shuffle=False, progress=False)
    assert set(seen) == {torch.float16} and model.dtype == torch.float32

    params = list(reference.parameters())
    optimizer = torch.optim.AdamW([{"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.0},
                                   {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}], lr=3e-3)
    scaler = torch.amp.GradScaler("cpu")
    steps = 2 * len(batches)
    reference.train()
    for step, batch in enumerate(batches * 2):
        for group in optimizer.param_groups:
            group["lr"] = 3e-3 * (steps - step) / steps
        with torch.autocast("cpu", dtype=torch.float16):
            loss = reference(**batch).loss
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], 0.5)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad()
    for (name, ours), theirs in zip(model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=5e-6, msg=lambda m: f"{name}: {m}")


def test_fp16_needs_float32_weights_and_excludes_bf16():
    with pytest.raises(bombus.errors.TrainingError, match="choose one"):
        bombus.train(_classifier(), _batches(0), steps=1, bf16=True, fp16=True, progress=False)
    with pytest.raises(bombus.errors.TrainingError, match="float32 weights.*torch.float16"):
        bombus.train(_classifier().half(), _batches(0), steps=1, fp16=True, progress=False)


def test_progress_lines_bar_and_silence(capsys):
    batches = _batches(3, n=4)
    bombus.train(_classifier(), batches, progress="lines", log_every=2)
    err = capsys.readouterr().err
    assert "step 2/4 loss" in err and "step 4/4" in err and "tokens/s" in err
    bombus.train(_classifier(), batches, progress=False)
    assert capsys.readouterr().err == ""
    importlib.import_module("tqdm")
    bombus.train(_classifier(), batches, progress=True)
    assert "4/4" in capsys.readouterr().err


def test_history_and_steps_from_epochs():
    batches = _batches(4, n=5)
    result = bombus.train(_classifier(), batches, epochs=3, gradient_accumulation_steps=2, progress=False)
    assert result.step == math.ceil(15 / 2) == len(result.history)  # accumulation runs across epochs
    assert result.tokens == sum(int(b["input_ids"].numel()) for b in batches) * 3
    assert [h["step"] for h in result.history] == list(range(1, 9))
    assert all(h["grad_norm"] > 0 and h["tokens_per_second"] > 0 for h in result.history)
    assert result.loss == result.history[-1]["loss"] and result.metrics is None
    # an iterator of unknown length needs steps; it stops when the data runs out
    result = bombus.train(_classifier(), iter(batches), steps=100, progress=False)
    assert result.step == 5
