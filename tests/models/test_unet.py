"""PDEBench-style U-Net: shapes in 1D/2D, input checks, trainability, periodic equivariance, rebuild."""

from __future__ import annotations

import importlib
import importlib.util
import math
import sys
from pathlib import Path

import pytest
import torch


def _import_unet():
    """``pdebench.models.unet``, loaded even when ``pdebench/models/__init__.py`` cannot run yet.

    The package ``__init__`` imports every model module to register it; while a sibling (e.g.
    ``fno.py``) is still missing from the checkout, load ``unet`` under a temporary, unexecuted
    package object instead, then drop that placeholder so a later real import runs ``__init__``
    (which reuses the cached ``unet`` module, so nothing registers twice).
    """
    try:
        return importlib.import_module("pdebench.models.unet")
    except ImportError:
        pass
    import pdebench

    folder = Path(pdebench.__file__).parent / "models"
    spec = importlib.util.spec_from_file_location(
        "pdebench.models", folder / "__init__.py", submodule_search_locations=[str(folder)]
    )
    sys.modules["pdebench.models"] = importlib.util.module_from_spec(spec)
    try:
        return importlib.import_module("pdebench.models.unet")
    finally:
        del sys.modules["pdebench.models"]


unet = _import_unet()
UNet = unet.UNet
MODELS = sys.modules["pdebench.models.registry"].MODELS


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_output_shapes_in_1d_and_2d():
    torch.manual_seed(0)
    model = UNet(in_channels=3, out_channels=1, dim=1, width=4)
    assert model(torch.randn(2, 3, 64, generator=_generator())).shape == (2, 1, 64)
    model = UNet(in_channels=2, out_channels=2, dim=2, width=4)
    assert model(torch.randn(2, 2, 32, 32, generator=_generator())).shape == (2, 2, 32, 32)


def test_conditioning_keywords_are_accepted_and_ignored():
    torch.manual_seed(0)
    model = UNet(in_channels=1, out_channels=1, width=4, levels=2).eval()
    x = torch.randn(1, 1, 16, generator=_generator())
    torch.testing.assert_close(model(x, t=torch.tensor([0.5]), nu=0.01), model(x))


def test_default_features_follow_pdebench():
    model = UNet(in_channels=1, out_channels=1, width=32)
    assert [encoder[0].out_channels for encoder in model.encoders] == [32, 64, 128, 256]
    assert model.bottleneck[0].out_channels == 512
    assert model.head.kernel_size == (1,)


def test_non_divisible_size_raises_before_compute():
    model = UNet(in_channels=1, out_channels=1, dim=1, width=4, levels=4)
    calls = []
    model.encoders[0].register_forward_pre_hook(lambda *_: calls.append(1))
    with pytest.raises(ValueError, match=r"spatial size 100 is not divisible by 16 \(levels=4\)"):
        model(torch.zeros(1, 1, 100))
    model2d = UNet(in_channels=1, out_channels=1, dim=2, width=4, levels=3)
    with pytest.raises(ValueError, match="spatial size 20 is not divisible by 8"):
        model2d(torch.zeros(1, 1, 32, 20))
    with pytest.raises(ValueError, match=r"expects 1 input channels, got 2"):
        model(torch.zeros(1, 2, 64))
    with pytest.raises(ValueError, match=r"expects input of shape \(B, C, n\)"):
        model(torch.zeros(1, 1, 32, 32))
    assert calls == []


def test_overfits_a_single_pair():
    """200 Adam steps on one fixed 1D pair cut the MSE >= 100x: gradients reach every level."""
    torch.manual_seed(0)
    s = torch.linspace(0, 2 * math.pi, 65)[:-1]
    x = torch.stack([torch.sin(s), torch.cos(2 * s), 0.5 * torch.sin(3 * s)])[None]  # (1, 3, 64)
    y = torch.sin(s + 0.7)[None, None] + 0.3 * torch.cos(2 * s + 0.3)[None, None]  # (1, 1, 64)
    model = UNet(in_channels=3, out_channels=1, dim=1, width=8)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    with torch.no_grad():
        initial = torch.mean((model(x) - y) ** 2).item()
    for _ in range(200):
        optimiser.zero_grad()
        loss = torch.mean((model(x) - y) ** 2)
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        final = torch.mean((model(x) - y) ** 2).item()
    assert final * 100 <= initial, (initial, final)


