"""LSM against FNO on darcy2d at (about) equal parameter count and equal wall-clock training time.

Run from the repository root::

    .venv/bin/python benchmarks/bench_lsm_darcy.py                       # resolution 43, 400 train, 240 s per model (~9 min)
    .venv/bin/python benchmarks/bench_lsm_darcy.py --quick               # 200 train, 60 s per model (~3 min)
    .venv/bin/python benchmarks/bench_lsm_darcy.py --resolution 85 --train 1000 --budget-s 1800 --data data/darcy2d.h5
    .venv/bin/python benchmarks/bench_lsm_darcy.py --save-dir outputs/lsm_darcy   # then the leaderboard run:
    pdebench leaderboard --suite configs/leaderboard/darcy2d.yaml

The question (issue: "LSM on darcy2d at equal parameter budget and training time: relative L2 <= FNO's";
the LSM paper reports 0.0065 against FNO's 0.0108 on FNO's 85^2 Darcy data, 1000 training samples,
500 epochs on a GPU). This script answers it at a CPU-sized setting and prints what it measured,
whichever way it falls. The last lines, prefixed ``BENCH_JSON``, hold one JSON object per measurement.

What is compared
----------------
*Data*: ``darcy2d`` (a = 12 / 3 thresholded Gaussian random field -> u, f = 1, u = 0 on the boundary)
at ``--resolution`` (default 43, FNO's 85^2 grid sub-sampled by 2 has the same size), solved by
``pdebench.data.generate.generate_dataset`` from seed 0 before any clock starts, or read from
``--data`` when that file exists (its first ``train + 1 + test`` samples; resolution from the file).
``OfflineDataModule(task="pairs", input_fields=["nu"], output_fields=["tensor"])``: exactly ``--train``
training samples, one validation sample (the module needs a split; it is not used) and ``--test``
held-out samples; normalisation statistics from the training split.

*Models*: FNO with ``configs/darcy2d/fno.yaml``'s arguments (n_modes 12, width 32, 4 layers, grid
embedding); LSM (``pdebench.models.lsm.LSM``, 4 levels, patches of 3 pixels, 4 tokens, basis 12)
with the width (and heads: the largest of 8, 5, 4, 2, 1 dividing it) whose parameter count is closest
to the FNO's (``--lsm-width`` / ``--lsm-heads`` override). Both through ``OperatorModule``: rel. L2
loss, AdamW lr 1e-3, weight decay 1e-4, batch 20, initial weights from ``torch.manual_seed(seed)``.

*Budget*: each model trains for ``--budget-s`` seconds of wall time from the ``trainer.fit`` call
(a callback sets ``trainer.should_stop``; ``max_time`` is only a backstop), one after the other
(``--order``), torch on ``--threads`` (1) threads, no validation, logging or checkpointing. The learning
rate follows a cosine over the wall-clock budget, ``lr(t) = 1e-3 (1 + cos(pi t / budget)) / 2``, set
before every step (a step-count cosine cannot be used: a time budget gives no step count), so both
end annealed. The machine is shared: the CPU time each arm got and the load average are reported
next to the wall time, so a run slowed by a neighbour shows.

*Score*: after the fit (off the clock), ``pdebench.core.metrics.nrmse`` (relative L2 per sample,
mean over samples) on the ``--test`` held-out samples, in physical units; the same on the first 100
training samples (fit quality); inference time per sample. The ratio LSM / FNO of the test errors
answers the question (<= 1: LSM at least as accurate).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: _report.py sits next to it
from _report import Report, fmt, machine_info  # noqa: E402

REPORT = Report()
say, status, table, record = REPORT.say, REPORT.status, REPORT.table, REPORT.record

FNO_ARGS = {"n_modes": 12, "hidden_channels": 32, "n_layers": 4}  # configs/darcy2d/fno.yaml
LSM_BASE = {"levels": 4, "patch_size": 3, "num_tokens": 4, "basis": 12}
OPTIM = {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 1e-4, "scheduler": "none"}  # OptimConfig fields


def quiet_lightning() -> None:
    """Silence Lightning's per-fit banners and the warnings this setting triggers on purpose."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning", "pdebench"):
        logging.getLogger(name).setLevel(logging.ERROR)
    for message in (r".*does not have many workers.*", r".*number of training batches.*", r".*log_every_n_steps.*",
                    r".*val_dataloader.*", r".*validation_step.*", r".*max_epochs.*"):
        warnings.filterwarnings("ignore", message=message)
    with contextlib.suppress(ImportError):
        from lightning.fabric.utilities.warnings import PossibleUserWarning

        warnings.filterwarnings("ignore", category=PossibleUserWarning)


