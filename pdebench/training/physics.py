r"""Training of ``board="physics"`` models (NSM) on a PDE residual: sampled inputs, no solver data.

:func:`fit_physics` is a plain PyTorch loop (the benchmark times it step by step):

* a pool of ``n_train`` inputs is sampled once from ``(data_seed, i)``, ``i < n_train``
  (:meth:`~pdebench.models.nsm.ResidualProblem.sample_inputs`), and visited in seeded random batches;
* ``mode="spectral"`` (NSM): ``loss = problem.loss(problem.solution(model(f̂), f̂), f̂)``, the Parseval
  norm of the residual's coefficients;
* ``mode="pinn"`` (baseline): the same network run as a grid operator (:meth:`NSM.forward_grid`) on the
  inputs evaluated on a uniform ``pinn_grid``, ``loss = problem.grid_loss(u, f)`` (finite-difference
  residual, quadrature of its square) — same data, same optimiser, same schedule;
* every ``eval_every`` steps (and at the end) the relative :math:`L^2` error against a reference
  solution on an evaluation grid is recorded with the training wall time so far (evaluation time is
  not counted).

Examples
--------
>>> from pdebench.models.nsm import NSM, PeriodicPoisson
>>> problem = PeriodicPoisson(n_modes=8, source_modes=3)
>>> model = NSM(**problem.model_kwargs(), hidden_channels=16, n_layers=2)
>>> result = fit_physics(model, problem, PhysicsTrainConfig(steps=200, eval_every=50))
>>> result.errors[-1] < result.errors[0]
True
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch

from pdebench.core.metrics import relative_l2
from pdebench.models.nsm import NSM, ResidualProblem
from pdebench.registry import read_config
from pdebench.models.nsm import DirichletPoisson, PeriodicPoisson
from pdebench.atomic import atomic_write

log = logging.getLogger(__name__)

Mode = Literal["spectral", "pinn"]


@dataclass
class PhysicsTrainConfig:
    """Settings of :func:`fit_physics`.

    Parameters
    ----------
    steps : int
        Optimiser steps (upper bound when ``time_budget_s`` or ``target_error`` stops earlier).
    batch_size : int
        Inputs per step.
    n_train : int
        Size of the sampled input pool.
    lr, weight_decay : float
        Adam(W) settings.
    scheduler : {"cosine", "none"}
        Cosine annealing of the learning rate over ``steps`` (to ``lr * min_lr_ratio``), or constant.
    min_lr_ratio : float
        Final learning rate of the cosine schedule relative to ``lr``.
    data_seed : int
        Seed of the input pool (sample ``i`` is ``(data_seed, i)``).
    shuffle_seed : int
        Seed of the batch order.
    eval_every : int
        Evaluate every this many steps (0: only at the start and the end).
    time_budget_s : float or None
        Stop when the training wall time (evaluation excluded) exceeds it.
    target_error : float or None
        Stop at the first evaluation with an error at or below it.
    grad_clip : float or None
        Clip the gradient norm.
    progress : bool
        Show a rich progress bar.
    """

    steps: int = 2000
    batch_size: int = 16
    n_train: int = 512
    lr: float = 1e-3
    weight_decay: float = 0.0
    scheduler: Literal["cosine", "none"] = "cosine"
    min_lr_ratio: float = 1e-2
    data_seed: int = 0
    shuffle_seed: int = 0
    eval_every: int = 100
    time_budget_s: float | None = None
    target_error: float | None = None
    grad_clip: float | None = None
    progress: bool = False

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "n_train"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0 or self.weight_decay < 0 or not 0 < self.min_lr_ratio <= 1:
            raise ValueError(f"need lr > 0, weight_decay >= 0, 0 < min_lr_ratio <= 1; got lr={self.lr}, "
                             f"weight_decay={self.weight_decay}, min_lr_ratio={self.min_lr_ratio}")
        if self.scheduler not in ("cosine", "none"):
            raise ValueError(f"scheduler must be 'cosine' or 'none', got {self.scheduler!r}")
        if self.eval_every < 0:
            raise ValueError(f"eval_every must be >= 0, got {self.eval_every}")


@dataclass
class PhysicsFitResult:
    """What :func:`fit_physics` measured.

    Attributes
    ----------
    losses : list of float
        Training loss per step.
    eval_steps, eval_times, errors : list
        Step, training wall time so far (s, evaluation excluded) and relative L2 error at each evaluation
        (the first at step 0).
    train_time_s : float
        Total training wall time.
    """

    mode: str
    losses: list[float] = field(default_factory=list)
    eval_steps: list[int] = field(default_factory=list)
    eval_times: list[float] = field(default_factory=list)
    errors: list[float] = field(default_factory=list)
    train_time_s: float = 0.0

    @property
    def best_error(self) -> float:
        """Smallest evaluated error."""
        return min(self.errors) if self.errors else math.nan

    def time_to(self, error: float) -> float | None:
        """Training time of the first evaluation at or below ``error`` (``None`` if never reached)."""
        for t, e in zip(self.eval_times, self.errors):
            if e <= error:
                return t
        return None


def predict_values(model: NSM, problem: ResidualProblem, inputs: torch.Tensor, grid: Sequence[int],
                   mode: Mode = "spectral") -> torch.Tensor:
    """The model's solution on a uniform/collocation ``grid``, ``(B, C_out, *grid)`` real.

    ``spectral``: coefficients → values by one inverse transform; ``pinn``: the grid operator on the
    inputs evaluated on ``grid`` (the mean removed, as in :meth:`PeriodicPoisson.grid_loss`).
    """
    dtype = model.lift.weight.dtype
    inputs = inputs.to(problem.basis.coeff_dtype(dtype))
    if mode == "spectral":
        return problem.basis.to_values(problem.solution(model(inputs), inputs), grid)
    if mode == "pinn":
        u = model.forward_grid(problem.basis.to_values(inputs, grid))
        return u - u.mean(dim=tuple(range(2, u.ndim)), keepdim=True)
    raise ValueError(f"mode must be 'spectral' or 'pinn', got {mode!r}")


def _reference_values(problem: ResidualProblem, inputs: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
    if not hasattr(problem, "exact"):
        raise ValueError(f"{type(problem).__name__} has no exact solution; pass reference=... to fit_physics")
    return problem.basis.to_values(problem.exact(inputs), grid)


class PhysicsFit:
    """A resumable :func:`fit_physics` run: :meth:`run` advances it by any number of steps, so two runs
    can be interleaved in chunks and share the machine's load (the benchmark does this).

    The arguments are those of :func:`fit_physics`; the step-0 evaluation happens on construction.
    """

    def __init__(
        self,
        model: NSM,
        problem: ResidualProblem,
        config: PhysicsTrainConfig | None = None,
        *,
        mode: Mode = "spectral",
        pinn_grid: Sequence[int] | None = None,
        eval_inputs: torch.Tensor | None = None,
        eval_grid: Sequence[int] | None = None,
        reference: torch.Tensor | None = None,
        on_eval: Callable[[int, float, float], None] | None = None,
    ) -> None:
        config = config or PhysicsTrainConfig()
        if mode not in ("spectral", "pinn"):
            raise ValueError(f"mode must be 'spectral' or 'pinn', got {mode!r}")
        problem.check_model(model)
        if mode == "pinn":
            if pinn_grid is None:
                raise ValueError("mode='pinn' needs pinn_grid (the uniform grid of the finite-difference residual)")
            if not hasattr(problem, "grid_loss"):
                raise ValueError(f"{type(problem).__name__} has no grid (PINN) loss")
        self.model, self.problem, self.config, self.mode = model, problem, config, mode
        self.on_eval = on_eval
        dtype = model.lift.weight.dtype
        device = model.lift.weight.device
        cdtype = problem.basis.coeff_dtype(dtype)
        self.pool = problem.sample_inputs(config.data_seed, range(config.n_train)).to(device=device, dtype=cdtype)
        if eval_inputs is None:
            eval_inputs = problem.sample_inputs(config.data_seed + 1_000_003, range(16))
        self.eval_grid = tuple(eval_grid or pinn_grid or problem.basis.default_grid())
        if reference is None:
            reference = _reference_values(problem, eval_inputs.to(problem.basis.coeff_dtype(torch.float64)), self.eval_grid)
        self.reference = reference.to(device=device, dtype=dtype)
        self.eval_inputs = eval_inputs.to(device=device, dtype=cdtype)
        self.pool_grid = problem.basis.to_values(self.pool, tuple(pinn_grid)).to(dtype) if mode == "pinn" else None
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=config.steps,
                                                                     eta_min=config.lr * config.min_lr_ratio)
                          if config.scheduler == "cosine" else None)
        self._order = torch.Generator().manual_seed(config.shuffle_seed)
        self._batches: list[torch.Tensor] = []
        self.step = 0
        self.done = False
        self.result = PhysicsFitResult(mode=mode)
        self.evaluate()

    def evaluate(self) -> float:
        """Record the relative L2 error now (not counted in the training time)."""
        model, result = self.model, self.result
        was_training = model.training
        model.eval()
        with torch.no_grad():
            error = float(relative_l2(predict_values(model, self.problem, self.eval_inputs, self.eval_grid, self.mode),
                                      self.reference))
        model.train(was_training)
        result.eval_steps.append(self.step)
        result.eval_times.append(result.train_time_s)
        result.errors.append(error)
        if self.on_eval is not None:
            self.on_eval(self.step, result.train_time_s, error)
        log.debug("%s step %d: %.3fs, rel. L2 %.3e", self.mode, self.step, result.train_time_s, error)
        return error

    def _loss(self, index: torch.Tensor) -> torch.Tensor:
        if self.mode == "spectral":
            inputs = self.pool[index]
            return self.problem.loss(self.problem.solution(self.model(inputs), inputs), inputs)
        f = self.pool_grid[index]
        return self.problem.grid_loss(self.model.forward_grid(f), f)

    def run(self, max_steps: int | None = None, progress=None) -> bool:
        """Advance by at most ``max_steps`` steps (all remaining by default); returns :attr:`done`."""
        config, result = self.config, self.result
        todo = config.steps - self.step if max_steps is None else max_steps
        for _ in range(todo):
            if self.done:
                break
            if not self._batches:
                perm = torch.randperm(config.n_train, generator=self._order)
                self._batches = list(perm.split(config.batch_size))[::-1]
            index = self._batches.pop().to(self.pool.device)
            start = time.perf_counter()
            self.optimizer.zero_grad(set_to_none=True)
            loss = self._loss(index)
            loss.backward()
            if config.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.grad_clip)
            self.optimizer.step()
            if self.scheduler is not None:
                self.scheduler.step()
            value = float(loss.detach())
            result.train_time_s += time.perf_counter() - start
            self.step += 1
            result.losses.append(value)
            if not math.isfinite(value):
                raise FloatingPointError(f"{self.mode} training diverged at step {self.step}: loss {value}")
            if progress is not None:
                progress()
            last = self.step >= config.steps
            out_of_time = config.time_budget_s is not None and result.train_time_s >= config.time_budget_s
            if last or out_of_time or (config.eval_every and self.step % config.eval_every == 0):
                error = self.evaluate()
                reached = config.target_error is not None and error <= config.target_error
                self.done = last or out_of_time or reached
        return self.done


def fit_physics(
    model: NSM,
    problem: ResidualProblem,
    config: PhysicsTrainConfig | None = None,
    *,
    mode: Mode = "spectral",
    pinn_grid: Sequence[int] | None = None,
    eval_inputs: torch.Tensor | None = None,
    eval_grid: Sequence[int] | None = None,
    reference: torch.Tensor | None = None,
    on_eval: Callable[[int, float, float], None] | None = None,
) -> PhysicsFitResult:
    """Train ``model`` on ``problem``'s residual (see the module docstring).

    Parameters
    ----------
    model : NSM
        Trained in place (its dtype is the training dtype).
    problem : ResidualProblem
        The PDE; its bases must match the model's (checked).
    config : PhysicsTrainConfig, optional
        Loop settings.
    mode : {"spectral", "pinn"}
        NSM spectral loss, or the grid PINN baseline (``problem.grid_loss`` needed).
    pinn_grid : sequence of int, optional
        Uniform grid of the PINN loss (required for ``mode="pinn"``).
    eval_inputs : torch.Tensor, optional
        Held-out input coefficients ``(B, C_in, *coeff_shape)``; default 16 samples from seed
        ``data_seed + 1_000_003``.
    eval_grid : sequence of int, optional
        Grid of the error evaluation; default ``pinn_grid`` or the basis' exact grid.
    reference : torch.Tensor, optional
        Reference solution values ``(B, C_out, *eval_grid)``; default ``problem.exact`` on ``eval_grid``.
    on_eval : callable, optional
        Called as ``on_eval(step, train_time_s, error)`` after each evaluation.

    Returns
    -------
    PhysicsFitResult
    """
    fit = PhysicsFit(model, problem, config, mode=mode, pinn_grid=pinn_grid, eval_inputs=eval_inputs,
                     eval_grid=eval_grid, reference=reference, on_eval=on_eval)
    if not fit.config.progress:
        fit.run()
        return fit.result
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task(f"{mode} training", total=fit.config.steps)
        fit.run(progress=lambda: bar.update(task, advance=1))
    return fit.result


# --------------------------------------------------------------------------------------------------
# YAML-configured runs (``pdebench physics --config configs/physics/*.yaml``)
# --------------------------------------------------------------------------------------------------
@dataclass
class PhysicsRunConfig:
    """One physics-informed training run, as read from YAML.

    Parameters
    ----------
    problem : {"periodic_poisson", "dirichlet_poisson"}
        The residual problem (its reference: the exact solution, or the least-squares minimiser of the
        spectral loss in float64 for Dirichlet Poisson).
    problem_args : dict
        Constructor arguments of the problem class.
    model_args : dict
        :class:`~pdebench.models.nsm.NSM` arguments besides the problem's bases, modes and channels.
    train : dict
        :class:`PhysicsTrainConfig` fields.
    mode : {"spectral", "pinn"}
        NSM's spectral loss or the grid-PINN baseline (``pinn_grid`` needed).
    pinn_grid : list of int, optional
        Grid of the PINN loss.
    output : str
        Folder for ``model.pt`` (state dict) and ``result.json``.
    seed : int
        Initial weights.
    """

    problem: str
    problem_args: dict = field(default_factory=dict)
    model_args: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    mode: Mode = "spectral"
    pinn_grid: list[int] | None = None
    output: str = "outputs/physics"
    seed: int = 0


def _problem_classes() -> dict[str, type]:
    return {"periodic_poisson": PeriodicPoisson, "dirichlet_poisson": DirichletPoisson}


def load_physics_config(path: str) -> PhysicsRunConfig:
    """Read a :class:`PhysicsRunConfig` from YAML; unknown keys and problems are refused by name."""
    config = read_config(path, PhysicsRunConfig, "physics config")
    if config.problem not in _problem_classes():
        raise ValueError(f"{path}: unknown problem {config.problem!r}; choose one of {', '.join(_problem_classes())}")
    return config


def run_physics(config: PhysicsRunConfig, steps: int | None = None) -> tuple[PhysicsFitResult, str]:
    """Train an NSM (or its PINN baseline) as ``config`` says; write ``model.pt`` and ``result.json``.

    Returns the fit result and the output folder. ``steps`` overrides ``train.steps`` (quick runs).
    """
    import json
    from pathlib import Path

    problem = _problem_classes()[config.problem](**config.problem_args)
    train = {**config.train, **({"steps": steps} if steps is not None else {})}
    train_config = PhysicsTrainConfig(**train)
    torch.manual_seed(config.seed)
    model = NSM(**problem.model_kwargs(), **config.model_args)
    reference = eval_grid = eval_inputs = None
    if not hasattr(problem, "exact"):  # Dirichlet Poisson: the float64 least-squares minimiser
        eval_inputs = problem.sample_inputs(train_config.data_seed + 1_000_003, range(16))
        eval_grid = tuple(config.pinn_grid or problem.basis.default_grid())
        reference = problem.basis.to_values(problem.least_squares_solution(eval_inputs), eval_grid)
    result = fit_physics(model, problem, train_config, mode=config.mode, pinn_grid=config.pinn_grid,
                         eval_inputs=eval_inputs, eval_grid=eval_grid, reference=reference)
    out = Path(config.output)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / "model.pt") as handle:
        torch.save(model.state_dict(), handle)
    summary = {"problem": config.problem, "problem_args": config.problem_args, "mode": config.mode,
               "steps": len(result.losses), "train_time_s": result.train_time_s, "final_loss": result.losses[-1],
               "errors": result.errors, "eval_steps": result.eval_steps, "best_error": result.best_error}
    with atomic_write(out / "result.json", "w") as handle:
        handle.write(json.dumps(summary, indent=1))
    log.info("%s %s: relative L2 %.3g after %d steps (%.1f s)", config.problem, config.mode, result.errors[-1],
             len(result.losses), result.train_time_s)
    return result, str(out)
