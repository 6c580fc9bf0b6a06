"""The backward pass equals transformers': same weights, same batch, every head's loss -> same gradients."""

import copy
import random
import warnings

import pytest
import torch
import transformers

import bombus
from bombus.checkpoint import hf_state
from bombus.models import FAMILIES
from bombus.training.tasks import total_loss
from reference import assert_close, randomize, save
from training_fixtures import one_thread

VOCAB, HIDDEN, LENGTH = 40, 16, 7


def configs(model_type: str, rng: random.Random, num_labels: int, problem_type: str | None):
    common = dict(vocab_size=VOCAB, num_labels=num_labels, problem_type=problem_type, pad_token_id=1)
    layers, heads = rng.randint(1, 2), rng.choice([2, 4])
    if model_type == "gpt2":
        return transformers.GPT2Config(n_embd=HIDDEN, n_layer=layers, n_head=heads, n_positions=16,
                                       activation_function=rng.choice(["gelu_new", "relu"]), resid_pdrop=0.0,
                                       embd_pdrop=0.0, attn_pdrop=0.0, summary_first_dropout=0.0,
                                       summary_type="cls_index", summary_proj_to_labels=True,
                                       classifier_dropout=0.0, **common)  # token head: HF default 0.1
    if model_type == "distilbert":
        return transformers.DistilBertConfig(dim=HIDDEN, n_layers=layers, n_heads=heads, hidden_dim=24,
                                             max_position_embeddings=16, dropout=0.0, attention_dropout=0.0,
                                             seq_classif_dropout=0.0, qa_dropout=0.0, **common)
    encoder = dict(hidden_size=HIDDEN, num_hidden_layers=layers, num_attention_heads=heads, intermediate_size=24,
                   hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, type_vocab_size=2, **common)
    if model_type == "bert":
        return transformers.BertConfig(max_position_embeddings=16, classifier_dropout=0.0, **encoder)
    if model_type == "roberta":
        return transformers.RobertaConfig(max_position_embeddings=18, classifier_dropout=0.0, **encoder)
    if model_type == "albert":
        return transformers.AlbertConfig(max_position_embeddings=16, embedding_size=8, classifier_dropout_prob=0.0,
                                         **encoder)
    raise AssertionError(model_type)


HF = {
    "gpt2": {"for_causal_language_modeling": "GPT2LMHeadModel", "for_sequence_classification":
             "GPT2ForSequenceClassification", "for_token_classification": "GPT2ForTokenClassification",
             "for_question_answering": "GPT2ForQuestionAnswering", "for_double_heads": "GPT2DoubleHeadsModel"},
}
for _name, _prefix in (("bert", "Bert"), ("roberta", "Roberta"), ("distilbert", "DistilBert"), ("albert", "Albert")):
    HF[_name] = {"for_masked_language_modeling": f"{_prefix}ForMaskedLM",
                 "for_sequence_classification": f"{_prefix}ForSequenceClassification",
                 "for_token_classification": f"{_prefix}ForTokenClassification",
                 "for_question_answering": f"{_prefix}ForQuestionAnswering",
                 "for_multiple_choice": f"{_prefix}ForMultipleChoice"}

PROBLEMS = {"single": (3, "single_label_classification"), "regression": (1, "regression"),
            "multi": (3, "multi_label_classification")}
CASES = [(family, arch, "single") for family, archs in HF.items() for arch in archs]
CASES += [(family, "for_sequence_classification", p) for family in HF for p in ("regression", "multi")]


