"""Leaderboard suites: the tasks every model is scored on and the entries to score (YAML files under
``configs/leaderboard/``).

A suite file::

    name: burgers1d
    output: outputs/leaderboard/burgers1d
    tasks:
      - name: burgers1d_nu0.1_t1
        problem: burgers1d
        problem_args: {nu: 0.1, n_out: 1}   # the task's resolution and horizon are the problem's
        mode: one_step                      # u(0) -> u(t_final); "rollout" (autoregressive); "steady" (darcy2d: a -> u)
        samples: 32
        seed: 1000000                       # leaderboard seeds start at 1_000_000: no training run uses them
        reference_refinement: 4             # reference solved on a 4x finer grid with max_dt / 4
        ladder_resolutions: [32, 64, 128, 256]
        ladder_max_dt: [0.01, 0.05]
        eval_resolutions: [512, 1024, 2048] # also score every model at these grids (each must divide 1024 x 4)
    models:
      - {name: fno, checkpoint: outputs/demo/fno/checkpoints/last.ckpt}
      - {name: unet, checkpoint: outputs/unet/checkpoints/last.ckpt, tasks: [burgers1d_nu0.1_t1]}  # only these tasks (default: all)
    device: cpu                             # where the models run and are timed (cuda: synchronised timings)

Every field is checked when the suite is loaded, with the bad value and what was expected named.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from pdebench.problems import PROBLEMS
from pdebench.registry import dataclass_from_mapping, read_yaml, require_int
from pdebench.problems.base import Problem
from pdebench.problems.elliptic import SteadyProblem
from pdebench.problems.sampling import LEADERBOARD_SEED_BASE
from pdebench.solvers.base import SOLVERS
from pdebench import __version__

MODES = ("one_step", "rollout", "steady")


@dataclass(frozen=True)
class TaskSpec:
    """One leaderboard task: a problem at a resolution and horizon, scored one-step or by rollout.

    Parameters
    ----------
    name
        Row label.
    problem, problem_args
        Registered problem and its arguments: the task's grid, ``t_final`` and ``n_out``.
    solver_args
        Arguments of the problem's solver (reference and ladder alike).
    mode
        ``"one_step"``: the model maps ``u(0)`` to ``u(t_final)`` (``initial_to_final`` training);
        ``"rollout"``: the model advances ``history`` frames one output interval at a time and is
        scored on every frame after the first ``history``; ``"steady"``: a steady problem on a node
        grid (``darcy2d``), the model maps the input field to the solution (``pairs`` training). Its
        reference is the finite-element solve on the task grid itself (``reference_refinement`` 1:
        the thresholded coefficient is defined by its grid values, so a finer grid would pose another
        problem); the ladder solves on nested coarser node grids (``r < n``, ``(n - 1) % (r - 1) == 0``) with the
        coefficient sampled there and interpolates the solution back (bilinear, exact at shared nodes).
    history
        Frames given to a rollout model.
    samples, seed
        Held-out samples ``(seed, 0..samples-1)``; ``seed >= LEADERBOARD_SEED_BASE``.
    reference_refinement
        The reference is solved on a grid this many times finer, with ``max_dt`` divided by it.
    ladder_resolutions, ladder_max_dt
        The classical solver's rungs: every resolution (at most the task's) with every accuracy step
        (``None``: the problem's). Point values: even resolutions; cell averages (a problem with
        ``cell_averaged``, e.g. ``mppde_e1``): any resolution dividing the task's (odd ones too).
    repeats
        Timed repeats (the median is reported) for solver rungs and models.
    eval_resolutions
        The resolution protocol (empty, the default: none): grids at which every model is also scored,
        without retraining, from inputs at that grid, against the truth at that grid, and placed on the
        solver ladder run at that grid (:meth:`ladder_at`). Time-dependent point-value tasks only; each
        ``r`` is an even integer >= 8 dividing the reference grid (task grid x ``reference_refinement``),
        so the truth at ``r`` is the reference solve sampled at every ``(n x refinement) / r``-th
        point, exactly. The task's own grid may be listed (it is always scored: the gap's denominator).
    """

    name: str
    problem: str
    problem_args: dict[str, Any] = field(default_factory=dict)
    solver_args: dict[str, Any] = field(default_factory=dict)
    mode: Literal["one_step", "rollout"] = "one_step"
    history: int = 1
    samples: int = 32
    seed: int = LEADERBOARD_SEED_BASE
    reference_refinement: int = 4
    ladder_resolutions: tuple[int, ...] = (32, 64, 128, 256)
    ladder_max_dt: tuple[float | None, ...] = (None,)
    repeats: int = 3
    eval_resolutions: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        problem = PROBLEMS.build(self.problem, **self.problem_args)  # names unknown problems and bad args
        if self.mode not in MODES:
            raise ValueError(f"task {self.name!r}: mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.seed < LEADERBOARD_SEED_BASE:
            raise ValueError(f"task {self.name!r}: seed {self.seed} could be a training seed; leaderboard seeds are >= {LEADERBOARD_SEED_BASE}")
        for label, value in (("samples", self.samples), ("history", self.history), ("repeats", self.repeats),
                             ("reference_refinement", self.reference_refinement)):
            require_int(label, value, 1, f"task {self.name!r}: ")
        steady = isinstance(problem, SteadyProblem)
        if steady != (self.mode == "steady"):
            raise ValueError(f"task {self.name!r}: {problem.name} is {'a steady' if steady else 'a time-dependent'} problem; "
                             f"use mode {'steady' if steady else 'one_step or rollout'}, not {self.mode!r}")
        if self.mode == "rollout" and problem.n_out + 1 <= self.history:
            raise ValueError(f"task {self.name!r}: {problem.n_out + 1} frames leave nothing to predict after history={self.history}")
        task_points = problem.spatial_shape[0]
        if steady:
            if self.reference_refinement != 1:
                raise ValueError(f"task {self.name!r}: a steady task's reference is the solve on its own grid; "
                                 f"reference_refinement must be 1, got {self.reference_refinement}")
            bad = [r for r in self.ladder_resolutions
                   if not isinstance(r, int) or r < 5 or r >= task_points or (task_points - 1) % (r - 1)]
            if not self.ladder_resolutions or bad:
                raise ValueError(f"task {self.name!r}: ladder_resolutions must be node counts r in [5, {task_points}) with "
                                 f"({task_points} - 1) divisible by (r - 1) (nested grids; the task grid itself is the "
                                 f"reference); got {list(self.ladder_resolutions)}")
        elif getattr(problem, "cell_averaged", False):
            bad = [r for r in self.ladder_resolutions if not isinstance(r, int) or r < 8 or r > task_points or task_points % r]
            if not self.ladder_resolutions or bad:
                raise ValueError(f"task {self.name!r}: {problem.name} stores cell averages, so ladder_resolutions must be "
                                 f"integers in [8, {task_points}] dividing the task's {task_points} cells (rungs start from "
                                 f"block averages and are compared piecewise constant); got {list(self.ladder_resolutions)}")
        else:
            bad = [r for r in self.ladder_resolutions if not isinstance(r, int) or r < 8 or r > task_points or r % 2]
            if not self.ladder_resolutions or bad:
                raise ValueError(f"task {self.name!r}: ladder_resolutions must be even integers in [8, {task_points}] "
                                 f"(the task's grid); got {list(self.ladder_resolutions)}")
        bad_dt = [d for d in self.ladder_max_dt if d is not None and not (isinstance(d, (int, float)) and d > 0)]
        if not self.ladder_max_dt or bad_dt:
            raise ValueError(f"task {self.name!r}: ladder_max_dt must be positive numbers or null; got {list(self.ladder_max_dt)}")
        object.__setattr__(self, "ladder_resolutions", tuple(sorted(set(self.ladder_resolutions))))
        object.__setattr__(self, "ladder_max_dt", tuple(self.ladder_max_dt))
        self._check_eval_resolutions(problem)

    def _check_eval_resolutions(self, problem: Problem) -> None:
        """Refuse ``eval_resolutions`` on a task the protocol does not cover, or an ``r`` that is not an
        even integer >= 8 dividing the reference grid (one line naming the bad value and the rule)."""
        if isinstance(self.eval_resolutions, (str, int)):
            raise ValueError(f"task {self.name!r}: eval_resolutions must be a list of grid sizes, got {self.eval_resolutions!r}")
        if not self.eval_resolutions:
            return
        if self.mode == "steady" or getattr(problem, "cell_averaged", False):
            kind = "steady" if self.mode == "steady" else f"cell-averaged ({problem.name})"
            raise ValueError(f"task {self.name!r}: eval_resolutions is for time-dependent point-value tasks; "
                             f"this task is {kind}, got eval_resolutions {list(self.eval_resolutions)}")
        fine = problem.spatial_shape[0] * self.reference_refinement
        for r in self.eval_resolutions:
            if isinstance(r, bool) or not isinstance(r, int) or r < 8 or r % 2 or fine % r:
                raise ValueError(f"task {self.name!r}: eval_resolutions entry {r!r} is not an even integer >= 8 dividing the "
                                 f"reference grid {fine} (task grid {problem.spatial_shape[0]} x reference_refinement "
                                 f"{self.reference_refinement}), so the truth at it would not be an exact restriction of the reference solve")
        object.__setattr__(self, "eval_resolutions", tuple(sorted(set(self.eval_resolutions))))

    @property
    def other_resolutions(self) -> tuple[int, ...]:
        """The :attr:`eval_resolutions` other than the task's own grid (those scored anew)."""
        return tuple(r for r in self.eval_resolutions if r != self.task_problem.spatial_shape[0])

    def ladder_at(self, points: int) -> tuple[int, ...]:
        """The solver ladder's resolutions scaled to a grid of ``points``: each of
        :attr:`ladder_resolutions` times ``points / n`` (``n`` the task grid), rounded to the nearest even
        integer and kept in ``[8, points]``, without repeats (the task grid: :attr:`ladder_resolutions`)."""
        n = self.task_problem.spatial_shape[0]
        if points == n:
            return self.ladder_resolutions
        scaled = {min(max(2 * round(r * points / (2 * n)), 8), points) for r in self.ladder_resolutions}
        return tuple(sorted(scaled))

    @property
    def task_problem(self) -> Problem:
        """The problem at the task's resolution."""
        return PROBLEMS.build(self.problem, **self.problem_args)

    @property
    def reference_problem(self) -> Problem:
        """The problem on the refined grid with the accuracy step divided by the refinement (a steady
        task: the task's problem)."""
        if self.mode == "steady":
            return self.task_problem
        return self.task_problem.refined(self.reference_refinement)

    def content_hash(self) -> str:
        """Hash of everything the reference set depends on (its cache key)."""

        reference = self.reference_problem
        key = {"problem": self.problem, "fields": dataclasses.asdict(reference), "solver_args": self.solver_args,
               "samples": self.samples, "seed": self.seed, "pdebench": __version__}
        rtol = SOLVERS.get(reference.solver).arguments().get("rtol")
        if rtol is not None:  # the certified tolerance the reference is solved to, default or asked for
            key["rtol"] = self.solver_args.get("rtol", rtol.default)
        if getattr(reference, "cell_averaged", False):  # the truth is block-averaged, not sampled (other tasks' keys are unchanged)
            key["restriction"] = "block_average"
        if self.eval_resolutions:  # the cache also holds the truth at each (other tasks' keys are unchanged)
            key["eval_resolutions"] = list(self.eval_resolutions)
        return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ModelEntry:
    """A leaderboard entry: a trained checkpoint (``checkpoint``) under a display ``name``.

    ``tasks`` names the suite's tasks the entry is scored on (``None``, the default: every task), for
    a suite whose checkpoints are each trained for one task (``mppde.yaml``).
    """

    name: str
    checkpoint: str | None = None
    tasks: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("every model entry needs a name")
        if self.tasks is not None:
            if isinstance(self.tasks, str) or not all(isinstance(t, str) and t for t in self.tasks):
                raise ValueError(f"model {self.name!r}: tasks must be a list of task names, got {self.tasks!r}")
            object.__setattr__(self, "tasks", tuple(self.tasks))

    def scores(self, task: str) -> bool:
        """Whether the entry is scored on the task named ``task``."""
        return self.tasks is None or task in self.tasks


