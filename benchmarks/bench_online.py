"""Online training (solver workers streaming into a reservoir) against offline training, at equal wall time.

Run from the repository root::

    .venv/bin/python benchmarks/bench_online.py                # full run (~7 min: 2 x 150 s of training)
    .venv/bin/python benchmarks/bench_online.py --quick        # smoke run (~2 min: 2 x 30 s)
    .venv/bin/python benchmarks/bench_online.py --skip reservoir --budget 300
    .venv/bin/python benchmarks/bench_online.py --skip offline online   # the reservoir micro-benchmark alone

The machine is shared and noisy, so speeds are put against a reference measured in the same run
(trainer steps/s online vs offline, worker production vs trainer consumption) and the load average
and the CPU time each process got are printed next to them. The last lines, prefixed ``BENCH_JSON``,
hold one JSON object per measurement. The plot of validation error against wall time and the curves
as JSON are written to ``--out`` (default ``outputs/bench_online/``, ignored by git).

What is compared
----------------
Both arms train the same model from the same initial weights (``torch.manual_seed`` before building
it): ``OperatorModule`` with an FNO (n_modes 16, width 64, 4 layers) on ``burgers1d``
(``problem_args {n_out: 1}``: u0 -> u(T=1), 1024 points), task ``initial_to_final``, rel. L2 loss,
batch 20, AdamW lr 1e-3 wd 1e-4, one torch thread in the trainer (``--threads``), a real
``lightning.Trainer`` (CPU, no logger, checkpointing, progress bar or Lightning validation), each arm for ``--budget``
seconds of wall time counted from the ``trainer.fit`` call. ``Trainer(max_time=budget)`` is set, but
Lightning starts that clock at ``on_train_start``, *after* it has fetched the first batch, which for
the online arm means after the worker's start-up and the wait for the watermark; so a callback with
its own clock from the ``fit`` call stops both arms (``trainer.should_stop``, as Lightning's ``Timer``
does), and ``max_time`` is only a backstop. Learning rate:
``OperatorModule``'s step-count cosine cannot be used (a time budget gives no step count; Lightning's
``estimated_stepping_batches`` is infinite under ``max_time``), so ``scheduler="none"`` and a callback
sets ``lr = 1e-3 * (1 + cos(pi * t / budget)) / 2`` from the elapsed training time ``t`` before every
step (``--schedule cosine-time``, the default: both arms end at lr ~0, so the final errors are not
caught on a constant-lr spike), or leaves it at 1e-3 (``--schedule constant``).

*Offline*: ``OfflineDataModule`` over a fixed file of ``--offline-trajectories`` (default 500)
trajectories of the training stream (seed 0) solved with ``pdebench.data.generate.generate_dataset``
**before** the clock starts (two extra trajectories fill the module's obligatory val/test splits;
the arm trains on exactly the requested number). Normalisation: statistics of its training split.

*Online*: ``OnlineDataModule`` (``configs/burgers1d/fno_online.yaml``'s data settings: 1 solver
worker process, worker batch 32, reservoir policy ``"reservoir"``, capacity 2000, watermark 200,
1000 samples per epoch), training stream seed 0 as well (so its first trajectories are the offline
file's). The worker process is spawned when Lightning asks for the train loader, inside the
``fit`` call: its start-up and the wait for the watermark are inside the budget. Normalisation: the
calibration stream (seed 3, 100 trajectories, solved before the clock), with
``OnlineDataModule.normalization_stats`` as shipped: inputs (frame 0) and outputs (last frame) apart,
as the offline module computes them on its training split (``pair_statistics``; u(T=1) has ~40x less
spread than u0).

Both final models are evaluated on the **same held-out set**: ``--val-trajectories`` (default 200)
trajectories of the online module's validation stream (seed 1), which neither arm trains on, with
``pdebench.core.metrics.nrmse`` (relative L2, mean over samples), after the fit (off the clock).
During the fit a callback evaluates the first ``--curve-trajectories`` (default 20) of them every
``--eval-every`` seconds (default budget / 12) for the curve; this costs about the same in both arms
(the time is reported) and is inside the budget.

Reported per arm: final validation error, steps, samples consumed, unique trajectories seen (offline:
``min(n_train, samples)``; online: samples with ``times_seen >= 1`` in the reservoir's histogram, one
pair per trajectory), trainer CPU share. Online only: the fraction of training time spent waiting for
data (``Reservoir.stats()["wait_time_s"]`` / training time; also split into the start-up wait before
the first batch and the rest), worker production (trajectories offered to the reservoir per second)
against trainer consumption (samples per second), the worker's CPU time, and the bytes the resident
samples actually hold (unique tensor storages) against their raw size.

Reservoir micro-benchmark
-------------------------
For each policy (``fifo``, ``firo``, ``reservoir``), capacity ``--micro-capacity`` (default 2000,
the config's), watermark 1, samples shaped as the online feeder makes them (x ``(1, 1024)``, y
``(1, 1, 1024)`` float32: 8 KiB raw), in a fresh subprocess each (clean RSS):

* *fill*: ``put`` into an empty reservoir until full (samples made beforehand, off the clock);
* *churn*: alternating ``get`` + ``put`` on a full reservoir (per-op time of each);
* *get on full*: ``get`` rate on a full reservoir (``fifo``/``firo`` remove, so this drains it);
* *threaded*: a producer thread ``put``s ``4 x capacity`` samples while the main thread ``get``s as
  fast as it can until the producer is done and closes (feeder and trainer do this, the trainer much
  slower): puts/s and gets/s over that time;
* *memory*: samples streamed in batches of 32, every batch followed by 32 ``get``s, for
  ``5 x capacity`` puts: peak of the unique tensor-storage bytes of resident samples, peak RSS
  growth over the start (``/proc/self/statm``) and the Python-object bytes (``tracemalloc``, which
  does not see torch's tensor allocator), each as a ratio to ``capacity x 8 KiB``. Two sample
  variants: ``owned`` (each sample its own tensors, which is what ``OnlineDataModule``'s feeder puts:
  it clones every pair) and ``views`` (views into the batch tensor ``(32, 2, 1, 1024)``, as the
  feeder put them before it cloned: a resident sample keeps its whole batch alive).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import io
import json
import logging
import math
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: _report.py sits next to it
from _report import Report, fmt, machine_info  # noqa: E402

REPORT = Report()
say, status, table, record = REPORT.say, REPORT.status, REPORT.table, REPORT.record

SEED = 0
PROBLEM, PROBLEM_ARGS = "burgers1d", {"n_out": 1}
MODEL_ARGS = {"n_modes": 16, "hidden_channels": 64, "n_layers": 4}
OPTIM = {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 1e-4, "scheduler": "none"}  # OptimConfig fields
POLICIES = ("fifo", "firo", "reservoir")


# -- output --------------------------------------------------------------------------------------


def quiet_lightning() -> None:
    """Silence Lightning's per-fit banners and the warnings this setting triggers on purpose."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning", "pdebench"):
        logging.getLogger(name).setLevel(logging.ERROR)
    for message in (r".*does not have many workers.*", r".*number of training batches.*", r".*log_every_n_steps.*",
                    r".*val_dataloader.*", r".*validation_step.*", r".*Checkpoint directory.*",
                    r".*IterableDataset.*", r".*max_epochs.*"):
        warnings.filterwarnings("ignore", message=message)
    try:
        from lightning.fabric.utilities.warnings import PossibleUserWarning

        warnings.filterwarnings("ignore", category=PossibleUserWarning)
    except ImportError:  # pragma: no cover
        pass


