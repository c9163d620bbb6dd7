"""The leaderboard: every model evaluated against the classical solver, at equal accuracy and equal cost.

For each task of a :class:`~pdebench.evaluation.suite.Suite`:

1. the held-out reference set is built once (cached by content hash; :mod:`.reference`);
2. the classical solver runs at its ladder of coarser grids and steps on this hardware, giving its
   accuracy–cost curve (:func:`~pdebench.evaluation.reference.run_ladder`);
3. every model entry is loaded from its checkpoint, checked against the task (the checkpoint's data
   card must name the same problem, parameters, resolution and horizon: a model trained on something
   else is a failed row, with the reason, never a silently wrong score), timed (warm, batched,
   median of repeats) and scored with the full metric set;
4. each model is placed on the solver's Pareto front (:mod:`.pareto`): speed-up at equal accuracy
   and accuracy at equal cost; and with its one-off cost (the solver seconds that made its training
   data, from its data card, plus its training time) the solves it takes to pay that back
   (:func:`~pdebench.evaluation.pareto.break_even`: ``N*``, amortised speed-ups after 10³ and 10⁶ solves);
5. with the task's ``eval_resolutions`` (the resolution protocol), every model that scored is also
   scored, without retraining, at each other grid ``r``: from the inputs at ``r`` (the fine initial
   condition sampled there; a rollout's frames at ``r``), against the truth at ``r``, timed the same
   way, and placed on the solver ladder run at ``r`` (:func:`score_resolutions`). Its resolution gap is
   ``nRMSE at r / nRMSE at the training grid``; a model that raises at ``r`` or answers with another
   shape is listed as unable to take that grid, with the reason (its row stays as scored).

Every row records its metrics (rollout tasks add MP-PDE's accumulated error, APEBench's correlation
time and nRMSE geometric mean and The Well's windowed VRMSE, in a second table), parameters, inference
time per sample and its speed-up over the reference solve, training time and data budget (from the
checkpoint), hardware, thread count, torch version, seeds and the git revision. Results go to
``results.json``, ``results.csv`` and ``results.md`` (atomic writes) with plots beside them; a rollout
task adds its per-step error curves (``<task>_rollout.png``, ``<task>_rollout_mse.png``,
``<task>_rollout_curves.csv``) for every model and solver rung.
"""

from __future__ import annotations

import csv
import io
import statistics
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pdebench.core.metrics import WELL_WINDOWS, window_name
from pdebench.evaluation.board_io import (SCHEMA_VERSION, Markup, RowFormat, device_name, fail_row, fmt, output_folder,
                                         results_document, timed, write_atomic, write_results)
from pdebench.evaluation.leaderboard_plots import plot_error_vs_cost, plot_prediction, plot_resolution, plot_rollout_errors
from pdebench.evaluation.pareto import AMORTISED_SOLVES, NOT_RANKABLE, CostCurve, break_even, speedup_at_equal_accuracy
from pdebench.evaluation.reference import (ReferenceSet, RungSolves, SolverRung, build_reference, run_ladder, scored_frames, step_curves,
                                           task_metrics)
from pdebench.evaluation.suite import ModelEntry, Suite, TaskSpec
from pdebench.training import data_card
from pdebench.training.data_card import single_dataset_card
from pdebench.training.module_classes import load_predictor, read_checkpoint_card
from pdebench.training.predictor import Predictor


#: Keys every result row has (the JSON schema test checks them).
ROW_KEYS = ("task", "name", "kind", "status", "error", "metrics", "nrmse", "cost_s", "placement", "parameters",
            "train_time_s", "train_samples_seen", "train_trajectories", "checkpoint", "seed", "samples", "device",
            "data_cost_s", "break_even")


# ------------------------------------------------------------------------------------------ models
def check_data_card(card: dict[str, Any] | None, task: TaskSpec) -> None:
    """Raise ``ValueError`` naming the difference if a checkpoint was trained on something else than
    ``task`` (:func:`pdebench.training.data_card.check_data_card` against the task's card)."""
    if not card:
        data_card.check_data_card(card, {}, f"task {task.name!r}")
    card = single_dataset_card(card)
    problem = task.task_problem
    wanted_task = {"one_step": "initial_to_final", "rollout": "next_step", "steady": "pairs"}[task.mode]
    if task.mode == "rollout" and card.get("task") == "bundles":  # MP-PDE bundles are next-step windows of K frames
        wanted_task = "bundles"
    times = problem.output_times()
    wanted = {"problem": problem.name, "params": dict(problem.params()), "resolution": list(problem.spatial_shape),
              "task": wanted_task, "history": task.history}
    if task.mode != "steady":
        wanted.update(target_time=times[-1] - times[0], dt_frame=times[1] - times[0])
    data_card.check_data_card(card, wanted, f"task {task.name!r}")


def load_model(entry: ModelEntry, device: torch.device | str = "cpu") -> tuple[Predictor, dict[str, Any]]:
    """``(module, checkpoint_extras)`` of a checkpoint entry, on ``device``, in eval mode
    (:func:`~pdebench.training.module_classes.load_predictor`)."""
    if entry.checkpoint is None:
        raise ValueError(f"model {entry.name!r} has no checkpoint; train it first (python train.py fit ...) and list its .ckpt")
    return load_predictor(entry.checkpoint, device)


