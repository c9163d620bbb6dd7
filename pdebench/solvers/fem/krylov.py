r"""Recycling Krylov solvers for sequences of related sparse systems (SKR-style data generation).

A data set of a parametric PDE is a sequence of linear systems :math:`A_i x_i = b_i`, ``i < N``,
whose matrices differ only through a coefficient field. *Sorted Krylov recycling* (SKR) orders the
systems so that neighbours are similar (:func:`sort_systems`) and solves them in that order with a
Krylov method that carries information from one solve to the next:

* :class:`DeflatedCG` -- preconditioned deflated CG (Def-CG, Saad, Yeung, Erhel & Guyomarc'h 2000)
  for SPD systems. The iterates stay A-orthogonal to a deflation space ``W``; the start is the
  Galerkin (A-norm optimal) combination of the previous solution and ``W``, i.e. the previous
  solution, optimally scaled, plus the coarse correction :math:`W (W^T A W)^{-1} W^T r_0`. After each solve
  ``W`` is replaced by Ritz vectors of the pencil :math:`(A, M)` on ``span[W, z_0, ..., z_{l-1}]``
  (``z_j`` the preconditioned residuals), which approximate the eigenvectors of :math:`M^{-1} A`
  with the smallest eigenvalues. All Rayleigh-Ritz matrices come from quantities CG computes
  anyway, so the update costs no extra matrix or preconditioner application.
* :class:`RecycledGMRES` -- GCRO-DR (Parks, de Sturler, Mackey, Johnson & Maiti 2006) with flexible
  right preconditioning, for indefinite or nonsymmetric systems (Helmholtz). The recycle space
  ``U`` (with :math:`A U = C`, :math:`C^H C = I`) is carried across systems and refreshed each
  cycle from harmonic Ritz vectors.
* :func:`solve_sequence` -- solves a whole data set with ``"direct"`` (``splu``), ``"amg-pcg"``,
  ``"pcg"``, ``"gmres"`` (independent solves, zero start) or ``"skr-cg"`` / ``"skr-gmres"``
  (in a given order, warm-started and recycled), returning solutions in the original order with
  per-system iterations, residuals and wall times, so that the same Krylov method and
  preconditioner can be compared with and without sorting + recycling, and against the fastest
  independent solve.

Everything per iteration is a handful of vectorised numpy products (``k`` the number of recycled
vectors): deflated CG adds two ``n x k`` matrix-vector products to each iteration, GCRO-DR one
``n x k`` projection to each Arnoldi step.

References
----------
Y. Saad, M. Yeung, J. Erhel, F. Guyomarc'h. A deflated version of the conjugate gradient
algorithm. SIAM J. Sci. Comput. 21 (2000).
M. L. Parks, E. de Sturler, G. Mackey, D. D. Johnson, S. Maiti. Recycling Krylov subspaces for
sequences of linear systems. SIAM J. Sci. Comput. 28 (2006).
L. M. Carvalho, S. Gratton, R. Lago, X. Vasseur. A flexible generalized conjugate residual method
with inner orthogonalization and deflated restarting. SIAM J. Matrix Anal. Appl. 32 (2011).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
import scipy.sparse.linalg as spla

logger = logging.getLogger(__name__)

METHODS = ("direct", "amg-pcg", "pcg", "gmres", "skr-cg", "skr-gmres")
PRECONDITIONERS = ("amg", "jacobi", "ilu", "none")
SYMMETRIC_PRECONDITIONERS = ("amg", "jacobi", "none")

Matrix = Any  # a scipy sparse matrix/array or a dense ndarray, shape (n, n)
SystemSource = Sequence[Matrix] | Callable[[int], Matrix]


# ----------------------------------------------------------------------------------------------
# Preconditioners
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Preconditioner:
    """An SPD (for CG) or general (for GMRES) preconditioner :math:`M`.

    Attributes
    ----------
    kind
        One of :data:`PRECONDITIONERS`.
    apply
        ``r -> M^{-1} r``, shape ``(n,) -> (n,)``; never returns its argument itself.
    gram
        ``W -> W^H M W``, ``(n, k) -> (k, k)``, where :math:`M` itself is known (``"none"``,
        ``"jacobi"``); ``None`` where only :math:`M^{-1}` is available (``"amg"``, ``"ilu"``).
    setup_time
        Wall seconds spent building it.
    """

    kind: str
    apply: Callable[[np.ndarray], np.ndarray]
    gram: Callable[[np.ndarray], np.ndarray] | None = None
    setup_time: float = 0.0


def _complex_safe(apply: Callable[[np.ndarray], np.ndarray], real: bool) -> Callable[[np.ndarray], np.ndarray]:
    """Apply a real linear operator to complex vectors as ``f(Re r) + i f(Im r)``."""
    if not real:
        return apply

    def wrapped(r: np.ndarray) -> np.ndarray:
        if np.iscomplexobj(r):
            return apply(np.ascontiguousarray(r.real)) + 1j * apply(np.ascontiguousarray(r.imag))
        return apply(r)

    return wrapped


def make_preconditioner(A: Matrix, kind: str = "amg", **options: Any) -> Preconditioner:
    """Build a preconditioner for ``A`` (shape ``(n, n)``).

    Parameters
    ----------
    A
        The system matrix (sparse or dense).
    kind
        ``"amg"``: one V-cycle of ``pyamg.smoothed_aggregation_solver(A, **options)``
        (symmetric smoothing, so SPD for SPD ``A``); ``"jacobi"``: :math:`M = \\mathrm{diag}(A)`;
        ``"ilu"``: ``scipy.sparse.linalg.spilu`` (``drop_tol=1e-4, fill_factor=10`` unless given;
        not symmetric, GMRES only); ``"none"``: :math:`M = I`.
    """
    if kind not in PRECONDITIONERS:
        raise ValueError(f"unknown preconditioner {kind!r}; expected one of {PRECONDITIONERS}")
    start = time.perf_counter()
    n = A.shape[0]
    real = not np.iscomplexobj(np.empty(0, dtype=A.dtype))
    gram: Callable[[np.ndarray], np.ndarray] | None = None
    if kind == "none":

        def apply(r: np.ndarray) -> np.ndarray:
            return r.copy()

        def gram(W: np.ndarray) -> np.ndarray:
            return W.conj().T @ W

    elif kind == "jacobi":
        d = np.asarray(A.diagonal()).ravel()
        if np.any(d == 0) or not np.all(np.isfinite(d)):
            bad = int(np.flatnonzero((d == 0) | ~np.isfinite(d))[0])
            raise ValueError(f"Jacobi preconditioner needs a finite non-zero diagonal; A[{bad}, {bad}] = {d[bad]}")

        def apply(r: np.ndarray) -> np.ndarray:
            return r / d

        def gram(W: np.ndarray) -> np.ndarray:
            return W.conj().T @ (d[:, None] * W)

    elif kind == "amg":
        import pyamg

        ml = pyamg.smoothed_aggregation_solver(sp.csr_array(A), **options)
        op = ml.aspreconditioner(cycle="V")
        apply = _complex_safe(lambda r: np.asarray(op.matvec(r)).reshape(n), real)
    else:  # ilu
        opts = {"drop_tol": 1e-4, "fill_factor": 10.0} | options
        ilu = spla.spilu(sp.csc_array(A), **opts)
        apply = _complex_safe(ilu.solve, real)
    return Preconditioner(kind, apply, gram, time.perf_counter() - start)


# ----------------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------------
@dataclass
class KrylovResult:
    """One solve.

    Attributes
    ----------
    x
        Solution, shape ``(n,)``.
    iterations
        CG iterations, or Arnoldi steps for GMRES (one matrix and one preconditioner application
        each); excludes the ``k`` matrix products that refresh the recycle space for a new matrix.
    residual
        True relative residual :math:`\\|b - A x\\|_2 / \\|b\\|_2`.
    converged
        ``residual <= tol``.
    ritz_values
        Ritz values belonging to the recycle space kept for the next solve, shape ``(k,)``
        (CG: of the pencil :math:`(A, M)`; GMRES: harmonic Ritz values of :math:`A`); may be empty.
    """

    x: np.ndarray
    iterations: int
    residual: float
    converged: bool
    ritz_values: np.ndarray = field(default_factory=lambda: np.empty(0))


def _check_system(A: Matrix, b: np.ndarray, tol: float) -> tuple[int, np.ndarray]:
    shape = getattr(A, "shape", None)
    if shape is None or len(shape) != 2 or shape[0] != shape[1]:
        raise ValueError(f"matrix must be square, got shape {shape}")
    b = np.asarray(b)
    if b.ndim != 1 or b.shape[0] != shape[0]:
        raise ValueError(f"right-hand side has shape {b.shape} but the matrix is {tuple(shape)}")
    if not np.all(np.isfinite(b)):
        raise ValueError("right-hand side has non-finite entries")
    if not (np.isfinite(tol) and tol > 0):
        raise ValueError(f"tol must be a positive number, got {tol}")
    return int(shape[0]), b


def _warm_start(
    A: Matrix,
    b: np.ndarray,
    x0: np.ndarray | None,
    basis: np.ndarray,
    image: np.ndarray,
    test: np.ndarray,
    dtype: np.dtype,
    energy: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Best start in ``span[basis, x0]`` and its residual.

    ``basis`` ``(n, k)`` with ``A basis = image`` and ``test^H image = I`` (CG: ``test = basis``
    A-orthonormal; GMRES: ``test = image = C`` orthonormal), so the projected start is
    ``basis test^H b``. ``x0`` is then made orthogonal to ``basis`` in the same sense and added
    with the step that minimises the A-norm of the error (``energy=True``, SPD) or the residual
    norm. Never worse than the zero start.
    """
    c = test.conj().T @ b
    x = (basis @ c).astype(dtype, copy=False)
    r = b.astype(dtype) - image @ c
    if x0 is None:
        return x, r
    x0 = np.asarray(x0, dtype=dtype).reshape(b.shape)
    Ax0 = np.asarray(A @ x0)
    s = test.conj().T @ Ax0
    q, Aq = x0 - basis @ s, Ax0 - image @ s
    denom = float(np.vdot(q, Aq).real) if energy else float(np.vdot(Aq, Aq).real)
    scale = float(np.vdot(x0, Ax0).real) if energy else float(np.vdot(Ax0, Ax0).real)
    # x0 (numerically) inside span(basis) leaves only rounding noise in q: skip it.
    if np.isfinite(denom) and denom > 1e-16 * abs(scale):
        gamma = (np.vdot(q, r) if energy else np.vdot(Aq, r)) / denom
        x += gamma * q
        r -= gamma * Aq
    return x, r


