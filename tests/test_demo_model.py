"""The demo model shipped in the package (src/bombus/data/demo-gpt2): complete, small, loadable by bombus and
transformers alike, and as good as its model card says on the held-out text."""

import importlib.util
import json
import platform
import warnings
from pathlib import Path

import pytest
import torch
import transformers

import bombus
from reference import assert_close
from training_fixtures import one_thread

DEMO = Path(bombus.__file__).parent / "data" / "demo-gpt2"
SCRIPT = Path(__file__).parent.parent / "scripts" / "train_demo_model.py"
if not (DEMO / "model.safetensors").is_file():  # the demo model ships in the package: missing is a failure
    pytest.fail(f"{DEMO}/model.safetensors is missing (scripts/train_demo_model.py builds it)", pytrace=False)


@pytest.fixture(scope="module")
def numbers():
    return json.loads((DEMO / "training_numbers.json").read_text())


def test_files_size_and_card(numbers):
    names = {p.name for p in DEMO.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "generation_config.json",
            "README.md"} <= names
    assert sum(p.stat().st_size for p in DEMO.iterdir()) < 10.5e6
    card = (DEMO / "README.md").read_text()
    for key in ("test_perplexity", "test_unigram_perplexity", "validation_perplexity"):
        assert f"{numbers[key]:.1f}" in card, key
    assert f"{numbers['steps']} steps" in card and "pydoc_data.topics" in card
    assert numbers["test_perplexity"] < numbers["test_unigram_perplexity"] / 4, "far below the unigram baseline"
    assert numbers["train_seconds"] < 15 * 60


def test_loads_in_bombus_and_transformers_alike():
    model = bombus.load_model(DEMO)
    tok = bombus.load_tokenizer(DEMO)
    assert model.architecture == "for_causal_language_modeling" and model.dtype == torch.float32
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = transformers.GPT2LMHeadModel.from_pretrained(DEMO, dtype=torch.float32).eval()
        ref_tok = transformers.AutoTokenizer.from_pretrained(DEMO)
    text = 'The "if" statement is used for conditional execution:'
    assert tok.encode(text) == ref_tok.encode(text) and len(tok) == len(ref_tok) == model.spec.vocab_size
    ids = torch.tensor([tok.encode(text)])
    with torch.no_grad():
        assert_close(model(input_ids=ids).logits, reference(input_ids=ids).logits, what="demo logits")
    from bombus.generation import load_generation_config

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every option in the file is one bombus implements
        config = load_generation_config(DEMO)
    assert config.eos_token_id == config.pad_token_id == tok.eos_token_id and config.do_sample
    assert transformers.GenerationConfig.from_pretrained(DEMO).eos_token_id == tok.eos_token_id
    out = model.generate(input_ids=ids, do_sample=False, max_new_tokens=12)
    assert out.shape[1] > ids.shape[1] and tok.decode(out[0, ids.shape[1]:]).strip()


def test_held_out_perplexity_is_what_the_card_says(numbers):
    if platform.python_version_tuple()[:2] != tuple(numbers["python"].split(".")[:2]):
        pytest.skip(f"pydoc_data.topics differs between Python versions; the card is of Python {numbers['python']}")
    spec = importlib.util.spec_from_file_location("train_demo_model", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    splits = script.corpus()
    model, tok = bombus.load_model(DEMO), bombus.load_tokenizer(DEMO)
    length = numbers["options"]["block_length"]
    measured = bombus.evaluate(model, [{"text": t} for t in splits["test"]], tokenizer=tok, max_length=length,
                               batch_size=32)
    assert measured["perplexity"] == pytest.approx(numbers["test_perplexity"], rel=1e-3)
    stream = script.token_stream(tok, splits["test"])
    blocks = [b for b in (stream[i:i + length] for i in range(0, len(stream), length)) if len(b) >= 2]
    unigram = script.unigram_perplexity(script.token_stream(tok, splits["train"]), blocks, len(tok))
    assert unigram == pytest.approx(numbers["test_unigram_perplexity"], rel=1e-3)
