"""The board protocol: a suite file's ``kind:`` looks up the board that runs it, in one place.

A :class:`Board` is what every leaderboard board provides: its suite type (``from_dict(raw, origin)``),
the progress steps of a run, the run itself (``run_suite(suite, output, progress)`` writes
``results.{json,csv,md}`` and returns the ``results.json`` path), the :class:`~.board_io.RowFormat` of
its rows (its CSV columns and table cells: every board's files and printed table are written by the
same functions of :mod:`.board_io`, with one Pareto front, :func:`pdebench.evaluation.pareto.front_rows`)
and, where its entries are checkpoints to check before anything runs, that check.

A suite's ``kind:`` names its board, equal to the ``board`` of the models it scores
(:data:`pdebench.models.MODEL_BOARDS`, a model's ``register_model(name, board=...)``): ``operator`` (the
data-driven operators against the solver ladder, :mod:`.leaderboard`), ``instance`` (GP-HM against
finite differences, :mod:`.instance_board`), ``linear-solver`` (DCDM and the learned IC against the Krylov baselines,
:mod:`.linear_solver_board`) and ``physics`` (NSM and its PINN baseline, trained on the residual,
against the exact solution and finite differences, :mod:`.physics_board`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pdebench.evaluation import board_io, instance_board, leaderboard, linear_solver_board, physics_board
from pdebench.evaluation.board_io import Markup, RowFormat, TextTable
from pdebench.evaluation.suite import Suite
from pdebench.registry import read_yaml


@dataclass(frozen=True)
class Board:
    """One leaderboard board (see the module docstring).

    Attributes
    ----------
    kind
        The board's name: the suite file's ``kind:``, and the ``board`` of the models it scores.
    suite_type
        The suite class; ``suite_type.from_dict(raw, origin)`` checks and builds a suite.
    count_steps
        ``suite -> int``, the progress steps of :attr:`run_suite`.
    run_suite
        ``(suite, output | None, progress) -> Path`` of ``results.json``.
    row_format
        How its rows are tabled (:meth:`table` of a ``results.json`` document, printed by
        :func:`.board_io.render_tables`).
    check_entries
        ``suite -> None``, raising on an entry that must not be run (foreign checkpoints); ``None``: none.
    takes_models
        Whether ``--model NAME=CHECKPOINT`` entries apply to its suites.
    """

    kind: str
    suite_type: type
    count_steps: Callable[[Any], int]
    run_suite: Callable[..., Path]
    row_format: RowFormat
    check_entries: Callable[[Any], None] | None = None
    takes_models: bool = True

    def tables(self, document: dict[str, Any], markup: Markup) -> list[TextTable]:
        """The printed tables of one of its ``results.json`` documents, cells in ``markup``
        (:func:`.board_io.board_tables`: the board's table and, on the operator board's rollout
        tasks, the rollout metrics)."""
        return board_io.board_tables(document, self.row_format, markup)


BOARDS: dict[str, Board] = {
    board.kind: board
    for board in (
        Board("operator", Suite, leaderboard.count_steps, leaderboard.run_suite, leaderboard.ROW_FORMAT,
              leaderboard.check_entries),
        Board("instance", instance_board.InstanceSuite, instance_board.count_steps, instance_board.run_suite,
              instance_board.ROW_FORMAT, takes_models=False),
        Board("linear-solver", linear_solver_board.LinearSolverSuite, linear_solver_board.count_steps,
              linear_solver_board.run_suite, linear_solver_board.ROW_FORMAT),
        Board("physics", physics_board.PhysicsSuite, physics_board.count_steps, physics_board.run_suite,
              physics_board.ROW_FORMAT, takes_models=False),
    )
}


def read_suite(path: str | Path) -> tuple[Board, Any]:
    """``(board, suite)`` of a suite file: its ``kind:`` (``operator`` when absent) looked up in :data:`BOARDS`.

    Raises
    ------
    ValueError
        One line naming the file: an unknown ``kind``, or what the board's suite type refuses.
    """
    raw = read_yaml(path, "suite file")
    kind = raw.get("kind", "operator") if isinstance(raw, dict) else "operator"
    if kind not in BOARDS:
        raise ValueError(f"{path}: kind must be one of {', '.join(BOARDS)}, got {kind!r}")
    if kind == "operator" and isinstance(raw, dict):
        raw = {k: v for k, v in raw.items() if k != "kind"}
    return BOARDS[kind], BOARDS[kind].suite_type.from_dict(raw, str(path))
