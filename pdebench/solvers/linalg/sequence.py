r"""Sequences of related sparse systems (SKR-style data generation): sorting and solving a whole data set.

A data set of a parametric PDE is a sequence of linear systems :math:`A_i x_i = b_i`, ``i < N``,
whose matrices differ only through a coefficient field. *Sorted Krylov recycling* (SKR) orders the
systems so that neighbours are similar (:func:`sort_systems`) and solves them in that order with a
Krylov method that carries information from one solve to the next (:class:`~pdebench.solvers.linalg.cg.DeflatedCG`,
:class:`~pdebench.solvers.linalg.gmres.RecycledGMRES`). :func:`solve_sequence` solves a whole data set
with ``"direct"`` (``splu``), ``"amg-pcg"``, ``"pcg"``, ``"gmres"`` (independent solves, zero start)
or ``"skr-cg"`` / ``"skr-gmres"`` (in a given order, warm-started and recycled), returning solutions in
the original order with per-system iterations, residuals and wall times, so that the same Krylov
method and preconditioner can be compared with and without sorting + recycling, and against the
fastest independent solve.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from pdebench.solvers.linalg.cg import DeflatedCG, deflated_cg
from pdebench.solvers.linalg.gmres import RecycledGMRES
from pdebench.solvers.linalg.preconditioners import (PRECONDITIONERS, SYMMETRIC_PRECONDITIONERS, Preconditioner,
                                                     make_preconditioner)
from pdebench.solvers.linalg.result import Matrix, check_system

logger = logging.getLogger(__name__)

METHODS = ("direct", "amg-pcg", "pcg", "gmres", "skr-cg", "skr-gmres")

SystemSource = Sequence[Matrix] | Callable[[int], Matrix]


def sort_systems(
    features: np.ndarray, method: str = "greedy", n_components: int | None = 64, seed: int = 0
) -> np.ndarray:
    """Order systems so that consecutive ones have similar parameters (the SKR sorting step).

    Parameters
    ----------
    features
        Shape ``(N, ...)``: one parameter vector per system (e.g. the coefficient field), flattened
        to ``(N, d)``.
    method
        ``"greedy"``: nearest-neighbour tour in Euclidean distance, starting from the system
        farthest from the mean (an end of the cloud) and always moving to the nearest unvisited
        one, O(N^2 d'); identical systems therefore end up adjacent. ``"pca"``: sort by the
        coordinate along the first principal direction.
    n_components
        Where ``d`` exceeds it, features are first mapped to this many dimensions by a seeded
        Gaussian random projection (distances kept to within a few tens of percent,
        Johnson-Lindenstrauss; identical rows stay identical). ``None``: always use all ``d``.
    seed
        Seed of that projection.

    Returns
    -------
    order
        Shape ``(N,)`` int64, a permutation of ``range(N)``: solve system ``order[0]`` first.
    """
    X = np.asarray(features, dtype=np.float64)
    if X.ndim == 0 or X.shape[0] == 0:
        raise ValueError(f"features must have shape (N, ...) with N >= 1, got {X.shape}")
    if method not in ("greedy", "pca"):
        raise ValueError(f"unknown sorting method {method!r}; expected 'greedy' or 'pca'")
    X = X.reshape(X.shape[0], -1)
    if not np.all(np.isfinite(X)):
        raise ValueError("features contain non-finite values")
    N, d = X.shape
    if N == 1:
        return np.zeros(1, np.int64)
    if n_components is not None and d > n_components:
        rng = np.random.default_rng(seed)
        X = X @ (rng.standard_normal((d, n_components)) / np.sqrt(n_components))
    X = X - X.mean(axis=0)
    if method == "pca":
        _, _, vt = np.linalg.svd(X, full_matrices=False)
        return np.argsort(X @ vt[0], kind="stable").astype(np.int64)
    order = np.empty(N, np.int64)
    remaining = np.ones(N, bool)
    current = int(np.argmax(np.einsum("ij,ij->i", X, X)))
    for step in range(N):
        order[step] = current
        remaining[current] = False
        if step == N - 1:
            break
        cand = np.flatnonzero(remaining)
        diff = X[cand] - X[current]
        current = int(cand[np.argmin(np.einsum("ij,ij->i", diff, diff))])
    return order



@dataclass
class SequenceResult:
    """Solutions of a sequence of systems and what each solve cost, in the ORIGINAL order.

    Attributes
    ----------
    method
        The method used.
    solutions
        Shape ``(N, n)``; row ``i`` solves system ``i``.
    iterations
        Shape ``(N,)``: CG iterations / Arnoldi steps (0 for ``"direct"``).
    residuals
        Shape ``(N,)``: true relative residuals :math:`\\|b_i - A_i x_i\\| / \\|b_i\\|`.
    times
        Shape ``(N,)``: wall seconds per system, preconditioner setup (or factorisation) plus
        solve; excludes building the matrix.
    setup_times
        Shape ``(N,)``: the setup/factorisation part of ``times``.
    build_times
        Shape ``(N,)``: seconds spent obtaining each matrix (calling ``systems(i)``).
    converged
        Shape ``(N,)`` bool.
    order
        Shape ``(N,)``: the order in which the systems were solved.
    sort_time
        Seconds spent in :func:`sort_systems` (0 when ``order`` was given).
    """

    method: str
    solutions: np.ndarray
    iterations: np.ndarray
    residuals: np.ndarray
    times: np.ndarray
    setup_times: np.ndarray
    build_times: np.ndarray
    converged: np.ndarray
    order: np.ndarray
    sort_time: float = 0.0

    @property
    def total_iterations(self) -> int:
        return int(self.iterations.sum())

    @property
    def total_time(self) -> float:
        """Seconds of setup plus solve over all systems."""
        return float(self.times.sum())


class ConvergenceError(RuntimeError):
    """Some systems of a sequence did not reach the tolerance.

    Attributes
    ----------
    failed
        Indices (original order) of the systems that failed.
    result
        The full :class:`SequenceResult`, for inspection.
    """

    def __init__(self, failed: Sequence[int], result: SequenceResult, tol: float) -> None:
        self.failed, self.result = [int(i) for i in failed], result
        shown = ", ".join(f"{i} (residual {result.residuals[i]:.2e})" for i in self.failed[:10])
        more = f" and {len(self.failed) - 10} more" if len(self.failed) > 10 else ""
        super().__init__(f"{result.method}: systems {shown}{more} did not reach tol={tol:g}")


def _resolve_order(order: Sequence[int] | np.ndarray | None, features: np.ndarray | None, N: int) -> np.ndarray:
    if order is None:
        if features is None:
            return np.arange(N, dtype=np.int64)
        if np.shape(features)[0] != N:
            raise ValueError(f"features has {np.shape(features)[0]} rows but there are {N} systems")
        return sort_systems(features)
    order = np.asarray(order)
    is_permutation = (
        order.shape == (N,) and np.issubdtype(order.dtype, np.integer) and np.array_equal(np.sort(order), np.arange(N))
    )
    if not is_permutation:
        raise ValueError(f"order must be a permutation of range({N}), got {order!r}")
    return order.astype(np.int64)


def solve_sequence(
    systems: SystemSource,
    rhs: np.ndarray,
    method: str = "skr-cg",
    *,
    tol: float = 1e-8,
    order: Sequence[int] | np.ndarray | None = None,
    features: np.ndarray | None = None,
    preconditioner: str | None = None,
    reuse_preconditioner: bool = False,
    n_recycle: int | None = None,
    n_store: int | None = None,
    restart: int = 40,
    maxiter: int | None = None,
    warm_start: bool = True,
    n_systems: int | None = None,
    check: bool = True,
) -> SequenceResult:
    """Solve ``A_i x_i = b_i`` for every system of a data set.

    Parameters
    ----------
    systems
        ``N`` matrices of shape ``(n, n)`` (scipy sparse or dense), or a callable ``i -> A_i``
        (built when its turn comes, so only one matrix is alive at a time).
    rhs
        ``(N, n)`` right-hand sides, or ``(n,)`` shared by all systems.
    method
        ``"direct"``: ``splu`` per system. ``"amg-pcg"``: fresh smoothed-aggregation AMG + PCG per
        system from zero. ``"pcg"`` / ``"gmres"``: independent solves from zero with
        ``preconditioner``. ``"skr-cg"`` / ``"skr-gmres"``: the systems in ``order``, each started
        from the previous solution (``warm_start``) with the deflation/recycle space carried over
        (:class:`DeflatedCG` / :class:`RecycledGMRES`). ``"pcg"``/``"gmres"`` use the very same
        code with nothing recycled, so they are the fair "without" baselines.
    tol
        Relative residual tolerance :math:`\\|b - A x\\| \\le` ``tol`` :math:`\\|b\\|`.
    order
        Solve order (a permutation of ``range(N)``); default: ``sort_systems(features)`` when
        ``features`` is given, else ``range(N)``. Results are returned in the original order.
    features
        ``(N, ...)`` parameters per system, used for sorting when ``order`` is ``None``.
    preconditioner
        One of :data:`PRECONDITIONERS` (CG methods: ``"amg"``, ``"jacobi"``, ``"none"``). Default
        ``"amg"`` for the CG methods, ``"none"`` for the GMRES ones.
    reuse_preconditioner
        Build the preconditioner once, for the first system solved, and reuse it (cheap setup;
        recycling can make up for the weaker preconditioner).
    n_recycle
        Recycled vectors: default 20 for ``"skr-cg"``, 10 for ``"skr-gmres"``.
    n_store
        Residuals stored per CG solve for the deflation update (:class:`DeflatedCG`).
    restart
        GMRES subspace dimension per cycle.
    maxiter
        Iteration cap per system (default ``2 n + 100``).
    warm_start
        For the SKR methods, start from the previous system's solution.
    n_systems
        ``N`` when ``systems`` is a callable and ``rhs`` is shared.
    check
        Raise :class:`ConvergenceError` (carrying the result) if any system missed ``tol``.

    Returns
    -------
    SequenceResult
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
    if not (isinstance(tol, (int, float, np.floating)) and np.isfinite(tol) and tol > 0):
        raise ValueError(f"tol must be a positive number, got {tol!r}")
    cg_like = method in ("amg-pcg", "pcg", "skr-cg")
    if method == "amg-pcg":
        if preconditioner not in (None, "amg"):
            raise ValueError(f"method 'amg-pcg' uses preconditioner 'amg', got {preconditioner!r}")
        preconditioner = "amg"
    if preconditioner is None:
        preconditioner = "amg" if cg_like else "none"
    if preconditioner not in PRECONDITIONERS:
        raise ValueError(f"unknown preconditioner {preconditioner!r}; expected one of {PRECONDITIONERS}")
    if cg_like and preconditioner not in SYMMETRIC_PRECONDITIONERS:
        raise ValueError(
            f"CG needs a symmetric preconditioner, got {preconditioner!r}; use one of {SYMMETRIC_PRECONDITIONERS}"
        )

    rhs = np.asarray(rhs)
    if callable(systems):
        if rhs.ndim == 2:
            N = rhs.shape[0]
        elif n_systems is not None:
            N = int(n_systems)
        else:
            raise ValueError("with a callable `systems` and a shared rhs of shape (n,), pass n_systems")
        get = systems
    else:
        N = len(systems)
        get = systems.__getitem__
    if rhs.ndim not in (1, 2) or (rhs.ndim == 2 and rhs.shape[0] != N):
        raise ValueError(f"rhs must have shape (N, n) = ({N}, n) or (n,), got {rhs.shape}")
    if N == 0:
        raise ValueError("no systems to solve")
    sorting = order is None and features is not None
    t0 = time.perf_counter()
    order = _resolve_order(order, features, N)
    sort_time = time.perf_counter() - t0 if sorting else 0.0

    if method == "skr-cg":
        recycler: DeflatedCG | RecycledGMRES | None = DeflatedCG(20 if n_recycle is None else n_recycle, n_store)
    elif method == "skr-gmres":
        recycler = RecycledGMRES(10 if n_recycle is None else n_recycle, restart)
    elif method == "gmres":
        recycler = RecycledGMRES(0, restart)
    else:
        recycler = None

    n = rhs.shape[-1]
    solutions: np.ndarray | None = None
    iterations = np.zeros(N, np.int64)
    residuals = np.zeros(N)
    times, setup_times, build_times = np.zeros(N), np.zeros(N), np.zeros(N)
    converged = np.zeros(N, bool)
    shared_m: Preconditioner | None = None
    previous: np.ndarray | None = None
    for step, i in enumerate(order):
        t0 = time.perf_counter()
        A = get(int(i))
        build_times[i] = time.perf_counter() - t0
        b = rhs[i] if rhs.ndim == 2 else rhs
        try:
            n, b = check_system(A, b, tol)
        except ValueError as err:
            raise ValueError(f"system {i}: {err}") from None
        if solutions is None:
            solutions = np.zeros((N, n), np.result_type(A.dtype, rhs.dtype, np.float64))
        t0 = time.perf_counter()
        if method == "direct":
            lu = spla.splu(sp.csc_array(A))
            setup_times[i] = time.perf_counter() - t0
            x = lu.solve(b.astype(solutions.dtype))
            its = 0
        else:
            if reuse_preconditioner and shared_m is not None:
                M = shared_m
            else:
                M = make_preconditioner(A, preconditioner)
                setup_times[i] = M.setup_time
                if reuse_preconditioner:
                    shared_m = M
            if method in ("amg-pcg", "pcg"):
                res = deflated_cg(A, b, None, M, tol=tol, maxiter=maxiter)
            else:
                assert recycler is not None
                x0 = previous if (warm_start and method.startswith("skr")) else None
                res = recycler.solve(A, b, M, x0=x0, tol=tol, maxiter=maxiter)
            x, its = res.x, res.iterations
        times[i] = time.perf_counter() - t0
        if np.iscomplexobj(x) and not np.iscomplexobj(solutions):
            solutions = solutions.astype(np.result_type(x.dtype, solutions.dtype))
        solutions[i] = x
        previous = x
        bnorm = float(np.linalg.norm(b))
        residuals[i] = float(np.linalg.norm(b - A @ x)) / bnorm if bnorm > 0 else 0.0
        iterations[i] = its
        converged[i] = residuals[i] <= tol if method != "direct" else bool(np.all(np.isfinite(x)))
        logger.debug(
            "%s: system %d (step %d) %d its, residual %.2e, %.4f s", method, i, step, its, residuals[i], times[i]
        )
    assert solutions is not None
    result = SequenceResult(
        method, solutions, iterations, residuals, times, setup_times, build_times, converged, order, sort_time
    )
    logger.info(
        "%s: %d systems, %d iterations, %.3f s (setup %.3f s)",
        method, N, result.total_iterations, result.total_time, float(setup_times.sum()),
    )
    if check and not np.all(converged):
        raise ConvergenceError(np.flatnonzero(~converged), result, tol)
    return result