def _predict(model: Predictor, task: TaskSpec, reference: ReferenceSet, batch_size: int,
             points: int | None = None, device: torch.device | str = "cpu") -> torch.Tensor:
    """Scored-frame predictions ``(N, T_scored, *space)`` on the task grid (``points`` None) or on a grid
    of ``points`` per axis of the task's ``eval_resolutions``, from the inputs on that grid, on the CPU
    (the model runs on ``device``: its inputs go there and its outputs come back in each timed run). A
    rollout gets the frame times and every per-sample PDE parameter of the problem, recovered from the
    samples' ``(seed, index)`` (:meth:`~pdebench.problems.base.Problem.sample_parameters`); the model reads
    what it needs."""
    problem = task.task_problem
    dims = problem.dim
    points = problem.spatial_shape[0] if points is None else points
    outputs = []
    with torch.no_grad():
        for start in range(0, task.samples, batch_size):
            rows = slice(start, start + batch_size)
            if task.mode == "steady":
                x = reference.initial[rows].float().unsqueeze(1).to(device)  # (B, 1, *space): the input field
                outputs.append(model.predict(x)[:, :1].cpu())  # (B, 1, *space): the solution
            elif task.mode == "one_step":
                x = reference.task_initial(points, dims)[rows].float().unsqueeze(1).to(device)  # (B, 1, *space)
                outputs.append(model.predict(x)[:, :1].cpu())  # (B, 1, *space): frame T
            else:
                frames = reference.truth_on(points)[rows].float().unsqueeze(2).to(device)  # (B, T, 1, *space)
                params = problem.sample_parameters(np.asarray(reference.sample_ids)[rows])
                outputs.append(model.rollout(frames, times=np.asarray(reference.times), params=params)[:, :, 0].cpu())
    return torch.cat(outputs)


@dataclass
class Row:
    """One leaderboard row (a model or a solver rung on one task)."""

    task: str
    name: str
    kind: str  # "model" or "solver"
    status: str = "ok"  # or "failed"
    error: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    nrmse: float | None = None
    cost_s: float | None = None
    timings_s: list[float] = field(default_factory=list)
    placement: dict[str, Any] | None = None
    parameters: int | None = None
    train_time_s: float | None = None
    train_samples_seen: int | None = None
    train_trajectories: int | None = None
    train_samples_used: int | None = None
    checkpoint: str | None = None
    seed: int | None = None
    samples: int | None = None
    #: The reference solve's wall time per sample over this entry's cost (> 1: faster than the fine solver).
    speedup_vs_reference: float | None = None
    #: Where the entry ran and was timed (:func:`~pdebench.evaluation.board_io.device_name`; solver rungs: the CPU).
    device: str = "cpu"
    #: Solver wall seconds that made the model's training data (its data card's ``data_cost_s``).
    data_cost_s: float | None = None
    #: :meth:`~pdebench.evaluation.pareto.BreakEven.to_dict` of the model (``C0`` = data + training).
    break_even: dict[str, Any] | None = None
    #: The resolution protocol (a model row of a task with ``eval_resolutions``): one
    #: :func:`resolution_entry` per grid, the training grid included.
    resolutions: list[dict[str, Any]] = field(default_factory=list)


def evaluate_model(entry: ModelEntry, task: TaskSpec, reference: ReferenceSet, batch_size: int = 32,
                   ladders: Mapping[int, CostCurve] | None = None,
                   device: torch.device | str = "cpu") -> tuple[Row, torch.Tensor | None]:
    """Score one checkpoint on one task, run and timed on ``device``; any failure becomes a failed row
    with its reason. With ``ladders`` (grid -> the solver's curve at that grid, for the task's
    ``eval_resolutions`` and its own grid) the row's :attr:`Row.resolutions` are scored too
    (:func:`score_resolutions`)."""
    row = Row(task.name, entry.name, "model", checkpoint=entry.checkpoint, seed=task.seed, samples=task.samples,
              device=device_name(device))
    try:
        module, extras = load_model(entry, device)
        check_data_card(extras.get("data"), task)
        budget = extras.get("budget") or {}
        card = extras.get("data") or {}
        row.parameters = sum(p.numel() for p in module.parameters())
        row.train_time_s, row.train_samples_seen = budget.get("train_time_s"), budget.get("samples_seen")
        row.train_trajectories, row.train_samples_used = card.get("train_trajectories"), card.get("train_samples_used")
        row.data_cost_s = single_dataset_card(card).get("data_cost_s") if card else None
        prediction, row.timings_s = timed(lambda: _predict(module, task, reference, batch_size, device=device), task.repeats, device)
        row.cost_s = statistics.median(row.timings_s) / task.samples
        truth = reference.truth[:, scored_frames(task, reference.truth.shape[1])]
        row.metrics = task_metrics(prediction, truth, task.mode)
        row.nrmse = row.metrics.get("nrmse", float("nan"))
        if not np.isfinite(row.nrmse):
            raise ValueError(f"the model's predictions are not finite (nRMSE {row.nrmse})")
        if ladders:
            row.resolutions = score_resolutions(module, row, task, reference, ladders, batch_size, device)
        return row, prediction
    except Exception as error:  # noqa: BLE001 - a failing entry must not stop the others
        fail_row(row, error)
        return row, None


