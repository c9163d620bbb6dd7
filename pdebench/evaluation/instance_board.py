r"""Leaderboard of *instance* solvers (GP-HM) against second-order finite differences.

GP-HM (:class:`~pdebench.models.gp_hm.GPHM`, board ``instance``) is not a data-driven
operator: it solves **one** PDE instance by optimisation, so it has no held-out set and no
inference cost per sample. The fair comparison is with a classical solver of the same instance:

* a *task* is a named instance (:data:`~pdebench.problems.manufactured.INSTANCES`: the equation,
  its exact solution and the manufactured source, the same ones ``benchmarks/bench_gp_hm.py`` runs), the
  grid size ``n`` (nodes per axis on :math:`[0, 1]^d`, boundary included) and the GP-HM settings
  (any :class:`~pdebench.models.gp_hm.GPHMConfig` field);
* the GP-HM row is the relative L2 error of its grid values against the exact solution at its grid
  nodes, :math:`\lVert U - u(X)\rVert_2 / \lVert u(X)\rVert_2`, and the wall time of building and
  fitting the model (Adam, then L-BFGS);
* the classical rows are second-order finite differences (:func:`fd_solve`: the
  :math:`(2d+1)`-point Laplacian in ``scipy.sparse``, a sparse direct solve; Newton's method with
  the sparse Jacobian for Allen–Cahn) on a ladder of grid sizes, each with its relative L2 error at
  its own nodes and the median wall time of ``repeats`` solves (assembly included, as GP-HM's time
  includes its set-up);
* GP-HM is placed on the finite-difference accuracy–cost curve
  (:func:`~pdebench.evaluation.pareto.speedup_at_equal_accuracy`: speed-up at equal accuracy,
  error at equal cost), and compared with the finite-difference solve at its own ``n`` (equal
  resolution).

The equations are :mod:`pdebench.equations.steady`'s (GP-HM and the finite differences evaluate the
same residual): Poisson :math:`-\Delta u = f`, Allen–Cahn :math:`\Delta u + u(u^2 - 1) = f`,
Dirichlet values from the exact solution on every face.

A suite file (``configs/leaderboard/gp_hm.yaml``)::

    name: gp_hm
    kind: instance
    output: outputs/leaderboard/gp_hm
    tasks:
      - name: poisson1d_sin100
        problem: poisson1d_sin100              # one of INSTANCES
        n: 200                                 # GP-HM grid nodes per axis
        gp_hm: {adam_steps: 1000, lbfgs_steps: 3000, time_limit_s: 600}   # GPHMConfig fields
        ladder: [50, 100, 200, 400, 800]       # finite-difference grid sizes (n is added)
        repeats: 3                             # timed finite-difference solves (median)

Results: ``results.json`` (with :func:`~pdebench.evaluation.board_io.environment`),
``results.csv``, ``results.md`` (atomic writes) and ``<task>_error_vs_cost.png`` per task.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from pdebench.core.metrics import relative_l2
from pdebench.evaluation.board_io import (BoardSuite, Markup, RowFormat, fail_row, fmt, output_folder, results_document,
                                         save_log_plot, timed, write_results)
from pdebench.evaluation.leaderboard import equal_cost_cell, speedup_cell
from pdebench.evaluation.pareto import CostCurve, speedup_at_equal_accuracy
from pdebench.equations.steady import SteadyEquation
from pdebench.models.gp_hm import GPHM, GPHMConfig, SourcedProblem
from pdebench.problems.manufactured import INSTANCES, Instance
from pdebench.registry import dataclass_from_mapping, require_int
from pdebench.solvers.linalg import direct_solve

KIND = "instance"
F64 = torch.float64
#: Finite-difference grid sizes (nodes per axis) when a task names none.
DEFAULT_LADDERS: dict[int, tuple[int, ...]] = {
    1: (50, 100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600),
    2: (25, 50, 100, 200, 400, 800),
}
#: Newton's method for Allen–Cahn stops when ``max|du| <= NEWTON_RTOL * max(1, max|u|)``.
NEWTON_RTOL = 1e-12
NEWTON_MAXITER = 50


# ------------------------------------------------------------------------------------------ finite differences
@dataclass
class FDSolution:
    """A finite-difference solve on an ``n^d`` node grid.

    Attributes
    ----------
    u
        Grid values, shape ``(n,) * d`` (boundary values included, taken from the exact solution).
    rel_l2
        :math:`\\lVert u - u_{exact}(X)\\rVert_2 / \\lVert u_{exact}(X)\\rVert_2` over all nodes.
    newton_iterations
        Newton steps (0 for a linear equation).
    """

    u: np.ndarray
    rel_l2: float
    newton_iterations: int = 0


def _grid(n: int, dim: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Nodes ``x_j = j / (n - 1)`` and the ``indexing="ij"`` mesh, each ``(n,) * dim``."""
    x = np.linspace(0.0, 1.0, n)
    return x, np.meshgrid(*([x] * dim), indexing="ij")


