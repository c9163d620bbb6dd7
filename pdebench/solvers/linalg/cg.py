r"""The one conjugate-gradient solver: preconditioned CG with optional deflation and recycling.

:class:`DeflatedCG` is preconditioned deflated CG (Def-CG, Saad, Yeung, Erhel & Guyomarc'h 2000) for
Hermitian positive definite systems :math:`A x = b` (``A`` ``(n, n)``, ``b`` ``(n,)``). The iterates
stay A-orthogonal to a deflation space ``W`` (``(n, k)``); the start is the Galerkin (A-norm optimal)
combination of a guess (the previous solution) and ``W``. With ``update=True`` the space is recycled:
after each solve ``W`` is replaced by Ritz vectors of the pencil :math:`(A, M)` on
``span[W, z_0, ..., z_{l-1}]`` (``z_j`` the preconditioned residuals), which approximate the
eigenvectors of :math:`M^{-1} A` with the smallest eigenvalues; all Rayleigh-Ritz matrices come from
quantities CG computes anyway. With ``k = 0`` it is plain preconditioned CG, and

* :func:`pcg` -- PCG from :math:`x_0 = 0` or a guess, with any preconditioner (the classical baselines);
* :func:`deflated_cg` -- one solve with a fixed deflation space (e.g. exact eigenvectors)

are that same loop. Preconditioners come from :func:`~pdebench.solvers.linalg.preconditioners.make_preconditioner`,
results are :class:`~pdebench.solvers.linalg.result.SolveResult`, and the stopping rule is
:class:`~pdebench.solvers.linalg.result.ResidualMonitor`'s (relative residual, confirmed on the true
residual). Per iteration: one product with ``A``, one preconditioner application, two ``n x k``
products for the deflation.

References
----------
Y. Saad, M. Yeung, J. Erhel, F. Guyomarc'h. A deflated version of the conjugate gradient
algorithm. SIAM J. Sci. Comput. 21 (2000).
"""

from __future__ import annotations

import logging
import time

import numpy as np
import scipy.linalg as sla

from pdebench.solvers.linalg.preconditioners import Preconditioner, make_preconditioner
from pdebench.solvers.linalg.result import Matrix, ResidualMonitor, SolveResult, check_system

logger = logging.getLogger(__name__)


def galerkin_start(
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


def default_maxiter(n: int) -> int:
    """Iteration cap of the recycling solvers when none is given: ``2 n + 100``."""
    return 2 * n + 100


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
    ) -> SolveResult:
        """Solve ``A x = b`` (``A`` ``(n, n)`` HPD, ``b`` ``(n,)``) to ``||b - A x|| <= tol ||b||``.

        Parameters
        ----------
        A, b
            The system, ``(n, n)`` and ``(n,)``.
        preconditioner
            :math:`M` (Hermitian positive definite, e.g. from :func:`make_preconditioner`);
            ``None``: :math:`M = I`.
        x0
            A starting guess ``(n,)`` (e.g. the previous system's solution); the start is the point
            of ``span[W, x0]`` with the smallest A-norm error (Galerkin), so never worse than zero.
        tol
            Relative residual tolerance (the :class:`ResidualMonitor` rule).
        maxiter
            Iteration cap (default ``2 n + 100``).

        Returns
        -------
        SolveResult
            ``residuals`` ``(iterations + 1,)`` from the start's residual, ``residual`` the true
            final relative residual, ``ritz_values`` those of the space kept for the next solve,
            ``setup_time`` the preconditioner's.
        """
        n, b = check_system(A, b, tol)
        M = preconditioner or make_preconditioner(A, "none")
        maxiter = default_maxiter(n) if maxiter is None else int(maxiter)
        dtype = np.result_type(A.dtype, b.dtype, np.float64)
        start = time.perf_counter()
        if not np.linalg.norm(b) > 0:
            return SolveResult(np.zeros(n, dtype), 0, np.zeros(1), True, 0.0, M.setup_time, residual=0.0,
                               ritz_values=self.ritz_values)

        W, AW, gram = self._prepare(A, M, n, dtype)
        AWh = np.ascontiguousarray(AW.conj().T)  # (k, n)
        k = W.shape[1]
        x, r = galerkin_start(A, b, x0, W, AW, W, dtype, energy=True)
        monitor = ResidualMonitor(A, b, tol, r)

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
        its, lanczos_intact, converged = 0, True, False
        while True:
            if monitor.reached():
                r_true = monitor.confirm(x)
                if r_true is None:
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
            monitor.record(float(np.linalg.norm(r)))
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

        residual = monitor.true_residual if converged else monitor.final_residual(x)
        if store:
            self._update(W, gram, V[: min(stored, len(alphas))], Mu, np.array(alphas), np.array(betas))
        return SolveResult(x, its, monitor.residuals(), converged and residual <= tol, time.perf_counter() - start,
                           M.setup_time, residual=residual, ritz_values=self.ritz_values.copy())

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
) -> SolveResult:
    """One preconditioned deflated CG solve with a fixed deflation space ``W`` (``(n, k)``).

    ``W=None`` is plain PCG. See :class:`DeflatedCG` for the algorithm and the arguments.
    """
    return DeflatedCG(n_recycle=0 if W is None else W.shape[1], W=W, update=False).solve(
        A, b, preconditioner, x0=x0, tol=tol, maxiter=maxiter
    )