#: :func:`resolution_entry` ``status`` of a grid the model cannot take (it raised, or answered with another shape).
FIXED_GRID = "cannot take this grid"


def resolution_entry(resolution: int, training_grid: int, nrmse: float | None, training_nrmse: float, cost_s: float | None,
                     curve: CostCurve | None, certified_error: float | None, reason: str | None = None,
                     metrics: dict[str, float] | None = None) -> dict[str, Any]:
    """One grid of a model's resolution protocol.

    ``{"resolution", "grid_ratio", "status", "reason", "nrmse", "gap", "cost_s", "placement", "metrics"}``
    (``grid_ratio = resolution / training_grid``): ``status`` ``"ok"``
    with ``gap = nrmse / training_nrmse`` (the resolution gap: > 1, the model loses accuracy off its
    training grid) and ``placement`` its :func:`~pdebench.evaluation.pareto.speedup_at_equal_accuracy` on
    ``curve`` (the solver ladder run at that grid); or :data:`FIXED_GRID` with the ``reason`` and the
    numbers ``None``.
    """
    head = {"resolution": resolution, "grid_ratio": resolution / training_grid}
    if reason is not None:
        return {**head, "status": FIXED_GRID, "reason": reason, "nrmse": None, "gap": None, "cost_s": None,
                "placement": None, "metrics": {}}
    return {**head, "status": "ok", "reason": None, "nrmse": nrmse, "gap": nrmse / training_nrmse,
            "cost_s": cost_s, "placement": speedup_at_equal_accuracy(curve, nrmse, cost_s, certified_error).to_dict(),
            "metrics": metrics or {}}


def score_resolutions(model: Predictor, row: Row, task: TaskSpec, reference: ReferenceSet, ladders: Mapping[int, CostCurve],
                      batch_size: int, device: torch.device | str = "cpu") -> list[dict[str, Any]]:
    """The model of a scored ``row`` at each grid of the task's ``eval_resolutions`` and at its own,
    increasing (:func:`resolution_entry` each).

    At another grid ``r`` the model predicts from the inputs at ``r`` (:meth:`ReferenceSet.task_initial`;
    a rollout's frames from :meth:`ReferenceSet.truth_on`), no retraining, timed as at its own grid
    (:func:`~pdebench.evaluation.board_io.timed`, median per sample), and is scored with
    :func:`task_metrics` against the truth at ``r``; an exception, predictions of another shape than
    the truth's or non-finite ones make it :data:`FIXED_GRID` at ``r``, with the reason. The task's
    own grid repeats the row (gap 1).
    """
    points = task.task_problem.spatial_shape[0]
    entries = []
    for r in sorted({*task.eval_resolutions, points}):
        if r == points:
            entries.append(resolution_entry(r, points, row.nrmse, row.nrmse, row.cost_s, ladders[r], reference.certified_error,
                                            metrics=row.metrics))
            continue
        truth = reference.truth_on(r)[:, scored_frames(task, reference.truth.shape[1])]
        try:
            prediction, timings = timed(lambda: _predict(model, task, reference, batch_size, points=r, device=device), task.repeats, device)
            if tuple(prediction.shape) != tuple(truth.shape):
                raise ValueError(f"from inputs at {r} points it answered with shape {tuple(prediction.shape)}, "
                                 f"not the truth's {tuple(truth.shape)}")
            metrics = task_metrics(prediction, truth, task.mode)
            if not np.isfinite(metrics.get("nrmse", np.nan)):
                raise ValueError(f"its predictions at {r} points are not finite")
        except Exception as error:  # noqa: BLE001 - a grid the model cannot take is listed, not fatal
            entries.append(resolution_entry(r, points, None, row.nrmse, None, None, None, reason=f"{type(error).__name__}: {error}"))
            continue
        entries.append(resolution_entry(r, points, metrics["nrmse"], row.nrmse, statistics.median(timings) / task.samples, ladders[r],
                                        reference.certified_error, metrics=metrics))
    return entries


# ------------------------------------------------------------------------------------------ suite
@dataclass
class TaskResult:
    task: TaskSpec
    reference: ReferenceSet
    rungs: list[SolverRung]
    rows: list[Row]
    predictions: dict[str, torch.Tensor]
    #: The solver ladder at each other grid of the task's ``eval_resolutions`` (:func:`run_ladder` with ``points``).
    resolution_rungs: dict[int, list[SolverRung]] = field(default_factory=dict)

    def curve_at(self, points: int | None = None) -> CostCurve:
        """The solver's accuracy–cost curve on the task grid (``points`` None or the task's) or at another
        grid of the task's ``eval_resolutions``."""
        rungs = self.resolution_rungs.get(points, self.rungs) if points is not None else self.rungs
        return CostCurve(np.array([r.cost_s for r in rungs]), np.array([r.error for r in rungs]), tuple(r.label for r in rungs))

    @property
    def curve(self) -> CostCurve:
        return self.curve_at()