def rss_bytes() -> int:
    """Current resident set size of this process (Linux ``/proc/self/statm``)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def tensors_in(obj):
    """Every torch tensor inside nested tuples/lists/dicts."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (tuple, list)):
        for item in obj:
            yield from tensors_in(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from tensors_in(item)


def storage_bytes(samples) -> tuple[int, int]:
    """``(bytes of the unique tensor storages the samples keep alive, raw bytes of the samples' tensors)``."""
    storages: dict[int, int] = {}
    raw = 0
    for sample in samples:
        for t in tensors_in(sample):
            raw += t.numel() * t.element_size()
            storage = t.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
    return sum(storages.values()), raw


# -- the two training arms -----------------------------------------------------------------------


def build_module(dm):
    from pdebench.training.base import OptimConfig
    from pdebench.training.module import OperatorModule

    torch.manual_seed(SEED)  # identical initial weights in both arms
    return OperatorModule(model="fno", model_args=MODEL_ARGS, in_channels=dm.in_channels, out_channels=dm.out_channels,
                          spatial_dims=dm.spatial_dims, history=dm.history, loss="rel_l2", optim=OptimConfig(**OPTIM))


@torch.no_grad()
def evaluate(module, x: torch.Tensor, y: torch.Tensor, chunk: int = 100) -> float:
    """Mean relative L2 error (``nrmse``) of ``module(x)`` against ``y``, both ``(N, 1, X)``."""
    from pdebench.core.metrics import nrmse

    was_training = module.training
    module.eval()
    pred = torch.cat([module(x[i : i + chunk]) for i in range(0, len(x), chunk)])
    module.train(was_training)
    return float(nrmse(pred, y, time_axis=False))


def schedule_lr(lr: float, elapsed: float, budget: float, schedule: str) -> float:
    """Learning rate at ``elapsed`` seconds of a ``budget``: constant, or cosine over the wall-clock budget."""
    if schedule == "constant":
        return lr
    return 0.5 * lr * (1 + math.cos(math.pi * min(1.0, elapsed / budget)))


def _curve_callback(x_curve, y_curve, eval_every: float, online: bool, budget: float, schedule: str):
    import lightning as L

    class Curve(L.Callback):
        """The clock of an arm, from the ``trainer.fit`` call (``t0``, set by :func:`run_arm`): stops
        training once ``budget`` seconds have passed, sets the learning rate from the elapsed time
        (``schedule``), evaluates the curve subset every ``eval_every`` s, counts steps and samples,
        and snapshots the reservoir (start of training, first batch, reservoir full, end)."""

        def __init__(self) -> None:
            self.points: list[dict] = []
            self.steps = self.samples = 0
            self.eval_s = 0.0
            self.t0 = self.train_s = self.train_start_s = None
            self.full_s = self.cpu_at_full = None
            self.workers_at_full: dict = {}
            self.first_batch_s = None
            self.startup_wait_s = 0.0
            self.next_eval = 0.0
            self.cpu0 = self.cpu_s = None
            self.stream: dict = {}
            self.workers: dict = {}
            self.live_memory: dict = {}
            self.wait_at_start = 0.0
            self.step_t: list[float] = []  # start of every step, s since the fit call
            self.resident: list[int] = []  # online: resident samples at every step start

        def _eval(self, pl_module) -> None:
            start = time.monotonic()
            err = evaluate(pl_module, x_curve, y_curve)
            self.eval_s += time.monotonic() - start
            self.points.append({"t": start - self.t0, "steps": self.steps, "samples": self.samples, "val_rel_l2": err})

        def on_train_start(self, trainer, pl_module) -> None:
            self.train_start_s = time.monotonic() - self.t0
            if online:
                self.wait_at_start = trainer.datamodule.stream_stats().get("wait_time_s", 0.0)
            self._eval(pl_module)
            self.next_eval = self.train_start_s + eval_every

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            now = time.monotonic() - self.t0
            self.step_t.append(now)
            lr = schedule_lr(OPTIM["lr"], now, budget, schedule)
            for group in trainer.optimizers[0].param_groups:
                group["lr"] = lr
            if online:
                dm = trainer.datamodule
                self.resident.append(len(dm.reservoir))
                if self.full_s is None and self.resident[-1] >= dm.reservoir.capacity:
                    self.full_s, self.cpu_at_full = now, time.process_time() - self.cpu0
                    self.workers_at_full = worker_cpu(dm.pool.pids if dm.pool is not None else [])
            if self.first_batch_s is None:
                self.first_batch_s = now
                if online:
                    self.startup_wait_s = trainer.datamodule.stream_stats().get("wait_time_s", 0.0)

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            self.steps += 1
            self.samples += len(batch[0])
            if time.monotonic() - self.t0 >= self.next_eval:
                self._eval(pl_module)
                while self.next_eval <= time.monotonic() - self.t0:
                    self.next_eval += eval_every
            if time.monotonic() - self.t0 >= budget:
                trainer.should_stop = True

        def on_train_end(self, trainer, pl_module) -> None:
            self.train_s = time.monotonic() - self.t0
            self.cpu_s = time.process_time() - self.cpu0
            if online:  # before teardown stops the stream
                dm = trainer.datamodule
                self.stream = dm.stream_stats()
                state = dm.reservoir.state_dict()
                held, raw = storage_bytes(state["samples"])
                self.live_memory = {"resident": len(state["samples"]), "storage_bytes": held, "raw_bytes": raw}
                self.workers = worker_cpu(dm.pool.pids if dm.pool is not None else [])
            self._eval(pl_module)

    return Curve()


def worker_cpu(pids: list[int]) -> dict:
    """CPU seconds and lifetime of the worker processes (psutil, if installed)."""
    try:
        import psutil
    except ImportError:  # pragma: no cover
        return {}
    cpu, life = 0.0, 0.0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            p = psutil.Process(pid)
            times = p.cpu_times()
            cpu += times.user + times.system
            life = max(life, time.time() - p.create_time())
    return {"worker_cpu_s": cpu, "worker_alive_s": life}


def run_arm(name: str, dm, budget: float, x_curve, y_curve, eval_every: float, schedule: str) -> dict:
    """Fit for ``budget`` seconds of wall time counted from the ``trainer.fit`` call.

    ``Trainer(max_time=budget)`` is set too, but its clock starts at ``on_train_start``, after Lightning
    has already fetched the first batch: for the online arm that is after the worker's start-up and the
    wait for the watermark, which it would not charge. The ``Curve`` callback's clock, started here,
    stops both arms first."""
    import lightning as L
    from lightning.pytorch.callbacks import Timer

    module = build_module(dm)
    curve = _curve_callback(x_curve, y_curve, eval_every, online=(name == "online"), budget=budget, schedule=schedule)
    load0 = os.getloadavg()[0]
    sink = io.StringIO()
    start = time.perf_counter()
    curve.t0, curve.cpu0 = time.monotonic(), time.process_time()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        trainer = L.Trainer(accelerator="cpu", devices=1, max_time=datetime.timedelta(seconds=budget), logger=False,
                            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                            limit_val_batches=0, num_sanity_val_steps=0, callbacks=[curve])
        trainer.fit(module, datamodule=dm)
    fit_s = time.perf_counter() - start
    timer = next(c for c in trainer.callbacks if isinstance(c, Timer))
    return {"module": module, "curve": curve, "fit_s": fit_s, "timer_s": timer.time_elapsed("train"),
            "loadavg_start": load0, "loadavg_end": os.getloadavg()[0], "threads": torch.get_num_threads()}


def bench_training(args, common: dict, folder: Path) -> None:
    from pdebench.data.datamodules import OfflineDataModule
    from pdebench.data.generate import generate_dataset
    from pdebench.data.online import OnlineDataModule
    from pdebench.problems import PROBLEMS

    budget = args.budget
    eval_every = args.eval_every or budget / 12
    online_dm = OnlineDataModule(problem=PROBLEM, problem_args=PROBLEM_ARGS, task="initial_to_final",
                                 num_workers=args.workers, worker_batch_size=32, capacity=args.capacity,
                                 policy="reservoir", watermark=args.watermark, samples_per_epoch=1000,
                                 val_trajectories=args.val_trajectories, test_trajectories=16,
                                 calibration_trajectories=100, batch_size=20, seed=SEED)
    on_stats = {k: float(v[0]) for k, v in online_dm.normalization_stats().items()}  # solves the calibration set
    say(f"  online normalisation: x_std {on_stats['x_std']:.4g}, y_std {on_stats['y_std']:.4g} "
        f"(calibration stream, seed {SEED + 3})")
    with status(f"solving the held-out set ({args.val_trajectories} trajectories of the validation stream, seed {SEED + 1})"):
        val = online_dm.trajectories("val")  # (n, 2, 1, X): the online module's own val stream
    x_val, y_val = val[:, 0], val[:, -1]
    n_curve = min(args.curve_trajectories, len(val))
    x_curve, y_curve = x_val[:n_curve], y_val[:n_curve]

    runs: dict[str, dict] = {}
    generation = None
    order = ["offline", "online"] if args.order == "offline-first" else ["online", "offline"]
    for arm in order:
        if arm in args.skip:
            continue
        if arm == "offline":
            n = args.offline_trajectories
            path = folder / "burgers1d_offline.h5"
            with status(f"generating the offline data set ({n} + 2 trajectories, seed {SEED}), before the clock"):
                summary = generate_dataset(PROBLEMS.build(PROBLEM, **PROBLEM_ARGS), path, num_samples=n + 2, seed=SEED,
                                           batch_size=50)
            generation = {"trajectories": n + 2, "wall_s": summary.wall_time_s,
                          "trajectories_per_s": summary.samples_per_second, "bytes": summary.bytes_written}
            say(f"  offline data: {n + 2} trajectories solved in {summary.wall_time_s:.1f} s "
                f"({summary.samples_per_second:.0f} trajectories/s, one thread, this process), "
                f"{summary.bytes_written / 2**20:.1f} MiB")
            dm = OfflineDataModule(str(path), task="initial_to_final", train_fraction=n / (n + 2), val_fraction=1 / (n + 2),
                                   batch_size=20, seed=SEED)
            assert len(dm.splits["train"]) == n, dm.splits
        else:
            dm = online_dm
        with status(f"{arm}: training for {budget:.0f} s of wall time"):
            runs[arm] = run_arm(arm, dm, budget, x_curve, y_curve, eval_every, args.schedule)
        runs[arm]["final_val_rel_l2"] = evaluate(runs[arm]["module"], x_val, y_val)
        if arm == "offline":
            runs[arm]["n_train"] = n
        if arm == "offline":
            off_stats = {k: float(v[0]) for k, v in dm.normalization_stats().items()}
            say(f"  offline normalisation: x_std {off_stats['x_std']:.4g}, y_std {off_stats['y_std']:.4g} (training split)")
        say(f"  {arm}: {runs[arm]['curve'].steps} steps in {runs[arm]['curve'].train_s:.1f} s, final val rel. L2 "
            f"{runs[arm]['final_val_rel_l2']:.4f}")

    # ---- per-arm figures
    rows, per_arm = [], {}
    for arm in ("offline", "online"):
        if arm not in runs:
            continue
        r, c = runs[arm], runs[arm]["curve"]
        train_s = c.train_s
        if arm == "offline":
            unique = min(r["n_train"], c.samples)
            epochs = c.samples / r["n_train"]
        else:
            hist = c.stream.get("times_seen_histogram", {})
            unique = sum(v for k, v in hist.items() if int(k) >= 1)
            epochs = c.samples / unique if unique else float("nan")
        per_arm[arm] = fields = {
            "final_val_rel_l2": r["final_val_rel_l2"], "curve_final_val_rel_l2": c.points[-1]["val_rel_l2"],
            "curve_best_val_rel_l2": min(p["val_rel_l2"] for p in c.points), "steps": c.steps, "samples": c.samples,
            "unique_trajectories": unique, "mean_times_seen": epochs, "train_s": train_s, "timer_s": r["timer_s"],
            "fit_s": r["fit_s"], "steps_per_s": c.steps / train_s, "samples_per_s": c.samples / train_s,
            "first_batch_s": c.first_batch_s, "eval_s": c.eval_s, "evals": len(c.points),
            "trainer_cpu_share": c.cpu_s / train_s, "arm_loadavg_start": r["loadavg_start"], "arm_loadavg_end": r["loadavg_end"],
            "curve": c.points,
        }
        fields["step_t"] = c.step_t
        rows.append([arm, f"{fields['final_val_rel_l2']:.4f}", f"{fields['curve_best_val_rel_l2']:.4f}", str(c.steps),
                     f"{fields['steps_per_s']:.2f}", str(c.samples), str(unique), f"{epochs:.1f}", f"{train_s:.1f}",
                     f"{fields['first_batch_s']:.1f}", f"{c.eval_s:.1f}", f"{100 * fields['trainer_cpu_share']:.0f}%",
                     f"{r['loadavg_start']:.1f}/{r['loadavg_end']:.1f}"])
    table(f"online vs offline training, burgers1d u0 -> u(T), FNO 16 modes x 64 x 4, batch 20, AdamW lr 1e-3 {args.schedule}, "
          f"budget {budget:.0f} s per arm, evaluated on {len(val)} held-out trajectories (seed {SEED + 1})",
          ["arm", "final val rel L2", "best on curve*", "steps", "steps/s", "samples", "unique traj.", "times each seen",
           "train s", "1st batch s", "eval s", "trainer CPU", "load avg"], rows)
    say(f"  * curve: the first {n_curve} held-out trajectories, every {eval_every:.0f} s (the time is inside the budget, "
        f"both arms alike); 'final' uses all {len(val)}, after the fit.")
    for arm, fields in per_arm.items():
        record(bench="online_training_arm", arm=arm, quick=args.quick, budget_s=budget, schedule=args.schedule,
               online_stats="module" if arm == "online" else None,
               **{k: v for k, v in fields.items() if k not in ("curve", "step_t")}, **common)

    # ---- comparison
    if len(per_arm) == 2:
        off, on = per_arm["offline"], per_arm["online"]
        ratio = on["final_val_rel_l2"] / off["final_val_rel_l2"]
        improvement = 1 - ratio
        steps_ratio = on["steps_per_s"] / off["steps_per_s"]
        say(f"[bold]online / offline validation error: {ratio:.3f}[/bold] -> online is "
            f"{'better' if improvement > 0 else 'worse'} by {abs(100 * improvement):.1f}% (Melissa reports +16% for FNO); "
            f"unique trajectories {on['unique_trajectories']} vs {off['unique_trajectories']}; "
            f"trainer steps/s online/offline {steps_ratio:.3f}")
        record(bench="online_vs_offline", quick=args.quick, budget_s=budget, schedule=args.schedule,
               online_stats="module", val_trajectories=len(val),
               offline_trajectories=args.offline_trajectories, online_val_rel_l2=on["final_val_rel_l2"],
               offline_val_rel_l2=off["final_val_rel_l2"], error_ratio_online_over_offline=ratio,
               improvement_pct=100 * improvement, online_steps=on["steps"], offline_steps=off["steps"],
               steps_per_s_ratio_online_over_offline=steps_ratio, online_unique_trajectories=on["unique_trajectories"],
               offline_unique_trajectories=off["unique_trajectories"], order=args.order, **common)

    # ---- online data path: waiting, production vs consumption, memory
    if "online" in runs:
        c = runs["online"]["curve"]
        s, fields = c.stream, per_arm["online"]
        wait = s.get("wait_time_s", float("nan"))
        train_s = c.train_s
        produced = s.get("offered", 0) / train_s
        consumed = s.get("consumed", 0) / train_s
        worker_share = (c.workers.get("worker_cpu_s", float("nan")) / c.workers["worker_alive_s"]
                        if c.workers.get("worker_alive_s") else float("nan"))
        mem = c.live_memory
        mem_ratio = mem["storage_bytes"] / mem["raw_bytes"] if mem.get("raw_bytes") else float("nan")
        # waits, all inside the budget (clock from the fit call): before on_train_start (Lightning fetches the first
        # batch before it starts its own max_time clock), then up to the first step, then during training
        pre, startup, steady = c.wait_at_start, c.startup_wait_s - c.wait_at_start, wait - c.startup_wait_s
        # trainer step rate while the worker fills the reservoir at full speed (competing for the CPUs) and once it
        # is full (then production is paced by consumption); the offline arm's rate over the same time windows
        t_full = c.full_s

        def rate(step_t: list[float], lo: float, hi: float) -> float:
            n = sum(lo <= t < hi for t in step_t)
            return n / (hi - lo) if hi > lo else float("nan")

        phases = {}
        if t_full is not None and c.first_batch_s is not None:
            for arm_name in per_arm:
                st = per_arm[arm_name]["step_t"]
                phases[arm_name] = {"filling": rate(st, c.first_batch_s, t_full), "full": rate(st, t_full, c.train_s)}
        cpu_full = {}
        if t_full is not None and c.workers_at_full and c.workers:
            cpu_full = {"trainer_filling": c.cpu_at_full / t_full, "trainer_full": (c.cpu_s - c.cpu_at_full) / (c.train_s - t_full),
                        "worker_full": (c.workers["worker_cpu_s"] - c.workers_at_full["worker_cpu_s"]) / (c.train_s - t_full),
                        "worker_filling": c.workers_at_full["worker_cpu_s"] / c.workers_at_full["worker_alive_s"]}

        def both(key: str) -> str:
            return " / ".join(f"{phases[a][key]:.2f}" for a in ("online", "offline") if a in phases) or "-"

        table("online data path (reservoir policy 'reservoir', 1 solver worker process)", ["figure", "value"], [
            ["wait for data / training time (target <= 5%)", f"{100 * wait / train_s:.1f}%  ({wait:.2f} s of {train_s:.1f} s)"],
            ["  before Lightning's on_train_start (worker start-up, watermark)", f"{100 * pre / train_s:.1f}%  ({pre:.2f} s)"],
            ["  from on_train_start to the first step", f"{100 * startup / train_s:.1f}%  ({startup:.2f} s)"],
            ["  after the first step", f"{100 * steady / train_s:.2f}%  ({steady:.2f} s)"],
            ["first step after the fit call", f"{c.first_batch_s:.2f} s (offline: {per_arm['offline']['first_batch_s']:.2f} s)"
             if "offline" in per_arm else f"{c.first_batch_s:.2f} s"],
            ["reservoir full (capacity) after", f"{t_full:.1f} s" if t_full is not None else "never"],
            ["trainer steps/s while it fills: online / offline (same window)", both("filling")],
            ["trainer steps/s once full: online / offline (same window)", both("full")],
            ["CPU share (cores) while it fills: trainer process / worker",
             f"{cpu_full['trainer_filling']:.2f} / {cpu_full['worker_filling']:.2f}" if cpu_full else "-"],
            ["CPU share (cores) once full: trainer process / worker",
             f"{cpu_full['trainer_full']:.2f} / {cpu_full['worker_full']:.2f}" if cpu_full else "-"],
            ["worker production (trajectories offered to the reservoir / s)", f"{produced:.0f}"],
            ["trainer consumption (samples / s, with repeats)", f"{consumed:.0f}"],
            ["production / consumption", f"{produced / consumed:.2f}" if consumed else "-"],
            ["worker CPU (s) / worker lifetime", f"{c.workers.get('worker_cpu_s', float('nan')):.0f} s / "
             f"{c.workers.get('worker_alive_s', float('nan')):.0f} s ({100 * worker_share:.0f}%)"],
            ["solver alone, this process before the clock (trajectories / s)", fmt(generation and generation["trajectories_per_s"])],
            ["feeder blocked in put (s)", f"{s.get('put_wait_s', float('nan')):.2f}"],
            ["received / evicted / rejected / dropped", f"{s.get('received')} / {s.get('evicted')} / {s.get('rejected')} / "
             f"{s.get('dropped')}"],
            ["times-seen histogram (times: samples)", ", ".join(f"{k}: {v}" for k, v in list(s.get("times_seen_histogram", {}).items())[:8])],
            ["resident samples at the end: storage held / raw bytes",
             f"{mem.get('storage_bytes', 0) / 2**20:.1f} MiB / {mem.get('raw_bytes', 0) / 2**20:.1f} MiB = {mem_ratio:.2f}x"],
        ])
        record(bench="online_data_path", quick=args.quick, budget_s=budget, train_s=train_s, wait_time_s=wait,
               wait_fraction=wait / train_s, wait_before_train_start_s=pre, wait_train_start_to_first_step_s=startup,
               steady_wait_s=steady, steady_wait_fraction=steady / train_s,
               first_batch_s=c.first_batch_s, reservoir_full_at_s=t_full, cpu_shares=cpu_full,
               steps_per_s_while_filling={a: v["filling"] for a, v in phases.items()},
               steps_per_s_once_full={a: v["full"] for a, v in phases.items()},
               worker_trajectories_per_s=produced, trainer_samples_per_s=consumed,
               production_over_consumption=produced / consumed if consumed else None,
               solver_alone_trajectories_per_s=generation and generation["trajectories_per_s"],
               worker_cpu_s=c.workers.get("worker_cpu_s"), worker_alive_s=c.workers.get("worker_alive_s"),
               live_storage_bytes=mem.get("storage_bytes"), live_raw_bytes=mem.get("raw_bytes"),
               live_storage_over_raw=mem_ratio,
               reservoir_stats={k: v for k, v in s.items() if not k.endswith("histogram")},
               times_seen_histogram=s.get("times_seen_histogram"), **common)

    if runs:
        plot(runs, per_arm, Path(args.out), budget)


def plot(runs: dict, per_arm: dict, out: Path, budget: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_online_curves.json").write_text(json.dumps({arm: f["curve"] for arm, f in per_arm.items()}, indent=1))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = {"offline": "tab:blue", "online": "tab:orange"}
    for arm, fields in per_arm.items():
        pts = fields["curve"]
        label = f"{arm} (final {fields['final_val_rel_l2']:.4f}, {fields['unique_trajectories']} unique traj.)"
        axes[0].plot([p["t"] for p in pts], [p["val_rel_l2"] for p in pts], "o-", ms=3, color=colors[arm], label=label)
        axes[1].plot([p["steps"] for p in pts], [p["val_rel_l2"] for p in pts], "o-", ms=3, color=colors[arm], label=arm)
        axes[0].axhline(fields["final_val_rel_l2"], color=colors[arm], lw=0.8, ls="--")
    axes[0].set_xlabel("wall time since trainer.fit() (s)")
    axes[1].set_xlabel("training steps (batch 20)")
    for ax in axes:
        ax.set_yscale("log")
        ax.set_ylabel("validation relative L2")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    axes[1].legend(fontsize=8)
    fig.suptitle(f"burgers1d FNO, online vs offline at {budget:.0f} s each (points: curve subset; dashed: final, full held-out set)",
                 fontsize=9)
    fig.tight_layout()
    path = out / "bench_online.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    say(f"  plot: {path}; curves: {out / 'bench_online_curves.json'}")


# -- reservoir micro-benchmark -------------------------------------------------------------------


def _make_samples(count: int, variant: str, generator: torch.Generator) -> list:
    """``count`` samples as the online feeder cuts them (x ``(1, X)``, y ``(1, 1, X)``), in batches of 32."""
    from pdebench.data.online import training_pairs

    samples = []
    while len(samples) < count:
        frames = torch.randn(32, 2, 1, 1024, generator=generator)
        pairs = training_pairs(frames, "initial_to_final", 1, 1)
        if variant == "owned":
            pairs = [(x.clone(), y.clone()) for x, y in pairs]
        samples.extend(pairs)
    return samples[:count]


def reservoir_child(policy: str, variant: str, capacity: int, threaded_n: int) -> dict:
    """One policy and sample variant, in its own process: op rates, then memory at capacity."""
    import tracemalloc

    from pdebench.data.reservoir import Reservoir, ReservoirClosed, ReservoirConfig

    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(SEED)
    sample_bytes = 2 * 1024 * 4
    out = {"policy": policy, "variant": variant, "capacity": capacity, "sample_raw_bytes": sample_bytes}

    # memory first, in a fresh process (the rate phases would leave freed heap behind that hides RSS growth):
    # stream samples made on the fly in batches of 32, 5 x capacity puts, 32 gets before every batch once full
    _make_samples(64, variant, g)  # imports (lightning, via pdebench.data.online) and first-call set-up, before the baseline
    storage_bytes(_make_samples(32, variant, g))
    gc.collect()
    base_rss = rss_bytes()
    r = Reservoir(ReservoirConfig(capacity=capacity, policy=policy, watermark=1, seed=SEED))
    peak_storage = peak_rss = 0
    puts = 0
    while puts < 5 * capacity:
        if puts >= capacity:  # after the fill: as many gets as puts, gets first (a full fifo would refuse the puts)
            for _ in range(32):
                r.get()
        for sample in _make_samples(32, variant, g):
            r.put(sample, (2, puts), block=False)
            puts += 1
        held, _ = storage_bytes(r.state_dict()["samples"])
        peak_storage = max(peak_storage, held)
        peak_rss = max(peak_rss, rss_bytes() - base_rss)
    mem_stats = {k: v for k, v in r.stats().items() if k in ("received", "evicted", "rejected", "removed", "resident")}
    theory = capacity * sample_bytes
    del r
    gc.collect()
    # Python objects per resident sample (tensor wrappers, tuples, entries): tracemalloc over one fill
    # (tracemalloc does not see torch's tensor allocator, and its own bookkeeping would inflate the RSS above)
    tracemalloc.start()
    base_py = tracemalloc.get_traced_memory()[0]
    r = Reservoir(ReservoirConfig(capacity=capacity, policy=policy, watermark=1, seed=SEED))
    puts = 0
    while puts < capacity:
        for sample in _make_samples(min(32, capacity - puts), variant, g):
            r.put(sample, (3, puts))
            puts += 1
    py_peak = tracemalloc.get_traced_memory()[0] - base_py
    tracemalloc.stop()
    del r
    gc.collect()
    out.update(theoretical_bytes=theory, peak_storage_bytes=peak_storage, peak_storage_ratio=peak_storage / theory,
               peak_rss_delta_bytes=peak_rss, peak_rss_ratio=peak_rss / theory, python_objects_bytes=py_peak,
               python_bytes_per_sample=py_peak / capacity, mem_stats=mem_stats)

    # rates (samples made beforehand)
    samples = _make_samples(2 * capacity, variant, g)
    r = Reservoir(ReservoirConfig(capacity=capacity, policy=policy, watermark=1, seed=SEED))
    start = time.perf_counter()
    for i in range(capacity):
        r.put(samples[i], (0, i))
    out["fill_put_per_s"] = capacity / (time.perf_counter() - start)
    get_s = put_s = 0.0
    for i in range(capacity, 2 * capacity):
        t0 = time.perf_counter()
        r.get()
        t1 = time.perf_counter()
        r.put(samples[i], (0, i))
        t2 = time.perf_counter()
        get_s += t1 - t0
        put_s += t2 - t1
    out["churn_get_per_s"], out["churn_put_per_s"] = capacity / get_s, capacity / put_s
    out["churn_pair_per_s"] = capacity / (get_s + put_s)
    start = time.perf_counter()
    for _ in range(capacity):
        r.get()
    out["full_get_per_s"] = capacity / (time.perf_counter() - start)
    del r

    # threaded: a producer thread puts threaded_n samples while the main thread gets until it is done
    r = Reservoir(ReservoirConfig(capacity=capacity, policy=policy, watermark=1, seed=SEED))
    pool = samples

    def produce():
        with contextlib.suppress(ReservoirClosed):
            for i in range(threaded_n):
                r.put(pool[i % len(pool)], (1, i))
        r.close()

    producer = threading.Thread(target=produce)
    start = time.perf_counter()
    producer.start()
    with contextlib.suppress(ReservoirClosed):
        while True:
            r.get()
    wall = time.perf_counter() - start
    producer.join()
    st = r.stats()
    out["threaded_put_per_s"], out["threaded_get_per_s"] = st["received"] / wall, st["consumed"] / wall
    out["threaded_stats"] = {k: st[k] for k in ("received", "consumed", "evicted", "wait_time_s", "put_wait_s")}
    del r, samples, pool
    gc.collect()

    return out


def bench_reservoir(args, common: dict) -> None:
    rows_speed, rows_mem = [], []
    threaded_n = 4 * args.micro_capacity
    for policy in POLICIES:
        for variant in ("views", "owned"):
            with status(f"reservoir micro-benchmark: {policy}, {variant} samples (subprocess)"):
                proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--reservoir-child", policy, variant,
                                       str(args.micro_capacity), str(threaded_n)], capture_output=True, text=True,
                                      env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("CHILD_JSON ")), None)
            if proc.returncode or line is None:
                say(f"[red]reservoir child {policy}/{variant} failed[/red]: {proc.stderr[-2000:]}")
                continue
            res = json.loads(line.removeprefix("CHILD_JSON "))
            record(bench="reservoir_micro", quick=args.quick, **res, **common)
            if variant == "owned":
                rows_speed.append([policy, f"{res['fill_put_per_s']:,.0f}", f"{res['churn_put_per_s']:,.0f}",
                                   f"{res['churn_get_per_s']:,.0f}", f"{res['full_get_per_s']:,.0f}",
                                   f"{res['threaded_put_per_s']:,.0f} / {res['threaded_get_per_s']:,.0f}"])
            rows_mem.append([f"{policy} / {variant}", f"{res['theoretical_bytes'] / 2**20:.1f}",
                             f"{res['peak_storage_bytes'] / 2**20:.1f} ({res['peak_storage_ratio']:.2f}x)",
                             f"{res['peak_rss_delta_bytes'] / 2**20:.1f} ({res['peak_rss_ratio']:.2f}x)",
                             f"{res['python_bytes_per_sample']:.0f}"])
    cap = args.micro_capacity
    table(f"reservoir micro-benchmark: samples/s (capacity {cap}, 8 KiB samples, owned tensors; one thread except 'threaded')",
          ["policy", "put (filling)", "put (full, churn)", "get (full, churn)", "get (full)", "threaded put / get"], rows_speed)
    table(f"reservoir memory at capacity ({cap} x 8 KiB raw), peak over 5 x capacity streamed puts with as many gets",
          ["policy / samples", "raw MiB", "tensor storage held MiB", "RSS growth MiB", "Python B/sample"], rows_mem)
    say("  owned = what OnlineDataModule's feeder puts (each pair cloned); views = views into the solved batch of 32 "
        "(the feeder before it cloned).")


