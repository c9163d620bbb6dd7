r"""Learned components that accelerate a steady solver's linear solves, keeping its tolerance.

A steady solver with CG solves (``fv-elliptic``: :class:`~pdebench.solvers.fv.elliptic.FVEllipticSolver`)
takes two optional callables and imports neither (the solvers layer sits below the models):

* ``initial_guess``: coefficients ``(B, *grid)`` -> solution guesses ``(B, *grid)``. :class:`OperatorGuess`
  is a trained grid operator (an FNO, an LSM, … trained on the problem's ``pairs`` task) predicting the
  solution from the coefficient field; CG starts from it and stops at the same
  :math:`\|b - A x\| \le \mathrm{tol}\,\|b\|` as from zero, so the data keep their accuracy and only the
  iteration count changes;
* ``preconditioner``: ``A -> Preconditioner`` (a learned incomplete Cholesky factor, for instance).

:func:`solver_acceleration` turns checkpoint paths (``pdebench generate ... --accelerate CKPT``) into those
solver arguments, checking that an operator was trained on the problem it is asked to accelerate.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from pdebench.solvers import SOLVERS
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
    """The solver arguments ``{"initial_guess": ...}`` that the checkpoints ``paths`` give ``problem``'s
    solver (at most one of each kind).

    Raises
    ------
    FileNotFoundError
        A path that is not a file.
    ValueError
        A solver that takes no acceleration, two checkpoints of one kind, or a checkpoint that cannot
        accelerate ``problem`` (one line naming it).
    """
    if paths and "initial_guess" not in SOLVERS.get(problem.solver).arguments():
        raise ValueError(f"--accelerate: the {problem.solver!r} solver of {problem.name!r} takes no initial_guess; "
                         "acceleration is for the CG solves of fv-elliptic problems (e.g. darcy3d)")
    kwargs: dict[str, Any] = {}
    for path in paths:
        if not Path(path).is_file():
            raise FileNotFoundError(f"--accelerate: no checkpoint at {path}")
        if "initial_guess" in kwargs:
            raise ValueError(f"--accelerate: {path} is a second warm-start operator; give one")
        kwargs["initial_guess"] = operator_guess(path, problem)
    return kwargs
