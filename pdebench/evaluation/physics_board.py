r"""Leaderboard of *physics-informed* operators (NSM and its PINN baseline) against finite differences.

NSM (:class:`~pdebench.models.nsm.NSM`, board ``physics``) learns the solution operator of a PDE
from its residual alone, no solver data; so does the PINN baseline (the same network run on a grid,
trained on the finite-difference residual, :mod:`pdebench.training.physics`). This board trains both
on a task's problem and scores them on held-out inputs against the **exact** solution, beside the
classical solver of the same problem:

* a *task* is a residual problem with an exact solution (``periodic_poisson``:
  :class:`~pdebench.models.nsm.PeriodicPoisson`, :math:`-\Delta u = f` on :math:`[0, L)^d`, exact
  :math:`\hat u_k = \hat f_k / |k|^2`), the NSM settings, the training settings
  (:class:`~pdebench.training.physics.PhysicsTrainConfig` fields, the same for both methods), the
  uniform grid of ``grid`` points per axis (the PINN's loss grid and every method's evaluation grid),
  ``samples`` held-out inputs ``(LEADERBOARD_SEED_BASE + seed, i)`` (never in a training pool) and a
  finite-difference ladder;
* a method's row: the relative L2 error of its solution on the grid against the exact solution there
  (per sample, mean over the samples), its inference wall time per sample (median of ``repeats``
  warm batched runs; coefficients to grid values included) and its training time and steps;
* the classical rows: second-order finite differences on ``n`` points per axis
  (:func:`fd_periodic_poisson`: the periodic five-point Laplacian, solved exactly by its discrete
  Fourier symbol), each with its error against the exact solution at its own nodes and its median wall
  time per sample;
* every method is placed on the finite-difference accuracy–cost curve
  (:func:`~pdebench.evaluation.instance_board.place_methods`: speed-up at equal accuracy, error at
  equal cost), rows and tables as the instance board's (:class:`~.instance_board.LadderRow`).

A suite file (``configs/leaderboard/nsm.yaml``)::

    name: nsm
    kind: physics
    output: outputs/leaderboard/nsm
    tasks:
      - name: periodic_poisson2d
        problem_args: {n_modes: 8, source_modes: 4}          # PeriodicPoisson fields
        model_args: {hidden_channels: 32, n_layers: 4}       # NSM fields
        train: {steps: 800, batch_size: 16, lr: 0.01}        # PhysicsTrainConfig fields
        grid: 32
        ladder: [16, 32, 64, 128, 256]

Results: ``results.json`` (with :func:`~pdebench.evaluation.board_io.environment`),
``results.csv``, ``results.md`` and ``<task>_error_vs_cost.png`` per task.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from pdebench.core.metrics import relative_l2
from pdebench.evaluation.board_io import (BoardSuite, Markup, RowFormat, fail_row, fmt, output_folder, results_document,
                                         timed, write_results)
from pdebench.evaluation.instance_board import LadderRow, ladder_curve, place_methods, plot_ladder
from pdebench.evaluation.leaderboard import equal_cost_cell, speedup_cell
from pdebench.evaluation.suite import LEADERBOARD_SEED_BASE
from pdebench.models.nsm import NSM, PeriodicPoisson
from pdebench.registry import require_int
from pdebench.training.physics import PhysicsTrainConfig, fit_physics, predict_values

KIND = "physics"
#: The methods: name -> training mode of :func:`~pdebench.training.physics.fit_physics`.
METHODS = {"nsm": "spectral", "pinn": "pinn"}


def fd_periodic_poisson(f: torch.Tensor, length: float) -> torch.Tensor:
    r"""Second-order finite differences of :math:`-\Delta u = f` on the periodic grid of ``n`` points per
    axis (:math:`h = L / n`), zero-mean :math:`u`, solved exactly in the discrete Fourier basis.

    .. math:: \hat u_k = \hat f_k \Big/ \sum_a \frac{4}{h^2} \sin^2\frac{k_a h}{2}, \qquad \hat u_0 = 0,

    the symbol of :math:`-\Delta_h` (:math:`(u_{i+1} - 2u_i + u_{i-1}) / h^2` per axis).

    Parameters
    ----------
    f
        Source values ``(B, C, n, ..., n)`` (real, ``d`` spatial axes).
    length
        Period ``L``.

    Returns
    -------
    torch.Tensor
        ``u`` at the same points, same shape and dtype.
    """
    axes = tuple(range(2, f.ndim))
    n = f.shape[2:]
    symbol = torch.zeros((), dtype=f.dtype)
    for i, m in enumerate(n):
        h = length / m
        freq = torch.fft.rfftfreq if i == len(n) - 1 else torch.fft.fftfreq
        k = 2 * math.pi * freq(m, d=h, dtype=f.dtype)  # the default float32 would cost 8 digits
        symbol = symbol.unsqueeze(-1) + 4 / h**2 * torch.sin(k * h / 2) ** 2
    f_hat = torch.fft.rfftn(f, dim=axes)
    u_hat = torch.where(symbol > 0, f_hat / torch.where(symbol > 0, symbol, torch.ones_like(symbol)), torch.zeros_like(f_hat))
    return torch.fft.irfftn(u_hat, s=n, dim=axes)


# ------------------------------------------------------------------------------------------ suite
@dataclass(frozen=True)
class PhysicsTask:
    """One physics task: NSM and the PINN trained on the problem, against the finite-difference ladder.

    Parameters
    ----------
    name
        Row label.
    problem
        ``"periodic_poisson"`` (the problem with an exact solution and a finite-difference ladder).
    problem_args
        :class:`~pdebench.models.nsm.PeriodicPoisson` fields (``dim``, ``n_modes``, ``source_modes``, ...).
    model_args
        :class:`~pdebench.models.nsm.NSM` arguments besides the problem's bases, modes and channels.
    train
        :class:`~pdebench.training.physics.PhysicsTrainConfig` fields, for both methods.
    methods
        Some of :data:`METHODS`.
    grid
        Points per axis of the evaluation grid and of the PINN's loss (``>= 2 * n_modes`` keeps every
        mode of the source on it).
    ladder
        Finite-difference points per axis (each, like ``grid``, ``>= 2 * n_modes - 1``: the inputs'
        modes are all on the grid).
    samples
        Held-out inputs ``(LEADERBOARD_SEED_BASE + seed, i)``, ``i < samples``.
    seed
        Seed of the held-out inputs and of the initial weights.
    repeats
        Timed runs (the median is reported).
    """

    name: str
    problem: str = "periodic_poisson"
    problem_args: dict[str, Any] = field(default_factory=dict)
    model_args: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    methods: tuple[str, ...] = tuple(METHODS)
    grid: int = 32
    ladder: tuple[int, ...] = (16, 32, 64, 128)
    samples: int = 16
    seed: int = 0
    repeats: int = 3

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"every task needs a non-empty name, got {self.name!r}")
        if self.problem != "periodic_poisson":
            raise ValueError(f"task {self.name!r}: problem must be 'periodic_poisson', got {self.problem!r}")
        for label, value in (("problem_args", self.problem_args), ("model_args", self.model_args), ("train", self.train)):
            if not isinstance(value, dict):
                raise ValueError(f"task {self.name!r}: {label} must be a mapping, got {value!r}")
        methods = tuple(self.methods) if isinstance(self.methods, (list, tuple)) else ()
        if not methods or len(set(methods)) != len(methods) or not set(methods) <= set(METHODS):
            raise ValueError(f"task {self.name!r}: methods must be distinct names from {', '.join(METHODS)}, got {self.methods!r}")
        object.__setattr__(self, "methods", methods)
        for label, value, low in (("grid", self.grid, 4), ("samples", self.samples, 1), ("repeats", self.repeats, 1),
                                  ("seed", self.seed, 0)):
            require_int(label, value, low, f"task {self.name!r}: ")
        ladder = self.ladder
        if isinstance(ladder, (str, int)) or not ladder or not all(isinstance(r, int) and not isinstance(r, bool) and r >= 4
                                                                   for r in ladder):
            raise ValueError(f"task {self.name!r}: ladder must be a non-empty list of integers >= 4 (points per axis), got {ladder!r}")
        object.__setattr__(self, "ladder", tuple(sorted(set(ladder))))
        for label, build in (("problem_args", self.build_problem), ("train", self.train_config)):
            try:
                build()
            except (TypeError, ValueError) as error:
                raise ValueError(f"task {self.name!r}: {label}: {error}") from None
        fewest = 2 * self.build_problem().n_modes - 1
        if min(self.grid, *self.ladder) < fewest:
            raise ValueError(f"task {self.name!r}: grid and ladder need >= {fewest} points per axis (2 n_modes - 1, every "
                             f"mode of the source on the grid), got grid {self.grid}, ladder {list(self.ladder)}")

    def build_problem(self) -> PeriodicPoisson:
        """The task's :class:`~pdebench.models.nsm.PeriodicPoisson`."""
        return PeriodicPoisson(**self.problem_args)

    def train_config(self) -> PhysicsTrainConfig:
        """The task's :class:`~pdebench.training.physics.PhysicsTrainConfig`."""
        return PhysicsTrainConfig(**self.train)

    def points(self, n: int) -> tuple[int, ...]:
        """The grid of ``n`` points per axis in the problem's dimension."""
        return (n,) * self.build_problem().dim

    def inputs(self) -> torch.Tensor:
        """The held-out input coefficients ``(samples, 1, *coeff_shape)``, complex128."""
        return self.build_problem().sample_inputs(LEADERBOARD_SEED_BASE + self.seed, range(self.samples))