def pcg(
    A: Matrix,
    b: np.ndarray,
    preconditioner: Preconditioner | None = None,
    tol: float = 1e-6,
    maxiter: int | None = None,
    x0: np.ndarray | None = None,
) -> SolveResult:
    r"""Preconditioned CG until :math:`\|b - A x_k\| \le` ``tol`` :math:`\|b\|`, from zero or a guess.

    The loop of :class:`DeflatedCG` with no deflation space:
    :math:`z_j = M^{-1} r_j`, :math:`p_j = z_j + \beta_{j-1} p_{j-1}`,
    :math:`\alpha_j = r_j^T z_j / p_j^T A p_j`, :math:`\beta_j = r_{j+1}^T z_{j+1} / r_j^T z_j`.
    A guess ``x0`` starts it at :math:`\gamma x_0` with :math:`\gamma = x_0^T b / x_0^T A x_0` (the
    A-norm-best multiple: :class:`DeflatedCG`'s Galerkin start, never worse than zero; 1 for the exact
    solution). The stopping rule stays relative to :math:`\|b\|`, not to the start's residual, so a
    good guess converges in fewer iterations to the same accuracy, and the exact one in none.

    Parameters
    ----------
    A
        SPD, shape ``(N, N)``.
    b
        Shape ``(N,)``, finite (cast to float64).
    preconditioner
        :math:`M` (SPD, :func:`make_preconditioner`); ``None``: plain CG.
    tol
        Relative residual tolerance (> 0).
    maxiter
        Iteration cap (default ``2 N``).
    x0
        Starting guess, shape ``(N,)``; ``None``: :math:`x_0 = 0`.

    Returns
    -------
    SolveResult
        ``residuals`` ``(iterations + 1,)`` (the first the start's ``||r_0|| / ||b||``); ``time`` the
        iteration's wall seconds, ``setup_time`` the preconditioner's build time.
    """
    b = np.asarray(b, dtype=np.float64)
    maxiter = 2 * A.shape[0] if maxiter is None else int(maxiter)
    if x0 is not None:
        x0 = np.asarray(x0, dtype=np.float64)
        if x0.shape != b.shape or not np.all(np.isfinite(x0)):
            raise ValueError(f"x0 must be finite with the right-hand side's shape {b.shape}, got shape {x0.shape}")
    return deflated_cg(A, b, None, preconditioner, x0=x0, tol=tol, maxiter=maxiter)