def _default_maxiter(n: int) -> int:
    return 2 * n + 100


# ----------------------------------------------------------------------------------------------
# Deflated CG
# ----------------------------------------------------------------------------------------------
class DeflatedCG:
    r"""Preconditioned deflated CG whose deflation space is recycled from solve to solve.

    One solve of :math:`A x = b` (:math:`A` and :math:`M` Hermitian positive definite), with
    ``W`` (``(n, k)``) first made A-orthonormal for the current :math:`A`:

    .. math::
        x_0 &= W W^H b + \gamma q, \quad q = x_{\mathrm{guess}} - W (AW)^H x_{\mathrm{guess}}, \quad
        \gamma = \frac{q^H (b - A W W^H b)}{q^H A q}, \quad r_0 = b - A x_0 \;(W^H r_0 = 0), \\
        z_j &= M^{-1} r_j, \quad \mu_j = (AW)^H z_j, \quad
        p_j = z_j + \beta_{j-1} p_{j-1} - W \mu_j, \\
        \alpha_j &= \frac{r_j^H z_j}{p_j^H A p_j}, \quad x_{j+1} = x_j + \alpha_j p_j, \quad
        r_{j+1} = r_j - \alpha_j A p_j, \quad \beta_j = \frac{r_{j+1}^H z_{j+1}}{r_j^H z_j},

    so every :math:`p_j` is A-orthogonal to ``W`` and :math:`W^H r_j = 0`: CG runs on the
    deflated operator, whose spectrum lacks the eigenvalues ``W`` captures.

    Recycling (``update=True``): the first ``n_store`` vectors :math:`v_j = z_j/\sqrt{r_j^H z_j}`
    are kept. In the basis :math:`[W, v_0, ..., v_{l-1}]` the Gram matrix of the :math:`M` inner
    product is :math:`\mathrm{blockdiag}(W^H M W, I)` (because :math:`W^H M z_j = W^H r_j = 0` and
    :math:`z_i^H r_j = 0` for :math:`i \ne j`), and the matrix of :math:`A` is

    .. math::
        \begin{pmatrix} I & \tilde\mu \\ \tilde\mu^H & T + \tilde\mu^H \tilde\mu \end{pmatrix},
        \qquad \tilde\mu_j = \mu_j / \sqrt{r_j^H z_j},

    with :math:`T` the Lanczos tridiagonal of the CG coefficients
    (:math:`T_{jj} = 1/\alpha_j + \beta_{j-1}/\alpha_{j-1}`,
    :math:`T_{j,j+1} = -\sqrt{\beta_j}/\alpha_j`). The ``n_recycle`` Ritz vectors of smallest Ritz
    value of this pencil become the next ``W`` (M-orthonormal). :math:`W^H M W` is computed where
    :math:`M` is known (``"none"``, ``"jacobi"``); for an AMG or other implicit :math:`M` the
    identity left by the previous update is used, exact while :math:`M` is unchanged (a reused
    hierarchy) and an approximation of the Ritz *selection* otherwise -- the solve itself is
    exact for any ``W``.

    Parameters
    ----------
    n_recycle
        Number ``k`` of deflation vectors kept (0: plain PCG).
    n_store
        Number of preconditioned residuals stored per solve for the update
        (default ``max(2 k, 10)``).
    W
        Initial deflation space, shape ``(n, k0)`` (e.g. exact eigenvectors); ``None``: empty.
    update
        Replace ``W`` by Ritz vectors after each solve.

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> A = sp.diags_array([-1.0, 2.0, -1.0], offsets=[-1, 0, 1], shape=(200, 200), format="csr")
    >>> rng = np.random.default_rng(0)
    >>> solver = DeflatedCG(n_recycle=10)
    >>> first = solver.solve(A, rng.standard_normal(200), tol=1e-10)
    >>> second = solver.solve(A, rng.standard_normal(200), tol=1e-10)
    >>> bool(second.iterations < first.iterations)
    True
    """

    def __init__(
        self,
        n_recycle: int = 20,
        n_store: int | None = None,
        W: np.ndarray | None = None,
        update: bool = True,
    ) -> None:
        if n_recycle < 0:
            raise ValueError(f"n_recycle must be >= 0, got {n_recycle}")
        self.n_recycle = int(n_recycle)
        self.n_store = int(n_store) if n_store is not None else max(2 * self.n_recycle, 10)
        if self.n_store < 0:
            raise ValueError(f"n_store must be >= 0, got {n_store}")
        self.update = update
        self.W: np.ndarray | None = None if W is None else np.array(W, ndmin=2, copy=True)
        self._gram: np.ndarray | None = None  # estimate of W^H M W for W as stored
        self.ritz_values = np.empty(0)

    def reset(self) -> None:
        """Forget the deflation space."""
        self.W, self._gram, self.ritz_values = None, None, np.empty(0)

    def _prepare(
        self, A: Matrix, M: Preconditioner, n: int, dtype: np.dtype
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """``W`` made A-orthonormal for this ``A`` (rank-revealing), ``A W`` and ``W^H M W``."""
        W = self.W
        if W is None or W.shape[1] == 0:
            return np.zeros((n, 0), dtype), np.zeros((n, 0), dtype), np.zeros((0, 0))
        if W.shape[0] != n:
            logger.warning("deflation space has %d rows but the system has %d; dropping it", W.shape[0], n)
            self.reset()
            return np.zeros((n, 0), dtype), np.zeros((n, 0), dtype), np.zeros((0, 0))
        W = W.astype(np.result_type(W.dtype, dtype), copy=False)
        AW = np.asarray(A @ W)
        S = W.conj().T @ AW
        s, E = np.linalg.eigh((S + S.conj().T) / 2)
        keep = s > max(s.max(initial=0.0), 0.0) * 1e-10
        if not np.any(keep):
            self.reset()
            return np.zeros((n, 0), dtype), np.zeros((n, 0), dtype), np.zeros((0, 0))
        T = E[:, keep] / np.sqrt(s[keep])
        W, AW = W @ T, AW @ T
        if M.gram is not None:
            gram = M.gram(W)
        elif self._gram is not None and self._gram.shape[0] == T.shape[0]:
            gram = T.conj().T @ self._gram @ T
        else:
            gram = None
        return W, AW, gram

    def solve(
        self,
        A: Matrix,
        b: np.ndarray,
        preconditioner: Preconditioner | None = None,
        x0: np.ndarray | None = None,
        tol: float = 1e-8,
        maxiter: int | None = None,
    ) -> KrylovResult:
        """Solve ``A x = b`` (``A`` ``(n, n)`` HPD, ``b`` ``(n,)``) to ``||b - A x|| <= tol ||b||``.

        ``x0`` is a starting guess (e.g. the previous system's solution); the start is the point of
        ``span[W, x0]`` with the smallest A-norm error (Galerkin), so never worse than zero.
        ``maxiter`` defaults to ``2 n + 100``.
        """
        n, b = _check_system(A, b, tol)
        M = preconditioner or make_preconditioner(A, "none")
        maxiter = _default_maxiter(n) if maxiter is None else int(maxiter)
        dtype = np.result_type(A.dtype, b.dtype, np.float64)
        bnorm = float(np.linalg.norm(b))
        if bnorm == 0.0:
            return KrylovResult(np.zeros(n, dtype), 0, 0.0, True, self.ritz_values)
        target = tol * bnorm

        W, AW, gram = self._prepare(A, M, n, dtype)
        AWh = np.ascontiguousarray(AW.conj().T)  # (k, n)
        k = W.shape[1]
        x, r = _warm_start(A, b, x0, W, AW, W, dtype, energy=True)

        store = self.update and self.n_recycle > 0
        n_store = self.n_store if store else 0
        V = np.empty((n_store, n), dtype)  # rows v_j = z_j / sqrt(rho_j)
        Mu = np.empty((n_store, k), dtype)  # rows mu_j / sqrt(rho_j)
        alphas: list[float] = []
        betas: list[float] = []
        stored = 0

        z = M.apply(r)
        rho = float(np.vdot(r, z).real)
        mu = AWh @ z
        p = z - W @ mu
        if n_store and rho > 0:
            V[0], Mu[0], stored = z / np.sqrt(rho), mu / np.sqrt(rho), 1
        rnorm = float(np.linalg.norm(r))
        its, lanczos_intact, converged = 0, True, False
        while True:
            if rnorm <= target:
                r_true = b - A @ x
                rnorm = float(np.linalg.norm(r_true))
                if rnorm <= target:
                    converged = True
                    break
                # The recursive residual drifted: restart from the true one.
                r, lanczos_intact = r_true, False
                z = M.apply(r)
                rho = float(np.vdot(r, z).real)
                mu = AWh @ z
                p = z - W @ mu
            if its >= maxiter:
                break
            Ap = A @ p
            pAp = float(np.vdot(p, Ap).real)
            if not (pAp > 0 and rho > 0):
                logger.warning(
                    "deflated CG breakdown (p^H A p = %.3g, r^H z = %.3g): A or M not positive definite", pAp, rho
                )
                break
            alpha = rho / pAp
            x += alpha * p
            r -= alpha * Ap
            its += 1
            if lanczos_intact:
                alphas.append(alpha)
            rnorm = float(np.linalg.norm(r))
            z = M.apply(r)
            rho_new = float(np.vdot(r, z).real)
            beta = rho_new / rho
            mu = AWh @ z
            p = z + beta * p - W @ mu
            if lanczos_intact and stored < n_store and rho_new > 0:
                betas.append(beta)
                V[stored], Mu[stored] = z / np.sqrt(rho_new), mu / np.sqrt(rho_new)
                stored += 1
            rho = rho_new

        residual = float(np.linalg.norm(b - A @ x)) / bnorm
        if store:
            self._update(W, gram, V[: min(stored, len(alphas))], Mu, np.array(alphas), np.array(betas))
        return KrylovResult(x, its, residual, converged and residual <= tol, self.ritz_values.copy())

    def _update(
        self,
        W: np.ndarray,
        gram: np.ndarray | None,
        V: np.ndarray,
        Mu: np.ndarray,
        alphas: np.ndarray,
        betas: np.ndarray,
    ) -> None:
        """Rayleigh-Ritz for the pencil ``(A, M)`` on ``span[W, V^T]``; keeps the smallest ``k``."""
        k, m = W.shape[1], V.shape[0]
        if k + m == 0:
            return
        Mu = Mu[:m]  # (m, k)
        T = np.zeros((m, m))
        if m:
            a = alphas[:m]
            T[np.arange(m), np.arange(m)] = 1.0 / a
            T[np.arange(1, m), np.arange(1, m)] += betas[: m - 1] / a[: m - 1]
            off = -np.sqrt(betas[: m - 1]) / a[: m - 1]
            T[np.arange(m - 1), np.arange(1, m)] = off
            T[np.arange(1, m), np.arange(m - 1)] = off
        dtype = np.result_type(W.dtype, V.dtype)
        K = np.zeros((k + m, k + m), dtype)
        K[:k, :k] = np.eye(k)
        K[:k, k:] = Mu.T
        K[k:, :k] = Mu.conj()
        K[k:, k:] = T + Mu.conj() @ Mu.T
        F = np.eye(k + m, dtype=dtype)
        if k:
            F[:k, :k] = gram if gram is not None else np.eye(k)
        try:
            theta, Y = sla.eigh((K + K.conj().T) / 2, (F + F.conj().T) / 2)
        except np.linalg.LinAlgError:
            logger.warning("Ritz update failed (Gram matrix not positive definite); keeping the old space")
            return
        keep = min(self.n_recycle, k + m)
        Y = Y[:, :keep]
        self.W = W @ Y[:k] + V.T @ Y[k:]
        self._gram = np.eye(keep)  # Y^H F Y = I: the new W is M-orthonormal
        self.ritz_values = theta[:keep].copy()


def deflated_cg(
    A: Matrix,
    b: np.ndarray,
    W: np.ndarray | None = None,
    preconditioner: Preconditioner | None = None,
    x0: np.ndarray | None = None,
    tol: float = 1e-8,
    maxiter: int | None = None,
) -> KrylovResult:
    """One preconditioned deflated CG solve with a fixed deflation space ``W`` (``(n, k)``).

    ``W=None`` is plain PCG. See :class:`DeflatedCG` for the algorithm.
    """
    return DeflatedCG(n_recycle=0 if W is None else W.shape[1], W=W, update=False).solve(
        A, b, preconditioner, x0=x0, tol=tol, maxiter=maxiter
    )


# ----------------------------------------------------------------------------------------------
# GCRO-DR
# ----------------------------------------------------------------------------------------------
def _givens(a: complex, b: float) -> tuple[float, complex]:
    """``(c, s)`` with ``[[c, s], [-conj(s), c]] @ [a, b] = [*, 0]`` (``b`` real, ``c`` real)."""
    if b == 0:
        return 1.0, 0.0
    if a == 0:
        return 0.0, 1.0
    d = np.hypot(abs(a), b)
    return abs(a) / d, (a / abs(a)) * b / d


class RecycledGMRES:
    r"""GCRO-DR with flexible right preconditioning, recycling ``U`` across systems.

    State: ``U`` (``(n, k)``). For a new matrix, :math:`A U = C R` (pivoted QR) gives
    :math:`C^H C = I` and ``U <- U R^{-1}``; then each cycle

    1. projects the residual: :math:`x \mathrel{+}= U C^H r`, :math:`r \mathrel{-}= C C^H r`;
    2. runs ``restart - k`` flexible Arnoldi steps with :math:`(I - C C^H) A M^{-1}` from
       :math:`v_1 = r/\|r\|`: :math:`z_j = M^{-1} v_j`, :math:`A Z = C B + V \bar H`
       (classical Gram-Schmidt against ``[C, V]`` twice, vectorised), stopping early on the Givens
       residual estimate;
    3. minimises the residual: :math:`y_2 = \arg\min \|\beta e_1 - \bar H y_2\|`,
       :math:`x \mathrel{+}= Z y_2 - U B y_2`;
    4. refreshes the recycle space from harmonic Ritz vectors of :math:`A` on
       :math:`\hat V = [U D, Z]` (``D`` normalising ``U``'s columns) with
       :math:`A \hat V = \hat W \bar G`, :math:`\hat W = [C, V]`,
       :math:`\bar G = [[D, B], [0, \bar H]]`:
       :math:`\bar G^H \bar G p = \theta \bar G^H \hat W^H \hat V p`, keeping the ``k`` of
       smallest :math:`|\theta|`; :math:`\bar G P = Q R`, :math:`C = \hat W Q`,
       :math:`U = \hat V P R^{-1}`.

    The first cycle of the first system (no ``U`` yet) is flexible GMRES(``restart``). For real
    data complex Ritz vectors are replaced by their real and imaginary parts (a conjugate pair
    spans the same real space). ``n_recycle=0`` is plain restarted flexible GMRES.

    Parameters
    ----------
    n_recycle
        ``k``, the dimension of the recycle space.
    restart
        ``m``, the subspace dimension per cycle (recycled plus new), ``m > k``.
    """

    def __init__(self, n_recycle: int = 10, restart: int = 40) -> None:
        if n_recycle < 0:
            raise ValueError(f"n_recycle must be >= 0, got {n_recycle}")
        if restart <= n_recycle:
            raise ValueError(f"restart must exceed n_recycle={n_recycle}, got restart={restart}")
        self.n_recycle, self.restart = int(n_recycle), int(restart)
        self.U: np.ndarray | None = None
        self.ritz_values = np.empty(0)

    def reset(self) -> None:
        """Forget the recycle space."""
        self.U, self.ritz_values = None, np.empty(0)

    def solve(
        self,
        A: Matrix,
        b: np.ndarray,
        preconditioner: Preconditioner | None = None,
        x0: np.ndarray | None = None,
        tol: float = 1e-8,
        maxiter: int | None = None,
    ) -> KrylovResult:
        """Solve ``A x = b`` (``A`` ``(n, n)``, ``b`` ``(n,)``) to ``||b - A x|| <= tol ||b||``.

        ``x0`` is a starting guess; the start is the point of ``span[U, x0]`` with the smallest
        residual. ``maxiter`` bounds the total number of Arnoldi steps (default ``2 n + 100``).
        """
        n, b = _check_system(A, b, tol)
        M = preconditioner or make_preconditioner(A, "none")
        maxiter = _default_maxiter(n) if maxiter is None else int(maxiter)
        dtype = np.result_type(A.dtype, b.dtype, np.float64)
        bnorm = float(np.linalg.norm(b))
        if bnorm == 0.0:
            return KrylovResult(np.zeros(n, dtype), 0, 0.0, True, self.ritz_values)
        target = tol * bnorm
        U = C = None
        if self.U is not None and self.n_recycle > 0:
            if self.U.shape[0] != n:
                logger.warning("recycle space has %d rows but the system has %d; dropping it", self.U.shape[0], n)
                self.reset()
            else:
                U = self.U.astype(np.result_type(self.U.dtype, dtype), copy=False)
                U, C = _orthonormalise_image(U, np.asarray(A @ U))
        if C is None:
            empty = np.zeros((n, 0), dtype)
            x, r = _warm_start(A, b, x0, empty, empty, empty, dtype, energy=False)
        else:
            x, r = _warm_start(A, b, x0, U, C, C, dtype, energy=False)
        its = 0
        rnorm = float(np.linalg.norm(r))
        while rnorm > target and its < maxiter:
            if C is not None:
                c = C.conj().T @ r
                x += U @ c
                r -= C @ c
                rnorm = float(np.linalg.norm(r))
            kc = 0 if C is None else C.shape[1]
            steps = max(1, min(self.restart - kc, maxiter - its))
            V, Z, H, B, j = _arnoldi(A, M.apply, r, rnorm, C, steps, target)
            its += j
            e1 = np.zeros(j + 1, dtype=H.dtype)
            e1[0] = rnorm
            y2 = np.linalg.lstsq(H, e1, rcond=None)[0]
            x += Z.T @ y2
            if C is not None:
                x -= U @ (B @ y2)
            if self.n_recycle > 0:
                U, C = self._refresh(U, C, V, Z, H, B, real=not np.iscomplexobj(np.empty(0, dtype)))
            r = b - A @ x
            rnorm = float(np.linalg.norm(r))
        self.U = U if self.n_recycle > 0 else None
        residual = rnorm / bnorm
        return KrylovResult(x, its, residual, residual <= tol, self.ritz_values.copy())

    def _refresh(
        self,
        U: np.ndarray | None,
        C: np.ndarray | None,
        V: np.ndarray,
        Z: np.ndarray,
        H: np.ndarray,
        B: np.ndarray,
        real: bool,
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Harmonic-Ritz refresh of ``(U, C)`` from one cycle; see the class docstring, step 4."""
        kc = 0 if C is None else C.shape[1]
        j = H.shape[1]
        dtype = np.result_type(V.dtype, H.dtype)
        if kc:
            d = 1.0 / np.linalg.norm(U, axis=0)
            Vhat = np.concatenate([U * d, Z.T], axis=1)  # (n, kc + j)
            What = np.concatenate([C, V.T], axis=1)  # (n, kc + j + 1)
            G = np.zeros((kc + j + 1, kc + j), dtype)
            G[:kc, :kc] = np.diag(d)
            G[:kc, kc:] = B
            G[kc:, kc:] = H
        else:
            Vhat, What, G = Z.T, V.T, H.astype(dtype)
        GhG = G.conj().T @ G
        GhWV = G.conj().T @ (What.conj().T @ Vhat)
        try:
            nu, P = sla.eig(GhWV, GhG)  # nu = 1/theta: the largest |nu| are wanted
        except (np.linalg.LinAlgError, ValueError):
            logger.warning("harmonic Ritz problem failed; keeping the previous recycle space")
            return U, C
        finite = np.isfinite(nu)
        idx = np.flatnonzero(finite)[np.argsort(-np.abs(nu[finite]), kind="stable")]
        idx = idx[: self.n_recycle]
        if idx.size == 0:
            return U, C
        P = P[:, idx]
        if real:
            P = _realify(P, nu[idx])
        else:
            P = P.astype(dtype)
        Q, R, piv = sla.qr(G @ P, mode="economic", pivoting=True)
        diag = np.abs(np.diag(R))
        rank = int(np.sum(diag > diag[0] * 1e-12)) if diag.size and diag[0] > 0 else 0
        if rank == 0:
            return U, C
        Q, R = Q[:, :rank], R[:rank, :rank]
        Ytilde = Vhat @ P[:, piv[:rank]]
        C_new = What @ Q
        U_new = sla.solve_triangular(R, Ytilde.T, trans="T", lower=False).T  # Ytilde R^{-1}
        with np.errstate(divide="ignore"):
            self.ritz_values = 1.0 / nu[idx]
        return U_new, C_new


def _orthonormalise_image(U: np.ndarray, AU: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``(U R^{-1}, Q)`` from the pivoted QR ``A U = Q R``, dropping numerically dependent columns."""
    Q, R, piv = sla.qr(AU, mode="economic", pivoting=True)
    diag = np.abs(np.diag(R))
    if diag.size == 0 or diag[0] == 0:
        return None, None
    rank = int(np.sum(diag > diag[0] * 1e-12))
    Q, R = Q[:, :rank], R[:rank, :rank]
    U = sla.solve_triangular(R, U[:, piv[:rank]].T, trans="T", lower=False).T
    return U, Q


def _realify(P: np.ndarray, nu: np.ndarray) -> np.ndarray:
    """Real basis of the span of eigenvectors ``P`` of a real pencil (``(m, k) -> (m, <= k)``).

    A complex eigenvector contributes its real and imaginary parts (the space of its conjugate
    pair); a pair cut in half by the selection is dropped; the result is orthonormalised.
    """
    cols: list[np.ndarray] = []
    used = np.zeros(P.shape[1], bool)
    scale = np.abs(nu).max(initial=1.0)
    for i in range(P.shape[1]):
        if used[i]:
            continue
        used[i] = True
        if abs(nu[i].imag) <= 1e-12 * scale:
            cols.append(P[:, i].real)
            continue
        partner = [t for t in range(i + 1, P.shape[1]) if not used[t] and abs(nu[t] - np.conj(nu[i])) <= 1e-8 * scale]
        if not partner:
            continue
        used[partner[0]] = True
        cols.extend([P[:, i].real, P[:, i].imag])
    if not cols:
        return np.zeros((P.shape[0], 0))
    Q, R = np.linalg.qr(np.stack(cols, axis=1))
    ok = np.abs(np.diag(R)) > 1e-12 * np.abs(np.diag(R)).max()
    return Q[:, ok]


def _arnoldi(
    A: Matrix,
    apply_m: Callable[[np.ndarray], np.ndarray],
    r: np.ndarray,
    beta: float,
    C: np.ndarray | None,
    steps: int,
    target: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """Flexible Arnoldi with ``(I - C C^H) A M^{-1}`` from ``r / beta``.

    Returns ``V`` ``(j + 1, n)`` (rows orthonormal and orthogonal to ``C``), ``Z`` ``(j, n)``
    (rows ``M^{-1} v_i``), ``H`` ``(j + 1, j)``, ``B = C^H A Z^T`` ``(kc, j)`` and ``j``, with
    ``A Z^T = C B + V^T H``. Stops after ``steps`` steps, on breakdown, or when the GMRES
    residual estimate falls to ``target``.
    """
    n = r.shape[0]
    kc = 0 if C is None else C.shape[1]
    Ch = None if C is None else np.ascontiguousarray(C.conj().T)
    dtype = np.result_type(r.dtype, np.float64) if C is None else np.result_type(r.dtype, C.dtype)
    V = np.empty((steps + 1, n), dtype)
    Z = np.empty((steps, n), dtype)
    H = np.zeros((steps + 1, steps), dtype)
    B = np.zeros((kc, steps), dtype)
    cs = np.zeros(steps)
    sn = np.zeros(steps, dtype)
    g = np.zeros(steps + 1, dtype)
    g[0] = beta
    V[0] = r / beta
    j = 0
    while j < steps:
        z = apply_m(V[j])
        Z[j] = z
        w = np.asarray(A @ z).astype(dtype, copy=False)
        h = np.zeros(j + 1, dtype)
        for _ in range(2):  # classical Gram-Schmidt, twice
            if kc:
                bc = Ch @ w
                w = w - C @ bc
                B[:, j] += bc
            hv = V[: j + 1].conj() @ w
            w = w - V[: j + 1].T @ hv
            h += hv
        hn = float(np.linalg.norm(w))
        H[: j + 1, j] = h
        H[j + 1, j] = hn
        col = H[: j + 2, j].copy()
        for i in range(j):
            a, bb = col[i], col[i + 1]
            col[i] = cs[i] * a + sn[i] * bb
            col[i + 1] = -np.conj(sn[i]) * a + cs[i] * bb
        cs[j], sn[j] = _givens(col[j], float(col[j + 1].real))
        g[j + 1] = -np.conj(sn[j]) * g[j]
        g[j] = cs[j] * g[j]
        j += 1
        if hn <= 1e-14 * max(float(np.linalg.norm(h)), 1e-300):
            V[j] = 0.0  # breakdown: the solution lies in the current space
            break
        V[j] = w / hn
        if abs(g[j]) <= target:
            break
    return V[: j + 1], Z[:j], H[: j + 1, :j], B[:, :j], j


# ----------------------------------------------------------------------------------------------
# Sorting
# ----------------------------------------------------------------------------------------------
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


# ----------------------------------------------------------------------------------------------
# Sequences
# ----------------------------------------------------------------------------------------------
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
            n, b = _check_system(A, b, tol)
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
