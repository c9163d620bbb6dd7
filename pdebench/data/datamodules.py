"""Offline LightningDataModule over trajectory files (our HDF5 files and Zarr exports, PDEBench's files).

Tasks
-----
``next_step``
    Windows of ``history`` frames (stacked into channels) → the next ``unroll`` frames.
``initial_to_final``
    Frame 0 → frame ``target_frame`` (the FNO Burgers setting ``u0 → u(T)``).
``pairs``
    ``input_fields`` → ``output_fields`` at the same (single) frame (steady problems, e.g. Darcy
    ``nu`` → ``tensor``).
``all2all``
    Every pair of frames ``i <= j`` of a trajectory (optionally ``j - i <= max_lead``) → input frame
    ``i``, target frame ``j`` and the lead time ``(t_j − t_i) / (t_{T−1} − t_0)`` (Poseidon's all2all
    training, Herde et al. 2024): samples are ``(x, y, lead_time)`` triples and the operator is
    conditioned on the lead time (``model(x, t=lead_time)``).

Trajectories are split into train/validation/test **by trajectory** (a fixed permutation from
``seed``), never by window. Tensors are channels-first inside: ``(N, T, C, *space)``.
"""

from __future__ import annotations

import itertools
import logging
import math
from typing import Literal

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, Sampler

from pdebench.io.base import generation_seconds
from pdebench.io.trajectory_file import TrajectoryFile, describe_nonfinite, find_nonfinite
from pdebench.data.splits import SplitDataModule

log = logging.getLogger(__name__)

Task = Literal["next_step", "initial_to_final", "pairs", "all2all"]


def to_channels_first(field: np.ndarray | torch.Tensor, spatial_dims: int) -> torch.Tensor:
    """``(N, T, *space)`` or ``(N, T, *space, C)`` (channels last, PDEBench) -> ``(N, T, C, *space)``."""
    field = torch.as_tensor(np.asarray(field), dtype=torch.float32)
    if field.ndim == spatial_dims + 2:
        return field.unsqueeze(2)
    return torch.movedim(field, -1, 2)


class WindowDataset(Dataset):
    """``(x, y)`` pairs from trajectories ``(N, T, C, *space)``.

    ``x``: ``(history * C, *space)`` frames ``t-h+1 … t`` stacked into channels (oldest first);
    ``y``: ``(unroll, C, *space)`` frames ``t+1 … t+unroll``.
    """

    def __init__(self, data: torch.Tensor, history: int, unroll: int) -> None:
        n, t = data.shape[:2]
        if t < history + unroll:
            raise ValueError(f"trajectories have {t} frames; history={history} + unroll={unroll} needs at least {history + unroll}")
        self.data, self.history, self.unroll = data, history, unroll
        self.starts = t - history - unroll + 1
        self.length = n * self.starts

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        n, s = divmod(int(i), self.starts)
        frames = self.data[n, s : s + self.history + self.unroll]
        x = frames[: self.history].reshape(-1, *frames.shape[2:])
        return x, frames[self.history :]


class PairDataset(Dataset):
    """``(x, y)`` with ``x = inputs[n]`` ``(C_in, *space)`` and ``y = outputs[n]`` ``(1, C_out, *space)``."""

    def __init__(self, inputs: torch.Tensor, outputs: torch.Tensor) -> None:
        self.inputs, self.outputs = inputs, outputs

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.inputs[i], self.outputs[i].unsqueeze(0)


