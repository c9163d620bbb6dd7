"""Offline data module: splits by trajectory, windows, normalisation statistics, PDEBench files."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from pdebench.core.particles import ParticleTrajectory
from pdebench.data.bundles import BundleDataModule
from pdebench.data.datamodules import OfflineDataModule
from pdebench.data.splits import EpochSeededSampler
from pdebench.data.graph_datamodule import GraphDataModule
from pdebench.io.mesh_file import MeshDataWriter
from pdebench.data.mixture import MixtureDataModule
from pdebench.io.particle_file import ParticleDataWriter
from pdebench.data.splits import split_indices


@pytest.fixture()
def pdebench_file(tmp_path):
    """A PDEBench-layout 1-D file: tensor (N, T, X), t-coordinate with T+1 entries."""
    path = tmp_path / "1D_Advection_Sols_beta1.0.hdf5"
    n, t, x = 20, 6, 32
    data = np.arange(n)[:, None, None] * 1000 + np.arange(t)[None, :, None] * 10 + np.zeros(x)
    with h5py.File(path, "w") as f:
        f["tensor"] = data.astype(np.float32)
        f["x-coordinate"] = np.linspace(0, 1, x, dtype=np.float32)
        f["t-coordinate"] = np.linspace(0, 2, t + 1, dtype=np.float32)
        f.attrs["beta"] = 1.0
    return path


def test_split_is_by_trajectory_and_windows_stack_history(pdebench_file):
    dm = OfflineDataModule(str(pdebench_file), task="next_step", history=2, unroll=2, train_fraction=0.6, val_fraction=0.2)
    dm.setup()
    train, val, test = (set(dm.splits[s].tolist()) for s in ("train", "val", "test"))
    assert not (train & val or train & test or val & test) and len(train | val | test) == 20
    assert (dm.in_channels, dm.out_channels, dm.spatial_dims, dm.resolution) == (2, 1, 1, (32,))
    x, y = dm.datasets["train"][0]
    n = dm.splits["train"][0]
    # frames t, t+1 stacked oldest first; targets t+2, t+3 (values encode trajectory*1000 + frame*10)
    assert x[:, 0].tolist() == [n * 1000 + 0, n * 1000 + 10]
    assert y[:, 0, 0].tolist() == [n * 1000 + 20, n * 1000 + 30]
    windows_per_trajectory = 6 - 2 - 2 + 1
    assert len(dm.datasets["train"]) == len(train) * windows_per_trajectory
    # every window of a split comes from that split's trajectories
    trajectories = {int(dm.datasets["val"][i][0][0, 0] // 1000) for i in range(len(dm.datasets["val"]))}
    assert trajectories == val


def test_normalisation_statistics_come_from_the_training_split_only(pdebench_file):
    dm = OfflineDataModule(str(pdebench_file), task="initial_to_final", train_fraction=0.5, val_fraction=0.25)
    dm.setup()
    stats = dm.normalization_stats()
    rows = dm.splits["train"]
    expected_x = torch.tensor(rows * 1000.0).mean()
    assert torch.allclose(stats["x_mean"], expected_x.reshape(1).float())
    assert torch.allclose(stats["y_mean"], (expected_x + 50).reshape(1).float())


def test_strides_subsample_space_and_time(pdebench_file):
    dm = OfflineDataModule(str(pdebench_file), task="next_step", spatial_stride=4, temporal_stride=2)
    dm.setup()
    x, y = dm.datasets["train"][0]
    assert x.shape == (1, 8) and dm.num_frames == 3
    assert float(y[0, 0, 0] - x[0, 0]) == 20.0


def test_bad_input_is_refused_early(pdebench_file, tmp_path):
    with pytest.raises(ValueError, match="has no field 'density'; fields found: tensor"):
        OfflineDataModule(str(pdebench_file), fields=["density"])
    with pytest.raises(ValueError, match="history=5 \\+ unroll=2 needs at least 7"):
        OfflineDataModule(str(pdebench_file), history=5, unroll=2)
    with pytest.raises(FileNotFoundError, match="no trajectory file"):
        OfflineDataModule(str(tmp_path / "missing.h5"))
    with pytest.raises(ValueError, match="history must be >= 1"):
        OfflineDataModule(str(pdebench_file), history=0)


def test_epoch_seeded_sampler_depends_on_seed_and_epoch_only():
    a, b = EpochSeededSampler(10, seed=3), EpochSeededSampler(10, seed=3)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first and sorted(list(a)) == list(range(10))
    b.set_epoch(1)
    assert list(a) == list(b)


def test_all2all_gives_every_ordered_frame_pair_with_its_lead_time(pdebench_file):
    dm = OfflineDataModule(str(pdebench_file), task="all2all", train_fraction=0.6, val_fraction=0.2, batch_size=7)
    dm.setup()
    assert (dm.in_channels, dm.out_channels, dm.history) == (1, 1, 1)
    t = 6
    train = dm.datasets["train"]
    assert len(train) == len(dm.splits["train"]) * t * (t + 1) // 2
    seen = set()
    for k in range(len(train)):
        x, y, lead = train[k]
        assert x.shape == (1, 32) and y.shape == (1, 1, 32) and lead.shape == () and lead.dtype == torch.float32
        n, i = divmod(int(x[0, 0]), 1000)
        j = int(y[0, 0, 0]) % 1000
        assert n in set(dm.splits["train"].tolist()) and int(y[0, 0, 0]) // 1000 == n
        i, j = i // 10, j // 10
        # equally spaced frames: (t_j - t_i) / (t_5 - t_0) = (j - i) / 5
        assert float(lead) == pytest.approx((j - i) / (t - 1))
        seen.add((n, i, j))
    assert seen == {(n, i, j) for n in dm.splits["train"].tolist() for i in range(t) for j in range(i, t)}
    x, y, lead = next(iter(dm.train_dataloader()))
    assert x.shape == (7, 1, 32) and y.shape == (7, 1, 1, 32) and lead.shape == (7,)


def test_all2all_max_lead_and_uneven_frame_times(tmp_path):
    path = tmp_path / "uneven.h5"
    times = np.array([0.0, 0.1, 0.3, 0.6, 1.0, 1.5], dtype=np.float32)
    data = np.arange(4)[:, None, None] * 1000 + np.arange(6)[None, :, None] * 10 + np.zeros(16)
    with h5py.File(path, "w") as f:
        f["tensor"] = data.astype(np.float32)
        f["x-coordinate"] = np.linspace(0, 1, 16, dtype=np.float32)
        f["t-coordinate"] = times
    dm = OfflineDataModule(str(path), task="all2all", max_lead=2, train_fraction=0.5, val_fraction=0.25)
    dm.setup()
    train = dm.datasets["train"]
    # leads 0, 1, 2 frames: 6 + 5 + 4 = (L + 1) T - L (L + 1) / 2 pairs per trajectory
    assert len(train) == len(dm.splits["train"]) * (3 * 6 - 3)
    for k in range(len(train)):
        x, y, lead = train[k]
        i, j = int(x[0, 0]) % 1000 // 10, int(y[0, 0, 0]) % 1000 // 10
        assert 0 <= j - i <= 2
        assert float(lead) == pytest.approx((times[j] - times[i]) / 1.5, rel=1e-6)
    assert dm.data_card()["lead_time_horizon"] == pytest.approx(1.5)
    # the same normalisation statistics as next-step windows: every frame, inputs and outputs alike
    stats = dm.normalization_stats()
    assert torch.allclose(stats["x_mean"], stats["y_mean"]) and torch.allclose(stats["x_std"], stats["y_std"])


def test_all2all_settings_are_checked(pdebench_file):
    with pytest.raises(ValueError, match="max_lead=2 needs task 'all2all'"):
        OfflineDataModule(str(pdebench_file), task="next_step", max_lead=2)
    with pytest.raises(ValueError, match="max_lead=-1 needs task 'all2all' and max_lead >= 0"):
        OfflineDataModule(str(pdebench_file), task="all2all", max_lead=-1)
    with pytest.raises(ValueError, match="all2all needs at least 2"):
        OfflineDataModule(str(pdebench_file), task="all2all", temporal_stride=6)


# --------------------------------------------------------------------------------------------------
# One split function for every data module
# --------------------------------------------------------------------------------------------------


def _mesh_file(path, n: int):
    nodes = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    cells = np.array([[0, 1, 2], [0, 2, 3]])
    rng = np.random.default_rng(0)
    with MeshDataWriter(path, nodes, cells, {"dirichlet": np.array([0, 1])}, "P1") as writer:
        writer.append({"a": rng.uniform(size=(n, 4)), "u": rng.uniform(size=(n, 4))},
                      np.stack([np.zeros(n, dtype=np.int64), np.arange(n)], axis=1))
    return path


def _particle_file(path, n: int):
    rng = np.random.default_rng(0)
    with ParticleDataWriter(path, lower=[0.0, 0.0], upper=[1.0, 1.0], radius=0.3) as writer:
        writer.append([ParticleTrajectory(sample_id=(0, k), time=np.arange(3) * 1e-3 + 1e-3,
                                          positions=rng.uniform(size=(3, 8, 2)), velocities=rng.normal(size=(3, 8, 2)),
                                          density=np.full((3, 8), 1000.0), pressure=np.zeros((3, 8)),
                                          particle_type=np.array([0] * 6 + [1] * 2), mass=np.ones(8), params={})
                       for k in range(n)])
    return path


@pytest.mark.parametrize(("train_fraction", "val_fraction", "seed"),
                         [(0.8, 0.1, 0), (0.6, 0.2, 3), (0.9, 0.1, 1), (0.5, 0.5, 2), (0.05, 0.9, 4), (0.3, 0.0, 5)])
def test_every_data_module_splits_alike_and_the_split_is_a_partition(pdebench_file, tmp_path, train_fraction,
                                                                       val_fraction, seed):
    n = 20  # trajectories of pdebench_file
    fractions = dict(train_fraction=train_fraction, val_fraction=val_fraction, seed=seed)
    modules = {
        "offline": OfflineDataModule(str(pdebench_file), **fractions),
        "bundles": BundleDataModule(str(pdebench_file), time_window=1, max_unroll=1, **fractions),
        "mixture": MixtureDataModule([str(pdebench_file)], **fractions).sources[0],
        "mesh": GraphDataModule(str(_mesh_file(tmp_path / "mesh.h5", n)), **fractions),
        "particles": GraphDataModule(str(_particle_file(tmp_path / "particles.h5", n)), **fractions),
    }
    expected = split_indices(n, train_fraction, val_fraction, seed)
    assert np.array_equal(np.sort(np.concatenate(list(expected.values()))), np.arange(n))  # a partition
    assert len(expected["train"]) >= 1 and len(expected["val"]) >= 1
    assert len(expected["test"]) >= (1 if train_fraction + val_fraction < 1 else 0)
    for name, module in modules.items():
        assert module.splits.keys() == expected.keys(), name
        for split in expected:
            assert np.array_equal(module.splits[split], expected[split]), (name, split)


def test_split_sizes_follow_the_fractions():
    sizes = {k: len(v) for k, v in split_indices(20, 0.8, 0.1, 0).items()}
    assert sizes == {"train": 16, "val": 2, "test": 2}
    # Fractions summing to 1: no test set, and validation keeps its share (round(0.9 * 4) = 4 is capped).
    assert {k: len(v) for k, v in split_indices(4, 0.9, 0.1, 0).items()} == {"train": 3, "val": 1, "test": 0}
    assert {k: len(v) for k, v in split_indices(10, 0.9, 0.1, 0).items()} == {"train": 9, "val": 1, "test": 0}
    with pytest.raises(ValueError, match="at least 3"):
        split_indices(2, 0.5, 0.2, 0)
    with pytest.raises(ValueError, match="sum <= 1"):
        split_indices(10, 0.8, 0.3, 0)
