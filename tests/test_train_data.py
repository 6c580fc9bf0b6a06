"""Training data: files and rows -> checked, tokenized, padded batches; every bad input is a clear
`TrainingError` raised before the first training step."""

import json

import pytest
import torch

import bombus
from bombus.errors import InputError, TrainingError
from bombus.training.data import Masker, collate, read_rows
from bombus.training.tasks import Metrics
from training_fixtures import (bert_tok, gpt2_tok, answer_rows, bert_tokenizer, choice_rows, classify_rows, gpt2_tokenizer, one_thread,
                               tag_rows, tiny_bert, tiny_gpt2, write_jsonl)


def _untouched(model):
    """A model that fails the test if training ever reaches its forward."""
    def forbid(*args):
        raise AssertionError("training started before the data was checked")

    model.register_forward_pre_hook(forbid)
    return model


@pytest.fixture
def classifier(gpt2_tok):
    return _untouched(tiny_gpt2("for_sequence_classification", len(gpt2_tok), num_labels=3))


BAD_ROWS = [
    ([{"text": "the dog", "label": 1}, {"text": "a cat"}], "row 2 has no 'label' column"),
    ([{"text": "the dog", "label": 1}, {"text": "a cat", "label": 3}],
     r"row 2: label 3 is outside 0..2 .*num_labels=3"),
    ([{"text": "the dog", "label": -1}], r"label -1 is outside 0..2"),
    ([{"text": 5, "label": 1}], "'text' must be a string, found int"),
    ([{"sentence": "the dog", "label": 1}], r"no 'text' column \(columns: sentence, label\)"),
    ([{"text": "x", "label": n} for n in "abcd"], r"4 distinct labels \(a, b, c, d\).*num_labels=3"),
]


@pytest.mark.parametrize("rows,message", BAD_ROWS)
def test_bad_rows_fail_before_training(tmp_path, classifier, gpt2_tok, rows, message):
    with pytest.raises(TrainingError, match=message):
        bombus.train(classifier, rows, tokenizer=gpt2_tok, progress=False)
    # the same rows in a file: the error names the file
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(TrainingError, match=str(path)):
        bombus.train(classifier, path, tokenizer=gpt2_tok, progress=False)
    # and as evaluation data, still before training
    with pytest.raises(TrainingError, match=message):
        bombus.train(classifier, rows[:1], tokenizer=gpt2_tok, eval_data=rows, progress=False)


def test_bad_files(tmp_path, classifier, gpt2_tok):
    (tmp_path / "empty.jsonl").write_text("\n\n")
    (tmp_path / "broken.jsonl").write_text('{"text": "a", "label": 0}\n{"text": \n')
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "data.parquet").write_text("")
    (tmp_path / "ragged.csv").write_text("text,label\nthe dog,1,extra\n")
    cases = {"empty.jsonl": "has no rows", "broken.jsonl": "line 2 is not valid JSON",
             "list.json": "row 1: expected a JSON object", "data.parquet": "unknown type '.parquet'",
             "missing.jsonl": "does not exist", "ragged.csv": "line 2: more fields"}
    for name, message in cases.items():
        with pytest.raises(TrainingError, match=message):
            bombus.train(classifier, tmp_path / name, tokenizer=gpt2_tok, progress=False)
    with pytest.raises(TrainingError, match="data is empty"):
        bombus.train(classifier, [], tokenizer=gpt2_tok, progress=False)
    with pytest.raises(TrainingError, match="needs a tokenizer"):
        bombus.train(classifier, [{"text": "a", "label": 0}], progress=False)
    assert issubclass(TrainingError, InputError)


def test_bad_batches_and_options(classifier):
    good = {"input_ids": torch.tensor([[3, 4]]), "labels": torch.tensor([1])}
    cases = [
        ([{"input_ids": torch.tensor([[3, 4]])}], {}, "batch 1 has no labels"),
        ([good, {"input_ids": torch.tensor([[3, 4]]), "labels": torch.tensor([7])}], {}, "batch 2: label 7 is outside"),
        ([{"input_ids": torch.tensor([[3, 900]]), "labels": torch.tensor([1])}], {}, "resize_token_embeddings"),
        ([good], {"steps": 0}, "steps must be a positive int"),
        ([good], {"batch_size": 1.5}, "batch_size must be a positive int"),
        ([good], {"gradient_accumulation_steps": 0}, "gradient_accumulation_steps"),
        ([good], {"learning_rate": -1}, "learning_rate must be a positive number"),
        ([good], {"eval_every": 2}, "eval_every needs eval_data"),
        ([good], {"checkpoint_every": 2}, "need output_dir"),
        ([good], {"early_stopping_patience": 2, "eval_data": [good]}, "early stopping needs"),
        ([good], {"task": "summarize"}, "unknown task 'summarize'"),
        ([good], {"task": "causal-lm"}, "architecture='for_causal_language_modeling'"),
        (iter([good]), {}, "pass steps="),
        ("not a file.txt", {}, "unknown type"),
        (42, {}, "must be a file path, a list of rows"),
    ]
    for data, options, message in cases:
        with pytest.raises(TrainingError, match=message):
            bombus.train(classifier, data, progress=False, **options)
    generator = (b for b in [good, {"input_ids": torch.tensor([[3, 4]])}])  # checked as it comes
    with pytest.raises(TrainingError, match="batch 2 has no labels"):
        bombus.train(tiny_gpt2("for_sequence_classification", 300, num_labels=3, pad_token_id=0), generator,
                     steps=5, progress=False)
    base = tiny_gpt2("base", 300)
    with pytest.raises(TrainingError, match="cannot train a model of architecture 'base'"):
        bombus.train(base, [good], progress=False)