class All2AllDataset(Dataset):
    """``(x, y, lead_time)`` triples of every frame pair ``i <= j`` of trajectories ``(N, T, C, *space)``.

    Poseidon's all2all training set (Herde et al. 2024, from the semigroup property of the solution
    operator): for trajectory ``n`` and frames ``0 <= i <= j <= T − 1`` with ``j − i <= max_lead``,

    * ``x = data[n, i]``: ``(C, *space)``;
    * ``y = data[n, j]``: ``(1, C, *space)`` (one target frame, as the other tasks' ``y``);
    * ``lead_time = (t_j − t_i) / (t_{T−1} − t_0)``: 0-d float32, the lead time as a fraction of the
      trajectory horizon (so ``0 <= lead_time <= 1``).

    That is ``T(T+1)/2`` samples per trajectory without ``max_lead``, and
    ``(L+1) T − L(L+1)/2`` with ``max_lead = L < T``. Samples are ordered trajectory-major, then by
    ``i``, then by ``j``.

    Parameters
    ----------
    data : torch.Tensor
        Trajectories ``(N, T, C, *space)``, ``T >= 2``.
    times : array-like, optional
        Frame times ``(T,)``, strictly increasing; ``None``: equally spaced frames.
    max_lead : int, optional
        Largest ``j − i`` in frames (``None``: all pairs).
    """

    def __init__(self, data: torch.Tensor, times: np.ndarray | torch.Tensor | None = None, max_lead: int | None = None) -> None:
        n, t = data.shape[:2]
        if t < 2:
            raise ValueError(f"all2all needs trajectories with at least 2 frames, got {t}")
        if max_lead is not None and max_lead < 0:
            raise ValueError(f"max_lead must be >= 0 frames (or None for all pairs), got {max_lead}")
        times = torch.arange(t, dtype=torch.float64) if times is None else torch.as_tensor(np.asarray(times, dtype=np.float64))
        if times.shape != (t,):
            raise ValueError(f"times must have one entry per frame ({t}), got shape {tuple(times.shape)}")
        if not bool((times[1:] > times[:-1]).all()):
            raise ValueError(f"frame times must be strictly increasing, got {times.tolist()[:10]}")
        lead = t - 1 if max_lead is None else min(max_lead, t - 1)
        self.pairs = torch.tensor([(i, j) for i in range(t) for j in range(i, min(i + lead, t - 1) + 1)], dtype=torch.long)
        self.lead_times = ((times[self.pairs[:, 1]] - times[self.pairs[:, 0]]) / (times[-1] - times[0])).float()
        self.data, self.max_lead = data, max_lead
        self.length = n * len(self.pairs)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n, p = divmod(int(k), len(self.pairs))
        i, j = self.pairs[p].tolist()
        return self.data[n, i], self.data[n, j].unsqueeze(0), self.lead_times[p]


def trajectory_pairs(frames: torch.Tensor, task: str, history: int = 1, unroll: int = 1, target_frame: int = -1,
                     times: np.ndarray | torch.Tensor | None = None, max_lead: int | None = None) -> Dataset:
    """The dataset of trajectories ``(n, T, C, *space)`` for ``task``: ``next_step`` windows or
    ``initial_to_final`` pairs (frame 0 → ``target_frame``), both ``(x, y)``; or ``all2all``
    ``(x, y, lead_time)`` triples (:class:`All2AllDataset`, frame ``times`` ``(T,)`` and ``max_lead``)."""
    if task == "next_step":
        return WindowDataset(frames, history, unroll)
    if task == "initial_to_final":
        return PairDataset(frames[:, 0], frames[:, target_frame])
    if task == "all2all":
        return All2AllDataset(frames, times, max_lead)
    raise ValueError(f"task must be 'next_step', 'initial_to_final' or 'all2all' for trajectories, got {task!r}")


class SkippingBatchSampler(BatchSampler):
    """A :class:`~torch.utils.data.BatchSampler` whose next pass starts ``skip`` batches in (the index
    lists of the skipped batches are drawn and dropped; their samples are never loaded)."""

    def __init__(self, sampler: Sampler[int], batch_size: int, drop_last: bool) -> None:
        super().__init__(sampler, batch_size, drop_last)
        self.skip = 0

    def __iter__(self):
        # a generator: ``skip`` is taken at the first batch (a worker loader calls ``iter`` twice before that)
        skip, self.skip = self.skip, 0
        yield from itertools.islice(super().__iter__(), skip, None)


