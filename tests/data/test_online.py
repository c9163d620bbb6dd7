"""OnlineDataModule pieces that need no running stream: normalisation statistics and epoch length."""

from __future__ import annotations

import torch

from pdebench.data.online import OnlineDataModule, ReservoirDataset
from pdebench.data.reservoir import Reservoir


def test_initial_to_final_statistics_separate_inputs_from_outputs():
    dm = OnlineDataModule("burgers1d", {"nx": 64, "n_out": 2}, task="initial_to_final", calibration_trajectories=6)
    frames = dm.trajectories("calibration")  # (6, 3, 1, 64)
    stats = dm.normalization_stats()
    assert torch.allclose(stats["x_std"], frames[:, 0].std().reshape(1))
    assert torch.allclose(stats["y_std"], frames[:, -1].std().reshape(1))
    assert torch.allclose(stats["y_mean"], frames[:, -1].mean().reshape(1))
    assert stats["y_std"] < 0.8 * stats["x_std"]  # viscous decay: the final state has a smaller spread


def test_next_step_statistics_pool_every_frame_for_every_history_slot():
    dm = OnlineDataModule("burgers1d", {"nx": 64, "n_out": 4}, task="next_step", history=2, calibration_trajectories=4)
    frames = dm.trajectories("calibration")
    stats = dm.normalization_stats()
    assert torch.allclose(stats["x_std"], frames.std().repeat(2)) and torch.allclose(stats["y_std"], frames.std().reshape(1))


def test_reservoir_epochs_have_a_length():
    assert len(ReservoirDataset(Reservoir(capacity=4), 24)) == 24


def test_the_feeder_never_buffers_a_non_finite_sample():
    """Even a batch with NaN rows (a solver that failed to drop a blow-up) leaves the reservoir clean."""
    import numpy as np

    from pdebench.data.workers import Batch

    dm = OnlineDataModule("burgers1d", {"nx": 16, "n_out": 1}, task="initial_to_final", policy="fifo", capacity=8, watermark=1)
    fields = np.random.default_rng(0).standard_normal((3, 2, 16)).astype(np.float32)
    fields[1, 1, 5] = np.nan

    class OneBatch:
        def batches(self):
            yield Batch(0, {"u": fields}, np.array([[0, 0], [0, 1], [0, 2]]), dropped=0, block=(0, 3))

    dm.reservoir, dm.pool = Reservoir(dm.reservoir_config), OneBatch()
    dm._feed()
    stats = dm.reservoir.stats()
    assert stats["dropped"] == 1 and stats["received"] == 2
    ids = sorted(dm.reservoir.get()[1][:2] for _ in range(2))
    assert ids == [(0, 0), (0, 2)]


def test_the_card_counts_the_solver_seconds_of_every_batch_received():
    """``data_cost_s``: the workers' solve seconds of each batch received, plus the calibration and
    validation solves the module runs itself (timed around the call here)."""
    import time

    import numpy as np

    from pdebench.data.workers import Batch

    dm = OnlineDataModule("burgers1d", {"nx": 16, "n_out": 1}, task="initial_to_final", policy="fifo", capacity=8,
                          watermark=1, calibration_trajectories=2)
    fields = np.random.default_rng(0).standard_normal((2, 2, 16)).astype(np.float32)

    class TwoBatches:
        def batches(self):
            yield Batch(0, {"u": fields}, np.array([[0, 0], [0, 1]]), dropped=0, block=(0, 2), solve_time_s=1.5)
            yield Batch(1, {"u": fields}, np.array([[0, 2], [0, 3]]), dropped=0, block=(2, 4), solve_time_s=2.0,
                        iterations=[10, 13])

    dm.reservoir, dm.pool = Reservoir(dm.reservoir_config), TwoBatches()
    dm._feed()
    dm.pool = None
    assert dm.data_card()["data_cost_s"] == 3.5
    # the cost per sample of each batch, in the order received: (samples, seconds per sample, mean iterations)
    assert [c[1:] for c in dm._accounting["costs"]] == [[2, 0.75, None], [2, 1.0, 11.5]]
    assert 0 <= dm._accounting["costs"][0][0] <= dm._accounting["costs"][1][0]
    start = time.perf_counter()
    dm.trajectories("calibration")
    wall = time.perf_counter() - start
    assert 3.5 < dm.data_card()["data_cost_s"] <= 3.5 + wall


def test_a_steady_problem_streams_input_to_solution_pairs_as_the_offline_module_cuts_them():
    """darcy3d's ``pairs``: x = the coefficient ``(1, *space)``, y = its solution ``(1, 1, *space)``, from
    the batch's own fields; the held-out pairs are the solver's; ``pairs`` is for steady problems only."""
    import numpy as np
    import pytest

    from pdebench.data.datamodules import PairDataset
    from pdebench.data.workers import Batch

    dm = OnlineDataModule("darcy3d", {"resolution": 6}, task="pairs", policy="fifo", capacity=8, watermark=1,
                          calibration_trajectories=2, val_trajectories=2)
    rng = np.random.default_rng(0)
    nu, u = (rng.standard_normal((2, 1, 6, 6, 6)).astype(np.float32) for _ in range(2))

    class OneBatch:
        def batches(self):
            yield Batch(0, {"nu": nu, "tensor": u}, np.array([[0, 4], [0, 5]]), dropped=0, block=(4, 6))

    dm.reservoir, dm.pool = Reservoir(dm.reservoir_config), OneBatch()
    dm._feed()
    got = sorted((dm.reservoir.get() for _ in range(2)), key=lambda item: item[1])
    for row, ((x, y), ident) in enumerate(got):
        assert ident[:2] == (0, 4 + row) and x.shape == (1, 6, 6, 6) and y.shape == (1, 1, 6, 6, 6)
        assert torch.equal(x, torch.from_numpy(nu[row])) and torch.equal(y, torch.from_numpy(u[row]).unsqueeze(0))
    dm.pool = None
    val = dm._pairs("val")
    assert isinstance(val, PairDataset) and len(val) == 2 and dm.data_card()["task"] == "pairs"
    solved = dm.trajectories("val")
    x, y = val[1]
    assert x.min() > 0 and torch.equal(y, solved[1, :1]) and dm.in_channels == 1
    with pytest.raises(ValueError, match="'pairs' task is for steady problems"):
        OnlineDataModule("burgers1d", {"nx": 16, "n_out": 1}, task="pairs")
    with pytest.raises(ValueError, match="'pairs' task is for steady problems"):
        OnlineDataModule("darcy3d", {"resolution": 6}, task="initial_to_final")