def make_batch(arch: str, config, g: torch.Generator, problem: str) -> dict[str, torch.Tensor]:
    batch_size, choices = 3, 2
    shape = (batch_size, choices, LENGTH) if arch in ("for_multiple_choice", "for_double_heads") else (
        batch_size, LENGTH)
    ids = torch.randint(2, VOCAB, shape, generator=g)
    mask = torch.ones(shape, dtype=torch.long)
    mask[..., 1, 5:] = 0  # one padded row (per choice)
    ids = ids.masked_fill(mask == 0, 1)
    batch = {"input_ids": ids, "attention_mask": mask}
    num_labels = config.num_labels
    if arch in ("for_causal_language_modeling", "for_masked_language_modeling"):
        labels = torch.randint(0, VOCAB, shape, generator=g)
        batch["labels"] = labels.masked_fill((mask == 0) | (torch.rand(shape, generator=g) < 0.3), -100)
    elif arch == "for_token_classification":
        batch["labels"] = torch.randint(0, num_labels, shape, generator=g).masked_fill(mask == 0, -100)
    elif arch == "for_sequence_classification":
        if problem == "regression":
            batch["labels"] = torch.randn(batch_size, generator=g)
        elif problem == "multi":
            batch["labels"] = (torch.rand(batch_size, num_labels, generator=g) > 0.5).float()
        else:
            batch["labels"] = torch.randint(0, num_labels, (batch_size,), generator=g)
    elif arch == "for_question_answering":
        batch["start_positions"] = torch.tensor([0, 3, 50])  # 50: out of range, ignored by both
        batch["end_positions"] = torch.tensor([2, 4, 6])
    elif arch == "for_multiple_choice":
        batch["labels"] = torch.randint(0, choices, (batch_size,), generator=g)
    elif arch == "for_double_heads":
        batch["mc_token_ids"] = torch.tensor([[6, 4], [6, 3], [2, 6]])
        batch["mc_labels"] = torch.randint(0, choices, (batch_size,), generator=g)
        batch["labels"] = ids.masked_fill(mask == 0, -100)
    return batch


def bombus_grads(model) -> dict[str, torch.Tensor]:
    """bombus' gradients under the reference's parameter names (Conv1D transposes and fused q/k/v undone)."""
    clone = copy.deepcopy(model)
    for (name, p), (_, q) in zip(model.named_parameters(), clone.named_parameters()):
        assert p.grad is not None, f"{name} got no gradient"
        q.data = p.grad.clone()
    return hf_state(clone, clone.keymap(), with_prefix=clone.architecture != "base", skip=clone.tied_names())


@pytest.mark.parametrize("family,arch,problem", CASES, ids=[f"{f}-{a}-{p}" for f, a, p in CASES])
def test_gradients_equal_reference(tmp_path, family, arch, problem):
    assert family in FAMILIES, f"the {family} family is not in bombus"
    seed = hash((family, arch, problem)) % 1000
    num_labels, problem_type = PROBLEMS[problem]
    if arch in ("for_question_answering", "for_multiple_choice"):
        num_labels = 2  # the references insist (QA heads are built with num_labels outputs)
    config = configs(family, random.Random(seed), num_labels, problem_type if problem != "single" else None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        config._attn_implementation = "eager"
        ref = randomize(getattr(transformers, HF[family][arch])(config), seed)
    save(ref, tmp_path)
    model = bombus.load_model(tmp_path)
    assert model.architecture == arch
    batch = make_batch(arch, config, torch.Generator().manual_seed(seed), problem)
    model.train(), ref.train()  # dropout rates are 0: train mode must not change anything else

    ours = model(**batch)
    theirs = ref(**batch)
    ref_loss = theirs.loss if getattr(theirs, "mc_loss", None) is None else theirs.loss + theirs.mc_loss
    assert_close(total_loss(ours), ref_loss, what="loss")
    total_loss(ours).backward()
    ref_loss.backward()

    grads = bombus_grads(model)
    expected = {n: p.grad for n, p in ref.named_parameters() if p.grad is not None}
    assert expected, "the reference produced no gradients"
    # tied parameters have several names (MLM: `...decoder.bias` is `...predictions.bias`); map all to one
    canonical = {id(p): n for n, p in ref.named_parameters()}
    aliases = {k: canonical.get(id(p), k) for k, p in ref.named_parameters(remove_duplicate=False)}
    grads = {aliases.get(k, k): v for k, v in grads.items()}
    missing = sorted(set(expected) - set(grads))
    assert not missing, f"bombus has no gradient for {missing}"
    # gradients of random nets span orders of magnitude: tolerate float noise relative to the largest, with a
    # floor for gradients that are zero in exact arithmetic (float32 sums leave ~1e-8 there, thread-dependent)
    scale = max(float(g.abs().max()) for g in expected.values())
    atol = max(1e-5 * scale, 1e-7)
    for name, grad in expected.items():
        assert_close(grads[name], grad, atol=atol, rtol=1e-4, what=f"grad {name}")
    for name in set(grads) - set(expected):  # parameters the reference never used must get zero gradient
        assert float(grads[name].abs().max()) == 0.0, f"{name} has a gradient the reference does not"
