r"""Recycled GMRES (GCRO-DR) for indefinite or nonsymmetric systems, e.g. Helmholtz.

:class:`RecycledGMRES` is GCRO-DR (Parks, de Sturler, Mackey, Johnson & Maiti 2006) with flexible
right preconditioning: the recycle space ``U`` (``(n, k)``, with :math:`A U = C`, :math:`C^H C = I`)
is carried across systems and refreshed each cycle from harmonic Ritz vectors; ``n_recycle=0`` is
plain restarted flexible GMRES. Each Arnoldi step adds one ``n x k`` projection. Results are
:class:`~pdebench.solvers.linalg.result.SolveResult` (``residuals``: the true relative residual after
each restart cycle).

References
----------
M. L. Parks, E. de Sturler, G. Mackey, D. D. Johnson, S. Maiti. Recycling Krylov subspaces for
sequences of linear systems. SIAM J. Sci. Comput. 28 (2006).
L. M. Carvalho, S. Gratton, R. Lago, X. Vasseur. A flexible generalized conjugate residual method
with inner orthogonalization and deflated restarting. SIAM J. Matrix Anal. Appl. 32 (2011).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np
import scipy.linalg as sla

from pdebench.solvers.linalg.cg import default_maxiter, galerkin_start
from pdebench.solvers.linalg.preconditioners import Preconditioner, make_preconditioner
from pdebench.solvers.linalg.result import Matrix, SolveResult, check_system

logger = logging.getLogger(__name__)


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
    ) -> SolveResult:
        """Solve ``A x = b`` (``A`` ``(n, n)``, ``b`` ``(n,)``) to ``||b - A x|| <= tol ||b||``.

        ``x0`` is a starting guess; the start is the point of ``span[U, x0]`` with the smallest
        residual. ``maxiter`` bounds the total number of Arnoldi steps (default ``2 n + 100``).
        """
        n, b = check_system(A, b, tol)
        M = preconditioner or make_preconditioner(A, "none")
        maxiter = default_maxiter(n) if maxiter is None else int(maxiter)
        dtype = np.result_type(A.dtype, b.dtype, np.float64)
        start = time.perf_counter()
        bnorm = float(np.linalg.norm(b))
        if bnorm == 0.0:
            return SolveResult(np.zeros(n, dtype), 0, np.zeros(1), True, 0.0, M.setup_time, residual=0.0,
                               ritz_values=self.ritz_values)
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
            x, r = galerkin_start(A, b, x0, empty, empty, empty, dtype, energy=False)
        else:
            x, r = galerkin_start(A, b, x0, U, C, C, dtype, energy=False)
        its = 0
        rnorm = float(np.linalg.norm(r))
        history = [rnorm / bnorm]
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
            history.append(rnorm / bnorm)
        self.U = U if self.n_recycle > 0 else None
        residual = rnorm / bnorm
        return SolveResult(x, its, np.asarray(history), residual <= tol, time.perf_counter() - start, M.setup_time,
                           residual=residual, ritz_values=self.ritz_values.copy())

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


