"""Random input fields: statistics against their definitions, and per-sample reproducibility."""

from __future__ import annotations

import math

import pytest
import torch

from pdebench.problems.sampling import gaussian_random_field, random_fourier_sum, thresholded_field, wavenumbers


def test_grf_pointwise_variance_matches_the_covariance_spectrum():
    shape, lengths, sigma, tau, alpha = (32, 16), (1.0, 0.5), 3.0, 4.0, 2.0
    samples = gaussian_random_field(0, range(3000), shape, lengths, sigma=sigma, tau=tau, alpha=alpha)
    k = wavenumbers(shape, lengths)
    k2 = (k[0] ** 2 + torch.fft.fftfreq(16, 1 / 16, dtype=torch.float64)[None, :] ** 2 * (2 * math.pi / 0.5) ** 2)
    eigen = sigma**2 * (k2 + tau**2) ** (-alpha)
    eigen[0, 0] = 0.0  # zero mean
    expected = float(eigen.sum()) / (1.0 * 0.5)
    measured = float(samples.var(dim=0, unbiased=True).mean())
    # 3000 samples x 512 correlated points: a few percent of sampling error.
    assert measured == pytest.approx(expected, rel=0.05)
    assert float(samples.mean(dim=(1, 2)).abs().max()) < 1e-12  # the constant mode is removed


def test_grf_mode_variances_follow_the_power_law():
    samples = gaussian_random_field(1, range(4000), (64,), (1.0,), sigma=1.0, tau=0.0, alpha=1.5)
    power = (torch.fft.rfft(samples).abs() ** 2).mean(0)
    # E|u_hat_k|^2 = N^2 lambda_k / (2 V) per real/imaginary pair; ratios between modes follow k^(-2 alpha).
    ratio = float(power[2] / power[4])
    assert ratio == pytest.approx(2.0**3, rel=0.1)


def test_samples_are_reproducible_one_by_one_and_streams_differ():
    kwargs = dict(sigma=1.0, tau=3.0, alpha=2.0)
    batch = gaussian_random_field(5, [0, 1, 2, 3], (16, 16), (1, 1), **kwargs)
    alone = gaussian_random_field(5, [2], (16, 16), (1, 1), **kwargs)
    assert torch.equal(batch[2:3], alone)
    other = gaussian_random_field(6, [2], (16, 16), (1, 1), **kwargs)
    assert not torch.allclose(alone, other)
    sines = random_fourier_sum(5, [0, 1, 2], (32,), (1.0,))
    assert torch.equal(sines[1:2], random_fourier_sum(5, [1], (32,), (1.0,)))


def test_random_fourier_sum_is_band_limited():
    u = random_fourier_sum(0, range(20), (64,), (2.0,), n_terms=3, max_mode=5)
    spectrum = torch.fft.rfft(u).abs()
    assert float(spectrum[:, 6:].max()) < 1e-12 and float(spectrum[:, 1:6].max()) > 0.1


def test_thresholded_field_takes_two_values():
    z = gaussian_random_field(0, range(4), (32, 32), (1, 1), sigma=1.0, tau=3.0, alpha=2.0)
    a = thresholded_field(z, high=12.0, low=3.0)
    assert set(a.unique().tolist()) == {3.0, 12.0}
    assert torch.equal(a == 12.0, z >= 0)


@pytest.mark.parametrize("bad", [dict(sigma=0.0, tau=1.0, alpha=1.0), dict(sigma=1.0, tau=-1.0, alpha=1.0)])
def test_grf_rejects_bad_parameters(bad):
    with pytest.raises(ValueError, match="sigma"):
        gaussian_random_field(0, [0], (8,), (1.0,), **bad)


def test_negative_seed_is_refused():
    with pytest.raises(ValueError, match="seed=-1"):
        random_fourier_sum(-1, [0], (8,), (1.0,))