def test_csv_tsv_and_label_names(tmp_path, gpt2_tok):
    (tmp_path / "data.csv").write_text('text,label\n"the dog, a cat",yes\nred bird,no\n')
    (tmp_path / "data.tsv").write_text("text\tlabel\nthe dog\t1\nred bird\t0\n")
    assert read_rows(tmp_path / "data.csv") == [{"text": "the dog, a cat", "label": "yes"},
                                                {"text": "red bird", "label": "no"}]
    model = tiny_gpt2("for_sequence_classification", len(gpt2_tok))
    bombus.train(model, tmp_path / "data.csv", tokenizer=gpt2_tok, progress=False)
    assert model.spec.id_to_label == {0: "no", 1: "yes"}, "names from the data, sorted, saved in the spec"
    # names the spec already has win (here in a different order), and unknown names are errors
    named = tiny_gpt2("for_sequence_classification", len(gpt2_tok), id_to_label={0: "yes", 1: "no"})
    metrics = bombus.evaluate(named, [{"text": "the dog", "label": "yes"}] * 4, tokenizer=gpt2_tok)
    forced = bombus.evaluate(named, [{"text": "the dog", "label": 0}] * 4, tokenizer=gpt2_tok)
    assert metrics == forced
    with pytest.raises(TrainingError, match="label 'maybe' is neither a class index nor a known label; known "
                                            "labels: yes, no"):
        bombus.train(named, [{"text": "a", "label": "maybe"}], tokenizer=gpt2_tok, progress=False)
    # numeric labels in a TSV are indices
    model = tiny_gpt2("for_sequence_classification", len(gpt2_tok))
    bombus.train(model, tmp_path / "data.tsv", tokenizer=gpt2_tok, progress=False)
    assert model.spec.id_to_label == {}


def test_regression_and_multi_label_rows(gpt2_tok):
    regression = tiny_gpt2("for_sequence_classification", len(gpt2_tok), num_labels=1)
    rows = [{"text": "one dog", "label": 1.0}, {"text": "two dogs", "label": "2.5"}] * 8
    result = bombus.train(regression, rows, tokenizer=gpt2_tok, eval_data=rows, epochs=3, progress=False,
                          learning_rate=1e-2)
    assert set(result.metrics) == {"step", "loss", "mse"} and result.metrics["mse"] == pytest.approx(
        result.metrics["loss"])
    multi = tiny_gpt2("for_sequence_classification", len(gpt2_tok), num_labels=3,
                      problem_type="multi_label_classification", id_to_label={0: "a", 1: "b", 2: "c"})
    rows = [{"text": "red cat", "label": ["a", "c"]}, {"text": "dog", "label": []}, {"text": "x", "label": "b"}]
    result = bombus.train(multi, rows, tokenizer=gpt2_tok, eval_data=rows, progress=False)
    assert {"accuracy", "f1"} <= set(result.metrics)


def test_tag_labels_go_to_the_first_token_of_each_word(gpt2_tok, tmp_path):
    from bombus.training.data import Encoder

    spec = tiny_gpt2("for_token_classification", len(gpt2_tok), num_labels=3).spec
    encoder = Encoder("tag", gpt2_tok, spec, max_length=64, columns=None, names=["A", "B", "O"], pack=True,
                      architecture="for_token_classification")
    words = ["zebra", "dog", "qqq"]  # unseen words split into several tokens
    item = encoder([{"tokens": words, "tags": ["A", "O", "B"]}], "rows")[0]
    pieces = [gpt2_tok.encode(w) for w in words]
    assert item["input_ids"] == [t for p in pieces for t in p]
    expected = [label for p, label in zip(pieces, [0, 2, 1]) for label in [label] + [-100] * (len(p) - 1)]
    assert item["labels"] == expected and len(pieces[0]) > 1
    with pytest.raises(TrainingError, match="3 words but 2 tags"):
        encoder([{"tokens": words, "tags": ["A", "O"]}], "rows")
    with pytest.raises(TrainingError, match="label 'Z' is neither"):
        encoder([{"tokens": words, "tags": ["A", "O", "Z"]}], "rows")
    # CSV: whitespace-separated words and tags
    (tmp_path / "tags.csv").write_text("tokens,tags\nthe red dog,O B A\n")
    assert encoder(read_rows(tmp_path / "tags.csv"), "csv")[0]["labels"][-len(gpt2_tok.encode("dog")):][0] == 0


