"""A trained operator as the CG start of the generator that made its data: same tolerance, so the same
accuracy; the provenance names the checkpoint; a checkpoint of another problem is refused in one line."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from pdebench.data.generate import generate_dataset
from pdebench.io.trajectory_file import TrajectoryFile
from pdebench.models.learned_ic import LearnedIC, learned_ic_preconditioner, save_learned_ic
from pdebench.problems import PROBLEMS
from pdebench.solvers.fv.elliptic import FVEllipticSolver, elliptic_system
from pdebench.solvers.linalg import pcg
from pdebench.training.acceleration import OperatorGuess, ReloadingOperatorGuess, operator_guess, solver_acceleration
from tests.cli_runs import assert_one_line_refusal, pdebench_cli
from tests.evaluation.test_leaderboard import tiny_checkpoint  # noqa: F401 - the fixture
from tests.training.helpers import ROOT, train_cli

TOL = 1e-8


def true_residuals(coefficients: torch.Tensor, solutions: torch.Tensor, problem) -> np.ndarray:
    """``||b - A u|| / ||b||`` of every sample, recomputed from its coefficient and solution ``(B, 1, *grid)``."""
    out = []
    for ai, ui in zip(coefficients[:, 0].double().numpy(), solutions[:, 0].double().numpy()):
        A, b = elliptic_system(ai, problem.forcing)
        out.append(np.linalg.norm(b - A @ ui[1:-1, 1:-1, 1:-1].ravel()) / np.linalg.norm(b))
    return np.array(out)


class NearSolution:
    """A stand-in operator: the exact discrete solution times (1 + 1e-4 sin): a guess as good as a trained model's."""

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        problem = PROBLEMS.build("darcy3d", resolution=x.shape[-1])
        exact = FVEllipticSolver(method="direct").solve(problem, x[:, 0].double()).fields["tensor"]
        return (exact * (1 + 1e-4 * torch.sin(torch.arange(exact.numel()).reshape(exact.shape)))).float()


def test_a_warm_start_from_an_operator_keeps_the_tolerance_and_saves_iterations():
    problem = PROBLEMS.build("darcy3d", resolution=12)
    inputs, ids = problem.sample_inputs(5, range(3)), [(5, i) for i in range(3)]
    cold = FVEllipticSolver(method="ic0-pcg", tol=TOL).solve(problem, inputs, ids)
    warm = FVEllipticSolver(method="ic0-pcg", tol=TOL, initial_guess=OperatorGuess(NearSolution(), "near")).solve(problem, inputs, ids)
    for traj in (cold, warm):  # the tolerance, on the true residual of the float64 solutions
        assert (true_residuals(traj.fields["nu"], traj.fields["tensor"], problem) <= TOL).all()
    assert warm.provenance["warm_start"] and warm.provenance["warm_start_from"] == "near" and not cold.provenance["warm_start"]
    cold_it, warm_it = np.array(cold.provenance["iterations_per_sample"]), np.array(warm.provenance["iterations_per_sample"])
    assert (warm_it < 0.7 * cold_it).all(), (cold_it, warm_it)  # a guess good to 1e-4 saves over 30 %


@pytest.fixture(scope="module")
def darcy3d_fno(tmp_path_factory) -> Path:
    """A tiny FNO trained by ``train.py`` for 2 epochs on 12 darcy3d pairs at resolution 10 (about 15 s)."""
    folder = tmp_path_factory.mktemp("darcy3d_fno")
    data = folder / "train.h5"
    generate_dataset(PROBLEMS.build("darcy3d", resolution=10), data, num_samples=12, seed=1)
    train_cli(["fit", "--config", str(ROOT / "configs/darcy2d/fno.yaml"), "--data.init_args.path", str(data),
               "--data.init_args.batch_size", "4", "--trainer.max_epochs", "2",
               "--model.model_args", "{n_modes: 4, hidden_channels: 8, n_layers: 2}"], folder)
    (checkpoint,) = folder.glob("outputs/*/checkpoints/last.ckpt")
    return checkpoint


