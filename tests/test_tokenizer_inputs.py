"""Tokenizer call options and input checking: shapes, lengths and buckets, padding fallback, bad input."""

from __future__ import annotations

import warnings

import pytest
import torch

import bombus
from bombus.errors import InputError
from tokenizer_fixtures import CORPUS, layouts  # noqa: F401


@pytest.fixture(scope="module")
def bert(layouts):  # noqa: F811
    return bombus.load_tokenizer(layouts["bert-slow"].path)


@pytest.fixture(scope="module")
def gpt2(layouts):  # noqa: F811
    return bombus.load_tokenizer(layouts["gpt2-slow"].path)


def test_single_text_is_a_batch_of_one(bert):
    out = bert("Hello world")
    assert set(out) == {"input_ids", "attention_mask", "token_type_ids"}
    assert out["input_ids"].shape == out["attention_mask"].shape == (1, len(bert.encode("Hello world")))
    assert out["input_ids"].tolist() == [bert.encode("Hello world")]
    pair = bert(("Hello world", "Hi"))
    assert pair["input_ids"].tolist() == [bert.encode("Hello world", "Hi")]
    assert pair["token_type_ids"][0].tolist().count(1) == len(bert.encode("Hi")) - 1


def test_return_flags_select_outputs(bert):
    out = bert(["a b", "c"], return_attention_mask=False, return_token_type_ids=False, return_length=True,
               return_special_tokens_mask=True, return_offsets=True)
    assert list(out) == ["input_ids", "special_tokens_mask", "offsets", "length"]
    assert out["offsets"].shape == (2, out["input_ids"].shape[1], 2)
    assert out["length"].tolist() == [4, 3]
    assert out["special_tokens_mask"][1].tolist() == [1, 0, 1, 1]


def test_bytes_input_is_utf8_text(bert):
    assert bert([b"caf\xc3\xa9"])["input_ids"].tolist() == bert(["café"])["input_ids"].tolist()
    with pytest.raises(InputError, match=r"texts\[1\].*UTF-8"):
        bert(["fine", b"caf\xe9"])


def test_lone_surrogates_are_an_input_error(bert):
    with pytest.raises(InputError, match=r"texts\[1\].*surrogate"):
        bert(["fine", "bad \udc80 text"])
    with pytest.raises(InputError, match=r"texts\[0\]\[1\].*surrogate"):
        bert([("fine", "bad \ud800")])
    with pytest.raises(InputError, match="surrogate"):
        bert.encode("\udfff")


def test_wrong_input_types(bert):
    for bad in (None, 3, [1, 2], [("a", "b"), "c"], [("a", "b", "c")]):
        with pytest.raises(InputError):
            bert(bad)
    with pytest.raises(InputError, match="pad_direction"):
        bert("a", pad_direction="up")
    with pytest.raises(InputError, match="truncation"):
        bert("a", truncation=-3)
    with pytest.raises(InputError, match="length"):
        bert("a", length="long")
    with pytest.raises(InputError, match="length"):
        bert("a", length=[])


def test_empty_batch_and_empty_text(bert, gpt2):
    assert bert([])["input_ids"].shape == (0, 0)
    assert bert([], length=8)["input_ids"].shape == (0, 8)
    assert gpt2("")["input_ids"].shape == (1, 0)
    assert bert("")["input_ids"].tolist() == [[bert.cls_token_id, bert.sep_token_id]]


