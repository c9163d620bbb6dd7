"""The leaderboard on the MP-PDE benchmark: accumulated error, cell-averaged restriction (mppde_e1),
the reference solve's cost, per-step rollout curves of models and solver rungs, per-task model entries."""

from __future__ import annotations

import csv
from dataclasses import asdict
import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import torch
import yaml

from pdebench.evaluation import leaderboard
from pdebench.evaluation.board_io import RICH, markdown_table, render_tables
from pdebench.evaluation.leaderboard import RESULTS_SCHEMA, ROW_FORMAT, Row, run_suite
from pdebench.core.metrics import accumulated_error, rollout_mse
from pdebench.core.grid_transfer import fourier_resample, prolong_piecewise_constant
from pdebench.evaluation.reference import build_reference, run_ladder, task_metrics
from pdebench.evaluation.suite import ModelEntry, Suite, TaskSpec
from pdebench.problems import PROBLEMS
from pdebench.problems.combined_equation import MPPDEE1

ROOT = Path(__file__).resolve().parents[2]
TINY_E1 = {"nx": 16, "n_out": 10, "t_final": 0.5}


@pytest.fixture
def cell_averaged_e1(monkeypatch):
    """mppde_e1 declared as cell averages (a no-op once ``MPPDEE1.cell_averaged = True`` is in the class)."""
    monkeypatch.setattr(MPPDEE1, "cell_averaged", True)


def tiny_e1_task(**changes) -> TaskSpec:
    settings = {"name": "e1", "problem": "mppde_e1", "problem_args": TINY_E1, "mode": "rollout", "history": 2,
                "samples": 3, "seed": 1_000_000, "reference_refinement": 4, "ladder_resolutions": (8, 16), "repeats": 1,
                **changes}
    return TaskSpec(**settings)


# ------------------------------------------------------------------------------------ accumulated error
def test_accumulated_error_matches_a_hand_computation():
    # two trajectories, one channel, 2 points, 3 steps: layout (B, C, X, T)
    pred = torch.tensor([[[[1.0, 2.0, 0.0], [0.0, 0.0, 3.0]]], [[[0.5, 0.0, 0.0], [0.0, 0.0, 0.0]]]])
    truth = torch.zeros_like(pred)
    # trajectory 0: (1 + 4 + 0 + 0 + 0 + 9) / 2 = 7; trajectory 1: 0.25 / 2 = 0.125; mean 3.5625
    assert accumulated_error(pred, truth).item() == pytest.approx(3.5625)
    assert accumulated_error(pred, truth, reduction="none").tolist() == pytest.approx([7.0, 0.125])
    # per-step terms: step 0: mean(1/2, 0.25/2), step 1: mean(4/2, 0), step 2: mean(9/2, 0); they sum to it
    assert rollout_mse(pred, truth).tolist() == pytest.approx([0.3125, 1.0, 2.25])
    assert rollout_mse(pred, truth).sum().item() == pytest.approx(3.5625)
    # 2-D: the sum over space is divided by every spatial point (n_x n_y)
    p2 = torch.ones(1, 1, 2, 3, 4)
    assert accumulated_error(p2, torch.zeros_like(p2)).item() == pytest.approx(4.0)
    with pytest.raises(ValueError, match="reduction"):
        accumulated_error(pred, truth, reduction="sum")


def test_task_metrics_add_the_accumulated_error_to_rollouts_only():
    gen = torch.Generator().manual_seed(0)
    p, y = torch.randn(3, 5, 16, generator=gen, dtype=torch.float64), torch.randn(3, 5, 16, generator=gen, dtype=torch.float64)
    rollout = task_metrics(p, y, "rollout")
    expected = ((p - y) ** 2).sum(dim=(1, 2)).mean() / 16
    assert rollout["accumulated_error"] == pytest.approx(expected.item())
    assert "accumulated_error" not in task_metrics(p[:, -1:], y[:, -1:], "one_step")


# ------------------------------------------------------------------------------------ restriction
def test_point_value_restriction_keeps_the_old_node_striding_and_fourier_truncation():
    burgers = PROBLEMS.build("burgers1d", nx=64, n_out=1)
    u = torch.randn(2, 3, 64, dtype=torch.float64)
    assert torch.equal(burgers.restrict(u, 16), u[..., ::4])
    assert torch.equal(burgers.restrict(u, 16, project=True), fourier_resample(u, 16, 1))
    with pytest.raises(ValueError, match="must divide"):
        burgers.restrict(u, 24)
    ns = PROBLEMS.build("ns2d", resolution=32)
    v = torch.randn(2, 32, 32, dtype=torch.float64)
    assert torch.equal(ns.restrict(v, 8), v[..., ::4, ::4])


