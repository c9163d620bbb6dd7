"""DPOT: the operator contract, temporal aggregation, the AFNO mixer's identities and a tiny overfit."""

from __future__ import annotations

import io

import pytest
import torch

from pdebench.models import MODELS
from pdebench.models.dpot import DPOT, AFNOBlock, AFNOMixer, TemporalAggregation, kept_modes_mask


def small(**overrides) -> DPOT:
    args = dict(in_channels=6, out_channels=2, dim=2, patch_size=4, embed_dim=16, depth=2, num_blocks=4, modes=None)
    return DPOT(**{**args, **overrides})


def test_shapes_follow_the_operator_contract_and_the_registry_builds_it():
    torch.manual_seed(0)
    model = MODELS.build("dpot", in_channels=6, out_channels=2, dim=2, patch_size=4, embed_dim=16, depth=2)
    assert isinstance(model, DPOT) and model.frames == 3 and model.channels == 2
    assert model(torch.randn(3, 6, 32, 32)).shape == (3, 2, 32, 32)
    assert MODELS.get("dpot").board == "operator"


@pytest.mark.parametrize("shape", [(32, 32), (48, 24), (30, 34), (5, 7)])
def test_any_resolution_runs_divisible_or_padded_and_cropped(shape):
    torch.manual_seed(0)
    model = small()
    out = model(torch.randn(2, 6, *shape))
    assert out.shape == (2, 2, *shape)
    assert torch.isfinite(out).all()


def test_padding_is_circular_so_a_periodic_field_padded_equals_its_wrapped_extension():
    """A 30x30 grid is padded to 32x32 by wrapping: the result equals the model run on the explicitly
    wrapped 32x32 grid, cropped (positions are fractions of the padded grid in both cases)."""
    torch.manual_seed(0)
    model = small().eval()
    x = torch.randn(1, 6, 30, 30)
    wrapped = torch.nn.functional.pad(x, (0, 2, 0, 2), mode="circular")
    torch.testing.assert_close(model(x), model(wrapped)[..., :30, :30])


def test_every_history_frame_changes_the_prediction():
    torch.manual_seed(0)
    model = small(in_channels=8, out_channels=2)  # 4 frames of 2 channels
    x = torch.randn(2, 8, 16, 16, requires_grad=True)
    model(x).square().sum().backward()
    per_frame = x.grad.reshape(2, 4, 2, 16, 16).abs().sum(dim=(0, 2, 3, 4))
    assert (per_frame > 1e-6).all(), per_frame
    base = model(x).detach()
    for frame in range(4):
        bumped = x.detach().clone()
        bumped[:, 2 * frame : 2 * frame + 2] += 0.5
        assert (model(bumped) - base).abs().max() > 1e-4, f"frame {frame} is ignored"


def test_temporal_aggregation_is_the_weighted_sum_with_fourier_time_features():
    torch.manual_seed(0)
    agg = TemporalAggregation(frames=3, channels=5)
    with torch.no_grad():
        agg.gamma.copy_(torch.rand(5) * 3)
    h = torch.randn(2, 3, 5, 4, 6)
    expected = torch.zeros(2, 4, 6, 5)
    for t in range(3):
        modulated = h[:, t] * torch.cos(agg.gamma * t)[None, :, None, None]  # (B, D, h, w)
        expected += torch.einsum("ed,bdyx->byxe", agg.weight[t], modulated)
    torch.testing.assert_close(agg(h), expected, rtol=1e-5, atol=1e-6)


def dense_spectral_mlp(mixer: AFNOMixer, v: torch.Tensor) -> torch.Tensor:
    """Reference: the block-diagonal weights assembled into dense ``D x D'`` complex matrices."""
    w1 = torch.block_diag(*torch.view_as_complex(mixer.w1))
    w2 = torch.block_diag(*torch.view_as_complex(mixer.w2))
    b1, b2 = torch.view_as_complex(mixer.b1).reshape(-1), torch.view_as_complex(mixer.b2).reshape(-1)
    hidden = v @ w1 + b1
    hidden = torch.complex(torch.nn.functional.gelu(hidden.real), torch.nn.functional.gelu(hidden.imag))
    return hidden @ w2 + b2


