"""`bombus train` on the command line: builds or loads a model, trains, saves; clear errors, non-zero exits."""

import json
import subprocess
import sys

import pytest
import transformers

import bombus
from bombus.cli import main
from training_fixtures import classify_rows, copy_rows, gpt2_tokenizer, one_thread, tag_rows, write_jsonl


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    tok = gpt2_tokenizer(root / "tok")
    write_jsonl(root / "train.jsonl", classify_rows(64, 0))
    write_jsonl(root / "eval.jsonl", classify_rows(16, 1))
    # a spec mixing config.json keys (n_head) and spec option names (num_blocks)
    (root / "tok" / "spec.json").write_text(json.dumps({"model_type": "gpt2", "hidden_size": 32, "num_blocks": 2,
                                                        "n_head": 2, "max_positions": 64}))
    return root, tok


def _run(capsys, *argv):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.filterwarnings("ignore:newly initialised", "ignore:checkpoint weights not used")
def test_train_from_a_spec_then_fine_tune_and_resume(workspace, capsys, tmp_path):
    root, tok = workspace
    status, out, err = _run(capsys, "train", "--task", "classify", "--model", root / "tok" / "spec.json",
                            "--data", root / "train.jsonl", "--eval-data", root / "eval.jsonl",
                            "--output", tmp_path / "scratch", "--epochs", 2, "--batch-size", 8, "--lr", 3e-3,
                            "--checkpoint-every", 8, "--progress", "lines", "--eval-every", 4)
    assert status == 0, err
    summary = json.loads(out)
    assert summary["step"] == 16 and summary["evaluation"]["step"] == 16 and "accuracy" in summary["evaluation"]
    assert "step 10/16" in err and "eval step 4" in err
    model = bombus.load_model(tmp_path / "scratch")
    assert model.architecture == "for_sequence_classification" and model.spec.num_blocks == 2
    assert model.spec.vocab_size == len(tok) and model.spec.id_to_label == {0: "no", 1: "yes"}
    assert model.spec.eos_token_id == tok.eos_token_id, "a new model takes its special ids from the tokenizer"
    assert (tmp_path / "scratch" / "checkpoint-16" / "training_state.pt").is_file()
    assert transformers.AutoTokenizer.from_pretrained(tmp_path / "scratch").encode("the dog") == tok.encode("the dog")
    # resume the finished run with more steps: it continues from its newest checkpoint
    status, out, err = _run(capsys, "train", "--task", "classify", "--model", root / "tok" / "spec.json",
                            "--data", root / "train.jsonl", "--output", tmp_path / "scratch", "--steps", 16,
                            "--resume", "--progress", "none")
    assert status == 0 and json.loads(out)["step"] == 16 and err == ""
    # fine-tune the trained folder for another task: a new head, labels from the data
    write_jsonl(tmp_path / "tags.jsonl", tag_rows(16, 0))
    status, out, err = _run(capsys, "train", "--task", "tag", "--model", tmp_path / "scratch", "--data",
                            tmp_path / "tags.jsonl", "--output", tmp_path / "tagger", "--steps", 2, "--progress",
                            "none", "--max-length", 16, "--no-shuffle")
    assert status == 0, err
    tagger = bombus.load_model(tmp_path / "tagger")
    assert tagger.architecture == "for_token_classification"
    assert tagger.spec.id_to_label == {0: "ANIMAL", 1: "COLOR", 2: "O"}


def test_causal_lm_with_renamed_columns_and_grown_vocabulary(workspace, capsys, tmp_path):
    root, tok = workspace
    rows = [{"body": r["text"]} for r in copy_rows(32, 0)]
    write_jsonl(tmp_path / "lm.jsonl", rows)
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"model_type": "gpt2", "n_embd": 16, "n_layer": 1, "n_head": 2, "n_positions": 32,
                                "vocab_size": len(tok) - 20}))  # too small for the tokenizer: resized
    status, out, err = _run(capsys, "train", "--task", "causal-lm", "--model", spec, "--tokenizer", root / "tok",
                            "--data", tmp_path / "lm.jsonl", "--columns", "text=body", "--output",
                            tmp_path / "lm", "--steps", 3, "--progress", "none", "--bf16")
    assert status == 0, err
    assert "resizing the token embeddings" in err
    assert bombus.load_model(tmp_path / "lm").spec.vocab_size == len(tok)


BAD = [
    (["train", "--task", "summarize"], 2, "invalid choice: 'summarize'"),
    (["train", "--task", "classify", "--model", "m"], 2, "the following arguments are required: --data, --output"),
    (["train", "--task", "classify", "--model", "{spec}", "--data", "{root}/none.jsonl", "--output", "{out}"], 1,
     "data file .*none.jsonl does not exist"),
    (["train", "--task", "classify", "--model", "{spec}", "--data", "{root}/train.jsonl", "--output", "{out}",
      "--steps", "0"], 2, "argument --steps: expected a positive integer, got 0"),
    (["train", "--task", "classify", "--model", "{spec}", "--data", "{root}/train.jsonl", "--output", "{out}",
      "--columns", "text"], 2, "expected NAME=COLUMN"),
    (["train", "--task", "classify", "--model", "{root}/no-such-model", "--data", "{root}/train.jsonl",
      "--output", "{out}"], 1, "error: .*no-such-model"),
    (["train", "--task", "classify", "--model", "{spec}", "--data", "{root}/train.jsonl", "--output", "{out}",
      "--columns", "text=sentence"], 1, "has no 'sentence' column"),
    (["train", "--task", "classify", "--model", "{spec}", "--data", "{root}/train.jsonl", "--output", "{out}",
      "--num-labels", "1", "--steps", "1"], 1, "regression label must be a number"),
    (["train", "--task", "masked-lm", "--model", "{spec}", "--data", "{root}/train.jsonl", "--output", "{out}"], 1,
     "task 'masked-lm' needs architecture 'for_masked_language_modeling'"),
]


@pytest.mark.parametrize("argv,status,message", BAD, ids=[b[2][:30] for b in BAD])
def test_bad_arguments(workspace, capsys, tmp_path, argv, status, message):
    import re

    root, _ = workspace
    fill = {"spec": root / "tok" / "spec.json", "root": root, "out": tmp_path / "out"}
    argv = [a.format(**fill) for a in argv]
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own errors
        code = e.code
    err = capsys.readouterr().err
    assert code == status
    assert re.search(message, err), err
    assert not (tmp_path / "out").exists() or status == 1


def test_python_dash_m_bombus(capsys):
    done = subprocess.run([sys.executable, "-m", "bombus", "train", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "--gradient-accumulation" in done.stdout
    assert main([]) == 2 and "train" in capsys.readouterr().err  # no command: the usage, status 2
