r"""Variable-coefficient Poisson matrices and the classical PCG baselines the DCDM is compared with.

* :func:`poisson_matrix` -- the 5-point (2-D) / 7-point (3-D) finite-volume discretisation of
  :math:`-\nabla\cdot(a\nabla u) = f` on :math:`(0,1)^d` with :math:`u = 0` on the boundary, on a
  uniform grid with ``n`` interior nodes per axis (:math:`h = 1/(n+1)`), face coefficients the
  harmonic mean of the two nodal values:

  .. math::
      (A u)_i = \frac{1}{h^2} \sum_{j \in \mathcal{N}(i)} a_{ij} (u_i - u_j), \qquad
      a_{ij} = \frac{2 a_i a_j}{a_i + a_j},

  where a neighbour ``j`` on the boundary has :math:`u_j = 0` (it adds to the diagonal only).
* :func:`darcy_coefficient` -- the project's ``darcy2d`` coefficient field (:math:`a \in \{3, 12\}`,
  thresholded Gaussian random field), with the boundary nodes included; its 3-D analogue
  :func:`darcy_coefficient_3d`.
* :func:`ichol0` -- the zero-fill incomplete Cholesky factor IC(0) (scipy has ``spilu`` only).
* :func:`make_baseline_preconditioner` -- ``"none"``, ``"jacobi"``, ``"amg"`` (from
  :func:`pdebench.solvers.fem.krylov.make_preconditioner`) and ``"ic0"``.
* :func:`pcg` -- preconditioned CG with a residual history, so every baseline runs the same loop.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from pdebench.solvers.fem.krylov import Preconditioner, make_preconditioner

BASELINES = ("none", "jacobi", "ic0", "amg")


def poisson_matrix(a: np.ndarray) -> sp.csr_array:
    r"""Matrix of :math:`-\nabla\cdot(a\nabla u)` with homogeneous Dirichlet conditions.

    Parameters
    ----------
    a
        Nodal coefficient, shape ``(n + 2,) * d`` with ``d`` in ``{2, 3}``, boundary nodes included;
        positive and finite.

    Returns
    -------
    scipy.sparse.csr_array
        Shape ``(n^d, n^d)``, SPD, C (row-major) ordering of the interior nodes.
    """
    a = np.asarray(a, dtype=np.float64)
    if a.ndim not in (2, 3):
        raise ValueError(f"coefficient must be 2-D or 3-D, got shape {a.shape}")
    if len(set(a.shape)) != 1 or a.shape[0] < 3:
        raise ValueError(f"coefficient must have shape (n + 2,) * d with n >= 1, got {a.shape}")
    if not (np.all(np.isfinite(a)) and np.all(a > 0)):
        raise ValueError(f"coefficient must be positive and finite, got min {np.nanmin(a)}")
    d, n = a.ndim, a.shape[0] - 2
    h2 = (1.0 / (n + 1)) ** 2
    N = n**d
    idx = np.arange(N).reshape((n,) * d)
    inner = tuple(slice(1, -1) for _ in range(d))
    ai = a[inner]
    diag = np.zeros((n,) * d)
    rows, cols, vals = [], [], []
    for axis in range(d):
        for shift in (-1, 1):
            sl = list(inner)
            sl[axis] = slice(1 + shift, n + 1 + shift)
            aj = a[tuple(sl)]
            face = 2 * ai * aj / (ai + aj) / h2
            diag += face
            # neighbour inside the domain
            src = [slice(None)] * d
            dst = [slice(None)] * d
            if shift == -1:
                src[axis], dst[axis] = slice(1, None), slice(None, -1)
            else:
                src[axis], dst[axis] = slice(None, -1), slice(1, None)
            rows.append(idx[tuple(src)].ravel())
            cols.append(idx[tuple(dst)].ravel())
            vals.append(-face[tuple(src)].ravel())
    rows.append(idx.ravel())
    cols.append(idx.ravel())
    vals.append(diag.ravel())
    A = sp.coo_array((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(N, N))
    A = sp.csr_array(A)
    A.sum_duplicates()
    A.sort_indices()
    return A


def darcy_coefficient(n: int, seed: int, index: int = 0, dim: int = 2) -> np.ndarray:
    r"""The ``darcy2d`` coefficient (values ``{3, 12}``) on an ``(n + 2)^d`` grid, boundary included.

    ``dim = 2`` is exactly ``Darcy2D(resolution=n + 2).sample_inputs(seed, [index])``; ``dim = 3``
    extends the same construction to the unit cube (:func:`darcy_coefficient_3d`).

    Parameters
    ----------
    n
        Interior nodes per axis (``n >= 3``).
    seed, index
        The sample ``(seed, index)``; each has its own generator.
    dim
        2 or 3.

    Returns
    -------
    numpy.ndarray
        Shape ``(n + 2,) * dim``, float64.
    """
    from pdebench.problems.elliptic import Darcy2D

    if n < 3:
        raise ValueError(f"n must be >= 3, got {n}")
    if dim == 3:
        return darcy_coefficient_3d(n, seed, index)
    if dim != 2:
        raise ValueError(f"dim must be 2 or 3, got {dim}")
    return Darcy2D(resolution=n + 2).sample_inputs(seed, [index])[0].numpy().astype(np.float64)


def darcy_coefficient_3d(n: int, seed: int, index: int = 0, modes: int = 16, tau: float = 3.0,
                         alpha: float = 2.0, high: float = 12.0, low: float = 3.0) -> np.ndarray:
    r"""The darcy2d coefficient's 3-D analogue on the ``(n + 2)^3`` grid ``x_j = j / (n + 1)``.

    :math:`a = 12` where :math:`\psi \ge 0` else 3, with
    :math:`\psi = \sum_k \xi_k (\pi^2|k|^2 + \tau^2)^{-\alpha/2} \prod_{i=1}^3 \cos(\pi k_i x_i)`,
    :math:`\xi_k \sim N(0, 1)` from the sample's own generator, ``k`` in ``[0, modes)^3`` without
    ``k = 0`` (the cosine expansion of :math:`N(0, (-\Delta + \tau^2)^{-\alpha})` with Neumann
    conditions, as :func:`pdebench.problems.elliptic.neumann_gaussian_field` does in 2-D).

    Returns
    -------
    numpy.ndarray
        Shape ``(n + 2, n + 2, n + 2)``, float64, values ``{low, high}``.
    """
    from pdebench.problems.sampling import sample_generator

    if n < 3:
        raise ValueError(f"n must be >= 3, got {n}")
    k = np.arange(modes)
    k2 = k[:, None, None] ** 2 + k[None, :, None] ** 2 + k[None, None, :] ** 2
    spectrum = (np.pi**2 * k2 + tau**2) ** (-alpha / 2)
    spectrum[0, 0, 0] = 0.0
    xi = torch.randn(modes, modes, modes, generator=sample_generator(seed, int(index)), dtype=torch.float64).numpy()
    basis = np.cos(np.pi * np.linspace(0.0, 1.0, n + 2)[:, None] * k[None, :])  # (n + 2, modes)
    psi = np.einsum("ia,jb,kc,abc->ijk", basis, basis, basis, xi * spectrum, optimize=True)
    return np.where(psi >= 0.0, high, low)


def ichol0(A: sp.sparray | sp.spmatrix) -> sp.csr_array:
    r"""Zero-fill incomplete Cholesky: lower-triangular ``L`` on the pattern of ``tril(A)``.

    ``L L^T`` matches ``A`` on the pattern of ``A`` (exact Cholesky when the factor has no fill-in,
    e.g. for a tridiagonal matrix). Row-oriented (up-looking) algorithm:
    :math:`L_{ij} = (A_{ij} - \sum_{k<j} L_{ik} L_{jk}) / L_{jj}` for ``j < i`` in the pattern,
    :math:`L_{ii} = \sqrt{A_{ii} - \sum_{k<i} L_{ik}^2}`.

    Parameters
    ----------
    A
        Symmetric positive definite, shape ``(N, N)``.

    Returns
    -------
    scipy.sparse.csr_array
        ``L``, shape ``(N, N)``, sorted indices, diagonal last in each row.

    Raises
    ------
    ValueError
        If ``A`` is not square or a pivot is not positive (IC(0) breakdown), naming the row.
    """
    if A.shape[0] != A.shape[1]:
        raise ValueError(f"matrix must be square, got shape {A.shape}")
    L = sp.csr_array(sp.tril(sp.csr_array(A, dtype=np.float64)))
    L.sum_duplicates()
    L.sort_indices()
    indptr, indices, data = L.indptr, L.indices, L.data.copy()
    N = A.shape[0]
    # per row: a dict column -> position (small rows, stencil matrices)
    for i in range(N):
        s, e = indptr[i], indptr[i + 1]
        if e == s or indices[e - 1] != i:
            raise ValueError(f"IC(0): row {i} has no diagonal entry")
        row_cols = indices[s:e]
        pos_i = {int(c): s + k for k, c in enumerate(row_cols)}
        for p in range(s, e - 1):
            j = int(indices[p])
            # subtract sum_{k<j} L_ik L_jk over the common pattern
            sj, ej = indptr[j], indptr[j + 1]
            acc = 0.0
            for q in range(sj, ej - 1):
                pk = pos_i.get(int(indices[q]))
                if pk is not None:
                    acc += data[pk] * data[q]
            data[p] = (data[p] - acc) / data[ej - 1]
        piv = data[e - 1] - float(np.dot(data[s : e - 1], data[s : e - 1]))
        if not piv > 0:
            raise ValueError(f"IC(0) breakdown: pivot {piv:.3e} <= 0 at row {i}")
        data[e - 1] = np.sqrt(piv)
    return sp.csr_array((data, indices.copy(), indptr.copy()), shape=A.shape)


def make_baseline_preconditioner(A: sp.sparray | sp.spmatrix, kind: str) -> Preconditioner:
    """A symmetric preconditioner for CG: one of :data:`BASELINES`.

    ``"ic0"`` applies :math:`(L L^T)^{-1}` by two triangular solves (:func:`ichol0`); the others
    come from :func:`pdebench.solvers.fem.krylov.make_preconditioner`.
    """
    if kind not in BASELINES:
        raise ValueError(f"unknown baseline preconditioner {kind!r}; expected one of {BASELINES}")
    if kind != "ic0":
        return make_preconditioner(A, kind)
    t0 = time.perf_counter()
    L = sp.csr_matrix(ichol0(A))
    U = sp.csr_matrix(L.T)

    def apply(r: np.ndarray) -> np.ndarray:
        y = spla.spsolve_triangular(L, r, lower=True)
        return spla.spsolve_triangular(U, y, lower=False)

    return Preconditioner("ic0", apply, None, time.perf_counter() - t0)


@dataclass
class SolveResult:
    """One iterative solve.

    Attributes
    ----------
    x
        Solution, shape ``(N,)``.
    iterations
        Iterations performed (one matrix product each).
    residuals
        Relative residual history ``||r_k|| / ||b||``, ``k = 0 .. iterations``, shape ``(iterations + 1,)``.
    converged
        Whether ``residuals[-1] <= tol``.
    time
        Wall seconds of the iteration (setup excluded).
    setup_time
        Wall seconds of the setup (preconditioner, network load ...).
    """

    x: np.ndarray
    iterations: int
    residuals: np.ndarray
    converged: bool
    time: float
    setup_time: float = 0.0
    extra: dict = field(default_factory=dict)


def pcg(
    A: sp.sparray | sp.spmatrix,
    b: np.ndarray,
    preconditioner: Preconditioner | None = None,
    tol: float = 1e-6,
    maxiter: int | None = None,
) -> SolveResult:
    r"""Preconditioned CG from :math:`x_0 = 0` until :math:`\|r_k\| \le` ``tol`` :math:`\|b\|`.

    Parameters
    ----------
    A
        SPD, shape ``(N, N)``.
    b
        Shape ``(N,)``.
    preconditioner
        :math:`M^{-1}` (SPD); ``None``: plain CG.
    tol
        Relative residual tolerance (> 0).
    maxiter
        Iteration cap (default ``2 N``).
    """
    b = np.asarray(b, dtype=np.float64)
    N = A.shape[0]
    if b.shape != (N,):
        raise ValueError(f"right-hand side has shape {b.shape} but the matrix is {A.shape}")
    if not (np.isfinite(tol) and tol > 0):
        raise ValueError(f"tol must be a positive number, got {tol}")
    maxiter = 2 * N if maxiter is None else int(maxiter)
    apply = preconditioner.apply if preconditioner is not None else (lambda r: r.copy())
    t0 = time.perf_counter()
    bnorm = float(np.linalg.norm(b))
    x = np.zeros(N)
    if bnorm == 0:
        return SolveResult(x, 0, np.zeros(1), True, 0.0)
    r = b.copy()
    z = apply(r)
    p = z.copy()
    rz = float(r @ z)
    hist = [1.0]
    k = 0
    while k < maxiter and hist[-1] > tol:
        Ap = A @ p
        alpha = rz / float(p @ Ap)
        x += alpha * p
        r -= alpha * Ap
        k += 1
        hist.append(float(np.linalg.norm(r)) / bnorm)
        if hist[-1] <= tol:
            break
        z = apply(r)
        rz_new = float(r @ z)
        p = z + (rz_new / rz) * p
        rz = rz_new
    elapsed = time.perf_counter() - t0
    setup = preconditioner.setup_time if preconditioner is not None else 0.0
    return SolveResult(x, k, np.asarray(hist), hist[-1] <= tol, elapsed, setup)