@pytest.mark.parametrize("family", ["gpt2", "bert"])
def test_answer_spans_point_at_the_answer(gpt2_tok, bert_tok, family):
    tok = gpt2_tok if family == "gpt2" else bert_tok
    model = (tiny_gpt2 if family == "gpt2" else tiny_bert)("for_question_answering", len(tok))
    from bombus.training.data import Encoder

    encoder = Encoder("answer", tok, model.spec, max_length=64, columns=None, names=None, pack=True,
                      architecture="for_question_answering")
    rows = answer_rows(20, 3)
    for row, item in zip(rows, encoder(rows, "rows")):
        span = item["input_ids"][item["start_positions"]:item["end_positions"] + 1]
        assert tok.decode(span).strip() == row["answers"]["text"][0]
    # truncated away: the span points at the first token ([CLS] for BERT), as transformers does
    long = {"question": "key ?", "context": "the " * 80 + "key is red", "answer": "red", "answer_start": 327}
    item = encoder([long], "rows")[0]
    assert len(item["input_ids"]) == 64 and item["start_positions"] == item["end_positions"] == 0
    with pytest.raises(TrainingError, match="is not at answer_start"):
        encoder([{**long, "answer_start": 3}], "rows")
    with pytest.raises(TrainingError, match="neither an 'answers' column"):
        encoder([{"question": "q", "context": "c"}], "rows")


def test_multiple_choice_batches(gpt2_tok, bert_tok):
    from bombus.training.data import Encoder

    rows = choice_rows(3, 0)
    spec = tiny_gpt2("for_double_heads", len(gpt2_tok)).spec
    double = Encoder("multiple-choice", gpt2_tok, spec, max_length=64, columns=None, names=None, pack=True,
                     architecture="for_double_heads")
    batch = collate(double(rows, "rows"), pad_id=0)
    assert batch["input_ids"].shape[:2] == (3, 2) and batch["mc_token_ids"].shape == (3, 2)
    lengths = batch["attention_mask"].sum(-1)
    assert torch.equal(batch["mc_token_ids"], lengths - 1), "the summary token is each choice's last"
    assert batch["mc_labels"].tolist() == [r["label"] for r in rows]
    spec = tiny_bert("for_multiple_choice", len(bert_tok)).spec
    encoder = Encoder("multiple-choice", bert_tok, spec, max_length=64, columns=None, names=None, pack=True,
                      architecture="for_multiple_choice")
    batch = collate(encoder(rows, "rows"), pad_id=0)
    first = bert_tok.decode(batch["input_ids"][0, 0], skip_special_tokens=False)
    assert first.startswith("[CLS] which is an animal? [SEP] " + rows[0]["choices"][0])
    assert batch["token_type_ids"][0, 0].max() == 1 and batch["labels"].tolist() == [r["label"] for r in rows]
    with pytest.raises(TrainingError, match="3 choices, but earlier rows have 2"):
        encoder(rows + [{"question": "q", "choices": ["a", "b", "c"], "label": 0}], "rows")
    with pytest.raises(TrainingError, match="label 2 is outside 0..1"):
        encoder([{**rows[0], "label": 2}], "rows")


