"""The leaderboard: reference and ladder numerics, an end-to-end tiny suite, failures, atomic files."""

from __future__ import annotations

import pdebench.atomic

import json
import math
import subprocess
import sys
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import torch

from pdebench.data.generate import generate_dataset
from pdebench.evaluation import leaderboard
from pdebench.evaluation.board_io import write_atomic
from pdebench.evaluation.leaderboard import RESULTS_SCHEMA, run_suite
from pdebench.evaluation.pareto import MORE_ACCURATE
from pdebench.core.grid_transfer import fourier_resample
from pdebench.evaluation.reference import build_reference, run_ladder
from pdebench.evaluation.suite import Suite, TaskSpec
from pdebench.io.trajectory_file import TrajectoryFile
from pdebench.problems import PROBLEMS

ROOT = Path(__file__).resolve().parents[2]


def test_fourier_resampling_is_exact_for_band_limited_fields_in_1d_and_2d():
    x = torch.arange(48, dtype=torch.float64) * 2 * math.pi / 48
    u = torch.sin(3 * x) + 0.5 * torch.cos(7 * x)
    for points in (16, 96):
        y = torch.arange(points, dtype=torch.float64) * 2 * math.pi / points
        assert torch.allclose(fourier_resample(u, points, 1), torch.sin(3 * y) + 0.5 * torch.cos(7 * y), atol=1e-12)
    X, Y = torch.meshgrid(x, x, indexing="ij")
    v = torch.sin(2 * X) * torch.cos(5 * Y)
    g = torch.arange(32, dtype=torch.float64) * 2 * math.pi / 32
    GX, GY = torch.meshgrid(g, g, indexing="ij")
    assert torch.allclose(fourier_resample(v[None], 32, 2)[0], torch.sin(2 * GX) * torch.cos(5 * GY), atol=1e-12)


def test_solver_ladder_errors_decrease_with_resolution(tmp_path):
    # The rungs take a fixed step small enough (1e-3) that their spatial error shows against the
    # reference, certified in time to 1e-10 (with the stability step alone the rungs plateau at 5e-4,
    # and against a reference at the default 1e-6 at its time error).
    task = TaskSpec("b", "burgers1d", {"nx": 64, "n_out": 1, "nu": 0.05, "max_dt": 1e-3}, samples=4, seed=1_000_000,
                    solver_args={"rtol": 1e-10},
                    reference_refinement=2, ladder_resolutions=(8, 16, 32, 64), repeats=1)
    reference = build_reference(task, tmp_path)
    errors = [rung.error for rung in run_ladder(task, reference)]
    assert all(a > 10 * b for a, b in zip(errors, errors[1:])), errors  # spectral convergence
    assert errors[-1] < 1e-5
    again = build_reference(task, tmp_path)  # from the cache, identical
    assert again.cache_path == reference.cache_path and torch.equal(again.truth, reference.truth)


def test_reference_starts_from_the_held_out_samples_of_the_fine_problem(tmp_path):
    task = TaskSpec("b", "burgers1d", {"nx": 32, "n_out": 2}, samples=3, seed=1_000_007, reference_refinement=2,
                    ladder_resolutions=(16,), repeats=1)
    reference = build_reference(task, tmp_path)
    fine = PROBLEMS.build("burgers1d", nx=64, n_out=2)
    assert torch.equal(reference.initial, fine.sample_initial_conditions(1_000_007, [0, 1, 2]).double())
    assert torch.equal(reference.truth[:, 0], reference.initial[:, ::2])
    assert reference.sample_ids.tolist() == [[1_000_007, i] for i in range(3)]


