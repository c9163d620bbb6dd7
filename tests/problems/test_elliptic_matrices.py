"""The variable-coefficient Poisson matrices and Darcy coefficients (pdebench.problems.elliptic_matrices).

Truths: the 5-point Laplacian written out here, dense eigenvalues, a manufactured solution's
second-order convergence (solved by ``spsolve``), determinism of the seeded 3-D field.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from pdebench.problems.elliptic_matrices import darcy_coefficient, poisson_matrix


def laplacian_5pt(n: int) -> sp.csr_array:
    h2 = (1.0 / (n + 1)) ** 2
    T = sp.diags_array([-1.0, 2.0, -1.0], offsets=[-1, 0, 1], shape=(n, n))
    eye = sp.eye_array(n)
    return sp.csr_array((sp.kron(eye, T) + sp.kron(T, eye)) / h2)



def test_constant_coefficient_is_5pt_laplacian():
    n = 7
    A = poisson_matrix(np.ones((n + 2, n + 2)))
    assert abs(A - laplacian_5pt(n)).max() < 1e-9
    A3 = poisson_matrix(2.0 * np.ones((5, 5, 5)))
    assert A3.shape == (27, 27)
    assert np.allclose(A3.diagonal(), 2.0 * 6 * 16)  # 2 * 6 / h^2, h = 1/4


def test_darcy_matrix_is_spd():
    a = darcy_coefficient(12, seed=0)
    assert set(np.unique(a)) <= {3.0, 12.0}
    A = poisson_matrix(a)
    assert abs(A - A.T).max() == 0
    assert np.linalg.eigvalsh(A.toarray()).min() > 0


def test_manufactured_solution_second_order():
    # u = sin(pi x) sin(pi y), a = 1 + x + y^2 (smooth), f = -div(a grad u)
    errs = []
    for n in (15, 31, 63):
        t = np.linspace(0, 1, n + 2)
        X, Y = np.meshgrid(t, t, indexing="ij")
        a = 1 + X + Y**2
        u = np.sin(np.pi * X) * np.sin(np.pi * Y)
        ux, uy = np.pi * np.cos(np.pi * X) * np.sin(np.pi * Y), np.pi * np.sin(np.pi * X) * np.cos(np.pi * Y)
        f = -(1.0 * ux + 2 * Y * uy) + a * 2 * np.pi**2 * u
        A = poisson_matrix(a)
        uh = sp.linalg.spsolve(sp.csc_array(A), f[1:-1, 1:-1].ravel())
        errs.append(np.abs(uh - u[1:-1, 1:-1].ravel()).max())
    rates = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
    assert np.all(rates > 1.8), (errs, rates)


def test_bad_coefficients_raise():
    with pytest.raises(ValueError, match="positive"):
        poisson_matrix(-np.ones((5, 5)))
    with pytest.raises(ValueError, match=r"\(4, 5\)"):
        poisson_matrix(np.ones((4, 5)))


def test_darcy_coefficient_3d():
    a = darcy_coefficient(10, seed=7, index=2, dim=3)
    assert a.shape == (12, 12, 12) and set(np.unique(a)) == {3.0, 12.0}
    assert np.array_equal(a, darcy_coefficient(10, seed=7, index=2, dim=3))
    assert not np.array_equal(a, darcy_coefficient(10, seed=7, index=3, dim=3))
    with pytest.raises(ValueError, match="dim must be 2 or 3, got 4"):
        darcy_coefficient(10, seed=0, dim=4)
