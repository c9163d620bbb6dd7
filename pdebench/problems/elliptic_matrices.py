r"""Matrices of the variable-coefficient Poisson problem :math:`-\nabla\cdot(a\nabla u) = f` (the DCDM systems).

* :func:`poisson_matrix` -- the 5-point (2-D) / 7-point (3-D) finite-volume discretisation of
  :math:`-\nabla\cdot(a\nabla u) = f` on :math:`(0,1)^d` with :math:`u = 0` on the boundary, on a
  uniform grid with ``n`` interior nodes per axis (:math:`h = 1/(n+1)`), face coefficients the
  harmonic mean of the two nodal values:

  .. math::
      (A u)_i = \frac{1}{h^2} \sum_{j \in \mathcal{N}(i)} a_{ij} (u_i - u_j), \qquad
      a_{ij} = \frac{2 a_i a_j}{a_i + a_j},

  where a neighbour ``j`` on the boundary has :math:`u_j = 0` (it adds to the diagonal only).
* :func:`darcy_coefficient` -- the coefficient field of the project's ``darcy2d`` or ``darcy3d``
  (:math:`a \in \{3, 12\}`, thresholded Gaussian random field), with the boundary nodes included.

The solvers of these systems (CG and its preconditioners) are in :mod:`pdebench.solvers.linalg`.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from pdebench.problems.elliptic import Darcy2D, Darcy3D


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
    r"""The ``darcy2d`` / ``darcy3d`` coefficient (values ``{3, 12}``) on an ``(n + 2)^d`` grid, boundary included.

    Exactly ``Darcy2D(resolution=n + 2).sample_inputs(seed, [index])[0]`` (``dim = 2``) or
    ``Darcy3D(resolution=n + 2)``'s (``dim = 3``: the same construction on the unit cube).

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
    if n < 3:
        raise ValueError(f"n must be >= 3, got {n}")
    if dim not in (2, 3):
        raise ValueError(f"dim must be 2 or 3, got {dim}")
    problem = Darcy2D(resolution=n + 2) if dim == 2 else Darcy3D(resolution=n + 2)
    return problem.sample_inputs(seed, [index])[0].numpy().astype(np.float64)
