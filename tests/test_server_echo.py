"""`bombus serve`: /v1/completions with `echo` and `logprobs` (the prompt's tokens scored, as OpenAI's legacy
completions API does) and `max_tokens` 0 (the prompt alone). The server runs in a subprocess with a tiny random
LLaMA; the official `openai` client talks to it; the oracle is transformers' forward pass over the prompt. In
process: the prompt scoring in chunks (GPT-2, a SentencePiece GGUF LLaMA) and the text offsets on random text."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import shutil
import warnings

import pytest
import torch

import bombus
from bombus.serving.engine import score_prompt
from bombus.serving.logprobs import TextOffsets
from generation_fixtures import _randomised
from server_fixtures import Server, build_models
from text_fixtures import OPENAI_GPT2
from tokenizer_fixtures import random_texts

try:
    import openai
except ImportError:  # a missing test dependency fails, it does not skip
    openai = None

PROMPTS = ["The café is quiet 你好 🎉 under the river", "seven orange glass"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    if openai is None:
        pytest.fail("the openai client (test extra) is not installed")
    return build_models(tmp_path_factory.mktemp("echo"), only=("tiny-lm",))["tiny-lm"]


@pytest.fixture(scope="module")
def server(folder):
    srv = Server(["--model", str(folder), "--max-batch-size", "8", "--max-length", "128"])
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def reference(folder):
    """(tokenizer, log-probabilities of each position of ids under transformers' model)."""
    import transformers

    ref = transformers.LlamaForCausalLM.from_pretrained(folder).eval()
    tokenizer = bombus.load_tokenizer(folder)

    def logprobs(ids: list[int]) -> torch.Tensor:
        with torch.no_grad():
            return torch.log_softmax(ref(torch.tensor([ids])).logits[0].float(), dim=-1)

    return tokenizer, logprobs


def expected_top(tokenizer, row: torch.Tensor, k: int) -> dict[str, float]:
    """The k most likely tokens as text -> logprob (the most likely one kept when two show as the same text)."""
    values, indices = row.topk(k)
    out: dict[str, float] = {}
    for i, v in zip(indices.tolist(), values.tolist()):
        out.setdefault(tokenizer.decode([i], skip_special_tokens=False), v)
    return out


def check_prompt_logprobs(reference, ids: list[int], logprobs, k: int) -> None:
    """The first len(ids) entries of a choice's logprobs are the prompt's tokens, scored as transformers does."""
    tokenizer, forward = reference
    expected = forward(ids)
    n = len(ids)
    assert logprobs.tokens[:n] == [tokenizer.decode([i], skip_special_tokens=False) for i in ids]
    assert logprobs.token_logprobs[0] is None and logprobs.top_logprobs[0] is None
    check_token_offsets(tokenizer, ids, logprobs.text_offset[:n])
    for i in range(1, n):
        assert logprobs.token_logprobs[i] == pytest.approx(float(expected[i - 1, ids[i]]), abs=1e-4)
        top, want = logprobs.top_logprobs[i], expected_top(tokenizer, expected[i - 1], k)
        assert top.keys() == want.keys()
        for text, value in want.items():
            assert top[text] == pytest.approx(value, abs=1e-4)
        if ids[i] in expected[i - 1].topk(k).indices.tolist():  # the prompt's token among the top k: listed
            assert logprobs.tokens[i] in top


def check_token_offsets(tokenizer, ids: list[int], offsets: list[int], start: int = 0) -> None:
    """A token's offset is the length of the text the tokens before it decode to; a token inside a character cut
    between tokens (the text before it ends in U+FFFD) lies between the clean cuts around it."""
    cuts = [len(tokenizer.decode(ids[:i])) if not tokenizer.decode(ids[:i]).endswith("\ufffd") else None
            for i in range(len(ids) + 1)]
    assert len(offsets) == len(ids)
    for i, offset in enumerate(offsets):
        if cuts[i] is not None:
            assert offset == start + cuts[i], (i, offsets)
        else:
            before = max(c for c in cuts[:i] if c is not None)
            after = min((c for c in cuts[i + 1:] if c is not None), default=len(tokenizer.decode(ids)))
            assert start + before <= offset < start + after, (i, offsets)


def check_offsets(text: str, logprobs) -> None:
    """Each offset points into the returned text at the token's own text (tokens holding the bytes of a character
    cut between tokens point at that character)."""
    offsets = logprobs.text_offset
    assert offsets == sorted(offsets) and offsets[0] == 0 and offsets[-1] <= len(text)
    for token, offset in zip(logprobs.tokens, offsets):
        if "\ufffd" not in token and token != "<|endoftext|>":
            assert text[offset:offset + len(token)] == token, (token, offset, text)


def test_echo_logprobs_score_the_prompts(client, reference):
    tokenizer, _ = reference
    options = dict(model="tiny-lm", max_tokens=5, temperature=0.8, seed=3, logprobs=3)
    result = client.completions.create(prompt=PROMPTS, n=2, echo=True, **options)
    plain = client.completions.create(prompt=PROMPTS, n=2, **options)
    assert [c.index for c in result.choices] == [0, 1, 2, 3]
    for choice, alone in zip(result.choices, plain.choices):
        prompt = PROMPTS[choice.index // 2]
        ids = tokenizer.encode(prompt)
        assert choice.text == prompt + alone.text
        check_prompt_logprobs(reference, ids, choice.logprobs, 3)
        check_offsets(choice.text, choice.logprobs)
        # the generated tokens follow, as the same request without echo reports them (offsets after the prompt)
        generated = choice.logprobs
        assert generated.tokens[len(ids):] == alone.logprobs.tokens
        assert generated.token_logprobs[len(ids):] == pytest.approx(alone.logprobs.token_logprobs, abs=1e-6)
        assert generated.top_logprobs[len(ids):] == alone.logprobs.top_logprobs
        assert generated.text_offset[len(ids):] == [o + len(prompt) for o in alone.logprobs.text_offset]
        assert choice.finish_reason == alone.finish_reason
    assert result.choices[0].text != result.choices[1].text  # each choice samples with its own seed
    assert result.usage.prompt_tokens == sum(len(tokenizer.encode(p)) for p in PROMPTS)  # each prompt once
    assert result.usage.completion_tokens == plain.usage.completion_tokens


def test_echo_logprobs_stream_like_the_whole_answer(client, reference):
    options = dict(model="tiny-lm", prompt=PROMPTS, n=2, max_tokens=6, temperature=0.9, seed=11, logprobs=2,
                   echo=True)
    whole = client.completions.create(**options)
    chunks = list(client.completions.create(stream=True, **options))
    for choice in whole.choices:
        mine = [c.choices[0] for c in chunks if c.choices[0].index == choice.index]
        prompt = PROMPTS[choice.index // 2]
        assert mine[0].text == prompt  # the first chunk is the prompt, with its logprobs
        assert len(mine[0].logprobs.tokens) == len(reference[0].encode(prompt))
        streamed = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
        for piece in mine:
            if piece.logprobs is not None:
                for key in streamed:
                    streamed[key] += getattr(piece.logprobs, key)
        assert "".join(piece.text for piece in mine) == choice.text
        assert streamed["tokens"] == choice.logprobs.tokens
        assert streamed["text_offset"] == choice.logprobs.text_offset
        assert streamed["token_logprobs"][0] is None
        assert streamed["token_logprobs"][1:] == pytest.approx(choice.logprobs.token_logprobs[1:], abs=1e-6)
        assert streamed["top_logprobs"] == choice.logprobs.top_logprobs
        assert [p.finish_reason for p in mine if p.finish_reason] == [choice.finish_reason]


def test_max_tokens_zero_returns_the_prompt(client, server, reference):
    tokenizer, _ = reference
    ids = tokenizer.encode(PROMPTS[0])
    scored = client.completions.create(model="tiny-lm", prompt=PROMPTS[0], max_tokens=0, echo=True, logprobs=4)
    choice = scored.choices[0]
    assert choice.text == PROMPTS[0] and choice.finish_reason == "length"
    assert len(choice.logprobs.tokens) == len(ids)
    check_prompt_logprobs(reference, ids, choice.logprobs, 4)
    check_offsets(choice.text, choice.logprobs)
    assert (scored.usage.prompt_tokens, scored.usage.completion_tokens) == (len(ids), 0)
    # token ids as the prompt, n > 1, and a one-token prompt (nothing precedes it: no log-probability)
    many = client.completions.create(model="tiny-lm", prompt=[ids, ids[:1]], n=2, max_tokens=0, echo=True,
                                     logprobs=0)
    assert [c.text for c in many.choices] == [PROMPTS[0]] * 2 + [tokenizer.decode(ids[:1])] * 2
    for c in many.choices[:2]:
        assert c.logprobs.token_logprobs[1:] == pytest.approx(choice.logprobs.token_logprobs[1:], abs=1e-6)
    assert many.choices[2].logprobs.token_logprobs == [None] and many.choices[2].logprobs.top_logprobs == [None]
    # without logprobs: the prompt alone; streaming: the prompt, then the end
    plain = client.completions.create(model="tiny-lm", prompt=PROMPTS[1], max_tokens=0, echo=True)
    assert plain.choices[0].text == PROMPTS[1] and plain.choices[0].logprobs is None
    for logprobs in (None, 2):
        chunks = list(client.completions.create(model="tiny-lm", prompt=PROMPTS[1], max_tokens=0, echo=True,
                                                logprobs=logprobs, stream=True))
        assert "".join(c.choices[0].text for c in chunks) == PROMPTS[1]
        assert chunks[-1].choices[0].finish_reason == "length"
        if logprobs:
            assert chunks[0].choices[0].logprobs.tokens == [
                tokenizer.decode([i], skip_special_tokens=False) for i in tokenizer.encode(PROMPTS[1])]
    # max_tokens 0 needs echo (there is nothing else to return); chat needs at least 1 token
    for path, body in (("/v1/completions", {"prompt": "x", "max_tokens": 0}),
                       ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "max_tokens": 0})):
        request = urllib.request.Request(server.url + path, data=json.dumps({"model": "tiny-lm", **body}).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(request, timeout=60)
        error = json.loads(info.value.read())["error"]
        assert info.value.code == 400 and error["param"] == "max_tokens"
        assert ("echo" in error["message"]) == (path == "/v1/completions"), error["message"]
    # the server goes on serving
    assert client.completions.create(model="tiny-lm", prompt="x", max_tokens=2).usage.completion_tokens >= 1


# ------------------------------------------------------------------------------------------------ in process
@pytest.fixture(scope="module")
def others(tmp_path_factory):
    """{"gpt2": (bombus model, tokenizer, transformers model)} for a tiny GPT-2 with GPT-2's vocabulary, and
    "gguf": the same for a tiny LLaMA GGUF with a SentencePiece vocabulary that adds BOS."""
    import transformers as T
    from gguf_fixtures import load_reference, random_llama, sentencepiece_vocabulary, write_gguf

    root = tmp_path_factory.mktemp("echo-others")
    gpt2 = root / "gpt2"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        config = T.GPT2Config(vocab_size=50257, n_embd=32, n_layer=2, n_head=4, n_positions=128)
        _randomised(T.GPT2LMHeadModel(config), seed=5, std=0.3, bias_std=0.1).save_pretrained(gpt2)
    shutil.copy(OPENAI_GPT2 / "encoder.json", gpt2 / "vocab.json")
    shutil.copy(OPENAI_GPT2 / "vocab.bpe", gpt2 / "merges.txt")
    path = write_gguf(root / "spm.gguf", random_llama(4, vocab_size=len(sentencepiece_vocabulary()[0])),
                      tokenizer="llama", add_bos=True)
    return {"gpt2": (bombus.load_model(gpt2), bombus.load_tokenizer(gpt2),
                     T.GPT2LMHeadModel.from_pretrained(gpt2).eval()),
            "gguf": (bombus.load_model(path), bombus.load_tokenizer(path), load_reference(path)[0])}


@pytest.mark.parametrize("name", ["gpt2", "gguf"])
def test_prompt_scoring_in_chunks_equals_transformers(others, name):
    model, tokenizer, ref = others[name]
    for k, text in enumerate(random_texts(seed=1, n=4, max_words=12)):
        ids = tokenizer.encode(text)[:60] or [5]
        with torch.no_grad():
            expected = torch.log_softmax(ref(torch.tensor([ids])).logits[0].float(), dim=-1)
        for chunk in (512, 3):
            infos = score_prompt(model, tokenizer, ids, top=k, chunk=chunk)
            assert [i.id for i in infos] == ids
            assert infos[0].logprob is None and infos[0].top is None
            for i in range(1, len(ids)):
                assert infos[i].text == tokenizer.decode([ids[i]], skip_special_tokens=False)
                assert infos[i].logprob == pytest.approx(float(expected[i - 1, ids[i]]), abs=1e-4)
                values, indices = expected[i - 1].topk(k)
                assert [t for t, _ in infos[i].top or []] == \
                    [tokenizer.decode([j], skip_special_tokens=False) for j in indices.tolist()]
                assert [v for _, v in infos[i].top or []] == pytest.approx(values.tolist(), abs=1e-4)


@pytest.mark.parametrize("name", ["gpt2", "gguf"])
def test_text_offsets_place_tokens_in_their_text(others, name):
    _, tokenizer, _ = others[name]
    for text in random_texts(seed=2, n=30):
        ids = tokenizer.encode(text)
        offsets = TextOffsets(tokenizer).add(ids)
        check_token_offsets(tokenizer, ids, offsets)
        stream = TextOffsets(tokenizer, 7)  # token by token, after 7 characters, as a stream gives them
        assert [o for i in ids for o in stream.add([i])] == [7 + o for o in offsets]
