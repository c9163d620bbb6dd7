"""The record that flows from solvers to sinks: a batch of trajectories with its metadata."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch


@dataclass
class Trajectories:
    """A batch of ``N`` solved trajectories of one problem, with everything needed to reproduce it.

    Parameters
    ----------
    fields
        Field name -> tensor of shape ``(N, T, *space)`` (scalar field) or ``(N, T, *space, C)``
        (a field with ``C`` components, channels last as in PDEBench files).
    coords
        Coordinate name -> 1-D array: ``"t"`` of length ``T`` (output times, first frame included),
        and the spatial axes in order, ``"x"`` (and ``"y"``, ``"z"``) of the grid's lengths.
    params
        Equation parameters shared by the batch (e.g. ``{"nu": 0.1}``), scalars only.
    sample_ids
        ``(N, 2)`` int64 array of ``(seed, index)``: sample ``index`` drawn from stream ``seed``
        is reproducible on its own.
    provenance
        Solver, scheme, internal step, resolution, package version, wall time, ... (scalars/strings;
        a key ending in ``_per_sample`` holds a list with one entry per trajectory, e.g. the linear
        solver's ``iterations_per_sample``).
    """

    fields: dict[str, torch.Tensor]
    coords: dict[str, np.ndarray]
    params: dict[str, Any] = field(default_factory=dict)
    sample_ids: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), dtype=np.int64))
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.fields:
            raise ValueError("Trajectories needs at least one field")
        sizes = {name: tuple(value.shape[:2]) for name, value in self.fields.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"all fields must share (N, T); got {sizes}")
        n, t = next(iter(sizes.values()))
        self.sample_ids = np.asarray(self.sample_ids, dtype=np.int64).reshape(-1, 2)
        if len(self.sample_ids) != n:
            raise ValueError(f"sample_ids has {len(self.sample_ids)} rows for {n} trajectories")
        if "t" in self.coords and len(self.coords["t"]) != t:
            raise ValueError(f"coords['t'] has {len(self.coords['t'])} entries for T={t} frames")

    @property
    def num_samples(self) -> int:
        """Number of trajectories ``N``."""
        return int(self.sample_ids.shape[0])

    @property
    def num_frames(self) -> int:
        """Number of stored frames ``T`` (the initial condition included)."""
        return int(next(iter(self.fields.values())).shape[1])

    @property
    def spatial_axes(self) -> list[str]:
        """Names of the spatial coordinate axes in order (``["x"]``, ``["x", "y"]``)."""
        return [name for name in ("x", "y", "z") if name in self.coords]

    def select(self, rows: np.ndarray | slice | list[int]) -> "Trajectories":
        """Return the trajectories at ``rows`` (same metadata; provenance lists named ``*_per_sample``,
        one entry a trajectory, are selected with them)."""
        index = rows if isinstance(rows, slice) else torch.as_tensor(np.asarray(rows), dtype=torch.long)
        provenance = {key: np.asarray(value)[rows].tolist() if key.endswith("_per_sample") else value
                      for key, value in self.provenance.items()}
        return Trajectories(
            fields={name: value[index] for name, value in self.fields.items()},
            coords=dict(self.coords),
            params=dict(self.params),
            sample_ids=self.sample_ids[rows],
            provenance=provenance,
        )

    def all_finite(self) -> np.ndarray:
        """``(N,)`` bool: whether every value of every field of each trajectory is finite."""
        ok = torch.ones(self.num_samples, dtype=torch.bool)
        for value in self.fields.values():
            ok &= torch.isfinite(value.reshape(value.shape[0], -1)).all(dim=1)
        return ok.numpy()
