"""Mixture pre-training and fine-tuning: channel masks, mixed batches, pre-trained weights, two LR groups,
and the configs under configs/pretrain end to end."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from pdebench.data.generate import generate_dataset
from pdebench.io.trajectory_file import TrajectoryWriter
from pdebench.data.mixture import MixtureDataModule, MixtureSampler
from pdebench.core.trajectories import Trajectories
from pdebench.problems import PROBLEMS
from pdebench.training.base import OptimConfig
from pdebench.training.finetune import FineTuneModule, MaskedOperatorModule, masked_loss, read_pretrained
from pdebench.training.losses import make_loss
from tests.training.helpers import train_cli

ROOT = Path(__file__).resolve().parents[2]
DPOT_ARGS = {"patch_size": 4, "embed_dim": 16, "depth": 1, "num_blocks": 4, "modes": 3}


def write_two_channel_file(path: Path, n: int = 6, frames: int = 9, size: int = 32) -> None:
    """A smooth synthetic two-component field ``(N, T, X, Y, 2)`` (travelling waves)."""
    x = torch.linspace(0, 1, size + 1)[:-1]
    t = torch.linspace(0, 1, frames)
    phase = torch.rand(n, 1, 1, 1, generator=torch.Generator().manual_seed(1))
    grid_x, grid_y = x.view(1, 1, -1, 1), x.view(1, 1, 1, -1)
    tt = t.view(1, -1, 1, 1)
    u = torch.sin(2 * torch.pi * (grid_x - 0.2 * tt) + 6 * phase) * torch.ones_like(grid_y)
    v = torch.cos(2 * torch.pi * (grid_y + 0.1 * tt) + 3 * phase) * torch.ones_like(grid_x)
    traj = Trajectories(fields={"velocity": torch.stack([u, v], dim=-1)},
                        coords={"t": t.numpy(), "x": x.numpy(), "y": x.numpy()},
                        sample_ids=np.column_stack([np.zeros(n, dtype=np.int64), np.arange(n)]),
                        provenance={"problem": "waves"})
    with TrajectoryWriter(path) as writer:
        writer.append(traj)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("mixture")
    settings = {"ns2d_a": ("ns2d", dict(resolution=32, n_out=8, t_final=4.0)),
                "ns2d_b": ("ns2d", dict(resolution=32, n_out=8, t_final=4.0, nu=1e-4)),
                "kolmogorov": ("ns2d_kolmogorov", dict(resolution=32, n_out=8, t_final=2.0))}
    paths = {}
    for name, (problem, kwargs) in settings.items():
        paths[name] = folder / f"{name}.h5"
        generate_dataset(PROBLEMS.build(problem, **kwargs), paths[name], num_samples=10, seed=3)
    paths["waves"] = folder / "waves.h5"
    write_two_channel_file(paths["waves"])
    return paths


def mixture(files, **kwargs) -> MixtureDataModule:
    data = MixtureDataModule([str(files["ns2d_a"]), str(files["waves"])], history=2, batch_size=4, **kwargs)
    data.setup("fit")
    return data


def pretrain_module(data: MixtureDataModule, **kwargs) -> MaskedOperatorModule:
    torch.manual_seed(0)
    module = MaskedOperatorModule("dpot", DPOT_ARGS, data.in_channels, data.out_channels, 2, data.history, **kwargs)
    stats = data.normalization_stats()
    module.x_norm.fit(stats["x_mean"], stats["x_std"])
    module.y_norm.fit(stats["y_mean"], stats["y_std"])
    module.log = lambda *args, **kwargs: None
    return module


# ----------------------------------------------------------------------------- mixture data
def test_mixture_pads_channels_normalises_each_file_and_marks_real_channels(files):
    data = mixture(files)
    assert (data.max_channels, data.channels, data.in_channels, data.out_channels) == (2, [1, 2], 4, 2)
    assert data.resolution == (32, 32) and data.spatial_dims == 2
    seen = set()
    for x, y, mask, source in data.train_dataloader():
        assert x.shape[1:] == (4, 32, 32) and y.shape[1:] == (1, 2, 32, 32) and mask.shape == (x.shape[0], 2)
        for i, s in enumerate(source.tolist()):
            seen.add(s)
            assert mask[i].tolist() == ([True, False] if s == 0 else [True, True])
            if s == 0:  # the one-channel file: its padded channel is zero in every frame
                assert x[i, 1::2].abs().max() == 0 and y[i, :, 1].abs().max() == 0
    assert seen == {0, 1}
    # each file is normalised by its own training statistics
    for s in range(2):
        frames = data.encode(data.trajectories("train", s), s)[:, :, : data.channels[s]]
        assert frames.mean(dim=(0, 1, 3, 4)).abs().max() < 1e-4
        torch.testing.assert_close(frames.std(dim=(0, 1, 3, 4)), torch.ones(data.channels[s]), atol=1e-3, rtol=0)
        torch.testing.assert_close(data.decode(data.encode(data.trajectories("test", s), s), s), data.trajectories("test", s),
                                   atol=1e-5, rtol=1e-5)
    card = data.data_card()
    assert card["source"] == "mixture" and card["names"] == ["ns2d_a", "waves"] and len(card["datasets"]) == 2


def test_mixture_sampler_is_seeded_mixes_datasets_and_follows_weights():
    sampler = MixtureSampler([100, 10], weights=[1, 1], samples_per_epoch=400, seed=5)
    first = list(sampler)
    assert first == list(sampler)  # the same epoch repeats exactly
    sampler.set_epoch(1)
    assert first != list(sampler)
    from_small = sum(i >= 100 for i in first)
    assert 150 < from_small < 250  # equal weights: half of the draws from the 10-sample dataset
    assert set(i for i in first if i >= 100) == set(range(100, 110))  # cycles through all of it
    # batches of 8 mix the datasets
    batches = [first[k : k + 8] for k in range(0, 400, 8)]
    assert sum(any(i < 100 for i in b) and any(i >= 100 for i in b) for b in batches) > len(batches) // 2
    with pytest.raises(ValueError, match="weights"):
        MixtureSampler([3, 3], weights=[1, -1])


def test_mixture_refuses_files_on_different_grids_and_too_few_channels(files, tmp_path):
    coarse = tmp_path / "coarse.h5"
    generate_dataset(PROBLEMS.build("ns2d", resolution=16, n_out=4, t_final=2.0), coarse, num_samples=4, seed=0)
    with pytest.raises(ValueError, match="share their resolution"):
        MixtureDataModule([str(files["ns2d_a"]), str(coarse)], history=2)
    with pytest.raises(ValueError, match="max_channels=1 is below"):
        MixtureDataModule([str(files["ns2d_a"]), str(files["waves"])], history=2, max_channels=1)


def test_mixture_refuses_a_module_that_ignores_masks(files, tmp_path):
    from pdebench.training import OperatorModule

    data = MixtureDataModule([str(files["ns2d_a"])], history=2, batch_size=4)
    module = OperatorModule("dpot", DPOT_ARGS, data.in_channels, data.out_channels, 2, 2)
    trainer = L.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False, default_root_dir=tmp_path)
    with pytest.raises(TypeError, match="MaskedOperatorModule"):
        trainer.fit(module, datamodule=data)


# ------------------------------------------------------------------------------- masked loss
def test_masked_loss_is_the_platform_rel_l2_on_the_real_channels():
    torch.manual_seed(0)
    pred, target = torch.randn(3, 2, 8, 8), torch.randn(3, 2, 8, 8)
    full = torch.ones(3, 2, dtype=torch.bool)
    torch.testing.assert_close(masked_loss(pred, target, full), make_loss("rel_l2", 2)(pred, target))
    first = torch.tensor([[True, False]] * 3)
    torch.testing.assert_close(masked_loss(pred, target, first), make_loss("rel_l2", 2)(pred[:, :1], target[:, :1]))
    torch.testing.assert_close(masked_loss(pred, target, first, "mse"), torch.nn.functional.mse_loss(pred[:, :1], target[:, :1]))
    with pytest.raises(ValueError, match="no channel"):
        masked_loss(pred, target, torch.zeros(3, 2, dtype=torch.bool))


@pytest.mark.parametrize("unroll", [1, 2])
def test_padded_channels_change_neither_loss_nor_gradients(files, unroll):
    data = mixture(files, unroll=unroll)
    module = pretrain_module(data, input_noise=0.05)
    x, y, mask, source = next(iter(data.train_dataloader()))
    mask = mask.clone()
    mask[0] = torch.tensor([True, False])  # sample 0 has one real channel whatever its file

    def loss_and_grads(x, y):
        module.zero_grad()
        loss = module.training_step((x, y, mask, source), 0)
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in module.model.parameters()]

    base_loss, base_grads = loss_and_grads(x, y)
    x2, y2 = x.clone(), y.clone()
    x2[0, 1::2] += 100 * torch.randn_like(x2[0, 1::2])  # padded channel of every input frame
    y2[0, :, 1] += 100 * torch.randn_like(y2[0, :, 1])  # and of every target frame
    loss, grads = loss_and_grads(x2, y2)
    assert torch.equal(loss, base_loss)
    assert all(torch.equal(a, b) for a, b in zip(grads, base_grads))
    # a real channel does count
    x3 = x.clone()
    x3[0, 0::2] += 1.0
    assert not torch.equal(loss_and_grads(x3, y)[0], base_loss)


# ---------------------------------------------------------------------------- fine-tuning
@pytest.fixture(scope="module")
def pretrained(files, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("pretrained")
    data = MixtureDataModule([str(files["ns2d_a"]), str(files["ns2d_b"])], history=2, max_channels=2, batch_size=4)
    torch.manual_seed(0)
    module = MaskedOperatorModule("dpot", DPOT_ARGS, data.in_channels, data.out_channels, 2, data.history, input_noise=0.01)
    trainer = L.Trainer(max_steps=3, limit_val_batches=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=folder)
    trainer.fit(module, datamodule=data)
    trainer.save_checkpoint(folder / "pretrained.ckpt")
    return folder / "pretrained.ckpt"


def finetune(pretrained: Path, **kwargs) -> FineTuneModule:
    args = dict(in_channels=4, out_channels=2, spatial_dims=2, history=2, lr_head=1e-3, lr_body=1e-4)
    return FineTuneModule(str(pretrained), **{**args, **kwargs})


def test_finetune_starts_from_the_pretrained_weights_exactly(pretrained):
    saved, weights = read_pretrained(pretrained)
    module = finetune(pretrained)
    assert module.hparams.model == "dpot" and module.hparams.model_args == DPOT_ARGS == saved["model_args"]
    state = module.model.state_dict()
    assert state.keys() == weights.keys()
    assert all(torch.equal(state[k], weights[k]) for k in weights)
    assert not bool(module.x_norm.fitted)  # normalisers come from the fine-tuning data
    fresh = MaskedOperatorModule("dpot", DPOT_ARGS, 4, 2, 2, 2)
    assert not all(torch.equal(fresh.model.state_dict()[k], weights[k]) for k in weights)


def test_finetune_uses_two_learning_rate_groups_head_and_body(pretrained):
    module = finetune(pretrained, lr_head=1e-2, lr_body=0.0, optim=OptimConfig(weight_decay=0.0, scheduler="none"))
    optimizer = module.configure_optimizers()
    head, body = optimizer.param_groups
    assert (head["name"], head["lr"], body["name"], body["lr"]) == ("head", 1e-2, "body", 0.0)
    names = {id(p): n for n, p in module.model.named_parameters()}
    head_names = {names[id(p)].split(".")[0] for p in head["params"]}
    body_names = {names[id(p)].split(".")[0] for p in body["params"]}
    assert head_names == {"embed", "aggregate", "recover"} and body_names == {"blocks", "norm"}
    assert len(head["params"]) + len(body["params"]) == len(names)
    # one step: the head moves, the body (lr 0) does not
    before = {n: p.detach().clone() for n, p in module.model.named_parameters()}
    module.x_norm.fit(torch.zeros(4), torch.ones(4))
    module.y_norm.fit(torch.zeros(2), torch.ones(2))
    module.log = lambda *args, **kwargs: None
    module.training_step((torch.randn(2, 4, 32, 32), torch.randn(2, 1, 2, 32, 32)), 0).backward()
    optimizer.step()
    for n, p in module.model.named_parameters():
        moved = not torch.equal(p, before[n])
        assert moved == (n.split(".")[0] in head_names), n


def test_finetune_refuses_mismatched_data_models_and_missing_files(pretrained, tmp_path):
    with pytest.raises(ValueError, match="in_channels=4 but the data give 6"):
        finetune(pretrained, in_channels=6, history=3)
    with pytest.raises(ValueError, match="holds a 'dpot' model, not 'fno'"):
        finetune(pretrained, model="fno")
    with pytest.raises(ValueError, match="does not fit"):
        finetune(pretrained, model_args={**DPOT_ARGS, "embed_dim": 32})
    with pytest.raises(FileNotFoundError, match="no pre-trained checkpoint"):
        finetune(tmp_path / "missing.ckpt")


TINY_RUN = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1"]
SMALL_DPOT = ["--model.init_args.model_args", "{patch_size: 4, embed_dim: 16, depth: 1, num_blocks: 4, modes: 4}"]


def test_pretrain_then_finetune_configs_run_end_to_end(files, tmp_path):
    """configs/pretrain/dpot_mixture.yaml on two tiny ns2d files, then dpot_finetune.yaml from its
    checkpoint on a tiny Kolmogorov file; the fine-tuned checkpoint reloads without the pre-trained file."""
    pre = tmp_path / "pre"
    pre.mkdir()
    paths = f"[{files['ns2d_a']}, {files['ns2d_b']}]"
    train_cli(["fit", "--config", str(ROOT / "configs/pretrain/dpot_mixture.yaml"), "--data.init_args.paths", paths,
             *SMALL_DPOT, "--data.init_args.batch_size", "4", *TINY_RUN], pre)
    (pre_ckpt,) = pre.glob("outputs/*/checkpoints/last.ckpt")
    fine = tmp_path / "fine"
    fine.mkdir()
    train_cli(["fit", "--config", str(ROOT / "configs/pretrain/dpot_finetune.yaml"), "--data.init_args.paths",
             f"[{files['kolmogorov']}]", "--model.init_args.pretrained", str(pre_ckpt), "--data.init_args.batch_size", "4",
             *TINY_RUN], fine)
    (fine_ckpt,) = fine.glob("outputs/*/checkpoints/last.ckpt")
    saved = torch.load(fine_ckpt, weights_only=True)
    assert saved["hyper_parameters"]["model"] == "dpot" and saved["hyper_parameters"]["pretrained"] == str(pre_ckpt)
    assert saved["pdebench"]["data"]["names"] == ["kolmogorov"]
    module = FineTuneModule.load_from_checkpoint(fine_ckpt, pretrained=None, weights_only=True)
    assert module.hparams.model_args == saved["hyper_parameters"]["model_args"]
    assert bool(module.x_norm.fitted)