def run_task(task: TaskSpec, models: list[ModelEntry], cache_dir: str | Path, batch_size: int = 32,
             progress: Callable[[str], None] | None = None, device: torch.device | str = "cpu") -> TaskResult:
    """Reference, solver ladder (on the CPU) and every model of one task (on ``device``)."""
    note = progress or (lambda _: None)
    note(f"{task.name}: reference")
    reference = build_reference(task, cache_dir)
    note(f"{task.name}: solver ladder")
    solves: RungSolves = {}  # every rung solved once; the ladders at the other eval_resolutions measure the same solves
    rungs = run_ladder(task, reference, progress=lambda label: note(f"{task.name}: {label}"), solves=solves)
    rows = [Row(task.name, r.label, "solver", metrics=dict(r.metrics or {"nrmse": r.error}), nrmse=r.error, cost_s=r.cost_s,
                timings_s=r.timings_s, seed=task.seed, samples=task.samples,
                speedup_vs_reference=speedup_vs_reference(reference, r.cost_s)) for r in rungs]
    result = TaskResult(task, reference, rungs, rows, {})
    for r in task.other_resolutions:
        note(f"{task.name}: solver ladder at {r} points")
        result.resolution_rungs[r] = run_ladder(task, reference, progress=lambda label: note(f"{task.name}: {label} (at {r})"),
                                                points=r, solves=solves)
    curve = result.curve
    ladders = {r: result.curve_at(r) for r in {*task.eval_resolutions, task.task_problem.spatial_shape[0]}}
    for entry in models:
        note(f"{task.name}: {entry.name}")
        row, prediction = evaluate_model(entry, task, reference, batch_size, ladders if task.eval_resolutions else None,
                                         device)
        if row.status == "ok":
            placement = speedup_at_equal_accuracy(curve, row.nrmse, row.cost_s, reference.certified_error)
            row.placement = placement.to_dict()
            row.break_even = break_even(curve, placement, one_off_cost(row)).to_dict()
            row.speedup_vs_reference = speedup_vs_reference(reference, row.cost_s)
            result.predictions[entry.name] = prediction
        rows.append(row)
    return result


def one_off_cost(row: Row) -> float | None:
    """``C0`` of a model row: its data's generation cost plus its training time, seconds (``None``
    when either is not recorded)."""
    if row.data_cost_s is None or row.train_time_s is None:
        return None
    return float(row.data_cost_s) + float(row.train_time_s)


def speedup_vs_reference(reference: ReferenceSet, cost_s: float | None) -> float | None:
    """Reference solve cost per sample over ``cost_s`` (``None`` without a positive cost).

    The reference cost is one cold batch solve on the refined grid (:attr:`ReferenceSet.cost_per_sample_s`),
    the entry's a warm median: the ratio is what replacing the fine solver by the entry saves, roughly.
    """
    if not cost_s or cost_s <= 0 or not np.isfinite(cost_s) or reference.wall_time_s <= 0:
        return None
    return reference.cost_per_sample_s / cost_s


def reference_label(task: TaskSpec) -> str:
    """``"fv-weno n=200"``: the reference solver and its grid."""
    fine = task.reference_problem
    return f"{fine.solver} n={'x'.join(map(str, fine.spatial_shape))}"


def run_suite(suite: Suite, output: str | Path | None = None, progress: Callable[[str], None] | None = None) -> Path:
    """Run every task of ``suite``; write results and plots under ``output`` (default ``suite.output``).

    Returns the path of ``results.json``.
    """
    out = output_folder(output, suite.output)
    results = [run_task(task, [m for m in suite.models if m.scores(task.name)], suite.cache_dir, suite.batch_size, progress,
                        suite.device) for task in suite.tasks]
    document = results_document(suite.name, None, suite.device, tasks=[_task_record(r) for r in results],
                                rows=[asdict(row) for result in results for row in result.rows])
    for result in results:
        _plots(result, out)
    return write_results(out, document, with_gap_columns(ROW_FORMAT, [t.eval_resolutions for t in suite.tasks]),
                         {r.task.name: _reference_line(r) for r in results})


def _task_record(result: TaskResult) -> dict[str, Any]:
    task = result.task
    return {"name": task.name, "problem": task.problem, "problem_args": task.problem_args, "mode": task.mode,
            "resolution": list(task.task_problem.spatial_shape), "seed": task.seed, "samples": task.samples,
            "reference": {"refinement": task.reference_refinement, "wall_time_s": result.reference.wall_time_s,
                          "cost_s": result.reference.cost_per_sample_s, "solver": reference_label(task),
                          "cell_averaged": result.reference.cell_averaged,
                          "certified_error": result.reference.certified_error,
                          "cache": str(result.reference.cache_path) if result.reference.cache_path else None},
            "solver_curve_monotone": result.curve.is_monotone, "content_hash": task.content_hash(),
            **({"resolutions": _resolution_records(result)} if task.eval_resolutions else {})}


