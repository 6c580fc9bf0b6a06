"""bombus tokenizers give transformers' ids, masks, offsets and text, for every family and file layout."""

from __future__ import annotations

import random

import pytest
import torch

import bombus
from tokenizer_fixtures import CORPUS, PAIRS, layouts, random_texts, real_layouts, reference_batch  # noqa: F401

# GPT-2 pads with EOS and says so once per tokenizer: expected here (test_tokenizer_inputs checks it).
pytestmark = pytest.mark.filterwarnings("ignore:this tokenizer has no pad token")

FAMILY_LAYOUTS = ("gpt2", "gpt2-prefix-bos", "gpt2-legacy", "roberta", "roberta-hub", "bert", "bert-cased",
                  "bert-keep-accents", "distilbert", "albert", "albert-cased")
LAYOUTS = [f"{name}-{kind}" for name in FAMILY_LAYOUTS for kind in ("slow", "fast")]
LAYOUTS += ["gpt2-openai", "gpt2-hubjson", "roberta-hubjson", "albert-hubjson"]
REAL = ["openai-gpt2", "minilm-fast", "minilm-slow"]
TEXTS = CORPUS + random_texts(1, 60)


@pytest.fixture(scope="module")
def loaded(layouts, real_layouts):  # noqa: F811
    """(bombus tokenizer, transformers reference) per layout, loaded once."""
    every = {**layouts, **real_layouts}
    return {name: (bombus.load_tokenizer(layout.path), layout.ref, layout) for name, layout in every.items()}


def _pad_id(tok):
    return tok.pad_token_id  # GPT-2: the EOS fallback


def _check(out: dict, want: dict, names=("input_ids", "attention_mask", "token_type_ids")):
    assert out["input_ids"].dtype == torch.long
    for name in names:
        assert out[name].tolist() == want[name], name


@pytest.mark.parametrize("name", LAYOUTS + REAL)
def test_encode_equals_reference(loaded, name):
    tok, ref, _ = loaded[name]
    for text in TEXTS:
        assert tok.encode(text) == ref(text)["input_ids"], repr(text)
        assert tok.encode(text, add_special_tokens=False) == ref(text, add_special_tokens=False)["input_ids"]
    for a, b in PAIRS:
        assert tok.encode(a, b) == ref(a, b)["input_ids"], (a, b)