def fd_laplacian(n: int, dim: int) -> sp.csr_array:
    r"""Second-order finite-difference Laplacian on the full ``n^d`` node grid of :math:`[0, 1]^d`.

    .. math:: (\Delta_h u)_i = \sum_{a=1}^d \frac{u_{i - e_a} - 2 u_i + u_{i + e_a}}{h^2}, \qquad h = \frac{1}{n - 1},

    as the Kronecker sum :math:`\sum_a I \otimes \dots \otimes T \otimes \dots \otimes I` of the
    1-D second difference ``T`` (``(n, n)``). Rows of interior nodes are the :math:`(2d+1)`-point
    stencil; rows of boundary nodes are not used.

    Returns
    -------
    scipy.sparse.csr_array
        Shape ``(n^d, n^d)``, C ordering of the nodes.
    """
    h2 = (1.0 / (n - 1)) ** 2
    second = sp.diags_array([np.ones(n - 1), -2.0 * np.ones(n), np.ones(n - 1)], offsets=[-1, 0, 1]) / h2
    eye = sp.identity(n, format="csr")
    total = None
    for axis in range(dim):
        term = None
        for b in range(dim):
            factor = second if b == axis else eye
            term = factor if term is None else sp.kron(term, factor)
        total = term if total is None else total + term
    return sp.csr_array(total)


def fd_solve(equation: SteadyEquation, exact: Callable[..., Tensor], source: Callable[..., Tensor], n: int,
             dim: int) -> FDSolution:
    r"""Solve one instance with second-order finite differences on ``n`` nodes per axis.

    The equation :math:`s\,\Delta u + r(u) = f` (:class:`~pdebench.equations.steady.SteadyEquation`)
    with :math:`\Delta_h` for :math:`\Delta` at the interior nodes. A linear equation (Poisson,
    :math:`s = -1`): one sparse direct solve of :math:`s\,\Delta_h u = f`
    (:func:`~pdebench.solvers.linalg.direct_solve`: SuperLU, minimum-degree ordering of :math:`A + A^T`).
    Allen–Cahn: :math:`G(u) = \Delta_h u + u(u^2 - 1) - f = 0` (the equation's residual) by Newton's
    method with the sparse Jacobian :math:`J = s\,\Delta_h + \mathrm{diag}(r'(u))` (the same direct
    solve), started from the solution of :math:`s\,\Delta_h u = f`, until
    :math:`\max|\delta u| \le 10^{-12}\max(1, \max|u|)`. Dirichlet values from ``exact`` on every face.

    Parameters
    ----------
    equation
        :data:`~pdebench.equations.steady.POISSON` or :data:`~pdebench.equations.steady.ALLEN_CAHN`.
    exact, source
        ``u(*mesh)``, ``f(*mesh)`` on float64 torch tensors of shape ``(n,) * dim``.
    n
        Nodes per axis, boundary included (``n >= 3``); ``h = 1 / (n - 1)``.
    dim
        1, 2 or 3.

    Returns
    -------
    FDSolution

    Raises
    ------
    RuntimeError
        Newton's method did not converge in ``NEWTON_MAXITER`` steps, or the solution is not finite.
    """
    if not isinstance(equation, SteadyEquation):
        raise ValueError(f"equation must be a SteadyEquation (POISSON or ALLEN_CAHN), got {equation!r}")
    require_int("n", n, 3)
    _, mesh = _grid(n, dim)
    tmesh = [torch.from_numpy(m) for m in mesh]
    u_exact = exact(*tmesh).numpy().astype(np.float64, copy=False)
    f = source(*tmesh).numpy().astype(np.float64, copy=False).ravel()
    interior = np.zeros((n,) * dim, dtype=bool)
    interior[(slice(1, -1),) * dim] = True
    inner, outer = np.flatnonzero(interior), np.flatnonzero(~interior)
    lap = fd_laplacian(n, dim)
    lap_rows = lap[inner]
    lap_ii = sp.csc_array(lap_rows[:, inner])
    boundary = lap_rows[:, outer] @ u_exact.ravel()[outer]  # the boundary nodes' part of Δ_h u
    u = u_exact.ravel().copy()
    steps = 0
    sign = equation.laplacian_sign
    # s (L_ii u_i + L_ib u_b) = f_i: the linear solve, and Newton's start for a nonlinear equation
    ui = direct_solve(sign * lap_ii, f[inner] - sign * boundary).x
    if not equation.is_linear:
        for steps in range(1, NEWTON_MAXITER + 1):
            residual = equation.residual(ui, lap_ii @ ui + boundary, f[inner])
            jacobian = sp.csc_array(sign * lap_ii + sp.diags_array(equation.reaction_slope(ui)))
            delta = direct_solve(jacobian, -residual).x
            ui = ui + delta
            if np.max(np.abs(delta)) <= NEWTON_RTOL * max(1.0, float(np.max(np.abs(ui)))):
                break
        else:
            raise RuntimeError(f"Newton's method did not converge in {NEWTON_MAXITER} steps at n={n}")
    u[inner] = ui
    if not np.all(np.isfinite(u)):
        raise RuntimeError(f"the finite-difference solution at n={n} is not finite")
    u = u.reshape((n,) * dim)
    rel = float(relative_l2(torch.from_numpy(u), torch.from_numpy(u_exact), batch_dims=0))
    return FDSolution(u, rel, steps)


