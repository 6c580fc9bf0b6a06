"""The compiled one-row kernel (bombus.kernels.gemv): built where the CPU has AVX-512, equal to `F.linear`
within float32 rounding on random shapes, and taken by the shared Linear exactly where it applies."""

import random

import pytest
import torch
import torch.nn.functional as F

from bombus.kernels import gemv
from bombus.layers.linear import linear

needs_avx512 = pytest.mark.skipif(torch.backends.cpu.get_cpu_capability() != "AVX512",
                                  reason="the kernel is built for AVX-512 CPUs only; this CPU has none")


@needs_avx512
def test_the_kernel_builds_here():
    assert gemv.available(), "ninja (extra bombus[kernels]) should be installed with the test extra"
    assert gemv.kernel() is not None


@needs_avx512
@pytest.mark.parametrize("seed", range(8))
def test_one_row_equals_f_linear(seed):
    rng = random.Random(seed)
    rows, width = rng.randint(1, 700), 16 * rng.randint(1, 80)
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(*[1] * rng.randint(1, 3), width, generator=generator)
    weight = torch.randn(rows, width, generator=generator)
    bias = torch.randn(rows, generator=generator) if rng.random() < 0.6 else None
    assert gemv.wanted(x, weight)
    got, want = gemv.gemv(x, weight, bias), F.linear(x, weight, bias)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, atol=1e-5 * width ** 0.5, rtol=1e-5)


@needs_avx512
def test_linear_takes_it_only_where_it_applies(monkeypatch):
    calls = []
    real = gemv.gemv
    monkeypatch.setattr(gemv, "gemv", lambda *a: calls.append(a[1].shape) or real(*a))
    weight, bias = torch.randn(40, 64), torch.randn(40)
    with torch.no_grad():
        linear(torch.randn(1, 1, 64), weight, bias)  # one row, row-major, width 64: the kernel
        assert len(calls) == 1
        linear(torch.randn(2, 64), weight, bias)  # two rows
        linear(torch.randn(1, 64), weight.t().contiguous().t(), bias)  # column-major
        linear(torch.randn(1, 40), torch.randn(30, 40), None)  # width not a multiple of 16
    linear(torch.randn(1, 64, requires_grad=True), weight, bias)  # autograd
    assert len(calls) == 1


def test_switched_off_by_the_environment(monkeypatch):
    monkeypatch.setenv("BOMBUS_GEMV", "0")
    assert not gemv.available()
    monkeypatch.setattr(gemv, "_tried", False)
    monkeypatch.setattr(gemv, "_module", None)
    assert gemv.kernel() is None


@needs_avx512
def test_compiled_decoding_calls_it_too(tmp_path, monkeypatch):
    """compile=True graphs call the kernel as the op bombus::gemv (built before compiling): same tokens."""
    import transformers
    from reference import randomize, save

    import bombus

    config = transformers.GPT2Config(n_embd=32, n_head=2, n_layer=2, vocab_size=96, n_positions=64)
    model = bombus.load_model(save(randomize(transformers.GPT2LMHeadModel(config), std=0.1), tmp_path / "m"))
    ids = torch.randint(1, 96, (1, 5))
    with torch.no_grad():
        eager = model.generate(ids, max_new_tokens=6, eos_token_id=None, pad_token_id=0)
        calls = []
        real = gemv.gemv
        monkeypatch.setattr(gemv, "gemv", lambda *a: calls.append(1) or real(*a))
        compiled = model.generate(ids, max_new_tokens=6, eos_token_id=None, pad_token_id=0, compile=True)
    assert calls and torch.equal(compiled, eager)