@pytest.mark.parametrize("name", LAYOUTS + REAL)
def test_vocabulary_and_special_tokens_equal_reference(loaded, name):
    tok, ref, layout = loaded[name]
    assert len(tok) == len(ref)
    assert tok.vocab_size == ref.vocab_size
    assert tok.get_vocab() == ref.get_vocab()
    for attr in ("bos", "eos", "unk", "sep", "cls", "mask"):
        assert getattr(tok, f"{attr}_token") == getattr(ref, f"{attr}_token"), attr
        assert getattr(tok, f"{attr}_token_id") == getattr(ref, f"{attr}_token_id"), attr
    if ref.pad_token is None:  # GPT-2: pads with EOS, as Bumblebee does
        assert (tok.pad_token, tok.pad_token_id) == (ref.eos_token, ref.eos_token_id)
    else:
        assert (tok.pad_token, tok.pad_token_id) == (ref.pad_token, ref.pad_token_id)
    assert tok.special_tokens == {k.removesuffix("_token"): v for k, v in ref.special_tokens_map.items()}
    max_len = ref.model_max_length if ref.model_max_length < 1e20 else None
    assert tok.model_max_length == max_len
    assert tok.padding_side == ref.padding_side
    # Same added tokens with the same flags (lstrip, normalized, special): they decide how text splits.
    assert {i: repr(t) for i, t in tok.backend.get_added_tokens_decoder().items()} == {
        i: repr(t) for i, t in ref.added_tokens_decoder.items()}
    ids = list(range(0, len(ref), max(1, len(ref) // 300))) + [len(ref) - 1]
    assert tok.convert_ids_to_tokens(ids) == ref.convert_ids_to_tokens(ids)
    assert [tok.id_to_token(i) for i in ids] == ref.convert_ids_to_tokens(ids)
    tokens = ref.convert_ids_to_tokens(ids)
    assert [tok.token_to_id(t) for t in tokens] == ref.convert_tokens_to_ids(tokens)
    missing = ["surely-not-a-token-§"]
    assert tok.convert_tokens_to_ids(missing) == ref.convert_tokens_to_ids(missing)
    for pair in (False, True):
        assert tok.num_special_tokens_to_add(pair) == ref.num_special_tokens_to_add(pair)
    for pair in (None, "", "a pair"):  # an empty pair is no pair, in tokenize as in encode
        assert tok.tokenize("Hello world", pair, add_special_tokens=True) == \
            ref.tokenize("Hello world", pair=pair, add_special_tokens=True)
        assert tok.encode("Hello world", pair) == ref.encode("Hello world", pair)


@pytest.mark.parametrize("name", LAYOUTS + REAL)
@pytest.mark.parametrize("pad_direction", ["right", "left"])
def test_batch_padding_offsets_and_masks_equal_reference(loaded, name, pad_direction):
    tok, ref, _ = loaded[name]
    for batch in (TEXTS[:20], TEXTS[20:], PAIRS):
        out = tok(batch, pad_direction=pad_direction, return_token_type_ids=True, return_special_tokens_mask=True,
                  return_offsets=True, return_length=True)
        want = reference_batch(ref, batch, pad_direction=pad_direction, pad_id=_pad_id(tok))
        _check(out, want, ("input_ids", "attention_mask", "token_type_ids", "special_tokens_mask"))
        assert out["offsets"].shape == (len(batch), out["input_ids"].shape[1], 2)
        assert out["offsets"].tolist() == want["offset_mapping"]
        assert out["length"].tolist() == want["length"]


@pytest.mark.parametrize("name", LAYOUTS + REAL)
@pytest.mark.parametrize("direction", ["right", "left"])
def test_truncation_keeps_special_tokens_like_reference(loaded, name, direction):
    tok, ref, _ = loaded[name]
    n_pair = ref.num_special_tokens_to_add(pair=True)
    for max_len in (n_pair + 1, 17):
        for batch in (TEXTS[:25], PAIRS[:25]):
            out = tok(batch, truncation=max_len, truncate_direction=direction, pad_direction=direction)
            want = reference_batch(ref, batch, truncation=max_len, truncate_direction=direction,
                                   pad_direction=direction, pad_id=_pad_id(tok))
            _check(out, want, ("input_ids", "attention_mask"))
            assert out["input_ids"].shape[1] <= max_len
    for batch in (TEXTS[:25], PAIRS[:25]):  # length=L with truncation=True: exactly L columns
        out = tok(batch, length=12, truncation=True, truncate_direction=direction)
        want = reference_batch(ref, batch, length=12, truncation=True, truncate_direction=direction,
                               pad_id=_pad_id(tok))
        _check(out, want, ("input_ids", "attention_mask"))
        assert out["input_ids"].shape == (len(batch), 12)


@pytest.mark.parametrize("name", LAYOUTS + REAL)
def test_random_options_equal_reference(loaded, name):
    """The general case: random texts, batch sizes and options, against the reference."""
    tok, ref, _ = loaded[name]
    rng = random.Random(name)
    pool = TEXTS + random_texts(hash(name) % 1000, 40)
    for trial in range(25):
        batch = rng.sample(pool, rng.randint(1, 6))
        if rng.random() < 0.4:
            batch = [(a, rng.choice(pool)) for a in batch]
        options = dict(
            add_special_tokens=rng.random() < 0.8,
            pad_direction=rng.choice(["right", "left"]),
            truncate_direction=rng.choice(["right", "left"]),
        )
        pair = isinstance(batch[0], tuple)
        n_special = tok.num_special_tokens_to_add(pair) if options["add_special_tokens"] else 0
        options["length"] = rng.choice([None, rng.randint(n_special + 1, 60),
                                        sorted(rng.sample(range(n_special + 1, 80), 3))])
        options["truncation"] = rng.choice([False, True, rng.randint(n_special + 1, 50)])
        if options["truncation"] is True and options["length"] is None and tok.model_max_length is None:
            options["truncation"] = False
        want = reference_batch(ref, batch, pad_id=_pad_id(tok), **options)
        if want == "too long":
            with pytest.raises(bombus.errors.InputError, match="length"):
                tok(batch, **options)
            continue
        offsets = rng.random() < 0.5  # without offsets bombus takes tokenizers' encode_batch_fast
        out = tok(batch, return_token_type_ids=True, return_special_tokens_mask=True, return_offsets=offsets,
                  return_length=True, **options)
        _check(out, want, ("input_ids", "attention_mask", "token_type_ids", "special_tokens_mask"))
        if offsets:
            assert out["offsets"].tolist() == want["offset_mapping"], (trial, options)
        assert out["length"].tolist() == want["length"]
        if isinstance(options["length"], int):
            assert out["input_ids"].shape == (len(batch), options["length"])


@pytest.mark.parametrize("name", ["gpt2-prefix-bos-slow", "roberta-hub-fast", "bert-slow", "albert-fast",
                                  "openai-gpt2", "minilm-fast"])
def test_split_into_words_equals_reference(loaded, name):
    tok, ref, _ = loaded[name]
    words = [text.split() for text in TEXTS if text.split()]
    out = tok(words, is_split_into_words=True)
    want = reference_batch(ref, words, is_split_into_words=True, pad_id=_pad_id(tok))
    _check(out, want, ("input_ids", "attention_mask"))
    single = tok(words[0], is_split_into_words=True)
    assert single["input_ids"].tolist() == [ref(words[0], is_split_into_words=True)["input_ids"]]


@pytest.mark.parametrize("name", LAYOUTS + REAL)
def test_decode_equals_reference(loaded, name):
    tok, ref, _ = loaded[name]
    rng = random.Random(name)
    sequences = [ref(t)["input_ids"] for t in TEXTS] + [ref(a, b)["input_ids"] for a, b in PAIRS[:10]]
    # Random ids: byte-level tokens that cut characters in half, special tokens in the middle.
    sequences += [[rng.randrange(len(ref)) for _ in range(rng.randint(0, 30))] for _ in range(40)]
    for ids in sequences:
        for skip in (True, False):
            want = ref.decode(ids, skip_special_tokens=skip)
            assert tok.decode(ids, skip_special_tokens=skip) == want, ids
            assert tok.decode(torch.tensor(ids, dtype=torch.long), skip_special_tokens=skip) == want
        for clean in (True, False):
            want = ref.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=clean)
            assert tok.decode(ids, clean_up_tokenization_spaces=clean) == want
    assert tok.batch_decode(sequences) == ref.batch_decode(sequences, skip_special_tokens=True)
    padded = tok(TEXTS[:8])["input_ids"]
    assert tok.batch_decode(padded) == ref.batch_decode(padded, skip_special_tokens=True)
    assert tok.batch_decode(padded, skip_special_tokens=False) == ref.batch_decode(padded)


def test_clean_up_tokenization_spaces_follows_tokenizer_config(loaded):
    tok, ref, _ = loaded["bert-cased-slow"]  # its tokenizer_config sets clean_up_tokenization_spaces: true
    ids = tok.encode("Hello , world . Isn 't it ? Yes !")
    assert tok.decode(ids) == ref.decode(ids, skip_special_tokens=True)
    assert tok.decode(ids) != tok.decode(ids, clean_up_tokenization_spaces=False)
    # BPE tokenizers never clean up (transformers 5 skips it: it would eat real spaces).
    gpt2 = loaded["gpt2-slow"][0]
    ids = gpt2.encode("Hello , world .")
    assert gpt2.decode(ids, clean_up_tokenization_spaces=True) == "Hello , world ."


@pytest.mark.parametrize("name", ["openai-gpt2", "gpt2-slow", "roberta-fast", "bert-slow", "albert-slow"])
def test_decode_errors_modes(loaded, name):
    tok, ref, _ = loaded[name]
    for text in TEXTS:
        ids = tok.encode(text)
        assert tok.decode(ids, errors="strict") == tok.decode(ids) == tok.decode(ids, errors="ignore")
        with_special = tok.decode(ids, skip_special_tokens=False)
        assert tok.decode(ids, skip_special_tokens=False, errors="strict") == with_special
    if tok.family == "gpt2":
        ids = tok.encode("👍")  # one character, several byte-level tokens
        assert len(ids) > 1
        assert tok.decode(ids[:1]) == ref.decode(ids[:1]) == "\ufffd"
        assert tok.decode(ids[:1], errors="ignore") == ""
        with pytest.raises(bombus.errors.InputError, match="UTF-8"):
            tok.decode(ids[:1], errors="strict")


def test_real_gpt2_files(loaded):
    tok, ref, _ = loaded["openai-gpt2"]
    assert tok.family == "gpt2"
    assert tok.encode("Hello world") == [15496, 995]
    assert tok.encode(" Hello world") == [18435, 995]
    assert tok.eos_token_id == tok.bos_token_id == 50256
    assert tok(["Hello world"])["input_ids"].tolist() == [[15496, 995]]
    assert tok.decode([15496, 995]) == "Hello world"


def test_real_bert_uncased_files(loaded):
    for name in ("minilm-fast", "minilm-slow"):
        tok, ref, _ = loaded[name]
        assert tok.family == "bert" and tok.model_max_length == 512
        assert tok.encode("Hello world!") == [101, 7592, 2088, 999, 102]
        out = tok([("Hello world", "How are you?")])
        assert out["token_type_ids"].tolist() == [[0, 0, 0, 0, 1, 1, 1, 1, 1]]
