"""Unstructured-mesh problems (poisson, helmholtz, elasticity2d) and their solver "fem-mesh": exact and
manufactured solutions, discrete equations, rigid-body modes and equilibrium, files, CLI, workers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pdebench.cli import main
from pdebench.data.generate import build_solver, generate_dataset, solve_samples
from pdebench.io.mesh_file import MeshDataset
from pdebench.data.spill import spill_stream
from pdebench.data.workers import WorkerConfig
from pdebench.problems import PROBLEMS
from pdebench.problems.mesh_problems import domain_mesh
from pdebench.solvers import SOLVERS, MeshFEMSolver
from pdebench.solvers.fem import FunctionSpace, helmholtz_matrix, mass_matrix


def sine_bump(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """sin(πx) sin(πy): zero on every side of the L-shape (-1, 1)² minus [0, 1]²."""
    return np.sin(np.pi * x) * np.sin(np.pi * y)


def test_poisson_with_a_manufactured_source_converges_to_the_exact_solution():
    errors = {}
    for element, sizes in (("P1", (0.2, 0.1, 0.05)), ("P2", (0.1,))):
        for h in sizes:
            problem = PROBLEMS.build("poisson", domain="lshape", h=h, element=element)
            x, y = problem.nodes().T
            exact = sine_bump(x, y)
            samples = MeshFEMSolver().solve(problem, {"f": 2 * np.pi**2 * exact[None]})
            assert samples.fields["u"].shape == (1, problem.num_nodes)
            errors[element, h] = np.abs(samples.fields["u"][0].numpy() - exact).max()
    p1 = [errors["P1", h] for h in (0.2, 0.1, 0.05)]
    assert p1[0] > p1[1] > p1[2] and p1[2] < 3e-3, errors
    assert np.all(np.log2(np.array(p1[:-1]) / np.array(p1[1:])) > 1.7), errors  # second order at the nodes
    assert errors["P2", 0.1] < p1[1] / 10, errors


def test_poisson_on_the_disk_with_holes_converges_and_marks_every_boundary_node():
    def exact(x, y):  # vanishes on the outer circle and on the three hole circles
        from pdebench.problems.meshes import DEFAULT_HOLES

        u = 1 - x**2 - y**2
        for (cx, cy), r in DEFAULT_HOLES:
            u = u * ((x - cx) ** 2 + (y - cy) ** 2 - r**2)
        return u

    def minus_laplacian(x, y, d=1e-3):
        return -(exact(x + d, y) + exact(x - d, y) + exact(x, y + d) + exact(x, y - d) - 4 * exact(x, y)) / d**2

    errors = []
    for h in (0.1, 0.05):
        problem = PROBLEMS.build("poisson", domain="disk_holes", h=h)
        x, y = problem.nodes().T
        samples = MeshFEMSolver().solve(problem, {"f": minus_laplacian(x, y)[None]})
        errors.append(np.abs(samples.fields["u"][0].numpy() - exact(x, y)).max() / np.abs(exact(x, y)).max())
        markers = samples.boundary
        parts = np.concatenate([markers["outer"], markers["hole_0"], markers["hole_1"], markers["hole_2"]])
        assert np.array_equal(np.sort(parts), markers["dirichlet"]) and all(len(markers[f"hole_{j}"]) >= 8 for j in range(3))
        assert np.allclose(np.hypot(x[markers["outer"]], y[markers["outer"]]), 1.0)
    assert errors[1] < errors[0] / 3 and errors[1] < 0.05, errors  # second order (0.128, 0.031)


def test_helmholtz_solution_satisfies_the_independently_assembled_system():
    problem = PROBLEMS.build("helmholtz", domain="disk_holes", element="P2", h=0.15)
    inputs = problem.sample_inputs(3, [0, 1])
    samples = solve_samples(problem, build_solver(problem), 3, np.arange(2))
    k = samples.params["k"]
    assert k.shape == (2,) and np.all((4.8 <= k) & (k <= 5.3)) and np.array_equal(k, inputs["k"])
    space = FunctionSpace(domain_mesh("disk_holes", 0.15), "P2")
    mass = mass_matrix(space)
    boundary = samples.boundary["dirichlet"]
    free = np.setdiff1d(np.arange(space.ndofs), boundary)
    for i in range(2):
        u = samples.fields["u"][i].numpy()
        b = mass @ samples.fields["f"][i].numpy()
        residual = (helmholtz_matrix(space, k[i]) @ u - b)[free]
        assert np.linalg.norm(residual) < 1e-9 * np.linalg.norm(b)
        assert np.all(u[boundary] == 0)
        assert np.abs(u).max() > 0


def test_helmholtz_refuses_a_band_near_a_dirichlet_eigenvalue_and_wavenumbers_outside_its_band(tmp_path):
    # The L-shape's first Dirichlet eigenvalue is λ = 9.6397 (k = 3.1048). The discrete spectrum is the
    # solver's: it refuses the band before assembling anything, and generation before writing a file.
    solver = MeshFEMSolver()
    with pytest.raises(ValueError, match=r"eigenvalue λ = 9\.\d+ \(k = 3\.1"):
        solver.check(PROBLEMS.build("helmholtz", domain="lshape", k_min=3.0, k_max=3.2))
    near = PROBLEMS.build("helmholtz", domain="lshape", k_min=3.12, k_max=3.13)  # a band inside the gap is not enough
    with pytest.raises(ValueError, match="eigenvalue"):
        solver.solve(near, near.sample_inputs(0, [0]))
    with pytest.raises(ValueError, match="eigenvalue"):
        generate_dataset(near, tmp_path / "near.h5", num_samples=1)
    assert not list(tmp_path.iterdir())
    with pytest.raises(ValueError, match="k_min < k_max"):
        PROBLEMS.build("helmholtz", k_min=3.6, k_max=3.4)
    problem = PROBLEMS.build("helmholtz", domain="lshape", k_min=2.0, k_max=2.5)  # below the first eigenvalue
    assert problem.band == (2.0, 2.5) and problem.params()["k_max"] == 2.5
    inputs = problem.sample_inputs(0, [0])
    with pytest.raises(ValueError, match=r"band \[2, 2.5\]"):
        MeshFEMSolver().solve(problem, {**inputs, "k": np.array([3.105])})


def test_elasticity_stiffness_has_the_rigid_body_modes_and_the_reactions_balance_the_traction():
    problem = PROBLEMS.build("elasticity2d", domain="lshape", h=0.2, traction=0.5, log_std=1.0)
    inputs = problem.sample_inputs(7, [0])
    assert inputs["E"].shape == (1, problem.num_nodes) and np.all(inputs["E"] > 0)
    solver = MeshFEMSolver()
    (K, b), = solver.assemble(problem, inputs)
    disc = solver.discretisation(problem)
    ux, uy = disc.components
    x, y = problem.nodes().T
    for mode in ((np.ones_like(x), 0 * x), (0 * x, np.ones_like(x)), (-y, x)):
        r = np.zeros(K.shape[0])
        r[ux], r[uy] = mode
        assert np.linalg.norm(K @ r) < 1e-10 * abs(K).max() * np.linalg.norm(r)
    # The loaded side x = 1, -1 <= y <= 0 has length 1: total load (0, -traction).
    assert np.isclose(b[uy].sum(), -0.5) and np.allclose(b[ux], 0)
    samples = solver.solve(problem, inputs)
    u = samples.fields["u"][0].numpy()
    assert u.shape == (problem.num_nodes, 2) and np.all(u[samples.boundary["dirichlet"]] == 0)
    assert np.allclose(x[samples.boundary["dirichlet"]], -1) and np.allclose(x[samples.boundary["traction"]], 1)
    vector = np.zeros(K.shape[0])
    vector[ux], vector[uy] = u[:, 0], u[:, 1]
    reaction = K @ vector - b
    clamped = solver.discretisation(problem).dirichlet
    free = np.setdiff1d(np.arange(K.shape[0]), clamped)
    assert np.abs(reaction[free]).max() < 1e-10 * np.abs(b).max()
    assert np.isclose(reaction[np.intersect1d(clamped, uy)].sum(), 0.5)  # the clamp holds the load up
    assert np.isclose(reaction[np.intersect1d(clamped, ux)].sum(), 0, atol=1e-10)
    assert u[:, 1].min() < 0  # the loaded arm bends down


def test_elasticity_patch_test_reproduces_a_linear_displacement_with_constant_modulus():
    for element in ("P1", "P2"):
        problem = PROBLEMS.build("elasticity2d", domain="rectangle", h=0.2, element=element, log_std=0.0, E0=3.0)
        inputs = problem.sample_inputs(0, [0])
        assert np.allclose(inputs["E"], 3.0)
        solver = MeshFEMSolver()
        (K, _), = solver.assemble(problem, inputs)
        ux, uy = solver.discretisation(problem).components
        x, y = problem.nodes().T
        exact = np.zeros(K.shape[0])
        exact[ux], exact[uy] = 0.01 + 0.2 * x - 0.1 * y, -0.03 + 0.05 * x + 0.3 * y
        space = FunctionSpace(problem.mesh(), element, vector=True)
        boundary = space.boundary_dofs()
        free = np.setdiff1d(np.arange(K.shape[0]), boundary)
        from pdebench.solvers.fem import condense_dirichlet, solve_direct

        u = solve_direct(condense_dirichlet(K, np.zeros(K.shape[0]), boundary, exact[boundary]))
        assert np.abs(u - exact)[free].max() < 1e-12


def test_samples_regenerate_alone_and_are_the_same_function_at_every_mesh_size():
    problem = PROBLEMS.build("elasticity2d")
    batch = problem.sample_inputs(4, [0, 1, 2])
    assert np.array_equal(batch["E"][1:2], problem.sample_inputs(4, [1])["E"])
    assert not np.allclose(batch["E"][0], batch["E"][1])
    coarse, fine = PROBLEMS.build("poisson", h=0.2), PROBLEMS.build("poisson", h=0.1)
    n = len(coarse.mesh().p.T)  # uniform refinement keeps the coarse vertices first
    assert np.array_equal(fine.nodes()[:n], coarse.nodes())
    assert np.allclose(fine.sample_inputs(1, [5])["f"][:, :n], coarse.sample_inputs(1, [5])["f"], rtol=0, atol=1e-12)
    assert PROBLEMS.build("poisson", amplitude=2.0).mesh() is PROBLEMS.build("poisson").mesh()


def test_solver_is_registered_and_reuses_the_discretisation_across_coefficient_changes():
    solver = SOLVERS.build("fem-mesh")
    assert isinstance(solver, MeshFEMSolver)
    a, b = PROBLEMS.build("helmholtz", amplitude=1.0), PROBLEMS.build("helmholtz", amplitude=5.0, k_min=3.4)
    assert solver.discretisation(a) is solver.discretisation(b)
    assert solver.discretisation(a) is solver.discretisation(PROBLEMS.build("poisson"))
    assert solver.discretisation(a) is not solver.discretisation(PROBLEMS.build("elasticity2d"))
    samples = solve_samples(a, solver, 0, np.arange(2))
    assert samples.provenance["solver"] == "fem-mesh" and samples.provenance["method"] == "direct"
    assert samples.provenance["dofs"] == a.num_nodes and samples.provenance["wall_time_s"] > 0
    with pytest.raises(ValueError, match="missing \\['k'\\]"):
        solver.solve(a, {"f": np.zeros((1, a.num_nodes))})
    with pytest.raises(ValueError, match="expected \\(1, 833\\)"):
        solver.solve(a, {"f": np.zeros((1, 5)), "k": np.array([3.5])})
    elastic = PROBLEMS.build("elasticity2d")
    with pytest.raises(ValueError, match="E must be positive"):
        solver.solve(elastic, {"E": -np.ones((1, elastic.num_nodes))})


@pytest.mark.parametrize(
    "name, args, message",
    [
        ("poisson", {"domain": "square"}, "unknown domain 'square'"),
        ("elasticity2d", {"domain": "disk_holes"}, "unknown domain 'disk_holes'"),
        ("elasticity2d", {"E0": 0.0}, "E0 must be positive"),
        ("elasticity2d", {"nu": 0.5}, "nu must lie in"),
        ("helmholtz", {"element": "P3"}, "unknown element 'P3'"),
        ("poisson", {"h": 0.0}, "mesh size h"),
        ("poisson", {"length_scale": -1.0}, "length_scale"),
    ],
)
def test_bad_parameters_raise_naming_the_value(name, args, message):
    with pytest.raises(ValueError, match=message):
        PROBLEMS.build(name, **args)


def test_generated_files_round_trip_to_graphs_and_rows_regenerate_alone(tmp_path):
    for name, args, channels in (("helmholtz", {"domain": "disk_holes", "h": 0.15}, 1),
                                 ("elasticity2d", {"h": 0.2, "element": "P2"}, 2)):
        problem = PROBLEMS.build(name, **args)
        path = tmp_path / f"{name}.h5"
        summary = generate_dataset(problem, path, num_samples=5, seed=9, batch_size=2)
        n = problem.num_nodes
        assert summary.num_samples == 5 and summary.solver == "fem-mesh" and summary.field_shapes["u"][:2] == (5, n)
        with MeshDataset(path) as data:
            assert len(data) == 5 and data.mesh.element == args.get("element", "P1")
            assert np.array_equal(data.mesh.nodes, problem.nodes()) and data.sample_ids().tolist() == [[9, i] for i in range(5)]
            assert "dirichlet" in data.mesh.boundary and data.provenance["problem"] == name
            assert data.provenance["dofs"] == channels * n and data.provenance["problem_params"]["h"] == args["h"]
            input_name = "E" if name == "elasticity2d" else "f"
            assert data.fields[input_name] == (5, n) and data.fields["u"] == ((5, n) if channels == 1 else (5, n, 2))
            graph = data.to_pyg(3, [input_name], ["u"])
            assert graph.x.shape == (n, 2) and graph.y.shape == (n, channels) and graph.pos.shape == (n, 2)
            assert graph.edge_index.shape[0] == 2 and graph.edge_index.max() == n - 1
            again = solve_samples(problem, build_solver(problem), 9, np.array([3]))
            row = data.sample(3)
            assert np.array_equal(row["fields"]["u"], again.fields["u"][0].numpy().astype(np.float32))
            if name == "helmholtz":
                assert data.params["k"].shape == (5,) and row["params"]["k"] == again.params["k"][0]
                assert graph.params.shape == (1, 1)


def test_cli_generates_a_mesh_file_and_refuses_bad_parameters_without_writing(tmp_path):
    path = tmp_path / "p.h5"
    assert main(["generate", "poisson", "-n", "8", "-o", str(path), "--set", "domain=disk_holes"]) == 0
    with MeshDataset(path) as data:
        assert len(data) == 8 and data.fields["f"][0] == 8 and set(data.mesh.boundary) >= {"dirichlet", "outer", "hole_0"}
        assert data.provenance["domain"] == "disk_holes"
    for setting in ("domain=square", "element=P3", "h=-0.1"):
        bad = tmp_path / "bad.h5"
        assert main(["generate", "poisson", "-n", "2", "-o", str(bad), "--set", setting]) == 2
        assert not bad.exists()
    bad = tmp_path / "bad.h5"
    assert main(["generate", "elasticity2d", "-n", "2", "-o", str(bad), "--set", "E0=-1"]) == 2
    assert not bad.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["p.h5"]


def test_workers_carry_nodal_fields_and_params_and_spilling_mesh_streams_is_refused(tmp_path):
    config = WorkerConfig("helmholtz", {"h": 0.2}, seed=2, batch_size=3)
    problem = PROBLEMS.build("helmholtz", h=0.2)
    batch = config.solve(problem, build_solver(problem), (3, 6), worker=0)
    assert batch.fields["u"].shape == (3, problem.num_nodes) and batch.fields["u"].dtype == np.float32
    assert batch.params["k"].shape == (3,) and batch.sample_ids.tolist() == [[2, 3], [2, 4], [2, 5]]
    direct = solve_samples(problem, build_solver(problem), 2, np.arange(3, 6))
    assert torch.equal(torch.from_numpy(batch.fields["u"]), direct.fields["u"].float())
    with pytest.raises(ValueError, match="not supported yet"):
        spill_stream([batch], problem, tmp_path / "s.h5")
    assert not (tmp_path / "s.h5").exists()


def test_a_singular_sample_raises_or_is_dropped(monkeypatch):
    from pdebench.solvers import BlowUpError
    from pdebench.solvers.fem import mesh_solver

    problem = PROBLEMS.build("helmholtz", h=0.2)
    inputs = problem.sample_inputs(0, [0, 1, 2])
    real_splu, calls = mesh_solver.spla.splu, []

    def splu(matrix):  # the second sample's system is "exactly singular"
        calls.append(1)
        if len(calls) % 3 == 2:
            raise RuntimeError("Factor is exactly singular")
        return real_splu(matrix)

    monkeypatch.setattr(mesh_solver.spla, "splu", splu)
    ids = np.array([[0, 0], [0, 1], [0, 2]])
    with pytest.raises(BlowUpError, match=r"\(0, 1\)"):
        MeshFEMSolver().solve(problem, inputs, ids)
    kept = MeshFEMSolver().solve(problem, inputs, ids, on_blowup="drop")
    assert kept.sample_ids.tolist() == [[0, 0], [0, 2]] and kept.provenance["dropped"] == 1
    assert kept.fields["u"].shape == (2, problem.num_nodes) and kept.params["k"].tolist() == inputs["k"][[0, 2]].tolist()
