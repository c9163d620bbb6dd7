"""Speed benchmark of training through Lightning (``OperatorModule``) against a bare PyTorch loop.

Run from the repository root::

    .venv/bin/python benchmarks/bench_training.py                 # full run (~3-4 min on 2 busy cores)
    .venv/bin/python benchmarks/bench_training.py --quick         # smoke run (~1.3 min)
    .venv/bin/python benchmarks/bench_training.py --skip 2d machinery profile --rounds 9
    .venv/bin/python benchmarks/bench_training.py --tuned-malloc  # the same with glibc malloc tuned

Every figure is a ratio against a reference measured in the same run (this machine is shared and
noisy): Lightning and the bare loop run alternately in rounds (every order of the contenders in
turn), and the median of the per-round ratios is reported with its range. A second bare run in the
same rounds (A/A) shows the noise of that figure. Torch runs on one thread (``--threads``; two
threads collapse when another process competes for the two cores). The last lines, prefixed
``BENCH_JSON``, hold one JSON object per measurement.

What is compared
----------------
*Lightning*: ``OperatorModule`` (FNO, rel. L2 loss, AdamW lr 1e-3 wd 1e-4, cosine schedule stepped
per step) fitted by a real ``lightning.Trainer`` on CPU with ``logger=False``,
``enable_checkpointing=False``, ``enable_progress_bar=False``, ``enable_model_summary=False``,
``max_steps`` and no validation (``limit_val_batches=0``: validation is real work, not overhead).

*Bare*: a hand-written loop over the same ``OfflineDataModule.train_dataloader()`` (same
``EpochSeededSampler``, ``set_epoch`` per epoch as Lightning does), the same neuraloperator ``FNO``
built with the same arguments from the same seed (identical initial weights, checked), the same
normalisation work (encode the input, decode the output with the training-split statistics), the
same ``neuralop.losses.LpLoss(d, p=2, reduction="mean")``, ``AdamW`` and ``CosineAnnealingLR``
(``T_max`` = the number of steps, as ``estimated_stepping_batches`` gives Lightning). Both read the
loss of every step once as a Python float; the two loss sequences are compared (same batches, same
arithmetic: they agree exactly).

How a step is timed
-------------------
A clock is read at the start of every step: in Lightning by a ``Callback.on_train_batch_start``
(the batch has been fetched and moved to the device), in the bare loop right after the batch comes
out of the ``DataLoader``. The interval between consecutive starts is one full step cycle: forward,
loss, backward, optimizer and scheduler step, every Lightning hook and logging call, and the fetch of
the next batch (epoch boundaries included, amortised over the steps). Each run does
``warmup + steps + 1`` steps; the first ``warmup`` intervals are dropped and the next ``steps`` are
summed. (Timing whole fits of N steps minus a warm-up fit would mix in the one-off costs and double
the noise.) One-off costs of a fit (``Trainer`` construction, ``setup``'s shape-check forward pass,
normalisation statistics, ``configure_optimizers``) are outside the intervals and reported apart.
Minor page faults and system CPU time per step (``getrusage``) are read at the same points.

Parts
-----
1. ``1d`` (burgers1d-like): generated ``burgers1d`` data (``n_out=1``, 250 samples, 200 in training:
   10 batches of 20 per epoch), ``initial_to_final``, in=1, out=1, 1024 points, FNO n_modes 16,
   width 64, 4 layers.
2. ``2d`` (ns2d-like): generated ``ns2d`` 64^2 data (``t_final=8``, ``n_out=8``, 24 samples, 16 in
   training), ``next_step`` with history 4 (in=4, out=1): 80 windows, 5 batches of 16 per epoch;
   FNO n_modes 12, width 32, 4 layers.
   Both parts end (full run, or ``--paired``) with a step-paired fit: a callback runs one bare-loop
   step (its own model, optimizer and data iterator) inside every Lightning step, alternately before
   and after Lightning's work, so both run under the same load, step by step.
3. ``machinery``: Lightning's fixed per-step cost, measured with a tiny FNO (n_modes 2, width 4,
   1 layer) on the 1D data, where compute is small and the machinery dominates; the same
   comparison for variants: without ``OperatorModule``'s ``self.log`` call (a subclass with a no-op
   ``log``), with the ``RichProgressBar`` and with the TensorBoard + CSV loggers of ``configs/*``
   (``log_every_n_steps=10``). The costs are put against the step times of parts 1-2.
4. ``profile``: cProfile of the tiny-model Lightning fit: own time per package, one step split into
   the work a bare loop does too and Lightning's own, and the Lightning functions with the most own
   time (cProfile inflates Python-heavy code: read shares, not absolutes).

``--tuned-malloc`` re-runs the script with ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_``
set: by default glibc hands the multi-MiB activation buffers back to the OS when a step frees them
and page-faults them in again in the next step (thousands of faults, tens of ms of system time per
step, in both loops).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import io
import itertools
import logging
import os
import pstats
import resource
import statistics
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

SEED = 0
# glibc malloc: serve big blocks from the heap (up to the 32 MiB maximum threshold) and never trim it, so the
# tensors freed at the end of a step are reused by the next step instead of being unmapped and faulted in again.
TUNED_MALLOC = {"MALLOC_MMAP_THRESHOLD_": "33554432", "MALLOC_TRIM_THRESHOLD_": "4294967296"}


# -- output --------------------------------------------------------------------------------------


def pct(x: float) -> str:
    return f"{100 * x:+.1f}%"


def quiet_lightning() -> None:
    """Silence Lightning's per-fit banners and the warnings this setting triggers on purpose
    (``num_workers=0``, few batches per epoch, no validation)."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=r".*number of training batches.*")
    warnings.filterwarnings("ignore", message=r".*log_every_n_steps.*")
    warnings.filterwarnings("ignore", message=r".*val_dataloader.*")
    warnings.filterwarnings("ignore", message=r".*validation_step.*")
    warnings.filterwarnings("ignore", message=r".*Checkpoint directory.*")
    try:
        from lightning.fabric.utilities.warnings import PossibleUserWarning

        warnings.filterwarnings("ignore", category=PossibleUserWarning)
    except ImportError:  # pragma: no cover
        pass


