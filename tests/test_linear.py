"""The shared Linear layer: equal to `F.linear` on every path (oneDNN for CPU float32 inference, F.linear
for training and other dtypes), whatever the input's shape or layout."""

import random

import pytest
import torch
import torch.nn.functional as F

from bombus.layers import linear as linear_module
from bombus.layers.linear import Linear, linear


def _random_case(seed: int):
    rng = random.Random(seed)
    n_in, n_out = rng.randint(1, 200), rng.randint(1, 300)
    lead = [rng.randint(0, 5) for _ in range(rng.randint(0, 3))]
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(*lead, n_in, generator=generator)
    if rng.random() < 0.5 and x.dim() >= 2:  # a non-contiguous view
        x = torch.randn(*lead[:-1], n_in, lead[-1], generator=generator).transpose(-1, -2)
    weight = torch.randn(n_out, n_in, generator=generator)
    if rng.random() < 0.5:  # the decoding layout: column-major storage
        weight = weight.t().contiguous().t()
    bias = torch.randn(n_out, generator=generator) if rng.random() < 0.7 else None
    return x, weight, bias


@pytest.mark.parametrize("seed", range(12))
def test_inference_equals_f_linear(seed):
    x, weight, bias = _random_case(seed)
    with torch.no_grad():
        got = linear(x, weight, bias)
    want = F.linear(x, weight, bias)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_cpu_float32_inference_uses_onednn(monkeypatch):
    """The fast kernel is actually taken where it should be (and not where it must not be)."""
    if not linear_module.ONEDNN:
        pytest.fail("this PyTorch build has no oneDNN linear: the CPU fast path cannot be checked")
    calls = []
    original = torch.ops.mkldnn._linear_pointwise

    class Spy:
        def __call__(self, *args):
            calls.append(args[0].dtype)
            return original(*args)

    monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", Spy(), raising=False)
    layer = Linear(8, 4)
    with torch.no_grad():
        layer(torch.randn(3, 8))
    assert calls == [torch.float32]
    with torch.no_grad():
        linear(torch.randn(3, 8), torch.randn(12, 8)[::3])  # rows with gaps between them: F.linear reads them
        assert linear(torch.randn(3, 8), torch.randn(8, 4).t()).shape == (3, 4)  # column-major: oneDNN
    assert calls == [torch.float32] * 2
    layer(torch.randn(3, 8))  # grad enabled and the weight requires it: autograd's F.linear
    layer.bfloat16()(torch.randn(3, 8, dtype=torch.bfloat16))  # other dtypes: F.linear
    assert calls == [torch.float32] * 2


def test_training_gets_gradients():
    torch.manual_seed(0)
    layer = Linear(16, 8)
    reference = torch.nn.Linear(16, 8)
    reference.load_state_dict(layer.state_dict())
    x = torch.randn(4, 16, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    layer(x).square().sum().backward()
    reference(x_ref).square().sum().backward()
    torch.testing.assert_close(layer.weight.grad, reference.weight.grad)
    torch.testing.assert_close(layer.bias.grad, reference.bias.grad)
    torch.testing.assert_close(x.grad, x_ref.grad)


def test_is_an_nn_linear():
    layer = Linear(5, 3, bias=False)
    assert isinstance(layer, torch.nn.Linear)
    assert set(layer.state_dict()) == {"weight"}
