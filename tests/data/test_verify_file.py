"""`pdebench verify FILE`: a clean file passes with tiny errors; a corrupted one is caught and the
report names the samples and frames; a PDEBench-layout Burgers file made by our solver verifies and
fails with a wrong Nu; files it cannot verify, and bad arguments, end in one line and exit 2.

The independent truth: a reference solve at rtol 1e-10 (10^4 times tighter than the files' 1e-6),
checked against the Cole-Hopf solution in tests/solvers/test_spectral_certified.py; corruptions made
by hand, so which samples and frames are wrong is known.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from pdebench.cli import main
from pdebench.data.generate import generate_dataset
from pdebench.data.verify import FIXED_THRESHOLD, NotVerifiable, VerifySettings, verify_file
from pdebench.io.particle_file import ParticleDataWriter
from pdebench.io.trajectory_file import read_trajectories
from pdebench.problems import PROBLEMS
from tests.io.test_particle_file import LOWER, RADIUS, UPPER, make_trajectory

BURGERS = {"nx": 64, "n_out": 10, "t_final": 0.5, "nu": 0.05}


@pytest.fixture(scope="module")
def certified(tmp_path_factory) -> Path:
    """8 burgers1d samples certified to rtol 1e-6."""
    path = tmp_path_factory.mktemp("verify") / "burgers.h5"
    generate_dataset(PROBLEMS.build("burgers1d", **BURGERS), path, num_samples=8, solver_kwargs={"rtol": 1e-6})
    return path


def corrupted(source: Path, tmp_path: Path, edit) -> Path:
    path = tmp_path / f"corrupted_{source.name}"
    shutil.copy(source, path)
    with h5py.File(path, "r+") as file:
        edit(file)
    return path


def test_a_clean_certified_file_verifies(certified, tmp_path, capsys):
    assert main(["verify", str(certified), "-k", "4", "-o", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "verified: 4 of 8 samples" in printed and "4 of 8 samples not re-solved" in printed
    report = json.loads((tmp_path / "out" / "verify.json").read_text())
    assert report["passed"] and [s["row"] for s in report["samples"]] == [0, 2, 5, 7]
    assert report["threshold"] == pytest.approx(1e-5)  # the certified 1e-6 times the safety factor
    errors = np.array([s["errors"] for s in report["samples"]])
    assert errors.shape == (4, 11) and errors.max() < 1e-6  # the certificate holds, measured
    assert errors[:, 0].max() < 1e-7  # frame 0: float32 rounding of the drawn initial condition only
    assert (tmp_path / "out" / "verify_errors.png").stat().st_size > 1000


def test_the_file_names_every_argument_of_its_problem(certified, tmp_path):
    provenance = read_trajectories(certified, rows=[0]).provenance
    assert PROBLEMS.build("burgers1d", **provenance["problem_args"]) == PROBLEMS.build("burgers1d", **BURGERS)

    def forget(file):  # a file written before provenance.problem_args existed
        del file.attrs["provenance.problem_args"]

    report = verify_file(corrupted(certified, tmp_path, forget))
    assert report.passed and report.problem_args == PROBLEMS.build("burgers1d", **BURGERS).arguments()
    assert any("problem_args not stored" in note for note in report.notes)
    assert report.reference["start"] == "the stored frame 0 (float32)"  # the draw needs every argument


def test_swapped_frames_are_named(certified, tmp_path):
    def swap(file):
        rows = file["tensor"][1]
        rows[[3, 7]] = rows[[7, 3]]
        file["tensor"][1] = rows

    report = verify_file(corrupted(certified, tmp_path, swap), VerifySettings(samples=8))
    assert [check.row for check in report.failed] == [1]
    assert report.failed[0].flagged_frames == [3, 7]
    assert "row 1 (0, 1) frames 3, 7" in report.summary()
    assert all(check.max_error < 1e-6 for check in report.samples if check.row != 1)


def test_a_rewritten_parameter_fails_every_frame(certified, tmp_path, capsys):
    path = corrupted(certified, tmp_path, lambda file: file.attrs.__setitem__("Nu", 0.06))
    assert main(["verify", str(path), "-o", str(tmp_path / "out")]) == 1
    printed = capsys.readouterr().out
    assert "attribute Nu = 0.06 disagrees with provenance.problem_args" in printed
    report = json.loads((tmp_path / "out" / "verify.json").read_text())
    assert not report["passed"] and report["failed_rows"] == [0, 2, 5, 7]
    assert all(s["flagged_frames"] == list(range(1, 11)) for s in report["samples"])


def test_an_altered_initial_frame_is_caught(certified, tmp_path):
    def scale(file):
        file["tensor"][2, 0] = 1.01 * file["tensor"][2, 0]

    report = verify_file(corrupted(certified, tmp_path, scale), VerifySettings(samples=8))
    assert [check.row for check in report.failed] == [2]
    assert report.failed[0].flagged_frames == [0]  # the reference starts from the draw: later frames are right
    assert report.failed[0].errors[0] == pytest.approx(0.01, rel=1e-3)
    assert any("frame 0 of row 2 is not the initial condition its id (0, 2) draws" in note for note in report.notes)


def test_swapped_per_sample_parameters_are_caught_in_those_samples(tmp_path):
    # mppde_e2 draws each sample's viscosity and forcing from its id: swapping two ids swaps them
    path = tmp_path / "e2.h5"
    generate_dataset(PROBLEMS.build("mppde_e2", nx=32, n_out=10, t_final=0.4), path, num_samples=4, solver_kwargs={"rtol": 1e-6})
    assert verify_file(path).passed

    def swap(file):
        ids = file["sample_ids"][()]
        ids[[0, 3]] = ids[[3, 0]]
        file["sample_ids"][...] = ids

    report = verify_file(corrupted(path, tmp_path, swap))
    assert [check.row for check in report.failed] == [0, 3]
    assert all(check.flagged_frames == list(range(11)) for check in report.failed)


def write_pdebench_burgers(path: Path, u: np.ndarray, nu_attribute: float) -> Path:
    """PDEBench's 1-D layout: tensor (N, T, X), x-coordinate at cell centres, t-coordinate with T + 1 entries."""
    n, frames, points = u.shape
    with h5py.File(path, "w") as file:
        file["tensor"] = u
        file["x-coordinate"] = ((np.arange(points) + 0.5) / points).astype(np.float32)
        file["t-coordinate"] = (np.arange(frames + 1) * 0.05).astype(np.float32)
        file.attrs["Nu"] = nu_attribute
    return path