def test_afno_mixer_with_all_modes_and_no_shrinkage_is_an_mlp_applied_in_fourier_space():
    """``mixer(z) = irfft2(MLP(rfft2(z)))`` mode by mode, with the dense block-diagonal MLP."""
    torch.manual_seed(0)
    mixer = AFNOMixer(channels=8, num_blocks=2, modes=None, hidden_factor=2, sparsity=0.0)
    with torch.no_grad():
        for p in mixer.parameters():
            p.normal_(0, 0.5)
    z = torch.randn(2, 6, 8, 8)
    spectrum = torch.fft.rfft2(z, dim=(1, 2), norm="ortho")
    expected = torch.fft.irfft2(dense_spectral_mlp(mixer, spectrum), s=(6, 8), dim=(1, 2), norm="ortho")
    torch.testing.assert_close(mixer(z), expected, rtol=1e-4, atol=1e-5)
    # a block-diagonal map: block 1's inputs do not reach block 0's outputs
    off = torch.zeros(1, 8, dtype=torch.complex64)
    off[0, 4:] = 1 + 1j
    zero_in = torch.zeros(1, 8, dtype=torch.complex64)
    torch.testing.assert_close(mixer.spectral_mlp(off)[0, :4], mixer.spectral_mlp(zero_in)[0, :4])


def test_afno_mixer_output_lives_on_the_kept_modes_only():
    torch.manual_seed(0)
    mixer = AFNOMixer(channels=8, num_blocks=4, modes=2, sparsity=0.0)
    with torch.no_grad():
        for p in mixer.parameters():
            p.normal_(0, 0.5)
    out = mixer(torch.randn(3, 8, 8, 8))
    spectrum = torch.fft.rfft2(out, dim=(1, 2), norm="ortho").abs()
    keep = kept_modes_mask((8, 8), 2)
    assert int(keep.sum()) == 3 * 2  # k1 in {-1, 0, 1}, k2 in {0, 1}
    assert spectrum[:, ~keep].max() < 1e-5
    assert spectrum[:, keep].max() > 1e-2


def test_soft_shrinkage_above_every_coefficient_leaves_only_the_channel_mlp():
    torch.manual_seed(0)
    block = AFNOBlock(channels=8, num_blocks=2, sparsity=1e6)
    z = torch.randn(2, 4, 4, 8)
    assert block.mixer(block.norm1(z)).abs().max() == 0
    torch.testing.assert_close(block(z), z + block.mlp(block.norm2(z)))


def test_invalid_configurations_fail_clearly():
    with pytest.raises(ValueError, match="2D grids only"):
        DPOT(in_channels=2, out_channels=1, dim=1)
    with pytest.raises(ValueError, match="history \\* out_channels"):
        DPOT(in_channels=5, out_channels=2, dim=2)
    with pytest.raises(ValueError, match="not divisible by num_blocks"):
        DPOT(in_channels=2, out_channels=1, dim=2, embed_dim=10, num_blocks=4)
    with pytest.raises(ValueError, match="padding_mode"):
        DPOT(in_channels=2, out_channels=1, dim=2, padding_mode="mirror")
    model = small()
    with pytest.raises(ValueError, match="6 input channels; got 4"):
        model(torch.randn(1, 4, 16, 16))


def test_state_dict_is_tensors_only_and_rebuilds_from_init_args():
    torch.manual_seed(0)
    model = small(modes=3)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    clone = DPOT(**model.init_args)
    clone.load_state_dict(torch.load(buffer, weights_only=True))
    x = torch.randn(1, 6, 16, 16)
    assert torch.equal(model(x), clone(x))


def test_tiny_batch_overfits_by_two_orders_of_magnitude():
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(4, 2, 16, 16, generator=generator)
    y = 0.5 * torch.roll(x[:, 1:2], 1, dims=-1) + x[:, :1]  # a fixed map of the two frames
    model = DPOT(2, 1, dim=2, patch_size=2, embed_dim=32, depth=2, num_blocks=4, sparsity=0.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    first = None
    for _ in range(400):
        loss = torch.nn.functional.mse_loss(model(x), y)
        first = loss.item() if first is None else first
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < first / 100, (first, loss.item())
