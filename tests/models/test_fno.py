"""The neuraloperator FNO/TFNO wrappers and the model registry."""

from __future__ import annotations

import io

import pytest
import torch

from pdebench.models import MODELS


def test_registry_records_boards_and_lists_operators():
    assert {"fno", "tfno", "unet"} <= set(MODELS.available(board="operator"))
    assert MODELS.get("fno").board == "operator"


@pytest.mark.parametrize("name", ["fno", "tfno"])
@pytest.mark.parametrize("dim, shape", [(1, (3, 2, 64)), (2, (2, 2, 32, 32))])
def test_shapes_and_weights_only_state_dict(name, dim, shape):
    model = MODELS.build(name, in_channels=2, out_channels=3, dim=dim, n_modes=6, hidden_channels=8)
    out = model(torch.randn(*shape))
    assert out.shape == (shape[0], 3, *shape[2:])
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    rebuilt = MODELS.build(name, **model.init_args)
    rebuilt.load_state_dict(state)
    x = torch.randn(*shape)
    assert torch.equal(rebuilt(x), model(x))


def test_tfno_is_factorised_and_smaller():
    dense = MODELS.build("fno", in_channels=1, out_channels=1, dim=2, n_modes=12, hidden_channels=32)
    tucker = MODELS.build("tfno", in_channels=1, out_channels=1, dim=2, n_modes=12, hidden_channels=32)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(tucker) < count(dense) / 2


def test_fno_learns_a_linear_operator_exactly_representable_in_fourier_space():
    # The solution operator of the heat equation is diagonal in Fourier space: a one-layer linear
    # spectral map can represent it, so training must drive the relative error far down.
    torch.manual_seed(0)
    n, nu, t = 64, 0.01, 0.5
    k = torch.fft.rfftfreq(n, 1 / n) * 2 * torch.pi
    def solve(u0):
        return torch.fft.irfft(torch.fft.rfft(u0) * torch.exp(-nu * k**2 * t), n=n)
    x = torch.linspace(0, 1, n + 1)[:-1]
    def batch(b):
        a = torch.randn(b, 4, 1)
        u0 = sum(a[:, j] * torch.sin(2 * torch.pi * (j + 1) * x) for j in range(4))
        return u0[:, None], solve(u0)[:, None]
    model = MODELS.build("fno", in_channels=1, out_channels=1, dim=1, n_modes=8, hidden_channels=16, n_layers=2)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(300):
        u0, u1 = batch(16)
        loss = ((model(u0) - u1).norm(dim=-1) / u1.norm(dim=-1)).mean()
        opt.zero_grad(); loss.backward(); opt.step()
    u0, u1 = batch(64)
    with torch.no_grad():
        error = ((model(u0) - u1).norm(dim=-1) / u1.norm(dim=-1)).mean()
    assert error < 0.05, float(error)


def test_too_coarse_resolution_is_a_clear_error():
    model = MODELS.build("fno", in_channels=1, out_channels=1, dim=1, n_modes=16, hidden_channels=4)
    with pytest.raises(ValueError, match="too coarse for n_modes=16"):
        model(torch.randn(1, 1, 16))
