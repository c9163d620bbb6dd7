"""Error metrics for predicted PDE fields (PDEBench, The Well and APEBench definitions), defined once.

Every error the package reports or trains on is defined here: the training losses, the physics runs,
GP-HM, the graph modules and the leaderboards call these functions. The module imports torch and
nothing of the package, so every layer imports it downward.

Relative L2
-----------
:func:`relative_l2` is the one relative L2 error, ``||p - y||_2 / (||y||_2 + eps)``, with the norms
over the axes after ``batch_dims`` leading sample axes and a named reduction over the samples
(``"none"``, ``"mean"``, ``"sum"``); it works in the input dtype and is differentiable (the training
losses use it). :func:`segment_relative_l2` is the same ratio for rows grouped into segments (the
graphs of a PyG batch). :func:`nrmse` and :func:`rollout_nrmse` are :func:`relative_l2` on the field
layout below, in float64.

Field layout
------------
The field metrics take ``pred`` and ``target`` as floating-point torch tensors of one shape:

* ``(B, C, *space, T)`` (the default, ``time_axis=True``): ``B`` samples, ``C`` channels, one to three
  spatial axes and a trailing time axis of ``T`` predicted steps;
* ``(B, C, *space)`` with ``time_axis=False``: a single time step.

The layout cannot be told from the shape alone (a 2-D snapshot ``(B, C, X, Y)`` looks like a 1-D
rollout ``(B, C, X, T)``), so say ``time_axis=False`` for snapshots. Spatial grids are assumed uniform;
``N_space`` below is the number of grid points of one snapshot.

How ``C`` and ``T`` are handled
-------------------------------
Each metric is evaluated separately for every (channel, time step) pair (sample by sample, or over
the batch where the definition says so) and the results are then averaged with equal weight over
channels and time steps. ``reduction="mean"`` (default) returns that average as a 0-d tensor;
``reduction="none"`` returns the per-sample values, shape ``(B,)``, each averaged over channels and
time steps. Computation is done in float64 and the results are float64 tensors on the input device.

Initial frames that were given to a model are not predictions: slice them off before scoring, or use
``all_metrics(..., context_frames=k)``, which drops the first ``k`` time steps of both tensors.

Metrics
-------
``relative_l2``, ``segment_relative_l2``, ``rmse``, ``nrmse``, ``max_error``, ``crmse``, ``brmse``,
``frmse`` (dict of radial Fourier bands), ``vrmse``, ``rollout_nrmse`` (per-step curve), ``geometric_mean_rollout`` (curve summary),
``rollout_mse`` (per-step squared error) and ``accumulated_error`` (its sum over steps, MP-PDE's score), the
rollout summaries of APEBench and The Well (``rollout_correlation`` and its ``correlation_time``, ``rollout_vrmse``
and ``windowed_vrmse``, all of them with the nRMSE geometric mean in ``rollout_metrics``) and
``all_metrics`` (every metric as python floats; it leaves out ``accumulated_error``, which grows with the
number of scored steps and so is not comparable across horizons). ``METRICS`` maps names to the field metrics.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import torch

__all__ = [
    "CORRELATION_THRESHOLD",
    "DEFAULT_BANDS",
    "METRICS",
    "VRMSE_EPS",
    "WELL_WINDOWS",
    "CorrelationTime",
    "Reduction",
    "accumulated_error",
    "all_metrics",
    "brmse",
    "correlation_time",
    "crmse",
    "frmse",
    "geometric_mean_rollout",
    "max_error",
    "nrmse",
    "relative_l2",
    "rmse",
    "rollout_correlation",
    "rollout_metrics",
    "rollout_mse",
    "rollout_nrmse",
    "rollout_vrmse",
    "segment_relative_l2",
    "vrmse",
    "window_name",
    "windowed_vrmse",
]

#: PDEBench's fRMSE bands of integer wavenumber magnitude: low [0, 4), mid [4, 12), high [12, k_max].
DEFAULT_BANDS: tuple[tuple[float, float | None], ...] = ((0, 4), (4, 12), (12, None))
#: The regulariser The Well adds to the target's spatial variance in VRMSE.
VRMSE_EPS = 1e-7

#: How :func:`relative_l2` and :func:`segment_relative_l2` reduce their per-sample values.
Reduction = Literal["none", "mean", "sum"]

_BAND_NAMES = ("low", "mid", "high")
_REDUCTIONS = ("mean", "none")
_RATIO_REDUCTIONS = ("none", "mean", "sum")


# --------------------------------------------------------------------------------------------------
# Relative L2: the one definition
# --------------------------------------------------------------------------------------------------


def _ratio(error_norm: torch.Tensor, target_norm: torch.Tensor, eps: float, reduction: Reduction) -> torch.Tensor:
    """``error_norm / (target_norm + eps)``, reduced over every axis as ``reduction`` names."""
    if reduction not in _RATIO_REDUCTIONS:
        raise ValueError(f"reduction must be one of {_RATIO_REDUCTIONS}, got {reduction!r}")
    ratio = error_norm / (target_norm + eps)
    if reduction == "mean":
        return ratio.mean()
    if reduction == "sum":
        return ratio.sum()
    return ratio


def relative_l2(
    pred: torch.Tensor,
    target: torch.Tensor,
    *,
    batch_dims: int = 1,
    eps: float = 0.0,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""Relative L2 error, per sample: :math:`e_b = \lVert p_b - y_b\rVert_2 / (\lVert y_b\rVert_2 + \varepsilon)`.

    The first ``batch_dims`` axes index the samples ``b``; the 2-norms are taken over all the other
    axes. On a uniform grid :math:`e_b` is the discrete form of the continuous relative :math:`L^2`
    error :math:`\lVert p - y\rVert_{L^2(\Omega)} / \lVert y\rVert_{L^2(\Omega)}` (the grid measure
    cancels). Computed in the input dtype, differentiable (a zero error has gradient zero).

    Parameters
    ----------
    pred, target : torch.Tensor
        Same shape ``(*batch, *field)`` with ``len(batch) == batch_dims``; floating point.
    batch_dims : int
        Number of leading sample axes, ``0 <= batch_dims <= pred.ndim``. ``0``: one ratio over the
        whole tensor (a single field, GP-HM); ``1`` (default): per sample of ``(B, ...)``, every other
        axis in the norm (the physics runs); ``2``: per (sample, channel) of ``(B, C, *space)``
        (neuraloperator's ``LpLoss``, the training loss); ``3``: per (sample, channel, time) of
        ``(B, C, T, *space)`` (:func:`nrmse`).
    eps : float
        Added to the target's norm. ``0`` (default): a zero target gives ``inf`` (``nan`` if the
        prediction is exact there); the training loss uses ``1e-8`` (neuraloperator's).
    reduction : {"none", "mean", "sum"}
        ``"none"``: the ratios, shape ``batch``; ``"mean"``/``"sum"``: their mean/sum, 0-d.

    Returns
    -------
    torch.Tensor
        Dimensionless, in the dtype of the inputs; shape ``pred.shape[:batch_dims]`` for
        ``reduction="none"``, else 0-d.

    Examples
    --------
    ``u = sin(x)``, ``v = 1.1 sin(x)``: ``relative_l2(v, u, batch_dims=0) == 0.1``.
    """
    pred = _check_tensor("pred", pred)
    target = _check_tensor("target", target)
    if pred.shape != target.shape:
        raise ValueError(f"pred and target shapes differ: pred {tuple(pred.shape)} vs target {tuple(target.shape)}")
    if isinstance(batch_dims, bool) or not isinstance(batch_dims, int) or not 0 <= batch_dims <= pred.ndim:
        raise ValueError(f"batch_dims must be an int in [0, {pred.ndim}] for shape {tuple(pred.shape)}, got {batch_dims!r}")
    dims = tuple(range(batch_dims, pred.ndim))
    if not dims:  # every axis a sample axis: the norm of a single entry
        error_norm, target_norm = (pred - target).abs(), target.abs()
    else:
        error_norm = torch.linalg.vector_norm(pred - target, dim=dims)
        target_norm = torch.linalg.vector_norm(target, dim=dims)
    return _ratio(error_norm, target_norm, eps, reduction)