def _resolution_records(result: TaskResult) -> list[dict[str, Any]]:
    """``tasks[i]["resolutions"]``: per grid of the resolution protocol (the task's own included), increasing,
    ``{"resolution", "ladder": [rungs as run at that grid]}``, each rung ``{"label", "resolution", "max_dt",
    "cost_s", "nrmse"}`` (its error measured against the truth at that grid)."""
    task = result.task
    points = task.task_problem.spatial_shape[0]
    return [{"resolution": r, "ladder": [{"label": g.label, "resolution": g.resolution, "max_dt": g.max_dt, "cost_s": g.cost_s,
                                          "nrmse": g.error} for g in result.resolution_rungs.get(r, result.rungs)]}
            for r in sorted({*task.eval_resolutions, points})]


def _reference_line(result: TaskResult) -> str:
    """``"reference solver (fv-weno n=200): 0.0123 s/sample (one cold batch solve of 32 samples, ...)"``."""
    ref = result.reference
    return (f"reference solver ({reference_label(result.task)}): {ref.cost_per_sample_s:.3g} s/sample "
            f"(one cold batch solve of {len(ref.sample_ids)} samples, timed when the reference was built)")


def _plots(result: TaskResult, out: Path) -> None:
    task = result.task
    models = {r.name: (r.cost_s, r.nrmse) for r in result.rows if r.kind == "model" and r.status == "ok"}
    plot_error_vs_cost(result.curve, models, out / f"{task.name}_error_vs_cost.png", title=f"{task.name}: models on the solver's ladder")
    frames = scored_frames(task, result.reference.truth.shape[1])
    truth = result.reference.truth[:, frames]
    if task.mode == "rollout":
        _rollout_outputs(result, truth, out)
    if task.eval_resolutions:
        _resolution_plot(result, out)
    layout = "x" if task.task_problem.dim == 1 else "xy"
    for name, prediction in result.predictions.items():
        plot_prediction(truth[0, -1].numpy(), prediction[0, -1].numpy(), out / f"{task.name}_{name}_sample0.png",
                        title=f"{name} on {task.name}, sample ({task.seed}, 0), last frame", layout=layout)


def _resolution_plot(result: TaskResult, out: Path) -> None:
    """``<task>_resolution.png``: every scored model's nRMSE at each grid of the resolution protocol (a grid it
    cannot take left out of its line), the best solver rung at each grid dashed."""
    task = result.task
    records = _resolution_records(result)
    grids = [rec["resolution"] for rec in records]
    best = [min(rung["nrmse"] for rung in rec["ladder"]) for rec in records]
    models = {row.name: [{e["resolution"]: e["nrmse"] for e in row.resolutions}.get(r) for r in grids]
              for row in result.rows if row.kind == "model" and row.resolutions}
    plot_resolution(grids, models, best, out / f"{task.name}_resolution.png", training_grid=task.task_problem.spatial_shape[0],
                    title=f"{task.name}: error against resolution (no retraining)")


def rollout_curves(result: TaskResult, truth: torch.Tensor) -> dict[str, tuple[str, dict[str, np.ndarray]]]:
    """Per-step curves of a rollout task: entry name -> ``(kind, {"mse", "nrmse", "corr", "vrmse"})``, each ``(T,)``, the
    models first, then every solver rung (:func:`~pdebench.evaluation.reference.step_curves`)."""
    curves = {name: ("model", step_curves(p, truth)) for name, p in result.predictions.items()}
    curves.update({rung.label: ("solver", rung.curves) for rung in result.rungs if rung.curves})
    return curves


#: The per-step curves of ``<task>_rollout_curves.csv`` (:func:`~pdebench.evaluation.reference.step_curves`).
CURVE_COLUMNS = ("mse", "nrmse", "corr", "vrmse")


