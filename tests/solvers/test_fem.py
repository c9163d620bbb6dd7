"""The FEM layer against independent truths: manufactured solutions and their convergence orders, the
elasticity patch test, an independent finite-difference Darcy solve, exactness where the space
contains the solution, and the bad inputs it must refuse."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from skfem import MeshTri
from skfem.assembly.basis import cell_basis

from pdebench.solvers.fem import (
    FunctionSpace,
    GridSampler,
    boundary_load,
    boundary_mass,
    condense_dirichlet,
    diffusion_matrix,
    disk_with_holes,
    elasticity_matrix,
    element,
    element_means,
    grid_to_vertices,
    h1_seminorm_error,
    helmholtz_matrix,
    l2_error,
    l_shape,
    lame_parameters,
    load_vector,
    mass_matrix,
    rectangle,
    signed_areas,
    solve_direct,
    triangulation,
    unit_square,
)

PI = np.pi


def slope(h: list[float], err: list[float]) -> float:
    """Least-squares slope of log(err) against log(h)."""
    return float(np.polyfit(np.log(h), np.log(err), 1)[0])


def dirichlet_solve(space: FunctionSpace, A, b, exact) -> np.ndarray:
    dofs = space.boundary_dofs()
    return solve_direct(condense_dirichlet(A, b, dofs, space.interpolate(exact)[dofs]))


# ------------------------------------------------------------------ manufactured diffusion problem
# -div(a grad u) = f with a = 1 + x² + y², u = sin(πx) sin(πy) + x/2 (non-zero Dirichlet data),
# f = -a Δu - grad a · grad u written out by hand.
def u_diffusion(x):
    return np.sin(PI * x[0]) * np.sin(PI * x[1]) + 0.5 * x[0]


def grad_u_diffusion(x):
    return np.stack([PI * np.cos(PI * x[0]) * np.sin(PI * x[1]) + 0.5, PI * np.sin(PI * x[0]) * np.cos(PI * x[1])])


def a_diffusion(x):
    return 1.0 + x[0] ** 2 + x[1] ** 2


def f_diffusion(x):
    g = grad_u_diffusion(x)
    laplacian = -2 * PI**2 * np.sin(PI * x[0]) * np.sin(PI * x[1])
    return -a_diffusion(x) * laplacian - (2 * x[0] * g[0] + 2 * x[1] * g[1])


@pytest.mark.parametrize(
    ("family", "refinements", "l2_order", "h1_order"),
    [("P1", [3, 4, 5, 6], 2.0, 1.0), ("P2", [2, 3, 4, 5], 3.0, 2.0)],
)
def test_diffusion_converges_at_the_expected_orders_on_an_irregular_l_shape(family, refinements, l2_order, h1_order):
    h, l2, h1 = [], [], []
    for r in refinements:
        space = FunctionSpace(l_shape(r, jitter=0.2, seed=r), family)
        u = dirichlet_solve(space, diffusion_matrix(space, a_diffusion), load_vector(space, f_diffusion), u_diffusion)
        h.append(2.0**-r)
        l2.append(l2_error(space, u, u_diffusion))
        h1.append(h1_seminorm_error(space, u, grad_u_diffusion))
    assert slope(h, l2) == pytest.approx(l2_order, abs=0.2)
    assert slope(h, h1) == pytest.approx(h1_order, abs=0.2)
    assert np.all(np.diff(l2) < 0) and np.all(np.diff(h1) < 0)


# ------------------------------------------------------------------ Helmholtz
# -Δu - k²u = f, k = 5: k² = 25 lies between the L-shape's Dirichlet eigenvalues ≈ 19.74 and ≈ 29.52.
K = 5.0


def u_helmholtz(x):
    return np.sin(2 * x[0] + x[1]) + x[0] ** 2 * x[1]


def grad_u_helmholtz(x):
    c = np.cos(2 * x[0] + x[1])
    return np.stack([2 * c + 2 * x[0] * x[1], c + x[0] ** 2])


def f_helmholtz(x):
    laplacian = -5 * np.sin(2 * x[0] + x[1]) + 2 * x[1]
    return -laplacian - K**2 * u_helmholtz(x)


def test_helmholtz_p2_converges_at_orders_three_and_two():
    h, l2, h1 = [], [], []
    for r in [2, 3, 4, 5]:
        space = FunctionSpace(l_shape(r, jitter=0.2, seed=10 + r), "P2")
        A = helmholtz_matrix(space, K)
        u = dirichlet_solve(space, A, load_vector(space, f_helmholtz), u_helmholtz)
        h.append(2.0**-r)
        l2.append(l2_error(space, u, u_helmholtz))
        h1.append(h1_seminorm_error(space, u, grad_u_helmholtz))
    assert slope(h, l2) == pytest.approx(3.0, abs=0.2)
    assert slope(h, h1) == pytest.approx(2.0, abs=0.2)


def test_helmholtz_matrix_is_stiffness_minus_k2_mass_and_indefinite():
    space = FunctionSpace(l_shape(3, jitter=0.2), "P1")
    H = helmholtz_matrix(space, K)
    assert abs(H - (diffusion_matrix(space, 1.0) - K**2 * mass_matrix(space))).max() < 1e-12
    interior = np.setdiff1d(np.arange(space.ndofs), space.boundary_dofs())
    eigenvalues = np.linalg.eigvalsh(H[interior][:, interior].toarray())
    assert eigenvalues.min() < 0 < eigenvalues.max()


# ------------------------------------------------------------------ elasticity
def affine_displacement(x):
    return np.stack([0.1 + 0.3 * x[0] - 0.2 * x[1], -0.05 + 0.15 * x[0] + 0.4 * x[1]])


@pytest.mark.parametrize("family", ["P1", "P2"])
@pytest.mark.parametrize("mesh_name", ["disk_with_holes", "jittered_l_shape"])
def test_elasticity_patch_test_reproduces_an_affine_field_exactly(family, mesh_name):
    mesh = disk_with_holes(0.2) if mesh_name == "disk_with_holes" else l_shape(2, jitter=0.25, seed=3)
    space = FunctionSpace(mesh, family, vector=True)
    K_ = elasticity_matrix(space, E=7.0, nu=0.3)
    u = dirichlet_solve(space, K_, np.zeros(space.ndofs), affine_displacement)
    exact = space.interpolate(affine_displacement)
    interior = np.setdiff1d(np.arange(space.ndofs), space.boundary_dofs())
    assert interior.size > 20
    assert np.abs(u - exact).max() < 1e-10


def test_elasticity_p2_is_exact_for_a_quadratic_displacement_with_body_force():
    # u = (x², xy): ε = [[2x, y/2], [y/2, x]], tr ε = 3x, σ = 2μ ε + λ tr ε I, so
    # div σ = (5μ + 3λ, 0) and the body force f = -div σ is constant; P2 contains u.
    E, nu = 7.0, 0.3
    lam, mu = E * nu / ((1 + nu) * (1 - 2 * nu)), E / (2 * (1 + nu))

    def exact(x):
        return np.stack([x[0] ** 2, x[0] * x[1]])

    space = FunctionSpace(disk_with_holes(0.2), "P2", vector=True)
    K_ = elasticity_matrix(space, E, nu)
    for force in [(-(5 * mu + 3 * lam), 0.0), lambda x: np.stack([-(5 * mu + 3 * lam) + 0 * x[0], 0 * x[0]])]:
        u = dirichlet_solve(space, K_, load_vector(space, force), exact)
        assert np.abs(u - space.interpolate(exact)).max() < 1e-10


def test_elasticity_with_varying_youngs_modulus_converges_to_a_known_solution():
    # E = 2 + x, u = (log(2 + x), 0): σ_xx = (λ + 2μ) u_x' is constant, σ_yy = λ u_x' depends on x only,
    # σ_xy = 0, so div σ = 0 for any ν: zero body force, Dirichlet data from u.
    def exact(x):
        return np.stack([np.log(2.0 + x[0]), np.zeros_like(x[0])])

    def young(x):
        return 2.0 + x[0]

    h, l2 = [], []
    for r in [2, 3, 4]:
        space = FunctionSpace(l_shape(r, jitter=0.2, seed=r), "P1", vector=True)
        u = dirichlet_solve(space, elasticity_matrix(space, young, 0.3), np.zeros(space.ndofs), exact)
        h.append(2.0**-r)
        l2.append(l2_error(space, u, exact))
    assert slope(h, l2) == pytest.approx(2.0, abs=0.2)
    # With a constant E the same displacement is no solution: the varying field is really used.
    space = FunctionSpace(l_shape(4, jitter=0.2, seed=4), "P1", vector=True)
    u_const = dirichlet_solve(space, elasticity_matrix(space, 2.5, 0.3), np.zeros(space.ndofs), exact)
    assert l2_error(space, u_const, exact) > 10 * l2[-1]


def test_elasticity_kernel_is_the_rigid_body_motions_and_lame_parameters_are_right():
    lam, mu = lame_parameters(1.0, 0.3)
    assert lam == pytest.approx(0.3 / (1.3 * 0.4)) and mu == pytest.approx(1 / 2.6)
    space = FunctionSpace(disk_with_holes(0.2), "P2", vector=True)
    K_ = elasticity_matrix(space, lambda x: 1.0 + x[0] ** 2, 0.25)
    assert abs(K_ - K_.T).max() < 1e-12
    for mode in (lambda x: np.stack([np.ones_like(x[0]), 0 * x[0]]), lambda x: np.stack([-x[1], x[0]])):
        assert np.abs(K_ @ space.interpolate(mode)).max() < 1e-11
    stretch = space.interpolate(lambda x: np.stack([x[0], 0 * x[0]]))
    assert stretch @ (K_ @ stretch) > 0.1


# ------------------------------------------------------------------ Darcy against finite differences
def darcy_coefficient(x):
    """a = 12 where a smooth field is >= 0, else 3 (a thresholded field as in darcy2d)."""
    z = np.sin(2 * PI * x[0]) * np.sin(3 * PI * x[1]) + 0.4 * np.cos(5 * PI * x[0] * x[1]) - 0.1
    return np.where(z >= 0, 12.0, 3.0)


def darcy_finite_differences(n: int) -> np.ndarray:
    """5-point stencil on the n x n grid of [0,1]² (boundary included), harmonic face averages of a."""
    h = 1.0 / (n - 1)
    g = np.linspace(0.0, 1.0, n)
    a = darcy_coefficient(np.stack(np.meshgrid(g, g, indexing="ij")))
    m = n - 2
    index = np.arange(m * m).reshape(m, m)
    centre = a[1:-1, 1:-1]
    rows, cols, vals = [index.ravel()], [index.ravel()], []
    diagonal = np.zeros((m, m))
    for di, dj in [(1, 0), (-1, 0), (0, 1), (0, -1)]:
        neighbour = a[1 + di : n - 1 + di, 1 + dj : n - 1 + dj]
        face = 2 * centre * neighbour / (centre + neighbour)
        diagonal += face
        i, j = np.meshgrid(np.arange(m), np.arange(m), indexing="ij")
        i2, j2 = i + di, j + dj
        ok = (i2 >= 0) & (i2 < m) & (j2 >= 0) & (j2 < m)
        rows.append(index[ok])
        cols.append(index[i2[ok], j2[ok]])
        vals.append(-face[ok])
    vals.insert(0, diagonal.ravel())
    A = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(m * m, m * m))
    u = np.zeros((n, n))
    u[1:-1, 1:-1] = spla.spsolve((A / h**2).tocsc(), np.ones(m * m)).reshape(m, m)
    return u


def test_darcy_fem_agrees_with_an_independent_finite_difference_solve():
    exact_coefficient, grid_coefficient = [], []
    for n in [32, 64, 128]:
        space = FunctionSpace(unit_square(n), "P1")
        grid = np.linspace(0.0, 1.0, n)
        sampler = GridSampler(space, grid, grid)
        assert sampler.exact_nodes.all()
        b, dofs = load_vector(space, 1.0), space.boundary_dofs()
        u_fd = darcy_finite_differences(n)
        # (1) a evaluated at the quadrature points (the continuous coefficient).
        u_fem = sampler(solve_direct(condense_dirichlet(diffusion_matrix(space, darcy_coefficient), b, dofs)))
        exact_coefficient.append(np.linalg.norm(u_fem - u_fd) / np.linalg.norm(u_fd))
        # (2) the darcy2d input path: a on the grid -> vertices -> harmonic mean per element.
        a_grid = darcy_coefficient(np.stack(np.meshgrid(grid, grid, indexing="ij")))
        a_elements = element_means(space.mesh, grid_to_vertices(space.mesh, a_grid, grid, grid))
        allowed = np.array([3.0, 12.0, 3 / (2 / 3 + 1 / 12), 3 / (1 / 3 + 2 / 12)])  # 3 vertices of 3 or 12
        assert np.isclose(a_elements[:, None], allowed).any(axis=1).all()
        system = condense_dirichlet(diffusion_matrix(space, a_elements, at="elements"), b, dofs)
        u_fem = sampler(solve_direct(system))
        grid_coefficient.append(np.linalg.norm(u_fem - u_fd) / np.linalg.norm(u_fd))
    for differences in (exact_coefficient, grid_coefficient):
        assert differences[0] > differences[1] > differences[2]
        assert differences[2] < 0.02
    assert grid_coefficient[2] < 0.01


def test_grid_fields_map_onto_vertices_and_elements():
    mesh = unit_square(6)
    grid = np.linspace(0, 1, 6)
    gx, gy = np.meshgrid(grid, grid, indexing="ij")
    values = 1 + gx + 10 * gy
    vertex = grid_to_vertices(mesh, np.stack([values, 2 * values]), grid, grid)
    assert vertex.shape == (2, 36)
    assert np.allclose(vertex[0], 1 + mesh.p[0] + 10 * mesh.p[1], atol=1e-14)
    corners = vertex[0][mesh.t]
    assert np.allclose(element_means(mesh, vertex[0], mean="arithmetic"), corners.mean(axis=0))
    assert np.allclose(element_means(mesh, vertex)[1], 2 * 3 / (1 / corners).sum(axis=0))
    with pytest.raises(ValueError, match="coincide"):
        grid_to_vertices(mesh, np.ones((5, 5)), grid[:5], grid[:5])


# ------------------------------------------------------------------ exactness and identities
@pytest.mark.parametrize("robin", [0.0, 3.0])
def test_neumann_and_robin_data_give_the_exact_quadratic_with_p2(robin):
    # u = x² + y, -Δu = -2; on x = 1: ∂u/∂n + α u = 2 + α(1 + y); Dirichlet elsewhere.
    def exact(x):
        return x[0] ** 2 + x[1]

    space = FunctionSpace(rectangle(np.array([0.0, 0.3, 0.45, 0.8, 1.0]), np.array([0.0, 0.2, 0.7, 1.0])), "P2")
    right = space.facet_basis(space.boundary_facets(lambda x: np.isclose(x[0], 1.0)))
    A = diffusion_matrix(space, 1.0)
    b = load_vector(space, -2.0) + boundary_load(right, lambda x: 2.0 + robin * (1.0 + x[1]))
    if robin:
        A = A + boundary_mass(right, robin)
    dofs = space.boundary_dofs(lambda x: ~np.isclose(x[0], 1.0))
    u = solve_direct(condense_dirichlet(A, b, dofs, space.interpolate(exact)[dofs]))
    assert np.abs(u - space.interpolate(exact)).max() < 1e-10


@pytest.mark.parametrize("family", ["P1", "P2"])
def test_mass_matrix_integrates_the_domain_area(family):
    mesh = disk_with_holes(0.1)
    area = np.abs(signed_areas(mesh.p, mesh.t))  # scikit-fem sorts t: orientation is lost
    exact = PI * (1 - 0.25**2 - 0.2**2 - 0.15**2)
    assert area.sum() == pytest.approx(exact, rel=0.01)  # inscribed polygons of the circles
    scalar = FunctionSpace(mesh, family)
    ones = np.ones(scalar.ndofs)
    assert ones @ mass_matrix(scalar) @ ones == pytest.approx(area.sum(), rel=1e-12)
    vector = FunctionSpace(mesh, family, vector=True)
    ones = np.ones(vector.ndofs)
    assert ones @ mass_matrix(vector) @ ones == pytest.approx(2 * area.sum(), rel=1e-12)


def test_coefficient_locations_agree_and_assembly_is_linear_in_the_coefficient():
    space = FunctionSpace(l_shape(3, jitter=0.2), "P2")
    linear = lambda x: 2.0 + x[0] - 0.5 * x[1]  # noqa: E731  (P1-interpolation is exact for it)
    by_callable = diffusion_matrix(space, linear)
    by_vertices = diffusion_matrix(space, linear(space.mesh.p), at="vertices")
    by_quadrature = diffusion_matrix(space, linear(space.quadrature_points))
    assert abs(by_callable - by_vertices).max() < 1e-12
    assert abs(by_callable - by_quadrature).max() < 1e-12
    rng = np.random.default_rng(0)
    a1, a2 = rng.uniform(1, 2, space.mesh.nelements), rng.uniform(3, 12, space.mesh.nelements)
    K1, K2 = diffusion_matrix(space, a1), diffusion_matrix(space, a2)
    assert abs(diffusion_matrix(space, a1 + a2) - (K1 + K2)).max() < 1e-10
    # A coefficient supported on one element couples only that element's six DOFs.
    single = np.full(space.mesh.nelements, 1e-300)
    single[5] = 1.0
    coo = diffusion_matrix(space, single).tocoo()
    touched = np.unique(coo.row[np.abs(coo.data) > 1e-200])
    assert set(touched) == set(space.basis.element_dofs[:, 5])


def test_new_coefficients_reuse_the_basis(monkeypatch):
    space = FunctionSpace(unit_square(17), "P1")
    built = []
    original = cell_basis.CellBasis.__init__

    def counting_init(self, *args, **kwargs):
        built.append(1)
        original(self, *args, **kwargs)

    monkeypatch.setattr(cell_basis.CellBasis, "__init__", counting_init)
    rng = np.random.default_rng(1)
    matrices = [diffusion_matrix(space, rng.choice([3.0, 12.0], space.mesh.nelements)) for _ in range(4)]
    assert built == []
    assert abs(matrices[0] - matrices[1]).max() > 1.0


def test_error_norms_match_closed_form_integrals():
    # ||sin(πx) sin(πy)||_L2(0,1)² = 1/4 and |.|_H1² = π²/2; the zero function's error is the norm.
    def u(x):
        return np.sin(PI * x[0]) * np.sin(PI * x[1])

    def grad_u(x):
        return PI * np.stack([np.cos(PI * x[0]) * np.sin(PI * x[1]), np.sin(PI * x[0]) * np.cos(PI * x[1])])

    space = FunctionSpace(unit_square(17), "P1")
    zero = np.zeros(space.ndofs)
    assert l2_error(space, zero, u) == pytest.approx(0.5, rel=1e-6)
    assert h1_seminorm_error(space, zero, grad_u) == pytest.approx(PI / np.sqrt(2), rel=1e-6)
    vector = FunctionSpace(space.mesh, "P2", vector=True)
    both = lambda x: np.stack([u(x), 2 * u(x)])  # noqa: E731
    assert l2_error(vector, np.zeros(vector.ndofs), both) == pytest.approx(0.5 * np.sqrt(5), rel=1e-6)
    assert h1_seminorm_error(vector, vector.interpolate(lambda x: np.stack([x[0], -x[1]])), lambda x: np.array(
        [[np.ones_like(x[0]), 0 * x[0]], [0 * x[0], -np.ones_like(x[0])]]
    )) < 1e-12


# ------------------------------------------------------------------ grid sampling
def test_grid_sampling_is_exact_at_nodes_and_for_functions_in_the_space():
    space = FunctionSpace(unit_square(9), "P1")
    grid = np.linspace(0, 1, 9)
    sampler = GridSampler(space, grid, grid)
    u = space.interpolate(lambda x: np.sin(3 * x[0]) * np.exp(x[1]))
    gx, gy = np.meshgrid(grid, grid, indexing="ij")
    assert np.array_equal(sampler(u), np.sin(3 * gx) * np.exp(gy))
    assert sampler(np.stack([u, 2 * u])).shape == (2, 9, 9)
    # P2 on an irregular mesh off the grid reproduces a quadratic; points outside the L are NaN.
    quadratic = lambda x: 1 + x[0] - 2 * x[1] + x[0] * x[1] + 0.5 * x[0] ** 2  # noqa: E731
    space = FunctionSpace(l_shape(2, jitter=0.2), "P2")
    g = np.linspace(-1, 1, 23)
    sampler = GridSampler(space, g, g)
    gx, gy = np.meshgrid(g, g, indexing="ij")
    outside = (gx > 1e-12) & (gy > 1e-12)
    assert np.array_equal(~sampler.inside, outside)
    values = sampler(space.interpolate(quadratic))
    assert np.abs(values[~outside] - quadratic(np.stack([gx, gy]))[~outside]).max() < 1e-12
    assert np.isnan(values[outside]).all()
    vector = FunctionSpace(space.mesh, "P2", vector=True)
    field = GridSampler(vector, g, g)(vector.interpolate(lambda x: np.stack([quadratic(x), x[0]])))
    assert field.shape == (23, 23, 2)
    assert np.abs(field[~outside, 0] - quadratic(np.stack([gx, gy]))[~outside]).max() < 1e-12
    assert np.abs(field[~outside, 1] - gx[~outside]).max() < 1e-12


def test_disk_with_holes_boundary_lies_on_the_circles():
    mesh = disk_with_holes(0.1)
    boundary = mesh.p[:, mesh.boundary_nodes()]
    circles = [((0.0, 0.0), 1.0), ((0.35, 0.2), 0.25), ((-0.4, -0.3), 0.2), ((-0.25, 0.5), 0.15)]
    distance = np.min([np.abs(np.hypot(boundary[0] - c[0], boundary[1] - c[1]) - r) for c, r in circles], axis=0)
    assert distance.max() < 1e-12
    # Every boundary vertex closes its circle's polygon: as many boundary facets as boundary vertices.
    assert mesh.boundary_facets().size == boundary.shape[1]


# ------------------------------------------------------------------ bad input
def test_non_positive_coefficient_is_refused_naming_the_minimum():
    space = FunctionSpace(unit_square(5), "P1")
    a = np.full(space.mesh.nelements, 3.0)
    a[7] = -1.5
    with pytest.raises(ValueError, match=r"minimum value -1.5 \(element 7\)"):
        diffusion_matrix(space, a)
    with pytest.raises(ValueError, match="minimum value 0"):
        diffusion_matrix(space, 0.0)
    vector = FunctionSpace(unit_square(5), "P1", vector=True)
    with pytest.raises(ValueError, match=r"E must be positive; minimum value -1\.8"):
        elasticity_matrix(vector, lambda x: 1.0 - 3.0 * x[0], 0.3)
    with pytest.raises(ValueError, match=r"Poisson ratio nu must lie in \(-1, 0.5\)"):
        elasticity_matrix(vector, 1.0, 0.5)
    with pytest.raises(ValueError, match="fits no location"):
        diffusion_matrix(space, np.ones(3))
    with pytest.raises(ValueError, match="non-finite"):
        diffusion_matrix(space, np.nan)


def test_inverted_and_degenerate_elements_are_refused():
    points = np.array([[0.0, 1.0, 0.0, 1.0], [0.0, 0.0, 1.0, 1.0]])
    triangulation(points, np.array([[0, 1, 2], [1, 3, 2]]).T)  # valid, counter-clockwise
    with pytest.raises(ValueError, match=r"inverted element 1: signed area -5\.000e-01"):
        triangulation(points, np.array([[0, 1, 2], [1, 2, 3]]).T)
    collinear = np.array([[0.0, 1.0, 2.0, 0.0], [0.0, 1.0, 2.0, 1.0]])
    with pytest.raises(ValueError, match=r"degenerate element 0: area 0\.000e\+00"):
        triangulation(collinear, np.array([[0, 1, 2], [0, 1, 3]]).T)
    with pytest.raises(ValueError, match="degenerate element 1"):
        FunctionSpace(MeshTri(collinear, np.array([[0, 1, 3], [0, 1, 2]]).T), "P1")
    with pytest.raises(ValueError, match="jitter"):
        l_shape(2, jitter=0.6)


def test_unknown_element_family_is_refused_naming_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown element family 'P3'; valid families: \['P1', 'P2'\]"):
        element("P3")
    with pytest.raises(ValueError, match="'Q1'"):
        FunctionSpace(unit_square(3), "Q1")
