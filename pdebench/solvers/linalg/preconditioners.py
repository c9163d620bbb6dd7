r"""One preconditioner factory for every Krylov solve: :func:`make_preconditioner`.

A preconditioner :math:`M \approx A` is used through ``r -> M^{-1} r`` (``(n,) -> (n,)``) and, where
:math:`M` itself is known, ``W -> W^H M W`` (``(n, k) -> (k, k)``, for the Ritz update of deflated
CG). Kinds:

* ``"none"``: :math:`M = I`;
* ``"jacobi"``: :math:`M = \mathrm{diag}(A)`;
* ``"ic0"``: :math:`M = L L^T` with :math:`L` the zero-fill incomplete Cholesky factor
  (:func:`ichol0`), applied by two sparse triangular solves (:func:`cholesky_factor_preconditioner`,
  which any other lower-triangular factor, e.g. a learned one, goes through too);
* ``"amg"``: one symmetric V-cycle of pyamg's smoothed-aggregation hierarchy;
* ``"ilu"``: ``scipy.sparse.linalg.spilu`` (not symmetric: GMRES only).

:data:`SYMMETRIC_PRECONDITIONERS` are the SPD ones CG accepts (for SPD ``A``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from pdebench.solvers.linalg.result import Matrix

PRECONDITIONERS = ("amg", "jacobi", "ic0", "ilu", "none")
#: The SPD preconditioners (for CG), cheapest first: the rows of the linear-solver board.
SYMMETRIC_PRECONDITIONERS = ("none", "jacobi", "ic0", "amg")


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
        ``"jacobi"``, ``"ic0"``); ``None`` where only :math:`M^{-1}` is available (``"amg"``, ``"ilu"``).
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
        ``"ic0"``: :math:`M = L L^T`, ``L = ichol0(A)`` (two triangular solves per application; raises
        ``ValueError`` on an IC(0) breakdown); ``"ilu"``: ``scipy.sparse.linalg.spilu`` (``drop_tol=1e-4, fill_factor=10`` unless given;
        not symmetric, GMRES only); ``"none"``: :math:`M = I`.
    options
        Keyword arguments of the AMG or ILU construction.

    Returns
    -------
    Preconditioner
        With ``setup_time`` the wall seconds of the construction.
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

    elif kind == "ic0":
        ic = cholesky_factor_preconditioner(ichol0(A), kind)
        apply, gram = ic.apply, ic.gram

    elif kind == "amg":
        import pyamg  # deferred: importing pyamg costs ~0.3 s, paid only where AMG is asked for

        ml = pyamg.smoothed_aggregation_solver(sp.csr_array(A), **options)
        op = ml.aspreconditioner(cycle="V")
        apply = _complex_safe(lambda r: np.asarray(op.matvec(r)).reshape(n), real)
    else:  # ilu
        opts = {"drop_tol": 1e-4, "fill_factor": 10.0} | options
        ilu = spla.spilu(sp.csc_array(A), **opts)
        apply = _complex_safe(ilu.solve, real)
    return Preconditioner(kind, apply, gram, time.perf_counter() - start)


def cholesky_factor_preconditioner(L: sp.sparray | sp.spmatrix, kind: str = "ic0",
                                   setup_time: float = 0.0) -> Preconditioner:
    r"""The preconditioner :math:`M = L L^T` of a lower-triangular factor ``L``, by two triangular solves.

    ``apply(r)`` is :math:`M^{-1} r = L^{-T} (L^{-1} r)`: forward substitution with ``L``, then back
    substitution with :math:`L^T`; ``gram(W)`` is :math:`W^H M W = (L^T W)^H (L^T W)`. Both solves
    run in SuperLU's compiled triangular solvers: ``L`` is handed to ``scipy.sparse.linalg.splu``
    with the natural ordering and diagonal pivots (``permc_spec="NATURAL"``,
    ``diag_pivot_thresh=0``), whose "factorisation" of a triangular matrix is ``L`` itself
    (:math:`L = (L D^{-1})\,D`, no fill, identity permutations, checked), and whose
    ``solve(r)`` / ``solve(r, trans="T")`` are :math:`L^{-1} r` / :math:`L^{-T} r`. Measured on 1 thread
    (IC(0) factors of the board's Darcy matrices), one application costs 0.10 ms at :math:`64^2` and
    0.80 ms at :math:`32^3`, against 1.1 ms and 6.2 ms for two ``spsolve_triangular`` calls on
    pre-converted CSR factors (the same result to 2e-16).

    Parameters
    ----------
    L
        Lower triangular, shape ``(n, n)``, real, with a non-zero diagonal (positive for an SPD ``M``).
    kind
        The :attr:`Preconditioner.kind` recorded (``"ic0"``, or the name of a learned factor).
    setup_time
        Seconds already spent computing ``L`` (added to the solver set-up measured here).

    Returns
    -------
    Preconditioner
        ``apply`` ``(n,) -> (n,)`` (complex vectors part by part), ``gram`` ``(n, k) -> (k, k)``.

    Raises
    ------
    ValueError
        If ``L`` is not square, has an entry above the diagonal, or a zero or non-finite diagonal entry.
    """
    start = time.perf_counter()
    if L.ndim != 2 or L.shape[0] != L.shape[1]:
        raise ValueError(f"the factor L must be square, got shape {L.shape}")
    L = sp.csc_array(L, dtype=np.float64)
    L.sum_duplicates()
    upper = sp.triu(L, k=1)
    if upper.count_nonzero():
        raise ValueError(f"the factor L must be lower triangular; it has {upper.count_nonzero()} non-zeros above the diagonal")
    d = L.diagonal()
    bad = np.flatnonzero(~np.isfinite(d) | (d == 0))
    if bad.size:
        raise ValueError(f"the factor L needs a finite non-zero diagonal; L[{bad[0]}, {bad[0]}] = {d[bad[0]]}")
    if not np.all(np.isfinite(L.data)):
        raise ValueError("the factor L has non-finite entries")
    n = L.shape[0]
    lu = spla.splu(L, permc_spec="NATURAL", diag_pivot_thresh=0.0, options={"SymmetricMode": True})
    identity = np.arange(n)
    if not (np.array_equal(lu.perm_r, identity) and np.array_equal(lu.perm_c, identity)):
        raise ValueError("SuperLU permuted the triangular factor; cannot apply L L^T by triangular solves")
    U = sp.csr_array(L.T)

    def apply(r: np.ndarray) -> np.ndarray:
        return lu.solve(lu.solve(np.asarray(r, dtype=np.float64)), trans="T")

    def gram(W: np.ndarray) -> np.ndarray:
        UW = U @ W
        return UW.conj().T @ UW

    return Preconditioner(kind, _complex_safe(apply, True), gram, setup_time + time.perf_counter() - start)




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