def segment_relative_l2(
    pred: torch.Tensor,
    target: torch.Tensor,
    segment: torch.Tensor,
    num_segments: int,
    *,
    mask: torch.Tensor | None = None,
    eps: float = 0.0,
    reduction: Reduction = "none",
) -> torch.Tensor:
    r"""Relative L2 error per segment of rows (per graph of a PyG batch).

    :math:`e_s = \lVert p_s - y_s\rVert_2 / (\lVert y_s\rVert_2 + \varepsilon)`, where :math:`p_s`
    holds the rows ``i`` with ``segment[i] == s`` (and ``mask[i]``), every column: :func:`relative_l2`
    for samples of different sizes stacked along the first axis. A segment with no counted row scores
    ``0 / eps`` (0 for ``eps > 0``, ``nan`` for ``eps = 0``).

    Parameters
    ----------
    pred, target : torch.Tensor
        ``(N, C)``: ``N`` rows (nodes), ``C`` columns (channels); floating point.
    segment : torch.Tensor
        ``(N,)`` integer: the segment (graph) of each row, in ``[0, num_segments)``.
    num_segments : int
        Number of segments ``S``.
    mask : torch.Tensor, optional
        ``(N,)`` bool: the rows that count (default all).
    eps : float
        Added to the target's norm (the graph modules use ``1e-12``).
    reduction : {"none", "mean", "sum"}
        ``"none"`` (default): shape ``(S,)``; ``"mean"``/``"sum"``: over segments, 0-d.

    Returns
    -------
    torch.Tensor
        Dimensionless, in the dtype of the inputs.
    """
    pred = _check_tensor("pred", pred)
    target = _check_tensor("target", target)
    if pred.shape != target.shape or pred.ndim != 2:
        raise ValueError(f"pred and target must both be (N, C); got {tuple(pred.shape)} and {tuple(target.shape)}")
    if segment.shape != pred.shape[:1]:
        raise ValueError(f"segment must be (N,) = ({pred.shape[0]},), got {tuple(segment.shape)}")
    weight = torch.ones(pred.shape[0], dtype=pred.dtype, device=pred.device) if mask is None else mask.to(pred.dtype)
    zeros = torch.zeros(num_segments, dtype=pred.dtype, device=pred.device)
    error_sq = zeros.index_add(0, segment, (pred - target).square().sum(-1) * weight)
    target_sq = zeros.index_add(0, segment, target.square().sum(-1) * weight)
    return _ratio(error_sq.sqrt(), target_sq.sqrt(), eps, reduction)


# --------------------------------------------------------------------------------------------------
# Input handling
# --------------------------------------------------------------------------------------------------


