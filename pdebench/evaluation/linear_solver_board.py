r"""Leaderboard of *learned linear solvers* (DCDM, the learned incomplete Cholesky) against classical preconditioned CG.

DCDM (:mod:`pdebench.models.dcdm`) and the learned IC (:mod:`pdebench.models.learned_ic`), board
``linear-solver``, are not operators from inputs to solutions: DCDM's network proposes search
directions inside a Krylov-like loop, the learned IC's builds the preconditioner :math:`M = L L^T` of
PCG, and the loop's answer is exact to the tolerance whatever the network does. What they change is
the **number of iterations** and the **wall time**, so that is what this board scores, on held-out systems:

* a *task* is ``dim`` (2 or 3), ``n`` interior nodes per axis, ``systems`` coefficient samples
  :math:`a` (``darcy_coefficient(n, seed, i, dim)``, ``seed >= LEADERBOARD_SEED_BASE``, never used in
  training), the matrices :math:`A = -\nabla\cdot(a\nabla\,\cdot)` (:func:`~pdebench.problems.elliptic_matrices.poisson_matrix`)
  and right-hand-side kinds (:func:`right_hand_side`: ``noise``, ``ones``, ``smooth``), solved from
  :math:`x_0 = 0` to :math:`\lVert b - A x\rVert \le \mathrm{tol}\,\lVert b\rVert` within ``maxiter``;
* rows: every baseline (CG, Jacobi-, IC(0)- and AMG-PCG, :func:`~pdebench.solvers.linalg.pcg`)
  and every checkpoint entry, of either kind (:data:`CHECKPOINTS`: the file's ``format`` decides,
  :func:`~pdebench.models.network_checkpoint.load_network`): a DCDM network, run by
  :func:`~pdebench.models.dcdm.dcdm_solve`, or a learned-IC network, whose :math:`M = L L^T`
  (:func:`~pdebench.models.learned_ic.learned_ic_preconditioner`; set-up: the network's forward and
  the assembly of :math:`L`) runs in the same PCG as the baselines, in two rows: from :math:`x_0 = 0`
  (``NAME``) and from the paper's initial guess :math:`x_0 = M^{-1} b`
  (``NAME, x0 = M⁻¹b``: :func:`~pdebench.models.learned_ic.initial_guess`, with
  :class:`~pdebench.solvers.linalg.DeflatedCG`'s Galerkin start, i.e. the best multiple
  :math:`\gamma M^{-1} b` in the A-norm; its solve time includes the guess);
* per row, over all ``systems x rhs`` solves: median and maximum iterations, the fraction
  converged, the median final relative residual (recomputed from the returned ``x``), the median
  preconditioner set-up time per system, the median solve time and the median total (set-up + solve)
  per solve, the median iterations over CG's and the median total time over AMG-PCG's.

A failing entry (missing checkpoint, a 2-D DCDM network on a 3-D task, non-finite output, an IC(0)
breakdown) is a failed row with the reason, never a crash of the board. A learned-IC network works on
any matrix graph (any size, 2-D or 3-D); its training card says what it was trained on.

A suite file (``configs/leaderboard/dcdm.yaml``)::

    name: dcdm
    kind: linear-solver
    output: outputs/leaderboard/dcdm
    baselines: [none, jacobi, ic0, amg]        # default: all of BASELINES
    tasks:
      - {name: poisson2d_64, dim: 2, n: 64, systems: 4, rhs: [noise, ones, smooth], tol: 1.0e-6, maxiter: 1000}
    models:
      - {name: dcdm, checkpoint: outputs/dcdm/dcdm2d_64.pt, tasks: [poisson2d_64]}   # tasks: default all
      - {name: learned-ic, checkpoint: outputs/learned_ic/learned_ic2d.pt, tasks: [poisson2d_64]}

Results: ``results.json`` (with :func:`~pdebench.evaluation.board_io.environment`),
``results.csv``, ``results.md`` (atomic writes) and ``<task>_residuals.png`` (relative residual
against iteration for every row on the first system and right-hand side).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from pdebench.evaluation.board_io import (BoardSuite, Markup, RowFormat, fail_row, fmt, output_folder, results_document,
                                         save_log_plot, write_results)
from pdebench.evaluation.suite import LEADERBOARD_SEED_BASE, ModelEntry
from pdebench.models import dcdm, learned_ic
from pdebench.models.dcdm import dcdm_solve, network_operator
from pdebench.models.learned_ic import initial_guess, learned_ic_preconditioner
from pdebench.models.network_checkpoint import load_network
from pdebench.problems.elliptic_matrices import darcy_coefficient, poisson_matrix
from pdebench.registry import require_int
from pdebench.solvers.linalg import SYMMETRIC_PRECONDITIONERS as BASELINES
from pdebench.solvers.linalg import SolveResult, deflated_cg, make_preconditioner, pcg

KIND = "linear-solver"
RHS_KINDS = ("noise", "ones", "smooth")
#: Display names of the baselines.
BASELINE_NAMES = {"none": "CG", "jacobi": "Jacobi-PCG", "ic0": "IC(0)-PCG", "amg": "AMG-PCG"}
#: Sine modes per axis of the ``smooth`` right-hand side.
SMOOTH_MODES = 4
#: The checkpoint formats an entry may hold, each with its allow-list of network classes.
CHECKPOINTS = {dcdm.CHECKPOINT_FORMAT: dcdm.NETWORKS, learned_ic.CHECKPOINT_FORMAT: learned_ic.NETWORKS}
#: Suffix of the name of a learned-IC entry's second row (PCG from the network's initial guess).
GUESS_SUFFIX = ", x0 = M⁻¹b"


# ------------------------------------------------------------------------------------------ tasks
@dataclass(frozen=True)
class LinearTask:
    """One linear-solver task: ``systems`` held-out Darcy matrices with ``rhs`` right-hand sides each.

    Parameters
    ----------
    name
        Row label.
    dim
        2 or 3.
    n
        Interior nodes per axis (``n >= 3``): :math:`N = n^{dim}` unknowns, ``h = 1 / (n + 1)``.
    systems
        Coefficient samples ``(seed, 0..systems-1)``.
    seed
        ``>= LEADERBOARD_SEED_BASE`` (no training run uses such seeds).
    rhs
        Right-hand-side kinds, a subset of :data:`RHS_KINDS` (:func:`right_hand_side`).
    tol
        Relative residual tolerance, in ``(0, 1)``.
    maxiter
        Iteration cap of every solver.
    """

    name: str
    dim: int = 2
    n: int = 64
    systems: int = 4
    seed: int = LEADERBOARD_SEED_BASE
    rhs: tuple[str, ...] = RHS_KINDS
    tol: float = 1e-6
    maxiter: int = 1000

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"every task needs a non-empty name, got {self.name!r}")
        if self.dim not in (2, 3) or isinstance(self.dim, bool):
            raise ValueError(f"task {self.name!r}: dim must be 2 or 3, got {self.dim!r}")
        for label, value, low in (("n", self.n, 3), ("systems", self.systems, 1), ("maxiter", self.maxiter, 1)):
            require_int(label, value, low, f"task {self.name!r}: ")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < LEADERBOARD_SEED_BASE:
            raise ValueError(f"task {self.name!r}: seed {self.seed!r} could be a training seed; leaderboard seeds are "
                             f"integers >= {LEADERBOARD_SEED_BASE}")
        rhs = (self.rhs,) if isinstance(self.rhs, str) else tuple(self.rhs)
        bad = [k for k in rhs if k not in RHS_KINDS]
        if not rhs or bad or len(set(rhs)) != len(rhs):
            raise ValueError(f"task {self.name!r}: rhs must be a non-empty list of distinct kinds from {', '.join(RHS_KINDS)}, "
                             f"got {list(rhs)!r}")
        object.__setattr__(self, "rhs", rhs)
        if isinstance(self.tol, bool) or not isinstance(self.tol, (int, float)) or not (0 < self.tol < 1):
            hint = " (YAML reads 1e-6 as a string: write 1.0e-6)" if isinstance(self.tol, str) else ""
            raise ValueError(f"task {self.name!r}: tol must be a number in (0, 1), got {self.tol!r}{hint}")

    @property
    def grid(self) -> tuple[int, ...]:
        """``(n,) * dim``."""
        return (self.n,) * self.dim


def task_matrix(task: LinearTask, index: int) -> sp.csr_array:
    """The matrix of system ``index``: :func:`poisson_matrix` of ``darcy_coefficient(n, seed, index, dim)``,
    shape ``(N, N)``, ``N = n^dim``."""
    return poisson_matrix(darcy_coefficient(task.n, task.seed, index, dim=task.dim))


def right_hand_side(task: LinearTask, kind: str, index: int) -> np.ndarray:
    r"""Right-hand side ``kind`` of system ``index``, shape ``(N,)`` in the matrix's C ordering.

    * ``noise``: :math:`b_i \sim N(0, 1)` from ``numpy.random.default_rng((seed, index, 0))``;
    * ``ones``: :math:`f = 1`;
    * ``smooth``: :math:`f(x) = \sum_{k \in \{1..K\}^d} c_k \prod_a \sin(\pi k_a x_a) / |k|^2`,
      :math:`c_k \sim N(0, 1)` from ``default_rng((seed, index, 2))``, :math:`K` = :data:`SMOOTH_MODES`,
      at the interior nodes :math:`x_a = j / (n + 1)`.
    """
    if kind not in RHS_KINDS:
        raise ValueError(f"unknown right-hand side {kind!r}; expected one of {', '.join(RHS_KINDS)}")
    N = task.n ** task.dim
    if kind == "ones":
        return np.ones(N)
    rng = np.random.default_rng((task.seed, index, RHS_KINDS.index(kind)))
    if kind == "noise":
        return rng.standard_normal(N)
    k = np.arange(1, SMOOTH_MODES + 1)
    x = np.arange(1, task.n + 1) / (task.n + 1)
    basis = np.sin(np.pi * x[:, None] * k[None, :])  # (n, K)
    ks = np.meshgrid(*([k] * task.dim), indexing="ij")
    coeff = rng.standard_normal((SMOOTH_MODES,) * task.dim) / sum(kk.astype(float) ** 2 for kk in ks)
    letters = "abc"[: task.dim]
    spec = ",".join(f"{chr(ord('i') + a)}{letters[a]}" for a in range(task.dim)) + f",{letters}->" + \
        "".join(chr(ord("i") + a) for a in range(task.dim))
    return np.einsum(spec, *([basis] * task.dim), coeff).ravel()


# ------------------------------------------------------------------------------------------ suite
@dataclass(frozen=True)
class LinearSolverSuite(BoardSuite):
    """Linear-solver tasks, baselines, DCDM checkpoint entries and where results go
    (``kind: linear-solver`` in the YAML)."""

    TASK, KIND = LinearTask, KIND
    name: str
    tasks: tuple[LinearTask, ...]
    models: tuple[ModelEntry, ...] = ()
    baselines: tuple[str, ...] = BASELINES
    kind: str = KIND
    output: str = "outputs/leaderboard/dcdm"

    def __post_init__(self) -> None:
        baselines = (self.baselines,) if isinstance(self.baselines, str) else tuple(self.baselines)
        bad = [b for b in baselines if b not in BASELINES]
        if bad or len(set(baselines)) != len(baselines):
            raise ValueError(f"suite {self.name!r}: baselines must be distinct names from {', '.join(BASELINES)}, got {list(baselines)!r}")
        object.__setattr__(self, "baselines", baselines)
        names = [t.name for t in self.tasks]
        for model in self.models:
            unknown = [t for t in model.tasks or () if t not in names]
            if unknown:
                raise ValueError(f"suite {self.name!r}: model {model.name!r} names unknown task(s) {', '.join(unknown)}; "
                                 f"tasks: {', '.join(names)}")
        taken = {BASELINE_NAMES[b] for b in baselines}
        for task in names:
            entries = [m.name for m in self.models if m.scores(task)]
            clash = sorted({e for e in entries if entries.count(e) > 1 or e in taken})
            if clash:
                raise ValueError(f"suite {self.name!r}: on task {task!r} several entries are named {', '.join(clash)}; "
                                 "give each entry scored on a task its own name (or limit it with tasks: [...])")


def count_steps(suite: LinearSolverSuite) -> int:
    """Progress steps of :func:`run_suite`: every baseline and entry on every task."""
    return sum(len(suite.baselines) + sum(m.scores(t.name) for m in suite.models) for t in suite.tasks)


# ------------------------------------------------------------------------------------------ rows
@dataclass
class SolveRecord:
    """One solve: system ``index``, right-hand side ``rhs``; ``residual`` is
    :math:`\\lVert b - A x\\rVert / \\lVert b\\rVert` recomputed from the returned ``x``."""

    system: int
    rhs: str
    iterations: int
    converged: bool
    residual: float
    setup_s: float
    solve_s: float
    fallbacks: int | None = None


@dataclass
class SolverRow:
    """One row: a baseline (``kind="baseline"``), a DCDM entry (``kind="dcdm"``), a learned-IC entry
    (``kind="learned_ic"``, ``method`` ``"learned_ic"`` from zero or ``"learned_ic_x0"`` from
    :math:`M^{-1} b`) or an entry whose checkpoint could not be read (``kind="checkpoint"``, failed) on one task.

    Aggregates are over every ``(system, rhs)`` solve (``solves``); ``setup_median_s`` is per system
    (a preconditioner is built once per matrix and reused for its right-hand sides), ``total_median_s``
    the median of set-up + solve per solve (the cost of solving one new system once).
    ``iterations_vs_cg`` and ``time_vs_amg`` divide this row's median iterations / total time by CG's /
    AMG-PCG's on the same task. ``history`` is the relative residual per iteration on system 0 and
    the first right-hand side.
    """

    task: str
    name: str
    kind: str
    method: str
    status: str = "ok"
    error: str | None = None
    checkpoint: str | None = None
    iterations_median: float | None = None
    iterations_max: int | None = None
    converged_fraction: float | None = None
    residual_median: float | None = None
    setup_median_s: float | None = None
    solve_median_s: float | None = None
    total_median_s: float | None = None
    total_s: float | None = None
    iterations_vs_cg: float | None = None
    time_vs_amg: float | None = None
    parameters: int | None = None
    load_time_s: float | None = None
    training: dict[str, Any] = field(default_factory=dict)
    solves: list[SolveRecord] = field(default_factory=list)
    history: list[float] = field(default_factory=list)


def _solve_every_system(row: SolverRow, task: LinearTask,
                        solver_for: Callable[[sp.csr_array], Callable[[np.ndarray], tuple[SolveResult, float, float]]]) -> None:
    """Solve every system and right-hand side of ``task`` into ``row.solves`` (and the first residual
    history into ``row.history``), then aggregate.

    ``solver_for(A)`` is called once per matrix (its set-up: a preconditioner) and returns
    ``solve(b) -> (result, setup_s, solve_s)``.
    """
    for index in range(task.systems):
        A = task_matrix(task, index)
        solve = solver_for(A)
        for rhs in task.rhs:
            b = right_hand_side(task, rhs, index)
            result, setup, seconds = solve(b)
            if not np.all(np.isfinite(result.x)):
                raise ValueError("the solver returned a non-finite solution")
            row.solves.append(SolveRecord(index, rhs, result.iterations, bool(result.converged),
                                          float(np.linalg.norm(b - A @ result.x) / np.linalg.norm(b)), setup, seconds,
                                          int(result.extra.get("fallbacks", 0)) if result.extra else None))
            if not row.history:
                row.history = [float(v) for v in result.residuals]
    _aggregate(row)


def run_baseline(task: LinearTask, kind: str) -> SolverRow:
    """Every system and right-hand side of ``task`` with baseline ``kind``; failures become a failed row."""
    row = SolverRow(task.name, BASELINE_NAMES[kind], "baseline", kind)

    def solver_for(A: sp.csr_array) -> Callable[[np.ndarray], tuple[SolveResult, float, float]]:
        preconditioner = make_preconditioner(A, kind)  # once per matrix, reused for its right-hand sides

        def solve(b: np.ndarray) -> tuple[SolveResult, float, float]:
            result = pcg(A, b, preconditioner, task.tol, task.maxiter)
            return result, preconditioner.setup_time, result.time

        return solve

    try:
        _solve_every_system(row, task, solver_for)
    except Exception as error:  # noqa: BLE001 - a failing baseline must not stop the board
        fail_row(row, error, solves=[], history=[])
    return row


def run_entry(task: LinearTask, entry: ModelEntry) -> list[SolverRow]:
    """A checkpoint entry on every system and right-hand side of ``task``: its rows (one for DCDM, two for a
    learned IC: from zero and from :math:`M^{-1} b`); failures become failed rows with the reason.

    The network is loaded once (``load_time_s``, :func:`~pdebench.models.network_checkpoint.load_network`
    with :data:`CHECKPOINTS`) and warmed up by one untimed call.
    """
    row = SolverRow(task.name, entry.name, "checkpoint", "unread", checkpoint=entry.checkpoint)  # kind unknown yet
    try:
        if entry.checkpoint is None:
            raise ValueError(f"entry {entry.name!r} has no checkpoint; train one (pdebench train-dcdm, "
                             "pdebench train-learned-ic)")
        start = time.perf_counter()
        fmt, network, training = load_network(entry.checkpoint, CHECKPOINTS, "linear-solver",
                                              "write one with pdebench.models.dcdm.save_dcdm or "
                                              "pdebench.models.learned_ic.save_learned_ic")
        load_time = time.perf_counter() - start
    except Exception as error:  # noqa: BLE001 - a failing entry must not stop the board
        fail_row(row, error, solves=[], history=[])
        return [row]
    if fmt == learned_ic.CHECKPOINT_FORMAT:
        rows = [SolverRow(task.name, entry.name + suffix, "learned_ic", method, checkpoint=entry.checkpoint)
                for suffix, method in (("", "learned_ic"), (GUESS_SUFFIX, "learned_ic_x0"))]
    else:
        row.kind = row.method = "dcdm"
        rows = [row]
    for each in rows:
        each.load_time_s, each.training = load_time, training
        each.parameters = sum(p.numel() for p in network.parameters())
        try:
            if each.kind == "dcdm":
                _run_dcdm(each, task, network)
            else:
                _run_learned_ic(each, task, network, from_guess=each.method == "learned_ic_x0")
        except Exception as error:  # noqa: BLE001 - a failing entry must not stop the board
            fail_row(each, error, solves=[], history=[])
    return rows


def _run_dcdm(row: SolverRow, task: LinearTask, network: Any) -> None:
    """DCDM's solves into ``row``: a solve's set-up is the construction of its grid operator
    (:func:`~pdebench.models.dcdm.network_operator`)."""
    net_dim = getattr(network, "dim", None)
    if net_dim != task.dim:
        raise ValueError(f"the checkpoint holds a {net_dim}-D network; task {task.name!r} is {task.dim}-D")
    network_operator(network, task.grid)(np.ones(task.n ** task.dim))  # warm-up call, not timed

    def solver_for(A: sp.csr_array) -> Callable[[np.ndarray], tuple[SolveResult, float, float]]:
        def solve(b: np.ndarray) -> tuple[SolveResult, float, float]:
            start = time.perf_counter()
            operator = network_operator(network, task.grid)
            setup = time.perf_counter() - start
            result = dcdm_solve(A, b, operator, task.tol, task.maxiter)
            return result, setup, result.time

        return solve

    _solve_every_system(row, task, solver_for)


def _run_learned_ic(row: SolverRow, task: LinearTask, network: Any, from_guess: bool) -> None:
    """The learned IC's PCG solves into ``row``: :math:`M = L L^T` built once per matrix (its set-up: the
    network's forward, the assembly of :math:`L`, the triangular solver's set-up), PCG from zero or, with
    ``from_guess``, from :math:`x_0 = M^{-1} b` (the guess's application counted in the solve time)."""
    network.factor(task_matrix(task, 0))  # warm-up call, not timed

    def solver_for(A: sp.csr_array) -> Callable[[np.ndarray], tuple[SolveResult, float, float]]:
        preconditioner = learned_ic_preconditioner(network, A)

        def solve(b: np.ndarray) -> tuple[SolveResult, float, float]:
            if not from_guess:
                result = pcg(A, b, preconditioner, task.tol, task.maxiter)
                return result, preconditioner.setup_time, result.time
            start = time.perf_counter()
            x0 = initial_guess(preconditioner, b)
            guess = time.perf_counter() - start
            result = deflated_cg(A, b, None, preconditioner, x0=x0, tol=task.tol, maxiter=task.maxiter)
            return result, preconditioner.setup_time, guess + result.time

        return solve

    _solve_every_system(row, task, solver_for)


def _aggregate(row: SolverRow) -> None:
    """Fill the row's medians from its solves."""
    solves = row.solves
    iterations = [s.iterations for s in solves]
    row.iterations_median = float(statistics.median(iterations))
    row.iterations_max = max(iterations)
    row.converged_fraction = sum(s.converged for s in solves) / len(solves)
    row.residual_median = float(statistics.median(s.residual for s in solves))
    per_system = {s.system: s.setup_s for s in solves}
    row.setup_median_s = float(statistics.median(per_system.values()))
    row.solve_median_s = float(statistics.median(s.solve_s for s in solves))
    row.total_median_s = float(statistics.median(s.setup_s + s.solve_s for s in solves))
    row.total_s = float(sum(per_system.values()) + sum(s.solve_s for s in solves))


def _ratio(value: float | None, reference: float | None) -> float | None:
    if value is None or not reference or not math.isfinite(reference):
        return None
    return value / reference


def run_task(task: LinearTask, baselines: Sequence[str], entries: Sequence[ModelEntry],
             progress: Callable[[str], None] | None = None) -> list[SolverRow]:
    """Every baseline and entry on ``task``, with the ratios to CG and AMG-PCG filled in."""
    note = progress or (lambda _: None)
    rows = []
    for kind in baselines:
        note(f"{task.name}: {BASELINE_NAMES[kind]}")
        rows.append(run_baseline(task, kind))
    for entry in entries:
        note(f"{task.name}: {entry.name}")
        rows.extend(run_entry(task, entry))
    cg = next((r for r in rows if r.method == "none" and r.status == "ok"), None)
    amg = next((r for r in rows if r.method == "amg" and r.status == "ok"), None)
    for row in rows:
        if row.status == "ok":
            row.iterations_vs_cg = _ratio(row.iterations_median, cg.iterations_median if cg else None)
            row.time_vs_amg = _ratio(row.total_median_s, amg.total_median_s if amg else None)
    return rows


def run_suite(suite: LinearSolverSuite, output: str | Path | None = None,
              progress: Callable[[str], None] | None = None) -> Path:
    """Run every task; write ``results.json``, ``results.csv``, ``results.md`` and the residual plots
    under ``output`` (default ``suite.output``). Returns the path of ``results.json``."""
    out = output_folder(output, suite.output)
    per_task = {task.name: run_task(task, suite.baselines, [m for m in suite.models if m.scores(task.name)], progress)
                for task in suite.tasks}
    for task in suite.tasks:
        plot_residuals(task, per_task[task.name], out / f"{task.name}_residuals.png")
    rows = [row for rows in per_task.values() for row in rows]
    document = results_document(suite.name, KIND, baselines=list(suite.baselines),
                                tasks=[_task_record(t) for t in suite.tasks], rows=[asdict(r) for r in rows])
    return write_results(out, document, ROW_FORMAT, {t.name: _task_line(t) for t in suite.tasks})


def _task_record(task: LinearTask) -> dict[str, Any]:
    return {**asdict(task), "unknowns": task.n ** task.dim, "rhs": list(task.rhs)}


def _task_line(task: LinearTask) -> str:
    return (f"{task.dim}-D Darcy, {task.n}^{task.dim} = {task.n ** task.dim:,} unknowns, {task.systems} systems "
            f"(seed {task.seed}) x rhs {', '.join(task.rhs)}, tol {task.tol:g}, maxiter {task.maxiter}")


# ------------------------------------------------------------------------------------------ outputs
CSV_COLUMNS = ("task", "name", "kind", "method", "status", "iterations_median", "iterations_max", "converged_fraction",
               "residual_median", "setup_median_s", "solve_median_s", "total_median_s", "total_s", "iterations_vs_cg",
               "time_vs_amg", "parameters", "load_time_s", "checkpoint", "error", "hardware", "threads", "torch",
               "git_revision")


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value * 1e3:.3g} ms"