def test_cell_averages_restrict_by_block_averages(cell_averaged_e1):
    problem = PROBLEMS.build("mppde_e1", nx=8)
    u = torch.arange(16, dtype=torch.float64).reshape(1, 16)
    assert problem.restrict(u, 4).tolist() == [[1.5, 5.5, 9.5, 13.5]]
    assert torch.equal(problem.restrict(u, 4, project=True), problem.restrict(u, 4))  # the L2 projection either way
    assert torch.equal(problem.restrict(prolong_piecewise_constant(u, 48, 1), 16), u)
    with pytest.raises(ValueError, match="must divide"):
        problem.restrict(u, 5)


def test_block_averages_of_the_fine_e1_initial_condition_are_the_coarse_ones(cell_averaged_e1):
    fine = PROBLEMS.build("mppde_e1", nx=200)
    for nx in (50, 25, 10):
        coarse = PROBLEMS.build("mppde_e1", nx=nx)
        averaged = fine.restrict(fine.sample_initial_conditions(1_000_000, range(4)), nx)
        torch.testing.assert_close(averaged, coarse.sample_initial_conditions(1_000_000, range(4)), rtol=0, atol=1e-12)


def test_e1_reference_and_ladder_use_cell_averages(cell_averaged_e1, tmp_path):
    task = tiny_e1_task()
    reference = build_reference(task, tmp_path)
    assert reference.cell_averaged and reference.initial.shape == (3, 64) and reference.truth.shape == (3, 11, 16)
    coarse = PROBLEMS.build("mppde_e1", **TINY_E1).sample_initial_conditions(1_000_000, range(3))
    torch.testing.assert_close(reference.truth[:, 0], coarse, rtol=0, atol=1e-12)  # block averages, not samples
    torch.testing.assert_close(reference.task_initial(16, 1), coarse, rtol=0, atol=1e-12)
    assert reference.cost_per_sample_s == pytest.approx(reference.wall_time_s / 3)
    rungs = {r.resolution: r for r in run_ladder(task, reference)}
    # the rung on the task grid solves the same cell averages with the forcing of each held-out id
    assert rungs[16].error < 0.05 and rungs[8].error > 5 * rungs[16].error, {k: r.error for k, r in rungs.items()}
    for rung in rungs.values():
        assert rung.metrics["nrmse"] == pytest.approx(rung.error)
        assert rung.curves["mse"].shape == rung.curves["nrmse"].shape == (9,)  # frames 2..10
        assert rung.metrics["accumulated_error"] == pytest.approx(rung.curves["mse"].sum())
    again = build_reference(task, tmp_path)  # from the cache: still cell averages
    assert again.cache_path == reference.cache_path and again.cell_averaged


def test_cell_averaged_ladders_take_any_divisor_of_the_task_grid(cell_averaged_e1):
    assert TaskSpec("e1", "mppde_e1", {"nx": 50}, mode="rollout", history=25, ladder_resolutions=(10, 25, 50)).ladder_resolutions == (10, 25, 50)
    with pytest.raises(ValueError, match="dividing the task's 50 cells"):
        TaskSpec("e1", "mppde_e1", {"nx": 50}, mode="rollout", history=25, ladder_resolutions=(20, 50))
    with pytest.raises(ValueError, match="even integers"):  # point values: unchanged
        TaskSpec("b", "burgers1d", {"nx": 50}, ladder_resolutions=(25,))
    # the cell-averaged reference is another cache entry than a sampled one would be
    plain = TaskSpec("e1", "mppde_e1", {"nx": 50}, mode="rollout", history=25, ladder_resolutions=(50,)).content_hash()
    MPPDEE1.cell_averaged = False
    try:
        assert TaskSpec("e1", "mppde_e1", {"nx": 50}, mode="rollout", history=25, ladder_resolutions=(50,)).content_hash() != plain
    finally:
        MPPDEE1.cell_averaged = True  # the fixture restores the class's own value


