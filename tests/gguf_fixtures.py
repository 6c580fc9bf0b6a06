"""Tiny GGUF files written with `gguf.GGUFWriter`, as llama.cpp's converter writes them (Q/K rows permuted
for its interleaved RoPE, tied embeddings as a missing `output.weight`, the tokenizer as metadata), from
random transformers LLaMA models. Nothing here is bombus code."""

from __future__ import annotations

import functools
import random
from pathlib import Path

import numpy as np
import torch
import transformers

from reference import randomize

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] | trim + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


@functools.lru_cache(maxsize=None)
def byte_level_vocabulary(size: int = 400) -> tuple[list[str], list[str]]:
    """(tokens, merges) of a small byte-level BPE trained on CPython's own docs; specials first."""
    from pydoc_data.topics import topics
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=size, special_tokens=SPECIAL, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(list(topics.values())[:200], trainer)
    import json

    model = json.loads(tok.to_str())["model"]
    vocab = sorted(model["vocab"].items(), key=lambda kv: kv[1])
    merges = [" ".join(m) if isinstance(m, list) else m for m in model["merges"]]
    return [t for t, _ in vocab], merges


@functools.lru_cache(maxsize=None)
def sentencepiece_vocabulary(size: int = 400) -> tuple[list[str], list[float], list[int]]:
    """(tokens, scores, token types) shaped like a Llama-2 SentencePiece vocabulary: <unk>, <s>, </s>,
    the 256 byte tokens <0x00>..<0xFF>, then BPE pieces with scores -rank."""
    from pydoc_data.topics import topics
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    trainer = trainers.BpeTrainer(vocab_size=size, show_progress=False)
    tok.train_from_iterator(list(topics.values())[:200], trainer)
    pieces = [t for t, _ in sorted(tok.get_vocab().items(), key=lambda kv: kv[1])]
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + pieces
    scores = [0.0] * 259 + [-float(i) for i in range(len(pieces))]
    types = [2, 3, 3] + [6] * 256 + [1] * len(pieces)
    return tokens, scores, types


def llama_permute(w: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's `LlamaModel.permute` of Q/K rows (half-split -> interleaved pairs)."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


GGUF_NAMES = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
LAYER_NAMES = {
    "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def gguf_name(name: str) -> str:
    if name in GGUF_NAMES:
        return GGUF_NAMES[name]
    parts = name.split(".")  # model.layers.{i}.<module>.<leaf>
    return f"blk.{parts[2]}.{LAYER_NAMES['.'.join(parts[3:-1])]}.{parts[-1]}"


def random_llama(seed: int, *, vocab_size: int, **overrides) -> transformers.LlamaForCausalLM:
    rng = random.Random(seed)
    heads = rng.choice([2, 4])
    config = dict(vocab_size=vocab_size, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                  num_attention_heads=heads, num_key_value_heads=rng.choice([1, heads]), max_position_embeddings=64,
                  rms_norm_eps=1e-5, tie_word_embeddings=rng.random() < 0.5, bos_token_id=1, eos_token_id=2,
                  pad_token_id=2, rope_parameters={"rope_type": "default", "rope_theta": rng.choice([1e4, 1e5])})
    config.update(overrides)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**config))
    return randomize(model, seed, std=0.1)


def random_q4_k(shape: tuple[int, int], seed: int) -> np.ndarray:
    """Q4_K blocks (256 values in 144 bytes: fp16 d, fp16 dmin, 12 bytes of 6-bit scales, 128 of nibbles)."""
    rows, columns = shape
    blocks = np.random.default_rng(seed).integers(0, 256, (rows, columns // 256, 144), dtype=np.uint8)
    blocks[..., 0:2] = np.frombuffer(np.float16(0.002).tobytes(), np.uint8)
    blocks[..., 2:4] = np.frombuffer(np.float16(0.001).tobytes(), np.uint8)
    return blocks.reshape(rows, -1)


def write_gguf(path: Path, model: transformers.LlamaForCausalLM, *, weight_type: str = "F32",
               embedding_type: str | None = None, tokenizer: str = "gpt2", pre: str = "default",
               add_bos: bool = False, extra_tensors: dict | None = None) -> Path:
    """Write `model` as llama.cpp would: 2-D weights in `weight_type`, norms in F32."""
    import gguf

    c = model.config
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-llama")
    writer.add_block_count(c.num_hidden_layers)
    writer.add_context_length(c.max_position_embeddings)
    writer.add_embedding_length(c.hidden_size)
    writer.add_feed_forward_length(c.intermediate_size)
    writer.add_head_count(c.num_attention_heads)
    writer.add_head_count_kv(c.num_key_value_heads)
    writer.add_layer_norm_rms_eps(c.rms_norm_eps)
    writer.add_rope_freq_base(c.rope_parameters["rope_theta"])
    writer.add_rope_dimension_count(c.head_dim)
    writer.add_vocab_size(c.vocab_size)
    if tokenizer == "gpt2":
        tokens, merges = byte_level_vocabulary()
        assert len(tokens) == c.vocab_size
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre(pre)
        writer.add_token_list(tokens)
        writer.add_token_types([3 if t in SPECIAL else 1 for t in tokens])
        writer.add_token_merges(merges)
        writer.add_bos_token_id(1)
        writer.add_eos_token_id(2)
        writer.add_unk_token_id(0)
        writer.add_pad_token_id(2)
        writer.add_chat_template(CHAT_TEMPLATE)
    else:
        tokens, scores, types = sentencepiece_vocabulary()
        assert len(tokens) == c.vocab_size
        writer.add_tokenizer_model("llama")
        writer.add_token_list(tokens)
        writer.add_token_scores(scores)
        writer.add_token_types(types)
        writer.add_bos_token_id(1)
        writer.add_eos_token_id(2)
        writer.add_unk_token_id(0)
    writer.add_add_bos_token(add_bos)
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight" and c.tie_word_embeddings:
            continue  # llama.cpp leaves the tied head out
        w = tensor.detach().float().numpy()
        if name.endswith("q_proj.weight"):
            w = llama_permute(w, c.num_attention_heads)
        elif name.endswith("k_proj.weight"):
            w = llama_permute(w, c.num_key_value_heads)
        kind = (embedding_type or weight_type) if name == "model.embed_tokens.weight" else weight_type
        if w.ndim == 1 or kind == "F32":
            writer.add_tensor(gguf_name(name), np.ascontiguousarray(w, dtype=np.float32))
        elif kind == "F16":
            writer.add_tensor(gguf_name(name), w.astype(np.float16))
        elif kind == "Q4_K":  # gguf cannot produce K-quants: random blocks with sane fp16 scales instead
            writer.add_tensor(gguf_name(name), random_q4_k(w.shape, seed=len(name)), raw_dtype=gguf.GGMLQuantizationType.Q4_K)
        else:
            qtype = gguf.GGMLQuantizationType[kind]
            writer.add_tensor(gguf_name(name), gguf.quantize(w, qtype), raw_dtype=qtype)
    for name, (data, raw_dtype) in (extra_tensors or {}).items():
        writer.add_tensor(name, data, raw_dtype=raw_dtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def load_reference(path: Path):
    """transformers' model and tokenizer from the same GGUF file (dequantised to float32)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = transformers.AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name,
                                                                  dtype=torch.float32).eval()
        tok = transformers.AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    return model, tok
