"""GGUF checkpoints (llama.cpp's single-file format), read with the `gguf` package (`pip install gguf`).

One file holds the config (metadata), the weights (often quantised) and the tokenizer. Here:
  * `read(path)` opens it (a `CheckpointError` for anything that is not a readable GGUF file);
  * `load_spec` / `load_model` turn the metadata into a family's spec and the tensors into its parameters,
    through the family's `gguf_keys` table. llama.cpp reorders the rows of the Q and K projections for its
    interleaved RoPE; they are put back in the half-split order bombus' (and transformers') RoPE expects.
  * Quantised tensors either become floats of the requested dtype (`quantize="dequantize"`), or stay small
    (`quantize="keep"`, the default on CPU): Q4_0/Q4_1 projections become `Int4Linear` (the blocks map onto
    PyTorch's int4 kernel exactly: same 4-bit values, same groups of 32); a Q8_0 token embedding keeps its
    blocks exactly (`Int8Embedding`); Q8_0 projections become per-row int8 (`Int8Linear`), and a Q8_0 LM
    head a `RescoredHead` (int8 scores, the best ones recomputed from the exact blocks); other types are
    dequantised. Tensors are converted one at a time: float32 copies of the whole model never exist.
  * `load_tokenizer_data` turns the tokenizer metadata into a `tokenizers.Tokenizer` that gives the same ids
    as transformers' GGUF tokenizer (`AutoTokenizer.from_pretrained(folder, gguf_file=...)`).
"""

from __future__ import annotations

import functools
import os
import re
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .checkpoint import _set_tensor
from .errors import CheckpointError, ConfigError, TokenizerError
from .tokenizer.byte_level import bytes_to_unicode
from .tokenizer.vocab import byte_level_bpe

# Tensor types bombus reads: plain floats, and the block types `gguf.dequantize` decodes.
FLOATS = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
SUPPORTED = (*FLOATS, "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K")
KEEP, DEQUANTIZE = "keep", "dequantize"


def _gguf():
    try:
        import gguf
    except ImportError:
        raise CheckpointError("reading GGUF files needs the gguf package: pip install 'bombus[gguf]'") from None
    return gguf


@functools.lru_cache(maxsize=1)
def _reader_class():
    gguf = _gguf()

    class Reader(gguf.GGUFReader):
        """`GGUFReader` over a plain ndarray view of its memory map: the same parsing, ~6x faster on
        files with big vocabularies, because numpy's `memmap` subclass costs ~1 µs per slice and the
        reader takes one per string (two per token of a 49k vocabulary, plus the merges)."""

        @property
        def data(self):
            return self._data

        @data.setter
        def data(self, value):
            self._data = value.view(np.ndarray)  # still backed by the mapping, which it keeps alive

        def _get(self, offset, dtype, count=1, override_order=None):
            if self.byte_order != "I" or override_order is not None:
                return super()._get(offset, dtype, count, override_order)
            count = int(count)
            return self._data[offset:offset + np.dtype(dtype).itemsize * count].view(dtype)[:count]

        def _get_field_parts(self, orig_offs, raw_type):
            """As `GGUFReader._get_field_parts`, with the same parts, indices and types, but an array of
            strings (a vocabulary, its merges) or of numbers (token types) read in one loop instead of one
            recursive call per item, which costs more than the reading (~5x faster on a 49k vocabulary)."""
            if raw_type != gguf.GGUFValueType.ARRAY or self.byte_order != "I":
                return super()._get_field_parts(orig_offs, raw_type)
            raw_itype = self._get(orig_offs, np.uint32)
            item = gguf.GGUFValueType(int(raw_itype[0]))
            number = self.gguf_scalar_to_np.get(item)
            if item != gguf.GGUFValueType.STRING and number is None:  # nested arrays
                return super()._get_field_parts(orig_offs, raw_type)
            alen = self._get(orig_offs + 4, np.uint64)
            count, offs = int(alen[0]), orig_offs + 12
            parts = [raw_itype, alen]
            if number is not None:  # one 1-item view per number, as the stock reader makes them
                values = self._get(offs, number, count)
                parts += [values[i:i + 1] for i in range(count)]
                offs += int(values.nbytes)
            else:  # a length and the bytes of each string
                data, lengths = self._data, np.dtype(np.uint64)
                for _ in range(count):
                    size = int.from_bytes(data[offs:offs + 8], sys.byteorder)
                    parts.append(data[offs:offs + 8].view(lengths))
                    parts.append(data[offs + 8:offs + 8 + size])
                    offs += 8 + size
            step = 1 if number is not None else 2
            types = [gguf.GGUFValueType.ARRAY] + ([item] if count else [])
            return offs - orig_offs, parts, list(range(2 + step - 1, len(parts), step)), types

    return Reader


