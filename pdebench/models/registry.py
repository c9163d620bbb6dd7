"""The model registry: every model the platform trains or evaluates, with the board that scores it.

Boards (:data:`MODEL_BOARDS`; a model's ``board`` is the ``kind:`` of the suites that score it,
:data:`pdebench.evaluation.boards.BOARDS`):

* ``operator`` — data-driven operators ``forward(x: (B, C_in, *space), **conditioning) -> (B, C_out, *space)``;
* ``physics`` — trained on a PDE residual without solver data (NSM);
* ``instance`` — solves one PDE instance by optimisation (GP-HM);
* ``linear-solver`` — a learned component inside a Krylov iteration (DCDM, the learned incomplete Cholesky).

Every data-driven operator's constructor takes ``in_channels``, ``out_channels`` and ``dim`` (number
of spatial dimensions) so that the data module can set them, plus its own typed hyper-parameters.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Literal

from pdebench.registry import Entry, Registry, RegistryError

BoardName = Literal["operator", "physics", "instance", "linear-solver"]
MODEL_BOARDS: tuple[str, ...] = typing.get_args(BoardName)


@dataclass(frozen=True)
class BoardEntry(Entry):
    """A model, with the board that scores it (one of :data:`MODEL_BOARDS`)."""

    board: BoardName = "operator"

    def __post_init__(self) -> None:
        if self.board not in MODEL_BOARDS:
            raise RegistryError(f"model {self.name!r}: board must be one of {MODEL_BOARDS}, got {self.board!r}")


MODELS: Registry = Registry("model", BoardEntry)


def register_model(name: str, *, board: BoardName = "operator", description: str | None = None):
    """Register a model class under ``name`` with its ``board`` (see the module docstring)."""
    return MODELS.register(name, board=board, description=description)
