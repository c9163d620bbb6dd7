"""MP-PDE training through the Lightning module: bundle windows, conditioning, pushforward, rollout."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
from torch import nn

from pdebench.data.bundles import BundleDataModule, BundleDataset
from pdebench.data.generate import generate_dataset
from pdebench.problems import PROBLEMS
from pdebench.training.base import OptimConfig
from pdebench.training.bundled import BundledOperatorModule

K = 5


@pytest.fixture(scope="module")
def e1_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("bundles") / "e1.h5"
    problem = PROBLEMS.build("mppde_e1", nx=16, n_out=40, t_final=0.64)
    generate_dataset(problem, path, num_samples=10, seed=5, batch_size=10)
    return path


def small_module(data: BundleDataModule, **kwargs) -> BundledOperatorModule:
    return BundledOperatorModule(model_args=dict(time_window=K, hidden=32, layers=2, length=16.0),
                                 in_channels=data.in_channels, out_channels=data.out_channels, history=data.history,
                                 optim=OptimConfig(lr=3e-3, scheduler="none"), **kwargs)


def test_bundle_windows_hold_the_right_frames_times_and_parameters():
    frames = torch.arange(2 * 20 * 3, dtype=torch.float32).reshape(2, 20, 3)
    times = np.linspace(0.0, 1.9, 20)
    params = torch.tensor([[0.1], [0.2]])
    data = BundleDataset(frames, times, params, time_window=4, max_unroll=2)
    assert len(data) == 2 * (20 - 16 + 1)
    x, y, t_last, p = data[len(data) - 1]  # trajectory 1, start 4
    assert torch.equal(x, frames[1, 4:8])
    assert torch.equal(y, frames[1, 8:20].reshape(3, 4, 3))
    assert t_last == pytest.approx(times[7])
    assert torch.equal(p, params[1])
    with pytest.raises(ValueError, match="needs at least .* = 24"):
        BundleDataset(frames, times, params, time_window=6, max_unroll=2)


def test_data_module_links_and_card(e1_file):
    data = BundleDataModule(str(e1_file), time_window=K, max_unroll=1, batch_size=4)
    assert (data.in_channels, data.out_channels, data.history) == (K, K, K)
    card = data.data_card()
    assert card["task"] == "bundles" and card["time_window"] == K and card["param_names"] == []
    with pytest.raises(ValueError, match="no per-sample parameter 'nu'"):
        BundleDataModule(str(e1_file), time_window=K, param_names=["nu"])


class RecordingBundle(nn.Module):
    """A stand-in operator: returns its input shifted by one and records the conditioning it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.calls: list[tuple[torch.Tensor, float, bool]] = []

    def forward(self, u, t=None, dt=None, params=None):
        self.calls.append((t.clone(), float(dt), torch.is_grad_enabled()))
        return self.scale * (u + 1.0)


def test_pushforward_rolls_without_gradient_and_advances_the_conditioning_time(e1_file):
    data = BundleDataModule(str(e1_file), time_window=K, max_unroll=2, batch_size=4)
    module = small_module(data, max_unroll=2)
    module.frame_dt.fill_(0.016)
    module.model = RecordingBundle()
    x = torch.zeros(2, K, 16)
    y = torch.zeros(2, 3, K, 16)
    t_last = torch.tensor([0.1, 0.2])
    loss, pred = module._bundle_loss((x, y, t_last, torch.zeros(2, 0)), unroll=2)
    # identity normaliser: two no-grad bundles then the graded one, each adding one
    assert torch.allclose(pred, torch.full_like(pred, 3.0))
    assert [grad for _, _, grad in module.model.calls] == [False, False, True]
    for s, (t, dt, _) in enumerate(module.model.calls):
        assert torch.allclose(t, t_last + s * K * 0.016)
        assert dt == pytest.approx(0.016)
    loss.backward()
    # d loss / d scale = mean(2 (s (x + 1) - 0) (x + 1)) with x = 2 (the detached input): 2 * 3 * 3 = 18
    assert module.model.scale.grad.item() == pytest.approx(18.0)


def test_unroll_counts_are_seeded_and_cover_the_range(e1_file):
    data = BundleDataModule(str(e1_file), time_window=K, max_unroll=2)
    module = small_module(data, max_unroll=2)
    counts = [module.unroll_count(s) for s in range(200)]
    assert counts == [module.unroll_count(s) for s in range(200)]
    assert set(counts) == {0, 1, 2}


def test_training_lowers_the_bundle_loss_and_rollout_covers_the_trajectory(e1_file):
    torch.manual_seed(0)
    data = BundleDataModule(str(e1_file), time_window=K, max_unroll=1, batch_size=8)
    module = small_module(data, max_unroll=1)
    trainer = L.Trainer(max_steps=150, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, deterministic=True)
    data.setup()
    batch = next(iter(data.train_dataloader()))
    module.frame_dt.fill_(float(np.diff(data.frame_times())[0]))
    module.x_norm.fit(*[data.normalization_stats()[k] for k in ("x_mean", "x_std")])
    module.y_norm.fit(*[data.normalization_stats()[k] for k in ("y_mean", "y_std")])
    before = module._bundle_loss(batch, 0)[0].item()
    trainer.fit(module, data)
    after = module._bundle_loss(batch, 0)[0].item()
    assert after < before / 10, (before, after)
    frames = data.trajectories("test")
    pred = module.rollout(frames, times=data.frame_times())
    assert pred.shape == (frames.shape[0], frames.shape[1] - K, 1, 16)
    # the first predicted bundle is one conditioned step from the first K frames
    first = module.step_bundle(frames[:, :K, 0], torch.full((frames.shape[0],), float(data.frame_times()[K - 1])),
                               torch.zeros(frames.shape[0], 0))
    assert torch.allclose(pred[:, :K, 0], first)