def rollout_curves_csv(curves: dict[str, tuple[str, dict[str, np.ndarray]]], times: np.ndarray) -> str:
    """Long-format CSV ``entry, kind, step, time, mse, nrmse, corr, vrmse``: one line per entry and
    scored step (``step`` 1 is the first predicted frame, at ``time`` ``times[step - 1]``); a value
    that is not finite (a correlation of a constant field) is an empty cell."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(("entry", "kind", "step", "time", *CURVE_COLUMNS))
    for name, (kind, curve) in curves.items():
        for i in range(len(curve["nrmse"])):
            values = [float(curve[c][i]) for c in CURVE_COLUMNS]
            writer.writerow((name, kind, i + 1, repr(float(times[i])), *[repr(v) if np.isfinite(v) else "" for v in values]))
    return buffer.getvalue()


def _rollout_outputs(result: TaskResult, truth: torch.Tensor, out: Path) -> None:
    """``<task>_rollout.png`` (per-step nRMSE), ``<task>_rollout_mse.png`` (per-step MSE, the accumulated
    error's terms) and ``<task>_rollout_curves.csv`` for every model and solver rung of a rollout task."""
    task, times = result.task, result.reference.times
    curves = rollout_curves(result, truth)
    if not curves:
        return
    dt = float(times[1] - times[0])
    write_atomic(out / f"{task.name}_rollout_curves.csv", rollout_curves_csv(curves, times[task.history:]))
    for metric, suffix, ylabel in (("nrmse", "rollout", "nRMSE"), ("mse", "rollout_mse", "MSE per step (sum over space / N_space)")):
        models = {name: c[metric] for name, (kind, c) in curves.items() if kind == "model"}
        solvers = {name: c[metric] for name, (kind, c) in curves.items() if kind == "solver"}
        plot_rollout_errors(models, out / f"{task.name}_{suffix}.png", dt=dt, solver_curves=solvers, ylabel=ylabel,
                            t0=float(times[task.history - 1]),
                            title=f"{task.name}: rollout error per step (after {task.history} given frames)")


# ---------------------------------------------------------------------------------------- outputs
CSV_COLUMNS = ("task", "name", "kind", "status", "nrmse", "rmse", "max_error", "crmse", "frmse_low", "frmse_mid", "frmse_high",
               "accumulated_error", "corr_time", "corr_step", "rollout_nrmse_gmean", "vrmse_1", "vrmse_6-12", "vrmse_13-30", "cost_s", "speedup", "verdict", "solver_nrmse_at_equal_cost", "speedup_vs_reference", "n_star", "never_pays_back", *(f"amortised_speedup_{n}" for n in AMORTISED_SOLVES),
               *(f"amortised_error_ratio_{n}" for n in AMORTISED_SOLVES), "data_cost_s", "parameters", "train_time_s", "train_samples_seen",
               "train_trajectories", "train_samples_used", "seed", "samples", "checkpoint", "error", "device", "hardware", "threads", "torch", "git_revision")
HEADERS = ("entry", "nRMSE", "acc. error", "cost / sample", "speed-up at equal accuracy", "solver nRMSE at equal cost",
           "vs reference", "break-even N*", "amortised ×10³ · ×10⁶", "params", "training", "resolution gap")


def speedup_cell(placement: dict[str, Any] | None) -> str:
    """``"12.3× (faster than the solver)"``: a placement's speed-up at equal accuracy, or its verdict and bound."""
    if not placement:
        return "–"
    if placement.get("speedup") is not None:
        return f"{placement['speedup']:.3g}× ({placement['verdict']})"
    bound = placement.get("speedup_bound")
    kind = placement.get("speedup_bound_kind")
    sign = "≥" if kind == "lower" else "≤"
    return f"{placement['verdict']}" + (f" ({sign} {bound:.3g}×)" if bound is not None else "")


def equal_cost_cell(placement: dict[str, Any] | None) -> str:
    """The solver's error at the model's cost, or where the model's cost lies off the ladder."""
    placement = placement or {}
    value = placement.get("solver_error_at_equal_cost")
    if value is not None:
        return f"{value:.3g}"
    reason = placement.get("equal_cost_reason") or ""
    return "beyond the costliest rung" if "more expensive" in reason else "below the cheapest rung" if "cheaper" in reason else "–"


def training_cell(seconds: float | None, used: int | None, trajectories: int | None) -> str:
    """``"310 s, 9,500 samples of 12,000 traj."``: the training budget from the checkpoint."""
    if seconds is None:
        return "–"
    data = f", {used:,} samples" if used is not None else ""
    data += f" of {trajectories:,} traj." if trajectories is not None else ""
    return f"{seconds:.0f} s{data}"


def break_even_cell(record: dict[str, Any] | None) -> str:
    """``"3.4e+04"`` solves to pay back the model's data and training, ``"never"``, ``"≤ 1.2e+05"``
    (a bound: the model is more accurate than every rung) or ``"–"`` (not known, with no reason shown)."""
    if not record:
        return "–"
    if record["never"]:
        return "never"
    if record["n_star"] is None:
        return "–"
    sign = {"upper": "≤ ", "lower": "≥ "}.get(record["bound_kind"], "")
    return f"{sign}{record['n_star']:.3g}"


def amortised_cell(record: dict[str, Any] | None) -> str:
    """``"0.05× · 11.8×"``: the amortised speed-ups after each of :data:`AMORTISED_SOLVES` solves."""
    if not record or record["n_star"] is None and not record["never"]:
        return "–"
    speedups = record["amortised_speedup"]
    sign = {"upper": "≥ ", "lower": "≤ "}.get(record["bound_kind"], "")  # opposite to N*'s bound
    return " · ".join(f"{sign}{speedups[str(n)]:.3g}×" for n in AMORTISED_SOLVES)


def resolution_gap_cell(entries: list[dict[str, Any]] | None) -> str:
    """``"×0.5: 1.31 · ×2: 1.07"``: a model's resolution gap (nRMSE at ``r`` / nRMSE at its training
    grid) at each other grid, labelled by ``r / training grid``; ``"fixed grid"`` for a grid it cannot
    take (alone when it takes none); ``"–"`` without the protocol."""
    others = [e for e in entries or () if e["grid_ratio"] != 1]
    if not others:
        return "–"
    if all(e["status"] != "ok" for e in others):
        return "fixed grid"
    return " · ".join(f"×{e['grid_ratio']:g}: " + (fmt(e["gap"]) if e["status"] == "ok" else "fixed grid") for e in others)


def _reference_cell(speedup: float | None) -> str:
    return "–" if speedup is None else f"{speedup:.3g}×"


def _cells(r: dict[str, Any], markup: Markup) -> list[str]:
    """One row's cells under :data:`HEADERS`. ``acc. error`` is MP-PDE's accumulated error (rollout
    tasks; :func:`~pdebench.core.metrics.accumulated_error`), ``vs reference`` the reference solve's
    cost per sample over the entry's."""
    if r["status"] != "ok":
        return [r["name"], markup.failed.format(r["error"]), *[""] * (len(HEADERS) - 2)]
    common = [fmt(r["nrmse"]), fmt((r.get("metrics") or {}).get("accumulated_error")), f"{fmt(r['cost_s'] * 1e3)} ms"]
    reference = _reference_cell(r.get("speedup_vs_reference"))
    if r["kind"] != "model":
        return [r["name"], *common, "(solver)", "", reference, *[""] * (len(HEADERS) - 7)]
    return [markup.bold.format(r["name"]), *common, speedup_cell(r["placement"]), equal_cost_cell(r["placement"]),
            reference, break_even_cell(r.get("break_even")), amortised_cell(r.get("break_even")), fmt(r["parameters"], ","),
            training_cell(r["train_time_s"], r.get("train_samples_used"), r["train_trajectories"]),
            resolution_gap_cell(r.get("resolutions"))]


def _csv_values(r: dict[str, Any]) -> dict[str, Any]:
    placement = r["placement"] or {}
    record = r.get("break_even") or {}
    amortised = {f"amortised_{kind}_{n}": (record.get(f"amortised_{kind}") or {}).get(str(n))
                 for kind in ("speedup", "error_ratio") for n in AMORTISED_SOLVES}
    return {**r["metrics"], "speedup": placement.get("speedup"), "verdict": placement.get("verdict"),
            "solver_nrmse_at_equal_cost": placement.get("solver_error_at_equal_cost"), "n_star": record.get("n_star"),
            "never_pays_back": record.get("never"), **amortised, **_gap_values(r)}


def _gap_values(r: dict[str, Any]) -> dict[str, float | None]:
    """``{"gap_<r>": gap}`` of a row's resolution protocol (``None`` where the model cannot take ``r``)."""
    return {f"gap_{e['resolution']}": e["gap"] for e in r.get("resolutions") or ()}


def with_gap_columns(row_format: RowFormat, resolutions: list[tuple[int, ...]]) -> RowFormat:
    """``row_format`` whose CSV has a ``gap_<r>`` column for every grid in ``resolutions`` (the tasks'
    ``eval_resolutions``), increasing, before the environment's columns; unchanged without any."""
    grids = sorted({r for task in resolutions for r in task})
    if not grids:
        return row_format
    columns = list(row_format.csv_columns)
    at = columns.index("hardware")
    return replace(row_format, csv_columns=(*columns[:at], *(f"gap_{r}" for r in grids), *columns[at:]))


def _models_first(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A task's models (ranked ones by nRMSE, then those below the reference's accuracy, then failed
    ones), then the solver's rungs as run."""

    def order(r: dict[str, Any]) -> tuple:
        unranked = (r.get("placement") or {}).get("verdict") == NOT_RANKABLE
        return (r["status"] != "ok", unranked, r["nrmse"] or np.inf)

    models = sorted((r for r in rows if r["kind"] == "model"), key=order)
    return models + [r for r in rows if r["kind"] != "model"]


#: Metric keys of the rollout table's windows (:data:`~pdebench.core.metrics.WELL_WINDOWS`).
VRMSE_KEYS = tuple(f"vrmse_{window_name(a, b)}" for a, b in WELL_WINDOWS)
ROLLOUT_HEADERS = ("entry", "corr_t", "gmean_nrmse", *VRMSE_KEYS)


def _rollout_cells(r: dict[str, Any], markup: Markup) -> list[str]:
    """One rollout row's cells under :data:`ROLLOUT_HEADERS`: the correlation time in steps (``≥ T``
    when the correlation never fell below 0.8 in the ``T`` scored steps), the nRMSE geometric mean
    and the windowed VRMSE (``–`` for a window the rollout does not cover)."""
    metrics = r.get("metrics") or {}
    corr = metrics.get("corr_time")
    corr_cell = "–" if corr is None else fmt(corr) if "corr_step" in metrics else f"≥ {corr:g}"
    name = markup.bold.format(r["name"]) if r["kind"] == "model" else r["name"]
    return [name, corr_cell, fmt(metrics.get("rollout_nrmse_gmean")), *[fmt(metrics.get(k)) for k in VRMSE_KEYS]]


def _rollout_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of a rollout task (those with rollout metrics), in :func:`_models_first` order."""
    return [r for r in _models_first(rows) if "corr_time" in (r.get("metrics") or {})]


#: The rollout tasks' second table (:func:`~pdebench.core.metrics.rollout_metrics`), under the first:
#: ``corr_t`` the steps until the correlation falls below 0.8, ``gmean_nrmse`` over steps 1..min(100, T).
ROLLOUT_FORMAT = RowFormat("rollout metrics", (), ROLLOUT_HEADERS, _rollout_cells, order=_rollout_rows, front=("cost_s", "nrmse"))
#: The operator board's tables: ``results.md`` lists every rung under a task's models (and the
#: reference solver's cost under the table); the printed table the rungs on the Pareto front. Rollout
#: tasks add :data:`ROLLOUT_FORMAT`'s table.
ROW_FORMAT = RowFormat("leaderboard", CSV_COLUMNS, HEADERS, _cells, _csv_values, _models_first, ("cost_s", "nrmse"),
                       then=ROLLOUT_FORMAT)


_NUMBER_OR_NULL = {"type": ["number", "null"]}
#: One entry of a row's ``resolutions`` (:func:`resolution_entry`).
RESOLUTION_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["resolution", "grid_ratio", "status", "reason", "nrmse", "gap", "cost_s", "placement"],
    "properties": {"resolution": {"type": "integer", "minimum": 8}, "grid_ratio": {"type": "number", "exclusiveMinimum": 0}, "status": {"enum": ["ok", FIXED_GRID]},
                   "reason": {"type": ["string", "null"]}, "nrmse": _NUMBER_OR_NULL, "gap": _NUMBER_OR_NULL,
                   "cost_s": _NUMBER_OR_NULL, "placement": {"type": ["object", "null"], "required": ["verdict", "speedup"]}},
    "if": {"properties": {"status": {"const": "ok"}}},
    "then": {"properties": {"nrmse": {"type": "number"}, "gap": {"type": "number"}, "cost_s": {"type": "number"},
                            "placement": {"type": "object"}}},
    "else": {"properties": {"reason": {"type": "string"}}},
}
#: JSON schema of ``results.json`` (draft 2020-12).
RESULTS_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["schema_version", "suite", "created", "environment", "tasks", "rows"],
    "properties": {
        "schema_version": {"const": SCHEMA_VERSION},
        "suite": {"type": "string"},
        "created": {"type": "string"},
        "environment": {"type": "object", "required": ["hardware", "cpu_count", "threads", "torch", "git_revision"]},
        "tasks": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["name", "problem", "mode", "resolution", "seed", "samples", "reference", "content_hash"],
            "properties": {"resolutions": {"type": "array", "items": {
                "type": "object", "required": ["resolution", "ladder"],
                "properties": {"resolution": {"type": "integer", "minimum": 8}, "ladder": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "required": ["label", "resolution", "cost_s", "nrmse"],
                    "properties": {"cost_s": {"type": "number"}, "nrmse": {"type": "number"}}}}}}}}}},
        "rows": {"type": "array", "items": {
            "type": "object", "required": list(ROW_KEYS),
            "properties": {
                "kind": {"enum": ["model", "solver"]},
                "status": {"enum": ["ok", "failed"]},
                "error": {"type": ["string", "null"]},
                "metrics": {"type": "object", "additionalProperties": {"type": "number"},
                            "properties": {"corr_time": {"type": "number", "minimum": 0},  # rollout tasks
                                           "corr_step": {"type": "number", "minimum": 1},
                                           "rollout_nrmse_gmean": {"type": "number", "minimum": 0},
                                           **{k: {"type": "number", "minimum": 0} for k in VRMSE_KEYS}}},
                "nrmse": _NUMBER_OR_NULL, "cost_s": _NUMBER_OR_NULL,
                "placement": {"type": ["object", "null"], "required": ["verdict", "speedup"]},
                "data_cost_s": {"type": ["number", "null"], "minimum": 0},
                "break_even": {"type": ["object", "null"],
                               "required": ["one_off_s", "model_cost", "solver_cost", "n_star", "never", "bound_kind",
                                            "amortised_speedup", "amortised_error_ratio", "reason"],
                               "properties": {"n_star": {"type": ["number", "null"], "minimum": 0},
                                              "never": {"type": "boolean"},
                                              "bound_kind": {"enum": ["lower", "upper", None]},
                                              "amortised_speedup": {"type": "object", "required": [str(n) for n in AMORTISED_SOLVES],
                                                                    "additionalProperties": _NUMBER_OR_NULL}}},
                "parameters": {"type": ["integer", "null"]},
                "resolutions": {"type": "array", "items": RESOLUTION_SCHEMA},
            },
            "if": {"properties": {"status": {"const": "ok"}}},
            "then": {"properties": {"nrmse": {"type": "number"}, "cost_s": {"type": "number"}}},
            "else": {"properties": {"error": {"type": "string"}}},
        }},
    },
}


def count_steps(suite: Suite) -> int:
    """Progress steps of :func:`run_suite`: per task the reference, the ladder's rungs, the ladder and its rungs
    at each other grid of its ``eval_resolutions``, each model it scores."""
    return sum(1 + 1 + len(t.ladder_resolutions) * len(t.ladder_max_dt) + sum(m.scores(t.name) for m in suite.models)
               + sum(1 + len(t.ladder_at(r)) * len(t.ladder_max_dt) for r in t.other_resolutions)
               for t in suite.tasks)


def check_entries(suite: Suite) -> None:
    """Refuse a foreign or malformed checkpoint before the board starts (one line, naming the file)."""
    for entry in suite.models:
        if entry.checkpoint is not None and Path(entry.checkpoint).is_file():
            read_checkpoint_card(entry.checkpoint)
