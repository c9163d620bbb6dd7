"""Solver registry and the errors every solver raises."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from pdebench.registry import RecordEntry, Registry

SOLVERS: Registry = Registry("solver", RecordEntry)

#: The arithmetic a solver's ``dtype`` argument names.
DTYPES: dict[str, torch.dtype] = {"float64": torch.float64, "float32": torch.float32}


def check_dtype(dtype: str) -> str:
    """``dtype`` if it names one of :data:`DTYPES`; else ``ValueError`` naming it and the choices."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {list(DTYPES)}, got {dtype!r}")
    return dtype


def solve_ids(sample_ids: np.ndarray | Sequence[Sequence[int]] | None, batch: int, on_blowup: str) -> np.ndarray:
    """The checks every ``solve`` starts with: ``on_blowup`` is ``"raise"`` or ``"drop"``, and the
    ``(batch, 2)`` int64 ``(seed, index)`` rows of ``sample_ids`` (``(-1, b)`` when ``None``)."""
    if on_blowup not in ("raise", "drop"):
        raise ValueError(f"on_blowup must be 'raise' or 'drop', got {on_blowup!r}")
    ids = np.column_stack([np.full(batch, -1), np.arange(batch)]) if sample_ids is None else np.asarray(sample_ids)
    ids = ids.astype(np.int64).reshape(-1, 2)
    if len(ids) != batch:
        raise ValueError(f"sample_ids has {len(ids)} rows for {batch} samples")
    return ids


def uncertified_reason(entry: RecordEntry) -> str | None:
    """Why the solver of registry ``entry`` cannot certify a time tolerance, in one sentence; ``None``
    where it can (it takes ``rtol``: :mod:`pdebench.solvers.certify`). The reason is the class's
    ``no_time_certificate``, or, for a steady record (``steady``, ``mesh``), that there is no time error."""
    if "rtol" in entry.arguments():
        return None
    reason = getattr(entry.cls, "no_time_certificate", None)
    if reason:
        return reason
    if entry.record in ("steady", "mesh"):
        return "steady, no time error"
    return "it has no error estimate in time"


class StabilityError(ValueError):
    """A requested time step above the solver's stability or accuracy limit."""


class BlowUpError(RuntimeError):
    """Non-finite values appeared in some samples.

    Attributes
    ----------
    sample_ids
        ``(seed, index)`` of every sample that blew up.
    time
        The earliest output time at which one was detected.
    """

    def __init__(self, sample_ids: Sequence[tuple[int, int]], time: float, problem: str = "") -> None:
        self.sample_ids = [tuple(int(v) for v in s) for s in sample_ids]
        self.time = float(time)
        shown = ", ".join(f"({s}, {i})" for s, i in self.sample_ids[:10])
        more = f" and {len(self.sample_ids) - 10} more" if len(self.sample_ids) > 10 else ""
        super().__init__(
            f"{problem + ': ' if problem else ''}non-finite values by t={self.time:g} in samples "
            f"(seed, index) {shown}{more}; reduce dt or check the parameters"
        )


