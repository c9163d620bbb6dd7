r"""Learned components that accelerate a steady solver's linear solves, keeping its tolerance.

A steady solver with CG solves (``fv-elliptic``: :class:`~pdebench.solvers.fv.elliptic.FVEllipticSolver`)
takes two optional callables and imports neither (the solvers layer sits below the models):

* ``initial_guess``: coefficients ``(B, *grid)`` -> solution guesses ``(B, *grid)``. :class:`OperatorGuess`
  is a trained grid operator (an FNO, an LSM, … trained on the problem's ``pairs`` task) predicting the
  solution from the coefficient field; CG starts from it and stops at the same
  :math:`\|b - A x\| \le \mathrm{tol}\,\|b\|` as from zero, so the data keep their accuracy and only the
  iteration count changes;
* ``preconditioner``: ``A -> Preconditioner``. :class:`LearnedFactorPreconditioner` is a learned
  incomplete Cholesky network (:mod:`pdebench.models.learned_ic`): :math:`M = L L^T` with ``L`` on the
  pattern of ``tril(A)``, SPD whatever the weights, so CG keeps its guarantee.

:func:`solver_acceleration` turns checkpoint paths (``pdebench generate ... --accelerate CKPT``, either
kind, at most one of each) into those solver arguments, checking that an operator was trained on the
problem it is asked to accelerate. :class:`ReloadingOperatorGuess` is the guess of a model still
training: picklable (a worker process gets only the path), it reloads the checkpoint file when it
changed and at least ``every_samples`` samples were guessed since the last load, so the generator's
cost per sample can fall while the operator trains; :class:`AcceleratedOnlineDataModule` gives one, of
the checkpoint the run itself writes, to the workers of online training.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import scipy.sparse as sp
import torch

from pdebench.data.online import OnlineDataModule
from pdebench.models import learned_ic
from pdebench.solvers import SOLVERS
from pdebench.solvers.linalg import Preconditioner
from pdebench.training.data_card import single_dataset_card
from pdebench.training.module_classes import load_predictor
from pdebench.training.predictor import Predictor

log = logging.getLogger(__name__)


class OperatorGuess:
    """A trained steady operator as a CG start: ``guess(a) = model.predict(a)``.

    Parameters
    ----------
    model
        A :class:`~pdebench.training.predictor.Predictor` of a ``pairs`` task: physical input
        ``(B, 1, *grid)`` (the coefficient) to physical output ``(B, C, *grid)`` whose channel 0 is the
        solution.
    source
        What it is (its checkpoint path), recorded in the data's provenance (``warm_start_from``).
    batch_size
        Samples per forward pass.
    """

    def __init__(self, model: Predictor, source: str = "", batch_size: int = 8) -> None:
        self.model, self.source, self.batch_size = model, str(source), int(batch_size)

    def __call__(self, coefficients: torch.Tensor) -> torch.Tensor:
        """Guesses ``(B, *grid)`` float64 for coefficients ``(B, *grid)`` (any float dtype)."""
        out = []
        with torch.no_grad():
            for chunk in torch.as_tensor(coefficients).split(self.batch_size):
                out.append(self.model.predict(chunk.float().unsqueeze(1))[:, 0].to(torch.float64).cpu())
        return torch.cat(out) if out else torch.zeros_like(torch.as_tensor(coefficients), dtype=torch.float64)


class LearnedFactorPreconditioner:
    """A learned incomplete Cholesky network as a solver's ``preconditioner``: ``A -> M = L L^T``
    (:func:`~pdebench.models.learned_ic.learned_ic_preconditioner`, kind ``"learned_ic"``).

    Parameters
    ----------
    model
        The network (:class:`~pdebench.models.learned_ic.LearnedIC`).
    source
        Its checkpoint path, recorded in the provenance (``preconditioner_from``).
    """

    def __init__(self, model: learned_ic.LearnedIC, source: str = "") -> None:
        self.model, self.source = model, str(source)

    def __call__(self, A: sp.sparray | sp.spmatrix) -> Preconditioner:
        with torch.no_grad():
            return learned_ic.learned_ic_preconditioner(self.model, A)


def is_learned_ic_checkpoint(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a learned-IC file (:func:`~pdebench.models.learned_ic.save_learned_ic`'s format);
    ``False`` for anything else, a file torch cannot read included (tensors only: no code runs)."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - not a torch file: the operator reader refuses it in one line
        return False
    return isinstance(payload, dict) and payload.get("format") == learned_ic.CHECKPOINT_FORMAT


def check_operator_card(path: str | os.PathLike[str], extras: dict[str, Any], problem_name: str) -> None:
    """Refuse a checkpoint (its ``extras``, :func:`~pdebench.training.module_classes.load_predictor`'s)
    that is not a ``pairs`` model of the problem ``problem_name`` (another grid is allowed: a
    resolution-free operator may take it, and a guess of the wrong shape is refused by the solver).

    Raises
    ------
    ValueError
        One line naming the checkpoint, the problem and task it was trained on.
    """
    card = single_dataset_card(extras.get("data") or {})
    trained_on, task = card.get("problem"), card.get("task")
    if trained_on != problem_name or task != "pairs":
        raise ValueError(f"{path}: trained on {trained_on!r} (task {task!r}); a warm start for {problem_name!r} needs "
                         "an operator trained on its input -> solution pairs")


def operator_guess(path: str | os.PathLike[str], problem: Any) -> OperatorGuess:
    """:class:`OperatorGuess` of the Lightning checkpoint ``path``, checked to be a ``pairs`` model of
    ``problem`` (:func:`check_operator_card`).

    Raises
    ------
    ValueError
        One line naming the checkpoint: not a checkpoint of pdebench, or trained on another problem or task.
    """
    model, extras = load_predictor(path)
    check_operator_card(path, extras, problem.name)
    return OperatorGuess(model, source=str(path))


class ReloadingOperatorGuess:
    """The CG start of a model that is still training: :class:`OperatorGuess` of the checkpoint file
    ``path``, reloaded as the file changes.

    The checkpoint is loaded lazily, in the process that calls the guess (a generator's worker), and
    reloaded when at least ``every_samples`` samples were guessed since the last load *and* the file's
    modification time changed. Pickled, it carries only the path and its counters (a spawned worker
    loads its own copy). Before the file exists (training has not saved yet) the guess is zero: CG's
    start from an all-zero guess is its zero start (the Galerkin step of a zero guess is skipped), so
    the cold cost. A file that cannot be read (not yet complete: the training CLI writes checkpoints
    atomically, :class:`~pdebench.training.checkpoint_io.AtomicCheckpointIO`, so only a foreign writer
    could leave one) keeps the model loaded before and is tried again at the next call.

    Parameters
    ----------
    path
        The Lightning checkpoint training writes (e.g. ``.../checkpoints/last.ckpt``).
    every_samples
        Samples to guess between reload checks, ``>= 1``.
    problem
        The problem name the checkpoint must have been trained on (``pairs`` task), checked at every
        load; ``None``: not checked.
    batch_size
        Samples per forward pass.

    Attributes
    ----------
    loads
        Checkpoint loads so far (0: none yet, zeros are guessed).
    source
        ``"<path> (reload <loads>)"``, or ``"<path> (not saved yet)"``: the model version the solver's
        provenance records as ``warm_start_from``.
    """

    def __init__(self, path: str | os.PathLike[str], every_samples: int = 1, problem: str | None = None,
                 batch_size: int = 8) -> None:
        if isinstance(every_samples, bool) or not isinstance(every_samples, int) or every_samples < 1:
            raise ValueError(f"every_samples must be an integer >= 1, got {every_samples!r}")
        self.path, self.every_samples, self.problem, self.batch_size = str(path), every_samples, problem, int(batch_size)
        self.loads, self.since_load = 0, 0
        self._mtime: int | None = None
        self._guess: OperatorGuess | None = None

    @property
    def source(self) -> str:
        return f"{self.path} ({'reload ' + str(self.loads) if self.loads else 'not saved yet'})"

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_guess"], state["_mtime"] = None, None  # the receiving process loads its own copy
        return state

    def _file_version(self) -> int | None:
        try:
            return os.stat(self.path).st_mtime_ns
        except FileNotFoundError:
            return None

    def _maybe_reload(self) -> None:
        """Load the file when it is there, changed, and ``every_samples`` were guessed since the last load."""
        if self._guess is not None and self.since_load < self.every_samples:
            return
        mtime = self._file_version()
        if mtime is None or mtime == self._mtime:
            return
        try:
            model, extras = load_predictor(self.path)
        except (ValueError, OSError, RuntimeError, EOFError) as error:  # unreadable (incomplete?): keep the old model
            log.warning("%s could not be read (%s); keeping the model loaded before until the file changes", self.path, error)
            self._mtime = mtime  # this version is not tried again
            return
        if self._file_version() != mtime:  # replaced while it was read: the newer one is taken at the next call
            return
        if self.problem is not None:
            check_operator_card(self.path, extras, self.problem)
        self._guess, self._mtime = OperatorGuess(model, self.path, self.batch_size), mtime
        self.loads, self.since_load = self.loads + 1, 0

    def __call__(self, coefficients: torch.Tensor) -> torch.Tensor:
        """Guesses ``(B, *grid)`` float64 for coefficients ``(B, *grid)``: the latest loaded model's, or zeros."""
        coefficients = torch.as_tensor(coefficients)
        self._maybe_reload()
        self.since_load += int(coefficients.shape[0])
        if self._guess is None:
            return torch.zeros_like(coefficients, dtype=torch.float64)
        return self._guess(coefficients)


class AcceleratedOnlineDataModule(OnlineDataModule):
    """Online training whose solver workers start CG from the model being trained.

    :class:`~pdebench.data.online.OnlineDataModule` (same arguments) for a steady problem with CG solves
    (``darcy3d``, task ``"pairs"``), whose workers' solver gets a :class:`ReloadingOperatorGuess` of
    ``warm_start_checkpoint`` (the ``last.ckpt`` this run's ``ModelCheckpoint`` writes) as its
    ``initial_guess``: zeros until training saves it, then the newest version, checked every
    ``reload_every`` samples a worker solves. The tolerance is unchanged, so the data are as accurate;
    each batch's cost per sample (seconds and iterations) is in the stream report's ``costs``. The
    guess is not a hyper-parameter (checkpoints stay tensor-only): the arguments are the path and K.
    The held-out sets are solved cold, before training.

    Parameters
    ----------
    warm_start_checkpoint
        Path of the checkpoint file training writes (need not exist yet).
    reload_every
        ``every_samples`` of the guess, ``>= 1``.
    """

    def __init__(self, *args: Any, warm_start_checkpoint: str, reload_every: int = 8, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.hparams.task != "pairs":
            raise ValueError(f"a warm start needs an operator of the 'pairs' task (steady problems), got task {self.hparams.task!r}")
        guess = ReloadingOperatorGuess(warm_start_checkpoint, every_samples=reload_every, problem=self.problem.name)
        if "initial_guess" not in SOLVERS.get(self.problem.solver).arguments():
            raise ValueError(f"the {self.problem.solver!r} solver of {self.problem.name!r} takes no initial_guess")
        self.worker_config = dataclasses.replace(
            self.worker_config, solver_args={**self.worker_config.solver_args, "initial_guess": guess})


def solver_acceleration(paths: Sequence[str | os.PathLike[str]], problem: Any) -> dict[str, Any]:
    """The solver arguments (``initial_guess``: an operator's :class:`OperatorGuess`; ``preconditioner``: a
    learned IC's :class:`LearnedFactorPreconditioner`) that the checkpoints ``paths`` give ``problem``'s
    solver (at most one of each kind).

    Raises
    ------
    FileNotFoundError
        A path that is not a file.
    ValueError
        A solver that takes no acceleration, two checkpoints of one kind, or a checkpoint that cannot
        accelerate ``problem`` (one line naming it).
    """
    arguments = SOLVERS.get(problem.solver).arguments()
    kwargs: dict[str, Any] = {}
    for path in paths:
        if not Path(path).is_file():
            raise FileNotFoundError(f"--accelerate: no checkpoint at {path}")
        kind = "preconditioner" if is_learned_ic_checkpoint(path) else "initial_guess"
        if kind not in arguments:
            raise ValueError(f"--accelerate: the {problem.solver!r} solver of {problem.name!r} takes no {kind}; "
                             "acceleration is for the CG solves of fv-elliptic problems (e.g. darcy3d)")
        if kind in kwargs:
            raise ValueError(f"--accelerate: {path} is a second {kind.replace('_', ' ')}; give one of each kind at most")
        if kind == "preconditioner":
            kwargs[kind] = LearnedFactorPreconditioner(learned_ic.load_learned_ic(path)[0], source=str(path))
        else:
            kwargs[kind] = operator_guess(path, problem)
    return kwargs
