r"""The registered finite-volume solver of steady grid problems (``"fv-elliptic"``): ``darcy3d``.

Each sample's coefficient ``a`` (nodal, boundary nodes included) gives the 7-point (3-D) or 5-point
(2-D) finite-volume matrix of :math:`-\nabla\cdot(a\nabla u)` with harmonic-mean face coefficients and
:math:`u = 0` on the boundary (:func:`~pdebench.problems.elliptic_matrices.poisson_matrix`, which
divides by :math:`h^2`, so the right-hand side is :math:`b_i = f(x_i)` at the interior nodes). The
system is solved by :func:`~pdebench.solvers.linalg.spd.solve_spd`: sparse LU, AMG- or IC(0)-
preconditioned CG to :math:`\|b - A x\| \le \mathrm{tol}\,\|b\|`, or CG with a preconditioner the
caller builds. Two extension points let a learned component accelerate the solves without this
layer importing one:

* ``preconditioner``: a callable ``A -> Preconditioner`` used by CG instead of a built-in kind;
* ``initial_guess``: a callable ``(B, *grid) coefficients -> (B, *grid) guesses``; CG starts from the
  guess's interior values, to the same tolerance (so the same accuracy), in fewer iterations when the
  guess is good.

The method, the preconditioner's kind, whether the solves were warm-started and the iterations of
every sample are recorded in the provenance.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
import torch

import pdebench
from pdebench.core.trajectories import Trajectories
from pdebench.problems.elliptic_matrices import poisson_matrix
from pdebench.solvers.base import SOLVERS, BlowUpError, solve_ids
from pdebench.solvers.linalg import Preconditioner, SolveResult, chosen_method, solve_spd

log = logging.getLogger(__name__)

Method = Literal["auto", "direct", "amg-pcg", "ic0-pcg", "pcg"]
METHODS = ("auto", "direct", "amg-pcg", "ic0-pcg", "pcg")
#: Iteration cap of every CG solve.
MAXITER = 1000


def elliptic_system(a: np.ndarray, f: float | np.ndarray) -> tuple[sp.csr_array, np.ndarray]:
    r"""The finite-volume system ``A u = b`` of :math:`-\nabla\cdot(a\nabla u) = f`, :math:`u = 0` on the boundary.

    Parameters
    ----------
    a
        Nodal coefficient, shape ``(n + 2,) * d`` (``d`` in ``{2, 3}``, boundary nodes included),
        positive; the grid is ``x_j = j h``, :math:`h = 1/(n + 1)`.
    f
        The source: a constant, or nodal values of ``a``'s shape (only the interior ones are used).

    Returns
    -------
    A, b
        ``A = poisson_matrix(a)`` ``(n^d, n^d)`` (scaled by :math:`1/h^2`) and ``b`` ``(n^d,)``, ``f``
        at the interior nodes in C order.
    """
    A = poisson_matrix(a)
    inner = (slice(1, -1),) * np.ndim(a)
    f = np.asarray(f, dtype=np.float64)
    if f.ndim and f.shape != np.shape(a):
        raise ValueError(f"source has shape {f.shape}; expected a constant or the coefficient's shape {np.shape(a)}")
    b = np.broadcast_to(f, np.shape(a))[inner].ravel().copy()
    return A, b


def with_boundary(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Interior values ``x`` ``(prod(s - 2 for s in shape),)`` (C order) on the ``shape`` grid, zero on its boundary."""
    out = np.zeros(shape)
    out[(slice(1, -1),) * len(shape)] = x.reshape(tuple(s - 2 for s in shape))
    return out


@SOLVERS.register("fv-elliptic", record="steady", description="Finite volumes (7-point 3-D / 5-point 2-D, harmonic-mean "
                  "faces) with direct, AMG-PCG or IC(0)-PCG solves; pluggable preconditioner and warm start")
