"""GGUF checkpoints: tiny random LLaMA files written with `gguf.GGUFWriter` (every tensor type, GQA, tied
and untied heads, both tokenizer kinds) against transformers' `from_pretrained(folder, gguf_file=...)`."""

import importlib

import shutil
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import bombus
from bombus.quantize import Int4Linear, Int8Embedding, Int8Linear, RescoredHead
from gguf_fixtures import (byte_level_vocabulary, llama_permute, load_reference, random_llama,
                           sentencepiece_vocabulary, write_gguf)
from reference import assert_close

gguf = importlib.import_module("gguf")
importlib.import_module("accelerate")

TYPES = ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q4_K"]
VOCAB = len(byte_level_vocabulary()[0])
TEXTS = ["Hello world", " leading space and  two", "return self.value  # comment\n\n\tindented",
         "<|im_start|>user\nhi<|im_end|>", "Unicode: café, naïve, 日本語, emoji 🤖!", "x" * 300, "", "   "]


def _file(tmp_path, seed=0, name="model.gguf", **options):
    model = random_llama(seed, vocab_size=options.pop("vocab_size", VOCAB), **options.pop("config", {}))
    return write_gguf(tmp_path / name, model, **options), model


@pytest.mark.parametrize("kind", TYPES)
def test_dequantized_equals_transformers(tmp_path, kind):
    seed = TYPES.index(kind)
    wide = {"hidden_size": 256, "intermediate_size": 256} if kind.endswith("_K") else {}  # 256-value blocks
    path, _ = _file(tmp_path, seed, weight_type=kind, embedding_type="Q8_0" if seed % 2 else None, config=wide)
    ref, _ = load_reference(path)
    model = bombus.load_model(path, quantize="dequantize")
    assert model.architecture == "for_causal_language_modeling"
    assert model.spec.tie_word_embeddings == ref.config.tie_word_embeddings
    assert model.spec.kv_heads == ref.config.num_key_value_heads
    ids = torch.randint(3, VOCAB, (2, 11))
    mask = torch.ones_like(ids)
    mask[1, :4] = 0  # left padding
    with torch.no_grad():
        ours = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        theirs = ref(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    assert_close(ours.logits, theirs.logits, mask=mask, what=f"{kind} logits")
    for a, b in zip(ours.hidden_states, theirs.hidden_states):
        assert_close(a, b, mask=mask, what=f"{kind} hidden states")


@pytest.mark.parametrize("kind", ["Q4_0", "Q4_1", "Q8_0"])
@pytest.mark.parametrize("tied", [True, False])
def test_kept_quantized_weights_close_to_dequantized(tmp_path, kind, tied):
    path, _ = _file(tmp_path, 3, weight_type=kind, config={"tie_word_embeddings": tied, "num_key_value_heads": 1})
    exact = bombus.load_model(path, quantize="dequantize")
    model = bombus.load_model(path)  # "keep" is the default for quantised files on CPU
    block = model.transformer.groups[0][0]
    if kind == "Q8_0":
        assert all(isinstance(m, Int8Linear) for m in (block.attention.query, block.attention.key, block.mlp.down))
    else:  # q/k/v and gate/up are fused into one int4 matmul each where the packing allows (below)
        projections = [block.attention.qkv or block.attention.query, block.mlp.gate_up or block.mlp.gate]
        assert all(isinstance(m, Int4Linear) for m in [*projections, block.mlp.down])
    if kind == "Q8_0":  # the exact Q8_0 blocks serve the embedding and rescore the LM head's best logits
        assert isinstance(model.embeddings.token, Int8Embedding)
        assert isinstance(model.lm_head.decoder, RescoredHead)
        assert (model.lm_head.decoder.table is model.embeddings.token) == tied
    kept_bytes = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    float_bytes = sum(p.numel() * p.element_size() for p in exact.parameters())
    assert kept_bytes < 0.5 * float_bytes
    ids = torch.randint(3, VOCAB, (3, 16))
    with torch.no_grad():
        a, b = model(input_ids=ids).logits, exact(input_ids=ids).logits
    assert a.dtype == torch.float32
    # bf16 activations in the int4/int8 kernels: close, not equal
    assert (a - b).abs().max() <= 0.03 * b.abs().max(), (a - b).abs().max()
    assert (a.argmax(-1) == b.argmax(-1)).float().mean() > 0.9
    # the tolerance is tight enough to fail: rows of one packed projection out of order are far off
    with torch.no_grad():
        mlp = block.mlp.down
        (mlp.weight if kind == "Q8_0" else mlp.packed).copy_((mlp.weight if kind == "Q8_0" else mlp.packed).roll(1, 0))
        assert (model(input_ids=ids).logits - b).abs().max() > 0.03 * b.abs().max()


@pytest.mark.parametrize("rows", [48, 40])  # 40: not a multiple of 16, so the packing pads rows
@pytest.mark.parametrize("kind", ["Q4_0", "Q4_1"])
def test_int4_linear_uses_gguf_blocks_exactly(kind, rows):
    from bombus.gguf import _blocks

    w = np.random.default_rng(rows).standard_normal((rows, 96)).astype(np.float32)
    blocks = gguf.quantize(w, gguf.GGMLQuantizationType[kind])
    weight = torch.from_numpy(gguf.dequantize(blocks, gguf.GGMLQuantizationType[kind]))
    q, d, m = _blocks(blocks, kind)
    zero = torch.zeros_like(d) if kind == "Q4_0" else m + 8 * d
    bias = torch.randn(rows)
    layer = Int4Linear.from_groups(q, d, zero, bias)
    x = torch.randn(5, 3, 96)
    expected = F.linear(x.bfloat16().float(), weight, bias)
    out = layer(x)
    assert out.shape == (5, 3, rows) and out.dtype == torch.float32
    error = lambda y: float((y - expected).norm() / expected.norm())  # noqa: E731
    assert error(out) < 0.01  # the bf16 rounding of activations, output and scales; nothing else
    # the general (min/max) quantiser finds Q4_1's grid again; Q4_0's (max-abs) grid only roughly
    assert error(Int4Linear.from_float(weight, bias)(x)) < (0.01 if kind == "Q4_1" else 0.1)
    assert error(Int4Linear.from_float(torch.from_numpy(w), bias)(x)) < 0.2  # 4 bits of the float weight
    assert error(Int4Linear.from_groups(q, d, d * 0, bias)(x)) > 0.1 or kind == "Q4_0"  # zero matters


@pytest.mark.parametrize("rows", [(576, 192, 192), (128, 64), (64, 32, 32), (48, 16)])
def test_fused_int4_projections_equal_the_separate_ones(rows):
    from bombus.quantize import concat_int4, fuse_projections

    layers = [Int4Linear.from_float(torch.randn(n, 96), torch.randn(n)) for n in rows]
    fused = concat_int4(layers)
    x = torch.randn(4, 96)
    if fused is not None:  # every row count a multiple of 64 here; the others may not fuse
        assert torch.equal(fused(x), torch.cat([layer(x) for layer in layers], dim=-1))
    assert (fused is not None) == all(n % 64 == 0 for n in rows)
    # on a model: the blocks' q/k/v and gate/up become one module each, with the same outputs
    from bombus.models.llama import LlamaSpec

    spec = LlamaSpec(vocab_size=50, hidden_size=128, intermediate_size=128, num_blocks=2, num_attention_heads=2,
                     num_key_value_heads=1, architecture="for_causal_language_modeling")
    model = bombus.build_model(spec)
    for block in model.transformer.groups:
        for module in (block[0].attention.query, block[0].attention.key, block[0].attention.value,
                       block[0].mlp.gate, block[0].mlp.up, block[0].mlp.down):
            owner, leaf = next((o, n) for o in model.modules() for n, c in o.named_children() if c is module)
            setattr(owner, leaf, Int4Linear.from_float(module.weight.detach()))
    ids = torch.randint(0, 50, (2, 7))
    with torch.no_grad():
        before = model(input_ids=ids).logits
        assert fuse_projections(model) == 4
        assert torch.equal(model(input_ids=ids).logits, before)
    assert isinstance(model.transformer.groups[0][0].attention.qkv, Int4Linear)


def test_block_decoding_is_bit_identical_to_gguf():
    from bombus.gguf import _BLOCKS, dequantize

    rng = np.random.default_rng(0)
    for kind in _BLOCKS:
        w = (rng.standard_normal((24, 64)) * 3).astype(np.float32)
        qtype = gguf.GGMLQuantizationType[kind]
        data = gguf.quantize(w, qtype)

        class Tensor:  # what GGUFReader yields, minus the file
            name, tensor_type, shape = "t", qtype, np.array([64, 24])

        Tensor.data = data
        assert torch.equal(dequantize(Tensor), torch.from_numpy(gguf.dequantize(data, qtype))), kind


def test_unpermute_inverts_llama_cpp():
    from bombus.gguf import _unpermute

    for heads in (1, 2, 4):
        w = torch.randn(heads * 8, 5)
        assert torch.equal(_unpermute(torch.from_numpy(llama_permute(w.numpy(), heads)), heads), w)


def test_architectures_folder_and_gguf_file(tmp_path):
    path, _ = _file(tmp_path, 1, weight_type="F16", config={"tie_word_embeddings": False})
    folder = tmp_path / "repo"
    folder.mkdir()
    shutil.copy(path, folder / "tiny.gguf")
    causal = bombus.load_model(folder, gguf_file="tiny.gguf")
    assert bombus.load_spec(folder, gguf_file="tiny.gguf") == causal.spec
    with pytest.warns(UserWarning, match="not used.*output.weight"):
        base = bombus.load_model(path, architecture="base")
    with pytest.warns(UserWarning, match="newly initialised.*score"):
        clf = bombus.load_model(path, architecture="for_sequence_classification", num_labels=3)
    ids = torch.randint(3, VOCAB, (2, 7))
    with torch.no_grad():
        expected = causal(input_ids=ids).hidden_state
        assert_close(base(input_ids=ids).hidden_state, expected)
        assert clf(input_ids=ids).logits.shape == (2, 3)


def test_generate_with_kept_weights_matches_a_greedy_loop(tmp_path):
    path, _ = _file(tmp_path, 2, weight_type="Q4_0")
    model = bombus.load_model(path)
    ids = torch.randint(3, VOCAB, (1, 5))
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=6, do_sample=False, eos_token_id=None)
        cache = model.init_cache(1, 11)
        logits = model(input_ids=ids, cache=cache).logits
        loop = [ids]
        for _ in range(6):
            loop.append(logits[:, -1:].argmax(-1))
            logits = model(input_ids=loop[-1], cache=cache).logits
    assert torch.equal(out, torch.cat(loop, 1))