def _usage() -> tuple[int, float]:
    """Minor page faults and system CPU seconds of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_minflt, usage.ru_stime


# -- data ----------------------------------------------------------------------------------------


def make_cases(folder: Path, quick: bool) -> dict[str, dict]:
    """Generate the two small data sets into ``folder`` and describe the two cases."""
    from pdebench.data.generate import generate_dataset
    from pdebench.problems import PROBLEMS

    burgers, ns = folder / "burgers1d.h5", folder / "ns2d.h5"
    timings = {}
    start = time.perf_counter()
    generate_dataset(PROBLEMS.build("burgers1d", n_out=1), burgers, num_samples=250, batch_size=50)
    timings["burgers1d"] = time.perf_counter() - start
    start = time.perf_counter()
    generate_dataset(PROBLEMS.build("ns2d", resolution=64, t_final=8, n_out=8), ns, num_samples=24, batch_size=24)
    timings["ns2d"] = time.perf_counter() - start
    return {
        "1d": {
            "label": "burgers1d-like (1024 pts, in=1, out=1, batch 20, FNO modes 16 width 64 x4)",
            "data": {"path": str(burgers), "task": "initial_to_final", "train_fraction": 0.8, "val_fraction": 0.1,
                     "batch_size": 20},
            "model_args": {"n_modes": 16, "hidden_channels": 64, "n_layers": 4},
            "warmup": 2, "steps": 6 if quick else 10, "rounds": 3 if quick else 5, "budget_s": 30.0 if quick else 80.0,
            "paired_steps": 12 if quick else 40,
            "generate_s": timings["burgers1d"],
        },
        "2d": {
            "label": "ns2d-like (64x64, in=4 (history 4), out=1, batch 16, FNO modes 12 width 32 x4)",
            "data": {"path": str(ns), "task": "next_step", "history": 4, "unroll": 1, "train_fraction": 16 / 24,
                     "val_fraction": 4 / 24, "batch_size": 16},
            "model_args": {"n_modes": 12, "hidden_channels": 32, "n_layers": 4},
            "warmup": 2, "steps": 5 if quick else 10, "rounds": 3 if quick else 5, "budget_s": 45.0 if quick else 130.0,
            "paired_steps": 10 if quick else 30,
            "generate_s": timings["ns2d"],
        },
    }


def make_datamodule(case: dict):
    from pdebench.data.datamodules import OfflineDataModule

    dm = OfflineDataModule(**case["data"], seed=SEED)
    dm.setup("fit")
    return dm


# -- the two contenders --------------------------------------------------------------------------


def _step_clock():
    import lightning as L

    class StepClock(L.Callback):
        """Clock at every ``on_train_batch_start``; batch sizes, losses, torch threads."""

        def __init__(self) -> None:
            self.starts: list[float] = []
            self.sizes: list[int] = []
            self.losses: list[float] = []
            self.usage: list[tuple[int, float]] = []
            self.threads = None

        def on_train_start(self, trainer, pl_module) -> None:
            self.threads = torch.get_num_threads()

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            self.starts.append(time.perf_counter())
            self.usage.append(_usage())
            self.sizes.append(len(batch[0]))

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            self.losses.append(float(outputs["loss"]))

    return StepClock()


def _no_log_module():
    from pdebench.training.module import OperatorModule

    class NoLogOperatorModule(OperatorModule):
        """``OperatorModule`` whose ``self.log`` does nothing (ablation of the per-step logging)."""

        def log(self, *args, **kwargs) -> None:
            return None

    return NoLogOperatorModule


def lightning_run(case: dict, dm, total_steps: int, variant: str = "base", folder: Path | None = None) -> dict:
    """Fit ``OperatorModule`` for ``total_steps`` steps; per-step start times and losses."""
    import lightning as L

    from pdebench.training.base import OptimConfig
    from pdebench.training.module import OperatorModule

    t0 = time.perf_counter()
    cls = _no_log_module() if variant == "no_self_log" else OperatorModule
    torch.manual_seed(SEED)
    module = cls(model="fno", model_args=case["model_args"], in_channels=dm.in_channels, out_channels=dm.out_channels,
                 spatial_dims=dm.spatial_dims, history=dm.history, loss="rel_l2",
                 optim=OptimConfig(optim=OptimConfig(optimizer="adamw", lr=1e-3, weight_decay=1e-4, scheduler="cosine")))
    clock = _step_clock()
    callbacks: list = [clock]
    kwargs = dict(logger=False, enable_progress_bar=False)
    sink = io.StringIO()
    if variant == "rich_progress_bar":
        from lightning.pytorch.callbacks import RichProgressBar

        callbacks.append(RichProgressBar(console_kwargs={"file": sink, "force_terminal": True, "width": 120}))
        kwargs["enable_progress_bar"] = True
    elif variant == "loggers":
        from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

        kwargs["logger"] = [TensorBoardLogger(save_dir=str(folder), name="tb"), CSVLogger(save_dir=str(folder), name="csv")]
        kwargs["log_every_n_steps"] = 10
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=total_steps, enable_checkpointing=False,
                            enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
                            callbacks=callbacks, **kwargs)
        trainer.fit(module, datamodule=dm)
    end = time.perf_counter()
    return {"starts": clock.starts, "sizes": clock.sizes, "losses": clock.losses, "start": t0, "end": end,
            "threads": clock.threads, "usage": clock.usage}


def bare_fno(case: dict, dm) -> torch.nn.Module:
    """neuraloperator's FNO with exactly the arguments pdebench's ``fno`` wrapper passes to it."""
    from neuralop.models import FNO

    args = case["model_args"]
    return FNO(n_modes=(args["n_modes"],) * dm.spatial_dims, in_channels=dm.in_channels, out_channels=dm.out_channels,
               hidden_channels=args["hidden_channels"], n_layers=args["n_layers"], factorization=None, rank=1.0,
               positional_embedding="grid")


def bare_run(case: dict, dm, total_steps: int) -> dict:
    """The same training as :func:`lightning_run`, written out in plain PyTorch."""
    from neuralop.losses import LpLoss

    t0 = time.perf_counter()
    dims = dm.spatial_dims
    torch.manual_seed(SEED)
    net = bare_fno(case, dm)
    stats = dm.normalization_stats()
    shape = (1, -1) + (1,) * dims
    x_mean, x_std = stats["x_mean"].view(shape), stats["x_std"].view(shape)
    y_mean, y_std = stats["y_mean"].view(shape), stats["y_std"].view(shape)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    loss_fn = LpLoss(d=dims, p=2, reduction="mean")
    loader = dm.train_dataloader()
    net.train()
    starts, sizes, losses, usage = [], [], [], []
    step, epoch = 0, 0
    while step < total_steps:
        loader.sampler.set_epoch(epoch)
        for x, y in loader:
            starts.append(time.perf_counter())
            usage.append(_usage())
            sizes.append(len(x))
            pred = net((x - x_mean) / x_std) * y_std + y_mean
            loss = loss_fn(pred, y[:, 0])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.detach().item())
            step += 1
            if step >= total_steps:
                break
        epoch += 1
    end = time.perf_counter()
    return {"starts": starts, "sizes": sizes, "losses": losses, "start": t0, "end": end, "threads": torch.get_num_threads(),
            "usage": usage}


def paired_run(case: dict, dm, total_steps: int) -> dict:
    """One Lightning fit with a bare-loop step run between every two Lightning steps.

    A callback owns the bare loop's model, optimizer, scheduler, loss and its own iterator over a second
    ``train_dataloader()`` (same sampler: the same batches in the same order); in
    ``on_train_batch_end`` it fetches the bare loop's batch and runs its step, timed. Lightning's own
    step cycle is the start-to-start interval minus that bare step. Both loops thus run under the same
    load, step by step, which removes most of the noise of the round-based comparison.
    """
    import lightning as L
    from neuralop.losses import LpLoss

    from pdebench.training.base import OptimConfig
    from pdebench.training.module import OperatorModule

    dims = dm.spatial_dims
    torch.manual_seed(SEED)
    net = bare_fno(case, dm)
    stats = dm.normalization_stats()
    shape = (1, -1) + (1,) * dims
    x_mean, x_std = stats["x_mean"].view(shape), stats["x_std"].view(shape)
    y_mean, y_std = stats["y_mean"].view(shape), stats["y_std"].view(shape)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    loss_fn = LpLoss(d=dims, p=2, reduction="mean")
    loader = dm.train_dataloader()
    net.train()

    class PairedBareStep(L.Callback):
        def __init__(self) -> None:
            self.starts, self.bare_s, self.losses, self.bare_losses = [], [], [], []
            self.epoch, self.iterator = 0, None

        def _next_batch(self):
            if self.iterator is not None:
                with contextlib.suppress(StopIteration):
                    return next(self.iterator)
                self.epoch += 1
            loader.sampler.set_epoch(self.epoch)
            self.iterator = iter(loader)
            return next(self.iterator)

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            self.starts.append(time.perf_counter())
            if len(self.starts) % 2:  # odd steps: the bare step runs before Lightning's
                self._bare_step()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            self.losses.append(float(outputs["loss"]))
            if len(self.starts) % 2 == 0:  # even steps: after Lightning's
                self._bare_step()

        def _bare_step(self) -> None:
            start = time.perf_counter()
            x, y = self._next_batch()
            pred = net((x - x_mean) / x_std) * y_std + y_mean
            loss = loss_fn(pred, y[:, 0])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            self.bare_losses.append(loss.detach().item())
            self.bare_s.append(time.perf_counter() - start)

    torch.manual_seed(SEED)
    module = OperatorModule(model="fno", model_args=case["model_args"], in_channels=dm.in_channels,
                            out_channels=dm.out_channels, spatial_dims=dims, history=dm.history, loss="rel_l2",
                            optim=OptimConfig(optimizer="adamw", lr=1e-3, weight_decay=1e-4, scheduler="cosine"))
    clock = PairedBareStep()
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=total_steps, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                            num_sanity_val_steps=0, callbacks=[clock])
        trainer.fit(module, datamodule=dm)
    intervals = [b - a for a, b in zip(clock.starts, clock.starts[1:])]
    lightning_s = [i - b for i, b in zip(intervals, clock.bare_s)]
    return {"lightning_s": lightning_s, "bare_s": clock.bare_s[: len(lightning_s)],
            "bare_first": [i % 2 == 0 for i in range(len(lightning_s))],
            "loss_max_rel_diff": loss_agreement(clock.losses, clock.bare_losses)}


def summarize(run: dict, warmup: int, steps: int) -> dict:
    """Timed window: intervals ``warmup … warmup + steps − 1`` between consecutive step starts."""
    starts = run["starts"]
    if len(starts) < warmup + steps + 1:
        raise RuntimeError(f"run has {len(starts)} steps, needs {warmup + steps + 1}")
    intervals = [b - a for a, b in zip(starts[warmup : warmup + steps], starts[warmup + 1 : warmup + steps + 1])]
    total = sum(intervals)
    samples = sum(run["sizes"][warmup : warmup + steps])
    # one-off: from the call to the first step, plus from the last step start past its own duration to the end
    last_step = intervals[-1] if intervals else 0.0
    one_off = (starts[0] - run["start"]) + max(0.0, run["end"] - starts[-1] - last_step)
    (f0, s0), (f1, s1) = run["usage"][warmup], run["usage"][warmup + steps]
    return {"step_s": total / steps, "median_step_s": statistics.median(intervals), "samples_per_s": samples / total,
            "one_off_s": one_off, "wall_s": run["end"] - run["start"], "faults_per_step": (f1 - f0) / steps,
            "sys_s_per_step": (s1 - s0) / steps}


def check_same_init(case: dict, dm) -> float:
    """Max abs difference between the initial weights of OperatorModule's FNO and the bare loop's."""
    from pdebench.training.module import OperatorModule

    torch.manual_seed(SEED)
    module = OperatorModule(model="fno", model_args=case["model_args"], in_channels=dm.in_channels,
                            out_channels=dm.out_channels, spatial_dims=dm.spatial_dims, history=dm.history)
    theirs = {k.removeprefix("net."): v for k, v in module.model.state_dict().items()}
    torch.manual_seed(SEED)
    ours = {k: v for k, v in bare_fno(case, dm).state_dict().items() if isinstance(v, torch.Tensor)}
    theirs = {k: v for k, v in theirs.items() if isinstance(v, torch.Tensor)}
    if set(ours) != set(theirs):
        raise RuntimeError(f"parameter names differ: {sorted(set(ours) ^ set(theirs))[:5]}")
    return max(float((ours[k].to(torch.complex128) - theirs[k].to(torch.complex128)).abs().max()) if ours[k].numel() else 0.0
               for k in ours)


def loss_agreement(a: list[float], b: list[float]) -> float:
    n = min(len(a), len(b))
    return max(abs(x - y) / max(abs(y), 1e-30) for x, y in zip(a[:n], b[:n]))


# -- parts ---------------------------------------------------------------------------------------


def bench_case(name: str, case: dict, args, common: dict) -> dict:
    dm = make_datamodule(case)
    warmup = args.warmup if args.warmup is not None else case["warmup"]
    steps = args.steps if args.steps is not None else case["steps"]
    rounds = args.rounds if args.rounds is not None else case["rounds"]
    total_steps = warmup + steps + 1
    per_epoch = len(dm.train_dataloader())
    init_diff = check_same_init(case, dm)
    lightning, bare, ratios, median_ratios, agreement, aa_ratios = [], [], [], [], [], []
    contenders = ["lightning", "bare"] + ([] if "aa" in args.skip else ["bare_again"])
    orders = list(itertools.permutations(contenders))  # every order once per len(orders) rounds
    threads_seen = set()
    start = time.perf_counter()
    with status(f"{name}: up to {rounds} interleaved rounds of {total_steps} steps each ({', '.join(contenders)})"):
        for r in range(rounds):
            runs = {}
            for which in orders[r % len(orders)]:
                gc.collect()
                runs[which] = lightning_run(case, dm, total_steps) if which == "lightning" else bare_run(case, dm, total_steps)
            threads_seen.update(run["threads"] for run in runs.values())
            lt, bt = summarize(runs["lightning"], warmup, steps), summarize(runs["bare"], warmup, steps)
            lightning.append(lt)
            bare.append(bt)
            ratios.append(lt["step_s"] / bt["step_s"])
            median_ratios.append(lt["median_step_s"] / bt["median_step_s"])
            agreement.append(loss_agreement(runs["lightning"]["losses"], runs["bare"]["losses"]))
            if "bare_again" in runs:
                aa_ratios.append(summarize(runs["bare_again"], warmup, steps)["step_s"] / bt["step_s"])
            if r + 1 >= 3 and time.perf_counter() - start > case["budget_s"] and r + 1 < rounds:
                say(f"  [yellow]{name}: time budget ({case['budget_s']:.0f} s) used after {r + 1} of {rounds} rounds; "
                    f"stopping there[/yellow]")
                break
    done = len(ratios)
    paired = None
    if "paired" not in args.skip and (not args.quick or args.paired):
        n_paired = case["paired_steps"]
        with status(f"{name}: step-paired run ({warmup} + {n_paired} steps, a bare step between Lightning's)"):
            gc.collect()
            run = paired_run(case, dm, warmup + n_paired + 1)
        lt, bt = run["lightning_s"][warmup:], run["bare_s"][warmup:]
        diffs = [a - b for a, b in zip(lt, bt)]
        paired = {"steps": len(lt), "overhead": sum(lt) / sum(bt) - 1, "added_ms_median": 1e3 * statistics.median(diffs),
                  "added_ms_mean": 1e3 * statistics.mean(diffs), "lightning_ms": 1e3 * statistics.mean(lt),
                  "bare_ms": 1e3 * statistics.mean(bt), "loss_max_rel_diff": run["loss_max_rel_diff"],
                  "samples_per_s_bare": case["data"]["batch_size"] / statistics.mean(bt),
                  "samples_per_s_lightning": case["data"]["batch_size"] / statistics.mean(lt)}
    overhead = statistics.median(ratios) - 1
    overhead_median_step = statistics.median(median_ratios) - 1
    l_step = statistics.median(x["step_s"] for x in lightning)
    b_step = statistics.median(x["step_s"] for x in bare)
    l_sps = statistics.median(x["samples_per_s"] for x in lightning)
    b_sps = statistics.median(x["samples_per_s"] for x in bare)
    l_once = statistics.median(x["one_off_s"] for x in lightning)
    b_once = statistics.median(x["one_off_s"] for x in bare)
    ok = overhead <= 0.10
    def med(runs: list[dict], key: str) -> float:
        return statistics.median(x[key] for x in runs)

    l_faults, b_faults = med(lightning, "faults_per_step"), med(bare, "faults_per_step")
    l_sys, b_sys = 1e3 * med(lightning, "sys_s_per_step"), 1e3 * med(bare, "sys_s_per_step")
    rows = [
        ["bare PyTorch", f"{1e3 * b_step:.1f}", f"{1e3 * med(bare, 'median_step_s'):.1f}", fmt(b_sps), "1 (reference)",
         "-", f"{b_faults:.0f}", f"{b_sys:.1f}"],
        ["Lightning (OperatorModule)", f"{1e3 * l_step:.1f}", f"{1e3 * med(lightning, 'median_step_s'):.1f}", fmt(l_sps),
         f"[bold]{pct(overhead)}[/bold] ({pct(min(ratios) - 1)} .. {pct(max(ratios) - 1)})", pct(overhead_median_step),
         f"{l_faults:.0f}", f"{l_sys:.1f}"],
    ]
    aa = statistics.median(aa_ratios) - 1 if aa_ratios else None
    if aa_ratios:
        rows.append(["bare PyTorch again (A/A: noise)", "-", "-", "-",
                     f"{pct(aa)} ({pct(min(aa_ratios) - 1)} .. {pct(max(aa_ratios) - 1)})", "-", "-", "-"])
    if paired:
        rows.append([f"step-paired ({paired['steps']} steps): bare", f"{paired['bare_ms']:.1f}", "-",
                     fmt(paired["samples_per_s_bare"]), "1 (reference)", "-", "-", "-"])
        rows.append(["step-paired: Lightning", f"{paired['lightning_ms']:.1f}", "-", fmt(paired["samples_per_s_lightning"]),
                     f"[bold]{pct(paired['overhead'])}[/bold] (ratio of sums)",
                     f"{paired['added_ms_median']:+.2f} ms (median diff)", "-", "-"])
    table(f"{name}: {case['label']}; {steps} timed steps after {warmup} warm-up, {per_epoch} steps/epoch, "
          f"{done} rounds, {sorted(threads_seen)} torch thread(s)",
          ["loop", "ms/step", "median step ms", "samples/s", "overhead (median of round ratios, range)",
           "overhead of median steps", "page faults/step", "sys ms/step"], rows)
    verdict = "[green]within[/green]" if ok else "[red]ABOVE[/red]"
    if aa_ratios:
        spread = max(abs(x - 1) for x in aa_ratios)
        say(f"  A/A: a second bare run in the same rounds differs from the first by {pct(aa)} (median; per round up to "
            f"{100 * spread:.1f}%): Lightning's figure is {'within' if abs(overhead) <= spread else 'outside'} that noise.")
    say(f"  overhead {pct(overhead)} is {verdict} the 10% target; Lightning adds {1e3 * (l_step - b_step):+.2f} ms/step "
        f"(median step times). Same initial weights (max |diff| {init_diff:.1e}); loss sequences agree to "
        f"{max(agreement):.1e} (max relative difference over all steps and rounds). One-off cost per fit: "
        f"Lightning {l_once:.2f} s, bare {b_once:.2f} s.")
    sys_share = max(b_sys / (1e3 * b_step), l_sys / (1e3 * l_step))
    if sys_share > 0.03:
        say(f"  page faults: bare {b_faults:.0f}/step ({b_sys:.1f} ms system time, {b_sys / (1e3 * b_step):.0%} of its step), "
            f"Lightning {l_faults:.0f}/step ({l_sys:.1f} ms, {l_sys / (1e3 * l_step):.0%}): glibc returns the freed "
            f"activations to the OS every step and faults them in again (both loops); --tuned-malloc removes this.")
    if paired:
        say(f"  step-paired: Lightning {pct(paired['overhead'])} over {paired['steps']} steps, "
            f"{paired['added_ms_median']:+.2f} ms/step median ({paired['added_ms_mean']:+.2f} mean) under the same load; "
            f"losses agree to {paired['loss_max_rel_diff']:.1e}")
    return record(bench="training_overhead", case=name, label=case["label"], quick=args.quick, rounds=done,
                  warmup_steps=warmup, timed_steps=steps, steps_per_epoch=per_epoch, batch_size=case["data"]["batch_size"],
                  model_args=case["model_args"], in_channels=dm.in_channels, resolution=list(dm.resolution),
                  lightning_ms_per_step=1e3 * l_step, bare_ms_per_step=1e3 * b_step,
                  lightning_samples_per_s=l_sps, bare_samples_per_s=b_sps, overhead=overhead,
                  overhead_range=[min(ratios) - 1, max(ratios) - 1], overhead_per_round=[x - 1 for x in ratios],
                  overhead_of_median_steps=overhead_median_step, target_overhead=0.10, within_target=ok,
                  lightning_page_faults_per_step=l_faults, bare_page_faults_per_step=b_faults,
                  lightning_sys_ms_per_step=l_sys, bare_sys_ms_per_step=b_sys, lightning_one_off_s=l_once, bare_one_off_s=b_once, init_weights_max_abs_diff=init_diff,
                  loss_max_rel_diff=max(agreement), torch_threads=sorted(threads_seen),
                  data_generation_s=case["generate_s"], aa_overhead=aa, aa_per_round=[x - 1 for x in aa_ratios],
                  paired_steps=paired and paired["steps"], paired_overhead=paired and paired["overhead"],
                  paired_added_ms_median=paired and paired["added_ms_median"],
                  paired_added_ms_mean=paired and paired["added_ms_mean"],
                  paired_lightning_ms_per_step=paired and paired["lightning_ms"],
                  paired_bare_ms_per_step=paired and paired["bare_ms"],
                  paired_loss_max_rel_diff=paired and paired["loss_max_rel_diff"], **common)


VARIANTS = {
    "base": "Lightning (benchmark config)",
    "no_self_log": "  - OperatorModule's self.log",
    "rich_progress_bar": "  + RichProgressBar",
    "loggers": "  + TensorBoard & CSV loggers",
}


def bench_machinery(args, common: dict, cases: dict, step_ms: dict[str, float]) -> dict:
    """Lightning's fixed per-step cost with a tiny FNO, and what its parts cost."""
    case = dict(cases["1d"], model_args={"n_modes": 2, "hidden_channels": 4, "n_layers": 1},
                label="tiny FNO (modes 2, width 4, 1 layer) on the 1d data, batch 20")
    dm = make_datamodule(case)
    warmup, steps = 5, (40 if args.quick else 100)
    rounds = 3 if args.quick else 5
    total_steps = warmup + steps + 1
    times: dict[str, list[float]] = {v: [] for v in ["bare", *VARIANTS]}
    deltas: dict[str, list[float]] = {v: [] for v in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="bench_training_logs_") as folder, \
            status(f"machinery: {rounds} rounds of {total_steps} steps, bare + {len(VARIANTS)} Lightning variants"):
        for r in range(rounds):
            order = ["bare", *VARIANTS]
            if r % 2:
                order.reverse()
            this = {}
            for which in order:
                gc.collect()
                run = bare_run(case, dm, total_steps) if which == "bare" else \
                    lightning_run(case, dm, total_steps, variant=which, folder=Path(folder))
                this[which] = summarize(run, warmup, steps)["step_s"]
                times[which].append(this[which])
            for v in VARIANTS:
                deltas[v].append(this[v] - this["bare"])
    bare_ms = 1e3 * statistics.median(times["bare"])
    rows = [["bare PyTorch", f"{bare_ms:.2f}", "-", "-"] + ["-" for _ in step_ms]]
    out = {}
    for v, label in VARIANTS.items():
        d = 1e3 * statistics.median(deltas[v])
        rows.append([label, f"{1e3 * statistics.median(times[v]):.2f}",
                     f"[bold]{d:+.2f}[/bold] ({1e3 * min(deltas[v]):+.2f} .. {1e3 * max(deltas[v]):+.2f})",
                     f"{d / bare_ms:+.0%}"] + [pct(d / ms) for ms in step_ms.values()])
        out[v] = d
        record(bench="training_machinery", variant=v, description=label.strip(), quick=args.quick, rounds=rounds,
               timed_steps=steps, bare_ms_per_step=bare_ms, lightning_ms_per_step=1e3 * statistics.median(times[v]),
               added_ms_per_step=d, added_ms_range=[1e3 * min(deltas[v]), 1e3 * max(deltas[v])],
               share_of_real_step={k: d / ms for k, ms in step_ms.items()}, **common)
    table(f"machinery: Lightning's per-step cost with a {case['label']} ({steps} timed steps, {rounds} rounds)",
          ["loop", "ms/step", "added ms/step vs bare (median, range)", "% of tiny step"]
          + [f"% of {k} step ({ms:.0f} ms)" for k, ms in step_ms.items()], rows)
    say("  '+' variants are the benchmark config plus what configs/* use (RichProgressBar; TensorBoard and CSV "
        "loggers with log_every_n_steps=10); '-' removes OperatorModule.training_step's self.log call (subclass).")
    if "no_self_log" in out:
        say(f"  OperatorModule's self.log('train_loss', prog_bar=True) costs {out['base'] - out['no_self_log']:.2f} ms/step "
            f"(base minus no-log); the rest of Lightning's loop {out['no_self_log']:.2f} ms/step.")
    return out