def test_a_training_seed_cannot_be_a_leaderboard_seed():
    with pytest.raises(ValueError, match="seed 3 could be a training seed"):
        TaskSpec("b", "burgers1d", seed=3)
    with pytest.raises(ValueError, match="ladder_resolutions must be even integers in \\[8, 64\\]"):
        TaskSpec("b", "burgers1d", {"nx": 64}, ladder_resolutions=(128,))


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A tiny FNO trained for a few steps on burgers1d (nx 64, u0 -> u(1), nu 0.1)."""
    folder = tmp_path_factory.mktemp("train")
    data = folder / "b.h5"
    generate_dataset(PROBLEMS.build("burgers1d", nx=64, n_out=1), data, num_samples=10, seed=3, batch_size=10)
    args = [sys.executable, str(ROOT / "train.py"), "fit", "--config", str(ROOT / "configs/burgers1d/fno.yaml"),
            "--data.init_args.path", str(data), "--data.init_args.batch_size", "4", "--trainer.max_epochs", "1",
            "--model.model_args", "{n_modes: 8, hidden_channels: 8, n_layers: 2}", "--trainer.limit_val_batches", "1"]
    result = subprocess.run(args, cwd=folder, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    (checkpoint,) = folder.glob("outputs/*/checkpoints/last.ckpt")
    return checkpoint


def tiny_suite(tmp_path: Path, checkpoint: Path, **task_changes) -> Suite:
    task = {"name": "tiny", "problem": "burgers1d", "problem_args": {"nx": 64, "n_out": 1}, "samples": 4,
            "reference_refinement": 2, "ladder_resolutions": [16, 32], "ladder_max_dt": [None, 0.1], "repeats": 2, **task_changes}
    return Suite.from_dict({"name": "tiny", "output": str(tmp_path / "out"), "cache_dir": str(tmp_path / "cache"),
                            "tasks": [task], "models": [{"name": "fno", "checkpoint": str(checkpoint)},
                                                        {"name": "missing", "checkpoint": str(tmp_path / "none.ckpt")}]})


def test_tiny_suite_end_to_end_writes_valid_results_and_keeps_going_past_a_failed_model(tiny_checkpoint, tmp_path):
    results = run_suite(tiny_suite(tmp_path, tiny_checkpoint))
    document = json.loads(results.read_text())
    jsonschema.validate(document, RESULTS_SCHEMA)
    rows = {row["name"]: row for row in document["rows"]}
    fno, missing = rows["fno"], rows["missing"]
    assert missing["status"] == "failed" and "no checkpoint at" in missing["error"]
    assert fno["status"] == "ok" and fno["parameters"] > 0 and fno["train_trajectories"] == 8 and fno["train_time_s"] > 0
    assert fno["placement"]["verdict"] and 0 < fno["nrmse"] < 2
    # the one-off cost C0 is the file's generation time (its provenance) plus the training time
    with TrajectoryFile(tiny_checkpoint.parents[3] / "b.h5") as file:
        assert fno["data_cost_s"] == pytest.approx(file.provenance["wall_time_s"]) and fno["data_cost_s"] > 0
    even = fno["break_even"]
    assert even["one_off_s"] == pytest.approx(fno["data_cost_s"] + fno["train_time_s"])
    # N* = C0 / (c_s - c_m), c_s the solver's cost at the model's accuracy (or the nearest rung's: a bound)
    if fno["cost_s"] < even["solver_cost"]:
        assert even["n_star"] == pytest.approx(even["one_off_s"] / (even["solver_cost"] - fno["cost_s"]), rel=1e-9)
    else:
        assert even["n_star"] is None and even["never"] == (fno["placement"]["verdict"] != MORE_ACCURATE)
    solver = [row for row in document["rows"] if row["kind"] == "solver"]
    assert len(solver) == 4 and all(row["status"] == "ok" for row in solver)
    assert document["environment"]["torch"] == torch.__version__
    assert document["environment"]["device"] == fno["device"] == "cpu" and all(r["device"] == "cpu" for r in solver)
    # The model's score is the nRMSE of its own predictions on the reference, computed independently here.
    from pdebench.evaluation.leaderboard import load_model
    from pdebench.evaluation.suite import ModelEntry

    reference = build_reference(tiny_suite(tmp_path, tiny_checkpoint).tasks[0], tmp_path / "cache")
    module, _ = load_model(ModelEntry("fno", str(tiny_checkpoint)))
    with torch.no_grad():
        pred = module(reference.initial[:, ::2].float().unsqueeze(1))[:, 0].double().numpy()
    truth = reference.truth[:, -1].numpy()
    expected = np.mean(np.linalg.norm(pred - truth, axis=-1) / np.linalg.norm(truth, axis=-1))
    assert fno["nrmse"] == pytest.approx(expected, rel=1e-5)
    out = results.parent
    for name in ("results.csv", "results.md", "tiny_error_vs_cost.png", "tiny_fno_sample0.png"):
        assert (out / name).stat().st_size > 0
    assert "| tiny | **fno** |" in (out / "results.md").read_text()
    assert not list(out.glob(".*.tmp"))


@pytest.mark.parametrize("changes, reason", [({"problem_args": {"nx": 32, "n_out": 1}, "ladder_resolutions": [16, 32]}, "trained on resolution [64]"),
                                             ({"problem_args": {"nx": 64, "n_out": 1, "nu": 0.05}}, "trained on parameters {'Nu': 0.1}"),
                                             ({"problem_args": {"nx": 64, "n_out": 1, "t_final": 2.0}}, "trained on target time 1.0")])
def test_a_checkpoint_trained_on_another_problem_is_a_failed_row(tiny_checkpoint, tmp_path, changes, reason):
    suite = tiny_suite(tmp_path, tiny_checkpoint, **changes, samples=2, repeats=1)
    document = json.loads(run_suite(suite).read_text())
    fno = next(row for row in document["rows"] if row["name"] == "fno")
    assert fno["status"] == "failed" and reason in fno["error"], fno["error"]


def test_results_are_written_atomically(tmp_path, monkeypatch):
    target = tmp_path / "results.json"
    write_atomic(target, "old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(pdebench.atomic.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, "new")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_evaluate_and_leaderboard_commands(tiny_checkpoint, tmp_path):
    import yaml

    from pdebench.cli import main

    suite = {"name": "tiny", "output": str(tmp_path / "out"), "cache_dir": str(tmp_path / "cache"),
             "tasks": [{"name": "tiny", "problem": "burgers1d", "problem_args": {"nx": 64, "n_out": 1}, "samples": 2,
                        "ladder_resolutions": [16], "repeats": 1},
                       {"name": "other_nu", "problem": "burgers1d", "problem_args": {"nx": 64, "n_out": 1, "nu": 0.02},
                        "samples": 2, "ladder_resolutions": [16], "repeats": 1}]}
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    assert main(["evaluate", str(tiny_checkpoint), "--suite", str(path), "--task", "tiny", "--name", "fno"]) == 0
    assert (tmp_path / "out" / "evaluate-fno" / "results.json").is_file()
    assert main(["evaluate", str(tiny_checkpoint), "--suite", str(path), "--task", "other_nu"]) == 1
    assert main(["evaluate", str(tiny_checkpoint), "--suite", str(path), "--task", "nope"]) == 2
    assert main(["leaderboard", "--suite", str(path), "--model", f"fno={tiny_checkpoint}", "--output", str(tmp_path / "lb")]) == 0
    rows = json.loads((tmp_path / "lb" / "results.json").read_text())["rows"]
    assert {(r["task"], r["status"]) for r in rows if r["name"] == "fno"} == {("tiny", "ok"), ("other_nu", "failed")}
    path.write_text(yaml.safe_dump({**suite, "colour": "red"}))
    assert main(["leaderboard", "--suite", str(path)]) == 2


def test_default_suite_loads():
    suite = Suite.from_yaml(ROOT / "configs" / "leaderboard" / "burgers1d.yaml")
    assert [m.name for m in suite.models] == ["FNO", "TFNO", "U-Net"] and suite.tasks[0].seed >= 1_000_000
    assert suite.tasks[0].eval_resolutions == (512, 1024, 2048) and suite.tasks[0].other_resolutions == (512, 2048)


def test_rollout_task_scores_an_autoregressive_model_on_every_frame_after_its_history(tmp_path):
    data = tmp_path / "ks.h5"
    settings = {"nx": 64, "n_out": 6, "t_final": 6.0, "t_warmup": 0.0}
    generate_dataset(PROBLEMS.build("ks1d", **settings), data, num_samples=6, seed=3, batch_size=6)
    args = [sys.executable, str(ROOT / "train.py"), "fit", "--config", str(ROOT / "configs/ks1d/fno.yaml"),
            "--data.init_args.path", str(data), "--data.init_args.batch_size", "4", "--trainer.max_epochs", "1",
            "--model.model_args", "{n_modes: 8, hidden_channels: 8, n_layers: 2}", "--trainer.limit_val_batches", "1"]
    result = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    (checkpoint,) = tmp_path.glob("outputs/*/checkpoints/last.ckpt")
    task = {"name": "ks", "problem": "ks1d", "problem_args": settings, "mode": "rollout", "history": 2, "samples": 2,
            "reference_refinement": 2, "ladder_resolutions": [32, 64], "repeats": 1}
    suite = Suite.from_dict({"name": "r", "output": str(tmp_path / "out"), "cache_dir": str(tmp_path / "cache"),
                             "tasks": [task], "models": [{"name": "ar", "checkpoint": str(checkpoint)}]})
    document = json.loads(run_suite(suite).read_text())
    row = next(r for r in document["rows"] if r["name"] == "ar")
    assert row["status"] == "ok", row["error"]
    # Independent check: roll the model out from the reference's first two frames and score frames 2..6.
    from pdebench.evaluation.leaderboard import load_model
    from pdebench.evaluation.suite import ModelEntry

    reference = build_reference(suite.tasks[0], tmp_path / "cache")
    module, _ = load_model(ModelEntry("ar", str(checkpoint)))
    frames = reference.truth.float().unsqueeze(2)
    window, predictions = frames[:, :2].flatten(1, 2), []
    with torch.no_grad():
        for _ in range(5):
            nxt = module(window)
            predictions.append(nxt[:, 0])
            window = torch.cat([window[:, 1:], nxt], dim=1)
    pred = torch.stack(predictions, 1).double().numpy()  # (2, 5, 64)
    truth = reference.truth[:, 2:].numpy()
    per_frame = np.linalg.norm(pred - truth, axis=-1) / np.linalg.norm(truth, axis=-1)
    assert row["nrmse"] == pytest.approx(per_frame.mean(), rel=1e-5)
    assert (tmp_path / "out" / "ks_rollout.png").stat().st_size > 0
    assert json.loads(run_suite(Suite.from_dict({**{"name": "r", "output": str(tmp_path / "o2"), "cache_dir": str(tmp_path / "cache")},
                                                 "tasks": [{**task, "history": 3}], "models": [{"name": "ar", "checkpoint": str(checkpoint)}]})
                                  ).read_text())["rows"][-1]["error"].startswith("ValueError: trained on history 2")


def test_steady_task_scores_a_darcy_model_against_the_fem_reference(tmp_path):
    """darcy2d (29 nodes): the reference is the FEM solve of the held-out coefficients on the task
    grid (equal to generating them), the nested FEM ladder converges towards it, and a model trained
    on pairs is scored on exactly its own predictions."""
    data = tmp_path / "darcy.h5"
    settings = {"resolution": 29}
    generate_dataset(PROBLEMS.build("darcy2d", **settings), data, num_samples=8, seed=3, batch_size=8)
    args = [sys.executable, str(ROOT / "train.py"), "fit", "--config", str(ROOT / "configs/darcy2d/fno.yaml"),
            "--data.init_args.path", str(data), "--data.init_args.batch_size", "4", "--trainer.max_epochs", "1",
            "--model.model_args", "{n_modes: 6, hidden_channels: 8, n_layers: 2}", "--trainer.limit_val_batches", "1"]
    result = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    (checkpoint,) = tmp_path.glob("outputs/*/checkpoints/last.ckpt")
    task = {"name": "darcy", "problem": "darcy2d", "problem_args": settings, "mode": "steady", "samples": 3,
            "reference_refinement": 1, "ladder_resolutions": [5, 8, 15], "repeats": 1}
    suite = Suite.from_dict({"name": "s", "output": str(tmp_path / "out"), "cache_dir": str(tmp_path / "cache"),
                             "tasks": [task], "models": [{"name": "fno", "checkpoint": str(checkpoint)}]})
    document = json.loads(run_suite(suite).read_text())
    jsonschema.validate(document, RESULTS_SCHEMA)
    rows = {r["name"]: r for r in document["rows"]}
    # independent truth: generating the same ids gives the same solutions
    reference = build_reference(suite.tasks[0], tmp_path / "cache")
    again = tmp_path / "again.h5"
    generate_dataset(PROBLEMS.build("darcy2d", **settings), again, num_samples=3, seed=1_000_000, batch_size=3)
    import h5py

    with h5py.File(again) as f:
        np.testing.assert_allclose(reference.truth[:, 0].numpy(), f["tensor"][:, 0], rtol=1e-5, atol=1e-8)
    errors = [rows[f"fem n={r}"]["nrmse"] for r in (5, 8, 15)]
    assert all(a > b for a, b in zip(errors, errors[1:])) and errors[-1] < 0.05
    assert rows["fno"]["status"] == "ok", rows["fno"]["error"]
    from pdebench.evaluation.leaderboard import load_model
    from pdebench.evaluation.suite import ModelEntry

    module, _ = load_model(ModelEntry("fno", str(checkpoint)))
    with torch.no_grad():
        pred = module(reference.initial.float().unsqueeze(1))[:, 0].double().numpy()
    truth = reference.truth[:, 0].numpy()
    rel = np.linalg.norm((pred - truth).reshape(3, -1), axis=1) / np.linalg.norm(truth.reshape(3, -1), axis=1)
    assert rows["fno"]["nrmse"] == pytest.approx(rel.mean(), rel=1e-5)


@pytest.mark.parametrize("changes, message", [({"mode": "one_step"}, "use mode steady"),
                                              ({"reference_refinement": 2}, "reference_refinement must be 1"),
                                              ({"ladder_resolutions": [6, 15]}, "nested grids"),
                                              ({"ladder_resolutions": [15, 29]}, "the task grid itself is the reference")])
def test_steady_task_settings_are_checked(changes, message):
    task = {"name": "darcy", "problem": "darcy2d", "problem_args": {"resolution": 29}, "mode": "steady",
            "reference_refinement": 1, "ladder_resolutions": [8, 15], **changes}
    with pytest.raises(ValueError, match=message):
        TaskSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in task.items()})


def test_a_model_trained_on_a_padded_mixture_is_scored_in_physical_units(tmp_path):
    """A DPOT trained through MixtureDataModule (per-file normalisation, channels padded to 2) on one
    ns2d file: the leaderboard rebuilds its module class from the checkpoint, normalises and pads the
    reference frames with the card's statistics, and scores exactly what the data module's own
    encode -> masked rollout -> decode path predicts. A mixture of two files is refused by name."""
    import lightning as L

    from pdebench.data.mixture import MixtureDataModule
    from pdebench.evaluation.leaderboard import load_model
    from pdebench.evaluation.suite import ModelEntry
    from pdebench.training.finetune import MaskedOperatorModule

    settings = {"resolution": 32, "n_out": 8, "t_final": 4.0}
    paths = [tmp_path / "a.h5", tmp_path / "b.h5"]
    for seed, path in enumerate(paths):
        generate_dataset(PROBLEMS.build("ns2d", **settings), path, num_samples=6, seed=3 + seed, batch_size=6)

    def train(files: list[Path], name: str) -> Path:
        data = MixtureDataModule([str(p) for p in files], history=2, max_channels=2, batch_size=2, seed=0)
        module = MaskedOperatorModule("dpot", {"patch_size": 4, "embed_dim": 16, "depth": 1, "num_blocks": 2},
                                      data.in_channels, data.out_channels, 2, 2)
        trainer = L.Trainer(max_steps=2, limit_val_batches=0, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
        trainer.fit(module, datamodule=data)
        trainer.save_checkpoint(tmp_path / name)
        return tmp_path / name

    one, two = train(paths[:1], "one.ckpt"), train(paths, "two.ckpt")
    task = {"name": "ns", "problem": "ns2d", "problem_args": settings, "mode": "rollout", "history": 2, "samples": 2,
            "reference_refinement": 2, "ladder_resolutions": [16, 32], "repeats": 1}
    suite = Suite.from_dict({"name": "m", "output": str(tmp_path / "out"), "cache_dir": str(tmp_path / "cache"), "tasks": [task],
                             "models": [{"name": "one", "checkpoint": str(one)}, {"name": "two", "checkpoint": str(two)}]})
    rows = {r["name"]: r for r in json.loads(run_suite(suite).read_text())["rows"]}
    assert rows["one"]["status"] == "ok", rows["one"]["error"]
    assert rows["two"]["status"] == "failed" and "mixture of 2 datasets" in rows["two"]["error"]
    # independent path: the data module's own statistics, padding and masked rollout
    reference = build_reference(suite.tasks[0], tmp_path / "cache")
    module, _ = load_model(ModelEntry("one", str(one)))
    assert type(module) is MaskedOperatorModule
    data = MixtureDataModule([str(paths[0])], history=2, max_channels=2, batch_size=2, seed=0)
    data.setup("fit")
    frames = reference.truth.float().unsqueeze(2)
    with torch.no_grad(), module.channel_mask(data.channel_mask(0).expand(2, -1)):
        predicted = data.decode(module.autoregress(data.encode(frames, 0)), 0)[:, :, 0].double().numpy()
    truth = reference.truth[:, 2:].numpy()
    per_frame = np.linalg.norm((predicted - truth).reshape(2, 7, -1), axis=-1) / np.linalg.norm(truth.reshape(2, 7, -1), axis=-1)
    assert rows["one"]["nrmse"] == pytest.approx(per_frame.mean(), rel=1e-4)


def test_the_reference_records_its_certified_error_within_10x_of_the_measured(tmp_path):
    """The reference is certified in time (default rtol 1e-6) and its spatial error is measured on two
    samples re-solved on a 2x finer grid. Against an independent solve on a 4x finer grid at rtol 1e-11
    its worst frame's error is within 10x of the recorded bound, both ways."""
    from pdebench.solvers.spectral.solver import SpectralSolver

    task = TaskSpec("b", "burgers1d", {"nx": 16, "n_out": 4, "nu": 0.02}, samples=2, seed=1_000_011,
                    reference_refinement=2, ladder_resolutions=(8,), repeats=1)
    reference = build_reference(task, tmp_path)
    fine, finest = task.reference_problem, task.reference_problem.with_resolution(128)
    u0 = fourier_resample(reference.initial, 128, 1)  # the interpolant the space check starts from
    exact = SpectralSolver(rtol=1e-11).solve(finest, u0, reference.sample_ids).fields["u"][..., ::8]  # task grid
    measured = ((reference.truth - exact).norm(dim=-1) / exact.norm(dim=-1))[:, 1:].max().item()
    assert measured / 10 <= reference.certified_error <= 10 * measured, (measured, reference.certified_error)
    assert build_reference(task, tmp_path).certified_error == reference.certified_error  # kept in the cache
    assert fine.spatial_shape == (32,)


