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
problem it is asked to accelerate.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import scipy.sparse as sp
import torch

from pdebench.models import learned_ic
from pdebench.solvers import SOLVERS
from pdebench.solvers.linalg import Preconditioner
from pdebench.training.data_card import single_dataset_card
from pdebench.training.module_classes import load_predictor
from pdebench.training.predictor import Predictor


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


def operator_guess(path: str | os.PathLike[str], problem: Any) -> OperatorGuess:
    """:class:`OperatorGuess` of the Lightning checkpoint ``path``, checked to be a ``pairs`` model of
    ``problem`` (same problem name; another grid is allowed: a resolution-free operator may take it, and
    a guess of the wrong shape is refused by the solver).

    Raises
    ------
    ValueError
        One line naming the checkpoint: not a checkpoint of pdebench, or trained on another problem or task.
    """
    model, extras = load_predictor(path)
    card = single_dataset_card(extras.get("data") or {})
    trained_on, task = card.get("problem"), card.get("task")
    if trained_on != problem.name or task != "pairs":
        raise ValueError(f"{path}: trained on {trained_on!r} (task {task!r}); a warm start for {problem.name!r} needs "
                         "an operator trained on its input -> solution pairs")
    return OperatorGuess(model, source=str(path))


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