class ResumableDataLoader(DataLoader):
    """A training loader whose position in the epoch is saved in Lightning checkpoints.

    Lightning stores :meth:`state_dict` of a stateful train loader in every checkpoint and calls
    :meth:`load_state_dict` when a run resumes mid-epoch; the resumed epoch then skips the batches the
    stopped run had trained (by its :class:`SkippingBatchSampler`, so with the sampler's epoch order —
    :class:`EpochSeededSampler`, or Lightning's distributed wrapper of it — the same batches follow in
    the same order as in an uninterrupted run). Batches are counted as the loader hands them out, after
    any worker prefetch, so a checkpoint taken after a batch's step counts exactly the trained batches.

    Takes :class:`~torch.utils.data.DataLoader`'s arguments; ``batch_sampler`` should be a
    :class:`SkippingBatchSampler`.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not isinstance(self.batch_sampler, SkippingBatchSampler):
            raise TypeError(f"ResumableDataLoader needs a SkippingBatchSampler, got {type(self.batch_sampler).__name__}")
        self.batches_done = 0
        self._resume: dict | None = None

    def _epoch(self) -> int | None:
        return getattr(self.batch_sampler.sampler, "epoch", None)

    def __iter__(self):
        # a generator: the epoch is read at the first batch, after Lightning's ``set_epoch``
        self.batches_done = 0
        resume, self._resume = self._resume, None
        if resume is not None and resume["epoch"] == self._epoch():
            self.batch_sampler.skip = self.batches_done = resume["batches_done"]
        for batch in super().__iter__():
            self.batches_done += 1
            yield batch

    def state_dict(self) -> dict[str, int | None]:
        """``epoch``, ``batches_done`` (handed out in that epoch), ``batches_per_epoch`` and the sampler's ``seed``."""
        return {"epoch": self._epoch(), "batches_done": self.batches_done, "batches_per_epoch": len(self),
                "seed": getattr(self.batch_sampler.sampler, "seed", None)}

    def load_state_dict(self, state: dict[str, int | None]) -> None:
        """Start the next pass of epoch ``state["epoch"]`` after its first ``batches_done`` batches.

        A checkpoint whose loader had another number of batches per epoch or another seed (its position
        means other samples here) is not followed: a warning says the epoch starts from its first batch.
        """
        mine = self.state_dict()
        for key in ("batches_per_epoch", "seed"):
            if state.get(key) != mine[key]:
                log.warning("cannot resume mid-epoch exactly: the checkpoint's train loader had %s %s, this one has %s "
                            "(resume with the same data, batch_size and seed); the epoch starts from its first batch",
                            key, state.get(key), mine[key])
                return
        self._resume = dict(state)


def pair_statistics(dataset: Dataset, history: int, eps: float = 1e-6) -> dict[str, torch.Tensor]:
    """Per-channel normalisation statistics of training pairs.

    Windows of whole trajectories (:class:`WindowDataset`) and all2all pairs (:class:`All2AllDataset`)
    use every frame for inputs and outputs alike (the same statistics for every history slot, and
    for every lead time); input/output pairs (:class:`PairDataset`,
    e.g. ``u(0) -> u(T)``) get their own: a final state can have a far smaller spread than the
    initial one.

    Returns
    -------
    dict
        ``x_mean``, ``x_std`` ``(C_in,)`` and ``y_mean``, ``y_std`` ``(C_out,)``; stds at least ``eps``.
    """
    if isinstance(dataset, (WindowDataset, All2AllDataset)):
        frames = dataset.data  # (N, T, C, *space): the same statistics for every history slot
        dims = [0, 1, *range(3, frames.ndim)]
        mean, std = frames.mean(dims), frames.std(dims)
        x_mean, x_std = mean.repeat(history), std.repeat(history)
        y_mean, y_std = mean, std
    else:
        x, y = dataset.inputs, dataset.outputs
        x_mean, x_std = x.mean([0, *range(2, x.ndim)]), x.std([0, *range(2, x.ndim)])
        y_mean, y_std = y.mean([0, *range(2, y.ndim)]), y.std([0, *range(2, y.ndim)])
    return {"x_mean": x_mean, "x_std": x_std.clamp_min(eps), "y_mean": y_mean, "y_std": y_std.clamp_min(eps)}