def _cum(stats: pstats.Stats, file_suffix: str, name: str) -> float:
    """Cumulative time of the functions ``name`` defined in files ending with ``file_suffix``."""
    return sum(v[3] for (f, _, fn), v in stats.stats.items() if f.replace("\\", "/").endswith(file_suffix) and fn == name)


def bench_profile(args, common: dict, cases: dict) -> None:
    """cProfile of a tiny-model Lightning fit: own time per package, then where one step goes."""
    case = dict(cases["1d"], model_args={"n_modes": 2, "hidden_channels": 4, "n_layers": 1})
    dm = make_datamodule(case)
    steps = 60 if args.quick else 150
    lightning_run(case, dm, 8)  # warm-up
    profiler = cProfile.Profile()
    profiler.enable()
    run = lightning_run(case, dm, steps)
    profiler.disable()
    stats = pstats.Stats(profiler)
    n = len(run["starts"])
    total = sum(v[2] for v in stats.stats.values())  # own time of every function
    packages: dict[str, float] = {}
    lightning_fns = []
    for (filename, line, fn), (cc, nc, tt, ct, callers) in stats.stats.items():
        path = filename.replace("\\", "/")
        if "/lightning/" in path or "/lightning_utilities/" in path or "/torchmetrics/" in path:
            key = "lightning (+ lightning_utilities, torchmetrics)"
            lightning_fns.append((tt, ct, nc, f"{path.split('site-packages/')[-1]}:{line}({fn})"))
        elif "/torch/" in path:
            key = "torch (Python code)"
        elif filename == "~":
            key = "C functions (torch ops, builtins)"
        elif "/neuralop/" in path or "/tensorly" in path:
            key = "neuralop"
        elif "/pdebench/" in path:
            key = "pdebench"
        else:
            key = "other Python (stdlib, ...)"
        packages[key] = packages.get(key, 0.0) + tt
    rows = [[k, f"{1e3 * v / n:.2f}", f"{v / total:.0%}"] for k, v in sorted(packages.items(), key=lambda kv: -kv[1])]
    table(f"profile: cProfile own time per package, tiny-model Lightning fit of {n} steps (whole fit)",
          ["package", "ms/step (profiled)", "share"], rows)

    # Where the training epochs' time goes (cumulative times; the parts below do not overlap).
    epochs = _cum(stats, "loops/training_epoch_loop.py", "run")
    log_call = _cum(stats, "pytorch/core/module.py", "log")
    parts = {
        "forward + normalisation + loss (OperatorModule.training_step without self.log)":
            _cum(stats, "pdebench/training/module.py", "training_step") - log_call,
        "backward (Tensor.backward)": _cum(stats, "torch/_tensor.py", "backward"),
        # Lightning calls optimizer.step(closure): the closure (training_step, backward) runs inside it
        "optimizer (AdamW.step without the closure it calls)":
            (_cum(stats, "torch/optim/adamw.py", "step") or _cum(stats, "torch/optim/adam.py", "step"))
            - max(_cum(stats, "plugins/precision/precision.py", "_wrap_closure"),
                  _cum(stats, "loops/optimization/automatic.py", "__call__")),
        "zero_grad": _cum(stats, "torch/optim/optimizer.py", "zero_grad"),
        "LR scheduler step": _cum(stats, "torch/optim/lr_scheduler.py", "step"),
        "DataLoader __next__ (fetching batches)": _cum(stats, "torch/utils/data/dataloader.py", "__next__"),
    }
    user = sum(parts.values())
    lightning_parts = {
        "self.log('train_loss', prog_bar=True) in training_step": log_call,
        "logger connector per step (on_batch_start/end, update_train_step_metrics)":
            sum(_cum(stats, "logger_connector/logger_connector.py", f) for f in
                ("on_batch_start", "on_batch_end", "update_train_step_metrics")),
        "callback hooks (_call_callback_hooks; incl. this benchmark's step clock)": _cum(stats, "trainer/call.py", "_call_callback_hooks"),
    }
    rest = epochs - user - sum(lightning_parts.values())
    rows = [[k, f"{1e3 * v / n:.2f}", f"{v / epochs:.1%}"] for k, v in parts.items()]
    rows.append(["[bold]work a bare loop does too[/bold]", f"[bold]{1e3 * user / n:.2f}[/bold]", f"{user / epochs:.1%}"])
    rows += [[k, f"{1e3 * v / n:.2f}", f"{v / epochs:.1%}"] for k, v in lightning_parts.items()]
    rows.append(["rest of Lightning's loop (hooks dispatch, closure, fetcher, batch_to_device, progress, ...)",
                 f"{1e3 * rest / n:.2f}", f"{rest / epochs:.1%}"])
    rows.append(["[bold]Lightning's own per-step work[/bold]", f"[bold]{1e3 * (epochs - user) / n:.2f}[/bold]",
                 f"{(epochs - user) / epochs:.1%}"])
    table(f"profile: one step of the tiny-model fit, cumulative time (profiled; training epochs total "
          f"{1e3 * epochs / n:.2f} ms/step)", ["part", "ms/step (profiled)", "share"], rows)
    lightning_fns.sort(reverse=True)
    rows3 = [[name, f"{1e3 * tt / n:.3f}", f"{1e3 * ct / n:.3f}", f"{nc / n:.1f}"] for tt, ct, nc, name in lightning_fns[:10]]
    table("profile: Lightning functions with the most own time", ["function", "own ms/step", "cum. ms/step",
                                                                  "calls/step"], rows3)
    say("  cProfile adds a fixed cost per Python call, so it inflates Lightning's many small calls relative to torch's "
        "C kernels: read the shares, and the machinery table for unprofiled costs.")
    record(bench="training_profile", quick=args.quick, steps=n,
           profiled_ms_per_step_by_package={k: 1e3 * v / n for k, v in packages.items()},
           profiled_epoch_ms_per_step=1e3 * epochs / n,
           profiled_user_work_ms_per_step={k: 1e3 * v / n for k, v in parts.items()},
           profiled_lightning_ms_per_step={**{k: 1e3 * v / n for k, v in lightning_parts.items()}, "rest": 1e3 * rest / n},
           top_lightning_functions=[{"function": name, "own_ms_per_step": 1e3 * tt / n, "cum_ms_per_step": 1e3 * ct / n,
                                     "calls_per_step": nc / n} for tt, ct, nc, name in lightning_fns[:10]], **common)