# ------------------------------------------------------------------------------------------ suite
@dataclass(frozen=True)
class InstanceTask:
    """One instance task: GP-HM on ``n`` nodes per axis against the finite-difference ladder.

    Parameters
    ----------
    name
        Row label.
    problem
        Key of :data:`INSTANCES`.
    n
        GP-HM grid nodes per axis (boundary included, ``n >= 5``).
    gp_hm
        :class:`~pdebench.models.gp_hm.GPHMConfig` fields (``adam_steps``, ``lbfgs_steps``,
        ``time_limit_s``, ...); the rest keep their defaults.
    ladder
        Finite-difference grid sizes (nodes per axis, ``>= 5``); empty: :data:`DEFAULT_LADDERS` of
        the dimension. ``n`` is always added (the equal-resolution row).
    repeats
        Timed finite-difference solves per rung (the median is reported).
    eval_every
        GP-HM records its error every this many Adam steps (default ``max(adam_steps // 5, 1)``).
    """

    name: str
    problem: str
    n: int
    gp_hm: dict[str, Any] = field(default_factory=dict)
    ladder: tuple[int, ...] = ()
    repeats: int = 3
    eval_every: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"every task needs a non-empty name, got {self.name!r}")
        if self.problem not in INSTANCES:
            raise ValueError(f"task {self.name!r}: unknown problem {self.problem!r}; expected one of {', '.join(INSTANCES)}")
        for label, value, low in (("n", self.n, 5), ("repeats", self.repeats, 1)):
            require_int(label, value, low, f"task {self.name!r}: ")
        if self.eval_every is not None and (isinstance(self.eval_every, bool) or not isinstance(self.eval_every, int)
                                            or self.eval_every < 1):
            raise ValueError(f"task {self.name!r}: eval_every must be an integer >= 1 or null, got {self.eval_every!r}")
        if not isinstance(self.gp_hm, dict):
            raise ValueError(f"task {self.name!r}: gp_hm must be a mapping of GPHMConfig fields, got {self.gp_hm!r}")
        self.gp_config()  # names unknown fields and bad values
        ladder = self.ladder
        if isinstance(ladder, (str, int)) or not all(isinstance(r, int) and not isinstance(r, bool) and r >= 5 for r in ladder):
            raise ValueError(f"task {self.name!r}: ladder must be a list of integers >= 5 (finite-difference nodes per axis), "
                             f"got {ladder!r}")
        object.__setattr__(self, "ladder", tuple(sorted(set(ladder))))

    @property
    def instance(self) -> Instance:
        """The task's :class:`Instance`."""
        return INSTANCES[self.problem]

    def gp_config(self) -> GPHMConfig:
        """The validated :class:`GPHMConfig` of the task, read by the one run-config loader
        (:func:`~pdebench.registry.dataclass_from_mapping`, as the DCDM and physics runs are)."""
        return dataclass_from_mapping(GPHMConfig, self.gp_hm, f"task {self.name!r}: gp_hm")

    def fd_grids(self) -> tuple[int, ...]:
        """The finite-difference rungs: the ladder (or the default one) with ``n`` added, ascending."""
        ladder = self.ladder or DEFAULT_LADDERS.get(self.instance.dim, ())
        return tuple(sorted(set(ladder) | {self.n}))