@pytest.mark.parametrize("pre", ["default", "llama-bpe"])
@pytest.mark.parametrize("add_bos", [False, True])
def test_byte_level_tokenizer_matches_transformers(tmp_path, pre, add_bos):
    path, _ = _file(tmp_path, 0, weight_type="F16", pre=pre, add_bos=add_bos)
    _, ref = load_reference(path)
    tok = bombus.load_tokenizer(path)
    assert len(tok) == len(ref)
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == (ref.bos_token, ref.eos_token, ref.pad_token)
    assert (tok.encode("Hello")[0] == tok.bos_token_id) == add_bos
    for text in TEXTS:
        ids = tok.encode(text)
        assert ids == ref(text)["input_ids"], text
        assert tok.decode(ids) == ref.decode(ids, skip_special_tokens=True)
        assert tok.decode(ids, skip_special_tokens=False) == ref.decode(ids)


def test_sentencepiece_tokenizer_matches_transformers(tmp_path):
    path, _ = _file(tmp_path, 0, weight_type="F16", tokenizer="llama", add_bos=True,
                    vocab_size=len(sentencepiece_vocabulary()[0]))
    _, ref = load_reference(path)
    tok = bombus.load_tokenizer(path)
    assert len(tok) == len(ref)
    for text in TEXTS + ["Ünïcödé bytes → ☃ fall back", "two  spaces\nnew line"]:
        ids = tok.encode(text)
        assert ids == ref(text)["input_ids"], text
        assert tok.decode(ids) == ref.decode(ids, skip_special_tokens=True), text