# ------------------------------------------------------------------------------------ suite outputs
class Persistence(torch.nn.Module):
    """A stand-in rollout model: repeats the last given frame (no checkpoint needed)."""

    history = 2

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        return x[:, -1:] * self.scale

    def rollout(self, frames: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        steps = frames.shape[1] - self.history
        return (frames[:, self.history - 1: self.history] * self.scale).expand(-1, steps, *frames.shape[2:]).clone()


def test_a_cell_averaged_rollout_suite_reports_accumulated_error_reference_cost_and_curves(cell_averaged_e1, tmp_path, monkeypatch):
    monkeypatch.setattr(leaderboard, "load_model", lambda entry, device="cpu": (Persistence(), {"data": {}}))
    monkeypatch.setattr(leaderboard, "check_data_card", lambda card, task: None)
    task = {"name": "e1", "problem": "mppde_e1", "problem_args": TINY_E1, "mode": "rollout", "history": 2, "samples": 3,
            "reference_refinement": 4, "ladder_resolutions": [8, 16], "repeats": 1}
    other = {**task, "name": "e1_other", "problem_args": {**TINY_E1, "nx": 32}, "ladder_resolutions": [16, 32]}
    suite = Suite.from_dict({"name": "mppde", "output": str(tmp_path / "out"), "cache_dir": str(tmp_path / "cache"),
                             "tasks": [task, other],
                             "models": [{"name": "persist", "checkpoint": "unused.ckpt", "tasks": ["e1"]}]})
    document = json.loads(run_suite(suite).read_text())
    jsonschema.validate(document, RESULTS_SCHEMA)
    rows = {(r["task"], r["name"]): r for r in document["rows"]}
    assert ("e1_other", "persist") not in rows  # scored on its own task only
    model = rows[("e1", "persist")]
    assert model["status"] == "ok", model["error"]
    record = {t["name"]: t for t in document["tasks"]}["e1"]["reference"]
    assert record["solver"] == "fv-weno n=64" and record["cell_averaged"]
    assert record["cost_s"] == pytest.approx(record["wall_time_s"] / 3)
    assert model["speedup_vs_reference"] == pytest.approx(record["cost_s"] / model["cost_s"])
    # the model's accumulated error, computed here from the reference: frames 2..10 all equal frame 1
    reference = build_reference(suite.tasks[0], tmp_path / "cache")
    truth = reference.truth.numpy()
    expected = np.mean(((truth[:, 1:2] - truth[:, 2:]) ** 2).sum(axis=(1, 2)) / 16)
    assert model["metrics"]["accumulated_error"] == pytest.approx(expected, rel=1e-5)
    # its rollout metrics, computed here from the reference with numpy: steps 1..9 are frames 2..10
    given, later = truth[:, 1], truth[:, 2:]
    corr = np.array([np.mean([np.corrcoef(given[n], later[n, t])[0, 1] for n in range(3)]) for t in range(9)])
    below = np.flatnonzero(corr < 0.8)
    if below.size:  # first step below 0.8, the crossing interpolated from the step before (step 0: 1)
        k = below[0] + 1
        before = 1.0 if k == 1 else corr[k - 2]
        assert model["metrics"]["corr_step"] == k
        assert model["metrics"]["corr_time"] == pytest.approx(k - 1 + (before - 0.8) / (before - corr[k - 1]), rel=1e-5)
    else:
        assert model["metrics"]["corr_time"] == 9 and "corr_step" not in model["metrics"]
    nrmse_curve = np.mean(np.linalg.norm(later - given[:, None], axis=-1) / np.linalg.norm(later, axis=-1), axis=0)
    assert model["metrics"]["rollout_nrmse_gmean"] == pytest.approx(np.exp(np.log(nrmse_curve).mean()), rel=1e-5)
    vrmse_1 = np.mean(np.sqrt(np.mean((given - later[:, 0]) ** 2, axis=-1) / (np.var(later[:, 0], axis=-1) + 1e-7)))
    assert model["metrics"]["vrmse_1"] == pytest.approx(vrmse_1, rel=1e-5)
    assert "vrmse_6-12" not in model["metrics"]  # 9 steps do not cover steps 6-12
    solver = [r for r in document["rows"] if r["task"] == "e1" and r["kind"] == "solver"]
    assert [r["name"] for r in solver] == ["fv n=8", "fv n=16"]
    assert all("accumulated_error" in r["metrics"] and r["speedup_vs_reference"] > 0 for r in solver)
    out = tmp_path / "out"
    markdown = (out / "results.md").read_text()
    assert "- e1: reference solver (fv-weno n=64):" in markdown and "| e1 | **persist** |" in markdown
    with open(out / "results.csv") as handle:
        csv_rows = list(csv.DictReader(handle))
    assert all(r["accumulated_error"] for r in csv_rows) and any(r["speedup_vs_reference"] for r in csv_rows)
    assert all(r["corr_time"] and r["rollout_nrmse_gmean"] and r["vrmse_1"] and not r["vrmse_6-12"] for r in csv_rows)
    assert "\n\nrollout metrics:\n\n" in markdown and "| task | entry | corr_t | gmean_nrmse | vrmse_1 |" in markdown
    with open(out / "e1_rollout_curves.csv") as handle:
        curves = list(csv.DictReader(handle))
    assert {(r["entry"], r["kind"]) for r in curves} == {("persist", "model"), ("fv n=8", "solver"), ("fv n=16", "solver")}
    mse = sum(float(r["mse"]) for r in curves if r["entry"] == "persist")
    assert mse == pytest.approx(model["metrics"]["accumulated_error"], rel=1e-9)
    np.testing.assert_allclose([float(r["corr"]) for r in curves if r["entry"] == "persist"], corr, rtol=1e-6)
    assert [float(r["time"]) for r in curves if r["entry"] == "persist"] == pytest.approx(reference.times[2:].tolist())
    for name in ("e1_rollout.png", "e1_rollout_mse.png", "e1_other_rollout.png", "e1_other_rollout_curves.csv"):
        assert (out / name).stat().st_size > 0  # a task without models still plots its rungs


def test_markdown_table_shows_accumulated_error_and_speedup_vs_reference():
    rows = [Row("t", "m", "model", metrics={"nrmse": 0.1, "accumulated_error": 2.5}, nrmse=0.1, cost_s=1e-3, speedup_vs_reference=40.0),
            Row("t", "fv n=10", "solver", metrics={"nrmse": 0.3}, nrmse=0.3, cost_s=2e-3, speedup_vs_reference=20.0)]
    rows = [asdict(r) for r in rows]
    text = markdown_table(rows, ROW_FORMAT, {"t": "reference solver (fv-weno n=200): 0.04 s/sample"})
    assert "| t | **m** | 0.1 | 2.5 | 1 ms |" in text and "| 40× |" in text and "| 20× |" in text
    assert text.rstrip().endswith("- t: reference solver (fv-weno n=200): 0.04 s/sample")
    assert markdown_table(rows, ROW_FORMAT).count("\n") == 4  # no reference lines without references


def test_rollout_tasks_get_a_second_table_of_rollout_metrics_within_100_columns():
    from rich.console import Console

    from pdebench.evaluation.boards import BOARDS

    crossed = {"nrmse": 0.1, "corr_time": 3.46, "corr_step": 4.0, "rollout_nrmse_gmean": 0.05, "vrmse_1": 0.01, "vrmse_6-12": 0.2}
    never = {"nrmse": 0.3, "corr_time": 13.0, "rollout_nrmse_gmean": 0.2, "vrmse_1": 0.02, "vrmse_6-12": 0.4}
    rows = [asdict(r) for r in (Row("roll", "a-rather-long-model-name", "model", metrics=crossed, nrmse=0.1, cost_s=1e-3),
                                Row("roll", "fv n=10", "solver", metrics=never, nrmse=0.3, cost_s=2e-3),
                                Row("roll", "broken", "model", status="failed", error="boom"),
                                Row("step", "m", "model", metrics={"nrmse": 0.2}, nrmse=0.2, cost_s=1e-3))]
    text = markdown_table(rows, ROW_FORMAT)
    table = text[text.index("rollout metrics"):].splitlines()
    assert table[2:] == ["| task | entry | corr_t | gmean_nrmse | vrmse_1 | vrmse_6-12 | vrmse_13-30 |", "|---" * 7 + "|",
                         "| roll | **a-rather-long-model-name** | 3.46 | 0.05 | 0.01 | 0.2 | – |",
                         "| roll | fv n=10 | ≥ 13 | 0.2 | 0.02 | 0.4 | – |"]  # the one-step task and the failed row: none
    assert "rollout metrics" not in markdown_table(rows[3:], ROW_FORMAT)
    console = Console(record=True, width=300)
    environment = {"hardware": "cpu", "threads": 1, "git_revision": "x"}
    console.print(render_tables(BOARDS["operator"].tables({"suite": "s", "rows": rows, "environment": environment}, RICH), "table", 100))
    printed = console.export_text().splitlines()
    rollout = printed[next(i for i, line in enumerate(printed) if line.startswith("rollout metrics")):]
    assert any("≥ 13" in line for line in rollout) and max(len(line) for line in rollout) <= 100, "\n".join(rollout)


# ------------------------------------------------------------------------------------ suite file
def test_model_entries_name_known_tasks():
    assert ModelEntry("m").scores("anything") and not ModelEntry("m", tasks=("a",)).scores("b")
    raw = {"name": "s", "tasks": [{"name": "a", "problem": "burgers1d", "problem_args": {"nx": 64}, "ladder_resolutions": [32]}],
           "models": [{"name": "m", "tasks": ["b"]}]}
    with pytest.raises(ValueError, match="unknown task\\(s\\) b"):
        Suite.from_dict(raw)
    with pytest.raises(ValueError, match="list of task names"):
        ModelEntry("m", tasks="a")


def test_mppde_suite_file(cell_averaged_e1):
    raw = yaml.safe_load((ROOT / "configs" / "leaderboard" / "mppde.yaml").read_text())
    names = {t["name"]: t["problem"] for t in raw["tasks"]}
    assert names["mppde_e1_nx50"] == "mppde_e1" and names["mppde_e2_nx50"] == "mppde_e2"
    available = {name for name, problem in names.items() if problem in PROBLEMS}
    raw = {**raw, "tasks": [t for t in raw["tasks"] if t["name"] in available],
           "models": [m for m in raw["models"] if set(m["tasks"]) <= available]}
    suite = Suite.from_dict(raw)
    e1 = suite.task("mppde_e1_nx50")
    assert (e1.mode, e1.history, e1.samples, e1.seed, e1.reference_refinement) == ("rollout", 25, 32, 1_000_000, 4)
    assert e1.task_problem.nx == 50 and e1.reference_problem.nx == 200 and e1.ladder_resolutions == (10, 25, 50)
    assert [m.checkpoint for m in suite.models if m.scores("mppde_e1_nx50")] == ["outputs/mppde_e1_nx50/checkpoints/last.ckpt"]


def test_rollout_plot_draws_solver_runs_beside_models(tmp_path):
    from pdebench.evaluation.leaderboard_plots import plot_rollout_errors

    out = plot_rollout_errors({}, tmp_path / "solvers.png", dt=0.016, t0=0.384, solver_curves={"fv n=50": [1e-4, 2e-4, 4e-4]})
    assert out.stat().st_size > 0
    plot_rollout_errors({"m": [0.1, 0.2]}, tmp_path / "both.png", solver_curves={"fv n=10": np.array([0.3, 0.4])})
    with pytest.raises(ValueError, match=r"solver_curves\['s'\]\[1\] = -1"):
        plot_rollout_errors({"m": [0.1]}, tmp_path / "bad.png", solver_curves={"s": [0.1, -1.0]})
    with pytest.raises(ValueError, match="empty"):
        plot_rollout_errors({}, tmp_path / "none.png", solver_curves={})
    with pytest.raises(ValueError, match="t0"):
        plot_rollout_errors({"m": [0.1]}, tmp_path / "t0.png", dt=0.1, t0=float("nan"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["both.png", "solvers.png"]


def test_a_rung_that_blows_up_is_left_off_the_ladder(cell_averaged_e1, tmp_path, monkeypatch, caplog):
    from pdebench.evaluation import reference as reference_module
    from pdebench.solvers.base import BlowUpError

    task = tiny_e1_task()
    reference = build_reference(task, tmp_path)
    build = reference_module.build_solver

    class Exploding:
        def solve(self, problem, u0, ids=None):
            raise BlowUpError([tuple(i) for i in ids], 0.1, problem.name)

    monkeypatch.setattr(reference_module, "build_solver", lambda p, **kw: Exploding() if p.nx == 8 else build(p, **kw))
    with caplog.at_level("WARNING", logger="pdebench.evaluation.reference"):
        assert [r.resolution for r in run_ladder(task, reference)] == [16]
    assert "blew up" in caplog.text
    monkeypatch.setattr(reference_module, "build_solver", lambda p, **kw: Exploding())
    with pytest.raises(ValueError, match="every solver rung blew up"):
        run_ladder(task, reference)
