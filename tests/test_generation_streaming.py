"""Streaming gives the text of the final ids, in the chunks transformers' TextStreamer gives; stop strings stop
rows where transformers' StopStringCriteria does. Uses GPT-2's real vocabulary (OpenAI's BPE files)."""

from __future__ import annotations

import random
import warnings

import pytest
import torch
from generation_fixtures import one_thread, ref_generate, texty  # noqa: F401

from bombus.generation import StopStrings, TextStreamer, stream

PROMPTS = ["The quick brown fox", "In 1998, the city of", "你好，世界", "def main():\n    print(", "Hello"]


class Chunks(TextStreamer):
    def __init__(self, tokenizer, **kwargs):
        super().__init__(tokenizer, **kwargs)
        self.chunks = []

    def on_finalized_text(self, text, stream_end=False):
        self.chunks.append(text)


def _reference_chunks(tokenizer, **kwargs):
    from transformers import TextStreamer as RefStreamer

    class RefChunks(RefStreamer):
        def __init__(self):
            super().__init__(tokenizer, **kwargs)
            self.chunks = []

        def on_finalized_text(self, text, stream_end=False):
            self.chunks.append(text)

    return RefChunks()


@pytest.mark.parametrize("prompt", PROMPTS)
def test_stream_yields_the_decoded_text(texty, prompt):
    rng = random.Random(prompt)
    options = dict(max_new_tokens=rng.randint(5, 20), do_sample=True, seed=rng.randrange(1000), top_k=0)
    ids = torch.tensor([texty.tokenizer.encode(prompt)])
    out = texty.ours.generate(ids, **options)
    chunks = list(stream(texty.ours, texty.tokenizer, prompt, **options))
    assert "".join(chunks) == texty.tokenizer.decode(out[0, ids.shape[1]:])
    assert len(chunks) > 1
    # The prompt too, and through the transformers tokenizer.
    chunks = list(stream(texty.ours, texty.ref_tokenizer, {"input_ids": ids}, skip_prompt=False, **options))
    assert "".join(chunks) == texty.ref_tokenizer.decode(out[0])


def test_text_streamer_chunks_match_transformers(texty):
    """Same ids through generate's streamer protocol -> the same chunks as transformers' TextStreamer."""
    for i, prompt in enumerate(PROMPTS[:4]):
        skip_prompt = i % 2 == 1
        ids = torch.tensor([texty.tokenizer.encode(prompt)])
        options = dict(max_new_tokens=16, do_sample=True, top_k=0, temperature=1.5)
        ours = Chunks(texty.ref_tokenizer, skip_prompt=skip_prompt)
        ref = _reference_chunks(texty.ref_tokenizer, skip_prompt=skip_prompt)
        torch.manual_seed(i)
        expected = ref_generate(texty.ref, ids, None, streamer=ref, **options)
        torch.manual_seed(i)
        got = texty.ours.generate(ids, streamer=ours, **options)
        assert torch.equal(got, expected)
        assert ours.chunks == ref.chunks
        assert len([c for c in ours.chunks if c]) > 2


def test_text_streamer_prints(texty, capsys):
    ids = torch.tensor([texty.tokenizer.encode("Once upon a time")])
    out = texty.ours.generate(ids, max_new_tokens=10, streamer=TextStreamer(texty.tokenizer), seed=0, do_sample=True)
    assert capsys.readouterr().out == texty.tokenizer.decode(out[0]) + "\n"


def test_stream_rejects_batches_and_beams(texty):
    with pytest.raises(ValueError, match="one prompt"):
        list(stream(texty.ours, texty.tokenizer, [[1, 2], [3, 4]]))
    with pytest.raises(Exception, match="beam"):
        list(stream(texty.ours, texty.tokenizer, "Hi", num_beams=2))


def test_stream_is_lazy(texty):
    chunks = stream(texty.ours, texty.tokenizer, "The", max_new_tokens=100, do_sample=True, seed=1, top_k=0)
    first = next(chunks)
    assert isinstance(first, str) and first
    chunks.close()  # stopping early is fine


