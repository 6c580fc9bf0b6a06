"""How `generate` drives the model: one static cache sized prompt + new tokens, created once and written in
place; the LM head on the last position only; one-token decode steps with explicit positions; beams reorder
the cache in place."""

from __future__ import annotations

import random

import pytest
import torch
from generation_fixtures import one_thread, random_batch, run_both, tiny  # noqa: F401

import bombus
from bombus.errors import InputError
from bombus.layers.cache import Cache


@pytest.fixture
def spied(tiny, monkeypatch):
    model = bombus.load_model(tiny.folder)
    calls: dict[str, list] = {"init_cache": [], "forward": [], "reorder": []}
    init_cache, forward, reorder = model.init_cache, model.forward, Cache.reorder

    def spy_init_cache(*args, **kwargs):
        calls["init_cache"].append(args)
        return init_cache(*args, **kwargs)

    def spy_forward(**kwargs):
        calls["forward"].append(dict(kwargs))
        return forward(**kwargs)

    def spy_reorder(self, index, *window):
        calls["reorder"].append((index.clone(), *window))
        return reorder(self, index, *window)

    monkeypatch.setattr(model, "init_cache", spy_init_cache)
    monkeypatch.setattr(model, "forward", spy_forward)
    monkeypatch.setattr(Cache, "reorder", spy_reorder)
    return model, calls


def test_greedy_uses_one_static_cache(spied):
    model, calls = spied
    ids, mask = random_batch(random.Random(0), 3, 100, min_len=2, max_len=7)
    out = model.generate(ids, attention_mask=mask, max_new_tokens=6, eos_token_id=None, pad_token_id=0)
    assert out.shape == (3, ids.shape[1] + 6)
    assert calls["init_cache"] == [(3, ids.shape[1] + 6 - 1)]  # the last token is never fed back
    forwards = calls["forward"]
    assert len(forwards) == 6  # prefill + 5 steps
    cache = forwards[0]["cache"]
    assert all(f["cache"] is cache for f in forwards) and all(f["logits_to_keep"] == 1 for f in forwards)
    assert forwards[0]["input_ids"].shape == ids.shape
    positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)
    assert torch.equal(forwards[0]["position_ids"], positions)
    for step, f in enumerate(forwards[1:], start=1):
        assert f["input_ids"].shape == (3, 1)
        assert torch.equal(f["position_ids"], positions[:, -1:] + step)
        assert torch.equal(f["input_ids"][:, 0], out[:, ids.shape[1] + step - 1])
    assert int(cache.offset) == ids.shape[1] + 5
    assert calls["reorder"] == []


def test_beams_reorder_the_cache_in_place(spied):
    model, calls = spied
    ids, mask = random_batch(random.Random(1), 2, 100, min_len=2, max_len=6)
    model.generate(ids, attention_mask=mask, max_new_tokens=5, num_beams=3, eos_token_id=None, pad_token_id=0)
    assert calls["init_cache"] == [(6, ids.shape[1] + 4)]
    assert len(calls["reorder"]) == 5
    for step, (index, start, stop) in enumerate(calls["reorder"]):
        assert index.dtype == torch.long and index.shape == (6,)
        # A beam only ever continues a beam of the same prompt...
        assert ((index // 3) == torch.arange(6) // 3).all()
        # ... so only the generated slots move (the prompt's are the same in every beam).
        assert (start, stop) == (ids.shape[1], ids.shape[1] + step)
    assert any(not torch.equal(index, torch.arange(6)) for index, *_ in calls["reorder"])


def test_max_time_and_use_cache(tiny):
    ids, mask = random_batch(random.Random(2), 2, 100)
    out, _ = run_both(tiny, ids, mask, max_time=1e-9, max_new_tokens=10, pad_token_id=0)
    assert out.shape[1] == ids.shape[1] + 1  # the time check comes after each token
    run_both(tiny, ids, mask, max_time=1e-9, num_beams=2, max_new_tokens=10, pad_token_id=0)
    expected = tiny.ours.generate(ids, attention_mask=mask, max_new_tokens=5)
    assert torch.equal(tiny.ours.generate(ids, attention_mask=mask, max_new_tokens=5, use_cache=False), expected)


def _filled_cache(rows: int, seed: int, device: str = "cpu") -> Cache:
    g = torch.Generator().manual_seed(seed)
    cache = Cache(num_layers=3, batch_size=rows, max_length=11, num_kv_heads=2, head_dim=4, device=device)
    for buffer in (*cache.keys, *cache.values):
        buffer.copy_(torch.randn(buffer.shape, generator=g))
    cache.mask.copy_(torch.rand(cache.mask.shape, generator=g) < 0.5)
    return cache


@pytest.mark.parametrize("seed", range(3))
def test_reorder_gathers_rows_in_place(seed):
    rows = 2 + seed * 3
    cache = _filled_cache(rows, seed)
    before = [t.clone() for t in (*cache.keys, *cache.values, cache.mask)]
    addresses = [t.data_ptr() for t in (*cache.keys, *cache.values, cache.mask)]
    index = torch.randint(0, rows, (rows,), generator=torch.Generator().manual_seed(seed))
    for _ in range(2):  # the second call reuses the scratch buffers
        cache.reorder(index)
        before = [t.index_select(0, index) for t in before]
        after = (*cache.keys, *cache.values, cache.mask)
        assert all(torch.equal(a, b) for a, b in zip(after, before, strict=True))
        assert [t.data_ptr() for t in after] == addresses


@pytest.mark.parametrize("start, stop", [(0, 11), (4, 9), (10, 11), (5, 5), (0, 1)])
def test_reorder_moves_only_its_window(start, stop):
    cache = _filled_cache(5, start * 11 + stop)
    before = [t.clone() for t in (*cache.keys, *cache.values, cache.mask)]
    index = torch.tensor([4, 0, 0, 2, 1])
    cache.reorder(index, start, stop)
    for old, new in zip(before, (*cache.keys, *cache.values, cache.mask), strict=True):
        expected = old.clone()
        window = (slice(None),) * (2 if old.dim() == 4 else 1) + (slice(start, stop),)  # the slot dimension
        expected[window] = old.index_select(0, index)[window]
        assert torch.equal(new, expected)
    with pytest.raises(InputError, match="window"):
        cache.reorder(index, 3, 12)


def test_reorder_allocates_nothing_after_the_first_step():
    from torch.profiler import ProfilerActivity, profile

    cache = _filled_cache(6, 0)
    index = torch.tensor([1, 1, 0, 5, 3, 3])
    cache.reorder(index)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        cache.reorder(index)
    allocated = sum(e.cpu_memory_usage for e in prof.events() if e.cpu_memory_usage > 0)
    assert allocated == 0, f"a reorder allocated {allocated} bytes"
    # A single scratch buffer per shape, shared by every layer's keys and values.
    assert len(cache._scratch) == 2  # keys/values shape, and the mask


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_reorder_allocates_nothing_on_cuda():
    cache = _filled_cache(6, 1, device="cuda")
    index = torch.tensor([2, 2, 0, 5, 4, 3], device="cuda")
    cache.reorder(index)
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    cache.reorder(index)
    torch.cuda.synchronize()
    assert torch.cuda.memory_allocated() == before