def test_every_parameter_gets_a_gradient():
    """Encoder, bottleneck, up-sampling and decoder all sit on the path from input to loss."""
    torch.manual_seed(0)
    model = UNet(in_channels=2, out_channels=1, dim=2, width=4, levels=3)
    model(torch.randn(2, 2, 16, 16, generator=_generator(4))).square().mean().backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


@pytest.mark.parametrize("norm", ["group", "none"])
@pytest.mark.parametrize("dim", [1, 2])
def test_circular_padding_commutes_with_periodic_shifts(norm, dim):
    torch.manual_seed(0)
    model = UNet(in_channels=2, out_channels=3, dim=dim, width=4, levels=4, norm=norm).eval()
    size = 64 if dim == 1 else 32
    x = torch.randn(2, 2, *([size] * dim), generator=_generator(1))
    dims = tuple(range(2, 2 + dim))
    shift = (16,) * dim
    with torch.no_grad():
        rolled_out = model(torch.roll(x, shifts=shift, dims=dims))
        out_rolled = torch.roll(model(x), shifts=shift, dims=dims)
    torch.testing.assert_close(rolled_out, out_rolled, rtol=1e-5, atol=1e-5)


def test_zero_padding_is_not_shift_equivariant():
    """Control for the test above: the equivariance comes from the circular padding."""
    torch.manual_seed(0)
    model = UNet(in_channels=1, out_channels=1, width=4, norm="none", padding_mode="zeros").eval()
    x = torch.randn(1, 1, 64, generator=_generator(2))
    with torch.no_grad():
        gap = (model(torch.roll(x, 16, dims=2)) - torch.roll(model(x), 16, dims=2)).abs().max()
    assert gap > 1e-4


def test_init_args_rebuild_an_identical_model():
    model = UNet(in_channels=3, out_channels=2, dim=2, width=4, levels=3, norm="batch", activation="tanh", padding_mode="zeros")
    args = model.init_args
    assert args == {
        "in_channels": 3, "out_channels": 2, "dim": 2, "width": 4, "levels": 3,
        "norm": "batch", "activation": "tanh", "padding_mode": "zeros",
    }
    assert all(type(v) in (int, str) for v in args.values())
    rebuilt = UNet(**args)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    rebuilt.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 16, 16, generator=_generator(3))
    model.eval(), rebuilt.eval()
    torch.testing.assert_close(rebuilt(x), model(x))


def test_registered_as_an_operator_and_built_by_name():
    entry = MODELS.get("unet")
    assert entry.cls is UNet and entry.board == "operator"
    assert entry.description == "PDEBench-style U-Net (1D/2D)"
    model = MODELS.build("unet", in_channels=1, out_channels=1, dim=2, width=4, levels=2, norm="none")
    assert isinstance(model, UNet) and model.init_args["norm"] == "none"
    spec = MODELS.spec("unet", **model.init_args)
    assert spec["class_path"] == "pdebench.models.unet.UNet"
    assert MODELS.build(spec).init_args == model.init_args
    with pytest.raises(ValueError, match="argument norm='layer'"):
        MODELS.build("unet", in_channels=1, out_channels=1, norm="layer")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dim": 0}, r"dim .* must be 1, 2 or 3, got 0"),
        ({"dim": 4}, r"dim .* must be 1, 2 or 3, got 4"),
        ({"width": 0}, r"width must be an integer >= 1, got 0"),
        ({"width": -8}, r"width must be an integer >= 1, got -8"),
        ({"levels": 0}, r"levels must be an integer >= 1, got 0"),
        ({"in_channels": 0}, r"in_channels must be an integer >= 1, got 0"),
        ({"out_channels": 2.0}, r"out_channels must be an integer >= 1, got 2.0"),
        ({"norm": "layer"}, r"norm must be one of \('batch', 'group', 'none'\), got 'layer'"),
        ({"activation": "swish"}, r"activation must be one of .*'gelu'.*, got 'swish'"),
        ({"padding_mode": "reflect"}, r"padding_mode must be one of \('zeros', 'circular'\), got 'reflect'"),
    ],
)
def test_bad_constructor_arguments_raise(kwargs, message):
    base = {"in_channels": 1, "out_channels": 1}
    with pytest.raises(ValueError, match=message):
        UNet(**{**base, **kwargs})
