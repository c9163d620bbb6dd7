"""Multi-dataset pre-training data (DPOT, Hao et al. 2024): several trajectory files, one stream.

Each file is read by an :class:`~pdebench.data.datamodules.OfflineDataModule` (``next_step``
windows, the same ``history`` for all), normalised with **its own** training statistics, padded to a
common number of channels ``max_channels`` and mixed into batches by a seeded sampler.

Batches are ``(x, y, mask, source)``:

* ``x``: ``(B, history * C_max, *space)``, frames oldest first, each frame's channels ``0 … C_s − 1``
  real and the rest zero;
* ``y``: ``(B, unroll, C_max, *space)``, padded the same way;
* ``mask``: ``(B, C_max)`` bool, ``True`` for the real channels of each sample's dataset;
* ``source``: ``(B,)`` int64, the index of the sample's dataset in ``paths``.

Train them with :class:`pdebench.training.finetune.MaskedOperatorModule` (or its
:class:`~pdebench.training.finetune.FineTuneModule`), whose losses count only the real channels.
Because every dataset is normalised here, :meth:`MixtureDataModule.normalization_stats` is the
identity; :meth:`MixtureDataModule.decode` maps predictions back to a dataset's physical units.
"""

from __future__ import annotations

import contextvars
import logging
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset, Sampler

from pdebench.data.datamodules import OfflineDataModule, WindowDataset
from pdebench.data.splits import SplitDataModule

log = logging.getLogger(__name__)


class MaskedWindows(Dataset):
    """``(x, y, mask, source)`` windows of normalised, channel-padded trajectories of one dataset.

    Parameters
    ----------
    frames
        ``(N, T, C_max, *space)``: normalised trajectories, channels ``≥ channels`` zero.
    history, unroll
        As :class:`~pdebench.data.datamodules.WindowDataset`.
    channels
        Real channels ``C_s`` of this dataset.
    source
        Index of the dataset in the mixture.
    """

    def __init__(self, frames: torch.Tensor, history: int, unroll: int, channels: int, source: int) -> None:
        self.windows = WindowDataset(frames, history, unroll)
        self.mask = torch.arange(frames.shape[2]) < channels
        self.source = torch.tensor(source, dtype=torch.int64)

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        x, y = self.windows[i]
        return x, y, self.mask, self.source