def test_rows_below_the_references_accuracy_follow_the_ranked_models():
    from pdebench.evaluation.leaderboard import ROW_FORMAT
    from pdebench.evaluation.pareto import FASTER, NOT_RANKABLE

    def row(name: str, nrmse: float, verdict: str, kind: str = "model") -> dict:
        return {"name": name, "kind": kind, "status": "ok", "nrmse": nrmse, "placement": {"verdict": verdict}}

    rows = [row("rung", 1e-3, "", "solver"), row("exact-ish", 1e-9, NOT_RANKABLE), row("b", 2e-2, FASTER), row("a", 1e-2, FASTER)]
    assert [r["name"] for r in ROW_FORMAT.order(rows)] == ["a", "b", "exact-ish", "rung"]


def test_cuda_timings_synchronise_before_and_after_every_timed_run(monkeypatch):
    """CUDA kernels are asynchronous: a timed run must start and end with the device synchronised
    (and the CPU path must not touch CUDA at all)."""
    from pdebench.evaluation.board_io import timed

    events = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: events.append(f"sync {device}"))
    output, timings = timed(lambda: events.append("run") or 7, 2, "cuda:0")
    assert output == 7 and len(timings) == 2
    assert events == ["run", "sync cuda:0", "run", "sync cuda:0", "sync cuda:0", "run", "sync cuda:0"]
    events.clear()
    timed(lambda: events.append("run"), 2, "cpu")
    assert events == ["run"] * 3