def test_a_pdebench_burgers_file_verifies_and_a_wrong_nu_fails(tmp_path):
    # PDEBench's Burgers is u_t + (u^2/2)_x = (Nu/pi) u_xx: our solver at nu = 0.05/pi, stored with Nu = 0.05
    ours = tmp_path / "ours.h5"
    generate_dataset(PROBLEMS.build("burgers1d", **{**BURGERS, "nu": 0.05 / math.pi}), ours, num_samples=4,
                     solver_kwargs={"rtol": 1e-8})
    u = read_trajectories(ours).fields["u"].numpy()
    good = verify_file(write_pdebench_burgers(tmp_path / "1D_Burgers_Sols_Nu0.05.hdf5", u, 0.05))
    assert good.passed and good.layout == "tensor" and good.problem_args["nu"] == pytest.approx(0.05 / math.pi)
    assert good.threshold == FIXED_THRESHOLD and max(c.max_error for c in good.samples) < 1e-6
    assert any("solver settings are unknown" in note for note in good.notes)
    bad = verify_file(write_pdebench_burgers(tmp_path / "wrong.hdf5", u, 0.1))
    assert not bad.passed and len(bad.failed) == 4


def test_a_pdebench_file_without_parameters_takes_them_from_its_name(tmp_path):
    ours = tmp_path / "ours.h5"
    generate_dataset(PROBLEMS.build("advection1d", nx=32, n_out=5, t_final=0.25, beta=0.4), ours, num_samples=2)
    u = read_trajectories(ours).fields["u"].numpy()
    path = tmp_path / "1D_Advection_Sols_beta0.4.hdf5"
    with h5py.File(path, "w") as file:
        file["tensor"] = u
        file["x-coordinate"] = (np.arange(32) + 0.5) / 32
        file["t-coordinate"] = np.arange(7) * 0.05
    report = verify_file(path)
    assert report.passed and report.problem == "advection1d" and report.problem_args["beta"] == 0.4
    assert any("read from the file name" in note for note in report.notes)