# -- main ----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="30 s per arm, 200 offline trajectories, smaller micro-benchmark")
    parser.add_argument("--budget", type=float, default=None, help="wall-clock seconds of training per arm (default 150, quick 30)")
    parser.add_argument("--offline-trajectories", type=int, default=None, help="offline training set (default 500, quick 200)")
    parser.add_argument("--val-trajectories", type=int, default=200, help="held-out trajectories for the final error (default 200)")
    parser.add_argument("--curve-trajectories", type=int, default=20, help="held-out trajectories for the curve (default 20)")
    parser.add_argument("--eval-every", type=float, default=None, help="seconds between curve points (default budget / 12)")
    parser.add_argument("--schedule", choices=["cosine-time", "constant"], default="cosine-time",
                        help="learning rate: cosine from 1e-3 to 0 over the wall-clock budget (default), or constant 1e-3")
    parser.add_argument("--workers", type=int, default=1, help="online solver worker processes (default 1)")
    parser.add_argument("--capacity", type=int, default=2000, help="online reservoir capacity (default 2000)")
    parser.add_argument("--watermark", type=int, default=200, help="online reservoir watermark (default 200)")
    parser.add_argument("--micro-capacity", type=int, default=None, help="micro-benchmark capacity (default 2000, quick 500)")
    parser.add_argument("--order", choices=["offline-first", "online-first"], default="offline-first")
    parser.add_argument("--threads", type=int, default=1, help="torch threads in the trainer (default 1)")
    parser.add_argument("--out", default="outputs/bench_online", help="folder of the plot and curves (default outputs/bench_online)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["offline", "online", "reservoir"], help="parts to leave out")
    parser.add_argument("--reservoir-child", nargs=4, metavar=("POLICY", "VARIANT", "CAPACITY", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.reservoir_child:
        policy, variant, capacity, n = args.reservoir_child
        print("CHILD_JSON " + json.dumps(reservoir_child(policy, variant, int(capacity), int(n))), flush=True)
        return 0

    args.budget = args.budget or (30.0 if args.quick else 150.0)
    args.offline_trajectories = args.offline_trajectories or (200 if args.quick else 500)
    args.micro_capacity = args.micro_capacity or (500 if args.quick else 2000)
    if min(args.budget, args.offline_trajectories, args.val_trajectories, args.curve_trajectories, args.threads,
           args.workers, args.micro_capacity) <= 0 or not 1 <= args.watermark <= args.capacity:
        parser.error("sizes must be positive and 1 <= watermark <= capacity")
    torch.set_num_threads(args.threads)
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)

    import lightning
    import neuralop

    quiet_lightning()  # after importing lightning, which sets its loggers' level at import

    common = machine_info({"lightning": lightning.__version__, "neuraloperator": getattr(neuralop, "__version__", "?")},
                          threads=args.threads)
    start = time.perf_counter()
    say(f"[bold]bench_online[/bold] {'--quick ' if args.quick else ''}budget {args.budget:.0f} s per arm, "
        f"threads={args.threads} on {os.cpu_count()} CPUs, torch {torch.__version__}, lightning {lightning.__version__}, "
        f"load average {common['loadavg_start']:.2f}")
    with tempfile.TemporaryDirectory(prefix="bench_online_") as folder:
        if not {"offline", "online"} <= set(args.skip):
            bench_training(args, common, Path(folder))
    if "reservoir" not in args.skip:
        bench_reservoir(args, common)
    say(f"total {time.perf_counter() - start:.0f} s, load average at end {os.getloadavg()[0]:.2f}, "
        f"peak RSS of this process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10:.0f} MiB")
    REPORT.emit_json()
    return 0


if __name__ == "__main__":
    sys.exit(main())
