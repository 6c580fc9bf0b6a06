"""TF (`tf_model.h5`) and Flax (`flax_model.msgpack`) checkpoints, read without TensorFlow or JAX.

The fixtures in tests/fixtures/ are real: tiny randomised PyTorch references converted by transformers 4.57's
own TF and Flax classes (tests/fixtures/make_tf_flax.py). Each test copies a fixture without its
model.safetensors, so bombus must read the other format, and compares with the PyTorch reference loaded by
the current transformers.
"""

from __future__ import annotations

import functools
import json
import shutil
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import transformers

import bombus
from bombus.errors import CheckpointError, SourceError
from encoder_fixtures import compare
from reference import assert_close, padded_batch

try:
    import h5py
    import msgpack
except ImportError as e:  # a missing test dependency fails (the `test` extra installs both)
    pytest.fail(f"tests/test_tf_flax.py needs h5py and msgpack: pip install -e '.[test]' ({e})",
                pytrace=False)

FIXTURES = Path(__file__).parent / "fixtures"
NAMES = sorted(d.name for d in FIXTURES.iterdir() if (d / "model.safetensors").is_file())
FORMATS = {"tf": "tf_model.h5", "flax": "flax_model.msgpack"}


def test_every_family_has_a_base_and_a_head_fixture():
    families = {}
    for name in NAMES:
        family, _, arch = name.partition("-")
        families.setdefault(family, set()).add(arch)
        assert all((FIXTURES / name / file).is_file() for file in FORMATS.values()), name
    assert set(families) == {"gpt2", "bert", "roberta", "distilbert", "albert"}
    assert all("base" in archs and len(archs) >= 2 for archs in families.values()), families


