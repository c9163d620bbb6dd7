"""One registry for problems, solvers and models: validated construction, LightningCLI-style specs."""

from __future__ import annotations

import pytest

from pdebench.problems import PROBLEMS
from pdebench.models import MODELS, register_model
from pdebench.registry import RecordEntry, Registry, RegistryError
from pdebench.solvers import SOLVERS, SpectralSolver


def test_catalogue_has_the_required_problems():
    required = {"advection1d", "heat1d", "burgers1d", "kdv1d", "ks1d", "reaction_diffusion1d", "ns2d", "ns2d_kolmogorov"}
    assert required <= set(PROBLEMS.available())


def test_entries_name_the_record_or_the_board_they_are_sorted_by(capsys):
    assert PROBLEMS.get("burgers1d").record == "time-dependent" and PROBLEMS.get("darcy2d").record == "steady"
    assert PROBLEMS.available(record="particles") == ["dam_break2d", "poiseuille2d", "tgv2d"]
    assert SOLVERS.available(record="mesh") == ["fem-mesh", "fem-mesh-darcy"] and SOLVERS.get("sph").record == "particles"
    assert MODELS.get("gp_hm").board == "instance" and "fno" in MODELS.available(board="operator")
    with pytest.raises(RegistryError, match="problem entries have record; got kind"):
        PROBLEMS.available(kind="mesh")
    with pytest.raises(RegistryError, match="model entries have board; got record"):
        MODELS.register("x", record="mesh")
    with pytest.raises(RegistryError, match=r"'x': record must be one of \('time-dependent', 'steady', 'mesh', 'particles'\), got 'grid'"):
        Registry("problem", RecordEntry).register("x", record="grid")(type("X", (), {}))
    with pytest.raises(RegistryError, match="model 'x': board must be one of .*, got 'kind'"):
        register_model("x", board="kind")(type("X", (), {}))
    assert "x" not in MODELS
    from pdebench.cli import main

    assert main(["list", "solvers", "--format", "table"]) == 0 and "┃ record" in capsys.readouterr().out
    assert main(["list", "models", "--format", "table"]) == 0 and "┃ board" in capsys.readouterr().out


def test_build_from_name_and_from_class_path_spec_agree():
    spec = PROBLEMS.spec("burgers1d", nu=0.01, nx=256)
    assert spec == {"class_path": "pdebench.problems.onedim.Burgers1D", "init_args": {"nu": 0.01, "nx": 256}}
    assert PROBLEMS.build(spec) == PROBLEMS.build("burgers1d", nu=0.01, nx=256)
    assert PROBLEMS.build({"class_path": "burgers1d", "init_args": {"nu": 0.01}}).nu == 0.01
    assert isinstance(SOLVERS.build("spectral", dt=1e-3), SpectralSolver)


def test_unknown_names_and_arguments_list_what_is_valid():
    with pytest.raises(RegistryError, match="unknown problem 'navier'; valid problems: advection1d, burgers1d"):
        PROBLEMS.build("navier")
    with pytest.raises(RegistryError, match="no argument 'visc'; valid arguments: .*nu"):
        PROBLEMS.build("burgers1d", visc=0.1)
    with pytest.raises(RegistryError, match=r"argument nu='0.1' is not of type float"):
        PROBLEMS.build("burgers1d", nu="0.1")
    with pytest.raises(RegistryError, match="argument dtype='float16'"):
        SOLVERS.build("spectral", dtype="float16")


def test_coerce_parses_command_line_values_by_type():
    assert PROBLEMS.coerce("burgers1d", "nu", "1e-3") == 1e-3
    assert PROBLEMS.coerce("burgers1d", "nx", "128") == 128
    assert PROBLEMS.coerce("reaction_diffusion1d", "kind", "allen_cahn") == "allen_cahn"
    with pytest.raises(RegistryError, match="expected int"):
        PROBLEMS.coerce("burgers1d", "nx", "12.5")


def test_problem_parameters_are_validated():
    with pytest.raises(ValueError, match="nu \\(viscosity\\) must be positive, got -1"):
        PROBLEMS.build("ns2d", nu=-1.0)
    with pytest.raises(ValueError, match="n_out must be >= 1"):
        PROBLEMS.build("heat1d", n_out=0)
    with pytest.raises(ValueError, match="resolution must be an even number"):
        PROBLEMS.build("ns2d", resolution=7)


@pytest.mark.parametrize("name", ["advection1d", "heat1d", "burgers1d", "kdv1d", "ks1d", "reaction_diffusion1d", "ns2d", "ns2d_kolmogorov"])
def test_every_problem_solves_a_short_horizon_to_finite_values(name):
    problem = PROBLEMS.build(name)
    small = {"nx": 64} if problem.dim == 1 else {"resolution": 16}
    problem = problem.replace(**small, t_final=problem.dt_out * 2, n_out=2)
    if hasattr(problem, "t_warmup"):
        problem = problem.replace(t_warmup=1.0)
    u0 = problem.sample_initial_conditions(0, range(2))
    out = SOLVERS.build(problem.solver).solve(problem, u0)
    field = out.fields[problem.field_name]
    assert field.shape == (2, 3, *problem.spatial_shape)
    assert bool(field.isfinite().all()) and torch_close(field[:, 0], u0) == (name != "ks1d")


def torch_close(a, b) -> bool:
    import torch

    return bool(torch.allclose(a, b.to(a.dtype), atol=1e-12))