HEADERS = ("entry", "iterations (median / max)", "converged", "residual (median)", "set-up / system", "solve",
           "set-up + solve", "iterations / CG", "time / AMG-PCG")


def _cells(r: dict[str, Any], markup: Markup) -> list[str]:
    """One row's cells under :data:`HEADERS` (a :class:`SolverRow` as a dict)."""
    if r["status"] != "ok":
        return [r["name"], markup.failed.format(r["error"]), *[""] * (len(HEADERS) - 2)]
    return [markup.bold.format(r["name"]) if r["kind"] != "baseline" else r["name"],
            f"{fmt(r['iterations_median'], '.0f')} / {r['iterations_max']}", f"{r['converged_fraction']:.0%}",
            fmt(r["residual_median"], ".2e"), _ms(r["setup_median_s"]), _ms(r["solve_median_s"]), _ms(r["total_median_s"]),
            fmt(r["iterations_vs_cg"]), fmt(r["time_vs_amg"])]


#: The linear-solver board's tables: per task the baselines, then the checkpoint entries (the per-solve
#: records are in ``results.json`` only).
ROW_FORMAT = RowFormat("linear-solver board", CSV_COLUMNS, HEADERS, _cells)


def plot_residuals(task: LinearTask, rows: Sequence[SolverRow], path: Path) -> Path | None:
    """Relative residual against iteration (log scale) of every row on system 0 and the first
    right-hand side; written atomically. None when no row succeeded."""
    from matplotlib.figure import Figure

    drawn = [r for r in rows if r.status == "ok" and r.history]
    if not drawn:
        return None
    fig = Figure(figsize=(6.4, 4.8))
    ax = fig.add_subplot()
    for r in drawn:
        history = np.maximum(np.asarray(r.history), 1e-300)
        learned = r.kind != "baseline"
        ax.semilogy(np.arange(len(history)), history, lw=2 if learned else 1.2,
                    ls="-" if learned else "--", label=f"{r.name} ({len(history) - 1} it.)")
    ax.axhline(task.tol, color="0.4", lw=0.8, ls=":", label=f"tol {task.tol:g}")
    ax.set(xlabel="iteration", ylabel="relative residual ‖r_k‖ / ‖b‖",
           title=f"{task.name}: system ({task.seed}, 0), rhs {task.rhs[0]}")
    return save_log_plot(fig, ax, path)