def read(path: str | Path):
    """The `gguf.GGUFReader` of `path`; `CheckpointError` if it is not a readable GGUF file."""
    path = Path(path)
    try:
        reader = _reader_class()(path)
    except (ValueError, KeyError, IndexError, OSError, UnicodeDecodeError) as e:
        with open(path, "rb") as f:
            magic = f.read(4)
        what = "not a GGUF file" if magic != b"GGUF" else "a truncated or corrupt GGUF file"
        raise CheckpointError(f"{path} is {what} ({type(e).__name__}: {e}; first bytes {magic!r}, "
                              f"expected b'GGUF')") from None
    if reader.byte_order != "I":
        raise CheckpointError(f"{path} is a GGUF file of the other byte order ({sys.byteorder}-endian machine); "
                              f"bombus reads files of this machine's order only")
    return reader


def metadata(reader) -> dict[str, Any]:
    """The metadata as plain Python values (token lists included)."""
    return {name: field.contents() for name, field in reader.fields.items() if not name.startswith("GGUF.")}


# The header of the GGUF file read last: loading a model, its spec and its tokenizer then parses the file once
# (the reader parses every string of the vocabulary: ~1 s for a 49k vocabulary, more on a busy machine).
_HEADER: tuple = (None, {}, frozenset())  # (file key, metadata, tensor names), replaced whole (thread-safe)


def header(path: str | Path, reader=None) -> tuple[dict[str, Any], frozenset[str]]:
    """`(metadata, tensor names)` of the GGUF file at `path`, from `reader` when given, else remembered from
    the last time this file (same size and modification time) was read, else read now."""
    global _HEADER
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    remembered = _HEADER
    if reader is None and remembered[0] == key:
        return dict(remembered[1]), remembered[2]
    reader = reader if reader is not None else read(path)
    meta, tensors = metadata(reader), frozenset(t.name for t in reader.tensors)
    _HEADER = (key, meta, tensors)
    return dict(meta), tensors


def gguf_path(source: str | os.PathLike, gguf_file: str | None = None, *, revision: str | None = None,
              token: str | bool | None = None) -> Path | None:
    """The GGUF file meant by `source` (a file path) or by `gguf_file` inside `source` (a folder or hub
    repo, through `bombus.hub.resolve_file`); None when `source` is a folder or repo id without
    `gguf_file` (an ordinary config.json checkpoint)."""
    if gguf_file is not None:
        from .hub import resolve_file

        return resolve_file(source, gguf_file, revision=revision, token=token)
    path = Path(source).expanduser()
    return path if path.is_file() else None


