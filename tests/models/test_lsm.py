"""Latent Spectral Model: shapes in 1D/2D, any resolution (pad and crop), the spectral update's
formula, argument checks, determinism, rebuild, and a tiny-batch overfit."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pdebench.models import MODELS
from pdebench.models.lsm import LSM, NeuralSpectralBlock, SpectralUpdate


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ------------------------------------------------------------------------------------------ shapes
@pytest.mark.parametrize(
    ("dim", "shape", "kwargs"),
    [
        (1, (2, 3, 96), {"width": 8}),  # 96 = 2**4 * 3: no padding
        (1, (2, 3, 100), {"width": 8}),  # padded to 144, cropped back
        (2, (2, 2, 48, 48), {"width": 8}),
        (2, (2, 2, 25, 31), {"width": 8, "levels": 2, "num_patches": 2}),
        (3, (1, 1, 5, 6, 7), {"width": 8, "levels": 1, "patch_size": 2}),
    ],
)
def test_output_shapes(dim, shape, kwargs):
    torch.manual_seed(0)
    model = LSM(in_channels=shape[1], out_channels=2, dim=dim, **kwargs)
    out = model(torch.randn(*shape, generator=_generator()))
    assert out.shape == (shape[0], 2, *shape[2:])
    assert torch.isfinite(out).all()


def test_default_features_follow_the_paper():
    model = LSM(in_channels=1, out_channels=1, dim=2, width=16)
    assert model.features == [16, 32, 64, 128, 128]
    assert [block.channels for block in model.spectral_blocks] == [16, 32, 64, 128, 128]
    block = model.spectral_blocks[0]
    assert (block.num_tokens, block.heads, block.spectral.basis, block.patch_size) == (4, 8, 12, 3)
    assert model.divisor == 48 and model.padded_shape((85, 85)) == (96, 96)


def test_same_model_runs_at_two_resolutions_one_not_divisible():
    torch.manual_seed(0)
    model = LSM(in_channels=1, out_channels=1, dim=2, width=8, levels=3, patch_size=2).eval()
    assert model.padded_shape((32, 32)) == (32, 32) and model.padded_shape((25, 25)) == (32, 32)
    s32 = torch.linspace(0, 1, 32)
    s25 = torch.linspace(0, 1, 25)
    field = lambda s: (torch.sin(2 * math.pi * s)[:, None] * torch.cos(math.pi * s)[None, :])[None, None]
    with torch.no_grad():
        fine, coarse = model(field(s32)), model(field(s25))
    assert fine.shape == (1, 1, 32, 32) and coarse.shape == (1, 1, 25, 25)
    assert torch.isfinite(fine).all() and torch.isfinite(coarse).all()


def test_non_divisible_input_is_replicate_padded_and_cropped():
    """The lift is pointwise, so padding its features equals padding the input: without the grid
    channels, f(x) at 25 x 22 is f(replicate_pad(x)) at 32 x 32 cropped to the same window."""
    torch.manual_seed(0)
    model = LSM(in_channels=2, out_channels=1, dim=2, width=8, levels=3, patch_size=2, positional_embedding=False).eval()
    x = torch.randn(2, 2, 25, 22, generator=_generator(1))
    padded = F.pad(x, [5, 5, 3, 4], mode="replicate")  # (32 - 22) split 5 + 5, (32 - 25) split 3 + 4
    with torch.no_grad():
        direct, through_padding = model(x), model(padded)[..., 3:28, 5:27]
    torch.testing.assert_close(direct, through_padding, rtol=1e-5, atol=1e-6)


def test_parameter_count_grows_with_width():
    counts = [_count(LSM(in_channels=1, out_channels=1, dim=2, width=w)) for w in (8, 16, 24, 32)]
    assert counts == sorted(counts) and len(set(counts)) == 4
    assert counts[-1] > 10 * counts[0]  # the convolutions dominate: ~ width**2


def test_conditioning_keywords_are_accepted_and_ignored():
    torch.manual_seed(0)
    model = LSM(in_channels=1, out_channels=1, dim=1, width=8, levels=2).eval()
    x = torch.randn(1, 1, 24, generator=_generator())
    torch.testing.assert_close(model(x, t=torch.tensor([0.5]), nu=0.01), model(x))


def test_bad_inputs_raise():
    model = LSM(in_channels=1, out_channels=1, dim=2, width=8, levels=2)
    with pytest.raises(ValueError, match=r"expects 1 input channels, got 2"):
        model(torch.zeros(1, 2, 24, 24))
    with pytest.raises(ValueError, match=r"expects input of shape \(B, C, n, n\)"):
        model(torch.zeros(1, 1, 24))
    block = NeuralSpectralBlock(8, dim=2, patch_size=3, heads=2)
    with pytest.raises(ValueError, match=r"does not split into whole patches \(patch_size=3\)"):
        block(torch.zeros(1, 8, 9, 10))


# ------------------------------------------------------------------------------- spectral update
def test_spectral_update_equals_the_formula_on_a_hand_computed_case():
    """M = 2: frequencies 0 and pi/2. z + a0 sin(0) + a1 sin(pi z/2) + b0 cos(0) + b1 cos(pi z/2)."""
    update = SpectralUpdate(channels=2, basis=2)
    with torch.no_grad():
        update.sin_weight.copy_(torch.tensor([[5.0, 2.0], [0.0, -1.0]]))
        update.cos_weight.copy_(torch.tensor([[3.0, 7.0], [0.5, 0.0]]))
    z = torch.tensor([[0.0, 1.0], [1.0, 3.0], [2.0, -1.0]])  # (tokens, channels)
    expected = torch.tensor([
        # channel 0: z + 2 sin(pi z/2) + 3 + 7 cos(pi z/2);  channel 1: z - sin(pi z/2) + 0.5
        [0.0 + 0.0 + 3.0 + 7.0, 1.0 - 1.0 + 0.5],  # z = 0 | z = 1
        [1.0 + 2.0 + 3.0 + 0.0, 3.0 + 1.0 + 0.5],  # z = 1 | z = 3: sin(3 pi/2) = -1
        [2.0 + 0.0 + 3.0 - 7.0, -1.0 + 1.0 + 0.5],  # z = 2: cos(pi) = -1 | z = -1: sin(-pi/2) = -1
    ])
    torch.testing.assert_close(update(z), expected, rtol=0, atol=1e-5)


def test_spectral_update_matches_a_scalar_loop_with_default_basis():
    torch.manual_seed(0)
    update = SpectralUpdate(channels=3, basis=12)
    with torch.no_grad():
        update.sin_weight.normal_(), update.cos_weight.normal_()
    z = torch.randn(2, 5, 3, generator=_generator(2), dtype=torch.float64)
    a, b = update.sin_weight.detach().double(), update.cos_weight.detach().double()
    expected = torch.empty_like(z)
    for idx in torch.cartesian_prod(torch.arange(2), torch.arange(5), torch.arange(3)).tolist():
        v = float(z[tuple(idx)])
        c = idx[2]
        expected[tuple(idx)] = v + sum(float(a[c, m]) * math.sin(m * math.pi * v / 12)
                                       + float(b[c, m]) * math.cos(m * math.pi * v / 12) for m in range(12))
    torch.testing.assert_close(update.double()(z), expected)


# ------------------------------------------------------------------------------ argument checks
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dim": 0}, r"dim .* must be 1, 2 or 3, got 0"),
        ({"dim": 4}, r"dim .* must be 1, 2 or 3, got 4"),
        ({"width": 0}, r"width must be an integer >= 1, got 0"),
        ({"width": 12}, r"width=12 must be divisible by heads=8"),
        ({"levels": 0}, r"levels must be an integer >= 1, got 0"),
        ({"in_channels": 0}, r"in_channels must be an integer >= 1, got 0"),
        ({"out_channels": 2.0}, r"out_channels must be an integer >= 1, got 2.0"),
        ({"num_tokens": 0}, r"num_tokens must be an integer >= 1, got 0"),
        ({"heads": 0}, r"heads must be an integer >= 1, got 0"),
        ({"basis": 0}, r"basis must be an integer >= 1, got 0"),
        ({"patch_size": 0}, r"patch_size must be an integer >= 1, got 0"),
        ({"num_patches": -2}, r"num_patches must be an integer >= 1, got -2"),
        ({"patch_size": 2, "num_patches": 2}, r"at most one of patch_size and num_patches"),
        ({"projection_channels": 0}, r"projection_channels must be an integer >= 1, got 0"),
        ({"norm": "layer"}, r"norm must be one of .*, got 'layer'"),
        ({"activation": "swish"}, r"activation must be one of .*, got 'swish'"),
        ({"padding_mode": "reflect"}, r"padding_mode must be one of .*, got 'reflect'"),
        ({"positional_embedding": 1}, r"positional_embedding must be True or False, got 1"),
    ],
)
def test_bad_constructor_arguments_raise(kwargs, message):
    base = {"in_channels": 1, "out_channels": 1, "width": 8}
    with pytest.raises(ValueError, match=message):
        LSM(**{**base, **kwargs})


def test_registered_as_an_operator_and_rebuilt_from_init_args():
    entry = MODELS.get("lsm")
    assert entry.cls is LSM and entry.board == "operator"
    model = MODELS.build("lsm", in_channels=2, out_channels=1, dim=2, width=8, levels=2, num_patches=2)
    spec = MODELS.spec("lsm", **model.init_args)
    assert spec["class_path"] == "pdebench.models.lsm.LSM"
    rebuilt = MODELS.build(spec)
    assert rebuilt.init_args == model.init_args
    assert all(type(v) in (int, str, bool, type(None)) for v in model.init_args.values())
    rebuilt.load_state_dict(model.state_dict())
    x = torch.randn(2, 2, 20, 20, generator=_generator(3))
    torch.testing.assert_close(rebuilt.eval()(x), model.eval()(x))
    with pytest.raises(ValueError, match="argument norm='layer'"):
        MODELS.build("lsm", in_channels=1, out_channels=1, norm="layer")


# ------------------------------------------------------------------------- determinism, gradients
def test_deterministic_under_seed():
    x = torch.randn(2, 1, 25, 25, generator=_generator(4))
    outs = []
    for _ in range(2):
        torch.manual_seed(123)
        model = LSM(in_channels=1, out_channels=1, dim=2, width=8, levels=2)
        outs.append(model(x))
        assert torch.equal(model(x), outs[-1])  # the same forward twice
    assert torch.equal(outs[0], outs[1])
    torch.manual_seed(124)
    assert not torch.equal(LSM(in_channels=1, out_channels=1, dim=2, width=8, levels=2)(x), outs[0])


def test_every_parameter_gets_a_gradient():
    """Encoder, every spectral block (tokens, attention, basis), decoder and projection lie on the
    path to the loss. The m = 0 sine coefficient multiplies sin(0) = 0 and is the one exception."""
    torch.manual_seed(0)
    model = LSM(in_channels=2, out_channels=1, dim=2, width=8, levels=2)
    model(torch.randn(2, 2, 20, 20, generator=_generator(5))).square().mean().backward()
    for name, p in model.named_parameters():
        grad = p.grad
        if name.endswith("spectral.sin_weight"):
            assert torch.all(grad[:, 0] == 0) and grad[:, 1:].abs().sum() > 0, name
        else:
            assert grad is not None and grad.abs().sum() > 0, name


def test_overfits_a_tiny_batch():
    """300 Adam steps on 4 smooth 32 x 32 maps cut the MSE >= 100x (about 15 s on one thread)."""
    torch.manual_seed(0)
    s = torch.linspace(0, 1, 32)
    X, Y = torch.meshgrid(s, s, indexing="ij")
    x = torch.stack([torch.sin(math.pi * (k + 1) * X) * torch.cos(math.pi * (k % 2 + 1) * Y) for k in range(4)])[:, None]
    y = torch.stack([torch.sin(math.pi * (k + 1) * X * Y) + 0.5 * (k - 1.5) * X**2 for k in range(4)])[:, None]
    model = LSM(in_channels=1, out_channels=1, dim=2, width=8, levels=2, patch_size=2)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    with torch.no_grad():
        initial = torch.mean((model(x) - y) ** 2).item()
    for _ in range(300):
        optimiser.zero_grad()
        loss = torch.mean((model(x) - y) ** 2)
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        final = torch.mean((model(x) - y) ** 2).item()
    assert final * 100 <= initial, (initial, final)
