"""Does DPOT pre-training on a mixture help a held-out problem? Fine-tuning vs training from scratch.

Run from the repository root::

    .venv/bin/python benchmarks/bench_finetune.py                # ~6-9 min on 1 thread (budget 1)
    .venv/bin/python benchmarks/bench_finetune.py --budget 0.3   # smoke run, ~2-3 min

What is compared
----------------
1. *Pre-training* (denoising auto-regressive, Hao et al. 2024): one DPOT trained with
   :class:`~pdebench.training.finetune.MaskedOperatorModule` on a
   :class:`~pdebench.data.mixture.MixtureDataModule` of three 32² datasets, each padded to two channels:

   * ``ns2d`` vorticity, ν = 1e-3 (one channel);
   * ``ns2d`` vorticity, ν = 1e-4 (one channel);
   * ``ns2d`` velocity ``(u, v) = ∇^⊥ψ``, ``−Δψ = ω``, of ν = 1e-5 trajectories (two channels,
     computed spectrally from the solver's vorticity).

2. *Held-out problem*: ``ns2d_kolmogorov`` (Kolmogorov flow on (0, 2π)², Re 1000, drag 0.1; 32²):
   32 training trajectories, the same two-channel padding, the test split never seen.

   * **fine-tune**: :class:`~pdebench.training.finetune.FineTuneModule` from the pre-trained
     checkpoint (head lr ``--lr``, body lr ``--lr-body``);
   * **scratch**: the same architecture from a random initialisation, lr ``--lr``;

   both for the same number of optimiser steps, batch size, input noise and seed. The score is the
   test split's one-step nRMSE (= per-sample relative L2, physical units) and the rollout nRMSE
   (geometric mean over the autoregressive steps of each test trajectory); ``ratio`` is
   scratch / fine-tune (> 1: pre-training helped). Pre-training cost is reported, not charged to
   the fine-tuning budget (it is paid once for many downstream problems, as in the paper).

All numbers come from one run of this script on this (shared, noisy) machine: they are what one
seed gives at a tiny scale, not DPOT's published figures. The last line is ``BENCH_JSON {...}``.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import Report, fmt, machine_info  # noqa: E402

MODEL_ARGS = {"patch_size": 4, "embed_dim": 64, "depth": 4, "num_blocks": 4, "modes": None, "mlp_ratio": 2.0,
              "sparsity": 0.01}
HISTORY = 4
MAX_CHANNELS = 2


def velocity_from_vorticity(w, length: float = 1.0):
    """``ω (N, T, X, Y)`` -> ``(u, v) (N, T, X, Y, 2)`` with ``u = ∂ψ/∂y``, ``v = −∂ψ/∂x``, ``−Δψ = ω``
    (periodic box of side ``length``, mean-free ψ)."""
    import torch

    n = w.shape[-1]
    k = torch.fft.fftfreq(n, d=length / n) * 2 * math.pi
    kx, ky = torch.meshgrid(k, k, indexing="ij")
    k2 = kx**2 + ky**2
    k2[0, 0] = 1.0
    psi = torch.fft.fft2(w.double()) / k2
    psi[..., 0, 0] = 0
    u = torch.fft.ifft2(1j * ky * psi).real
    v = torch.fft.ifft2(-1j * kx * psi).real
    return torch.stack([u, v], dim=-1).float()


def make_data(folder: Path, args, report: Report) -> dict[str, Path]:
    """Generate the four 32² datasets (fixed seeds) into ``folder``."""
    import numpy as np
    import torch

    from pdebench.data.generate import generate_dataset
    from pdebench.io.trajectory_file import TrajectoryFile, TrajectoryWriter
    from pdebench.core.trajectories import Trajectories
    from pdebench.problems import PROBLEMS

    res, frames = args.resolution, args.frames
    specs = {
        "ns2d_nu1e-3": ("ns2d", dict(nu=1e-3, t_final=0.5 * frames), args.pretrain_trajectories, 11),
        "ns2d_nu1e-4": ("ns2d", dict(nu=1e-4, t_final=0.5 * frames), args.pretrain_trajectories, 12),
        "ns2d_nu1e-5_vorticity": ("ns2d", dict(nu=1e-5, t_final=0.5 * frames), args.pretrain_trajectories // 2, 13),
        "kolmogorov": ("ns2d_kolmogorov", dict(t_final=0.25 * frames), args.finetune_trajectories + args.test_trajectories + 4, 14),
    }
    paths = {}
    for name, (problem, settings, count, seed) in specs.items():
        paths[name] = folder / f"{name}.h5"
        start = time.perf_counter()
        generate_dataset(PROBLEMS.build(problem, resolution=res, n_out=frames, **settings), paths[name],
                         num_samples=count, seed=seed, overwrite=True)
        report.say(f"  {name}: {count} trajectories of {frames + 1} frames at {res}² in {time.perf_counter() - start:.1f} s")
    # the two-channel dataset: velocity of the ν = 1e-5 trajectories
    with TrajectoryFile(paths.pop("ns2d_nu1e-5_vorticity")) as file:
        traj = file.read()
    velocity = velocity_from_vorticity(torch.as_tensor(traj.fields["vorticity"]))
    paths["ns2d_nu1e-5_velocity"] = folder / "ns2d_nu1e-5_velocity.h5"
    derived = Trajectories(fields={"velocity": velocity}, coords=dict(traj.coords), params=dict(traj.params),
                           sample_ids=np.asarray(traj.sample_ids), provenance={"problem": "ns2d_velocity", "derived_from": "vorticity"})
    with TrajectoryWriter(paths["ns2d_nu1e-5_velocity"], overwrite=True) as writer:
        writer.append(derived)
    return paths


def fit(module, data, steps: int, seed: int):
    """Train ``module`` for ``steps`` optimiser steps (no validation, no logger); wall seconds."""
    import lightning as L

    L.seed_everything(seed, workers=True, verbose=False)
    trainer = L.Trainer(max_steps=steps, max_epochs=-1, limit_val_batches=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", devices=1,
                        deterministic=True, num_sanity_val_steps=0)
    start = time.perf_counter()
    trainer.fit(module, datamodule=data)
    return trainer, time.perf_counter() - start


def evaluate(module, data) -> dict[str, float]:
    import lightning as L

    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        accelerator="cpu", devices=1, default_root_dir=tempfile.mkdtemp(prefix="bench_finetune_"))
    (metrics,) = trainer.test(module, datamodule=data, verbose=False)
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget", type=float, default=1.0, help="scales every step count (1: ~6-9 min on 1 thread)")
    parser.add_argument("--pretrain-steps", type=int, default=2000)
    parser.add_argument("--finetune-steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3, help="scratch lr and fine-tuning head lr")
    parser.add_argument("--lr-body", type=float, default=5e-4, help="fine-tuning body lr")
    parser.add_argument("--input-noise", type=float, default=0.01)
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--frames", type=int, default=16, help="frames after the initial one, per trajectory")
    parser.add_argument("--pretrain-trajectories", type=int, default=64, help="per vorticity dataset (velocity: half)")
    parser.add_argument("--finetune-trajectories", type=int, default=32)
    parser.add_argument("--test-trajectories", type=int, default=24)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", type=Path, default=None, help="keep the generated data here (default: a temp folder)")
    parser.add_argument("--save-dir", type=Path, default=None,
                        help="save the two arms as SAVE_DIR/{finetune,scratch}.ckpt (then: pdebench leaderboard --suite "
                             "configs/leaderboard/kolmogorov_finetune.yaml, which reads outputs/finetune_dpot_bench/)")
    args = parser.parse_args()
    if args.budget <= 0:
        raise ValueError(f"--budget must be positive, got {args.budget}")

    import torch

    torch.set_num_threads(args.threads)
    for name in ("lightning", "lightning.pytorch", "lightning.pytorch.utilities.rank_zero", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")

    from pdebench.data.mixture import MixtureDataModule
    from pdebench.training.base import OptimConfig
    from pdebench.training.finetune import FineTuneModule, MaskedOperatorModule

    report = Report()
    info = machine_info(threads=args.threads, budget=args.budget)
    pre_steps = max(1, round(args.pretrain_steps * args.budget))
    ft_steps = max(1, round(args.finetune_steps * args.budget))
    clock = time.perf_counter()
    folder = args.data_dir or Path(tempfile.mkdtemp(prefix="bench_finetune_data_"))
    folder.mkdir(parents=True, exist_ok=True)
    report.say(f"[bold]data[/bold] ({args.resolution}², {args.frames + 1} frames) into {folder}")
    paths = make_data(folder, args, report)
    data_s = time.perf_counter() - clock

    common = dict(batch_size=args.batch_size, seed=args.seed, history=HISTORY, max_channels=MAX_CHANNELS)
    pre_data = MixtureDataModule([str(paths[k]) for k in ("ns2d_nu1e-3", "ns2d_nu1e-4", "ns2d_nu1e-5_velocity")],
                                 **common)
    n_total = args.finetune_trajectories + args.test_trajectories + 4
    split = dict(train_fraction=args.finetune_trajectories / n_total, val_fraction=4 / n_total)
    held_out = lambda: MixtureDataModule([str(paths["kolmogorov"])], **common, **split)  # noqa: E731

    report.say(f"[bold]pre-training[/bold] DPOT {MODEL_ARGS} on {pre_data.names} for {pre_steps} steps")
    torch.manual_seed(args.seed)
    pre = MaskedOperatorModule("dpot", MODEL_ARGS, pre_data.in_channels, pre_data.out_channels, 2, HISTORY,
                               input_noise=args.input_noise, optim=OptimConfig(lr=args.lr))
    trainer, pre_s = fit(pre, pre_data, pre_steps, args.seed)
    checkpoint = folder / "pretrained.ckpt"
    trainer.save_checkpoint(checkpoint)
    pre_scores = evaluate(pre, pre_data)
    per_dataset = ", ".join(f"{n}: {pre_scores['test_' + n + '_nrmse']:.4f}" for n in pre_data.names)
    report.say(f"  {pre_s:.0f} s; mixture test one-step nRMSE {pre_scores['test_nrmse']:.4f} ({per_dataset})")

    arms = {}
    for arm in ("finetune", "scratch"):
        data = held_out()
        torch.manual_seed(args.seed + 1)
        if arm == "finetune":
            module = FineTuneModule(str(checkpoint), lr_head=args.lr, lr_body=args.lr_body, in_channels=data.in_channels,
                                    out_channels=data.out_channels, spatial_dims=2, history=HISTORY,
                                    input_noise=args.input_noise)
        else:
            module = MaskedOperatorModule("dpot", MODEL_ARGS, data.in_channels, data.out_channels, 2, HISTORY,
                                          input_noise=args.input_noise, optim=OptimConfig(lr=args.lr))
        report.say(f"[bold]{arm}[/bold] on kolmogorov ({len(data.sources[0].splits['train'])} training trajectories) "
                   f"for {ft_steps} steps")
        arm_trainer, seconds = fit(module, data, ft_steps, args.seed)
        if args.save_dir is not None:  # with the data card (held-out problem, stats): pdebench leaderboard scores it
            args.save_dir.mkdir(parents=True, exist_ok=True)
            arm_trainer.save_checkpoint(args.save_dir / f"{arm}.ckpt")
        scores = evaluate(module, data)
        arms[arm] = {"train_s": seconds, "nrmse": scores["test_nrmse"], "rmse": scores["test_rmse"],
                     "rollout_nrmse_gmean": scores["test_rollout_nrmse_gmean"],
                     "rollout_nrmse_final": scores["test_rollout_nrmse_final"],
                     "test_trajectories": len(data.sources[0].splits["test"])}
        report.say(f"  {seconds:.0f} s; test one-step nRMSE {scores['test_nrmse']:.4f}, rollout gmean "
                   f"{scores['test_rollout_nrmse_gmean']:.4f}")

    ft, sc = arms["finetune"], arms["scratch"]
    ratio = {k: sc[k] / ft[k] for k in ("nrmse", "rollout_nrmse_gmean", "rollout_nrmse_final")}
    rows = [[arm, f"{a['train_s']:.0f}", fmt(a["nrmse"], 4), fmt(a["rollout_nrmse_gmean"], 4), fmt(a["rollout_nrmse_final"], 4)]
            for arm, a in arms.items()]
    rows.append(["scratch / fine-tune", "", fmt(ratio["nrmse"]), fmt(ratio["rollout_nrmse_gmean"]), fmt(ratio["rollout_nrmse_final"])])
    report.table(f"held-out kolmogorov, {args.finetune_trajectories} training trajectories, {ft_steps} steps each "
                 f"(pre-training: {pre_steps} steps, {pre_s:.0f} s)",
                 ["arm", "train s", "one-step nRMSE", "rollout nRMSE gmean", "rollout nRMSE final"], rows)
    report.record(bench="dpot_finetune", **info, model_args=MODEL_ARGS, history=HISTORY, max_channels=MAX_CHANNELS,
                  resolution=args.resolution, frames=args.frames + 1, batch_size=args.batch_size, lr=args.lr,
                  lr_body=args.lr_body, input_noise=args.input_noise, pretrain_datasets=pre_data.names,
                  pretrain_trajectories=pre_data.data_card()["train_trajectories"], pretrain_steps=pre_steps,
                  pretrain_s=pre_s, pretrain_test_nrmse=pre_scores["test_nrmse"],
                  finetune_trajectories=args.finetune_trajectories, finetune_steps=ft_steps,
                  finetune=ft, scratch=sc, ratio_scratch_over_finetune=ratio, data_s=data_s,
                  total_s=time.perf_counter() - clock, seed=args.seed)
    report.emit_json()


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