@pytest.mark.parametrize("device, message", [("tpu", "device must be 'cpu' or 'cuda[:N]', got 'tpu'"),
                                             ("cuda", "this machine has no CUDA device")])
def test_a_suite_names_a_device_it_can_use(device, message):
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    raw = {"name": "s", "device": device, "tasks": [{"name": "t", "problem": "burgers1d", "problem_args": {"nx": 32, "n_out": 1},
                                                     "ladder_resolutions": [16]}]}
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Suite.from_dict(raw)

# ------------------------------------------------------------------------------------ resolution protocol
@pytest.mark.parametrize("changes, message", [
    ({"eval_resolutions": (12,)}, "eval_resolutions entry 12 is not an even integer >= 8 dividing the reference grid 128 "
                                  r"\(task grid 64 x reference_refinement 2\)"),
    ({"eval_resolutions": (64, 256)}, "entry 256 is not an even integer >= 8 dividing the reference grid 128"),
    ({"eval_resolutions": (4,)}, "entry 4 is not"),
    ({"eval_resolutions": (32.0,)}, "entry 32.0 is not"),
    ({"eval_resolutions": 128}, "eval_resolutions must be a list of grid sizes, got 128"),
])
def test_eval_resolutions_must_divide_the_reference_grid(changes, message):
    with pytest.raises(ValueError, match=message):
        TaskSpec("b", "burgers1d", {"nx": 64}, reference_refinement=2, ladder_resolutions=(16,), **changes)