class YamlSuite:
    """``from_yaml(path)``: a suite class's ``from_dict`` on the file's mapping, named by its path."""

    @classmethod
    def from_yaml(cls, path: str | Path):
        return cls.from_dict(read_yaml(path, "suite file"), str(path))


@dataclass(frozen=True)
class Suite(YamlSuite):
    """Tasks, model entries and where results go."""

    name: str
    tasks: tuple[TaskSpec, ...]
    models: tuple[ModelEntry, ...] = ()
    output: str = "outputs/leaderboard"
    cache_dir: str = "outputs/leaderboard/cache"
    batch_size: int = 32
    #: Where the models run and are timed (``"cpu"``, ``"cuda"``, ``"cuda:1"``); the solver ladder runs on the CPU.
    device: str = "cpu"

    def __post_init__(self) -> None:
        try:
            device = torch.device(self.device)
        except (RuntimeError, TypeError):
            raise ValueError(f"device must be 'cpu' or 'cuda[:N]', got {self.device!r}") from None
        if device.type not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda[:N]', got {self.device!r}")
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {self.device!r}: this machine has no CUDA device (torch.cuda.is_available() is False); "
                             f"use device: cpu")

    @classmethod
    def from_dict(cls, raw: dict[str, Any], origin: str = "suite") -> "Suite":
        if not isinstance(raw, dict):
            raise ValueError(f"{origin}: expected a mapping with name, tasks, models; got {type(raw).__name__}")
        unknown = sorted(set(raw) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"{origin}: unknown key(s) {', '.join(unknown)}; expected {', '.join(f.name for f in dataclasses.fields(cls))}")
        tasks = build_tasks(raw, TaskSpec, origin)
        names = [t.name for t in tasks]
        models = [dataclass_from_mapping(ModelEntry, m, f"{origin}: model {i}") for i, m in enumerate(raw.get("models") or [])]
        for model in models:
            unknown_tasks = [t for t in model.tasks or () if t not in names]
            if unknown_tasks:
                raise ValueError(f"{origin}: model {model.name!r} names unknown task(s) {', '.join(unknown_tasks)}; "
                                 f"tasks: {', '.join(names)}")
        rest = {k: v for k, v in raw.items() if k not in ("tasks", "models")}
        return cls(tasks=tuple(tasks), models=tuple(models), **rest)

    def task(self, name: str) -> TaskSpec:
        for task in self.tasks:
            if task.name == name:
                return task
        raise ValueError(f"suite {self.name!r} has no task {name!r}; tasks: {', '.join(t.name for t in self.tasks)}")


def build_tasks(raw: dict[str, Any], task_cls: type, origin: str) -> list:
    """The ``tasks:`` list of a suite mapping as ``task_cls`` entries (:func:`~pdebench.registry.dataclass_from_mapping`); refuses
    an empty list and repeated task names."""
    tasks = [dataclass_from_mapping(task_cls, t, f"{origin}: task {i}") for i, t in enumerate(raw.get("tasks") or [])]
    if not tasks:
        raise ValueError(f"{origin}: no tasks")
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        raise ValueError(f"{origin}: task names repeat: {names}")
    return tasks