def _stop_strings_from(text: str, rng: random.Random) -> list[str]:
    """Substrings of the first half of the generated text, so that they occur (often across token boundaries)
    and stop the row early."""
    half = len(text) // 2
    ascii_runs = [text[i:i + n] for i in range(half) for n in (2, 3, 5)
                  if i + n <= half and text[i:i + n].isascii() and text[i:i + n].strip()]
    return rng.sample(ascii_runs, min(2, len(ascii_runs)))


@pytest.mark.parametrize("seed", range(4))
def test_stop_strings_match_transformers(texty, seed):
    rng = random.Random(seed)
    prompts = rng.sample(PROMPTS, rng.randint(1, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no pad token: padding with EOS"
        batch = texty.tokenizer(prompts, pad_direction="left")
    ids, mask = batch["input_ids"], batch["attention_mask"]
    options = dict(max_new_tokens=16, do_sample=True, top_k=0, pad_token_id=50256)
    torch.manual_seed(seed)
    free = ref_generate(texty.ref, ids, mask, **options)
    text = texty.ref_tokenizer.decode(free[0, ids.shape[1]:])
    stops = _stop_strings_from(text, rng)
    if not stops:
        pytest.skip("no ASCII text generated")
    torch.manual_seed(seed)
    expected = ref_generate(texty.ref, ids, mask, stop_strings=stops, tokenizer=texty.ref_tokenizer, **options)
    assert not torch.equal(expected, free), "a stop string should stop the first row early"
    for tokenizer in (texty.tokenizer, texty.ref_tokenizer):
        torch.manual_seed(seed)
        got = texty.ours.generate(ids, attention_mask=mask, stop_strings=stops, tokenizer=tokenizer, **options)
        assert torch.equal(got, expected), (stops, got.tolist(), expected.tolist())


class FakeTokenizer:
    """Whole-token vocabulary without a byte-level decoder: the plain-string path of StopStrings."""

    def __init__(self, tokens):
        self.vocab = {t: i for i, t in enumerate(tokens)}
        self.tokens = tokens

    def get_vocab(self):
        return dict(self.vocab)

    def encode(self, text, add_special_tokens=False):
        return [self.vocab[text]]

    def convert_ids_to_tokens(self, ids):
        return [self.tokens[i] for i in ids]

    def convert_tokens_to_string(self, tokens):
        return "".join(tokens)


def test_stop_string_overlap_rules():
    """The examples of transformers' StopStringCriteria docstring."""
    words = ["abcdef", "st", "op", "stop", "opera", "sto", "pper", "las", "topper", "s", "to", "pped", "at", "tion",
             "x"]
    tok = FakeTokenizer(words)
    check = StopStrings("stop", tok)
    ids = lambda *ts: torch.tensor([[tok.vocab["x"]] + [tok.vocab[t] for t in ts]])
    for tokens in (["st", "op"], ["stop"], ["st", "opera"], ["sto", "pper"], ["las", "topper"], ["s", "to", "pped"]):
        assert check(ids(*tokens)).item(), tokens
    for tokens in (["stop", "at"], ["st", "op", "at"], ["st", "opera", "tion"], ["s", "to"], ["x"]):
        assert not check(ids(*tokens)).item(), tokens


def test_design_example_batch_of_texts(texty):
    """`model.generate(**tok(texts, pad_direction="left"))`: each row continues as its text alone does."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no pad token: padding with EOS"
        batch = texty.tokenizer(PROMPTS[:3], pad_direction="left")
    out = texty.ours.generate(**batch, max_new_tokens=8)
    assert torch.equal(out, ref_generate(texty.ref, batch["input_ids"], batch["attention_mask"], max_new_tokens=8))
    width = batch["input_ids"].shape[1]
    for row, text in enumerate(PROMPTS[:3]):
        alone = texty.ours.generate(torch.tensor([texty.tokenizer.encode(text)]), max_new_tokens=8)
        new = alone[0, alone.shape[1] - 8:]
        assert torch.equal(out[row, width:width + len(new)], new)