@dataclass(frozen=True)
class PhysicsSuite(BoardSuite):
    """Physics tasks and where results go (``kind: physics`` in the YAML)."""

    TASK, KIND = PhysicsTask, KIND
    name: str
    tasks: tuple[PhysicsTask, ...]
    kind: str = KIND
    output: str = "outputs/leaderboard/nsm"


def count_steps(suite: PhysicsSuite) -> int:
    """Progress steps of :func:`run_suite`: every method and finite-difference rung of every task."""
    return sum(len(task.methods) + len(task.ladder) for task in suite.tasks)


# ------------------------------------------------------------------------------------------ rows
def run_method(task: PhysicsTask, method: str, exact: torch.Tensor) -> LadderRow:
    """Train one method on the task's problem and score it on the held-out inputs against ``exact``
    (the exact solution on the task's grid, ``(samples, 1, *grid)``); a failure is a failed row."""
    row = LadderRow(task.name, method, "model", task.grid)
    try:
        problem, config, grid, mode = task.build_problem(), task.train_config(), task.points(task.grid), METHODS[method]
        torch.manual_seed(task.seed)
        model = NSM(**problem.model_kwargs(), **task.model_args)
        fit = fit_physics(model, problem, config, mode=mode, pinn_grid=grid if mode == "pinn" else None,
                          eval_inputs=task.inputs(), eval_grid=grid, reference=exact)
        model.eval()
        inputs = task.inputs()
        prediction, row.timings_s = timed(lambda: predict_values(model, problem, inputs, grid, mode), task.repeats)
        row.rel_l2 = float(relative_l2(prediction.to(exact.dtype), exact))
        row.cost_s = statistics.median(row.timings_s) / task.samples
        row.details = {"mode": mode, "train_time_s": fit.train_time_s, "train_steps": len(fit.losses),
                       "final_loss": fit.losses[-1], "eval_steps": fit.eval_steps, "errors": fit.errors,
                       "parameters": sum(p.numel() for p in model.parameters())}
        if not math.isfinite(row.rel_l2):
            raise ValueError(f"the prediction is not finite (relative L2 {row.rel_l2})")
    except Exception as error:  # noqa: BLE001 - a failing entry must not stop the board
        fail_row(row, error, rel_l2=None, cost_s=None)
    return row