CONVERSATIONS = [
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi"},
     {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "What is 2+2?  "}],
    [{"role": "user", "content": "No system prompt: the template adds its own."}],
]


@pytest.mark.parametrize("conversation", CONVERSATIONS)
def test_chat_template_matches_transformers(tmp_path, conversation):
    path, _ = _file(tmp_path, 0, weight_type="F16")
    _, ref = load_reference(path)
    tok = bombus.load_tokenizer(path)
    for prompt in (True, False):
        text = tok.apply_chat_template(conversation, add_generation_prompt=prompt, tokenize=False)
        assert text == ref.apply_chat_template(conversation, add_generation_prompt=prompt, tokenize=False)
        ids = tok.apply_chat_template(conversation, add_generation_prompt=prompt)
        assert ids == ref.apply_chat_template(conversation, add_generation_prompt=prompt, return_dict=False)
    continued = conversation + [{"role": "assistant", "content": "The answer is"}]
    assert tok.apply_chat_template(continued, continue_final_message=True, tokenize=False) == \
        ref.apply_chat_template(continued, continue_final_message=True, tokenize=False)
    batch = tok.apply_chat_template(CONVERSATIONS, add_generation_prompt=True, return_dict=True,
                                    tokenizer_kwargs={"pad_direction": "left"})
    lengths = [len(tok.apply_chat_template(c, add_generation_prompt=True)) for c in CONVERSATIONS]
    assert batch["attention_mask"].sum(1).tolist() == lengths and bool(batch["attention_mask"][:, -1].all())


