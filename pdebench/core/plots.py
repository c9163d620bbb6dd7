"""Pictures of trajectories (space–time images in 1-D, snapshot rows in 2-D), rollout curves and a
file's verified error against time."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from pdebench.core.trajectories import Trajectories  # noqa: E402


def plot_trajectories(
    traj: Trajectories, output: str | os.PathLike[str], *, field: str | None = None, max_samples: int = 4, snapshots: int = 5
) -> Path:
    """Save a PNG of up to ``max_samples`` trajectories of one field.

    1-D fields ``(N, T, X)`` become space–time images (``x`` across, ``t`` up); 2-D fields
    ``(N, T, X, Y)`` become rows of ``snapshots`` frames evenly spaced in time (first component of a
    vector field); 3-D fields ``(N, T, X, Y, Z)`` likewise, their mid-plane ``Z // 2``. Returns the path written.
    """
    name = field or next(iter(traj.fields))
    if name not in traj.fields:
        raise ValueError(f"no field {name!r}; fields: {', '.join(traj.fields)}")
    data = np.asarray(traj.fields[name].detach().cpu().numpy() if hasattr(traj.fields[name], "detach") else traj.fields[name])
    n = min(max_samples, data.shape[0])
    t = traj.coords.get("t", np.arange(data.shape[1]))
    dim = len(traj.spatial_axes) or data.ndim - 2
    if data.ndim == dim + 3:  # a vector field: show its first component
        data = data[..., 0]
    plane = ""
    if dim == 3:  # a volume: its mid-plane
        k = data.shape[-1] // 2
        data = data[..., k]
        plane = f" at z = {float(traj.coords['z'][k]):.3g}" if "z" in traj.coords else f" at z index {k}"
    output = Path(output)
    if dim == 1:
        x = traj.coords.get("x", np.arange(data.shape[2]))
        fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.0), squeeze=False, constrained_layout=True)
        vmax = _color_limit(data[:n])
        for i, ax in enumerate(axes[0]):
            image = ax.pcolormesh(x, t, data[i], cmap="RdBu_r", vmin=-vmax, vmax=vmax, shading="auto")
            ax.set(xlabel="x", ylabel="t" if i == 0 else None, title=f"sample {tuple(int(v) for v in traj.sample_ids[i])}")
        fig.colorbar(image, ax=axes[0].tolist(), label=name)
    else:
        frames = np.unique(np.linspace(0, data.shape[1] - 1, snapshots).round().astype(int))
        fig, axes = plt.subplots(n, len(frames), figsize=(2.4 * len(frames), 2.4 * n), squeeze=False, constrained_layout=True)
        for i in range(n):
            vmax = _color_limit(data[i])
            for j, frame in enumerate(frames):
                ax = axes[i, j]
                image = ax.imshow(data[i, frame].T, origin="lower", cmap="RdBu_r", vmin=-vmax, vmax=vmax)
                ax.set_xticks([]), ax.set_yticks([])
                if i == 0:
                    ax.set_title(f"t = {t[frame]:.3g}")
            axes[i, 0].set_ylabel(f"sample {tuple(int(v) for v in traj.sample_ids[i])}")
            fig.colorbar(image, ax=axes[i].tolist(), shrink=0.8)
    problem = traj.provenance.get("problem", "")
    fig.suptitle(f"{problem} {name}{plane}".strip())
    fig.savefig(output, dpi=110)
    plt.close(fig)
    return output


def _color_limit(values: np.ndarray) -> float:
    """Largest finite ``|value|`` (1 where there is none): NaN and inf values show blank, not as the scale."""
    finite = np.abs(values[np.isfinite(values)])
    return float(finite.max()) if finite.size and finite.max() > 0 else 1.0


def plot_rollout_curve(curve, output: str | os.PathLike[str], *, label: str = "", dt: float | None = None) -> Path:
    """Save a PNG of a per-step rollout nRMSE curve ``(T,)`` (log scale); ``dt`` labels the axis in time."""
    curve = np.asarray(curve.detach().cpu().numpy() if hasattr(curve, "detach") else curve, dtype=float)
    steps = np.arange(1, len(curve) + 1)
    x = steps * dt if dt else steps
    fig, ax = plt.subplots(figsize=(5, 3.2), constrained_layout=True)
    ax.semilogy(x, curve, marker="o", ms=3, label=label or None)
    ax.set(xlabel="time" if dt else "rollout step", ylabel="nRMSE", title="autoregressive rollout error")
    ax.grid(True, which="both", alpha=0.3)
    if label:
        ax.legend()
    output = Path(output)
    fig.savefig(output, dpi=110)
    plt.close(fig)
    return output


def plot_verification_errors(times, errors, labels, output: str | os.PathLike[str], *, threshold: float | None = None,
                             title: str = "") -> Path:
    """Save a PNG of relative L2 error against time, one line per verified sample (``pdebench verify``).

    Parameters
    ----------
    times
        ``(T,)`` frame times.
    errors
        ``(K, T)`` relative L2 error of each of ``K`` samples at each frame (dimensionless; zeros, such as
        a frame 0 the reference started from, are not drawn on the log scale).
    labels
        ``K`` line labels.
    threshold
        Drawn as a dashed horizontal line (the pass/fail limit).
    """
    times = np.asarray(times, dtype=float)
    errors = np.atleast_2d(np.asarray(errors, dtype=float))
    fig, ax = plt.subplots(figsize=(6, 3.6), constrained_layout=True)
    x = times if len(times) == errors.shape[1] else np.arange(errors.shape[1])
    for curve, label in zip(errors, labels):
        shown = np.where(curve > 0, curve, np.nan)  # log scale: exact zeros are left out
        ax.semilogy(x, shown, marker="o", ms=2.5, label=label)
    if threshold is not None:
        ax.axhline(threshold, color="k", ls="--", lw=1, label=f"threshold {threshold:.3g}")
    ax.set(xlabel="time" if x is times else "frame", ylabel="relative L2 error", title=title or "verification")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    output = Path(output)
    fig.savefig(output, dpi=110)
    plt.close(fig)
    return output
