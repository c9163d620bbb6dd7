"""The one interface of a trained model: what the leaderboard (and anyone else) calls.

Every training module of :mod:`pdebench.training` implements :class:`Predictor`; a caller needs no
knowledge of how the model was trained (one step, autoregressive, temporal bundles, a channel-padded
mixture, graphs) and never probes attributes to find out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

#: Per-sample PDE parameters by name, each ``(N,)`` (e.g. ``Problem.sample_parameters``).
SampleParams = Mapping[str, Any]


@runtime_checkable
class Predictor(Protocol):
    """A trained model, in physical units in and out."""

    def predict(self, x: Any, **conditioning: Any) -> Any:
        """One prediction.

        Parameters
        ----------
        x
            Grid models: the physical input window ``(B, history*C_in, *space)``. Graph models: a
            (batched) PyG graph whose node features ``x`` are ``(nodes, C_in)``.
        **conditioning
            What the operator is conditioned on, e.g. ``t``: lead time, a float or ``(B,)``.

        Returns
        -------
        torch.Tensor
            ``(B, C_out, *space)`` (graphs: ``(nodes, C_out)``), physical.
        """
        ...

    def rollout(self, frames: Any, times: np.ndarray | None = None, params: SampleParams | None = None) -> torch.Tensor:
        """Autoregressive prediction from the first frames of ``frames``.

        Parameters
        ----------
        frames
            Grid models: physical trajectories ``(N, T, C, *space)``, of which only the first
            ``history`` frames are read. Particle models: one recorded trajectory (its first state and
            the walls' recorded paths are read).
        times
            ``(T,)`` frame times; models not conditioned on time ignore them.
        params
            Per-sample PDE parameters by name, each ``(N,)``; a model reads the ones it was trained
            on (a ``ValueError`` names any that are missing) and ignores the rest.

        Returns
        -------
        torch.Tensor
            ``(N, T − history, C, *space)``: predictions of frames ``history … T − 1`` (particles:
            fluid and wall positions ``(S, particles, d)``).
        """
        ...
