"""Checkpoint loading: the hub path (offline, from a populated cache), dtypes, and every error path."""

import json
import pickle
import shutil
import warnings

import pytest
import torch
import transformers

import bombus
from bombus.errors import CheckpointError, ConfigError, InputError, SourceError
from reference import assert_close, randomize, save


def tiny(**overrides):
    config = dict(vocab_size=50, n_positions=16, n_embd=16, n_layer=2, n_head=2)
    config.update(overrides)
    return randomize(transformers.GPT2LMHeadModel(transformers.GPT2Config(**config)))


@pytest.fixture
def checkpoint(tmp_path):
    return save(tiny(), tmp_path / "model")


def populate_hub_cache(cache, repo_id, files, revision="main"):
    """Lay files out as huggingface_hub's cache does: blobs, snapshots/<commit>, refs/<revision>."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / revision).write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for path in files:
        shutil.copy(path, snapshot / path.name)
    return commit


def test_hub_repo_id_from_offline_cache(tmp_path, checkpoint, monkeypatch):
    cache = tmp_path / "hub"
    commit = populate_hub_cache(cache, "someone/tiny-gpt2", list(checkpoint.iterdir()))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    monkeypatch.setattr("huggingface_hub.file_download.constants.HF_HUB_CACHE", str(cache), raising=False)
    model = bombus.load_model("someone/tiny-gpt2")
    local = bombus.load_model(checkpoint)
    ids = torch.tensor([[1, 2, 3, 4]])
    assert_close(model(input_ids=ids).logits, local(input_ids=ids).logits)
    assert bombus.load_model("someone/tiny-gpt2", revision=commit).spec == local.spec
    with pytest.raises(ConfigError, match="not in the local hub cache"):
        bombus.load_model("someone/other-model")


def test_missing_config(tmp_path, checkpoint):
    (checkpoint / "config.json").unlink()
    with pytest.raises(ConfigError, match="config.json"):
        bombus.load_model(checkpoint)
    with pytest.raises(ConfigError, match="config.json"):
        bombus.load_model(tmp_path / "does-not-exist")


def test_unknown_architecture_and_model_type(checkpoint):
    config = json.loads((checkpoint / "config.json").read_text())
    config["architectures"] = ["GPT2ForTimeTravel"]
    (checkpoint / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="GPT2ForTimeTravel"):
        bombus.load_model(checkpoint)
    with pytest.raises(ConfigError, match="for_time_travel"):
        bombus.load_model(checkpoint, architecture="for_time_travel")
    config["model_type"] = "mamba9"
    (checkpoint / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="mamba9"):
        bombus.load_model(checkpoint)
    (checkpoint / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="config.json"):
        bombus.load_model(checkpoint)


def test_no_weights(checkpoint):
    (checkpoint / "model.safetensors").unlink()
    with pytest.raises(SourceError, match="no weights"):
        bombus.load_model(checkpoint)


def test_truncated_safetensors(checkpoint):
    path = checkpoint / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="model.safetensors"):
        bombus.load_model(checkpoint)
    path.write_bytes(data[:5])
    with pytest.raises(CheckpointError, match="model.safetensors"):
        bombus.load_model(checkpoint)


def test_shape_mismatch_names_key_and_shapes(checkpoint):
    config = json.loads((checkpoint / "config.json").read_text())
    config["vocab_size"] = 60
    (checkpoint / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"wte.weight.*\(50, 16\).*\(60, 16\)"):
        bombus.load_model(checkpoint)


class Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickle_that_is_not_weights_only(tmp_path, checkpoint, capsys):
    (checkpoint / "model.safetensors").unlink()
    state = {"wte.weight": torch.zeros(50, 16), "payload": Evil()}
    torch.save(state, checkpoint / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="weights-only"):
        bombus.load_model(checkpoint)
    assert "must never run" not in capsys.readouterr().out
    (checkpoint / "pytorch_model.bin").write_bytes(pickle.dumps([1, 2]) + b"garbage")
    with pytest.raises(CheckpointError, match="pytorch_model.bin"):
        bombus.load_model(checkpoint)


def test_wrong_family_weights(tmp_path, checkpoint):
    from safetensors.torch import save_file

    save_file({"encoder.layer.0.weight": torch.zeros(2)}, checkpoint / "model.safetensors")
    with pytest.raises(CheckpointError, match="none of the model's parameters"):
        bombus.load_model(checkpoint)


def test_bad_inputs(checkpoint):
    model = bombus.load_model(checkpoint)
    with pytest.raises(InputError, match="max_positions=16"):
        model(input_ids=torch.zeros(1, 17, dtype=torch.long))
    with pytest.raises(InputError, match="not both"):
        model(input_ids=torch.zeros(1, 3, dtype=torch.long), input_embeddings=torch.zeros(1, 3, 16))
    with pytest.raises(InputError, match="required"):
        model(attention_mask=torch.ones(1, 3))
    with pytest.raises(InputError, match="no input 'pixel_values'"):
        model(input_ids=torch.zeros(1, 3, dtype=torch.long), pixel_values=1)
    with pytest.raises(InputError, match="twice"):
        model(input_ids=torch.zeros(1, 3, dtype=torch.long), attention_head_mask=torch.ones(2, 2),
              head_mask=torch.ones(2, 2))
    with pytest.raises(InputError, match="max_positions"):
        model.init_cache(1, 17)
    cache = model.init_cache(1, 4)
    model(input_ids=torch.zeros(1, 3, dtype=torch.long), cache=cache)
    with pytest.raises(InputError, match="cache is full"):
        model(input_ids=torch.zeros(1, 2, dtype=torch.long), cache=cache)
    with pytest.raises(InputError, match="rows"):
        model(input_ids=torch.zeros(2, 1, dtype=torch.long), cache=cache)


def test_float16_and_device_options(checkpoint):
    model = bombus.load_model(checkpoint, dtype=torch.float16, device="cpu")
    assert model.dtype == torch.float16 and model.device.type == "cpu"
    assert model.lm_head.decoder.weight is model.embeddings.token.weight
    logits = model(input_ids=torch.tensor([[1, 2, 3]])).logits
    assert logits.dtype == torch.float16 and torch.isfinite(logits).all()


def test_legacy_gamma_beta_names(checkpoint):
    from safetensors.torch import load_file, save_file

    state = load_file(checkpoint / "model.safetensors")
    renamed = {k.replace("ln_f.weight", "ln_f.gamma").replace("ln_f.bias", "ln_f.beta"): v for k, v in state.items()}
    assert "transformer.ln_f.gamma" in renamed
    save_file(renamed, checkpoint / "model.safetensors")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = bombus.load_model(checkpoint)
    assert torch.equal(model.transformer.final_norm.weight, state["transformer.ln_f.weight"])


@pytest.mark.parametrize("seed", range(4))
def test_transposed_matrices_are_read_piece_by_piece_into_the_same_values(tmp_path, seed, monkeypatch):
    """A matrix the file stores [in, out] (GPT-2's Conv1D), whole or one chunk of it, read straight into a
    contiguous [out, in] tensor in the target dtype, a few rows of the file at a time: equal to reading it
    whole and transposing."""
    from safetensors.torch import save_file

    from bombus import checkpoint

    rng = torch.Generator().manual_seed(seed)
    rows, count = int(torch.randint(1, 40, (1,), generator=rng)), int(torch.randint(1, 4, (1,), generator=rng))
    columns = count * int(torch.randint(1, 30, (1,), generator=rng))
    matrix = torch.randn(rows, columns, generator=rng)
    save_file({"w": matrix}, tmp_path / "m.safetensors")
    monkeypatch.setattr(checkpoint, "_TRANSPOSE_PIECE", 4 * columns * 3)  # three file rows per piece
    reader = checkpoint.CheckpointReader([tmp_path / "m.safetensors"])
    keymap = checkpoint.KeyMap({}, "")
    for chunk in [None] + [(i, count) for i in range(count)]:
        for dtype in (torch.float32, torch.bfloat16):
            key = checkpoint.Key("w", transpose=True, chunk=chunk)
            _, got = checkpoint._read(reader, keymap, key, dtype=dtype, transposed_copy=True)
            part = matrix if chunk is None else matrix.chunk(count, dim=-1)[chunk[0]]
            assert got.is_contiguous() and got.dtype == dtype
            assert torch.equal(got, part.t().to(dtype))