@dataclass(frozen=True)
class InstanceSuite(BoardSuite):
    """Instance tasks and where results go (``kind: instance`` in the YAML)."""

    TASK, KIND = InstanceTask, KIND
    name: str
    tasks: tuple[InstanceTask, ...]
    kind: str = KIND
    output: str = "outputs/leaderboard/gp_hm"


def count_steps(suite: InstanceSuite) -> int:
    """Progress steps of :func:`run_suite`: GP-HM and every finite-difference rung of every task."""
    return sum(1 + len(task.fd_grids()) for task in suite.tasks)


# ------------------------------------------------------------------------------------------ rows
@dataclass
class LadderRow:
    """One row of a board that places methods on a finite-difference ladder (this board and
    :mod:`.physics_board`): a method (``kind="model"``: GP-HM, NSM, the PINN) or a finite-difference
    rung (``kind="solver"``) on one task.

    ``rel_l2`` is the relative L2 error against the exact solution at the row's own grid nodes,
    ``cost_s`` its wall time (here: one solve, GP-HM's construction and fit, finite differences the
    median of ``timings_s`` with assembly; the physics board: per sample). ``placement`` (a method) is
    :meth:`~pdebench.evaluation.pareto.Placement.to_dict` on the finite-difference curve;
    ``equal_resolution`` (GP-HM) compares with the finite-difference rung at the same ``n``.
    """

    task: str
    name: str
    kind: str
    n: int
    status: str = "ok"
    error: str | None = None
    rel_l2: float | None = None
    cost_s: float | None = None
    timings_s: list[float] = field(default_factory=list)
    placement: dict[str, Any] | None = None
    equal_resolution: dict[str, Any] | None = None
    details: dict[str, Any] = field(default_factory=dict)


def ladder_curve(rows: list[LadderRow]) -> CostCurve | None:
    """The accuracy–cost curve of the finite-difference rows that succeeded with a positive error and
    cost (None without one)."""
    rungs = [r for r in rows if r.kind == "solver" and r.status == "ok" and r.rel_l2 and r.cost_s]
    if not rungs:
        return None
    return CostCurve(np.array([r.cost_s for r in rungs]), np.array([r.rel_l2 for r in rungs]), tuple(r.name for r in rungs))


def place_methods(rows: list[LadderRow]) -> CostCurve | None:
    """Set the placement of every method row that succeeded on the ladder's curve; return the curve."""
    curve = ladder_curve(rows)
    for row in rows:
        if row.kind == "model" and row.status == "ok" and curve is not None and row.rel_l2 > 0:
            row.placement = speedup_at_equal_accuracy(curve, row.rel_l2, row.cost_s).to_dict()
    return curve