def test_eval_resolutions_are_for_time_dependent_point_value_tasks_and_key_the_cache():
    with pytest.raises(ValueError, match="time-dependent point-value tasks; this task is steady"):
        TaskSpec("d", "darcy2d", {"resolution": 29}, mode="steady", reference_refinement=1, ladder_resolutions=(15,),
                 eval_resolutions=(8,))
    with pytest.raises(ValueError, match=r"this task is cell-averaged \(mppde_e1\)"):
        TaskSpec("e", "mppde_e1", {"nx": 16, "n_out": 4}, mode="rollout", reference_refinement=4, ladder_resolutions=(8, 16),
                 eval_resolutions=(32,))
    plain = TaskSpec("b", "burgers1d", {"nx": 64}, reference_refinement=2, ladder_resolutions=(16,))
    listed = TaskSpec("b", "burgers1d", {"nx": 64}, reference_refinement=2, ladder_resolutions=(16,), eval_resolutions=(128, 32, 64))
    assert listed.eval_resolutions == (32, 64, 128) and listed.other_resolutions == (32, 128)
    assert plain.content_hash() != listed.content_hash()  # the cache holds the truth at each r
    # the ladder scaled to r: each rung x r / 64, rounded to an even integer, kept in [8, r]
    task = TaskSpec("b", "burgers1d", {"nx": 64}, ladder_resolutions=(8, 16, 48, 64))
    assert task.ladder_at(64) == (8, 16, 48, 64)
    assert task.ladder_at(128) == (16, 32, 96, 128)
    assert task.ladder_at(32) == (8, 24, 32)
    assert task.ladder_at(24) == (8, 18, 24)  # 16 x 24/64 = 6 -> 8; 48 x 24/64 = 18