def run_fd(task: PhysicsTask, n: int) -> LadderRow:
    """Finite differences at ``n`` points per axis on every held-out input, against the exact solution
    at the same points."""
    row = LadderRow(task.name, f"fd n={n}", "solver", n)
    try:
        problem, inputs, points = task.build_problem(), task.inputs(), task.points(n)
        f = problem.basis.to_values(inputs, points)
        u, row.timings_s = timed(lambda: fd_periodic_poisson(f, problem.length), task.repeats)
        row.rel_l2 = float(relative_l2(u, problem.basis.to_values(problem.exact(inputs), points)))
        row.cost_s = statistics.median(row.timings_s) / task.samples
        row.details = {"unknowns": n ** problem.dim}
    except Exception as error:  # noqa: BLE001 - a failing rung must not stop the board
        fail_row(row, error, rel_l2=None, cost_s=None)
    return row


def run_task(task: PhysicsTask, progress: Callable[[str], None] | None = None) -> list[LadderRow]:
    """Every method, the finite-difference ladder, and the methods' placement on it, for one task."""
    note = progress or (lambda _: None)
    problem = task.build_problem()
    exact = problem.basis.to_values(problem.exact(task.inputs()), task.points(task.grid))
    rows = []
    for method in task.methods:
        note(f"{task.name}: {method}")
        rows.append(run_method(task, method, exact))
    for n in task.ladder:
        note(f"{task.name}: fd n={n}")
        rows.append(run_fd(task, n))
    place_methods(rows)
    return rows