def parameter_count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def matched_lsm_args(target: int, in_channels: int, out_channels: int, width: int | None, heads: int | None) -> dict:
    """LSM arguments whose parameter count is closest to ``target`` (log ratio), unless fixed."""
    from pdebench.models.lsm import LSM

    def heads_for(w: int) -> int:
        return heads if heads is not None else next(h for h in (8, 5, 4, 2, 1) if w % h == 0)

    widths = [width] if width is not None else [w for w in range(4, 65) if heads is None or w % heads == 0]
    best = None
    for w in widths:
        args = {"width": w, "heads": heads_for(w), **LSM_BASE}
        count = parameter_count(LSM(in_channels, out_channels, dim=2, **args))
        score = abs(math.log(count / target))
        if best is None or score < best[0]:
            best = (score, args)
    return best[1]


def make_data(args, folder: Path) -> Path:
    """The darcy2d file: ``--data`` if it exists, else generated (seed 0) into ``--data`` or ``folder``."""
    from pdebench.data.generate import generate_dataset
    from pdebench.problems import PROBLEMS

    needed = args.train + 1 + args.test
    if args.data and Path(args.data).is_file():
        say(f"reusing {args.data}")
        return Path(args.data)
    path = Path(args.data) if args.data else folder / f"darcy2d_{args.resolution}.h5"
    path.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with status(f"generating {needed} darcy2d samples at {args.resolution}^2 -> {path}"):
        generate_dataset(PROBLEMS.build("darcy2d", resolution=args.resolution), path, num_samples=needed, seed=0,
                         batch_size=50)
    say(f"generated {needed} samples at {args.resolution}^2 in {time.perf_counter() - start:.1f} s")
    return path


def make_datamodule(path: Path, args):
    from pdebench.data.datamodules import OfflineDataModule

    total = args.train + 1 + args.test
    dm = OfflineDataModule(str(path), task="pairs", input_fields=["nu"], output_fields=["tensor"],
                           train_fraction=args.train / total, val_fraction=1 / total, max_trajectories=total,
                           batch_size=args.batch_size, seed=0)
    sizes = {k: len(v) for k, v in dm.splits.items()}
    if dm.num_trajectories < total or sizes["train"] != args.train or sizes["test"] != args.test:
        raise SystemExit(f"{path}: need {total} samples split {args.train}/1/{args.test}, got {dm.num_trajectories} "
                         f"split {sizes}")
    dm.setup("fit")
    return dm


def budget_callback(budget: float):
    import lightning as L

    class Budget(L.Callback):
        """Wall-clock budget from the ``fit`` call (``t0``, set by the caller): cosine learning rate
        over the budget, stop once it is spent; counts steps, keeps the loss curve and CPU time."""

        def __init__(self) -> None:
            self.t0 = self.cpu0 = None
            self.steps = 0
            self.losses: list[tuple[float, float]] = []  # (seconds since fit, train loss)
            self.train_s = self.cpu_s = None

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            lr = 0.5 * OPTIM["lr"] * (1 + math.cos(math.pi * min(1.0, (time.monotonic() - self.t0) / budget)))
            for group in trainer.optimizers[0].param_groups:
                group["lr"] = lr

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            self.steps += 1
            now = time.monotonic() - self.t0
            self.losses.append((now, float(outputs["loss"])))
            if now >= budget:
                trainer.should_stop = True

        def on_train_end(self, trainer, pl_module) -> None:
            self.train_s = time.monotonic() - self.t0
            self.cpu_s = time.process_time() - self.cpu0

    return Budget()


