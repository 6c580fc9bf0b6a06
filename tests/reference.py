"""The oracle: tiny transformers reference models with every parameter randomised, saved to folders.

Shared by every model test; nothing here is bombus code. transformers is imported only in tests.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

ATOL, RTOL = 1e-5, 1e-4


def randomize(model: torch.nn.Module, seed: int = 0, std: float = 0.2) -> torch.nn.Module:
    """Give every parameter (biases and norm weights included: zeros hide head bugs) random values."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * std)
    return model.eval()


def save(model, directory: Path, *, safetensors: bool = True) -> Path:
    """`save_pretrained` the reference as .safetensors or as pytorch_model.bin."""
    directory = Path(directory)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if safetensors:
            model.save_pretrained(directory)
        else:
            # transformers 5 always writes safetensors; write the legacy .bin layout by hand.
            model.config.architectures = [type(model).__name__]
            model.config.save_pretrained(directory)
            torch.save({k: v.contiguous() for k, v in model.state_dict().items()},
                       directory / "pytorch_model.bin")
    return directory


def assert_close(ours: torch.Tensor, ref: torch.Tensor, *, mask: torch.Tensor | None = None,
                 atol: float = ATOL, rtol: float = RTOL, what: str = "") -> None:
    """Compare at positions where `mask` (`[batch, seq]`) is 1, or everywhere."""
    assert ours.shape == ref.shape, f"{what}: shape {tuple(ours.shape)} != reference {tuple(ref.shape)}"
    ours, ref = ours.detach().float(), ref.detach().float()
    if mask is not None:
        keep = mask.bool()
        ours, ref = ours[keep], ref[keep]
    torch.testing.assert_close(ours, ref, atol=atol, rtol=rtol, msg=lambda m: f"{what}: {m}")


def assert_cached_decoding_equals_full(model, ids: torch.Tensor, mask: torch.Tensor, *, prefix: int,
                                       cache_length: int, positions: torch.Tensor | None = None, **encoder):
    """The prompt's first `prefix` tokens, then one token at a time through `model.init_cache`, give the full
    forward's logits at real tokens. Each step passes the mask of every token so far (transformers style; only
    its last column is new). `encoder` inputs go to the full forward and the first call; later calls take the
    encoder's keys and values from the cache (`encoder_attention_mask` is still passed). Returns the cache."""
    def at(span):
        return {} if positions is None else {"position_ids": positions[:, span]}

    later = {k: v for k, v in encoder.items() if k != "encoder_hidden_state"}
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=mask, **at(slice(None)), **encoder).logits
        cache = model.init_cache(len(ids), cache_length)
        out = model(input_ids=ids[:, :prefix], attention_mask=mask[:, :prefix], cache=cache,
                    **at(slice(None, prefix)), **encoder)
        steps = [out.logits]
        for t in range(prefix, ids.shape[1]):
            out = model(input_ids=ids[:, t:t + 1], attention_mask=mask[:, :t + 1], cache=out.cache,
                        **at(slice(t, t + 1)), **later)
            steps.append(out.logits)
    assert out.cache is cache and int(cache.offset) == ids.shape[1]
    assert_close(torch.cat(steps, 1), full, mask=mask, what="incremental logits")
    return cache


def padded_batch(config, batch_size=3, length=9, seed=0, padding="right"):
    """Random ids `[batch, length]` and a mask: row 0 full, the others padded ("right" or "left") to a random
    length, padding ids set to `config.pad_token_id`."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, config.vocab_size, (batch_size, length), generator=g)
    mask = torch.ones(batch_size, length, dtype=torch.long)
    for row in range(1, batch_size):
        n = int(torch.randint(1, length - 1, (1,), generator=g))
        if padding == "right":
            mask[row, n:] = 0
        else:
            mask[row, : length - n] = 0
    return ids.masked_fill(mask == 0, config.pad_token_id), mask
