"""Solvers that cannot certify a time tolerance say so and why: SPH in its files, ``--rtol`` refused
in one line naming the reason, and ``pdebench list`` showing which solvers certify."""

from __future__ import annotations

import json

import pytest

from pdebench.problems import PROBLEMS
from pdebench.solvers import SOLVERS
from pdebench.solvers.base import uncertified_reason
from pdebench.solvers.sph.solver import SPHSolver


def test_sph_records_that_it_is_not_certified_and_why():
    problem = PROBLEMS.build("tgv2d", resolution=8, t_final=0.01, n_out=1)
    samples = SPHSolver().solve(problem, problem.sample_initial_conditions(0, [0]), [[0, 0]])
    estimate = samples.provenance["error_estimate"]
    assert estimate["method"] == "none" and estimate["certified"] is False
    assert "particle count and the smoothing length" in estimate["reason"]


def test_a_default_finite_volume_run_says_it_is_not_certified():
    from pdebench.solvers.fv.solver import FVSolver

    problem = PROBLEMS.build("mppde_e1", nx=32, t_final=0.05, n_out=2)
    u0 = problem.sample_initial_conditions(0, [0])
    estimate = FVSolver().solve(problem, u0, [[0, 0]]).provenance["error_estimate"]
    assert estimate["certified"] is False and "shocks" in estimate["reason"]


def test_which_solvers_certify():
    reasons = {name: uncertified_reason(SOLVERS.get(name)) for name in SOLVERS.available()}
    assert reasons["spectral"] is None and reasons["fv-weno"] is None
    assert reasons["sph"] == SPHSolver.no_time_certificate
    assert {reasons[name] for name in ("fem", "fem-mesh", "fem-mesh-darcy")} == {"steady, no time error"}


def test_list_shows_the_certificate_column(capsys):
    from pdebench.cli import main

    assert main(["list", "solvers", "--format", "json"]) == 0
    rows = {entry["name"]: entry["certifies_rtol"] for entry in json.loads(capsys.readouterr().out)["solvers"]}
    assert rows["spectral"] == "yes, by default 1e-06" and rows["fv-weno"] == "yes, when asked (--rtol)"
    assert rows["sph"].startswith("no: weakly compressible SPH converges only")
    assert rows["fem"] == "no: steady, no time error"


@pytest.mark.parametrize(("problem", "needle"), [
    ("darcy2d", "--rtol: darcy2d's solver 'fem' cannot certify a time tolerance: steady, no time error"),
    ("poiseuille2d", "--rtol: poiseuille2d's solver 'sph' cannot certify a time tolerance: weakly compressible SPH"),
])
def test_rtol_is_refused_with_the_reason(problem, needle, tmp_path, capsys):
    from pdebench.cli import main

    assert main(["generate", problem, "--rtol", "1e-6", "-n", "2", "-o", str(tmp_path / "x.h5")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("pdebench: error: ") and needle in err, err
    assert not (tmp_path / "x.h5").exists()