def test_a_pdebench_diffusion_reaction_file_verifies(tmp_path):
    # PDEBench's u_t = Nu u_xx + Rho u(1 - u), periodic: our reaction_diffusion1d (fisher) with nu = Nu, rho = Rho
    ours = tmp_path / "ours.h5"
    generate_dataset(PROBLEMS.build("reaction_diffusion1d", nx=64, n_out=5, t_final=0.5, nu=0.005, rho=2.0), ours,
                     num_samples=2, solver_kwargs={"rtol": 1e-8})
    u = read_trajectories(ours).fields["u"].numpy()
    path = tmp_path / "ReacDiff_Nu0.005_Rho2.0.hdf5"
    with h5py.File(path, "w") as file:
        file["tensor"] = u
        file["x-coordinate"] = (np.arange(64) + 0.5) / 64
        file["t-coordinate"] = np.arange(7) * 0.1
        file.attrs["Nu"], file.attrs["Rho"] = 0.005, 2.0
    report = verify_file(path)
    assert report.passed and report.problem == "reaction_diffusion1d" and report.problem_args["kind"] == "fisher"
    with h5py.File(path, "r+") as file:
        file.attrs["Rho"] = 1.0
    assert not verify_file(path).passed


def test_darcy_files_ours_verify_and_pdebench_cell_centres_are_refused(tmp_path):
    ours = tmp_path / "darcy.h5"
    generate_dataset(PROBLEMS.build("darcy2d", resolution=17), ours, num_samples=3)
    report = verify_file(ours)
    assert report.passed and max(c.max_error for c in report.samples) < 1e-6
    data = read_trajectories(ours)
    with h5py.File(tmp_path / "2D_DarcyFlow_beta1.0.hdf5", "w") as file:
        file["nu"], file["tensor"] = data.fields["nu"][:, 0].numpy(), data.fields["tensor"].numpy()
        file["x-coordinate"] = file["y-coordinate"] = (np.arange(17) + 0.5) / 17
        file.attrs["beta"] = 1.0
    with pytest.raises(NotVerifiable, match="cell centres exclude the boundary"):
        verify_file(tmp_path / "2D_DarcyFlow_beta1.0.hdf5")


def test_files_it_cannot_verify_say_why_with_exit_2(tmp_path, capsys):
    particles = tmp_path / "sph.h5"
    with ParticleDataWriter(particles, lower=LOWER, upper=UPPER, radius=RADIUS) as writer:
        writer.append([make_trajectory(0, 0, n=12, t=3)])
    unknown = tmp_path / "unknown.h5"
    with h5py.File(unknown, "w") as file:
        file["something"] = np.zeros(3)
    fv = tmp_path / "e1.h5"
    generate_dataset(PROBLEMS.build("mppde_e1", nx=16, n_out=4, t_final=0.2), fv, num_samples=1)
    mat = tmp_path / "ns_V1e-3_N5000_T50.mat"
    mat.write_bytes(b"MATLAB 5.0 MAT-file")
    expected = {particles: "not verifiable: SPH particle file", unknown: "unknown layout",
                fv: "'fv-weno', whose certified stepping stops at the shocks", mat: "FNO .mat files are not read"}
    for path, message in expected.items():
        assert main(["verify", str(path), "-o", str(tmp_path / "never")]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize("argv, message", [
    (["missing.h5"], "no such file"),
    (["{file}", "-k", "0"], "-k (samples to re-solve) must be an integer >= 1, got 0"),
    (["{file}", "--rtol", "0"], "--rtol must be a number in [1e-12, 1)"),
    (["{file}", "--rtol", "nan"], "got nan"),
    (["{file}", "--rtol", "1e-13"], "got 1e-13"),
    (["{file}", "--threshold", "-1"], "--threshold must be a positive finite number"),
])
def test_bad_input_is_one_line_and_exit_2(certified, tmp_path, capsys, argv, message):
    argv = [item.format(file=certified) for item in argv]
    if argv[0] == "missing.h5":
        argv[0] = str(tmp_path / "missing.h5")
    assert main(["verify", *argv, "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("pdebench: error:") and message in err, err
    assert not (tmp_path / "out").exists()