class MixtureSampler(Sampler[int]):
    """Indices into the concatenation of datasets of sizes ``sizes``, mixed across datasets.

    Each epoch draws ``samples_per_epoch`` dataset ids i.i.d. with probabilities ``weights``, then
    for each dataset takes its next indices from a random permutation of that dataset (cycled when a
    dataset is drawn more often than it has samples). Every draw comes from ``(seed, epoch)`` alone,
    so a resumed run sees the same batches (Lightning calls :meth:`set_epoch`).

    Parameters
    ----------
    sizes
        Samples per dataset (all ``>= 1``).
    weights
        Sampling probability of each dataset (normalised here); ``None``: proportional to ``sizes``.
    samples_per_epoch
        Length of an epoch; ``None``: ``sum(sizes)``.
    seed
        Base seed.
    """

    def __init__(self, sizes: list[int], weights: list[float] | None = None, samples_per_epoch: int | None = None,
                 seed: int = 0) -> None:
        if not sizes or min(sizes) < 1:
            raise ValueError(f"every dataset of a mixture needs at least one sample; sizes {sizes}")
        weights = list(map(float, sizes)) if weights is None else [float(w) for w in weights]
        if len(weights) != len(sizes) or min(weights) < 0 or sum(weights) <= 0:
            raise ValueError(f"weights must be {len(sizes)} non-negative numbers with a positive sum, got {weights}")
        self.sizes, self.seed, self.epoch = list(sizes), seed, 0
        self.probabilities = torch.tensor(weights, dtype=torch.float64) / sum(weights)
        self.length = int(sum(sizes) if samples_per_epoch is None else samples_per_epoch)
        if self.length < 1:
            raise ValueError(f"samples_per_epoch must be >= 1, got {samples_per_epoch}")
        self.offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).tolist()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        sources = torch.multinomial(self.probabilities, self.length, replacement=True, generator=generator)
        counts = torch.bincount(sources, minlength=len(self.sizes)).tolist()
        picks = []
        for size, offset, count in zip(self.sizes, self.offsets, counts):
            rounds = -(-count // size) if count else 0
            order = [torch.randperm(size, generator=generator) for _ in range(rounds)]
            picks.append((torch.cat(order)[:count] + offset).tolist() if order else [])
        cursor = [0] * len(self.sizes)
        out = []
        for s in sources.tolist():
            out.append(picks[s][cursor[s]])
            cursor[s] += 1
        return iter(out)

    def __len__(self) -> int:
        return self.length


class MixtureDataModule(SplitDataModule):
    """Several trajectory files as one ``next_step`` training stream with channel masks.

    Parameters
    ----------
    paths
        HDF5 trajectory files (ours or PDEBench's); every file must have the same spatial
        dimensions and, after ``spatial_stride``, the same resolution.
    history, unroll
        Frames stacked as input and predicted per window (the same for every file).
    max_channels
        Channels every dataset is padded to (default: the largest channel count of the files).
    weights
        Sampling probability of each file in a training epoch (default: proportional to its number
        of training windows).
    samples_per_epoch
        Training samples per epoch (default: all training windows of all files).
    train_fraction, val_fraction, max_trajectories, spatial_stride, temporal_stride
        Applied to every file, as in :class:`~pdebench.data.datamodules.OfflineDataModule`.
    batch_size, num_workers, seed
        Loader settings; ``seed`` fixes the splits and the mixing.

    Attributes
    ----------
    sources : list of OfflineDataModule
        One module per file.
    names : list of str
        A short name per file (its stem, made unique).
    channels : list of int
        Real channels ``C_s`` per file.
    """

    def __init__(
        self,
        paths: list[str],
        history: int = 1,
        unroll: int = 1,
        max_channels: int | None = None,
        weights: list[float] | None = None,
        samples_per_epoch: int | None = None,
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
        if not paths:
            raise ValueError("a mixture needs at least one trajectory file in paths")
        if weights is not None and len(weights) != len(paths):
            raise ValueError(f"weights has {len(weights)} entries for {len(paths)} paths")
        # Each file's module is built in an empty context: LightningCLI hands the hyper-parameters of the
        # module it instantiates (this one) to every save_hyperparameters() call through a context
        # variable, which would give the inner modules the mixture's arguments instead of their own.
        self.sources = [
            contextvars.Context().run(
                OfflineDataModule, str(path), task="next_step", history=history, unroll=unroll,
                train_fraction=train_fraction, val_fraction=val_fraction, max_trajectories=max_trajectories,
                spatial_stride=spatial_stride, temporal_stride=temporal_stride, batch_size=batch_size,
                num_workers=num_workers, seed=seed)
            for path in paths
        ]
        dims = {str(p): s.spatial_dims for p, s in zip(paths, self.sources)}
        if len(set(dims.values())) != 1:
            raise ValueError(f"files of a mixture must share their spatial dimensions; got {dims}")
        resolutions = {str(p): tuple(s.resolution) for p, s in zip(paths, self.sources)}
        if len(set(resolutions.values())) != 1:
            raise ValueError(f"files of a mixture must share their resolution (after spatial_stride={spatial_stride}); "
                             f"got {resolutions}: regenerate or subsample them to one grid")
        self.channels = [s.out_channels for s in self.sources]
        self.max_channels = max(self.channels) if max_channels is None else int(max_channels)
        if self.max_channels < max(self.channels):
            raise ValueError(f"max_channels={max_channels} is below the channels of "
                             f"{[str(p) for p, c in zip(paths, self.channels) if c > max_channels]} ({max(self.channels)})")
        self.names = self._unique_names(paths)
        self.spatial_dims = self.sources[0].spatial_dims
        self.resolution = tuple(self.sources[0].resolution)
        self.in_channels = history * self.max_channels
        self.out_channels = self.max_channels
        self._stats: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        self.datasets: dict[str, ConcatDataset] = {}

    @staticmethod
    def _unique_names(paths: list[str]) -> list[str]:
        names: list[str] = []
        for path in paths:
            stem, name, k = Path(path).stem, Path(path).stem, 1
            while name in names:
                k += 1
                name = f"{stem}_{k}"
            names.append(name)
        return names

    @property
    def history(self) -> int:
        """Frames stacked into the input."""
        return self.hparams.history

    # ---------------------------------------------------------------- statistics and padding
    def source_stats(self, source: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel ``(mean, std)`` ``(C_s,)`` of file ``source``'s training frames (computed once)."""
        if self._stats is None:
            self._stats = []
            for module in self.sources:
                stats = module.normalization_stats()
                self._stats.append((stats["y_mean"], stats["y_std"]))
        return self._stats[source]

    def channel_mask(self, source: int) -> torch.Tensor:
        """``(C_max,)`` bool: the real channels of file ``source``."""
        return torch.arange(self.max_channels) < self.channels[source]

    def encode(self, frames: torch.Tensor, source: int) -> torch.Tensor:
        """Physical ``(N, T, C_s, *space)`` -> normalised and zero-padded ``(N, T, C_max, *space)``."""
        mean, std = self.source_stats(source)
        view = (1, 1, -1) + (1,) * (frames.ndim - 3)
        normed = (frames - mean.view(view).to(frames)) / std.view(view).to(frames)
        pad = torch.zeros(*frames.shape[:2], self.max_channels - frames.shape[2], *frames.shape[3:], dtype=frames.dtype,
                          device=frames.device)
        return torch.cat([normed, pad], dim=2)

    def decode(self, frames: torch.Tensor, source: int) -> torch.Tensor:
        """Normalised padded ``(N, T, C_max, *space)`` -> physical ``(N, T, C_s, *space)`` of file ``source``."""
        mean, std = self.source_stats(source)
        view = (1, 1, -1) + (1,) * (frames.ndim - 3)
        return frames[:, :, : self.channels[source]] * std.view(view).to(frames) + mean.view(view).to(frames)

    def trajectories(self, split: str, source: int) -> torch.Tensor:
        """Physical frames of a split of file ``source``: ``(n, T, C_s, *space)``."""
        return self.sources[source].trajectories(split)

    def normalization_stats(self) -> dict[str, torch.Tensor]:
        """The identity (zeros and ones): every file is already normalised by :meth:`encode`."""
        return {"x_mean": torch.zeros(self.in_channels), "x_std": torch.ones(self.in_channels),
                "y_mean": torch.zeros(self.out_channels), "y_std": torch.ones(self.out_channels)}

    # ------------------------------------------------------------------------------ loading
    def setup(self, stage: str | None = None) -> None:
        module = getattr(self.trainer, "lightning_module", None) if self.trainer is not None else None
        if module is not None and not getattr(module, "accepts_channel_masks", False):
            raise TypeError(f"MixtureDataModule yields (x, y, mask, source) batches, which {type(module).__name__} does "
                            f"not take: train with pdebench.training.finetune.MaskedOperatorModule or FineTuneModule "
                            f"(model: class_path: ...)")
        hp = self.hparams
        self.datasets = {}
        for split in ("train", "val", "test"):
            parts = [MaskedWindows(self.encode(self.trajectories(split, s), s), hp.history, hp.unroll, self.channels[s], s)
                     for s, module in enumerate(self.sources) if len(module.splits[split])]
            if parts:
                self.datasets[split] = ConcatDataset(parts)
        sizes = [len(d) for d in self.datasets["train"].datasets]
        log.info("mixture of %s: %s training windows, %d channels (real: %s)", ", ".join(self.names), sizes,
                 self.max_channels, self.channels)

    def data_card(self) -> dict:
        """What a model trained on the mixture has seen: each file's card (with its normalisation
        ``stats``: per-channel ``mean``, ``std``), the padding and the mixing."""
        hp = self.hparams
        cards = []
        for source, module in enumerate(self.sources):
            mean, std = self.source_stats(source)
            # the model sees (frames - mean) / std per file: a physical prediction needs them too
            cards.append({**module.data_card(), "stats": {"mean": [float(v) for v in mean.reshape(-1)],
                                                          "std": [float(v) for v in std.reshape(-1)]}})
        return {"source": "mixture", "task": "next_step", "resolution": list(self.resolution), "history": self.history,
                "max_channels": self.max_channels, "channels": list(self.channels), "names": list(self.names),
                "weights": hp.weights, "train_trajectories": int(sum(c["train_trajectories"] for c in cards)),
                "datasets": cards}

    def _sampler(self, dataset: ConcatDataset) -> MixtureSampler:
        hp = self.hparams
        return MixtureSampler([len(d) for d in dataset.datasets], hp.weights, hp.samples_per_epoch, hp.seed)