class OfflineDataModule(SplitDataModule):
    """Trajectories from an HDF5 file as training windows or pairs.

    Parameters
    ----------
    path
        HDF5 file written by ``pdebench generate``, a Zarr store of ``pdebench export --format zarr``, or one
        of PDEBench's published files.
    task
        ``"next_step"``, ``"initial_to_final"``, ``"pairs"`` or ``"all2all"`` (module docstring).
    fields
        Fields used as channels for ``next_step`` / ``initial_to_final`` (default: all of the file's).
    input_fields, output_fields
        For ``pairs``.
    history, unroll
        Frames stacked as input; frames predicted per window (autoregressive training).
    target_frame
        Output frame of ``initial_to_final`` (``-1``: the last).
    max_lead
        For ``all2all``: largest lead ``j − i`` in frames (after ``temporal_stride``); ``None``: all
        pairs ``i <= j``.
    train_fraction, val_fraction
        Split of the trajectories; the rest is the test set.
    max_trajectories
        Use only the first trajectories of the file (before splitting).
    spatial_stride, temporal_stride
        Sub-sampling of the grid and of the frames.
    batch_size, num_workers, seed
        Loader settings; ``seed`` fixes the split and the per-epoch shuffling.
    """

    def __init__(
        self,
        path: str,
        task: Task = "next_step",
        fields: list[str] | None = None,
        input_fields: list[str] | None = None,
        output_fields: list[str] | None = None,
        history: int = 1,
        unroll: int = 1,
        target_frame: int = -1,
        max_lead: int | None = None,
        train_fraction: float = 0.8,
        val_fraction: float = 0.1,
        max_trajectories: int | None = None,
        spatial_stride: int = 1,
        temporal_stride: int = 1,
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if task not in ("next_step", "initial_to_final", "pairs", "all2all"):
            raise ValueError(f"task must be 'next_step', 'initial_to_final', 'pairs' or 'all2all', got {task!r}")
        if max_lead is not None and (task != "all2all" or max_lead < 0):
            raise ValueError(f"max_lead={max_lead} needs task 'all2all' and max_lead >= 0 (frames); got task {task!r}")
        self._check_arguments(path, "trajectory", train_fraction, val_fraction, history=history, unroll=unroll,
                              spatial_stride=spatial_stride, temporal_stride=temporal_stride, batch_size=batch_size)
        with TrajectoryFile(path) as file:
            shapes, coords = file.fields, file.coords
            self._file_card = {"problem": file.provenance.get("problem"), "params": dict(file.params),
                               "seed": file.provenance.get("seed"), "data_cost_s": generation_seconds(file.provenance)}
            self._times = np.asarray(coords.get("t", []), dtype=float)
            self.num_trajectories = len(file) if max_trajectories is None else min(len(file), max_trajectories)
        self.spatial_dims = max(1, len([a for a in ("x", "y", "z") if a in coords])) if coords else None
        if task == "pairs":
            if not input_fields or not output_fields:
                raise ValueError("task 'pairs' needs input_fields and output_fields")
            self.input_fields, self.output_fields = list(input_fields), list(output_fields)
        else:
            self.input_fields = self.output_fields = list(fields) if fields else list(shapes)
        missing = sorted(set(self.input_fields + self.output_fields) - set(shapes))
        if missing:
            raise ValueError(f"{path} has no field {', '.join(map(repr, missing))}; fields found: {', '.join(shapes) or 'none'}")
        any_shape = shapes[self.input_fields[0]]
        if self.spatial_dims is None:
            self.spatial_dims = len(any_shape) - 2
        self.num_frames = math.ceil(any_shape[1] / temporal_stride)
        self.resolution = tuple(math.ceil(n / spatial_stride) for n in any_shape[2 : 2 + self.spatial_dims])
        self.channels = {name: self._channel_count(shapes[name]) for name in set(self.input_fields + self.output_fields)}
        self.in_channels = sum(self.channels[f] for f in self.input_fields) * (history if task == "next_step" else 1)
        self.out_channels = sum(self.channels[f] for f in self.output_fields)
        if task == "next_step" and self.num_frames < history + unroll:
            raise ValueError(f"{path} has {self.num_frames} frames (after temporal_stride={temporal_stride}); "
                             f"history={history} + unroll={unroll} needs at least {history + unroll}")
        if task == "all2all" and self.num_frames < 2:
            raise ValueError(f"{path} has {self.num_frames} frames (after temporal_stride={temporal_stride}); "
                             f"all2all needs at least 2")
        self.splits: dict[str, np.ndarray] = self._split()
        self.data: dict[str, torch.Tensor] = {}

    @property
    def history(self) -> int:
        """Frames stacked into the input (1 unless ``task="next_step"``)."""
        return self.hparams.history if self.hparams.task == "next_step" else 1

    def data_card(self) -> dict:
        """What a model trained on this module has seen (stored in its checkpoints; the leaderboard
        refuses a checkpoint whose card does not match the task): problem, parameters, resolution,
        task, frame times, training trajectories and seed."""
        hp = self.hparams
        times = self._times[:: hp.temporal_stride] if hp.task != "pairs" else np.array([])
        card = {**self._file_card, "source": f"file:{hp.path}", "resolution": list(self.resolution), "task": hp.task,
                "history": self.history, "train_trajectories": int(len(self.splits["train"])),
                "train_samples_used": len(self.datasets["train"]) if "train" in getattr(self, "datasets", {}) else None}
        if len(times) > 1:
            card["dt_frame"] = float(times[1] - times[0])
            card["target_time"] = float(times[hp.target_frame] - times[0])
        if hp.task == "all2all":
            # lead times fed to the model are fractions of this horizon
            card["max_lead"] = hp.max_lead
            frame_times = self.frame_times()
            card["lead_time_horizon"] = float(frame_times[-1] - frame_times[0]) if frame_times is not None else None
        return card

    def frame_times(self) -> np.ndarray | None:
        """Times ``(T,)`` of the frames after ``temporal_stride``, or ``None`` where the file has no
        ``t`` coordinate with one time per frame: all2all then takes the frames as equally spaced."""
        times = self._times[:: self.hparams.temporal_stride]
        if len(times) != self.num_frames:
            if len(self._times):
                log.info("t coordinate has %d entries for %d frames; all2all lead times assume equally spaced frames",
                         len(times), self.num_frames)
            return None
        return times

    def _channel_count(self, shape: tuple[int, ...]) -> int:
        return 1 if len(shape) == self.spatial_dims + 2 else int(shape[-1])

    def _read(self, rows: np.ndarray, names: list[str]) -> torch.Tensor:
        """``(n, T, C, *space)`` float32 of ``names`` concatenated along channels, sub-sampled."""
        hp = self.hparams
        with TrajectoryFile(hp.path) as file:
            traj = file.read(rows, fields=sorted(set(names)))
        space = (slice(None, None, hp.spatial_stride),) * self.spatial_dims
        parts = [to_channels_first(traj.fields[name], self.spatial_dims)[(slice(None), slice(None, None, hp.temporal_stride), slice(None), *space)]
                 for name in names]
        data = torch.cat(parts, dim=2).contiguous()
        bad = find_nonfinite(data, rows=rows, frames=np.arange(data.shape[1]) * hp.temporal_stride)
        if bad:
            raise ValueError(f"{hp.path}: non-finite values in {describe_nonfinite(bad)}")
        return data

    def trajectories(self, split: str) -> torch.Tensor:
        """All frames of a split, ``(n, T, C, *space)`` (inputs' fields), loaded once."""
        if split not in self.data:
            self.data[split] = self._read(self.splits[split], self.input_fields)
        return self.data[split]

    def _pairs(self, split: str) -> Dataset:
        hp = self.hparams
        if hp.task != "pairs":
            times = self.frame_times() if hp.task == "all2all" else None
            return trajectory_pairs(self.trajectories(split), hp.task, hp.history, hp.unroll, hp.target_frame, times, hp.max_lead)
        rows = self.splits[split]
        return PairDataset(self._read(rows, self.input_fields)[:, 0], self._read(rows, self.output_fields)[:, 0])

    def setup(self, stage: str | None = None) -> None:
        self.datasets = {split: self._pairs(split) for split in ("train", "val", "test") if len(self.splits[split])}

    def normalization_stats(self) -> dict[str, torch.Tensor]:
        """Per-channel mean and std of inputs and outputs over the training split (:func:`pair_statistics`)."""
        dataset = self.datasets["train"] if hasattr(self, "datasets") else self._pairs("train")
        return pair_statistics(dataset, self.hparams.history)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        if not shuffle:
            return super()._loader(split, shuffle)
        # training: epoch-seeded order, position saved in checkpoints (exact mid-epoch resume)
        dataset = self.datasets[split]
        batches = SkippingBatchSampler(self._sampler(dataset), self.hparams.batch_size, drop_last=False)
        return ResumableDataLoader(dataset, batch_sampler=batches, num_workers=self.hparams.num_workers)
