"""Solver registry and the errors every solver raises."""

from __future__ import annotations

from collections.abc import Sequence

from pdebench.registry import RecordEntry, Registry

SOLVERS: Registry = Registry("solver", RecordEntry)


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

