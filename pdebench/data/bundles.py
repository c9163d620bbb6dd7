r"""Temporal-bundle windows for MP-PDE training (Brandstetter, Worrall & Welling 2022).

A *bundle* is ``K = time_window`` consecutive frames of a 1-channel field. A training window starting
at frame ``s`` holds the input bundle (frames ``s … s+K−1``) and the next ``U + 1`` bundles (frames
``s+K … s+(U+2)K−1``), where ``U = max_unroll`` is the most bundles the pushforward trick rolls out
without gradient before the supervised one. Every window also carries the time of its last input
frame, ``t_{s+K−1}``, and the PDE parameters of its trajectory, so that the operator can be
conditioned on both.

Per-sample PDE parameters (``mppde_e2``'s β, ``mppde_e3``'s α, β, γ) are a pure function of a
sample's ``(seed, index)``: files store the ids, and :meth:`~pdebench.problems.base.Problem.sample_parameters`
of the file's problem recovers the values the solver used.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from pdebench.data.datamodules import OfflineDataModule
from pdebench.io.trajectory_file import TrajectoryFile
from pdebench.problems import PROBLEMS

log = logging.getLogger(__name__)


class BundleDataset(Dataset):
    """Windows of temporal bundles from trajectories ``(N, T, nx...)`` (one channel).

    Item ``i`` is ``(x, y, t_last, params)``:

    * ``x``: ``(K, *space)`` the input bundle;
    * ``y``: ``(U + 1, K, *space)`` the next ``U + 1`` bundles;
    * ``t_last``: ``()`` time of the last input frame;
    * ``params``: ``(P,)`` PDE parameters of the trajectory (``P`` may be 0).

    Parameters
    ----------
    frames
        ``(N, T, *space)`` float32 trajectories.
    times
        ``(T,)`` frame times.
    params
        ``(N, P)`` per-trajectory parameters.
    time_window, max_unroll
        ``K`` and ``U`` (module docstring).
    """

    def __init__(self, frames: torch.Tensor, times: np.ndarray, params: torch.Tensor, time_window: int,
                 max_unroll: int) -> None:
        n, t = frames.shape[:2]
        span = (max_unroll + 2) * time_window
        if t < span:
            raise ValueError(f"trajectories have {t} frames; time_window={time_window} with max_unroll={max_unroll} "
                             f"needs at least (max_unroll + 2) * time_window = {span}")
        if len(times) != t:
            raise ValueError(f"{len(times)} frame times for {t} frames")
        if params.shape[0] != n:
            raise ValueError(f"parameters for {params.shape[0]} trajectories, frames for {n}")
        self.frames, self.params = frames, params.to(torch.float32)
        self.times = torch.as_tensor(np.asarray(times), dtype=torch.float32)
        self.k, self.unroll = time_window, max_unroll
        self.starts = t - span + 1
        self.length = n * self.starts

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        n, s = divmod(int(i), self.starts)
        k = self.k
        window = self.frames[n, s : s + (self.unroll + 2) * k]
        x = window[:k]
        y = window[k:].reshape(self.unroll + 1, k, *window.shape[1:])
        return x, y, self.times[s + k - 1], self.params[n]


class BundleDataModule(OfflineDataModule):
    """Temporal-bundle windows of a 1-channel trajectory file for MP-PDE training.

    Parameters
    ----------
    path
        HDF5 trajectory file (e.g. ``pdebench generate mppde_e1 ...``).
    time_window
        Bundle size ``K`` (the paper's 25).
    max_unroll
        ``U``: windows carry ``U + 1`` target bundles so that the pushforward trick can roll out up to
        ``U`` bundles without gradient (the paper's ``unrolling`` = 1 or 2).
    param_names
        Per-sample PDE parameters to condition on, recovered from the sample ids by the file's
        problem (``mppde_e2``: ``["beta"]``; ``mppde_e3``: ``["alpha", "beta", "gamma"]``).
    fields, train_fraction, val_fraction, max_trajectories, spatial_stride, batch_size, num_workers, seed
        As :class:`~pdebench.data.datamodules.OfflineDataModule` (one field with one channel).

    Notes
    -----
    ``in_channels = out_channels = history = K``: the operator maps a bundle to a bundle.
    """

    def __init__(
        self,
        path: str,
        time_window: int = 25,
        max_unroll: int = 2,
        param_names: Sequence[str] | None = None,
        fields: list[str] | None = None,
        train_fraction: float = 0.8,
        val_fraction: float = 0.1,
        max_trajectories: int | None = None,
        spatial_stride: int = 1,
        batch_size: int = 16,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        if time_window < 1 or max_unroll < 0:
            raise ValueError(f"need time_window >= 1 and max_unroll >= 0, got {time_window}, {max_unroll}")
        super().__init__(path, task="next_step", fields=fields, history=time_window, unroll=(max_unroll + 1) * time_window,
                         train_fraction=train_fraction, val_fraction=val_fraction, max_trajectories=max_trajectories,
                         spatial_stride=spatial_stride, batch_size=batch_size, num_workers=num_workers, seed=seed)
        # The CLI may record only this class's arguments; the parent's methods read its own.
        for key, value in dict(task="next_step", history=time_window, unroll=(max_unroll + 1) * time_window, target_frame=-1,
                               max_lead=None, temporal_stride=1, input_fields=None, output_fields=None).items():
            self.hparams.setdefault(key, value)
        if len(self.input_fields) != 1 or self.channels[self.input_fields[0]] != 1:
            raise ValueError(f"MP-PDE bundles need one scalar field; {path} gives "
                             f"{ {f: self.channels[f] for f in self.input_fields} } — choose one with fields: [name]")
        if len(self._times) != self.num_frames:
            raise ValueError(f"{path} has {len(self._times)} frame times for {self.num_frames} frames; bundles need the t coordinate")
        self.time_window, self.max_unroll = int(time_window), int(max_unroll)
        self.param_names = list(param_names or [])
        self.out_channels = self.in_channels  # a bundle of K frames in, K frames out
        self._params = self._sample_parameters()

    def _sample_parameters(self) -> torch.Tensor:
        """``(num_trajectories, P)`` per-sample parameters, in ``param_names`` order."""
        if not self.param_names:
            return torch.zeros(self.num_trajectories, 0)

        name = self._file_card.get("problem")
        if name not in PROBLEMS:
            raise ValueError(f"{self.hparams.path}: problem {name!r} is not registered; cannot recover per-sample "
                             f"parameters {self.param_names}")
        known = {f for f in PROBLEMS.build(name).params()}
        problem = PROBLEMS.build(name, **{k: v for k, v in self._file_card["params"].items() if k in known})
        with TrajectoryFile(self.hparams.path) as file:
            ids = file.read(slice(0, self.num_trajectories), fields=self.input_fields).sample_ids
        values = problem.sample_parameters(ids)
        missing = [p for p in self.param_names if p not in values]
        if missing:
            raise ValueError(f"{name} has no per-sample parameter {', '.join(map(repr, missing))}; "
                             f"it has {', '.join(values) or 'none'}")
        return torch.as_tensor(np.stack([np.asarray(values[p], dtype=np.float64) for p in self.param_names], axis=1),
                               dtype=torch.float32)

    def data_card(self) -> dict:
        card = super().data_card()
        card.update(task="bundles", time_window=self.time_window, max_unroll=self.max_unroll,
                    param_names=list(self.param_names))
        return card

    def _pairs(self, split: str) -> Dataset:
        rows = self.splits[split]
        frames = self.trajectories(split)[:, :, 0]  # (n, T, *space)
        return BundleDataset(frames, self._times, self._params[rows], self.time_window, self.max_unroll)

    def split_parameters(self, split: str) -> torch.Tensor:
        """``(n, P)`` parameters of the trajectories of ``split``."""
        return self._params[self.splits[split]]

    def normalization_stats(self) -> dict[str, torch.Tensor]:
        """One mean and std over every training frame and point, repeated for the ``K`` channels: the same
        affine map for input and output bundles keeps the bundling ``u^k + ℓΔt d`` exact in either units."""
        frames = self.trajectories("train")
        mean, std = frames.mean(), frames.std().clamp_min(1e-6)
        k = self.time_window
        return {"x_mean": mean.repeat(k), "x_std": std.repeat(k), "y_mean": mean.repeat(k), "y_std": std.repeat(k)}