def test_generate_accelerate_starts_from_a_trained_fno_and_names_it(tmp_path, tiny_checkpoint, darcy3d_fno):  # noqa: F811
    checkpoint = darcy3d_fno
    out = tmp_path / "accelerated.h5"
    result = pdebench_cli(["generate", "darcy3d", "-n", "3", "--seed", "9", "--set", "resolution=10", "-o", str(out),
                           "--solver-set", "method=amg-pcg", "--accelerate", str(checkpoint)], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    with TrajectoryFile(out) as file:
        assert file.provenance["warm_start_from"] == str(checkpoint) and file.provenance["method"] == "amg-pcg"
        assert len(file.provenance["iterations_per_sample"]) == 3
        stored = file.read().fields
    problem = PROBLEMS.build("darcy3d", resolution=10)  # the stored (float32) solutions are the direct solve's
    exact = FVEllipticSolver(method="direct").solve(problem, stored["nu"][:, 0].double()).fields["tensor"]
    torch.testing.assert_close(stored["tensor"].double(), exact, rtol=0, atol=1e-6 * float(exact.abs().max()))

    refused = pdebench_cli(["generate", "darcy3d", "-n", "2", "--set", "resolution=10", "-o", str(tmp_path / "x.h5"),
                            "--accelerate", str(tiny_checkpoint)], tmp_path)
    assert_one_line_refusal(refused, str(tiny_checkpoint), "'burgers1d'", "darcy3d")
    assert not (tmp_path / "x.h5").exists()


def test_acceleration_is_refused_for_a_solver_without_cg_solves(tmp_path, tiny_checkpoint):  # noqa: F811
    with pytest.raises(ValueError, match="takes no initial_guess"):
        solver_acceleration([tiny_checkpoint], PROBLEMS.build("burgers1d", nx=64, n_out=1))
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        solver_acceleration([tmp_path / "missing.ckpt"], PROBLEMS.build("darcy3d"))


def test_a_learned_ic_checkpoint_preconditions_the_generators_cg(tmp_path):
    """A learned IC file becomes the solver's preconditioner: the same iterations as pcg with that M by hand,
    every solve to the tolerance; two of one kind are refused."""
    torch.manual_seed(0)
    network = LearnedIC(width=4, layers=1)
    for head in (network.lower_head, network.diagonal_head):  # a trained-looking network, not the zero-head start
        torch.nn.init.normal_(head.weight, std=0.3)
    path = save_learned_ic(tmp_path / "lic.pt", network)
    problem = PROBLEMS.build("darcy3d", resolution=10)
    kwargs = solver_acceleration([path], problem)
    assert set(kwargs) == {"preconditioner"}
    inputs = problem.sample_inputs(3, range(2))
    traj = FVEllipticSolver(tol=TOL, **kwargs).solve(problem, inputs, [(3, 0), (3, 1)])
    assert traj.provenance["method"] == "pcg" and traj.provenance["preconditioner"] == "learned_ic"
    assert traj.provenance["preconditioner_from"] == str(path)
    assert (true_residuals(traj.fields["nu"], traj.fields["tensor"], problem) <= TOL).all()
    by_hand = []
    for a in inputs.numpy():
        A, b = elliptic_system(a, problem.forcing)
        by_hand.append(pcg(A, b, learned_ic_preconditioner(network, A), tol=TOL, maxiter=1000).iterations)
    assert traj.provenance["iterations_per_sample"] == by_hand
    with pytest.raises(ValueError, match="second preconditioner"):
        solver_acceleration([path, path], problem)


def next_version(source: Path, destination: Path, scale: float | None = None) -> None:
    """Write ``source`` (its weights times ``scale``: another model) over ``destination`` as the training CLI
    does (a complete file replaces the old one), with a modification time after the old one's."""
    before = destination.stat().st_mtime_ns if destination.exists() else 0
    temporary = destination.with_suffix(".tmp")
    if scale is None:
        shutil.copyfile(source, temporary)
    else:
        checkpoint = torch.load(source, map_location="cpu", weights_only=True)
        checkpoint["state_dict"] = {k: v * scale if v.is_floating_point() else v for k, v in checkpoint["state_dict"].items()}
        torch.save(checkpoint, temporary)
    os.replace(temporary, destination)
    os.utime(destination, ns=(before + 10**9, before + 10**9))


def test_a_reloading_guess_starts_cold_and_pickles_without_its_model(tmp_path, darcy3d_fno):
    """Before training saved a checkpoint the guess is zero and CG runs exactly its cold solve; pickled
    (as a spawned worker receives it) it carries the path and counters only."""
    problem = PROBLEMS.build("darcy3d", resolution=10)
    inputs, ids = problem.sample_inputs(4, range(2)), [(4, 0), (4, 1)]
    path = tmp_path / "last.ckpt"
    guess = ReloadingOperatorGuess(path, every_samples=3, problem="darcy3d")
    assert torch.equal(guess(inputs), torch.zeros(inputs.shape, dtype=torch.float64)) and guess.loads == 0
    assert guess.source == f"{path} (not saved yet)"
    warm = FVEllipticSolver(method="amg-pcg", tol=TOL, initial_guess=guess).solve(problem, inputs, ids)
    cold = FVEllipticSolver(method="amg-pcg", tol=TOL).solve(problem, inputs, ids)
    assert warm.provenance["iterations_per_sample"] == cold.provenance["iterations_per_sample"]
    assert warm.provenance["warm_start_from"] == f"{path} (not saved yet)"
    next_version(darcy3d_fno, path)
    guess(inputs)
    assert guess.loads == 1 and guess._guess is not None
    state = pickle.loads(pickle.dumps(guess)).__dict__
    assert state["_guess"] is None and state["_mtime"] is None and state["loads"] == 1 and state["path"] == str(path)
    assert len(pickle.dumps(guess)) < 1000  # no weights in it
    worker = pickle.loads(pickle.dumps(guess))  # as a spawned worker gets it: loads its own copy when first called
    torch.testing.assert_close(worker(inputs), operator_guess(path, problem)(inputs))
    assert worker.loads == 2 and worker._guess is not None
    with pytest.raises(ValueError, match="every_samples must be an integer >= 1, got 0"):
        ReloadingOperatorGuess(path, every_samples=0)


def test_a_reloading_guess_reloads_after_k_samples_of_a_changed_file_and_keeps_the_tolerance(tmp_path, darcy3d_fno,
                                                                                            tiny_checkpoint):  # noqa: F811
    problem = PROBLEMS.build("darcy3d", resolution=10)
    inputs = problem.sample_inputs(6, range(2))
    path, other = tmp_path / "last.ckpt", tmp_path / "v2.ckpt"
    next_version(darcy3d_fno, path)
    next_version(darcy3d_fno, other, scale=1.5)
    first, second = operator_guess(path, problem)(inputs), operator_guess(other, problem)(inputs)
    assert not torch.allclose(first, second)
    guess = ReloadingOperatorGuess(path, every_samples=3, problem="darcy3d")
    torch.testing.assert_close(guess(inputs), first)  # loaded lazily at the first call: 2 samples since
    next_version(other, path)
    torch.testing.assert_close(guess(inputs), first)  # the file changed, but only 2 < 3 samples were guessed
    torch.testing.assert_close(guess(inputs), second)  # 4 >= 3 samples: the new file is loaded
    assert guess.loads == 2 and guess.source == f"{path} (reload 2)"
    guess(inputs), guess(inputs)  # 4 samples more, the file unchanged: no reload
    assert guess.loads == 2
    solver = FVEllipticSolver(method="amg-pcg", tol=TOL, initial_guess=guess)
    traj = solver.solve(problem, inputs, [(6, 0), (6, 1)])
    assert (true_residuals(traj.fields["nu"], traj.fields["tensor"], problem) <= TOL).all()
    assert traj.provenance["warm_start_from"] == f"{path} (reload 2)"
    # an unreadable file (cut short) keeps the model loaded before; a checkpoint of another problem is refused
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    os.utime(path, ns=(path.stat().st_mtime_ns + 10**9,) * 2)
    torch.testing.assert_close(guess(inputs), second)
    assert guess.loads == 2
    next_version(tiny_checkpoint, path)
    with pytest.raises(ValueError, match="trained on 'burgers1d'"):
        guess(inputs)


def test_online_training_warm_starts_its_workers_from_its_own_checkpoint(tmp_path):
    """``AcceleratedOnlineDataModule`` from a config: the spawned workers get the guess (it pickles), the
    checkpoints stay tensor-only and are what the guess loads (a darcy3d ``pairs`` operator), and the stream
    report keeps every batch's cost per sample with its CG iterations."""
    import json

    import yaml

    config = yaml.safe_load((ROOT / "configs/darcy3d/fno_online_accelerated.yaml").read_text())
    config["trainer"].update(max_epochs=3, limit_val_batches=1)
    config["model"]["init_args"]["model_args"] = {"n_modes": 3, "hidden_channels": 4, "n_layers": 1}
    config["data"]["init_args"].update(problem_args={"resolution": 8}, reload_every=2, worker_batch_size=2, capacity=16,
                                       watermark=4, samples_per_epoch=8, val_trajectories=2, test_trajectories=2,
                                       calibration_trajectories=2)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    train_cli(["fit", "--config", str(tmp_path / "config.yaml")], tmp_path)
    checkpoint = tmp_path / "outputs/darcy3d_fno_online/checkpoints/last.ckpt"
    problem = PROBLEMS.build("darcy3d", resolution=8)
    inputs = problem.sample_inputs(3, range(2))
    guess = ReloadingOperatorGuess(checkpoint, problem="darcy3d")
    torch.testing.assert_close(guess(inputs), operator_guess(checkpoint, problem)(inputs))
    (record,) = [json.loads(p.read_text()) for p in tmp_path.glob("outputs/**/stream/rank0.json")]
    assert record["costs"] and all(samples == 2 and seconds > 0 and iterations >= 1
                                   for _, samples, seconds, iterations in record["costs"])