@torch.no_grad()
def evaluate(module, x: torch.Tensor, y: torch.Tensor, chunk: int = 50) -> tuple[float, float]:
    """``(mean relative L2 of module(x) against y, seconds per sample)``; ``x, y: (N, 1, X, Y)``."""
    from pdebench.core.metrics import nrmse

    module.eval()
    start = time.perf_counter()
    pred = torch.cat([module(x[i : i + chunk]) for i in range(0, len(x), chunk)])
    seconds = (time.perf_counter() - start) / len(x)
    return float(nrmse(pred, y, time_axis=False)), seconds


def run_arm(name: str, model_args: dict, dm, args) -> dict:
    import lightning as L

    from pdebench.training.base import OptimConfig
    from pdebench.training.module import OperatorModule

    torch.manual_seed(args.seed)
    module = OperatorModule(model=name, model_args=model_args, in_channels=dm.in_channels, out_channels=dm.out_channels,
                            spatial_dims=dm.spatial_dims, history=1, loss="rel_l2", optim=OptimConfig(**OPTIM))
    clock = budget_callback(args.budget_s)
    trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=-1, max_time={"seconds": 2 * args.budget_s + 60},
                        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, num_sanity_val_steps=0, callbacks=[clock])
    load0 = os.getloadavg()[0]
    with status(f"training {name} for {args.budget_s:.0f} s"):
        clock.t0, clock.cpu0 = time.monotonic(), time.process_time()
        trainer.fit(module, datamodule=dm)
    test, train = dm.datasets["test"], dm.datasets["train"]
    test_err, infer_s = evaluate(module, test.inputs, test.outputs)
    train_err, _ = evaluate(module, train.inputs[:100], train.outputs[:100])
    tail = [loss for _, loss in clock.losses[-20:]]
    result = {
        "model": name, "model_args": model_args, "parameters": parameter_count(module.model),
        "test_rel_l2": test_err, "train_rel_l2_first100": train_err, "final_train_loss_last20": sum(tail) / max(1, len(tail)),
        "steps": clock.steps, "epochs": clock.steps * args.batch_size / args.train, "train_wall_s": clock.train_s,
        "train_cpu_s": clock.cpu_s, "s_per_step": clock.train_s / max(1, clock.steps),
        "inference_ms_per_sample": 1e3 * infer_s, "loadavg_during_start": load0,
        "loss_curve": [(round(t, 1), round(v, 5)) for t, v in clock.losses[:: max(1, len(clock.losses) // 12)]],
    }
    if args.save_dir is not None:  # with its data card and budget, for `pdebench leaderboard`
        args.save_dir.mkdir(parents=True, exist_ok=True)
        trainer.save_checkpoint(args.save_dir / f"{name}.ckpt")
        result["checkpoint"] = str(args.save_dir / f"{name}.ckpt")
    say(f"  {name}: test rel. L2 {fmt(test_err, 4)}, {clock.steps} steps in {clock.train_s:.0f} s "
        f"(CPU {clock.cpu_s:.0f} s), {result['parameters']:,} parameters")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="200 train / 50 test samples, 60 s per model")
    parser.add_argument("--data", default=None, help="darcy2d HDF5 file to reuse (generated there if missing)")
    parser.add_argument("--resolution", type=int, default=43, help="grid size when generating (default 43)")
    parser.add_argument("--train", type=int, default=None, help="training samples (default 400, quick 200)")
    parser.add_argument("--test", type=int, default=None, help="held-out samples (default 100, quick 50)")
    parser.add_argument("--budget-s", type=float, default=None, help="wall-clock training seconds per model (default 240, quick 60)")
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--lsm-width", type=int, default=None, help="LSM width (default: parameter count matched to the FNO)")
    parser.add_argument("--lsm-heads", type=int, default=None, help="LSM heads (default: largest of 8, 5, 4, 2, 1 dividing the width)")
    parser.add_argument("--order", choices=["fno-first", "lsm-first"], default="fno-first")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="initial weights (default 0)")
    parser.add_argument("--save-dir", type=Path, default=None,
                        help="save each trained model as SAVE_DIR/{fno,lsm}.ckpt (then: pdebench leaderboard --suite "
                             "configs/leaderboard/darcy2d.yaml, which reads outputs/lsm_darcy/)")
    args = parser.parse_args(argv)
    args.train = args.train or (200 if args.quick else 400)
    args.test = args.test or (50 if args.quick else 100)
    args.budget_s = args.budget_s or (60.0 if args.quick else 240.0)
    if min(args.train, args.test, args.budget_s, args.batch_size, args.threads, args.resolution) <= 0:
        parser.error("sizes, budget and threads must be positive")

    torch.set_num_threads(args.threads)
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)
    import lightning
    import neuralop

    from pdebench.models import MODELS

    quiet_lightning()
    common = machine_info({"lightning": lightning.__version__, "neuraloperator": getattr(neuralop, "__version__", "?")},
                          threads=args.threads)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_lsm_") as folder:
        path = make_data(args, Path(folder))
        dm = make_datamodule(path, args)
        resolution = tuple(dm.resolution)
        fno_count = parameter_count(MODELS.build("fno", in_channels=1, out_channels=1, dim=2, **FNO_ARGS))
        lsm_args = matched_lsm_args(fno_count, dm.in_channels, dm.out_channels, args.lsm_width, args.lsm_heads)
        arms = {"fno": FNO_ARGS, "lsm": lsm_args}
        order = ["fno", "lsm"] if args.order == "fno-first" else ["lsm", "fno"]
        from pdebench.models.lsm import LSM

        padded = LSM(1, 1, dim=2, **lsm_args).padded_shape(resolution)
        say(f"[bold]bench_lsm_darcy[/bold]: darcy2d {resolution[0]}x{resolution[1]} (LSM pads to {padded[0]}x{padded[1]}), "
            f"{args.train} train / {args.test} test, {args.budget_s:.0f} s per model, threads={args.threads} on "
            f"{os.cpu_count()} CPUs, load average {common['loadavg_start']:.2f}")
        results = {name: run_arm(name, arms[name], dm, args) for name in order}

    fno, lsm = results["fno"], results["lsm"]
    ratio = lsm["test_rel_l2"] / fno["test_rel_l2"]
    table("darcy2d: equal wall-clock budget, matched parameters (test = held-out samples)",
          ["model", "parameters", "test rel. L2", "train rel. L2", "steps", "epochs", "s/step", "CPU s", "infer ms/sample"],
          [[r["model"], f"{r['parameters']:,}", fmt(r["test_rel_l2"], 4), fmt(r["train_rel_l2_first100"], 4),
            str(r["steps"]), f"{r['epochs']:.1f}", fmt(r["s_per_step"]), f"{r['train_cpu_s']:.0f}",
            fmt(r["inference_ms_per_sample"])] for r in (fno, lsm)])
    verdict = "met" if ratio <= 1 else "not met"
    say(f"LSM / FNO test rel. L2 = {ratio:.3f} (target <= 1: {verdict}); parameters LSM / FNO = "
        f"{lsm['parameters'] / fno['parameters']:.3f}; steps LSM / FNO = {lsm['steps'] / max(1, fno['steps']):.3f}. "
        f"Paper (85^2, 1000 train, 500 epochs, GPU): LSM 0.0065, FNO 0.0108, ratio 0.60.")
    settings = {"problem": "darcy2d", "resolution": list(resolution), "train": args.train, "test": args.test,
                "budget_s": args.budget_s, "batch_size": args.batch_size, "order": args.order, "seed": args.seed}
    for r in (fno, lsm):
        record(bench="lsm_darcy", part=r["model"], **common, **settings, **r)
    record(bench="lsm_darcy", part="ratio", **common, **settings, lsm_over_fno_test_rel_l2=ratio,
           lsm_over_fno_parameters=lsm["parameters"] / fno["parameters"], lsm_over_fno_steps=lsm["steps"] / max(1, fno["steps"]),
           target="<= 1", met=ratio <= 1, paper={"lsm": 0.0065, "fno": 0.0108})
    say(f"total {time.perf_counter() - start:.0f} s, load average at end {os.getloadavg()[0]:.2f}")
    REPORT.emit_json()
    return 0


if __name__ == "__main__":
    sys.exit(main())
