"""The one train/validation/test split of every data module (grid, graph, bundled, mixture).

Samples (trajectories of a grid file, samples of a mesh file, trajectories of a particle file) are
split by a fixed permutation of ``seed``, so the same ``(N, train_fraction, val_fraction, seed)``
gives the same index sets in every module:

* ``n_val = max(1, round(val_fraction N))`` (at most ``N - 1``);
* ``n_train = max(1, round(train_fraction N))``, capped so that the test set keeps at least one
  sample when ``train_fraction + val_fraction < 1`` (and so that validation keeps its ``n_val``
  samples when the fractions sum to 1);
* the test set is the rest (empty when the fractions sum to 1).

``round`` is Python's (half to even); each index set is sorted.
"""

from __future__ import annotations

import numpy as np

__all__ = ["check_fractions", "split_indices"]

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