# -- main ----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer rounds and steps")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--paired", action="store_true", help="run the step-paired measurement in --quick too")
    parser.add_argument("--tuned-malloc", action="store_true",
                        help=f"re-run this script with {' '.join(f'{k}={v}' for k, v in TUNED_MALLOC.items())} (glibc: keep "
                             f"freed memory instead of returning it to the OS, which costs page faults every step)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds per case (default 5, quick 3)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per run (default 10, quick 5-6)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed warm-up steps per run (default 2)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["1d", "2d", "aa", "paired", "machinery", "profile"],
                        help="parts to leave out")
    args = parser.parse_args(argv)
    if args.tuned_malloc and any(os.environ.get(k) != v for k, v in TUNED_MALLOC.items()):
        rest = [a for a in (sys.argv[1:] if argv is None else argv) if a != "--tuned-malloc"]
        sys.stdout.flush()
        os.execve(sys.executable, [sys.executable, str(Path(__file__).resolve()), *rest, "--tuned-malloc"],
                  {**os.environ, **TUNED_MALLOC})
    if args.threads < 1 or (args.rounds is not None and args.rounds < 1) or (args.steps is not None and args.steps < 1):
        parser.error("--threads, --rounds and --steps must be positive")
    torch.set_num_threads(args.threads)
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)

    import lightning
    import neuralop

    quiet_lightning()  # after importing lightning, which sets its loggers' level at import

    common = {**machine_info({"lightning": lightning.__version__, "neuraloperator": getattr(neuralop, "__version__", "?")},
                             threads=args.threads),
              "malloc_env": {k: os.environ[k] for k in sorted(os.environ) if k.startswith("MALLOC_")}}
    start = time.perf_counter()
    say(f"[bold]bench_training[/bold] {'--quick ' if args.quick else ''}threads={args.threads} on {os.cpu_count()} CPUs, "
        f"torch {torch.__version__}, lightning {lightning.__version__}, neuraloperator {common['neuraloperator']}, "
        f"load average {common['loadavg_start']:.2f}"
        + (f", malloc env {common['malloc_env']}" if common["malloc_env"] else ""))
    with tempfile.TemporaryDirectory(prefix="bench_training_") as folder:
        with status("generating the data (burgers1d 250 samples, ns2d 64^2 24 samples)"):
            cases = make_cases(Path(folder), args.quick)
        say(f"  data generated in {cases['1d']['generate_s']:.1f} s (burgers1d) and {cases['2d']['generate_s']:.1f} s (ns2d)")
        step_ms = {}
        for name in ("1d", "2d"):
            if name not in args.skip:
                res = bench_case(name, cases[name], args, common)
                step_ms[name] = res["bare_ms_per_step"]
        if "machinery" not in args.skip:
            bench_machinery(args, common, cases, step_ms)
        if "profile" not in args.skip:
            with status("profile: cProfile of a tiny-model Lightning fit"):
                bench_profile(args, common, cases)
    say(f"total {time.perf_counter() - start:.0f} s, load average at end {os.getloadavg()[0]:.2f}")
    REPORT.emit_json()
    return 0


if __name__ == "__main__":
    sys.exit(main())