# ---------------------------------------------------------------------------------------------------- spec
def _llama_config(meta: dict[str, Any], tensors: set[str], arch: str) -> dict[str, Any]:
    """An HF LlamaConfig dict from llama.cpp's `llama.*` keys (the names transformers maps them from)."""
    def key(name, default=None):
        return meta.get(f"{arch}.{name}", default)

    required = ("block_count", "embedding_length", "feed_forward_length", "attention.head_count")
    missing = [f"{arch}.{k}" for k in required if key(k) is None]
    if missing:
        raise CheckpointError(f"GGUF metadata lacks {', '.join(missing)}, which a {arch} model needs")
    heads = key("attention.head_count")
    config = {
        "model_type": "llama", "num_hidden_layers": key("block_count"), "hidden_size": key("embedding_length"),
        "intermediate_size": key("feed_forward_length"), "num_attention_heads": heads,
        "num_key_value_heads": key("attention.head_count_kv", heads),
        "max_position_embeddings": key("context_length", 2048),
        "rms_norm_eps": key("attention.layer_norm_rms_epsilon", 1e-5),
        "rope_theta": key("rope.freq_base", 10000.0),
        "head_dim": key("attention.key_length", key("rope.dimension_count")),
        "vocab_size": key("vocab_size", len(meta.get("tokenizer.ggml.tokens", ())) or None),
        # llama.cpp writes `output.weight` only when the LM head is not the token embedding
        "tie_word_embeddings": "output.weight" not in tensors,
        "attention_bias": "blk.0.attn_q.bias" in tensors, "mlp_bias": "blk.0.ffn_up.bias" in tensors,
        "bos_token_id": meta.get("tokenizer.ggml.bos_token_id"),
        "eos_token_id": meta.get("tokenizer.ggml.eos_token_id"),
        "pad_token_id": meta.get("tokenizer.ggml.padding_token_id"),
    }
    scaling = key("rope.scaling.type")
    if scaling not in (None, "none"):
        config["rope_scaling"] = {"rope_type": scaling, "factor": key("rope.scaling.factor")}
    return {k: v for k, v in config.items() if v is not None}


# llama.cpp architecture name -> (bombus model_type, metadata -> HF config).
ARCHITECTURES = {"llama": ("llama", _llama_config)}


def load_spec(path: str | Path, architecture: str | None = None, *, reader=None, **options):
    """The spec of the GGUF file at `path` (architecture default: for_causal_language_modeling)."""
    from .models import family
    from .spec import configure

    meta, tensors = header(path, reader)
    arch = meta.get("general.architecture")
    if arch not in ARCHITECTURES:
        raise ConfigError(f"{path}: GGUF architecture {arch!r} is not supported; bombus reads: "
                          f"{', '.join(ARCHITECTURES)}")
    model_type, to_config = ARCHITECTURES[arch]
    config = to_config(meta, tensors, arch)
    cls = family(model_type).spec_class
    return configure(cls.from_hf_config(config, architecture=architecture or "for_causal_language_modeling"),
                     **options)


# ---------------------------------------------------------------------------------------------------- tensors
def _type_name(tensor) -> str:
    return getattr(tensor.tensor_type, "name", str(tensor.tensor_type))


# Block layouts (`gguf.quants`): an fp16 scale d, Q4_1's fp16 minimum m, then the packed integers.
_BLOCKS = {
    "Q4_0": np.dtype([("d", "<f2"), ("qs", "u1", (16,))]),
    "Q4_1": np.dtype([("d", "<f2"), ("m", "<f2"), ("qs", "u1", (16,))]),
    "Q8_0": np.dtype([("d", "<f2"), ("qs", "i1", (32,))]),
}


def _blocks(raw: np.ndarray, kind: str):
    """Decode Q4_0 / Q4_1 / Q8_0 rows (`[rows, bytes]` uint8) into `(q [rows, columns], d, m)`: the
    integers and the float32 scale (and Q4_1's minimum) of each 32 values. Values are `d * (q - 8)`
    (Q4_0), `d * q + m` (Q4_1), `d * q` (Q8_0), as in `gguf.quants`."""
    blocks = np.ascontiguousarray(raw).view(_BLOCKS[kind])  # (rows, groups)
    d = torch.from_numpy(blocks["d"].astype(np.float32))
    m = torch.from_numpy(blocks["m"].astype(np.float32)) if kind == "Q4_1" else None
    packed = torch.from_numpy(np.ascontiguousarray(blocks["qs"]))  # (rows, groups, 16 or 32)
    if kind == "Q8_0":
        return packed.reshape(packed.shape[0], -1), d, m
    q = torch.empty(*packed.shape[:-1], 32, dtype=torch.uint8)  # low nibbles: values 0-15, high: 16-31
    torch.bitwise_and(packed, 0x0F, out=q[..., :16])
    torch.bitwise_right_shift(packed, 4, out=q[..., 16:])
    return q.reshape(q.shape[0], -1), d, m