def test_chat_template_environment_and_errors():
    from bombus.chat import render

    template = ("{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}"
                "{{ m['content'] | tojson }}{% if loop.last %}{% break %}{% endif %}{% endfor %}"
                "{{ ns.n }}{% if not messages[0].content %}{{ raise_exception('empty!') }}{% endif %}")
    assert render(template, [{"role": "user", "content": "<b>&"}]) == '"<b>&"1'  # tojson does not escape HTML
    with pytest.raises(bombus.errors.InputError, match="empty!"):
        render(template, [{"role": "user", "content": ""}])
    with pytest.raises(bombus.errors.InputError, match="empty conversation"):
        render(template, [])
    with pytest.raises(Exception, match="underscore"):
        render("{% set ns = namespace(_x=1) %}", [{"role": "user", "content": "x"}])


def test_errors(tmp_path):
    not_gguf = tmp_path / "weights.gguf"
    not_gguf.write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(bombus.errors.CheckpointError, match="not a GGUF file"):
        bombus.load_model(not_gguf)
    path, _ = _file(tmp_path, 0, weight_type="Q4_0")
    truncated = tmp_path / "cut.gguf"
    truncated.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(bombus.errors.CheckpointError, match="truncated or corrupt"):
        bombus.load_model(truncated)
    with pytest.raises(bombus.errors.ConfigError, match="quantize"):
        bombus.load_model(path, quantize="int3")
    with pytest.raises(bombus.errors.SourceError):
        bombus.load_model(tmp_path, gguf_file="missing.gguf")
    # a tensor type bombus does not decode: named in the error
    iq = gguf.GGMLQuantizationType.IQ2_XXS
    elements, size = gguf.GGML_QUANT_SIZES[iq]
    extra = {"blk.0.extra.weight": (np.zeros((4, 256 // elements * size), dtype=np.uint8), iq)}
    odd, _ = _file(tmp_path, 0, name="odd.gguf", weight_type="F16", extra_tensors=extra)
    with pytest.raises(bombus.errors.CheckpointError, match="IQ2_XXS"):
        bombus.load_model(odd)
    # metadata that does not fit the tensors
    model = random_llama(0, vocab_size=VOCAB)
    model.config.intermediate_size = 128
    wrong = write_gguf(tmp_path / "wrong.gguf", model, weight_type="F32")
    with pytest.raises(bombus.errors.CheckpointError, match="ffn_gate.weight.*shape"):
        bombus.load_model(wrong)


def test_save_pretrained_converts_dequantized_gguf_to_transformers(tmp_path):
    import transformers

    path, _ = _file(tmp_path, 4, weight_type="Q4_1", config={"num_key_value_heads": 1})
    with pytest.raises(bombus.errors.CheckpointError, match="quantize='dequantize'"):
        bombus.load_model(path).save_pretrained(tmp_path / "kept")
    model = bombus.load_model(path, quantize="dequantize")
    model.save_pretrained(tmp_path / "hf")
    reloaded = transformers.LlamaForCausalLM.from_pretrained(tmp_path / "hf").eval()
    ids = torch.randint(3, VOCAB, (2, 9))
    with torch.no_grad():
        assert_close(model(input_ids=ids).logits, reloaded(input_ids=ids).logits)


def test_kept_weights_with_other_dtypes(tmp_path):
    path, _ = _file(tmp_path, 5, weight_type="Q4_0", embedding_type="Q8_0")
    exact = bombus.load_model(path, quantize="dequantize")
    ids = torch.randint(3, VOCAB, (2, 9))
    with torch.no_grad():
        expected = exact(input_ids=ids).logits
        bf16 = bombus.load_model(path, dtype=torch.bfloat16)
        assert bf16(input_ids=ids).logits.dtype == torch.bfloat16
        assert_close(bf16(input_ids=ids).logits, expected, atol=0.05, rtol=0.05)
        cast = bombus.load_model(path).float()  # a cast of the whole model keeps the kernels' formats working
        assert_close(cast(input_ids=ids).logits, expected, atol=0.03, rtol=0.03)


def test_gguf_tokenizer_saves_as_a_tokenizer_transformers_loads(tmp_path):
    import transformers

    path, _ = _file(tmp_path, 0, weight_type="F16", add_bos=True)
    folder = tmp_path / "repo"
    folder.mkdir()
    shutil.copy(path, folder / "tiny.gguf")
    tok = bombus.load_tokenizer(folder, gguf_file="tiny.gguf")
    tok.save_pretrained(tmp_path / "saved")
    again = bombus.load_tokenizer(tmp_path / "saved")
    theirs = transformers.AutoTokenizer.from_pretrained(tmp_path / "saved")
    conversation = CONVERSATIONS[0]
    for text in TEXTS:
        assert again.encode(text) == tok.encode(text) == theirs(text)["input_ids"], text
    assert again.apply_chat_template(conversation, add_generation_prompt=True) == \
        tok.apply_chat_template(conversation, add_generation_prompt=True) == \
        theirs.apply_chat_template(conversation, add_generation_prompt=True, return_dict=False)


# Block tags on their own indented lines (trim_blocks / lstrip_blocks matter), namespace, loop controls,
# tojson, tools and extra variables: rendered by transformers' environment and by bombus'.
TEMPLATE = """{%- set ns = namespace(system=none) -%}
{%- for m in messages %}
    {%- if m['role'] == 'system' %}
        {%- set ns.system = m['content'] %}
        {%- continue %}
    {%- endif %}
{%- endfor %}
{{ bos_token }}{% if ns.system %}<<SYS>> {{ ns.system }} <</SYS>>
{% endif %}
{% if tools %}
    Tools: {{ tools | tojson }}
{% endif %}
{% for m in messages if m['role'] != 'system' %}
    {% if m['role'] == 'user' %}
[USER] {{ m['content'] | trim }}
    {% elif m['role'] == 'assistant' %}
[BOT] {{ m['content'] }}{{ eos_token }}
    {% else %}
        {{ raise_exception('unknown role ' + m['role']) }}
    {% endif %}
{% endfor %}
{% if add_generation_prompt %}[BOT]{% if think is defined and not think %} /no_think{% endif %}{% endif %}"""


def test_chat_template_environment_matches_transformers(tmp_path):
    path, _ = _file(tmp_path, 0, weight_type="F16")
    _, ref = load_reference(path)
    tok = bombus.load_tokenizer(path)
    tools = [{"type": "function", "function": {"name": "weather", "parameters": {"city": "<str> & 'quoted' é"}}}]
    for conversation in CONVERSATIONS:
        for options in ({}, {"tools": tools}, {"think": False, "add_generation_prompt": True}):
            ours = tok.apply_chat_template(conversation, chat_template=TEMPLATE, tokenize=False, **options)
            assert ours == ref.apply_chat_template(conversation, chat_template=TEMPLATE, tokenize=False, **options)
    with pytest.raises(bombus.errors.InputError, match="unknown role tool"):
        tok.apply_chat_template([{"role": "tool", "content": "x"}], chat_template=TEMPLATE)


def test_header_is_read_once_and_again_when_the_file_changes(tmp_path, monkeypatch):
    from bombus import gguf as gguf_format

    path, _ = _file(tmp_path, 5, config={"num_hidden_layers": 1})
    reads = []
    real_read = gguf_format.read
    monkeypatch.setattr(gguf_format, "read", lambda p: reads.append(p) or real_read(p))
    bombus.load_model(path)
    spec, tok = bombus.load_spec(path), bombus.load_tokenizer(path)
    assert len(reads) == 1 and spec.num_blocks == 1 and tok.chat_template  # spec and tokenizer: remembered
    _file(tmp_path, 5, config={"num_hidden_layers": 3})  # the same path, rewritten
    assert bombus.load_spec(path).num_blocks == 3 and len(reads) == 2
    assert bombus.load_model(path).spec.num_blocks == 3


@pytest.mark.parametrize("tokenizer", ["gpt2", "llama"])
def test_reader_parses_like_the_gguf_package(tmp_path, tokenizer):
    """bombus reads string arrays (vocabularies, merges) in one loop: every field as `gguf.GGUFReader` has it."""
    from bombus.gguf import read

    vocab = VOCAB if tokenizer == "gpt2" else len(sentencepiece_vocabulary()[0])
    path, _ = _file(tmp_path, 6, tokenizer=tokenizer, vocab_size=vocab)
    stock, ours = gguf.GGUFReader(path), read(path)
    assert list(stock.fields) == list(ours.fields)
    for name, field in stock.fields.items():
        mine = ours.fields[name]
        assert (mine.offset, list(mine.data), mine.types) == (field.offset, list(field.data), field.types), name
        assert [(p.dtype, p.tolist()) for p in mine.parts] == [(p.dtype, p.tolist()) for p in field.parts], name
        assert mine.contents() == field.contents(), name
    assert [(t.name, t.data_offset) for t in ours.tensors] == [(t.name, t.data_offset) for t in stock.tensors]
