"""Error metrics: hand-computed cases, and every metric against an independent numpy implementation.

The relative L2 error (:func:`relative_l2`, :func:`segment_relative_l2`) is checked against numpy
written out from the formula, an analytic case, the consistency of its reductions, and the formulas it
replaced in the physics runs, GP-HM, the graph modules and the masked loss (written out here).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from pdebench.core.metrics import (
    METRICS,
    VRMSE_EPS,
    WELL_WINDOWS,
    all_metrics,
    brmse,
    correlation_time,
    crmse,
    frmse,
    geometric_mean_rollout,
    max_error,
    nrmse,
    relative_l2,
    rmse,
    rollout_correlation,
    rollout_metrics,
    rollout_nrmse,
    rollout_vrmse,
    segment_relative_l2,
    vrmse,
    windowed_vrmse,
)

SCALARS = (rmse, nrmse, crmse, max_error, brmse, vrmse)


def sine_field(n: int = 32, batch: int = 2, channels: int = 2, steps: int = 3, amplitude: float = 2.0) -> torch.Tensor:
    """``amplitude * sin(2 pi x)`` on [0, 1) in every (sample, channel, step); rms amplitude/sqrt(2)."""
    x = torch.arange(n, dtype=torch.float64) / n
    u = amplitude * torch.sin(2 * math.pi * x)
    return u[None, None, :, None].expand(batch, channels, n, steps).clone()


# --------------------------------------------------------------------------------------------------
# Hand-computed values
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("offset", [0.5, -0.25])
def test_constant_offset(offset):
    y = sine_field(amplitude=2.0)  # rms sqrt(2), spatial variance 2
    p = y + offset
    c = abs(offset)
    assert rmse(p, y).item() == pytest.approx(c, rel=1e-12)
    assert max_error(p, y).item() == pytest.approx(c, rel=1e-12)
    assert crmse(p, y).item() == pytest.approx(c, rel=1e-12)  # sums differ by c*N, divided by N
    assert nrmse(p, y).item() == pytest.approx(c / math.sqrt(2), rel=1e-12)
    assert brmse(p, y).item() == pytest.approx(c, rel=1e-12)
    assert vrmse(p, y).item() == pytest.approx(c / math.sqrt(2 + VRMSE_EPS), rel=1e-12)
    bands = frmse(p, y)
    assert bands["low"].item() == pytest.approx(c, rel=1e-12)  # a constant is the k = 0 coefficient
    assert bands["mid"].item() == pytest.approx(0, abs=1e-12)
    assert bands["high"].item() == pytest.approx(0, abs=1e-12)


@pytest.mark.parametrize(("mode", "band"), [(2, "low"), (5, "mid"), (11, "mid"), (12, "high"), (20, "high")])
def test_single_fourier_mode_lands_in_one_band(mode, band):
    n, amplitude = 64, 0.3
    x = torch.arange(n, dtype=torch.float64) / n
    y = torch.cos(2 * math.pi * x)[None, None, :].repeat(2, 1, 1)
    p = y + amplitude * torch.sin(2 * math.pi * mode * x)
    bands = frmse(p, y, time_axis=False)
    for name, value in bands.items():
        expected = amplitude / math.sqrt(2) if name == band else 0.0  # |a|/2 at k = +-m, summed in quadrature
        assert value.item() == pytest.approx(expected, abs=1e-12), name


def test_frmse_2d_radial_binning_and_parseval():
    n = 32
    x = torch.arange(n, dtype=torch.float64) / n
    xx, yy = torch.meshgrid(x, x, indexing="ij")
    y = torch.zeros(1, 1, n, n, dtype=torch.float64)
    # |(3, 0)| = 3 -> low; |(3, 3)| = 4.24 -> mid; |(9, 9)| = 12.7 -> high
    for (kx, ky), band in [((3, 0), "low"), ((3, 3), "mid"), ((9, 9), "high")]:
        p = y + torch.cos(2 * math.pi * (kx * xx + ky * yy))
        bands = frmse(p, y, time_axis=False)
        assert {k: round(v.item(), 12) for k, v in bands.items()} == {
            k: round(1 / math.sqrt(2), 12) if k == band else 0.0 for k in ("low", "mid", "high")
        }
    # The three default bands partition all wavenumbers: their squares add up to RMSE^2 per sample.
    gen = torch.Generator().manual_seed(0)
    p, y = torch.randn(3, 1, 16, 16, 1, generator=gen), torch.randn(3, 1, 16, 16, 1, generator=gen)
    bands = frmse(p, y, reduction="none")
    assert all(v.shape == (3,) for v in bands.values())
    torch.testing.assert_close(sum(v**2 for v in bands.values()), rmse(p, y, reduction="none") ** 2)


def test_frmse_custom_bands_and_empty_band():
    p, y = torch.randn(2, 1, 8, 8, 3, dtype=torch.float64), torch.zeros(2, 1, 8, 8, 3, dtype=torch.float64)
    bands = frmse(p, y, {"all": (0, None), "beyond": (100, None)})
    assert set(bands) == {"all", "beyond"}
    assert bands["beyond"].item() == 0.0  # 8x8 grid: |k| <= 4*sqrt(2)
    assert bands["all"].item() == pytest.approx(rmse(p, y).item(), rel=1e-12)


def test_brmse_1d_interior_and_boundary():
    n, a = 16, 0.7
    y = sine_field(n=n, steps=2)
    interior = y.clone()
    interior[:, :, 1:-1] += torch.randn(n - 2, 1, dtype=torch.float64)
    assert brmse(interior, y).item() == 0.0
    assert rmse(interior, y).item() > 0
    boundary = y.clone()
    boundary[:, :, 0] += a
    boundary[:, :, -1] -= a
    assert brmse(boundary, y).item() == pytest.approx(a, rel=1e-12)


def test_brmse_2d_and_3d_count_each_boundary_point_once():
    n, a = 8, 0.4
    y = torch.randn(2, 1, n, n, 3, dtype=torch.float64)
    interior = y.clone()
    interior[:, :, 1:-1, 1:-1] += 5.0
    assert brmse(interior, y).item() == 0.0
    edges = y + a
    edges[:, :, 1:-1, 1:-1] = y[:, :, 1:-1, 1:-1]
    assert brmse(edges, y).item() == pytest.approx(a, rel=1e-12)
    corners = y.clone()
    for i, j in itertools.product((0, n - 1), repeat=2):
        corners[:, :, i, j] += a
    # 4*(n-1) = 28 boundary points, the four corners once each
    assert brmse(corners, y).item() == pytest.approx(a * math.sqrt(4 / (4 * (n - 1))), rel=1e-12)

    cube = torch.randn(1, 1, 4, 4, 4, dtype=torch.float64)
    inner = cube.clone()
    inner[:, :, 1:-1, 1:-1, 1:-1] += 1.0
    assert brmse(inner, cube, time_axis=False).item() == 0.0
    faces = cube + a
    faces[:, :, 1:-1, 1:-1, 1:-1] = cube[:, :, 1:-1, 1:-1, 1:-1]
    assert brmse(faces, cube, time_axis=False).item() == pytest.approx(a, rel=1e-12)


def test_vrmse_of_mean_is_one_and_of_truth_is_zero():
    gen = torch.Generator().manual_seed(1)
    y = torch.randn(3, 2, 16, 16, 4, generator=gen, dtype=torch.float64)
    mean = y.mean(dim=(2, 3), keepdim=True).expand_as(y)
    assert vrmse(mean, y).item() == pytest.approx(1.0, abs=1e-6)
    assert vrmse(y, y).item() == 0.0
    # float32 inputs too
    assert vrmse(mean.float(), y.float()).item() == pytest.approx(1.0, abs=1e-6)


def test_rollout_curve_and_geometric_mean():
    steps = 5
    y = sine_field(n=32, steps=steps)
    growth = 0.1 * (torch.arange(steps, dtype=torch.float64) + 1)  # relative error 0.1, 0.2, ... per step
    p = y * (1 + growth)
    curve = rollout_nrmse(p, y)
    assert curve.shape == (steps,)
    torch.testing.assert_close(curve, growth)
    assert geometric_mean_rollout(curve).item() == pytest.approx(0.1 * math.factorial(steps) ** (1 / steps))
    assert geometric_mean_rollout(curve, horizon=2).item() == pytest.approx(0.1 * math.sqrt(2))


def test_geometric_mean_values():
    assert geometric_mean_rollout(torch.tensor([1.0, 4.0, 16.0])).item() == pytest.approx(4.0)
    assert geometric_mean_rollout([1.0, 4.0, 16.0, 1e6], horizon=3).item() == pytest.approx(4.0)
    batch = geometric_mean_rollout(torch.tensor([[1.0, 4.0, 16.0], [2.0, 2.0, 2.0]]))
    torch.testing.assert_close(batch, torch.tensor([4.0, 2.0], dtype=torch.float64))
    assert geometric_mean_rollout([0.0, 3.0]).item() == 0.0
    with pytest.raises(ValueError, match="non-negative"):
        geometric_mean_rollout([1.0, -1.0])
    with pytest.raises(ValueError, match="horizon"):
        geometric_mean_rollout([1.0], horizon=0)
    with pytest.raises(ValueError, match="non-empty"):
        geometric_mean_rollout(torch.tensor([]))


def phase_drift(phases: torch.Tensor, n: int = 32, batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """``y = sin(2 pi x)``, ``p = sin(2 pi x + phi_t)`` on [0, 1), ``(B, C, X, T)`` with one channel per
    row of ``phases (C, T)``. On the grid sum_x sin(2 pi x) sin(2 pi x + phi) = (n / 2) cos(phi) and
    both have norm sqrt(n / 2), so the correlation at step t is exactly cos(phi_t) (both zero-mean)."""
    x = torch.arange(n, dtype=torch.float64) / n
    y = torch.sin(2 * math.pi * x)[None, None, :, None].expand(batch, phases.shape[0], n, phases.shape[1])
    p = torch.sin(2 * math.pi * x[None, :, None] + phases[:, None, :])[None].expand(batch, -1, -1, -1)
    return p.clone(), y.clone()


def test_correlation_of_a_phase_drift_is_the_cosine_of_the_phase():
    steps = 10
    phi = 0.2 * torch.arange(1, steps + 1, dtype=torch.float64)  # corr = cos(0.2 t)
    p, y = phase_drift(torch.stack([phi, 0.5 * phi]))  # two channels: the curve is their mean
    expected = 0.5 * (torch.cos(phi) + torch.cos(0.5 * phi))
    torch.testing.assert_close(rollout_correlation(p, y), expected, rtol=0, atol=1e-13)
    # Pearson ignores an offset and a scale; the uncentred inner product (exponax's) does not
    torch.testing.assert_close(rollout_correlation(3 * p + 2, y - 1), expected, rtol=0, atol=1e-13)
    torch.testing.assert_close(rollout_correlation(p, y, centered=False), expected, rtol=0, atol=1e-13)
    # uncentred, an offset 2 leaves <p, y> (y has zero mean) but |p + 2|^2 = n/2 + 4n = 9 |p|^2: a third
    torch.testing.assert_close(rollout_correlation(p + 2, y, centered=False), expected / 3, rtol=0, atol=1e-13)

    # one channel, corr = cos(0.2 t): first below 0.8 at t = 4 (0.2 t > acos 0.8 = 0.6435), interpolated
    # between steps 3 and 4
    p, y = phase_drift(phi[None])
    crossing = correlation_time(rollout_correlation(p, y))
    c3, c4 = math.cos(0.6), math.cos(0.8)
    assert crossing.step == 4 and not crossing.censored and crossing.steps == steps
    assert crossing.time == pytest.approx(3 + (c3 - 0.8) / (c3 - c4), abs=1e-12)
    out = rollout_metrics(p, y)
    assert out["corr_step"] == 4.0 and out["corr_time"] == pytest.approx(crossing.time, abs=1e-12)


def test_correlation_of_growing_orthogonal_noise_follows_its_closed_form():
    # p = y + s_t n with n = cos(2 pi 3 x) orthogonal to y = sin(2 pi x), both zero-mean with equal
    # norms: corr_t = 1 / sqrt(1 + s_t^2); below 0.8 once s_t > 0.75
    n, steps = 32, 6
    x = torch.arange(n, dtype=torch.float64) / n
    s = 0.25 * torch.arange(1, steps + 1, dtype=torch.float64)  # 0.25, 0.5, 0.75, 1.0, ...
    y = torch.sin(2 * math.pi * x)[None, None, :, None].expand(1, 1, n, steps)
    p = y + s * torch.cos(6 * math.pi * x)[None, None, :, None]
    curve = rollout_correlation(p, y)
    torch.testing.assert_close(curve, 1 / torch.sqrt(1 + s**2), rtol=0, atol=1e-13)
    crossing = correlation_time(curve)
    c3, c4 = 1 / math.sqrt(1 + 0.75**2), 1 / math.sqrt(2)  # step 3 is exactly 0.8: not below
    assert c3 == pytest.approx(0.8)
    assert crossing.step == 4 and crossing.time == pytest.approx(3 + (c3 - 0.8) / (c3 - c4), abs=1e-9)


def test_correlation_time_edge_cases():
    never = correlation_time([0.99, 0.95, 0.9])
    assert never.step is None and never.censored and never.time == 3.0 and never.steps == 3
    # the first step already below: interpolated from the start (correlation 1 at step 0)
    first = correlation_time([0.6, 0.5])
    assert first.step == 1 and first.time == pytest.approx(0.5)
    assert correlation_time([0.9, 0.7], threshold=0.85).time == pytest.approx(1 + 0.05 / 0.2)
    # a step without a correlation (a constant field) counts as decorrelated, at that step
    gap = correlation_time([0.9, float("nan"), 0.95])
    assert gap.step == 2 and gap.time == 2.0
    # a constant prediction has no Pearson correlation: nan
    y = sine_field(n=16, batch=1, channels=1, steps=2)
    assert torch.isnan(rollout_correlation(torch.ones_like(y), y)).all()
    assert rollout_metrics(torch.ones_like(y), y)["corr_step"] == 1.0


def test_windowed_vrmse_of_the_mean_is_one_and_of_a_scaled_anomaly_its_scale():
    gen = torch.Generator().manual_seed(4)
    steps = 30
    y = torch.randn(3, 2, 16, steps, generator=gen, dtype=torch.float64)
    mean = y.mean(dim=2, keepdim=True).expand_as(y)
    for name, value in windowed_vrmse(mean, y).items():
        assert value.item() == pytest.approx(1.0, abs=1e-6), name
    # p - y = a_t (y - mean_x y): VRMSE_t = a_t sqrt(var / (var + eps)), a_t = t / 10
    a = torch.arange(1, steps + 1, dtype=torch.float64) / 10
    p = y + a * (y - mean)
    var = y.var(dim=2, unbiased=False)  # (B, C, T)
    exact = (a * (var / (var + VRMSE_EPS)).sqrt()).mean(dim=(0, 1))
    torch.testing.assert_close(rollout_vrmse(p, y), exact, rtol=1e-12, atol=0)
    out = windowed_vrmse(p, y)
    assert list(out) == ["vrmse_1", "vrmse_6-12", "vrmse_13-30"] and len(WELL_WINDOWS) == 3
    assert out["vrmse_1"].item() == pytest.approx(0.1, rel=1e-6)
    assert out["vrmse_6-12"].item() == pytest.approx(0.9, rel=1e-6)  # mean of 0.6 .. 1.2
    assert out["vrmse_13-30"].item() == pytest.approx(2.15, rel=1e-6)  # mean of 1.3 .. 3.0
    # shorter rollouts: a window the rollout does not reach to its end is left out
    assert list(windowed_vrmse(p[..., :20], y[..., :20])) == ["vrmse_1", "vrmse_6-12"]
    assert list(windowed_vrmse(p[..., :5], y[..., :5])) == ["vrmse_1"]
    assert list(rollout_metrics(p[..., :12], y[..., :12])) == ["corr_time", "rollout_nrmse_gmean", "vrmse_1", "vrmse_6-12"]
    assert windowed_vrmse(p, y, [(2, 3)])["vrmse_2-3"].item() == pytest.approx(0.25, rel=1e-6)


@pytest.mark.parametrize("steps, horizon_steps", [(150, 100), (40, 40)])
def test_gmean_of_a_geometric_nrmse_curve(steps, horizon_steps):
    # nRMSE_t = e0 r^(t-1): the geometric mean over steps 1..H is e0 r^((H - 1) / 2), H = min(100, T)
    e0, r = 1e-3, 1.05
    y = sine_field(n=16, batch=2, channels=1, steps=steps)
    errors = e0 * r ** torch.arange(steps, dtype=torch.float64)
    out = rollout_metrics(y * (1 + errors), y)
    assert out["rollout_nrmse_gmean"] == pytest.approx(e0 * r ** ((horizon_steps - 1) / 2), rel=1e-10)
    assert out["corr_time"] == float(steps) and "corr_step" not in out  # a scaled field stays correlated


def test_rollout_metrics_bad_inputs():
    p = torch.zeros(2, 1, 8, 4)
    with pytest.raises(ValueError, match=r"\(2, 1, 8, 4\).*\(2, 1, 8, 5\)"):
        rollout_correlation(p, torch.zeros(2, 1, 8, 5))
    with pytest.raises(ValueError, match="empty"):
        rollout_metrics(torch.zeros(0, 1, 8, 4), torch.zeros(0, 1, 8, 4))
    with pytest.raises(ValueError, match="empty"):
        windowed_vrmse(torch.zeros(1, 1, 8, 0), torch.zeros(1, 1, 8, 0))
    with pytest.raises(ValueError, match="non-empty 1-D"):
        correlation_time([])
    with pytest.raises(ValueError, match="non-empty 1-D"):
        correlation_time(torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"threshold must be a number in \(-1, 1\), got 1.5"):
        correlation_time([0.9], threshold=1.5)
    with pytest.raises(ValueError, match=r"1 <= first <= last, got \(0, 3\)"):
        windowed_vrmse(p, p, [(0, 3)])
    with pytest.raises(ValueError, match=r"got \(5, 2\)"):
        windowed_vrmse(p, p, [(5, 2)])


def test_context_frames_are_excluded():
    y = sine_field(n=16, steps=4)
    p = y.clone()
    p[..., 0] += 1.0  # the given initial frame differs; every predicted frame is exact
    scored = all_metrics(p, y, context_frames=1)
    assert all(value == 0.0 for value in scored.values()), scored
    unscored = all_metrics(p, y)
    assert unscored["rmse"] == pytest.approx(1.0 / 4)  # error 1 in one of four frames


def test_all_metrics_keys_and_consistency():
    gen = torch.Generator().manual_seed(2)
    p, y = torch.randn(2, 3, 16, 6, generator=gen), torch.randn(2, 3, 16, 6, generator=gen)
    out = all_metrics(p, y, context_frames=2)
    assert list(out) == [
        "rmse", "nrmse", "crmse", "max_error", "brmse",
        "frmse_low", "frmse_mid", "frmse_high", "vrmse", "rollout_nrmse_gmean",
    ]  # fmt: skip
    assert all(isinstance(v, float) for v in out.values())
    assert out["rmse"] == pytest.approx(rmse(p[..., 2:], y[..., 2:]).item())
    assert out["frmse_mid"] == pytest.approx(frmse(p[..., 2:], y[..., 2:])["mid"].item())
    single = all_metrics(p[..., 0], y[..., 0], time_axis=False)
    assert single["rollout_nrmse_gmean"] == pytest.approx(single["nrmse"])
    assert single == pytest.approx(all_metrics(p[..., :1], y[..., :1]))


def test_reduction_none_and_time_axis_false():
    gen = torch.Generator().manual_seed(3)
    p, y = torch.randn(4, 2, 8, 8, 3, generator=gen), torch.randn(4, 2, 8, 8, 3, generator=gen)
    for metric in (rmse, nrmse, brmse, vrmse):
        per_sample = metric(p, y, reduction="none")
        assert per_sample.shape == (4,)
        assert per_sample.mean().item() == pytest.approx(metric(p, y).item())
    # the batch reductions of max_error and crmse are a max and an RMS over samples, not a mean
    assert max_error(p, y, reduction="none").shape == (4,)
    assert crmse(p, y, reduction="none").shape == (4,)
    snap_p, snap_y = p[..., 1], y[..., 1]
    for name, metric in METRICS.items():
        a, b = metric(snap_p, snap_y, time_axis=False), metric(snap_p[..., None], snap_y[..., None])
        if isinstance(a, dict):
            assert all(a[k].item() == pytest.approx(b[k].item()) for k in a), name
        else:
            assert a.item() == pytest.approx(b.item()), name


def test_bad_inputs():
    p = torch.zeros(2, 1, 8, 4)
    with pytest.raises(ValueError, match=r"\(2, 1, 8, 4\).*\(2, 1, 8, 5\)"):
        rmse(p, torch.zeros(2, 1, 8, 5))
    with pytest.raises(TypeError, match="floating-point"):
        rmse(p, torch.zeros(2, 1, 8, 4, dtype=torch.int64))
    with pytest.raises(TypeError, match="floating-point"):
        rmse(p.to(torch.complex64), p.to(torch.complex64))
    with pytest.raises(TypeError, match="torch.Tensor"):
        rmse(np.zeros((2, 1, 8, 4)), p)
    with pytest.raises(ValueError, match="time_axis=False"):
        rmse(torch.zeros(2, 1, 8), torch.zeros(2, 1, 8))
    with pytest.raises(ValueError, match="at most three"):
        rmse(torch.zeros(1, 1, 2, 2, 2, 2, 2), torch.zeros(1, 1, 2, 2, 2, 2, 2))
    with pytest.raises(ValueError, match="empty"):
        rmse(torch.zeros(0, 1, 8, 4), torch.zeros(0, 1, 8, 4))
    with pytest.raises(ValueError, match="reduction"):
        rmse(p, p, reduction="sum")
    with pytest.raises(ValueError, match="context_frames=4"):
        all_metrics(p, p, context_frames=4)
    with pytest.raises(ValueError, match="context_frames"):
        all_metrics(p, p, context_frames=-1)
    with pytest.raises(ValueError, match="time axis"):
        all_metrics(p, p, context_frames=1, time_axis=False)
    with pytest.raises(ValueError, match="bands"):
        frmse(p, p, ((0, 4), (4, None)))
    with pytest.raises(ValueError, match="low < high"):
        frmse(p, p, {"bad": (4, 2)})


# --------------------------------------------------------------------------------------------------
# Independent numpy implementation of the REFERENCE.md formulas (loops over batch, channel, time)
# --------------------------------------------------------------------------------------------------


def _slices(p: np.ndarray):
    """Yield (b, c, t, p-slice-index) over a (B, C, *space, T) array."""
    B, C, T = p.shape[0], p.shape[1], p.shape[-1]
    for b, c, t in itertools.product(range(B), range(C), range(T)):
        yield b, c, t, (b, c, Ellipsis, t)


def np_rmse(p, y):
    return np.mean([np.sqrt(np.mean((p[i] - y[i]) ** 2)) for *_, i in _slices(p)])


def np_nrmse(p, y):
    return np.mean([np.sqrt(np.mean((p[i] - y[i]) ** 2)) / np.sqrt(np.mean(y[i] ** 2)) for *_, i in _slices(p)])


def np_max_error(p, y):
    C, T = p.shape[1], p.shape[-1]
    return np.mean([np.max(np.abs(p[:, c, ..., t] - y[:, c, ..., t])) for c in range(C) for t in range(T)])


def np_crmse(p, y):
    B, C, T = p.shape[0], p.shape[1], p.shape[-1]
    n_space = int(np.prod(p.shape[2:-1]))
    values = []
    for c in range(C):
        for t in range(T):
            d2 = [(np.sum(p[b, c, ..., t]) - np.sum(y[b, c, ..., t])) ** 2 for b in range(B)]
            values.append(np.sqrt(np.mean(d2)) / n_space)
    return np.mean(values)


def np_brmse(p, y):
    space = p.shape[2:-1]
    points = [idx for idx in np.ndindex(*space) if any(i in (0, n - 1) for i, n in zip(idx, space, strict=True))]
    values = []
    for b, c, t, _ in _slices(p):
        sq = [(p[(b, c, *idx, t)] - y[(b, c, *idx, t)]) ** 2 for idx in points]
        values.append(np.sqrt(np.mean(sq)))
    return np.mean(values)


def np_frmse(p, y, bands=((0, 4), (4, 12), (12, None))):
    space = p.shape[2:-1]
    n_space = int(np.prod(space))
    signed = [[k if k < n / 2 else k - n for k in range(n)] for n in space]
    out = {name: [] for name in ("low", "mid", "high")}
    for *_, i in _slices(p):
        e = p[i] - y[i]
        power = {name: 0.0 for name in out}
        for ks in itertools.product(*[range(n) for n in space]):  # direct DFT, one coefficient at a time
            coeff = 0j
            for xs in np.ndindex(*space):
                phase = sum(k * x / n for k, x, n in zip(ks, xs, space, strict=True))
                coeff += e[xs] * np.exp(-2j * np.pi * phase)
            coeff /= n_space
            kmag = math.sqrt(sum(signed[d][k] ** 2 for d, k in enumerate(ks)))
            for name, (low, high) in zip(out, bands, strict=True):
                if kmag >= low and (high is None or kmag < high):
                    power[name] += abs(coeff) ** 2
        for name in out:
            out[name].append(math.sqrt(power[name]))
    return {name: np.mean(v) for name, v in out.items()}


def np_vrmse(p, y):
    return np.mean([np.sqrt(np.mean((p[i] - y[i]) ** 2) / (np.var(y[i]) + 1e-7)) for *_, i in _slices(p)])


def np_rollout(p, y):
    B, C, T = p.shape[0], p.shape[1], p.shape[-1]
    return np.array(
        [
            np.mean(
                [
                    np.sqrt(np.mean((p[b, c, ..., t] - y[b, c, ..., t]) ** 2)) / np.sqrt(np.mean(y[b, c, ..., t] ** 2))
                    for b in range(B)
                    for c in range(C)
                ]
            )
            for t in range(T)
        ]
    )


@pytest.mark.parametrize("shape", [(3, 2, 16, 5), (2, 1, 8, 8, 4)])
def test_against_numpy_reference(shape):
    rng = np.random.default_rng(sum(shape))
    y_np = rng.normal(size=shape) + 0.3
    p_np = y_np + 0.5 * rng.normal(size=shape) + 0.1
    p, y = torch.from_numpy(p_np), torch.from_numpy(y_np)
    expected = {
        "rmse": np_rmse(p_np, y_np),
        "nrmse": np_nrmse(p_np, y_np),
        "crmse": np_crmse(p_np, y_np),
        "max_error": np_max_error(p_np, y_np),
        "brmse": np_brmse(p_np, y_np),
        "vrmse": np_vrmse(p_np, y_np),
    }
    for name, value in expected.items():
        assert METRICS[name](p, y).item() == pytest.approx(value, rel=1e-10), name
    got_bands = frmse(p, y)
    for name, value in np_frmse(p_np, y_np).items():
        assert got_bands[name].item() == pytest.approx(value, rel=1e-9, abs=1e-12), name
    curve = np_rollout(p_np, y_np)
    np.testing.assert_allclose(rollout_nrmse(p, y).numpy(), curve, rtol=1e-10)
    corr = [np.mean([np.corrcoef(p_np[b, c, ..., t].ravel(), y_np[b, c, ..., t].ravel())[0, 1]
                     for b in range(shape[0]) for c in range(shape[1])]) for t in range(shape[-1])]
    np.testing.assert_allclose(rollout_correlation(p, y).numpy(), corr, rtol=1e-10)
    per_step_vrmse = [np_vrmse(p_np[..., t : t + 1], y_np[..., t : t + 1]) for t in range(shape[-1])]
    np.testing.assert_allclose(rollout_vrmse(p, y).numpy(), per_step_vrmse, rtol=1e-10)
    gmean = np.prod(curve) ** (1 / len(curve))
    out = all_metrics(p.float(), y.float())
    assert out["rollout_nrmse_gmean"] == pytest.approx(gmean, rel=1e-5)
    assert out["rmse"] == pytest.approx(expected["rmse"], rel=1e-5)


# --------------------------------------------------------------------------------------------------
# Relative L2: the one definition
# --------------------------------------------------------------------------------------------------


def np_relative_l2(p: np.ndarray, y: np.ndarray, batch_dims: int, eps: float = 0.0) -> np.ndarray:
    """Per sample of the first ``batch_dims`` axes: sqrt(sum (p - y)^2) / (sqrt(sum y^2) + eps)."""
    lead = p.shape[:batch_dims]
    d = (p - y).reshape(*lead, -1)
    t = y.reshape(*lead, -1)
    return np.sqrt((d * d).sum(axis=-1)) / (np.sqrt((t * t).sum(axis=-1)) + eps)


def test_relative_l2_of_a_scaled_sine_is_the_scale_error():
    x = torch.arange(64, dtype=torch.float64) * (2 * math.pi / 64)
    u = torch.sin(x)
    assert relative_l2(1.1 * u, u, batch_dims=0).item() == pytest.approx(0.1, rel=1e-12)
    # a batch of sines of different amplitudes and phases, each predicted 10 % too large (or small)
    y = torch.stack([a * torch.sin(x + phase) for a, phase in ((1.0, 0.0), (3.0, 0.5), (0.2, 1.0))])[:, None]  # (3, 1, 64)
    for batch_dims in (0, 1, 2):
        for factor in (1.1, 0.9):
            value = relative_l2(factor * y, y, batch_dims=batch_dims, reduction="none")
            assert value.shape == y.shape[:batch_dims]
            torch.testing.assert_close(value, torch.full(y.shape[:batch_dims], 0.1, dtype=torch.float64))


@pytest.mark.parametrize("batch_dims", [0, 1, 2, 3])
@pytest.mark.parametrize("eps", [0.0, 1e-8, 0.5])
def test_relative_l2_against_numpy(batch_dims, eps):
    rng = np.random.default_rng(batch_dims + int(eps * 10))
    y_np = rng.normal(size=(4, 3, 5, 6))
    p_np = y_np + 0.3 * rng.normal(size=y_np.shape)
    p, y = torch.from_numpy(p_np), torch.from_numpy(y_np)
    expected = np_relative_l2(p_np, y_np, batch_dims, eps)
    none = relative_l2(p, y, batch_dims=batch_dims, eps=eps, reduction="none")
    assert none.shape == y.shape[:batch_dims]
    np.testing.assert_allclose(none.numpy(), expected, rtol=1e-12)
    assert relative_l2(p, y, batch_dims=batch_dims, eps=eps).item() == pytest.approx(expected.mean(), rel=1e-12)
    assert relative_l2(p, y, batch_dims=batch_dims, eps=eps, reduction="sum").item() == pytest.approx(expected.sum(), rel=1e-12)


def test_relative_l2_reductions_are_consistent():
    torch.manual_seed(0)
    p, y = torch.randn(5, 2, 7), torch.randn(5, 2, 7)
    for batch_dims in (1, 2):
        none = relative_l2(p, y, batch_dims=batch_dims, reduction="none")
        torch.testing.assert_close(none.mean(), relative_l2(p, y, batch_dims=batch_dims, reduction="mean"))
        torch.testing.assert_close(none.sum(), relative_l2(p, y, batch_dims=batch_dims, reduction="sum"))
    # batch_dims == ndim: every entry is its own sample, |p - y| / |y|
    torch.testing.assert_close(relative_l2(p, y, batch_dims=3, reduction="none"), (p - y).abs() / y.abs())


def test_relative_l2_keeps_the_dtype_and_differentiates_an_exact_prediction():
    y = torch.randn(3, 2, 8)
    p = y.clone().requires_grad_()
    value = relative_l2(p, y, batch_dims=2, eps=1e-8)
    assert value.dtype == torch.float32 and value.item() == 0.0
    value.backward()
    assert torch.isfinite(p.grad).all()
    zero = torch.zeros(2, 4, dtype=torch.float64)
    assert relative_l2(zero + 1, zero, reduction="none").isinf().all()  # no regulariser by default
    assert relative_l2(zero, zero, reduction="none").isnan().all()
    assert (relative_l2(zero, zero, eps=1e-12, reduction="none") == 0).all()


def test_relative_l2_bad_inputs():
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="shapes differ"):
        relative_l2(x, torch.zeros(2, 4))
    with pytest.raises(ValueError, match="batch_dims"):
        relative_l2(x, x, batch_dims=3)
    with pytest.raises(ValueError, match="batch_dims"):
        relative_l2(x, x, batch_dims=-1)
    with pytest.raises(ValueError, match="reduction"):
        relative_l2(x + 1, x + 1, reduction="max")
    with pytest.raises(TypeError, match="floating-point"):
        relative_l2(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3, dtype=torch.long))


def test_segment_relative_l2_against_numpy_and_relative_l2():
    rng = np.random.default_rng(7)
    sizes = (3, 5, 1, 4)
    segment_np = np.repeat(np.arange(len(sizes)), sizes)
    y_np = rng.normal(size=(sum(sizes), 2))
    p_np = y_np + 0.2 * rng.normal(size=y_np.shape)
    mask_np = rng.random(sum(sizes)) > 0.3
    mask_np[segment_np == 2] = False  # a graph with no counted node scores 0 / eps = 0
    p, y, segment, mask = (torch.from_numpy(a) for a in (p_np, y_np, segment_np, mask_np))
    expected = []
    for s in range(len(sizes)):
        rows = (segment_np == s) & mask_np
        d, t = p_np[rows] - y_np[rows], y_np[rows]
        expected.append(np.sqrt((d * d).sum()) / (np.sqrt((t * t).sum()) + 1e-12))
    got = segment_relative_l2(p, y, segment, len(sizes), mask=mask, eps=1e-12)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12)
    assert segment_relative_l2(p, y, segment, len(sizes), mask=mask, eps=1e-12, reduction="mean").item() == pytest.approx(
        np.mean(expected), rel=1e-12)
    # segments of equal size, no mask: relative_l2 per sample of the stacked (S, n, C)
    equal = torch.arange(4).repeat_interleave(3)
    p2, y2 = p[:12], y[:12]
    torch.testing.assert_close(segment_relative_l2(p2, y2, equal, 4),
                               relative_l2(p2.reshape(4, 3, 2), y2.reshape(4, 3, 2), reduction="none"))
    with pytest.raises(ValueError, match="segment"):
        segment_relative_l2(p, y, segment[:-1], len(sizes))


def test_nrmse_is_relative_l2_per_sample_channel_and_step():
    torch.manual_seed(1)
    p, y = torch.randn(3, 2, 16, 4, dtype=torch.float64), torch.randn(3, 2, 16, 4, dtype=torch.float64)
    per_bct = relative_l2(p.movedim(-1, 2), y.movedim(-1, 2), batch_dims=3, reduction="none")  # (B, C, T)
    torch.testing.assert_close(nrmse(p, y, reduction="none"), per_bct.mean(dim=(1, 2)))
    torch.testing.assert_close(rollout_nrmse(p, y), per_bct.mean(dim=(0, 1)))


# The formulas each caller had before they called relative_l2, written out as they were.


def test_physics_runs_keep_their_numbers():
    torch.manual_seed(2)
    for dtype in (torch.float32, torch.float64):
        p, y = torch.randn(4, 1, 8, 8, dtype=dtype), torch.randn(4, 1, 8, 8, dtype=dtype)
        old = ((p - y).flatten(1).norm(dim=1) / y.flatten(1).norm(dim=1).clamp_min(1e-300)).mean()
        torch.testing.assert_close(relative_l2(p, y, eps=1e-300), old)


def test_gp_hm_keeps_its_numbers():
    torch.manual_seed(3)
    p, y = torch.randn(12, 10, dtype=torch.float64), torch.randn(12, 10, dtype=torch.float64)
    old = float(torch.linalg.vector_norm(p - y) / torch.linalg.vector_norm(y))
    assert float(relative_l2(p, y, batch_dims=0)) == pytest.approx(old, rel=1e-14)


def test_graph_modules_keep_their_numbers():
    torch.manual_seed(4)
    batch = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2])
    p, y = torch.randn(9, 3), torch.randn(9, 3)
    y[batch == 2] = 0.0  # a graph with zero targets: the old floor and the new eps both give 1e-12
    for mask in (None, torch.tensor([1, 0, 1, 1, 1, 0, 1, 1, 1], dtype=torch.bool)):
        weight = torch.ones(9) if mask is None else mask.float()
        num = torch.zeros(3).index_add_(0, batch, ((p - y) ** 2).sum(-1) * weight)
        den = torch.zeros(3).index_add_(0, batch, (y**2).sum(-1) * weight)
        old = torch.sqrt(num) / torch.sqrt(den).clamp_min(1e-12)
        torch.testing.assert_close(segment_relative_l2(p, y, batch, 3, mask=mask, eps=1e-12), old)


def test_masked_loss_keeps_its_numbers():
    torch.manual_seed(5)
    pred, target = torch.randn(3, 4, 6, 6), torch.randn(3, 4, 6, 6)
    mask = torch.tensor([[True, True, False, False], [True, False, True, False], [True, True, True, True]])
    diff = (pred - target).flatten(2)[mask]
    old = (torch.linalg.vector_norm(diff, dim=-1) / (torch.linalg.vector_norm(target.flatten(2)[mask], dim=-1) + 1e-8)).mean()
    torch.testing.assert_close(relative_l2(pred.flatten(2)[mask], target.flatten(2)[mask], eps=1e-8), old)