def run_gp_hm(task: InstanceTask) -> LadderRow:
    """Build and fit GP-HM on the task's grid; any failure becomes a failed row with its reason."""
    row = LadderRow(task.name, "gp_hm", "model", task.n)
    try:
        config = task.gp_config()
        instance = task.instance
        row.details = {"settings": asdict(config), "dim": instance.dim, "unknowns": task.n ** instance.dim}
        axes = [torch.linspace(0, 1, task.n, dtype=F64) for _ in range(instance.dim)]
        eval_every = task.eval_every or max(config.adam_steps // 5, 1)
        start = time.perf_counter()
        model = GPHM(axes, SourcedProblem(instance.equation, instance.source, instance.exact), config)
        fit = model.fit(eval_every=eval_every)
        row.cost_s = time.perf_counter() - start
        row.timings_s = [row.cost_s]
        with torch.no_grad():
            row.rel_l2 = float(relative_l2(model.u, instance.exact(*model.mesh), batch_dims=0))
        row.details.update(fit_time_s=fit.time_s, steps=fit.steps, eval_steps=list(fit.eval_steps),
                           errors=list(fit.errors), parameters=sum(p.numel() for p in model.parameters()))
        if not math.isfinite(row.rel_l2):
            raise ValueError(f"GP-HM's solution is not finite (relative L2 {row.rel_l2})")
    except Exception as error:  # noqa: BLE001 - a failing entry must not stop the board
        fail_row(row, error, rel_l2=None, cost_s=None)
    return row


def run_fd(task: InstanceTask, n: int) -> LadderRow:
    """Finite differences at ``n`` nodes per axis: one warm-up solve, then ``repeats`` timed solves."""
    instance = task.instance
    row = LadderRow(task.name, f"fd n={n}", "solver", n)
    try:
        solution, row.timings_s = timed(lambda: fd_solve(instance.equation, instance.exact, instance.source, n, instance.dim),
                                        task.repeats)
        row.rel_l2, row.cost_s = solution.rel_l2, statistics.median(row.timings_s)
        row.details = {"unknowns": n ** instance.dim, "newton_iterations": solution.newton_iterations}
    except Exception as error:  # noqa: BLE001 - a failing rung must not stop the board
        fail_row(row, error)
    return row


def run_task(task: InstanceTask, progress: Callable[[str], None] | None = None) -> list[LadderRow]:
    """GP-HM, the finite-difference ladder (by ``n``), and GP-HM's placement on the ladder, for one task."""
    note = progress or (lambda _: None)
    note(f"{task.name}: gp_hm n={task.n}")
    model = run_gp_hm(task)
    rows = [model]
    for n in task.fd_grids():
        note(f"{task.name}: fd n={n}")
        rows.append(run_fd(task, n))
    place_methods(rows)
    same = next((r for r in rows if r.kind == "solver" and r.n == task.n and r.status == "ok"), None)
    if model.status == "ok" and same is not None:
        model.equal_resolution = {"n": task.n, "fd_rel_l2": same.rel_l2, "fd_cost_s": same.cost_s,
                                  "error_ratio": model.rel_l2 / same.rel_l2 if same.rel_l2 else None,
                                  "cost_ratio": model.cost_s / same.cost_s if same.cost_s else None}
    return rows


def run_suite(suite: InstanceSuite, output: str | Path | None = None,
              progress: Callable[[str], None] | None = None) -> Path:
    """Run every task; write ``results.json``, ``results.csv``, ``results.md`` and the plots under
    ``output`` (default ``suite.output``). Returns the path of ``results.json``."""
    out = output_folder(output, suite.output)
    per_task = {task.name: run_task(task, progress) for task in suite.tasks}
    for task in suite.tasks:
        plot_ladder(task.name, per_task[task.name], out / f"{task.name}_error_vs_cost.png")
    document = results_document(suite.name, KIND, tasks=[_task_record(t, per_task[t.name]) for t in suite.tasks],
                                rows=[asdict(row) for rows in per_task.values() for row in rows])
    return write_results(out, document, ROW_FORMAT, {t.name: t.instance.description for t in suite.tasks})


def _task_record(task: InstanceTask, rows: list[LadderRow]) -> dict[str, Any]:
    curve = ladder_curve(rows)
    return {"name": task.name, "problem": task.problem, "equation": task.instance.equation.name, "dim": task.instance.dim,
            "description": task.instance.description, "n": task.n, "gp_hm": dict(task.gp_hm),
            "fd_grids": list(task.fd_grids()), "repeats": task.repeats,
            "fd_curve_monotone": None if curve is None else curve.is_monotone}


# ------------------------------------------------------------------------------------------ outputs
CSV_COLUMNS = ("task", "name", "kind", "status", "n", "rel_l2", "cost_s", "speedup", "verdict", "speedup_bound",
               "fd_rel_l2_at_equal_cost", "fd_rel_l2_same_n", "fd_cost_s_same_n", "newton_iterations", "error",
               "hardware", "threads", "torch", "git_revision")


def _csv_values(row: dict[str, Any]) -> dict[str, Any]:
    placement, same = row["placement"] or {}, row["equal_resolution"] or {}
    return {"speedup": placement.get("speedup"), "verdict": placement.get("verdict"),
            "speedup_bound": placement.get("speedup_bound"),
            "fd_rel_l2_at_equal_cost": placement.get("solver_error_at_equal_cost"),
            "fd_rel_l2_same_n": same.get("fd_rel_l2"), "fd_cost_s_same_n": same.get("fd_cost_s"),
            "newton_iterations": row["details"].get("newton_iterations")}


def equal_resolution_cell(same: dict[str, Any] | None) -> str:
    """``"fd 2.1e-02 in 1.2 ms (GP-HM error ×0.018, time ×1e+05)"``: the finite-difference solve at GP-HM's ``n``."""
    if not same:
        return "–"
    return (f"fd {fmt(same['fd_rel_l2'])} in {fmt(same['fd_cost_s'] * 1e3)} ms "
            f"(GP-HM error ×{fmt(same['error_ratio'])}, time ×{fmt(same['cost_ratio'])})")


HEADERS = ("entry", "n", "rel. L2", "wall time", "speed-up at equal accuracy", "fd rel. L2 at equal cost",
           "fd at equal resolution")


def _cells(r: dict[str, Any], markup: Markup) -> list[str]:
    """One row's cells under :data:`HEADERS`."""
    if r["status"] != "ok":
        return [r["name"], str(r["n"]), markup.failed.format(r["error"]), "", "", "", ""]
    if r["kind"] != "model":
        return [r["name"], str(r["n"]), fmt(r["rel_l2"]), f"{fmt(r['cost_s'] * 1e3)} ms", "(solver)", "", ""]
    return [markup.bold.format(r["name"]), str(r["n"]), fmt(r["rel_l2"]), f"{fmt(r['cost_s'])} s",
            speedup_cell(r["placement"]), equal_cost_cell(r["placement"]), equal_resolution_cell(r["equal_resolution"])]


#: The instance board's tables: per task GP-HM, then every finite-difference rung (the printed table:
#: the rungs on the Pareto front); ``results.md`` describes each instance under the table.
ROW_FORMAT = RowFormat("instance board", CSV_COLUMNS, HEADERS, _cells, _csv_values, front=("cost_s", "rel_l2"))


def plot_ladder(task: str, rows: list[LadderRow], path: Path, unit: str = "one solve") -> Path | None:
    """Log-log relative L2 error against wall time: the finite-difference ladder (labelled by ``n``),
    its Pareto front, and every method that succeeded; written atomically. None when nothing succeeded."""
    from matplotlib.figure import Figure

    curve = ladder_curve(rows)
    methods = [r for r in rows if r.kind == "model" and r.status == "ok"]
    if curve is None and not methods:
        return None
    fig = Figure(figsize=(6.4, 4.8))
    ax = fig.add_subplot()
    if curve is not None:
        ax.loglog(curve.costs, curve.errors, "x", color="0.5", label="finite differences (all rungs)")
        front = curve.front()
        ax.loglog(front.costs, front.errors, "o-", color="C0", lw=2, label="finite differences (Pareto front)")
        for cost, error, label in zip(curve.costs, curve.errors, curve.rung_labels):
            ax.annotate(label.removeprefix("fd "), (cost, error), textcoords="offset points", xytext=(4, 4), fontsize=7)
    for i, method in enumerate(methods):
        ax.loglog([method.cost_s], [method.rel_l2], "*", ms=14, color=f"C{3 + i}",
                  label=f"{method.name} n={method.n}: " + speedup_cell(method.placement))
    ax.set(xlabel=f"wall time of {unit} [s]", ylabel="relative L2 error at the grid nodes",
           title=f"{task}: {', '.join(r.name for r in methods) or 'methods'} on the finite-difference ladder")
    return save_log_plot(fig, ax, path)