def dequantize(tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """One GGUF tensor as floats in `dtype`, in PyTorch's shape order. Q4_0/Q4_1/Q8_0 are decoded here
    (bit-identical to `gguf.dequantize`, and much faster); other block types by `gguf.dequantize`."""
    name = _type_name(tensor)
    if name not in SUPPORTED:
        raise CheckpointError(f"GGUF tensor {tensor.name!r} has type {name}, which bombus cannot read; "
                              f"supported types: {', '.join(SUPPORTED)}")
    shape = tuple(int(n) for n in reversed(tensor.shape.tolist()))
    if name in FLOATS:  # copied out of the mapping, which goes away with the reader; BF16 comes as bytes
        values = torch.from_numpy(np.array(tensor.data))
        return (values.view(torch.bfloat16) if name == "BF16" else values).reshape(shape).to(dtype)
    if name in _BLOCKS:
        q, d, m = _blocks(tensor.data.reshape(-1, tensor.data.shape[-1]), name)
        groups = q.reshape(q.shape[0], -1, 32)
        if name == "Q4_0":
            values = d[..., None] * (groups.to(torch.int8) - 8).float()
        elif name == "Q4_1":
            values = d[..., None] * groups.float() + m[..., None]
        else:
            values = d[..., None] * groups.float()
        return values.reshape(shape).to(dtype)
    return torch.from_numpy(_gguf().dequantize(tensor.data, tensor.tensor_type)).reshape(shape).to(dtype)


def _unpermute(x: torch.Tensor, heads: int) -> torch.Tensor:
    """Undo llama.cpp's Q/K row order: it views the rows as (heads, 2, rows / 2heads) and swaps the last
    two axes (pairs interleaved for its RoPE); this swaps them back (halves split, for rotate-half RoPE)."""
    rows = x.shape[0]
    if rows % (2 * heads):
        raise CheckpointError(f"cannot undo the rotary row permutation: {rows} rows do not split into "
                              f"{heads} heads of an even size")
    return x.reshape(heads, rows // heads // 2, 2, *x.shape[1:]).swapaxes(1, 2).reshape(x.shape)


def _table(cls) -> list[tuple[re.Pattern, str, str | None]]:
    table = getattr(cls, "gguf_keys", None)
    if not table:
        raise ConfigError(f"the {cls.spec_class.model_type} family has no GGUF tensor table")
    rules = []
    for gguf_name, target in table.items():
        ours, heads = (target, None) if isinstance(target, str) else target
        pattern = re.escape(gguf_name).replace(r"\{i\}", r"(?P<i>\d+)")
        rules.append((re.compile(pattern + r"\.(?P<leaf>weight|bias)$"), ours, heads))
    return rules


def _target(rules, name: str) -> tuple[str, str, str | None] | None:
    """(our module, leaf, heads attribute for the Q/K permutation) of a GGUF tensor name."""
    for pattern, ours, heads in rules:
        m = pattern.match(name)
        if m:
            return ours.format(**m.groupdict()), m["leaf"], heads
    return None


def load_model(path: str | Path, *, architecture: str | None = None, dtype: torch.dtype | None = None,
               device: torch.device | str | None = None, quantize: str | None = None, **options):
    """Load the model of a GGUF file; see `bombus.load_model` for the options.

    `quantize`: "keep" (default on CPU for files with Q4_0/Q4_1/Q8_0 tensors) keeps those tensors small
    (see the module doc); "dequantize" (default elsewhere) turns every tensor into `dtype` floats.
    """
    from .models import family
    from .quantize import Int4Linear, Int8Embedding, Int8Linear, RescoredHead, fuse_projections

    path = Path(path)
    reader = read(path)
    spec = load_spec(path, architecture, reader=reader, **options)
    cls = family(spec.model_type)
    dtype = dtype or torch.float32
    device = torch.device(device or "cpu")
    types = {t.name: _type_name(t) for t in reader.tensors}
    unsupported = sorted({f"{n} ({k})" for n, k in types.items() if k not in SUPPORTED})
    if unsupported:
        raise CheckpointError(f"{path}: tensor type(s) bombus cannot read: {', '.join(unsupported)}; "
                              f"supported types: {', '.join(SUPPORTED)}")
    if quantize is None:
        quantize = KEEP if device.type == "cpu" and set(_BLOCKS) & set(types.values()) else DEQUANTIZE
    if quantize not in (KEEP, DEQUANTIZE):
        raise ConfigError(f"quantize must be {KEEP!r} or {DEQUANTIZE!r}, got {quantize!r}")
    if quantize == KEEP and device.type != "cpu":
        raise ConfigError(f"quantize='keep' runs PyTorch's CPU int4/int8 kernels; for device {device} load with "
                          f"quantize='dequantize'")

    with torch.device("meta"):
        model = cls(spec)
    rules = _table(cls)
    tied = model.tied_names()
    params = dict(model.named_parameters())
    done: set[str] = set()
    unused: list[str] = []
    kept: dict[str, nn.Module] = {}  # our module name -> its quantised replacement
    for index, tensor in enumerate(reader.tensors):
        if index % 16 == 15:
            _trim()  # hand freed temporaries back, so they do not pile up between the kept tensors
        found = _target(rules, tensor.name)
        if found is None:
            unused.append(tensor.name)
            continue
        module_name, leaf, heads_attr = found
        name = f"{module_name}.{leaf}"
        targets = [name] + [t for t, source in model.tied.items() if source == name and t in tied]
        if not any(t in params for t in targets):
            unused.append(tensor.name)  # e.g. the LM head of a file loaded as base
            continue
        shape = tuple(int(n) for n in reversed(tensor.shape.tolist()))
        expected = tuple(params[targets[0] if targets[0] in params else targets[-1]].shape)
        if shape != expected:
            raise CheckpointError(f"{path}: GGUF tensor {tensor.name!r} has shape {shape}, but the model's "
                                  f"{name!r} expects {expected}: the metadata does not match the weights")
        heads = getattr(spec, heads_attr) if heads_attr else None
        kind = types[tensor.name]
        if quantize == KEEP and leaf == "weight" and kind in _BLOCKS:
            raw = tensor.data.reshape(shape[0], -1)
            q, d, m = _blocks(_unpermute(raw, heads) if heads else raw, kind)
            table = Int8Embedding(q, d.half(), dtype) if kind == "Q8_0" else None  # the exact blocks
            for target in targets:
                owner = target.rsplit(".", 1)[0]
                embedding = isinstance(model.get_submodule(owner), nn.Embedding)
                if table is not None:
                    # The int8 kernel wants one scale per row, not per 32 values: requantised (near-lossless);
                    # an LM head rescores its best candidates from the exact blocks.
                    kept[owner] = table if embedding else Int8Linear(*_q8_to_rows(q, d))
                    if not embedding and target in model.tied:  # `tied` names the LM heads
                        kept[owner] = RescoredHead(kept[owner], table)
                elif embedding:  # a 4-bit token table is looked up as floats
                    _set_tensor(model, target, dequantize(tensor, dtype).to(device))
                else:  # Q4_0: d * (q - 8) -> scale d, zero 0; Q4_1: d * q + m -> scale d, zero m + 8d
                    kept[owner] = Int4Linear.from_groups(q, d, torch.zeros_like(d) if kind == "Q4_0" else m + 8 * d)
            done.update(targets)
            continue
        value = dequantize(tensor, dtype)
        if heads:
            value = _unpermute(value, heads)
        for target in targets:
            _set_tensor(model, target, value.to(device))
        done.update(targets)
    _finish(model, path, params, done, kept, tied, dtype, device, unused)
    if kept:
        fuse_projections(model)
    if device.type == "cpu" and model.architecture in model.generative:
        model.decoding_layout()  # the float Linear layers left, as `bombus.load_model` arranges them
    del reader
    _trim()
    return model.eval()


def _trim() -> None:
    """Return freed heap memory to the OS (glibc). Converting tensors one by one interleaves short-lived
    temporaries with the small kept ones; glibc's growing mmap threshold then leaves the freed temporaries
    resident as heap holes (measured: ~2x the model's size on the real Q4_1 file). No-op elsewhere."""
    global _MALLOC_TRIM
    if _MALLOC_TRIM is None:
        try:
            import ctypes

            _MALLOC_TRIM = ctypes.CDLL("libc.so.6").malloc_trim if sys.platform.startswith("linux") else False
        except (OSError, AttributeError):
            _MALLOC_TRIM = False
    if _MALLOC_TRIM:
        _MALLOC_TRIM(0)


_MALLOC_TRIM = None


def _q8_to_rows(q: torch.Tensor, d: torch.Tensor, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Q8_0 integers and block scales requantised to one scale per row, `chunk` rows at a time."""
    from .quantize import int8_rows

    out, scales = torch.empty(q.shape, dtype=torch.int8), torch.empty(q.shape[0])
    for i in range(0, q.shape[0], chunk):
        rows = q[i:i + chunk].reshape(-1, q.shape[1] // 32, 32).float() * d[i:i + chunk, :, None]
        out[i:i + chunk], scales[i:i + chunk] = int8_rows(rows.reshape(-1, q.shape[1]))
    return out, scales


def _finish(model, path, params, done, kept, tied, dtype, device, unused) -> None:
    """Swap in the quantised modules (carrying over biases), initialise what the file lacks, tie."""
    for owner, module in kept.items():
        bias_name = f"{owner}.bias"
        if bias_name in params and getattr(module, "bias", "none") is None:
            bias = model.get_parameter(bias_name)
            if bias.is_meta:
                raise CheckpointError(f"{path}: {bias_name} is missing from the file")
            module.bias = nn.Parameter(bias.detach().float(), requires_grad=False)
        model.set_submodule(owner, module)
    kept_params = {n for n in params if n.rsplit(".", 1)[0] in kept}
    missing = [n for n in params if n not in done and n not in kept_params and n not in tied]
    if len(missing) == len([n for n in params if n not in tied]):
        raise CheckpointError(f"{path}: none of the model's parameters were found in the file")
    for name in missing:
        module_name, _, leaf = name.rpartition(".")
        module = model.get_submodule(module_name)
        _set_tensor(model, name, torch.empty(params[name].shape, dtype=dtype, device=device))
        model.init_module(module, leaf)
    if missing:
        warnings.warn(f"newly initialised (not in the checkpoint; train them before use): {', '.join(missing)}",
                      stacklevel=3)
    if not any(t.rsplit(".", 1)[0] in kept for t in tied):  # else the quantised modules share their tensors
        model.tie_weights()
    ignored = [n for n in unused if n != "rope_freqs.weight"]
    if "rope_freqs.weight" in unused:
        warnings.warn(f"{path} has rope_freqs.weight (per-frequency RoPE factors, as Llama 3.1+ files do); "
                      f"bombus does not apply them yet (neither does transformers): attention between distant "
                      f"tokens differs from llama.cpp's", stacklevel=3)
    if ignored:
        warnings.warn(f"GGUF tensors not used by this architecture: {', '.join(ignored)}", stacklevel=3)


# ---------------------------------------------------------------------------------------------------- tokenizer
# Pre-tokenizer regexes transformers picks by `tokenizer.ggml.pre` (others keep GPT-2's built-in split).
_LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
SPLITS = {**dict.fromkeys(("llama3", "llama-v3", "llama-bpe", "falcon3", "smaug-bpe", "dbrx"), _LLAMA3_SPLIT),
          **dict.fromkeys(("qwen2", "deepseek-r1-qwen"), _QWEN2_SPLIT)}
_CONTROL, _USER_DEFINED = 3, 4


def _merges_from_scores(tokens: list[str], scores: list[float]) -> list[tuple[str, str]]:
    """BPE merges implied by a SentencePiece vocabulary: every split of a token into two tokens, best
    score first (transformers' `generate_merges`, which its GGUF tokenizer uses)."""
    vocab = {t: i for i, t in enumerate(tokens)}
    merges = []
    for token, score in zip(tokens, scores):
        local = [(token[:k], token[k:], score) for k in range(1, len(token))
                 if token[:k] in vocab and token[k:] in vocab]
        merges.extend(sorted(local, key=lambda x: (vocab[x[0]], vocab[x[1]])))
    merges.sort(key=lambda x: (x[2], len(x[0]), len(x[1])), reverse=True)
    return [(a, b) for a, b, _ in merges]


def load_tokenizer_data(path: str | Path, reader=None):
    """`(backend, config)`: the `tokenizers.Tokenizer` a GGUF file describes (vocabulary, merges, control and
    user-defined tokens) and its tokenizer config (named special tokens, `additional_special_tokens`,
    `add_bos_token`, `add_eos_token`, `chat_template`), from which `bombus.load_tokenizer` adds the named
    special tokens and the BOS/EOS post-processing as for any tokenizer."""
    import tokenizers
    from tokenizers import AddedToken, Regex, decoders, pre_tokenizers
    from tokenizers import models as tk_models

    meta, _ = header(path, reader)
    kind = meta.get("tokenizer.ggml.model")
    tokens = meta.get("tokenizer.ggml.tokens")
    if not tokens:
        raise TokenizerError(f"{path} holds no tokenizer (no tokenizer.ggml.tokens)")
    types = meta.get("tokenizer.ggml.token_type") or [1] * len(tokens)
    config: dict[str, Any] = {"add_bos_token": meta.get("tokenizer.ggml.add_bos_token", kind == "llama"),
                              "add_eos_token": meta.get("tokenizer.ggml.add_eos_token", False),
                              "clean_up_tokenization_spaces": False}
    if "tokenizer.chat_template" in meta:
        config["chat_template"] = meta["tokenizer.chat_template"]
    if kind == "gpt2":  # byte-level BPE
        spelling = bytes_to_unicode()
        alphabet = set(spelling.values())
        vocab = {(t if set(t) <= alphabet else "".join(spelling[b] for b in t.encode("utf-8"))): i
                 for i, t in enumerate(tokens)}
        merges = [tuple(m.split(" ")) for m in meta.get("tokenizer.ggml.merges", [])]
        backend = tokenizers.Tokenizer(byte_level_bpe(vocab, merges))
        split = SPLITS.get(meta.get("tokenizer.ggml.pre"))
        if split is None:
            backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        else:
            backend.pre_tokenizer = pre_tokenizers.Sequence([
                pre_tokenizers.Split(Regex(split), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        backend.decoder = decoders.ByteLevel()
        control_ok = lambda t: set(t) <= alphabet  # noqa: E731  a mislabelled control token is skipped
    elif kind == "llama":  # SentencePiece BPE with byte fallback, as transformers' LlamaTokenizer builds it
        vocab = {t: i for i, t in enumerate(tokens)}
        merges = ([tuple(m.split(" ")) for m in meta["tokenizer.ggml.merges"]] if "tokenizer.ggml.merges" in meta
                  else _merges_from_scores(tokens, meta.get("tokenizer.ggml.scores") or [0.0] * len(tokens)))
        backend = tokenizers.Tokenizer(tk_models.BPE(vocab=vocab, merges=merges, fuse_unk=True, byte_fallback=True,
                                                     dropout=None))
        backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
        backend.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                             decoders.Strip(content=" ", left=1)])
        control_ok = lambda t: True  # noqa: E731
    else:
        raise TokenizerError(f"{path}: GGUF tokenizer model {kind!r} is not supported; bombus reads 'gpt2' "
                             f"(byte-level BPE) and 'llama' (SentencePiece BPE)")
    added = [AddedToken(t, normalized=False, special=True) for t, k in zip(tokens, types)
             if k == _CONTROL and control_ok(t)]
    user = [AddedToken(t, normalized=False, special=False) for t, k in zip(tokens, types)
            if k == _USER_DEFINED and t in vocab]
    for name, key in (("bos_token", "bos"), ("eos_token", "eos"), ("unk_token", "unknown"), ("pad_token", "padding")):
        index = meta.get(f"tokenizer.ggml.{key}_token_id")
        if index is not None and 0 <= index < len(tokens):
            config[name] = tokens[index]
    backend.add_tokens(added)
    backend.add_tokens(user)
    named = {config[n] for n in ("bos_token", "eos_token", "unk_token", "pad_token") if n in config}
    config["additional_special_tokens"] = [t.content for t in added if t.content not in named]
    return backend, config
