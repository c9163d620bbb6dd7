"""Scene geometry of the particle problems (:mod:`.particles`): fluid blocks and fixed wall layers.

Particles sit at the centres of square (cubic) cells of side ``dx``, so a block ``[x0, x0 + n dx)``
holds exactly ``n`` particles per axis, each of volume ``dx**d`` and mass ``rho dx**d``. A wall is a
block of such particles ``layers`` deep behind the fluid boundary; with layers at least as thick
as the kernel support the fluid near the wall sees a full kernel (Adami et al. 2012).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

__all__ = ["lattice", "wall_layers_needed"]


def lattice(counts: Sequence[int], dx: float, origin: Sequence[float], dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Cell-centred particle positions of a block of ``counts`` cells of side ``dx``.

    Parameters
    ----------
    counts
        ``(d,)`` number of particles per axis (each >= 0).
    dx
        Particle spacing (m), > 0.
    origin
        ``(d,)`` lower corner of the block (m); the first particle is at ``origin + dx / 2``.

    Returns
    -------
    torch.Tensor
        ``(prod(counts), d)`` positions, the last axis varying fastest.
    """
    if len(counts) != len(origin):
        raise ValueError(f"counts {list(counts)} and origin {list(origin)} need the same length")
    if not (math.isfinite(dx) and dx > 0):
        raise ValueError(f"dx must be a positive number, got {dx!r}")
    if any(int(c) < 0 for c in counts):
        raise ValueError(f"counts must be >= 0, got {list(counts)}")
    axes = [(torch.arange(int(c), dtype=dtype) + 0.5) * dx + float(o) for c, o in zip(counts, origin)]
    grids = torch.meshgrid(*axes, indexing="ij")
    return torch.stack([g.reshape(-1) for g in grids], dim=-1)


def wall_layers_needed(support_radius: float, dx: float) -> int:
    """Wall layers for a full kernel at the wall: ``ceil(support_radius / dx)``.

    Parameters
    ----------
    support_radius
        Kernel interaction radius (m), e.g. ``2 h`` for the Wendland C2 kernel.
    dx
        Particle spacing (m).
    """
    return max(1, math.ceil(support_radius / dx - 1e-9))