class _Persistence:
    """A rollout "model" that repeats the last given frame: its nRMSE is computable by hand on any grid."""

    def rollout(self, frames, times=None, params=None):
        return frames[:, :1].expand(-1, frames.shape[1] - 1, *frames.shape[2:])


class _FixedGrid(_Persistence):
    """Takes 16 points only, like a transformer with a fixed positional grid."""

    def rollout(self, frames, times=None, params=None):
        if frames.shape[-1] != 16:
            raise ValueError(f"positional embedding of 16 points, got {frames.shape[-1]}")
        return super().rollout(frames)


class _WrongShape(_Persistence):
    """Answers on 16 points whatever the input grid."""

    def rollout(self, frames, times=None, params=None):
        return super().rollout(frames)[..., :16]


def test_each_model_is_scored_at_each_resolution_and_placed_on_that_grids_ladder():
    """A hand-built reference (no solve) on 16 points and 32 (the fine grid) and a persistence model:
    its nRMSE at each grid by hand, the gap as their ratio, the placement as pareto's on the ladder at
    that grid; a model that raises at 32 and one answering on another grid are listed with their reason."""
    from pdebench.evaluation.leaderboard import FIXED_GRID, RESOLUTION_SCHEMA, Row, score_resolutions
    from pdebench.evaluation.pareto import CostCurve, speedup_at_equal_accuracy
    from pdebench.evaluation.reference import ReferenceSet

    task = TaskSpec("r", "burgers1d", {"nx": 16, "n_out": 3}, mode="rollout", samples=2, reference_refinement=2,
                    ladder_resolutions=(8, 16), eval_resolutions=(32,), repeats=1)
    g = torch.Generator().manual_seed(0)
    fine = torch.randn(2, 4, 32, generator=g, dtype=torch.float64)  # (N, T, 32): the "reference solve"
    reference = ReferenceSet(fine[:, 0], fine[..., ::2].contiguous(), np.linspace(0, 1, 4), np.array([[1_000_000, 0], [1_000_000, 1]]),
                             1.0, resolutions={32: fine})

    def by_hand(truth):  # persistence: every scored frame t >= 1 predicted by frame 0
        y = truth[:, 1:].numpy()
        return np.mean(np.linalg.norm(truth[:, :1].numpy() - y, axis=-1) / np.linalg.norm(y, axis=-1))

    e16, e32 = by_hand(reference.truth), by_hand(fine)
    ladders = {16: CostCurve([1e-3, 1e-2], [3.0, 0.3], ("a", "b")), 32: CostCurve([2e-3, 2e-2], [2.0, 0.2], ("c", "d"))}
    row = Row("r", "persistence", "model", nrmse=e16, cost_s=1e-3, metrics={"nrmse": e16})
    at16, at32 = score_resolutions(_Persistence(), row, task, reference, ladders, batch_size=1)
    assert (at16["resolution"], at16["gap"], at16["grid_ratio"]) == (16, 1.0, 1.0)
    assert at16["placement"] == speedup_at_equal_accuracy(ladders[16], e16, 1e-3).to_dict()
    assert at32["status"] == "ok" and at32["grid_ratio"] == 2 and at32["nrmse"] == pytest.approx(e32, rel=1e-6)
    assert at32["gap"] == pytest.approx(e32 / e16, rel=1e-6)
    assert at32["placement"] == speedup_at_equal_accuracy(ladders[32], at32["nrmse"], at32["cost_s"]).to_dict()
    assert at32["placement"]["verdict"] and at32["cost_s"] > 0
    fixed = score_resolutions(_FixedGrid(), row, task, reference, ladders, batch_size=1)[1]
    wrong = score_resolutions(_WrongShape(), row, task, reference, ladders, batch_size=1)[1]
    assert fixed["status"] == wrong["status"] == FIXED_GRID and fixed["nrmse"] is None and fixed["placement"] is None
    assert fixed["reason"] == "ValueError: positional embedding of 16 points, got 32"
    assert "answered with shape (2, 3, 16), not the truth's (2, 3, 32)" in wrong["reason"]
    for entry in (at16, at32, fixed, wrong):
        jsonschema.validate(json.loads(json.dumps(entry)), RESOLUTION_SCHEMA)
    from pdebench.evaluation.leaderboard import resolution_gap_cell

    assert resolution_gap_cell([at16, at32]) == f"×2: {at32['gap']:.3g}"
    assert resolution_gap_cell([at16, fixed]) == "fixed grid" and resolution_gap_cell([]) == "–"