def _check_tensor(name: str, x: object) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must have a floating-point dtype, got {x.dtype}")
    return x


def _prepare(
    pred: torch.Tensor, target: torch.Tensor, time_axis: bool, reduction: str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate (``reduction`` too, when given) and return float64 copies laid out as ``(B, C, T, *space)``."""
    if reduction is not None:
        _check_reduction(reduction)
    pred = _check_tensor("pred", pred)
    target = _check_tensor("target", target)
    if pred.shape != target.shape:
        raise ValueError(f"pred and target shapes differ: pred {tuple(pred.shape)} vs target {tuple(target.shape)}")
    layout = "(B, C, *space, T)" if time_axis else "(B, C, *space)"
    n_space = pred.ndim - 2 - int(time_axis)
    if n_space < 1:
        hint = "" if not time_axis or pred.ndim != 3 else "; for a single time step pass time_axis=False"
        raise ValueError(f"expected {layout} with at least one spatial axis, got shape {tuple(pred.shape)}{hint}")
    if n_space > 3:
        raise ValueError(f"expected {layout} with at most three spatial axes, got shape {tuple(pred.shape)}")
    if pred.numel() == 0:
        raise ValueError(f"pred and target are empty: shape {tuple(pred.shape)}")
    if pred.device != target.device:
        raise ValueError(f"pred and target are on different devices: {pred.device} vs {target.device}")
    pred, target = pred.to(torch.float64), target.to(torch.float64)
    if time_axis:
        pred, target = pred.movedim(-1, 2), target.movedim(-1, 2)
    else:
        pred, target = pred.unsqueeze(2), target.unsqueeze(2)
    return pred, target


def _space_dims(x: torch.Tensor) -> tuple[int, ...]:
    return tuple(range(3, x.ndim))


def _check_reduction(reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _reduce(per_bct: torch.Tensor, reduction: str) -> torch.Tensor:
    """Average per-(sample, channel, time) values ``(B, C, T)`` over C and T, then over B if asked."""
    per_sample = per_bct.mean(dim=(1, 2))
    return per_sample if reduction == "none" else per_sample.mean()


def _mse_space(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (pred - target).square().mean(dim=_space_dims(pred))


_FIELD_DOC = """
    Parameters
    ----------
    pred, target : torch.Tensor
        ``(B, C, *space, T)``, or ``(B, C, *space)`` with ``time_axis=False``; floating point.
    time_axis : bool
        Whether the last axis is time.
    reduction : {{"mean", "none"}}
        {reduction}

    Returns
    -------
    torch.Tensor
        float64; {units}.
"""
_PER_SAMPLE = '``"mean"``: 0-d tensor averaged over the batch; ``"none"``: per-sample values ``(B,)``.'


def _field_metric(units: str, reduction: str = _PER_SAMPLE) -> Callable[[Callable], Callable]:
    """Give a field metric ``f(pred, target, *, time_axis, reduction)`` the Parameters and Returns
    sections every field metric shares (``units`` of the result; the meaning of ``reduction``)."""

    def decorate(metric: Callable) -> Callable:
        metric.__doc__ = metric.__doc__.rstrip() + "\n" + _FIELD_DOC.format(units=units, reduction=reduction)
        return metric

    return decorate


# --------------------------------------------------------------------------------------------------
# Field metrics
# --------------------------------------------------------------------------------------------------


@_field_metric("in the units of the field")
def rmse(pred: torch.Tensor, target: torch.Tensor, *, time_axis: bool = True, reduction: str = "mean") -> torch.Tensor:
    r"""Root-mean-square error.

    ``RMSE = mean_b sqrt(mean_space (p - y)^2)``, per (channel, time), then averaged over channels and
    time. On a uniform grid this approximates :math:`\|p - y\|_{L^2(\Omega)} / |\Omega|^{1/2}`.
    """
    p, y = _prepare(pred, target, time_axis, reduction)
    return _reduce(_mse_space(p, y).sqrt(), reduction)


@_field_metric("dimensionless")
def nrmse(pred: torch.Tensor, target: torch.Tensor, *, time_axis: bool = True, reduction: str = "mean") -> torch.Tensor:
    r"""Normalised RMSE (relative L2 error).

    ``nRMSE = mean_b [sqrt(mean_space (p - y)^2) / sqrt(mean_space y^2)]``, per (channel, time), then
    averaged over channels and time: :func:`relative_l2` per (sample, channel, time step), the norms
    over space. Approximates :math:`\|p - y\|_{L^2} / \|y\|_{L^2}`. No
    regulariser is added: a target that is identically zero in some (sample, channel, time) gives
    ``inf`` (or ``nan`` if the prediction is exact there).
    """
    p, y = _prepare(pred, target, time_axis, reduction)  # (B, C, T, *space)
    return _reduce(relative_l2(p, y, batch_dims=3, reduction="none"), reduction)


@_field_metric(
    "in the units of the field",
    '``"mean"``: 0-d tensor, the maximum over batch *and* space (not the batch mean of the per-sample '
    'values); ``"none"``: per-sample ``max_x |p - y|`` averaged over channels and time, shape ``(B,)``.',
)
def max_error(pred: torch.Tensor, target: torch.Tensor, *, time_axis: bool = True, reduction: str = "mean") -> torch.Tensor:
    r"""Maximum absolute error.

    ``max_error = max_{b, x} |p - y|`` per (channel, time), then averaged over channels and time.
    Approximates the :math:`L^\infty` norm of the error, taken over the whole batch.
    """
    p, y = _prepare(pred, target, time_axis, reduction)
    per_bct = (p - y).abs().amax(dim=_space_dims(p))  # (B, C, T)
    if reduction == "none":
        return per_bct.mean(dim=(1, 2))
    return per_bct.amax(dim=0).mean()


@_field_metric(
    "in the units of the field",
    '``"mean"``: 0-d tensor, the root-mean-square over the batch as defined above (not the batch mean '
    'of the per-sample values); ``"none"``: per-sample ``|sum_x p - sum_x y| / N_space`` averaged over '
    'channels and time, shape ``(B,)``.',
)
def crmse(pred: torch.Tensor, target: torch.Tensor, *, time_axis: bool = True, reduction: str = "mean") -> torch.Tensor:
    r"""RMSE of the conserved quantity (the spatial sum, i.e. the integral of the field).

    ``cRMSE = sqrt(mean_b (sum_x p - sum_x y)^2) / N_space`` per (channel, time), then averaged over
    channels and time. Approximates the batch RMS of :math:`|\int_\Omega (p - y)\,dx| / |\Omega|`, the
    error in the domain mean. A constant offset ``c`` scores ``|c|``.
    """
    p, y = _prepare(pred, target, time_axis, reduction)
    dims = _space_dims(p)
    n_space = math.prod(p.shape[3:])
    diff = (p.sum(dim=dims) - y.sum(dim=dims)) / n_space  # (B, C, T)
    if reduction == "none":
        return diff.abs().mean(dim=(1, 2))
    return diff.square().mean(dim=0).sqrt().mean()


def _boundary_mask(shape: Sequence[int], device: torch.device) -> torch.Tensor:
    """Boolean mask of grid points with any index at either end of any spatial axis."""
    mask = torch.zeros(tuple(shape), dtype=torch.bool, device=device)
    for axis, n in enumerate(shape):
        index = [slice(None)] * len(shape)
        for end in (0, n - 1):
            index[axis] = end
            mask[tuple(index)] = True
    return mask


@_field_metric("in the units of the field")
def brmse(pred: torch.Tensor, target: torch.Tensor, *, time_axis: bool = True, reduction: str = "mean") -> torch.Tensor:
    r"""RMSE over the boundary points of the grid only.

    ``bRMSE = mean_b sqrt(mean_{x in boundary} (p - y)^2)`` per (channel, time), then averaged over
    channels and time. Boundary points are those with any index at either end of any spatial axis:
    the two end points in 1-D, the four edges in 2-D, the six faces in 3-D, each point counted once
    (corners and edges are not double-counted). Approximates
    :math:`(\frac{1}{|\partial\Omega|}\int_{\partial\Omega} (p - y)^2\,ds)^{1/2}`.
    """
    p, y = _prepare(pred, target, time_axis, reduction)
    mask = _boundary_mask(p.shape[3:], p.device)
    err = (p - y)[..., mask]  # (B, C, T, n_boundary)
    return _reduce(err.square().mean(dim=-1).sqrt(), reduction)


def _normalise_bands(bands: Sequence[tuple[float, float | None]] | Mapping[str, tuple[float, float | None]]):
    if isinstance(bands, Mapping):
        items = list(bands.items())
    else:
        bands = list(bands)
        if len(bands) != len(_BAND_NAMES):
            raise ValueError(f"bands must be three (low, high) pairs named {_BAND_NAMES}, or a mapping; got {bands!r}")
        items = list(zip(_BAND_NAMES, bands, strict=True))
    if not items:
        raise ValueError("bands is empty")
    for name, band in items:
        if len(band) != 2:
            raise ValueError(f"band {name!r} must be a (low, high) pair, got {band!r}")
        low, high = band
        if low < 0 or (high is not None and high <= low):
            raise ValueError(f"band {name!r} must satisfy 0 <= low < high (high may be None), got {band!r}")
    return items


def _wavenumber_magnitude(shape: Sequence[int], device: torch.device) -> torch.Tensor:
    """|k| on the full FFT grid, with integer wavenumbers k_d in fftfreq order (0, 1, ..., -1)."""
    ks = [torch.fft.fftfreq(n, d=1.0 / n, dtype=torch.float64, device=device) for n in shape]
    grids = torch.meshgrid(*ks, indexing="ij")
    return torch.sqrt(sum(g.square() for g in grids))


def frmse(
    pred: torch.Tensor,
    target: torch.Tensor,
    bands: Sequence[tuple[float, float | None]] | Mapping[str, tuple[float, float | None]] = DEFAULT_BANDS,
    *,
    time_axis: bool = True,
    reduction: str = "mean",
) -> dict[str, torch.Tensor]:
    r"""RMSE of the error's Fourier coefficients in radial wavenumber bands.

    The error is transformed over all spatial axes with ``torch.fft.fftn`` and normalised by the
    number of grid points, ``E_k = FFT(p - y)_k / N_space`` (the PDEBench normalisation); ``E_k``
    approximates the Fourier-series coefficient :math:`\frac{1}{|\Omega|}\int_\Omega (p-y)
    e^{-2\pi i k\cdot x/L}dx`. Wavenumbers are integers per axis (``k_d in {-N_d/2, ..., N_d/2 - 1}``,
    i.e. cycles per domain length) and the radial magnitude is ``|k| = sqrt(sum_d k_d^2)``. A band
    ``(low, high)`` holds every coefficient, of both signs of ``k``, with ``low <= |k| < high``
    (equivalently ``low <= floor(|k|) < high`` for integer limits); ``high=None`` means no upper limit.
    Per (sample, channel, time)::

        fRMSE_band = sqrt( sum_{low <= |k| < high} |E_k|^2 )

    then averaged over channels, time and (``reduction="mean"``) the batch. By Parseval this is the
    RMS in physical space of the band-pass-filtered error, so bands that partition all wavenumbers
    satisfy ``sum_band fRMSE_band^2 = RMSE^2`` per sample; ``a sin(2 pi m x)`` on [0, 1) scores
    ``|a| / sqrt(2)`` in the band holding ``m``. (PDEBench instead averages the per-shell sums over
    the shells of a band, so its values are smaller by about the square root of the band width.) A
    band that holds no wavenumber of the grid scores 0.

    Parameters
    ----------
    pred, target : torch.Tensor
        ``(B, C, *space, T)``, or ``(B, C, *space)`` with ``time_axis=False``; floating point.
    bands : sequence of three (low, high) pairs, or mapping name -> (low, high)
        A sequence names its bands ``"low"``, ``"mid"``, ``"high"``. Default ``((0, 4), (4, 12),
        (12, None))`` (PDEBench's iLow=4, iHigh=12).
    time_axis : bool
        Whether the last axis is time.
    reduction : {"mean", "none"}
        ``"mean"``: 0-d tensors averaged over the batch; ``"none"``: per-sample values ``(B,)``.

    Returns
    -------
    dict[str, torch.Tensor]
        Band name -> float64 tensor, in the units of the field.
    """
    _check_reduction(reduction)
    items = _normalise_bands(bands)
    p, y = _prepare(pred, target, time_axis)
    dims = _space_dims(p)
    n_space = math.prod(p.shape[3:])
    power = (torch.fft.fftn(p - y, dim=dims) / n_space).abs().square()  # (B, C, T, *space)
    kmag = _wavenumber_magnitude(p.shape[3:], p.device)
    out: dict[str, torch.Tensor] = {}
    for name, (low, high) in items:
        in_band = kmag >= low
        if high is not None:
            in_band &= kmag < high
        band_power = power[..., in_band].sum(dim=-1)  # (B, C, T); 0 for an empty band
        out[name] = _reduce(band_power.sqrt(), reduction)
    return out


@_field_metric("dimensionless")
def vrmse(pred: torch.Tensor, target: torch.Tensor, *, time_axis: bool = True, reduction: str = "mean") -> torch.Tensor:
    r"""Variance-scaled RMSE (The Well).

    ``VRMSE = sqrt(mean_space (p - y)^2 / (var_space(y) + 1e-7))`` per (sample, channel, time), with
    the population variance ``var_space(y) = mean_space (y - mean_space y)^2``; then averaged over
    channels, time and the batch. Approximates :math:`\|p - y\|_{L^2} / \|y - \bar y\|_{L^2}`.
    Predicting the spatial mean of the target scores 1 (up to the 1e-7 regulariser); the truth
    scores 0.
    """
    p, y = _prepare(pred, target, time_axis, reduction)
    return _reduce(_vrmse_bct(p, y), reduction)


def _vrmse_bct(p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """VRMSE per (sample, channel, time) of prepared ``(B, C, T, *space)`` tensors: ``(B, C, T)``."""
    dims = _space_dims(y)
    var = (y - y.mean(dim=dims, keepdim=True)).square().mean(dim=dims)
    return (_mse_space(p, y) / (var + VRMSE_EPS)).sqrt()


# --------------------------------------------------------------------------------------------------
# Rollouts
# --------------------------------------------------------------------------------------------------


def rollout_nrmse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    r"""Per-step nRMSE curve of a rollout.

    For each time step ``t``: ``mean_{b, c} sqrt(mean_space (p - y)^2) / sqrt(mean_space y^2)``.

    Parameters
    ----------
    pred, target : torch.Tensor
        ``(B, C, *space, T)`` with a trailing time axis (drop given context frames first).

    Returns
    -------
    torch.Tensor
        float64, shape ``(T,)``; dimensionless. Entry ``i`` is rollout step ``i + 1``.
    """
    p, y = _prepare(pred, target, time_axis=True)  # (B, C, T, *space)
    return relative_l2(p, y, batch_dims=3, reduction="none").mean(dim=(0, 1))


def rollout_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    r"""Per-step squared error of a rollout: the terms of :func:`accumulated_error`.

    For each time step ``t``: ``mean_{b, c} (1 / N_space) sum_space (p - y)^2``, so that
    ``rollout_mse(p, y).sum() == accumulated_error(p, y)``.

    Parameters
    ----------
    pred, target : torch.Tensor
        ``(B, C, *space, T)`` with a trailing time axis (drop given context frames first).

    Returns
    -------
    torch.Tensor
        float64, shape ``(T,)``; units of the field squared. Entry ``i`` is rollout step ``i + 1``.
    """
    p, y = _prepare(pred, target, time_axis=True)
    return _mse_space(p, y).mean(dim=(0, 1))


def accumulated_error(pred: torch.Tensor, target: torch.Tensor, *, reduction: str = "mean") -> torch.Tensor:
    r"""Accumulated error of a rollout (Brandstetter, Worrall & Welling 2022, MP-PDE).

    Per trajectory ``b`` (and channel ``c``, averaged with equal weight),

    .. math:: E_b = \frac{1}{N_\text{space}} \sum_{t} \sum_{x} (p_{b,t,x} - y_{b,t,x})^2,

    the squared error **summed** over the scored time steps ``t`` and averaged over the ``N_space``
    grid points (``n_x`` in 1-D; ``n_x n_y`` in 2-D), then averaged over trajectories. It grows with the
    number of scored steps: compare it only between entries scored on the same frames.

    Parameters
    ----------
    pred, target : torch.Tensor
        ``(B, C, *space, T)`` with a trailing time axis of the ``T`` scored steps (drop given context
        frames first).
    reduction : {"mean", "none"}
        ``"mean"``: the average over trajectories, 0-d; ``"none"``: ``E_b`` per trajectory, ``(B,)``.

    Returns
    -------
    torch.Tensor
        float64; units of the field squared.
    """
    p, y = _prepare(pred, target, True, reduction)
    per_bct = _mse_space(p, y)  # (B, C, T)
    per_sample = per_bct.sum(dim=2).mean(dim=1)
    return per_sample if reduction == "none" else per_sample.mean()


def geometric_mean_rollout(curve: torch.Tensor | Sequence[float], horizon: int = 100) -> torch.Tensor:
    r"""Geometric mean of a per-step error curve over steps 1..min(horizon, T) (APEBench summary).

    ``exp(mean_{t < H} log curve[..., t])`` with ``H = min(horizon, T)``; ``curve[..., 0]`` is step 1.
    A rollout shorter than ``horizon`` is summarised over all of its ``T`` steps (APEBench's
    ``aggregate_gmean(up_to=100)`` likewise keeps the steps it has). A zero entry gives 0.

    Parameters
    ----------
    curve : torch.Tensor or sequence of float
        Non-negative values, shape ``(..., T)`` (e.g. from :func:`rollout_nrmse`).
    horizon : int
        The last step included (APEBench uses 100).

    Returns
    -------
    torch.Tensor
        float64, shape ``curve.shape[:-1]`` (0-d for a 1-D curve).
    """
    curve = torch.as_tensor(curve)
    if curve.is_complex() or curve.dtype == torch.bool:
        raise TypeError(f"curve must be real-valued, got {curve.dtype}")
    curve = curve.to(torch.float64)
    if curve.ndim == 0 or curve.shape[-1] == 0:
        raise ValueError(f"curve must have a non-empty last (time) axis, got shape {tuple(curve.shape)}")
    if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
        raise ValueError(f"horizon must be a positive int, got {horizon!r}")
    window = curve[..., :horizon]
    if (window < 0).any():
        raise ValueError("curve must be non-negative for a geometric mean")
    return window.log().mean(dim=-1).exp()


def rollout_correlation(pred: torch.Tensor, target: torch.Tensor, *, centered: bool = True) -> torch.Tensor:
    r"""Per-step correlation of a rollout with its reference (APEBench's ``mean_correlation`` curve).

    For each time step ``t``, per (sample ``b``, channel ``c``) over the ``N_space`` grid points ``x``,

    .. math:: r_{b,c,t} = \frac{\sum_x (p - \bar p)(y - \bar y)}
                             {\sqrt{\sum_x (p - \bar p)^2}\,\sqrt{\sum_x (y - \bar y)^2}},

    with :math:`\bar p`, :math:`\bar y` the spatial means of that (sample, channel, step) (Pearson's
    coefficient); then averaged over channels and samples with equal weight. ``centered=False`` drops
    the means: the normalised inner product :math:`\langle p, y\rangle / (\lVert p\rVert \lVert y\rVert)`
    that exponax's ``correlation`` computes (per channel, channel mean, batch mean); the two agree for
    fields of zero spatial mean. A (sample, channel, step) whose prediction or reference does not vary
    over space (``centered``) or is zero everywhere (not ``centered``) has no correlation: ``nan``.

    Parameters
    ----------
    pred, target : torch.Tensor
        ``(B, C, *space, T)`` with a trailing time axis (drop given context frames first).
    centered : bool
        Subtract the spatial means (Pearson, default) or not (exponax's normalised inner product).

    Returns
    -------
    torch.Tensor
        float64, shape ``(T,)``, in ``[-1, 1]``; dimensionless. Entry ``i`` is rollout step ``i + 1``.
    """
    p, y = _prepare(pred, target, time_axis=True)  # (B, C, T, *space)
    dims = _space_dims(p)
    if centered:
        p, y = p - p.mean(dim=dims, keepdim=True), y - y.mean(dim=dims, keepdim=True)
    norms = torch.linalg.vector_norm(p, dim=dims) * torch.linalg.vector_norm(y, dim=dims)
    inner = (p * y).sum(dim=dims)
    r = torch.where(norms > 0, inner / norms.clamp_min(torch.finfo(torch.float64).tiny), torch.nan)
    return r.clamp(-1.0, 1.0).mean(dim=(0, 1))


#: The correlation below which a rollout counts as decorrelated (:func:`correlation_time`).
CORRELATION_THRESHOLD = 0.8


@dataclass(frozen=True)
class CorrelationTime:
    """When a rollout's correlation curve first falls below a threshold (:func:`correlation_time`).

    Attributes
    ----------
    step
        The first rollout step (1-based) whose correlation is below the threshold; ``None`` if none is.
    time
        The crossing in steps, linearly interpolated between steps ``step - 1`` and ``step`` (step 0 is
        the given start, correlation 1); ``steps`` when the curve never falls below (a lower bound).
    steps
        The number of steps of the curve ``T``.
    """

    step: int | None
    time: float
    steps: int

    @property
    def censored(self) -> bool:
        """Whether the curve never fell below the threshold: the true crossing is at ``time`` or later."""
        return self.step is None


def correlation_time(curve: torch.Tensor | Sequence[float], threshold: float = CORRELATION_THRESHOLD) -> CorrelationTime:
    r"""Correlation time of a rollout: the first step where its correlation falls below ``threshold``.

    With ``r_k`` the correlation at step ``k = 1..T`` (``curve[k - 1]``, e.g. from
    :func:`rollout_correlation`) and ``r_0 = 1`` (the given start is the reference), ``k*`` is the
    first ``k`` with ``r_k < threshold`` and the interpolated crossing is

    .. math:: t^* = (k^* - 1) + \frac{r_{k^*-1} - \theta}{r_{k^*-1} - r_{k^*}} \in (k^* - 1, k^*],

    in steps (multiply by the frame interval for physical time). A ``nan`` entry (no correlation: a
    constant field) counts as below the threshold, with ``t* = k*``. If no step falls below, ``step``
    is ``None`` and ``time`` is ``T``: the rollout stayed correlated for all of its ``T`` steps.

    Parameters
    ----------
    curve : torch.Tensor or sequence of float
        Per-step correlations, shape ``(T,)``, ``T >= 1``; entry ``i`` is step ``i + 1``.
    threshold : float
        In ``(-1, 1)``; 0.8 by default (the usual "high-correlation time").

    Returns
    -------
    CorrelationTime
        ``step`` (1-based or ``None``), ``time`` (steps) and ``steps`` (``T``).
    """
    curve = torch.as_tensor(curve)
    if curve.is_complex() or curve.dtype == torch.bool:
        raise TypeError(f"curve must be real-valued, got {curve.dtype}")
    curve = curve.to(torch.float64)
    if curve.ndim != 1 or curve.shape[0] == 0:
        raise ValueError(f"curve must be a non-empty 1-D (T,) correlation curve, got shape {tuple(curve.shape)}")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not -1.0 < threshold < 1.0:
        raise ValueError(f"threshold must be a number in (-1, 1), got {threshold!r}")
    steps = curve.shape[0]
    below = ~(curve >= threshold)  # nan counts as below
    if not below.any():
        return CorrelationTime(None, float(steps), steps)
    k = int(torch.nonzero(below)[0]) + 1
    now = float(curve[k - 1])
    if not math.isfinite(now):
        return CorrelationTime(k, float(k), steps)
    before = 1.0 if k == 1 else float(curve[k - 2])
    return CorrelationTime(k, (k - 1) + (before - threshold) / (before - now), steps)


def rollout_vrmse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    r"""Per-step VRMSE curve of a rollout (The Well's per-step loss).

    For each time step ``t``: ``mean_{b, c} sqrt(mean_space (p - y)^2 / (var_space(y) + 1e-7))``, the
    :func:`vrmse` of that step alone.

    Parameters
    ----------
    pred, target : torch.Tensor
        ``(B, C, *space, T)`` with a trailing time axis (drop given context frames first).

    Returns
    -------
    torch.Tensor
        float64, shape ``(T,)``; dimensionless. Entry ``i`` is rollout step ``i + 1``.
    """
    p, y = _prepare(pred, target, time_axis=True)
    return _vrmse_bct(p, y).mean(dim=(0, 1))


#: The Well's rollout windows of :func:`windowed_vrmse`: (first, last) step, 1-based and inclusive.
WELL_WINDOWS: tuple[tuple[int, int], ...] = ((1, 1), (6, 12), (13, 30))


def window_name(first: int, last: int) -> str:
    """``"1"`` for a one-step window, ``"6-12"`` for steps 6 to 12."""
    return str(first) if first == last else f"{first}-{last}"


def windowed_vrmse(
    pred: torch.Tensor, target: torch.Tensor, windows: Sequence[tuple[int, int]] = WELL_WINDOWS
) -> dict[str, torch.Tensor]:
    r"""VRMSE averaged over rollout windows (The Well's report: step 1, steps 6–12, steps 13–30).

    For a window of steps ``a..b`` (1-based, inclusive) the mean of the per-step curve
    :func:`rollout_vrmse` over those steps, :math:`\frac{1}{b - a + 1}\sum_{t=a}^{b} \mathrm{VRMSE}_t`.
    A window the rollout does not reach to its end (``T < b``) is left out of the result, so that a
    value under a window's name always averages the same steps (The Well's trainer would average the
    steps present instead). Its trainer labels windows as Python slices of the 0-based curve
    (``T=6:12``); the steps here are those the issue names, counted from the first predicted step.

    Parameters
    ----------
    pred, target : torch.Tensor
        ``(B, C, *space, T)`` with a trailing time axis (drop given context frames first).
    windows : sequence of (first, last)
        1-based inclusive step ranges, ``1 <= first <= last``. Default :data:`WELL_WINDOWS`.

    Returns
    -------
    dict[str, torch.Tensor]
        ``"vrmse_1"``, ``"vrmse_6-12"``, ... (:func:`window_name`) -> float64 0-d tensor, for each window
        with ``last <= T``, in the order given.
    """
    windows = [tuple(w) for w in windows]
    for w in windows:
        if len(w) != 2 or any(isinstance(s, bool) or not isinstance(s, int) for s in w) or not 1 <= w[0] <= w[1]:
            raise ValueError(f"a window must be a (first, last) pair of steps with 1 <= first <= last, got {w!r}")
    curve = rollout_vrmse(pred, target)
    return {f"vrmse_{window_name(a, b)}": curve[a - 1 : b].mean() for a, b in windows if b <= curve.shape[0]}


def rollout_metrics(
    pred: torch.Tensor,
    target: torch.Tensor,
    *,
    horizon: int = 100,
    threshold: float = CORRELATION_THRESHOLD,
    windows: Sequence[tuple[int, int]] = WELL_WINDOWS,
) -> dict[str, float]:
    """The rollout summaries of APEBench and The Well as python floats.

    Parameters
    ----------
    pred, target : torch.Tensor
        ``(B, C, *space, T)`` with a trailing time axis of the ``T`` predicted steps (drop given context
        frames first).
    horizon : int
        Last step of the geometric mean of the nRMSE curve (APEBench's ``aggregate_gmean(up_to=100)``).
    threshold : float
        Correlation threshold of :func:`correlation_time`.
    windows : see :func:`windowed_vrmse`

    Returns
    -------
    dict[str, float]
        In this order: ``corr_time`` (:func:`correlation_time` of the Pearson curve
        :func:`rollout_correlation`, in steps; ``T`` when it never falls below the threshold),
        ``corr_step`` (the first step below it; absent when there is none), ``rollout_nrmse_gmean``
        (:func:`geometric_mean_rollout` of :func:`rollout_nrmse` over steps ``1..min(horizon, T)``: fewer
        steps for a shorter rollout), and ``vrmse_<window>`` for each window the rollout covers
        (:func:`windowed_vrmse`).
    """
    crossing = correlation_time(rollout_correlation(pred, target), threshold)
    out = {"corr_time": crossing.time}
    if crossing.step is not None:
        out["corr_step"] = float(crossing.step)
    out["rollout_nrmse_gmean"] = float(geometric_mean_rollout(rollout_nrmse(pred, target), horizon))
    out.update({name: float(value) for name, value in windowed_vrmse(pred, target, windows).items()})
    return out


# --------------------------------------------------------------------------------------------------
# Everything at once
# --------------------------------------------------------------------------------------------------

#: Field metrics by name; each takes (pred, target, *, time_axis, reduction). frmse returns a dict.
METRICS: dict[str, Callable[..., torch.Tensor | dict[str, torch.Tensor]]] = {
    "rmse": rmse,
    "nrmse": nrmse,
    "crmse": crmse,
    "max_error": max_error,
    "brmse": brmse,
    "frmse": frmse,
    "vrmse": vrmse,
}


def all_metrics(
    pred: torch.Tensor,
    target: torch.Tensor,
    *,
    context_frames: int = 0,
    time_axis: bool = True,
    bands: Sequence[tuple[float, float | None]] | Mapping[str, tuple[float, float | None]] = DEFAULT_BANDS,
    horizon: int = 100,
) -> dict[str, float]:
    """Every metric as python floats, with given context frames excluded.

    Parameters
    ----------
    pred, target : torch.Tensor
        ``(B, C, *space, T)`` full trajectories of equal length, or ``(B, C, *space)`` with
        ``time_axis=False``.
    context_frames : int
        The first ``context_frames`` time steps were given to the model, not predicted; they are
        dropped from both tensors before scoring (PDEBench issue 41). Must be ``< T``; must be 0
        without a time axis.
    time_axis : bool
        Whether the last axis is time.
    bands : see :func:`frmse`
    horizon : int
        Steps in the geometric mean of the rollout nRMSE curve.

    Returns
    -------
    dict[str, float]
        In this order: ``rmse``, ``nrmse``, ``crmse``, ``max_error``, ``brmse``, ``frmse_<band>``
        for each band (``frmse_low``, ``frmse_mid``, ``frmse_high`` by default), ``vrmse`` and
        ``rollout_nrmse_gmean`` (the geometric mean over the first ``horizon`` scored steps of
        :func:`rollout_nrmse`; equals ``nrmse`` for a single step). Scalars use
        ``reduction="mean"``.
    """
    _prepare(pred, target, time_axis)  # validate before slicing
    if isinstance(context_frames, bool) or not isinstance(context_frames, int) or context_frames < 0:
        raise ValueError(f"context_frames must be a non-negative int, got {context_frames!r}")
    if not time_axis:
        if context_frames:
            raise ValueError("context_frames needs a time axis (time_axis=True)")
        pred, target = pred.unsqueeze(-1), target.unsqueeze(-1)
    n_steps = pred.shape[-1]
    if context_frames >= n_steps:
        raise ValueError(f"context_frames={context_frames} leaves no predicted step out of T={n_steps}")
    pred, target = pred[..., context_frames:], target[..., context_frames:]

    out: dict[str, float] = {}
    for name in ("rmse", "nrmse", "crmse", "max_error", "brmse"):
        out[name] = float(METRICS[name](pred, target))
    for band, value in frmse(pred, target, bands).items():
        out[f"frmse_{band}"] = float(value)
    out["vrmse"] = float(vrmse(pred, target))
    out["rollout_nrmse_gmean"] = float(geometric_mean_rollout(rollout_nrmse(pred, target), horizon))
    return out
