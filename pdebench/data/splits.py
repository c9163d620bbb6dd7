"""The one train/validation/test split of every data module (grid, graph, bundled, mixture).

Samples (trajectories of a grid file, samples of a mesh file, trajectories of a particle file) are
split by a fixed permutation of ``seed``, so the same ``(N, train_fraction, val_fraction, seed)``
gives the same index sets in every module:

* ``n_val = max(1, round(val_fraction N))`` (at most ``N - 1``);
* ``n_train = max(1, round(train_fraction N))``, capped so that the test set keeps at least one
  sample when ``train_fraction + val_fraction < 1`` (and so that validation keeps its ``n_val``
  samples when the fractions sum to 1);
* the test set is the rest (empty when the fractions sum to 1).

``round`` is Python's (half to even); each index set is sorted. :class:`SplitDataModule` is the
base of the file-backed data modules: the argument checks, this split and one loader per split.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from pdebench.io.base import is_zarr_store
from pdebench.registry import check_at_least_one

__all__ = ["SplitDataModule", "check_fractions", "split_indices"]

SPLITS = ("train", "val", "test")


def check_fractions(train_fraction: float, val_fraction: float) -> None:
    """Refuse fractions outside ``0 < train_fraction < 1``, ``0 <= val_fraction < 1``, sum ``<= 1``.

    Raises
    ------
    ValueError
        With both values.
    """
    if not (0 < train_fraction < 1 and 0 <= val_fraction < 1 and train_fraction + val_fraction <= 1):
        raise ValueError(f"need 0 < train_fraction, 0 <= val_fraction, sum <= 1; got {train_fraction}, {val_fraction}")


def split_indices(n: int, train_fraction: float, val_fraction: float, seed: int) -> dict[str, np.ndarray]:
    """Split ``range(n)`` into train, validation and test indices (see the module docstring).

    Parameters
    ----------
    n : int
        Number of samples, >= 3.
    train_fraction, val_fraction : float
        As accepted by :func:`check_fractions`; the rest is the test set.
    seed : int
        Seed of the permutation (``numpy.random.default_rng(seed).permutation(n)``).

    Returns
    -------
    dict[str, numpy.ndarray]
        ``"train"``, ``"val"``, ``"test"``: sorted int64 index arrays of shapes ``(n_train,)``,
        ``(n_val,)``, ``(n - n_train - n_val,)``, a partition of ``range(n)``.
    """
    check_fractions(train_fraction, val_fraction)
    if n < 3:
        raise ValueError(f"a train/val/test split needs at least 3 samples, got {n}")
    order = np.random.default_rng(seed).permutation(n)
    n_val = min(max(1, int(round(val_fraction * n))), n - 1)
    keep_test = 1 if train_fraction + val_fraction < 1 else 0
    n_train = max(1, min(max(1, int(round(train_fraction * n))), n - n_val - keep_test))
    parts = (order[:n_train], order[n_train : n_train + n_val], order[n_train + n_val :])
    return {name: np.sort(part).astype(np.int64) for name, part in zip(SPLITS, parts, strict=True)}


class EpochSeededSampler(Sampler[int]):
    """A random permutation per epoch drawn from ``(seed, epoch)`` alone, so a resumed run visits the
    same samples in the same order as an uninterrupted one (Lightning calls :meth:`set_epoch`)."""

    def __init__(self, length: int, seed: int) -> None:
        self.length, self.seed, self.epoch = length, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.length, generator=generator).tolist())

    def __len__(self) -> int:
        return self.length


class SplitDataModule(L.LightningDataModule):
    """Base of the file-backed data modules: argument checks, split and one loader per split.

    A subclass sets ``num_trajectories`` before :meth:`_split` and ``datasets`` (split -> dataset) in
    ``setup``; ``loader_class`` is the loader (PyG's for graphs), :meth:`_sampler` the training order.
    """

    loader_class: type = DataLoader
    num_trajectories: int

    @staticmethod
    def _check_arguments(path: str, what: str, train_fraction: float, val_fraction: float, **counts: int) -> None:
        """Refuse ``counts`` below 1, bad fractions and a missing ``path`` (a ``what`` file or a Zarr store)."""
        check_at_least_one(**counts)
        check_fractions(train_fraction, val_fraction)
        if not Path(path).is_file() and not is_zarr_store(path):
            raise FileNotFoundError(f"no {what} file at {path}")

    def _split(self, noun: str = "trajectories") -> dict[str, np.ndarray]:
        """Sample indices per split (:func:`split_indices`) of ``num_trajectories`` ``noun``."""
        hp = self.hparams
        if self.num_trajectories < 3:
            raise ValueError(f"{hp.path} has {self.num_trajectories} {noun}; a train/val/test split needs at least 3")
        return split_indices(self.num_trajectories, hp.train_fraction, hp.val_fraction, hp.seed)

    def _sampler(self, dataset: Dataset) -> Sampler[int]:
        """The training order of ``dataset``: :class:`EpochSeededSampler` unless a module needs its own
        (the mixture draws per file)."""
        return EpochSeededSampler(len(dataset), self.hparams.seed)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        """Batches of ``datasets[split]``: in :meth:`_sampler` order when ``shuffle``, else in order."""
        dataset = self.datasets[split]
        return self.loader_class(dataset, batch_size=self.hparams.batch_size, shuffle=False, drop_last=False,
                                 sampler=self._sampler(dataset) if shuffle else None,
                                 num_workers=self.hparams.num_workers)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