def test_length_pads_and_buckets(bert):
    texts = ["short", "a somewhat longer text with more words"]
    longest = len(bert.encode(texts[1]))
    out = bert(texts, length=longest + 5, pad_direction="left")
    assert out["input_ids"].shape == (2, longest + 5)
    short = len(bert.encode(texts[0]))
    assert out["attention_mask"][0].tolist() == [0] * (longest + 5 - short) + [1] * short  # left padding
    assert out["input_ids"][0, 0].item() == bert.pad_token_id
    for buckets, width in (([4, longest, 64], longest), ([64, longest + 1, 4], longest + 1), ([128], 128)):
        assert bert(texts, length=buckets)["input_ids"].shape == (2, width)
    with pytest.raises(InputError, match="truncation=True"):
        bert(texts, length=[2, 4, longest - 1])
    # With truncation the largest bucket is the limit.
    out = bert(texts, length=[3, 6], truncation=True)
    assert out["input_ids"].shape == (2, 6)
    assert out["input_ids"][1, -1].item() == bert.sep_token_id  # special tokens survive truncation
    with pytest.raises(InputError, match="length=5"):
        bert(texts, length=5)


def test_length_smaller_than_special_tokens(bert):
    with pytest.raises(InputError, match="special token"):
        bert(["a"], length=1)
    with pytest.raises(InputError, match="special token"):
        bert([("a", "b")], length=[2], truncation=True)
    with pytest.raises(InputError, match="special tokens"):
        bert([("a", "b")], truncation=2)
    # Without special tokens one position is enough.
    assert bert(["a b c"], length=1, truncation=True, add_special_tokens=False)["input_ids"].shape == (1, 1)


def test_truncation_true_uses_model_max_length(bert):
    long = " ".join(["word"] * 200)
    assert bert.model_max_length == 48
    assert bert([long], truncation=True)["input_ids"].shape == (1, 48)
    assert bert([long])["input_ids"].shape[1] > 48  # no truncation unless asked
    right = bert([long + " end"], truncation=10)["input_ids"][0].tolist()
    left = bert(["start " + long], truncation=10, truncate_direction="left")["input_ids"][0].tolist()
    assert right[-1] == left[-1] == bert.sep_token_id and right[0] == left[0] == bert.cls_token_id


def test_gpt2_pads_with_eos_and_warns_once(layouts):  # noqa: F811
    tok = bombus.load_tokenizer(layouts["gpt2-slow"].path)
    assert tok.special_tokens.get("pad") is None and tok.pad_token_id == tok.eos_token_id
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tok(["Hello"])  # no padding needed: no warning
        assert not caught
        out = tok(["Hello world there", "Hi"])
        tok(["Hello world there", "Hi"], pad_direction="left")
    assert len(caught) == 1 and "EOS" in str(caught[0].message)
    n = len(tok.encode("Hi"))
    assert out["input_ids"][1, n:].tolist() == [tok.eos_token_id] * (out["input_ids"].shape[1] - n)
    assert out["attention_mask"][1].tolist() == [1] * n + [0] * (out["input_ids"].shape[1] - n)


def test_decode_inputs(bert):
    ids = bert.encode("hello world")
    assert bert.decode(torch.tensor(ids)) == bert.decode(ids) == bert.decode(tuple(ids))
    assert bert.decode(ids[1]) == bert.decode([ids[1]])
    assert bert.batch_decode(torch.tensor([ids, ids])) == [bert.decode(ids)] * 2
    assert bert.batch_decode([]) == []
    with pytest.raises(InputError, match="batch_decode"):
        bert.decode(torch.tensor([ids, ids]))
    with pytest.raises(InputError, match="-100"):
        bert.decode([ids[0], -100])
    with pytest.raises(InputError, match="2-D"):
        bert.batch_decode(torch.tensor(ids))


def test_decode_unknown_error_handler(gpt2):
    with pytest.raises(InputError, match="errors="):
        gpt2.decode(gpt2.encode("é"), errors="nonsense")


def test_threads_share_one_tokenizer(bert):
    from concurrent.futures import ThreadPoolExecutor

    texts = CORPUS * 3
    want = {n: bert(texts, truncation=n)["input_ids"].tolist() for n in (5, 9, 14)}
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda n: (n, bert(texts, truncation=n)["input_ids"].tolist()), [5, 9, 14] * 8))
    assert all(result == want[n] for n, result in results)
