"""Transfers of fields between uniform grids of one domain: band-limited Fourier resampling and
trigonometric interpolation of periodic point values, nested subsampling and bilinear interpolation
of node values, block averages and piecewise-constant prolongation of cell averages. Pure tensor functions on the last ``dims``
axes; they import nothing of the package (problems, solvers and the leaderboard all use them)."""

from __future__ import annotations

import torch


def fourier_resample(u: torch.Tensor, points: int, dims: int) -> torch.Tensor:
    """Band-limited resampling of periodic fields to ``points`` per axis.

    Parameters
    ----------
    u
        ``(..., n, ..., n)`` real values on a uniform periodic grid (the last ``dims`` axes).
    points
        Even number of points per axis of the result.
    dims
        Spatial axes.

    Returns
    -------
    torch.Tensor
        ``(..., points, ..., points)``: the trigonometric interpolant of ``u`` restricted to the modes
        ``|k| < min(n, points) / 2`` (the Nyquist mode of either grid is dropped), evaluated on the new
        grid. Interpolation (``points > n``) reproduces ``u`` at the old points when ``u`` has no
        Nyquist content; truncation (``points < n``) is the L2 projection onto the coarse modes.
    """
    n = u.shape[-1]
    if points == n:
        return u
    axes = tuple(range(u.ndim - dims, u.ndim))
    spectrum = torch.fft.rfftn(u, dim=axes)
    keep = min(n, points) // 2  # modes 0..keep-1 and -(keep-1)..-1 per axis
    out_shape = list(spectrum.shape[: u.ndim - dims]) + [points] * (dims - 1) + [points // 2 + 1]
    out = torch.zeros(out_shape, dtype=spectrum.dtype)
    index_in, index_out = [], []
    for axis in range(dims - 1):
        idx = torch.cat([torch.arange(keep), torch.arange(-(keep - 1), 0)])
        index_in.append(idx % n)
        index_out.append(idx % points)
    index_in.append(torch.arange(keep))
    index_out.append(torch.arange(keep))
    grid_in = torch.meshgrid(*index_in, indexing="ij")
    grid_out = torch.meshgrid(*index_out, indexing="ij")
    out[(..., *grid_out)] = spectrum[(..., *grid_in)]
    scale = (points / n) ** dims
    return torch.fft.irfftn(out, s=[points] * dims, dim=axes) * scale


def fourier_interpolate(u: torch.Tensor, points: int, dims: int) -> torch.Tensor:
    """The trigonometric interpolant of periodic point values evaluated on a finer grid.

    Parameters
    ----------
    u
        ``(..., n, ..., n)`` real values on a uniform periodic grid (the last ``dims`` axes), ``n`` even.
    points
        Points per axis of the result, a multiple of ``n``.
    dims
        Spatial axes.

    Returns
    -------
    torch.Tensor
        ``(..., points, ..., points)``: the interpolant with every mode ``|k| < n / 2`` of ``u`` and its
        Nyquist mode split evenly between ``+n/2`` and ``-n/2`` (a cosine), axis by axis, so that it
        equals ``u`` at the old points (``result[..., ::points // n] == u`` to rounding), unlike
        :func:`fourier_resample`, which drops the Nyquist mode.
    """
    n = u.shape[-1]
    if n % 2 or points % n:
        raise ValueError(f"cannot interpolate {n} points per axis to {points}: n must be even and divide {points}")
    half, out = n // 2, u.to(torch.complex128)
    for axis in range(u.ndim - dims, u.ndim):
        spectrum = torch.fft.fft(out, dim=axis).movedim(axis, -1)
        fine = torch.zeros((*spectrum.shape[:-1], points), dtype=spectrum.dtype)
        fine[..., :half] = spectrum[..., :half]
        fine[..., points - half + 1:] = spectrum[..., half + 1:]
        fine[..., half] = spectrum[..., half] / 2
        fine[..., points - half] = spectrum[..., half] / 2
        out = torch.fft.ifft(fine.movedim(-1, axis), dim=axis) * (points / n)
    return out.real.to(u.dtype)


def node_subsample(u: torch.Tensor, points: int, dims: int) -> torch.Tensor:
    """``(..., n, ..., n)`` values on a node grid (both ends included) at its nested ``points``-node subgrid."""
    n = u.shape[-1]
    if (n - 1) % (points - 1):
        raise ValueError(f"a {points}-node grid is not nested in a {n}-node grid")
    stride = (n - 1) // (points - 1)
    return u[(..., *([slice(None, None, stride)] * dims))]


def node_interpolate(u: torch.Tensor, points: int) -> torch.Tensor:
    """``(N, C, r, r)`` node-grid values to ``points`` nodes per axis by bilinear interpolation (the
    finite-element P1 interpolant on a structured grid, up to its diagonal; exact at shared nodes)."""
    return torch.nn.functional.interpolate(u, size=(points, points), mode="bilinear", align_corners=True)


def block_average(u: torch.Tensor, points: int, dims: int) -> torch.Tensor:
    """``(..., n, ..., n)`` cell averages to ``points`` cells per axis (``points`` divides ``n``): the mean of
    each block of ``n / points`` consecutive cells per axis, exactly the coarse cells' averages
    (:meth:`~pdebench.problems.base.Problem.restrict` of a ``cell_averaged`` problem)."""
    n = u.shape[-1]
    if points < 1 or n % points:
        raise ValueError(f"cell averages on {n} cells cannot be block-averaged to {points}: {points} must divide {n}")
    for axis in range(u.ndim - dims, u.ndim):
        u = u.unflatten(axis, (points, n // points)).mean(dim=axis + 1)
    return u


def prolong_piecewise_constant(u: torch.Tensor, points: int, dims: int) -> torch.Tensor:
    """``(..., r, ..., r)`` cell averages to ``points`` cells per axis (``r`` divides ``points``): each
    coarse value repeated over the ``points / r`` fine cells it covers (the piecewise-constant
    reconstruction; block-averaging it back gives ``u`` exactly)."""
    r = u.shape[-1]
    if points % r:
        raise ValueError(f"cannot prolong {r} cells to {points}: {r} must divide {points}")
    for axis in range(u.ndim - dims, u.ndim):
        u = u.repeat_interleave(points // r, dim=axis)
    return u