def test_collate_pads_and_masks():
    items = [{"input_ids": [5, 6, 7], "labels": [5, 6, 7]}, {"input_ids": [8], "labels": [8]}]
    batch = collate(items, pad_id=1)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 1, 1]]
    assert batch["labels"].tolist() == [[5, 6, 7], [8, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


def test_masked_lm_masking_statistics():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(10, 100, (64, 200))
    special = torch.zeros_like(ids)
    special[:, 0] = special[:, -1] = 1
    mask = torch.ones_like(ids)
    mask[:, 150:] = 0
    batch = Masker(mask_id=3, vocab_size=100, probability=0.15)(
        {"input_ids": ids.clone(), "attention_mask": mask, "special_tokens_mask": special}, g)
    chosen = batch["labels"] != -100
    assert not chosen[:, 0].any() and not chosen[:, 150:].any(), "never special tokens or padding"
    assert torch.equal(batch["labels"][chosen], ids[chosen])
    assert abs(chosen[:, 1:150].float().mean() - 0.15) < 0.01
    masked = (batch["input_ids"] == 3) & chosen
    kept = (batch["input_ids"] == ids) & chosen
    assert abs(masked.sum() / chosen.sum() - 0.8) < 0.03 and abs(kept.sum() / chosen.sum() - 0.1) < 0.03
    assert torch.equal(batch["input_ids"][~chosen], ids[~chosen])
    assert "special_tokens_mask" not in batch
    with pytest.raises(TrainingError, match="mlm_probability"):
        Masker(3, 100, 1.5)


def test_masked_lm_needs_a_mask_token(gpt2_tok):
    model = _untouched(tiny_bert("for_masked_language_modeling", len(gpt2_tok)))
    with pytest.raises(TrainingError, match="mask token"):
        bombus.train(model, [{"text": "the dog"}], tokenizer=gpt2_tok, progress=False)


def test_causal_lm_packing(gpt2_tok):
    from bombus.training.data import Encoder

    spec = tiny_gpt2("for_causal_language_modeling", len(gpt2_tok)).spec
    rows = [{"text": "the red dog runs"}, {"text": "a cat"}, {"text": "one big fish sits near the bird"}]
    stream = [t for r in rows for t in gpt2_tok.encode(r["text"]) + [gpt2_tok.eos_token_id]]
    packed = Encoder("causal-lm", gpt2_tok, spec, max_length=8, columns=None, names=None, pack=True,
                     architecture=spec.architecture)(rows, "rows")
    blocks = [stream[i:i + 8] for i in range(0, len(stream), 8)]
    assert [item["input_ids"] for item in packed] == [b for b in blocks if len(b) >= 2]
    assert len(packed) >= 3 and all(item["labels"] == item["input_ids"] for item in packed)
    single = Encoder("causal-lm", gpt2_tok, spec, max_length=8, columns=None, names=None, pack=False,
                     architecture=spec.architecture)(rows, "rows")
    assert [item["input_ids"] for item in single] == [
        (gpt2_tok.encode(r["text"]) + [gpt2_tok.eos_token_id])[:8] for r in rows]


def test_metrics():
    m = Metrics("classify", 2)
    logits = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    m.update({"labels": torch.tensor([1, 1, 0, 0])}, {"logits": logits, "loss": torch.tensor(0.5)})
    # tp=1 fp=1 fn=1 for label 1
    assert m.result() == {"loss": 0.5, "accuracy": 0.5, "f1": 0.5}
    m = Metrics("classify", 3)
    m.update({"labels": torch.tensor([0, 1, 2, 2])}, {"logits": torch.eye(3)[[0, 1, 1, 2]]})
    assert m.result()["f1"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
    m = Metrics("causal-lm", 2)
    logits = torch.randn(2, 5, 7)
    labels = torch.randint(0, 7, (2, 5))
    m.update({"labels": labels}, {"logits": logits})
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 7), labels[:, 1:].reshape(-1))
    assert m.result()["loss"] == pytest.approx(float(loss), rel=1e-6)
    assert m.result()["perplexity"] == pytest.approx(float(loss.exp()), rel=1e-6)
    m = Metrics("answer", 2)
    start, end = torch.eye(6)[[1, 2]] * 9, torch.eye(6)[[3, 2]] * 9  # spans (1, 3) and (2, 2)
    m.update({"start_positions": torch.tensor([1, 2]), "end_positions": torch.tensor([2, 2])},
             {"start_logits": start, "end_logits": end})
    result = m.result()
    assert result["exact_match"] == 0.5 and result["f1"] == pytest.approx((2 * 2 / (3 + 2) + 1) / 2)


def test_json_array_files(tmp_path, gpt2_tok):
    (tmp_path / "rows.json").write_text(json.dumps(classify_rows(6, 0)))
    assert read_rows(tmp_path / "rows.json") == classify_rows(6, 0)
    result = bombus.train(tiny_gpt2("for_sequence_classification", len(gpt2_tok)), tmp_path / "rows.json",
                          tokenizer=gpt2_tok, progress=False)
    assert result.step == 1
    rows = tag_rows(4, 0)
    result = bombus.train(tiny_gpt2("for_token_classification", len(gpt2_tok), num_labels=3), rows,
                          tokenizer=gpt2_tok, progress=False, columns={"tags": "tags"})
    with pytest.raises(TrainingError, match="unknown column name"):
        bombus.train(tiny_gpt2("for_token_classification", len(gpt2_tok), num_labels=3), rows,
                     tokenizer=gpt2_tok, progress=False, columns={"labels": "tags"})
