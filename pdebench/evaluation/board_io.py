"""Shared helpers of the instance and linear-solver boards (:mod:`.instance_board`,
:mod:`.linear_solver_board`): the checked tasks of a suite mapping, a JSON-safe copy of a results
document and the atomic write of the three results files."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pdebench.evaluation.leaderboard import _json_default, write_atomic
from pdebench.evaluation.suite import build_tasks
from pdebench.atomic import atomic_write


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, ±inf; e.g. a diverged fit's error history or a
    checkpoint's training record) replaced by ``None`` and numpy scalars / tuples made plain, so that
    ``json.dumps(..., allow_nan=False)`` never fails on a result."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def write_results(out: Path, document: dict[str, Any], csv_text: str, markdown: str) -> Path:
    """Write ``results.json`` (``document`` made :func:`json_safe`), ``results.csv`` and ``results.md``
    under ``out``, each atomically; return the path of ``results.json``."""
    path = out / "results.json"
    write_atomic(path, json.dumps(json_safe(document), indent=1, allow_nan=False, default=_json_default))
    write_atomic(out / "results.csv", csv_text)
    write_atomic(out / "results.md", markdown)
    return path


def suite_tasks(raw: Any, suite_cls: type, task_cls: type, kind: str, origin: str) -> list:
    """Check a board suite's YAML mapping and build its tasks.

    Refuses, naming the bad value: a non-mapping, keys that are not fields of ``suite_cls``, a
    ``kind`` other than ``kind``, an empty or non-string ``name``, a non-string ``output``, no
    tasks, repeated task names (:func:`~pdebench.evaluation.suite.build_tasks`).
    """
    if not isinstance(raw, dict):
        raise ValueError(f"{origin}: expected a mapping with name, kind, tasks; got {type(raw).__name__}")
    fields = [f.name for f in dataclasses.fields(suite_cls)]
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ValueError(f"{origin}: unknown key(s) {', '.join(unknown)}; expected {', '.join(fields)}")
    if raw.get("kind", kind) != kind:
        raise ValueError(f"{origin}: kind must be {kind!r} for this suite, got {raw.get('kind')!r}")
    if not isinstance(raw.get("name"), str) or not raw.get("name"):
        raise ValueError(f"{origin}: name must be a non-empty string, got {raw.get('name')!r}")
    if not isinstance(raw.get("output", ""), str):
        raise ValueError(f"{origin}: output must be a folder path, got {raw.get('output')!r}")
    return build_tasks(raw, task_cls, origin)


def save_log_plot(fig, ax, path: Path) -> Path:
    """Finish a board plot (log grid, small legend) and write it to ``path`` as PNG, atomically."""

    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    with atomic_write(path) as handle:
        fig.savefig(handle, format="png", dpi=110)
    return path


def board_table(document: dict[str, Any], board: str, columns: Sequence[str]):
    """An empty rich table titled with the board, suite, hardware, threads and git revision of a
    ``results.json`` document, with ``columns`` (folded when narrow)."""
    from rich.table import Table

    env = document["environment"]
    table = Table(title=f"{board} board {document['suite']} ({env['hardware']}, {env['threads']} thread(s), "
                        f"git {env['git_revision']})", title_justify="left")
    for column in columns:
        table.add_column(column, overflow="fold")
    return table