class FVEllipticSolver:
    r"""Finite-volume solves of :math:`-\nabla\cdot(a\nabla u) = f`, :math:`u = 0` on the boundary, per sample.

    Parameters
    ----------
    method
        ``"auto"`` (``"pcg"`` with ``preconditioner`` if one is given; else ``"direct"`` up to
        ``direct_limit`` unknowns and ``"amg-pcg"`` above, or ``"amg-pcg"`` whenever there is an
        ``initial_guess``), ``"direct"`` (sparse LU), ``"amg-pcg"`` / ``"ic0-pcg"`` (CG with a fresh
        smoothed-aggregation AMG / zero-fill incomplete Cholesky preconditioner per system) or
        ``"pcg"`` (CG with ``preconditioner``).
    tol
        Relative residual tolerance of the CG methods, :math:`\|b - A x\| \le \mathrm{tol}\,\|b\|`, in (0, 1).
    direct_limit
        Largest system ``"auto"`` solves directly (the default 5000 unknowns is about 17³: in 3-D the
        LU's fill makes the direct solve slower than AMG-PCG from there on).
    preconditioner
        ``A -> Preconditioner`` (:class:`~pdebench.solvers.linalg.Preconditioner`, ``A`` the
        ``(n, n)`` scipy matrix), used by ``"pcg"``; its ``kind`` is recorded.
    initial_guess
        ``coefficients -> guesses``: the ``(B, *grid)`` float64 coefficient tensor of a batch to
        ``(B, *grid)`` solution guesses (boundary values ignored); the CG methods start from them.
    """

    def __init__(
        self,
        method: Method = "auto",
        tol: float = 1e-8,
        direct_limit: int = 5_000,
        preconditioner: Callable[[sp.csr_array], Preconditioner] | None = None,
        initial_guess: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
        if not (isinstance(tol, (int, float)) and 0 < tol < 1):
            raise ValueError(f"tol must be in (0, 1), got {tol!r}")
        if isinstance(direct_limit, bool) or not isinstance(direct_limit, int) or direct_limit < 1:
            raise ValueError(f"direct_limit must be an integer >= 1, got {direct_limit!r}")
        for name, value in (("preconditioner", preconditioner), ("initial_guess", initial_guess)):
            if value is not None and not callable(value):
                raise ValueError(f"{name} must be a callable or None, got {value!r}")
        if preconditioner is not None and method not in ("auto", "pcg"):
            raise ValueError(f"a preconditioner callable is used by method 'pcg' (or 'auto'), got method {method!r}")
        if method == "pcg" and preconditioner is None:
            raise ValueError("method 'pcg' needs a preconditioner callable")
        if method == "direct" and initial_guess is not None:
            raise ValueError("method 'direct' takes no initial_guess; choose a CG method")
        self.method, self.tol, self.direct_limit = method, float(tol), direct_limit
        self.preconditioner, self.initial_guess = preconditioner, initial_guess
        self.last_iterations: list[int] = []

    def chosen_method(self, unknowns: int) -> str:
        """The method a system of ``unknowns`` unknowns is solved by (``"auto"`` resolved)."""
        if self.method == "auto" and self.preconditioner is not None:
            return "pcg"
        if self.method == "auto" and self.initial_guess is not None:
            return "amg-pcg"
        return chosen_method(self.method, unknowns, self.direct_limit)

    def solve_field(self, a: np.ndarray, f: float | np.ndarray = 1.0,
                    guess: np.ndarray | None = None) -> tuple[np.ndarray, SolveResult]:
        """Solve one sample: coefficient ``a`` and source ``f`` (:func:`elliptic_system`).

        Parameters
        ----------
        a
            Nodal coefficient ``(n + 2,) * d``, boundary included.
        f
            Constant or nodal source of ``a``'s shape.
        guess
            A solution guess of ``a``'s shape (its interior starts CG); ``None``: zero.

        Returns
        -------
        u, result
            The solution on ``a``'s grid, zero on the boundary, float64; the linear solve's record.
        """
        A, b = elliptic_system(a, f)
        method = self.chosen_method(A.shape[0])
        x0 = None
        if guess is not None and method != "direct":
            x0 = np.asarray(guess, dtype=np.float64)[(slice(1, -1),) * np.ndim(a)].ravel()
        M = self.preconditioner(A) if method == "pcg" else None
        result = solve_spd(A, b, method, tol=self.tol, preconditioner=M, x0=x0, maxiter=MAXITER)
        return with_boundary(result.x, np.shape(a)), result

    def solve(
        self,
        problem,
        inputs: torch.Tensor,
        sample_ids: np.ndarray | Sequence[tuple[int, int]] | None = None,
        *,
        on_blowup: Literal["raise", "drop"] = "raise",
        progress: Callable[[int], None] | None = None,
    ) -> Trajectories:
        """Solve ``-div(a grad u) = problem.forcing`` (``u = 0`` on the boundary) for each input field ``a``.

        Parameters
        ----------
        problem
            A steady grid problem with a constant ``forcing`` (e.g. :class:`~pdebench.problems.elliptic.Darcy3D`).
        inputs
            ``(B, *spatial_shape)`` coefficient fields on the problem's grid (positive).
        sample_ids
            ``(B, 2)`` ``(seed, index)``.
        on_blowup
            A non-finite solution raises :class:`BlowUpError` or is dropped and counted.
        progress
            Called with 1 after each sample.

        Returns
        -------
        Trajectories
            Fields ``nu`` (the inputs) and ``tensor`` (the solutions), each ``(B, 1, *spatial_shape)``
            float64, coordinates ``t = [0]`` and the spatial axes.
        """
        start = time.perf_counter()
        a = torch.as_tensor(inputs, dtype=torch.float64).cpu().numpy()
        shape = tuple(problem.spatial_shape)
        if a.shape[1:] != shape or a.ndim not in (3, 4):
            raise ValueError(f"inputs have shape {a.shape}; expected (B, {', '.join(map(str, shape))})")
        if not np.isfinite(a).all() or (a.size and a.min() <= 0):
            bad = np.nanmin(a) if np.isfinite(a).any() else float("nan")
            raise ValueError(f"permeability must be positive and finite everywhere; minimum {bad}")
        batch = a.shape[0]
        ids = solve_ids(sample_ids, batch, on_blowup)
        guesses = self._guesses(a) if batch else None
        solutions, results = [], []
        for i, sample in enumerate(a):
            u, result = self.solve_field(sample, problem.forcing, None if guesses is None else guesses[i])
            solutions.append(u)
            results.append(result)
            if progress:
                progress(1)
        self.last_iterations = [int(r.iterations) for r in results]
        solved = np.stack(solutions) if batch else np.zeros((0, *shape))
        finite = np.isfinite(solved.reshape(batch, -1)).all(1)
        fields = {problem.input_name: torch.from_numpy(a[:, None]), problem.field_name: torch.from_numpy(solved[:, None])}
        traj = Trajectories(fields=fields, coords=problem.coordinates(), params=problem.params(), sample_ids=ids,
                            provenance=self.provenance(problem, results, time.perf_counter() - start))
        if not finite.all():
            if on_blowup == "raise":
                raise BlowUpError(ids[~finite], 0.0, problem.name)
            traj = traj.select(np.flatnonzero(finite))
            traj.provenance["dropped"] = int((~finite).sum())
        return traj

    def _guesses(self, a: np.ndarray) -> np.ndarray | None:
        """``initial_guess`` of the batch's coefficients ``a`` ``(B, *grid)``, checked: ``(B, *grid)`` float64, finite."""
        if self.initial_guess is None or self.chosen_method(int(np.prod([s - 2 for s in a.shape[1:]]))) == "direct":
            return None
        guess = self.initial_guess(torch.from_numpy(a))
        guess = torch.as_tensor(guess).detach().to("cpu", torch.float64).numpy()
        if guess.shape != a.shape or not np.isfinite(guess).all():
            raise ValueError(f"initial_guess returned {'shape ' + str(guess.shape) if guess.shape != a.shape else 'non-finite values'}; "
                             f"expected finite guesses of the inputs' shape {a.shape}")
        return guess

    def provenance(self, problem, results: list[SolveResult], wall_time: float) -> dict[str, Any]:
        """Attributes that say how the samples were made: the scheme, the method, the preconditioner's
        kind, ``warm_start`` and the iterations of every sample (``iterations_per_sample``)."""
        shape = tuple(problem.spatial_shape)
        unknowns = int(np.prod([s - 2 for s in shape]))
        method = self.chosen_method(unknowns)
        stencil = {2: "5-point", 3: "7-point"}[len(shape)]
        record: dict[str, Any] = {
            "solver": "fv-elliptic",
            "scheme": f"{stencil} finite volumes on the {'x'.join(map(str, shape))} grid (boundary included), "
                      f"harmonic-mean face coefficients; linear solves: {method}",
            "method": method,
            "unknowns": unknowns,
            "resolution": "x".join(map(str, shape)),
            "problem": problem.name,
            "dtype": "float64",
            "warm_start": self.initial_guess is not None and method != "direct",
            "iterations_per_sample": [int(r.iterations) for r in results],
            "pdebench_version": pdebench.__version__,
            "torch_version": str(torch.__version__),
            "wall_time_s": wall_time,
        }
        if method != "direct":
            kinds = sorted({r.extra["preconditioner"] for r in results}) or [method.removesuffix("-pcg")]
            record.update(preconditioner=", ".join(kinds), tol=self.tol, maxiter=MAXITER,
                          mean_iterations=float(np.mean(record["iterations_per_sample"])) if results else 0.0)
            # what the learned parts were (a checkpoint path), where the callables say (``source``)
            for key, part in (("warm_start_from", self.initial_guess if record["warm_start"] else None),
                              ("preconditioner_from", self.preconditioner if method == "pcg" else None)):
                if getattr(part, "source", ""):
                    record[key] = str(part.source)
        return record
