"""Leaderboard figures: models on the solver's accuracy–cost curve, rollout errors, errors against
resolution, one prediction.

Every function validates its inputs before drawing (ValueError for a bad shape or value), writes the
figure atomically (to a hidden temporary file in the destination folder, then ``os.replace``, so a
reader never sees a half-written image and a failure leaves no stray file), creates missing parent
folders, and returns the path written. The format follows the path's suffix (PNG without one).
The accuracy–cost figure is also given unsaved (:func:`error_vs_cost_figure`) and as PNG bytes with
the pixel position of each of its points (:func:`error_vs_cost_image`, the board page's image map).
"""

from __future__ import annotations

import io
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from pdebench.atomic import atomic_write  # noqa: E402
from pdebench.evaluation.pareto import CostCurve, speedup_at_equal_accuracy  # noqa: E402

__all__ = ["ImageMap", "PlotPoint", "error_vs_cost_figure", "error_vs_cost_image", "plot_error_vs_cost", "plot_prediction",
           "plot_resolution", "plot_rollout_errors"]

log = logging.getLogger(__name__)

_DPI = 110
_MODEL_MARKERS = ("o", "s", "D", "^", "v", "P", "X", "*", "<", ">")


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


def _to_numpy(name: str, x: Any) -> np.ndarray:
    """``x`` (numpy array, torch tensor or nested sequence) as a float64 numpy array."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be an array of real numbers: {exc}") from None


def _save_atomic(fig: plt.Figure, path: str | os.PathLike[str]) -> Path:
    """Save ``fig`` to ``path`` atomically (:func:`pdebench.atomic.atomic_write`) and close it."""
    path = Path(path)
    try:
        with atomic_write(path) as handle:
            fig.savefig(handle, format=path.suffix.lstrip(".").lower() or "png", dpi=_DPI)
    finally:
        plt.close(fig)
    log.debug("wrote %s", path)
    return path


def _field_scale(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    """imshow colour settings shared by truth and prediction: a diverging map centred on 0 when the
    values take both signs, else a sequential map over their finite range."""
    finite = np.concatenate([a[np.isfinite(a)], b[np.isfinite(b)]])
    if finite.size == 0:
        return {"cmap": "viridis", "vmin": 0.0, "vmax": 1.0}
    lo, hi = float(finite.min()), float(finite.max())
    if lo < 0 < hi:
        vmax = max(-lo, hi)
        return {"cmap": "RdBu_r", "vmin": -vmax, "vmax": vmax}
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    return {"cmap": "viridis", "vmin": lo, "vmax": hi}


def _robust_limit(*arrays: np.ndarray) -> float:
    """Largest finite absolute value over ``arrays`` (1.0 if there is none or it is 0)."""
    finite = [np.abs(a[np.isfinite(a)]) for a in arrays]
    vmax = max((float(f.max()) for f in finite if f.size), default=0.0)
    return vmax if vmax > 0 else 1.0


# --------------------------------------------------------------------------------------------------
# Accuracy–cost
# --------------------------------------------------------------------------------------------------


def _speedup_note(curve: CostCurve, cost: float, error: float) -> str:
    p = speedup_at_equal_accuracy(curve, error=error, cost=cost)
    if p.speedup is not None:
        return f"speed-up {p.speedup:.3g}x"
    sign = ">" if p.speedup_bound_kind == "lower" else "<"
    return f"speed-up {sign} {p.speedup_bound:.3g}x, {p.verdict}"


def _check_models(models: Mapping[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
    """``models`` as ``name -> (cost, error)`` floats; ValueError naming a pair that is not two positive
    finite numbers."""
    points: dict[str, tuple[float, float]] = {}
    for name, value in models.items():
        try:
            cost, error = (float(v) for v in value)
        except (TypeError, ValueError):
            raise ValueError(f"models[{name!r}] must be a (cost, error) pair of numbers, got {value!r}") from None
        for what, v in (("cost", cost), ("error", error)):
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"models[{name!r}] {what} must be positive and finite, got {v!r}")
        points[str(name)] = (cost, error)
    return points


def error_vs_cost_figure(
    curve: CostCurve,
    models: Mapping[str, tuple[float, float]],
    title: str = "accuracy vs cost: models on the solver's ladder",
    *,
    show_speedup: bool = True,
    xlabel: str = "inference cost per sample [s]",
    ylabel: str = "nRMSE vs reference",
) -> tuple[plt.Figure, plt.Axes]:
    """The figure of :func:`plot_error_vs_cost` (same parameters; ``xlabel``, ``ylabel`` its axes'
    labels), drawn and not saved: ``(figure, axes)``, for the caller to save and close."""
    if not isinstance(curve, CostCurve):
        raise ValueError(f"curve must be a CostCurve, got {type(curve).__name__}")
    points = _check_models(models)

    front_idx = curve.front_indices()
    off_front = np.setdiff1d(np.arange(len(curve)), front_idx)
    labels = curve.rung_labels

    fig, ax = plt.subplots(figsize=(6.4, 4.6), constrained_layout=True)
    ax.loglog(curve.costs[front_idx], curve.errors[front_idx], "-o", color="black", lw=2.2, ms=6, label="solver Pareto front")
    if off_front.size:
        ax.loglog(curve.costs[off_front], curve.errors[off_front], "x", color="0.55", ms=6, mew=1.2, label="solver rungs off the front")
    for i in front_idx:
        ax.annotate(labels[i], (curve.costs[i], curve.errors[i]), xytext=(5, 4), textcoords="offset points", fontsize=7, color="0.3")

    colours = plt.rcParams["axes.prop_cycle"].by_key().get("color", ["C0"])
    for k, (name, (cost, error)) in enumerate(points.items()):
        legend = f"{name} ({_speedup_note(curve, cost, error)})" if show_speedup else name
        ax.loglog(
            [cost], [error], linestyle="none", marker=_MODEL_MARKERS[k % len(_MODEL_MARKERS)], ms=9,
            color=colours[k % len(colours)], markeredgecolor="black", label=legend, zorder=3,
        )
        ax.annotate(name, (cost, error), xytext=(6, -10), textcoords="offset points", fontsize=8, color=colours[k % len(colours)])

    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return fig, ax


def plot_error_vs_cost(
    curve: CostCurve,
    models: Mapping[str, tuple[float, float]],
    path: str | os.PathLike[str],
    title: str = "accuracy vs cost: models on the solver's ladder",
    *,
    show_speedup: bool = True,
) -> Path:
    """Save a log-log plot of error against cost: the solver ladder, its Pareto front and the models.

    The Pareto front (:meth:`CostCurve.front`) is drawn as a thick line, each of its rungs annotated
    with its label; rungs off the front are grey crosses without labels (a ladder of resolutions
    times steps has many, and their labels would pile up; they are all in the results table). Each model is a distinct marker, annotated with its
    name and listed in the legend.

    Parameters
    ----------
    curve : CostCurve
        The solver's ladder (cost in seconds per sample, error as nRMSE vs the reference).
    models : mapping of str to (cost, error)
        Model name -> ``(inference cost per sample [s], nRMSE vs reference)``; note the order, cost
        first (the x coordinate). Both positive and finite. May be empty.
    path : path-like
        Where to write the figure.
    title : str
        Figure title.
    show_speedup : bool
        Append each model's speed-up at equal accuracy (or its bound and verdict) to its legend entry,
        from :func:`~pdebench.evaluation.pareto.speedup_at_equal_accuracy`.

    Returns
    -------
    Path
        The path written.

    Raises
    ------
    ValueError
        For a model whose value is not a ``(cost, error)`` pair of positive finite numbers.
    """
    fig, _ = error_vs_cost_figure(curve, models, title, show_speedup=show_speedup)
    return _save_atomic(fig, path)


@dataclass(frozen=True)
class PlotPoint:
    """One drawn point of an :class:`ImageMap`: its name, ``"model"`` or ``"front"`` (a solver rung on
    the Pareto front), its data ``cost`` [s] and ``error``, and its centre in image pixels (``x``
    rightwards, ``y`` downwards from the top-left corner)."""

    name: str
    kind: str
    cost: float
    error: float
    x: float
    y: float


@dataclass(frozen=True)
class ImageMap:
    """A PNG and where its points lie on it: ``png`` (the file's bytes), its ``width`` and ``height``
    in pixels, and its :class:`PlotPoint` s (the models, then the front's rungs cheapest first)."""

    png: bytes
    width: int
    height: int
    points: tuple[PlotPoint, ...]


def error_vs_cost_image(curve: CostCurve, models: Mapping[str, tuple[float, float]], title: str, **figure: Any) -> ImageMap:
    """:func:`error_vs_cost_figure` (``figure``: its keyword arguments) as a PNG at the boards' resolution,
    with the pixel centre of every model and Pareto-front rung (the axes' ``transData`` of the saved
    drawing, y flipped to count from the top): the points a page's image map names on hover."""
    fig, ax = error_vs_cost_figure(curve, models, title, **figure)
    try:
        fig.set_dpi(_DPI)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=_DPI)  # at the figure's own dpi: transData stays that of the saved drawing
        width, height = (int(round(v)) for v in fig.bbox.size)
        front = curve.front_indices()
        data = ([(name, "model", cost, error) for name, (cost, error) in _check_models(models).items()]
                + [(curve.rung_labels[i], "front", float(curve.costs[i]), float(curve.errors[i])) for i in front])
        points = []
        for name, kind, cost, error in data:
            x, y = ax.transData.transform((cost, error))
            points.append(PlotPoint(name, kind, cost, error, float(x), float(height - y)))
    finally:
        plt.close(fig)
    return ImageMap(buffer.getvalue(), width, height, tuple(points))


# --------------------------------------------------------------------------------------------------
# Resolution protocol
# --------------------------------------------------------------------------------------------------


def plot_resolution(
    resolutions: Any,
    models: Mapping[str, Any],
    solver_best: Any,
    path: str | os.PathLike[str],
    *,
    training_grid: int | None = None,
    title: str = "error against resolution",
) -> Path:
    """Save a log-log plot of nRMSE against the evaluation grid: one line per model, the best solver
    rung at each grid dashed.

    Parameters
    ----------
    resolutions : array-like of int, shape ``(R,)``
        The evaluation grids (points per axis), increasing, each positive.
    models : mapping of str to array-like
        Model name -> its nRMSE at each grid, shape ``(R,)``; NaN (or None) where the model cannot take
        that grid (left out of its line). May be empty.
    solver_best : array-like, shape ``(R,)``
        The lowest nRMSE of the solver ladder run at each grid (positive; NaN: no rung).
    path : path-like
        Where to write the figure.
    training_grid : int, optional
        The grid the models were trained on, marked by a dotted vertical line.
    title : str
        Figure title.

    Returns
    -------
    Path
        The path written.

    Raises
    ------
    ValueError
        For resolutions that are not positive and increasing, or a model's or the solver's values not
        of shape ``(R,)`` or not positive where finite.
    """
    grid = _to_numpy("resolutions", resolutions)
    if grid.ndim != 1 or grid.size == 0 or not np.all(grid > 0) or not np.all(np.diff(grid) > 0):
        raise ValueError(f"resolutions must be positive and increasing, got {grid.tolist()}")

    def checked(name: str, values: Any) -> np.ndarray:
        arr = _to_numpy(name, [np.nan if v is None else v for v in values])
        if arr.shape != grid.shape:
            raise ValueError(f"{name} must have one value per resolution, shape {grid.shape}, got {arr.shape}")
        if np.any(arr[np.isfinite(arr)] <= 0):
            raise ValueError(f"{name} must be positive where finite, got {arr.tolist()}")
        return arr

    lines = {str(name): checked(f"models[{name!r}]", v) for name, v in models.items()}
    best = checked("solver_best", solver_best)
    fig, ax = plt.subplots(figsize=(6.4, 4.2), constrained_layout=True)
    ax.loglog(grid, best, "--", color="black", lw=1.6, marker="x", label="best solver rung at each grid")
    colours = plt.rcParams["axes.prop_cycle"].by_key().get("color", ["C0"])
    for k, (name, values) in enumerate(lines.items()):
        ax.loglog(grid, values, "-", marker=_MODEL_MARKERS[k % len(_MODEL_MARKERS)], color=colours[k % len(colours)],
                  markeredgecolor="black", label=name)
    if training_grid is not None:
        ax.axvline(training_grid, color="0.5", ls=":", lw=1, label=f"training grid ({training_grid})")
    ax.set_xticks(grid, [f"{int(r)}" for r in grid])
    ax.minorticks_off()
    ax.set(xlabel="evaluation grid [points per axis]", ylabel="nRMSE vs reference", title=title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return _save_atomic(fig, path)


# --------------------------------------------------------------------------------------------------
# Rollouts
# --------------------------------------------------------------------------------------------------


def plot_rollout_errors(
    curves: Mapping[str, Any],
    path: str | os.PathLike[str],
    dt: float | None = None,
    *,
    title: str = "autoregressive rollout error",
    ylabel: str = "nRMSE",
    solver_curves: Mapping[str, Any] | None = None,
    t0: float = 0.0,
) -> Path:
    """Save a plot of per-step rollout error, one line per model (and per solver run), on a log y axis.

    Parameters
    ----------
    curves : mapping of str to array-like
        Model name -> per-step errors, shape ``(T,)`` (numpy array, torch tensor or sequence); entry
        ``i`` is rollout step ``i + 1`` (as from :func:`~pdebench.core.metrics.rollout_nrmse` or
        :func:`~pdebench.core.metrics.rollout_mse`). Models may have different ``T``.
        Non-negative; NaN/inf (a diverged rollout) and zeros are left out of the log plot, with a
        logged warning. May be empty when ``solver_curves`` is not.
    path : path-like
        Where to write the figure.
    dt : float, optional
        Time per step; when given the x axis is time ``t0 + (i + 1) * dt`` instead of the step number.
    title, ylabel : str
        Figure title and y-axis label.
    solver_curves : mapping of str to array-like, optional
        Classical-solver runs (e.g. the leaderboard's ladder rungs) -> per-step errors, checked like
        ``curves`` and drawn as dashed lines without markers in shades of grey, listed after the models.
    t0 : float
        Time of the last given frame (with ``dt``): the first step is drawn at ``t0 + dt``.

    Returns
    -------
    Path
        The path written.

    Raises
    ------
    ValueError
        For no curves, a curve that is not 1-D or is empty, a negative value, or ``dt`` not positive
        and finite.
    """
    solver_curves = solver_curves or {}
    if not curves and not solver_curves:
        raise ValueError("curves is empty: give at least one model's per-step errors")
    if dt is not None and not (isinstance(dt, (int, float)) and not isinstance(dt, bool) and math.isfinite(dt) and dt > 0):
        raise ValueError(f"dt must be a positive finite number or None, got {dt!r}")
    if isinstance(t0, bool) or not isinstance(t0, (int, float)) or not math.isfinite(t0):
        raise ValueError(f"t0 must be a finite number, got {t0!r}")
    data = _check_curves("curves", curves)
    solvers = _check_curves("solver_curves", solver_curves)

    fig, ax = plt.subplots(figsize=(6.4, 4.0), constrained_layout=True)

    def draw(arr: np.ndarray, **style: Any) -> None:
        steps = np.arange(1, arr.size + 1)
        x = t0 + steps * dt if dt is not None else steps
        ax.plot(x, np.where(np.isfinite(arr) & (arr > 0), arr, np.nan), **style)

    for name, arr in data.items():
        draw(arr, marker="o", ms=2.5 if arr.size <= 60 else 0, lw=1.2, label=name, zorder=3)
    greys = np.linspace(0.15, 0.65, max(len(solvers), 1))
    for (name, arr), grey in zip(solvers.items(), greys):
        draw(arr, ls="--", lw=1.0, color=str(round(float(grey), 3)), label=f"{name} (solver)", zorder=2)
    ax.set_yscale("log")
    ax.set(xlabel="time" if dt is not None else "rollout step", ylabel=ylabel, title=title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7 if len(data) + len(solvers) > 6 else 8)
    return _save_atomic(fig, path)


def _check_curves(label: str, curves: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Per-step curves as 1-D non-negative float64 arrays (ValueError naming ``label[name]`` otherwise);
    warns about the steps a log plot cannot show."""
    data: dict[str, np.ndarray] = {}
    for name, curve in curves.items():
        arr = _to_numpy(f"{label}[{name!r}]", curve)
        if arr.ndim != 1 or arr.size == 0:
            raise ValueError(f"{label}[{name!r}] must be a non-empty 1-D per-step curve (T,), got shape {arr.shape}")
        if (arr < 0).any():
            i = int(np.flatnonzero(arr < 0)[0])
            raise ValueError(f"{label}[{name!r}][{i}] = {float(arr[i])!r} is negative; errors must be non-negative")
        hidden = int((~np.isfinite(arr) | (arr == 0)).sum())
        if hidden:
            log.warning("%s[%r]: %d of %d steps are zero or not finite and are left out of the log plot", label, name, hidden, arr.size)
        data[str(name)] = arr
    return data


# --------------------------------------------------------------------------------------------------
# One prediction
# --------------------------------------------------------------------------------------------------

_LAYOUTS = ("x", "tx", "xy")


def _coord(coords: Mapping[str, Any] | None, key: str, n: int) -> np.ndarray:
    """Coordinate ``key`` from ``coords`` (checked to have ``n`` points), or grid indices."""
    if coords is None or key not in coords:
        return np.arange(n, dtype=np.float64)
    c = _to_numpy(f"coords[{key!r}]", coords[key])
    if c.shape != (n,):
        raise ValueError(f"coords[{key!r}] has shape {c.shape}, expected ({n},) to match the field")
    return c


def _extent(a: np.ndarray, b: np.ndarray) -> list[float]:
    """imshow extent for a uniform grid with cell centres ``a`` (horizontal) and ``b`` (vertical)."""

    def edges(c: np.ndarray) -> tuple[float, float]:
        half = 0.5 * (c[-1] - c[0]) / (c.size - 1) if c.size > 1 else 0.5
        return float(c[0] - half), float(c[-1] + half)

    return [*edges(a), *edges(b)]


def _resolve_layout(shape: tuple[int, ...], layout: str | None, coords: Mapping[str, Any] | None) -> str:
    if layout is not None:
        if layout not in _LAYOUTS:
            raise ValueError(f"layout must be one of {_LAYOUTS}, got {layout!r}")
        if len(layout) != len(shape):
            raise ValueError(f"layout {layout!r} needs a {len(layout)}-D field, got shape {shape}")
        return layout
    if len(shape) == 1:
        return "x"
    if len(shape) == 2:
        keys = set(coords or ())
        if "t" in keys and "y" not in keys:
            return "tx"
        if "y" in keys and "t" not in keys:
            return "xy"
        raise ValueError(
            f"a 2-D field of shape {shape} may be (T, X) or (X, Y): pass layout='tx' or layout='xy' "
            "(or coords with a 't' or a 'y' entry)"
        )
    raise ValueError(f"expected a 1-D (X,), or 2-D (T, X) or (X, Y) field, got shape {shape}; take one frame of a 2-D rollout first")


def _plot_lines(ax: plt.Axes, ax_error: plt.Axes, x: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray) -> None:
    """Truth and prediction ``(X,)`` as lines on ``ax``, ``prediction - truth`` on ``ax_error``."""
    ax.plot(x, y_true, color="black", lw=1.6, label="truth")
    ax.plot(x, y_pred, color="tab:red", lw=1.2, ls="--", label="prediction")
    ax.legend(fontsize=8)
    ax_error.plot(x, y_pred - y_true, color="tab:blue", lw=1.0)
    ax_error.axhline(0.0, color="0.6", lw=0.8)
    for a in (ax, ax_error):
        a.grid(True, alpha=0.3)


def plot_prediction(
    truth: Any,
    prediction: Any,
    path: str | os.PathLike[str],
    coords: Mapping[str, Any] | None = None,
    title: str = "prediction vs truth",
    *,
    layout: str | None = None,
) -> Path:
    """Save a figure comparing one sample's prediction with the truth.

    * ``"x"``, fields ``(X,)``: truth and prediction as lines, and below them the error
      ``prediction - truth``.
    * ``"tx"``, fields ``(T, X)``: space–time images (``x`` across, ``t`` up) of truth, prediction
      and ``|prediction - truth|``, and below them the last frame as lines plus its error.
    * ``"xy"``, fields ``(X, Y)``: images of truth, prediction (one colour scale) and
      ``|prediction - truth|``, each with a colour bar (``x`` across, ``y`` up).

    Truth and prediction share a colour scale: diverging and centred on 0 when the values take both
    signs, sequential over their range otherwise. NaN/inf entries are left blank.

    Parameters
    ----------
    truth, prediction : array-like
        One channel of one sample, same shape; numpy arrays, torch tensors or sequences.
    path : path-like
        Where to write the figure.
    coords : mapping, optional
        1-D coordinate arrays by axis name, ``"t"``, ``"x"``, ``"y"``; each must have as many points
        as its axis. Missing axes use grid indices. Image extents assume a uniform grid.
    title : str
        Figure title.
    layout : {"x", "tx", "xy"}, optional
        The axes of the fields. Needed for 2-D fields, which may be ``(T, X)`` or ``(X, Y)``, unless
        ``coords`` names exactly one of ``"t"`` and ``"y"``; 1-D fields are ``"x"``.

    Returns
    -------
    Path
        The path written.

    Raises
    ------
    ValueError
        For shapes that differ, are not 1-D or 2-D or are empty, an ambiguous 2-D layout, or
        coordinates of the wrong length.
    """
    y_true = _to_numpy("truth", truth)
    y_pred = _to_numpy("prediction", prediction)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"truth and prediction shapes differ: truth {y_true.shape} vs prediction {y_pred.shape}")
    if y_true.size == 0:
        raise ValueError(f"truth and prediction are empty: shape {y_true.shape}")
    layout = _resolve_layout(y_true.shape, layout, coords)
    err = y_pred - y_true

    if layout == "x":
        x = _coord(coords, "x", y_true.shape[0])
        fig, (top, bottom) = plt.subplots(
            2, 1, figsize=(6.0, 4.4), sharex=True, height_ratios=(2, 1), constrained_layout=True
        )
        _plot_lines(top, bottom, x, y_true, y_pred)
        top.set(ylabel="u")
        bottom.set(xlabel="x", ylabel="prediction - truth")

    elif layout == "tx":
        t = _coord(coords, "t", y_true.shape[0])
        x = _coord(coords, "x", y_true.shape[1])
        fig, axes = plt.subplot_mosaic(
            [["truth", "prediction", "error"], ["frame", "frame", "frame_error"]],
            figsize=(10.0, 6.0), constrained_layout=True,
        )
        scale = _field_scale(y_true, y_pred)
        extent = _extent(x, t)
        for key, field in (("truth", y_true), ("prediction", y_pred)):
            image = axes[key].imshow(field, origin="lower", aspect="auto", extent=extent, **scale)
            axes[key].set(xlabel="x", ylabel="t", title=key)
        fig.colorbar(image, ax=[axes["truth"], axes["prediction"]], shrink=0.9)
        image = axes["error"].imshow(
            np.abs(err), origin="lower", aspect="auto", extent=extent, cmap="magma", vmin=0.0, vmax=_robust_limit(err)
        )
        axes["error"].set(xlabel="x", ylabel="t", title="|prediction - truth|")
        fig.colorbar(image, ax=axes["error"], shrink=0.9)
        _plot_lines(axes["frame"], axes["frame_error"], x, y_true[-1], y_pred[-1])
        axes["frame"].set(xlabel="x", ylabel="u", title=f"last frame (t = {t[-1]:.3g})")
        axes["frame_error"].set(xlabel="x", ylabel="prediction - truth", title="last-frame error")

    else:  # "xy"
        x = _coord(coords, "x", y_true.shape[0])
        y = _coord(coords, "y", y_true.shape[1])
        extent = _extent(x, y)
        fig, axes = plt.subplots(1, 3, figsize=(11.0, 3.6), constrained_layout=True)
        scale = _field_scale(y_true, y_pred)
        for ax, label, field in ((axes[0], "truth", y_true), (axes[1], "prediction", y_pred)):
            image = ax.imshow(field.T, origin="lower", extent=extent, **scale)
            ax.set(xlabel="x", ylabel="y", title=label)
            fig.colorbar(image, ax=ax, shrink=0.85)
        image = axes[2].imshow(np.abs(err).T, origin="lower", extent=extent, cmap="magma", vmin=0.0, vmax=_robust_limit(err))
        axes[2].set(xlabel="x", ylabel="y", title="|prediction - truth|")
        fig.colorbar(image, ax=axes[2], shrink=0.85)

    fig.suptitle(title)
    return _save_atomic(fig, path)