def copy_files(source: Path, files: list[str], directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for file in files:
        shutil.copy(source / file, directory / file)
    return directory


def copy_fixture(name: str, weights: str, directory: Path) -> Path:
    """The fixture's config.json and one weights file, in a folder of their own."""
    return copy_files(FIXTURES / name, ["config.json", weights], directory)


@functools.cache
def reference(name: str):
    folder = FIXTURES / name
    architecture = json.loads((folder / "config.json").read_text())["architectures"][0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return getattr(transformers, architecture).from_pretrained(folder, attn_implementation="eager").eval()


def inputs_for(name: str, config) -> dict:
    pad = config.pad_token_id if config.pad_token_id is not None else 0  # GPT-2 has none: any id will do
    ids, mask = padded_batch(SimpleNamespace(vocab_size=config.vocab_size, pad_token_id=pad), batch_size=3,
                             length=9, seed=len(name))
    inputs = {"input_ids": ids, "attention_mask": mask}
    if name.startswith(("bert", "albert")):  # random token types: a misplaced token type table shows
        inputs["token_type_ids"] = torch.randint(0, config.type_vocab_size, ids.shape,
                                                 generator=torch.Generator().manual_seed(1))
    return inputs


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", NAMES)
def test_outputs_equal_the_pytorch_reference(tmp_path, name, fmt):
    folder = copy_fixture(name, FORMATS[fmt], tmp_path / name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every parameter found, every file tensor used
        model = bombus.load_model(folder)
    ref = reference(name)
    inputs = inputs_for(name, ref.config)
    with torch.no_grad():
        ours = model(**inputs, output_hidden_states=True, output_attentions=True)
        theirs = ref(**inputs, output_hidden_states=True, output_attentions=True)
    assert compare(ours, theirs, mask=inputs["attention_mask"]) >= 3  # an output, hidden states, attentions


@pytest.mark.parametrize("fmt", FORMATS)
def test_sharded_checkpoint(tmp_path, fmt):
    """transformers' sharded TF/Flax layout: `<weights>.index.json` naming the shards, each a file of its own."""
    source, folder = FIXTURES / "bert-base-sharded", tmp_path / "sharded"
    stem = Path(FORMATS[fmt]).stem
    files = ["config.json", *(f.name for f in source.glob(f"{stem}*"))]
    assert len(files) >= 4, files  # config, index and at least two shards
    copy_files(source, files, folder)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = bombus.load_model(folder)
    ref = reference("bert-base")
    inputs = inputs_for("bert-base", ref.config)
    with torch.no_grad():
        compare(model(**inputs, output_hidden_states=True), ref(**inputs, output_hidden_states=True),
                mask=inputs["attention_mask"])
    shard = sorted(folder.glob(f"{stem}-*"))[-1]
    shard.unlink()
    with pytest.raises(SourceError, match=shard.name):
        bombus.load_model(folder)


@pytest.mark.parametrize("fmt", FORMATS)
def test_head_checkpoint_into_base_and_base_into_head(tmp_path, fmt):
    folder = copy_fixture("bert-for_pre_training", FORMATS[fmt], tmp_path / "head")
    unused = rf"not used by this architecture: .*cls\.predictions.* \(in .*{FORMATS[fmt]}\)"
    with pytest.warns(UserWarning, match=unused):
        base = bombus.load_model(folder, architecture="base")
    ref = reference("bert-for_pre_training")
    inputs = inputs_for("bert-base", ref.config)
    with torch.no_grad():
        compare(base(**inputs), ref.bert(**inputs), mask=inputs["attention_mask"])
    folder = copy_fixture("roberta-base", FORMATS[fmt], tmp_path / "base")
    with pytest.warns(UserWarning, match=r"newly initialised.*lm_head"):
        head = bombus.load_model(folder, architecture="for_masked_language_modeling")
    inputs = inputs_for("roberta-base", reference("roberta-base").config)
    with torch.no_grad():
        assert_close(head(**inputs, output_hidden_states=True).hidden_states[-1],
                     reference("roberta-base")(**inputs).last_hidden_state, mask=inputs["attention_mask"])


# -- which file is read ------------------------------------------------------------------------------------


def test_pytorch_weights_are_preferred_then_tf_then_flax(tmp_path):
    folder = copy_fixture("gpt2-base", "model.safetensors", tmp_path / "m")
    for weights in FORMATS.values():
        (folder / weights).write_bytes(b"not read")
    bombus.load_model(folder)  # the safetensors file
    (folder / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="tf_model.h5"):
        bombus.load_model(folder)
    shutil.copy(FIXTURES / "gpt2-base" / "tf_model.h5", folder)
    bombus.load_model(folder)  # the .h5, not the corrupt .msgpack
    (folder / "tf_model.h5").unlink()
    with pytest.raises(CheckpointError, match="flax_model.msgpack"):
        bombus.load_model(folder)
    (folder / "flax_model.msgpack").unlink()
    with pytest.raises(SourceError, match="tf_model.h5.*flax_model.msgpack"):
        bombus.load_model(folder)


@pytest.mark.parametrize("fmt,package,extra", [("tf", "h5py", "tf"), ("flax", "msgpack", "flax")])
def test_missing_extra_names_the_install_command(tmp_path, monkeypatch, fmt, package, extra):
    folder = copy_fixture("bert-base", FORMATS[fmt], tmp_path / "m")
    monkeypatch.setitem(sys.modules, package, None)  # `import h5py` raises ImportError
    with pytest.raises(CheckpointError, match=rf"{FORMATS[fmt]}.*{package}.*pip install 'bombus\[{extra}\]'"):
        bombus.load_model(folder)


# -- corrupt files -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("keep", [0.5, 0.05])
def test_truncated_file(tmp_path, fmt, keep):
    folder = copy_fixture("distilbert-base", FORMATS[fmt], tmp_path / "m")
    path = folder / FORMATS[fmt]
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CheckpointError, match=FORMATS[fmt]):
        bombus.load_model(folder)


def test_tf_weight_listed_but_absent_names_it(tmp_path):
    folder = copy_fixture("bert-base", "tf_model.h5", tmp_path / "m")
    with h5py.File(folder / "tf_model.h5", "r+") as f:
        del f["bert/tf_bert_model/bert/pooler/dense/kernel:0"]
    with pytest.raises(CheckpointError, match=r"tf_model.h5.*'tf_bert_model/bert/pooler/dense/kernel:0'"):
        bombus.load_model(folder)


def test_tf_attributes_split_in_chunks(tmp_path):
    """Keras splits a name list too long for one HDF5 attribute into `<name>0`, `<name>1`, ..."""
    folder = copy_fixture("bert-for_pre_training", "tf_model.h5", tmp_path / "m")
    with h5py.File(folder / "tf_model.h5", "r+") as f:
        for node, name in ((f, "layer_names"), (f["bert"], "weight_names")):
            values = list(node.attrs[name])
            del node.attrs[name]
            node.attrs[f"{name}0"], node.attrs[f"{name}1"] = values[:2], values[2:]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = bombus.load_model(folder)
    ref = reference("bert-for_pre_training")
    inputs = inputs_for("bert-for_pre_training", ref.config)
    with torch.no_grad():
        compare(model(**inputs), ref(**inputs), mask=inputs["attention_mask"])


def test_tf_file_without_keras_layers(tmp_path):
    folder = copy_fixture("bert-base", "tf_model.h5", tmp_path / "m")
    with h5py.File(folder / "tf_model.h5", "w") as f:
        f["x"] = [1.0]
    with pytest.raises(CheckpointError, match="tf_model.h5.*layer_names"):
        bombus.load_model(folder)


def _edit_flax(path: Path, edit) -> None:
    """Rewrite a Flax file through `edit(tree)`, arrays kept as their raw extension payloads."""
    tree = msgpack.unpackb(path.read_bytes(), ext_hook=lambda code, data: msgpack.ExtType(code, data),
                           strict_map_key=False)
    edit(tree)
    path.write_bytes(msgpack.packb(tree, use_bin_type=True))


def _array(values: torch.Tensor, dtype: str = "float32", data: bytes | None = None) -> msgpack.ExtType:
    payload = (list(values.shape), dtype, data if data is not None else values.numpy().tobytes())
    return msgpack.ExtType(1, msgpack.packb(payload, use_bin_type=True))


def test_flax_array_with_wrong_byte_count_names_it(tmp_path):
    folder = copy_fixture("bert-base", "flax_model.msgpack", tmp_path / "m")
    bias = torch.zeros(16)
    _edit_flax(folder / "flax_model.msgpack",
               lambda tree: tree["pooler"]["dense"].update(bias=_array(bias, data=bias.numpy().tobytes()[:-4])))
    with pytest.raises(CheckpointError, match=r"flax_model.msgpack.*'pooler/dense/bias'.*64 bytes but holds 60"):
        bombus.load_model(folder)


def test_flax_unsupported_dtype_and_non_array_leaf_name_them(tmp_path):
    folder = copy_fixture("bert-base", "flax_model.msgpack", tmp_path / "m")
    _edit_flax(folder / "flax_model.msgpack",
               lambda tree: tree["pooler"]["dense"].update(bias=_array(torch.zeros(16), dtype="complex64")))
    with pytest.raises(CheckpointError, match=r"'pooler/dense/bias'.*complex64"):
        bombus.load_model(folder)
    _edit_flax(folder / "flax_model.msgpack", lambda tree: tree["pooler"]["dense"].update(bias="text"))
    with pytest.raises(CheckpointError, match=r"'pooler/dense/bias' is a str"):
        bombus.load_model(folder)
    (folder / "flax_model.msgpack").write_bytes(msgpack.packb([1, 2]))
    with pytest.raises(CheckpointError, match="expected a map"):
        bombus.load_model(folder)


def test_flax_chunked_array(tmp_path):
    """Flax splits arrays over 1 GiB into flat chunks; a small one split the same way reads the same."""
    folder = copy_fixture("bert-base", "flax_model.msgpack", tmp_path / "m")
    ref = reference("bert-base")
    table = ref.embeddings.word_embeddings.weight.detach()
    flat = table.reshape(-1)

    def chunk(tree):
        tree["embeddings"]["word_embeddings"]["embedding"] = {
            "__msgpack_chunked_array__": True, "shape": {"0": table.shape[0], "1": table.shape[1]},
            "chunks": {"0": _array(flat[:500]), "1": _array(flat[500:])}}

    _edit_flax(folder / "flax_model.msgpack", chunk)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = bombus.load_model(folder)
    assert torch.equal(model.embeddings.token.weight, table)


@pytest.mark.parametrize("fmt", FORMATS)
def test_missing_parameter_is_named_and_shape_mismatch_fails(tmp_path, fmt):
    folder = copy_fixture("bert-base", FORMATS[fmt], tmp_path / "m")
    path = folder / FORMATS[fmt]
    if fmt == "tf":
        with h5py.File(path, "r+") as f:
            layer = f["bert"]
            names = [n for n in layer.attrs["weight_names"] if "pooler/dense/bias" not in n]
            layer.attrs["weight_names"] = names
    else:
        _edit_flax(path, lambda tree: tree["pooler"]["dense"].pop("bias"))
    with pytest.warns(UserWarning, match=rf"newly initialised.*pooler\.dense\.bias.*{FORMATS[fmt]}"):
        bombus.load_model(folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "intermediate_size": 25}))
    with pytest.raises(CheckpointError, match=rf"encoder\.layer\.0\.intermediate\.dense\.weight' in .*{FORMATS[fmt]} "
                                              rf"has shape \(24, 16\).*expects \(25, 16\)"):
        bombus.load_model(folder)