def run_suite(suite: PhysicsSuite, output: str | Path | None = None,
              progress: Callable[[str], None] | None = None) -> Path:
    """Run every task; write ``results.json``, ``results.csv``, ``results.md`` and the plots under
    ``output`` (default ``suite.output``). Returns the path of ``results.json``."""
    out = output_folder(output, suite.output)
    per_task = {task.name: run_task(task, progress) for task in suite.tasks}
    tasks = []
    for task in suite.tasks:
        plot_ladder(task.name, per_task[task.name], out / f"{task.name}_error_vs_cost.png", unit="one sample")
        curve = ladder_curve(per_task[task.name])
        tasks.append({**asdict(task), "fd_curve_monotone": None if curve is None else curve.is_monotone})
    document = results_document(suite.name, KIND, tasks=tasks, rows=[asdict(r) for rows in per_task.values() for r in rows])
    return write_results(out, document, ROW_FORMAT, {t.name: _task_line(t) for t in suite.tasks})


def _task_line(task: PhysicsTask) -> str:
    problem = task.build_problem()
    return (f"-Δu = f on [0, {problem.length:.4g})^{problem.dim}, periodic, {problem.n_modes} modes, sources up to mode "
            f"{problem.source_modes}; {task.samples} held-out inputs on {task.grid}^{problem.dim} points; "
            f"{task.train_config().steps} training steps each")


# ------------------------------------------------------------------------------------------ outputs
CSV_COLUMNS = ("task", "name", "kind", "status", "n", "rel_l2", "cost_s", "speedup", "verdict", "speedup_bound",
               "fd_rel_l2_at_equal_cost", "train_time_s", "train_steps", "parameters", "error", "hardware", "threads",
               "torch", "git_revision")
HEADERS = ("entry", "n", "rel. L2", "cost / sample", "speed-up at equal accuracy", "fd rel. L2 at equal cost", "training")


def _csv_values(row: dict[str, Any]) -> dict[str, Any]:
    placement, details = row["placement"] or {}, row["details"]
    return {"speedup": placement.get("speedup"), "verdict": placement.get("verdict"),
            "speedup_bound": placement.get("speedup_bound"), "fd_rel_l2_at_equal_cost": placement.get("solver_error_at_equal_cost"),
            **{k: details.get(k) for k in ("train_time_s", "train_steps", "parameters")}}


def _cells(r: dict[str, Any], markup: Markup) -> list[str]:
    """One row's cells under :data:`HEADERS`."""
    if r["status"] != "ok":
        return [r["name"], str(r["n"]), markup.failed.format(r["error"]), "", "", "", ""]
    cost = f"{fmt(r['cost_s'] * 1e3)} ms"
    if r["kind"] != "model":
        return [r["name"], str(r["n"]), fmt(r["rel_l2"]), cost, "(solver)", "", ""]
    details = r["details"]
    return [markup.bold.format(r["name"]), str(r["n"]), fmt(r["rel_l2"]), cost, speedup_cell(r["placement"]),
            equal_cost_cell(r["placement"]), f"{details['train_time_s']:.3g} s, {details['train_steps']} steps"]


#: The physics board's tables: per task NSM and the PINN, then every finite-difference rung (the
#: printed table: the rungs on the Pareto front); ``results.md`` describes each task under the table.
ROW_FORMAT = RowFormat("physics board", CSV_COLUMNS, HEADERS, _cells, _csv_values, front=("cost_s", "rel_l2"))