def test_an_fno_is_scored_at_twice_its_grid_and_placed_on_the_ladder_there(tiny_checkpoint, tmp_path):
    """The tiny FNO (trained on 64 points) at 128 (the reference grid) and at 8 (too coarse for its 8
    modes: listed, not dropped). Independently: its nRMSE at 128 from its own forward pass on the fine
    initial condition against the fine solve, a rung of the ladder at 128 re-solved here and Fourier-
    interpolated with numpy, and the placement as pareto's on the ladder at 128."""
    import csv

    from pdebench.data.generate import build_solver
    from pdebench.evaluation.leaderboard import FIXED_GRID, load_model
    from pdebench.evaluation.pareto import CostCurve, speedup_at_equal_accuracy
    from pdebench.evaluation.suite import ModelEntry

    suite = tiny_suite(tmp_path, tiny_checkpoint, eval_resolutions=[8, 64, 128], ladder_max_dt=[None])
    results = run_suite(suite)
    document = json.loads(results.read_text())
    jsonschema.validate(document, RESULTS_SCHEMA)
    fno = next(r for r in document["rows"] if r["name"] == "fno")
    assert fno["status"] == "ok", fno["error"]
    by_grid = {e["resolution"]: e for e in fno["resolutions"]}
    assert sorted(by_grid) == [8, 64, 128]
    assert by_grid[8]["status"] == FIXED_GRID and "too coarse for n_modes=8" in by_grid[8]["reason"]
    assert by_grid[64]["nrmse"] == fno["nrmse"] and by_grid[64]["gap"] == 1 and by_grid[64]["placement"] == fno["placement"]
    at128 = by_grid[128]
    assert at128["status"] == "ok" and at128["gap"] == pytest.approx(at128["nrmse"] / fno["nrmse"], rel=1e-12)

    reference = build_reference(suite.tasks[0], tmp_path / "cache")  # from the cache, with the truth at 8 and 128
    fine_truth = reference.truth_on(128)
    assert torch.equal(fine_truth[:, 0], reference.initial) and torch.equal(fine_truth[..., ::2], reference.truth)
    module, _ = load_model(ModelEntry("fno", str(tiny_checkpoint)))
    with torch.no_grad():
        pred = module(reference.initial.float().unsqueeze(1))[:, 0].double().numpy()
    truth = fine_truth[:, -1].numpy()
    expected = np.mean(np.linalg.norm(pred - truth, axis=-1) / np.linalg.norm(truth, axis=-1))
    assert at128["nrmse"] == pytest.approx(expected, rel=1e-5)

    (task_record,) = document["tasks"]
    ladder = {rec["resolution"]: rec["ladder"] for rec in task_record["resolutions"]}
    assert [r["label"] for r in ladder[128]] == ["spectral n=32", "spectral n=64"]  # the rungs 16, 32 scaled by 2
    assert [r["label"] for r in ladder[8]] == ["spectral n=8"]  # 2 and 4 kept at 8
    task = suite.tasks[0]
    rung_problem = task.task_problem.with_resolution(64)
    u0 = torch.from_numpy(np.fft.irfft(np.fft.rfft(reference.initial.numpy())[:, :32], n=64) * 0.5)  # modes |k| < 32
    solved = build_solver(rung_problem, certified=False).solve(rung_problem, u0, reference.sample_ids).fields["u"][:, -1].numpy()
    spectrum = np.fft.rfft(solved)[:, :32]
    upsampled = np.fft.irfft(np.pad(spectrum, ((0, 0), (0, 33))), n=128) * 2
    rung_error = np.mean(np.linalg.norm(upsampled - truth, axis=-1) / np.linalg.norm(truth, axis=-1))
    assert ladder[128][1]["nrmse"] == pytest.approx(rung_error, rel=1e-6)
    curve = CostCurve([r["cost_s"] for r in ladder[128]], [r["nrmse"] for r in ladder[128]], [r["label"] for r in ladder[128]])
    expected_placement = speedup_at_equal_accuracy(curve, at128["nrmse"], at128["cost_s"], reference.certified_error).to_dict()
    assert at128["placement"] == pytest.approx(expected_placement)

    out = results.parent
    assert f"×2: {at128['gap']:.3g}" in (out / "results.md").read_text() and "×0.125: fixed grid" in (out / "results.md").read_text()
    rows = {r["name"]: r for r in csv.DictReader((out / "results.csv").open())}
    assert rows["fno"]["gap_8"] == "" and float(rows["fno"]["gap_64"]) == 1 and float(rows["fno"]["gap_128"]) == pytest.approx(at128["gap"])
    assert (out / "tiny_resolution.png").read_bytes().startswith(b"\x89PNG")
