"""Shared output helpers of the instance and linear-solver boards (:mod:`.instance_board`,
:mod:`.linear_solver_board`): a JSON-safe copy of a results document and the atomic write of the
three results files."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from pdebench.evaluation.leaderboard import _json_default, write_atomic


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
