"""Online training data: solver workers stream samples into a reservoir that the trainer reads.

Melissa's design (REFERENCE.md): no dataset on disk. :class:`OnlineDataModule` starts a worker
pool (local processes or Ray actors, :mod:`pdebench.data.workers`) and a feeder thread that cuts each
solved batch into training pairs and puts them into a :class:`~pdebench.data.reservoir.Reservoir`
living in the trainer process (DataLoader ``num_workers=0``: loader workers would each copy the
reservoir). Validation and test sets are solved once, in the trainer process, from sample streams no
worker uses (``seed + 1`` and ``seed + 2``; normalisation statistics come from a calibration stream
``seed + 3``).

Scale-out: under DDP every rank owns a reservoir fed by its share of the workers
(``num_workers // world_size``, at least one), which solve only that rank's shard of the training
stream, and draws ``samples_per_epoch // world_size`` pairs per epoch.

Checkpoints hold the stream's state (:meth:`OnlineDataModule.state_dict`): the workers' cursor, the
reservoir (its samples, times seen, counters and RNG state) and the accounting, so a resumed run
continues the stream after every block the stopped run drew and never solves those samples again.
Every exit path (the end of ``fit``, an exception, Ctrl-C, SIGTERM, interpreter exit) stops the
workers, and every way ``fit`` ends writes the stream report ``<log_dir>/stream/rank<r>.json``
(``complete`` false and ``interrupted`` naming the cause when it did not end on its own). Every id
the rank's pool drew is accounted for in it: received, dropped (blew up), lost (with a dead worker)
or returned unused (in flight when the stream stopped; never solved again by this stream).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import threading
import time
import warnings
from pathlib import Path
from collections.abc import Callable
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException
from torch.utils.data import DataLoader, IterableDataset

from pdebench.atomic import atomic_write
from pdebench.data.datamodules import PairDataset, pair_statistics, to_channels_first, trajectory_pairs
from pdebench.data.generate import build_solver, solve_samples
from pdebench.data.ray_feed import RayFeed
from pdebench.data.reservoir import Reservoir, ReservoirClosed, ReservoirConfig
from pdebench.registry import check_at_least_one
from pdebench.data.workers import BACKENDS, LocalWorkerPool, RayWorkerPool, WorkerConfig, make_worker_pool
from pdebench.problems import PROBLEMS
from pdebench.problems.elliptic import SteadyProblem
from pdebench.signals import interruption_cause

log = logging.getLogger(__name__)

# Lightning warns of every IterableDataset with a length that "in combination with multi-process data
# loading (num_workers > 1)" the length could be inaccurate. ReservoirDataset's length is exact
# (samples_per_epoch, which its __iter__ yields) and its DataLoader runs in the trainer process
# (num_workers=0), so the premise never holds here: that one message of that module is ignored.
warnings.filterwarnings("ignore", message=re.escape("Your `IterableDataset` has `__len__` defined."),
                        category=UserWarning, module=r"lightning\.pytorch\.utilities\.data")


def fit_stop_cause(exception: BaseException) -> str:
    """What ended a ``fit`` early, as stream reports record it: ``"SIGTERM"`` (Lightning's
    :class:`~lightning.pytorch.utilities.exceptions.SIGTERMException`, or
    :class:`~pdebench.signals.Terminated`), ``"KeyboardInterrupt"`` (Ctrl-C), or ``"Type: message"``."""
    if isinstance(exception, SIGTERMException):
        return "SIGTERM"
    if isinstance(exception, KeyboardInterrupt):
        return interruption_cause(exception)
    message = str(exception).strip().splitlines()
    return f"{type(exception).__name__}: {message[0]}" if message else type(exception).__name__


def training_pairs(frames: torch.Tensor, task: str, history: int, unroll: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Cut trajectories ``(n, T, C, *space)`` into ``(x, y)`` pairs as :class:`OfflineDataModule` does."""
    dataset = trajectory_pairs(frames, task, history, unroll)
    return [dataset[i] for i in range(len(dataset))]


class ReservoirDataset(IterableDataset):
    """``samples_per_epoch`` pairs drawn from a reservoir (an epoch ends early if the stream ends).

    ``terminated``: polled while waiting for samples (below the watermark); when it turns true the
    wait ends in Lightning's ``SIGTERMException`` (a SIGTERM'd trainer waiting for data stops at once
    instead of after the next batch)."""

    POLL_S = 0.5

    def __init__(self, reservoir: Reservoir, samples_per_epoch: int, terminated: Callable[[], bool] | None = None) -> None:
        self.reservoir, self.samples_per_epoch = reservoir, samples_per_epoch
        self.terminated = terminated

    def _get(self) -> Any:
        if self.terminated is None:
            return self.reservoir.get()
        while True:
            try:
                return self.reservoir.get(timeout=self.POLL_S)
            except TimeoutError:
                if self.terminated():
                    raise SIGTERMException from None

    def __len__(self) -> int:
        """Samples per epoch: gives Lightning a finite epoch (step-based schedules need it)."""
        return self.samples_per_epoch

    def __iter__(self):
        for _ in range(self.samples_per_epoch):
            try:
                sample, _ = self._get()
            except ReservoirClosed:
                return
            yield sample


class OnlineDataModule(L.LightningDataModule):
    """Train on samples that solver workers generate while the model trains.

    Parameters
    ----------
    problem, problem_args, solver_args
        What the workers solve (a registered problem and its solver's arguments).
    task, history, unroll
        ``"next_step"`` windows or ``"initial_to_final"`` pairs, as in the offline module, or, for a
        steady problem (``darcy3d``), ``"pairs"``: its input field (the coefficient) -> its solution.
    num_workers
        Solver processes (local) or actors (Ray), shared among DDP ranks.
    backend, address, ray_init_args
        ``"local"`` processes or ``"ray"`` actors on the Ray cluster at ``address`` (``None``: a
        local Ray); further ``ray.init`` arguments.
    feed
        Read the batches that ``pdebench stream --backend ray --feed NAME`` publishes on the Ray
        cluster at ``address`` instead of starting workers (needs ``backend="ray"``; the stream
        process owns the seeds, so checkpoints then hold only the reservoir).
    worker_batch_size
        Trajectories per solver call.
    capacity, policy, watermark
        The reservoir (``"fifo"``, ``"firo"`` or ``"reservoir"``); training waits below ``watermark``.
    samples_per_epoch
        Pairs per training epoch.
    max_trajectories
        Trajectories the workers solve in all (``None``: until training stops).
    val_trajectories, test_trajectories, calibration_trajectories
        Held-out and statistics sets, solved once from their own streams.
    batch_size, seed
        Loader batch size; the training stream (validation ``seed + 1``, test ``seed + 2``).
    checkpoint_samples
        Save the reservoir's resident samples in checkpoints (``False``: only its counters and RNG
        state; a resumed run then refills it from new samples).
    """

    def __init__(
        self,
        problem: str,
        problem_args: dict[str, Any] | None = None,
        solver_args: dict[str, Any] | None = None,
        task: Literal["next_step", "initial_to_final", "pairs"] = "next_step",
        history: int = 1,
        unroll: int = 1,
        num_workers: int = 2,
        backend: Literal["local", "ray"] = "local",
        address: str | None = None,
        ray_init_args: dict[str, Any] | None = None,
        feed: str | None = None,
        worker_batch_size: int = 8,
        capacity: int = 2048,
        policy: Literal["fifo", "firo", "reservoir"] = "reservoir",
        watermark: int = 256,
        samples_per_epoch: int = 2048,
        max_trajectories: int | None = None,
        val_trajectories: int = 16,
        test_trajectories: int = 16,
        calibration_trajectories: int = 16,
        batch_size: int = 32,
        seed: int = 0,
        checkpoint_samples: bool = True,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if task not in ("next_step", "initial_to_final", "pairs"):
            raise ValueError(f"task must be 'next_step', 'initial_to_final' or 'pairs', got {task!r}")
        if backend not in BACKENDS:
            raise ValueError(f"unknown worker backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        if address is not None and backend != "ray":
            raise ValueError(f"address={address!r} needs backend='ray'")
        if feed is not None and backend != "ray":
            raise ValueError(f"feed={feed!r} is read through Ray; set backend='ray'")
        check_at_least_one(history=history, unroll=unroll, samples_per_epoch=samples_per_epoch, num_workers=num_workers,
                           batch_size=batch_size, val_trajectories=val_trajectories, test_trajectories=test_trajectories,
                           calibration_trajectories=calibration_trajectories)
        self.problem = PROBLEMS.build(problem, **(problem_args or {}))
        if self.problem.solver == "sph":
            raise ValueError(f"{problem} is a particle problem; online training on particle trajectories is not supported "
                             "yet (generate or stream a file with `pdebench generate`/`pdebench stream -o` and read it "
                             "with pdebench.io.particle_file)")
        if self.problem.solver == "fem-mesh":
            raise ValueError(f"{problem} lives on an unstructured mesh; online training on mesh problems is not supported "
                             "yet (generate a file with `pdebench generate` and read it with pdebench.io.mesh_file)")
        if (task == "pairs") != isinstance(self.problem, SteadyProblem):
            raise ValueError(f"task {task!r} on {problem}: the 'pairs' task is for steady problems (input field -> "
                             "solution), which have no other")
        frames = 1 if task == "pairs" else self.problem.n_out + 1
        if task == "next_step" and frames < history + unroll:
            raise ValueError(f"{problem} has {frames} frames; history={history} + unroll={unroll} needs at least {history + unroll}")
        self.worker_config = WorkerConfig(problem, dict(problem_args or {}), dict(solver_args or {}), seed=seed,
                                          batch_size=worker_batch_size, max_samples=max_trajectories)
        self.reservoir_config = ReservoirConfig(capacity=capacity, policy=policy, watermark=watermark, seed=seed)
        self.spatial_dims = self.problem.dim
        self.resolution = tuple(self.problem.spatial_shape)
        self.in_channels = history if task == "next_step" else 1
        self.out_channels = 1
        self.reservoir: Reservoir | None = None
        self.pool: LocalWorkerPool | RayWorkerPool | RayFeed | None = None
        self._feeder: threading.Thread | None = None
        self._held_out: dict[str, torch.Tensor] = {}
        self._held_out_inputs: dict[str, torch.Tensor] = {}  # "pairs": the input fields
        self._resume: dict[str, Any] = {}
        self._accounting = {"cursor": 0, "lost_ids": [], "returned_ids": [], "solver_dropped": 0, "worker_restarts": 0,
                            "blocks": [], "solve_time_s": 0.0, "costs": []}
        self._stream_start = time.perf_counter()
        self._held_out_solve_s: dict[str, float] = {}  # split -> wall seconds its solve took
        self._id_ranges: dict[str, list[list[int]]] = {}  # the last stopped pool's ids by fate
        self._streamed = False  # a stream ran since the last report

    @property
    def history(self) -> int:
        return self.hparams.history if self.hparams.task == "next_step" else 1

    # --------------------------------------------------------------- held-out
    def trajectories(self, split: str) -> torch.Tensor:
        """Held-out trajectories ``(n, T, 1, *space)`` of ``"val"``, ``"test"`` or ``"calibration"``."""
        if split not in self._held_out:
            offset, count = {"val": (1, self.hparams.val_trajectories), "test": (2, self.hparams.test_trajectories),
                             "calibration": (3, self.hparams.calibration_trajectories)}[split]
            solver = build_solver(self.problem, **(self.hparams.solver_args or {}))
            start = time.perf_counter()
            traj = solve_samples(self.problem, solver, self.hparams.seed + offset, np.arange(count))
            self._held_out_solve_s[split] = time.perf_counter() - start
            self._held_out[split] = to_channels_first(traj.fields[self.problem.field_name].float(), self.spatial_dims)
            if self.hparams.task == "pairs":
                self._held_out_inputs[split] = to_channels_first(traj.fields[self.problem.input_name].float(), self.spatial_dims)
        return self._held_out[split]

    def _pairs(self, split: str):
        if self.hparams.task == "pairs":  # (C, *space) -> (1, C, *space), as the offline module's pairs
            outputs = self.trajectories(split)
            return PairDataset(self._held_out_inputs[split][:, 0], outputs[:, 0])
        return trajectory_pairs(self.trajectories(split), self.hparams.task, self.hparams.history, self.hparams.unroll)

    def normalization_stats(self) -> dict[str, torch.Tensor]:
        """Per-channel statistics of the calibration stream's pairs, computed as the offline module
        computes them on its training split (inputs and outputs apart for ``initial_to_final``)."""
        return pair_statistics(self._pairs("calibration"), self.hparams.history)

    # -------------------------------------------------------------- streaming
    def _feed(self) -> None:
        hp = self.hparams
        try:
            for batch in self.pool.batches():
                self._accounting["blocks"].append(tuple(int(i) for i in batch.block))
                self._accounting["solve_time_s"] += float(batch.solve_time_s)
                solved = len(batch.sample_ids)
                self._accounting["costs"].append(  # the cost per sample as the stream goes on (a warm start's curve)
                    [time.perf_counter() - self._stream_start, solved, float(batch.solve_time_s) / max(solved, 1),
                     float(np.mean(batch.iterations)) if batch.iterations else None])
                frames = to_channels_first(batch.fields[self.problem.field_name], self.spatial_dims)
                if hp.task == "pairs":
                    inputs = to_channels_first(batch.fields[self.problem.input_name], self.spatial_dims)
                    pairs = [(inputs[i, 0], frames[i, :1]) for i in range(len(frames))]
                else:
                    pairs = training_pairs(frames, hp.task, hp.history, hp.unroll)
                starts = len(pairs) // max(len(frames), 1)
                # Clone: a view would keep the whole solved batch alive while one of its samples is resident.
                for i, pair in enumerate(pairs):
                    pair = tuple(t.clone() for t in pair)
                    seed, index = batch.sample_ids[i // starts]
                    if not self.reservoir.put(pair, (int(seed), int(index), i % starts)):
                        if self.reservoir.closed:
                            return
        except ReservoirClosed:  # training ended while the feeder waited for room: a normal stop
            return
        except Exception:  # noqa: BLE001 - a feeder failure must stop training visibly
            log.exception("the online feeder failed; closing the reservoir")
        finally:
            self.reservoir.close()

    def _rank(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def start_stream(self) -> None:
        """Start workers, reservoir and feeder (idempotent); a restored state continues its stream."""
        if self.pool is not None:
            return
        hp = self.hparams
        rank, world = self._rank()
        config = dataclasses.replace(self.worker_config, shard=rank, num_shards=world)
        self.reservoir = Reservoir(self.reservoir_config)
        if "reservoir" in self._resume:
            self.reservoir.load_state_dict(self._resume["reservoir"])
        self._accounting.update({k: v for k, v in self._resume.items() if k in self._accounting})
        init_args = dict(hp.ray_init_args or {}) if hp.backend == "ray" else {}
        kwargs = {"init_args": init_args} if hp.backend == "ray" else {}
        if hp.feed is not None:
            self.pool = RayFeed(hp.feed, hp.address, init_args).start()
        else:
            self.pool = make_worker_pool(config, hp.backend, num_workers=max(1, hp.num_workers // world), address=hp.address,
                                         cursor=int(self._accounting["cursor"]), **kwargs).start()
        log.info("rank %d/%d: %d %s workers stream %s from block %d", rank, world, self.pool.num_workers, hp.backend,
                 hp.problem, self.pool.cursor)
        self._streamed = True
        self._stream_start = time.perf_counter()
        self._feeder = threading.Thread(target=self._feed, name="pdebench-feeder", daemon=True)
        self._feeder.start()

    def _sync_accounting(self) -> None:
        """Totals = what the restored (or previous) stream counted + what the running pool counted."""
        pool = self.pool
        if pool is None:
            return
        base = self._resume
        self._accounting.update(
            cursor=pool.cursor,
            lost_ids=[list(i) for i in base.get("lost_ids", [])] + [list(i) for i in pool.lost_ids],
            returned_ids=[list(i) for i in base.get("returned_ids", [])] + [list(i) for i in getattr(pool, "returned_ids", [])],
            solver_dropped=int(base.get("solver_dropped", 0)) + pool.dropped,
            worker_restarts=int(base.get("worker_restarts", 0)) + pool.restarts,
        )

    def stop_stream(self) -> None:
        """Stop workers and feeder; every worker process is terminated."""
        if self.pool is not None:
            self.pool.stop()
        if self.reservoir is not None:
            self.reservoir.close()
        if self._feeder is not None:
            self._feeder.join(timeout=5)
        self._sync_accounting()
        if self.pool is not None:  # fold this pool's counts into the base of any later stream
            self._resume = {k: v for k, v in self._accounting.items() if k not in ("blocks", "costs")}
            if hasattr(self.pool, "id_ranges"):
                self._id_ranges = self.pool.id_ranges()
        self.pool = None

    def setup(self, stage: str | None = None) -> None:
        self.datasets = {"val": self._pairs("val"), "test": self._pairs("test")}

    def teardown(self, stage: str | None = None) -> None:
        self.stop_stream()
        if self._streamed:
            self._write_stream_record()

    def on_exception(self, exception: BaseException) -> None:
        """Lightning calls this on an error, Ctrl-C or SIGTERM (after the callbacks' ``on_exception``):
        stop every worker, then write the stream report marked interrupted (``teardown`` is not
        called on this path)."""
        self.stop_stream()
        if self._streamed:
            self._write_stream_record(interrupted=fit_stop_cause(exception))

    def stream_stats(self) -> dict[str, Any]:
        """Reservoir statistics plus the stream's accounting: cursor, worker restarts, blown-up
        samples dropped by the solver, and the ids lost with dead workers."""
        self._sync_accounting()
        stats = dict(self.reservoir.stats()) if self.reservoir is not None else {}
        acc = self._accounting
        stats.update(cursor=acc["cursor"], worker_restarts=acc["worker_restarts"], solver_dropped=acc["solver_dropped"],
                     lost=len(acc["lost_ids"]), returned_unused=len(acc["returned_ids"]))
        return stats

    def data_card(self) -> dict[str, Any]:
        """What a model trained on this stream has seen (stored in its checkpoints): problem,
        parameters, resolution, task, frame times, the training seed and the held-out seeds, the
        trajectories streamed in so far, the distinct training samples drawn at least once, and
        ``data_cost_s``: the solver wall seconds that made the data it trained on (the workers' solves
        of every batch received, over resumed runs, plus the calibration and validation solves; this
        rank's stream under DDP)."""
        self._sync_accounting()
        times = self.problem.output_times()
        received = sum(stop - start for start, stop in self._accounting["blocks"]) - int(self._accounting["solver_dropped"])
        used = 0
        if self.reservoir is not None:
            used = sum(n for seen, n in self.reservoir.stats()["times_seen_histogram"].items() if int(seen) > 0)
        frames = {"dt_frame": float(times[1] - times[0]), "target_time": float(times[-1] - times[0])} if len(times) > 1 else {}
        return {"problem": self.hparams.problem, "params": dict(self.problem.params()), "source": "online",
                "resolution": list(self.resolution), "task": self.hparams.task, "history": self.history,
                **frames, "seed": self.hparams.seed,
                "held_out_seeds": [self.hparams.seed + k for k in (1, 2, 3)], "train_trajectories": int(max(received, 0)),
                "train_samples_used": int(used),
                "data_cost_s": float(self._accounting["solve_time_s"])
                + sum(self._held_out_solve_s.get(split, 0.0) for split in ("calibration", "val"))}

    def _write_stream_record(self, interrupted: str | None = None) -> None:
        """``<log_dir>/stream/rank<r>.json`` (when the trainer has a logger; written atomically): this
        rank's stream statistics, the blocks it received, the ids it lost and returned unused (totals
        over resumed runs), ``complete``/``interrupted`` (``""`` or the cause: ``"SIGTERM"``,
        ``"KeyboardInterrupt"``, ``"Type: message"``), ``costs``: per batch received by this run's stream,
        ``[seconds since the stream started, samples, solve seconds per sample, mean solver iterations or
        null]`` (the generation cost per sample as training goes on), and ``id_ranges``: this run's pool's ids by fate
        as ``[[seed, start, stop], ...]`` (``drawn`` = ``received`` + ``dropped`` + ``lost`` +
        ``returned_unused``, disjoint; see :meth:`~pdebench.data.workers.LocalWorkerPool.id_ranges`)."""
        self._streamed = False
        trainer = getattr(self, "trainer", None)
        if trainer is None or not trainer.loggers:  # no logger, no log folder: nothing is written
            return
        log_dir = trainer.log_dir
        rank, world = self._rank()
        record = {"rank": rank, "world_size": world, "backend": self.hparams.backend, **self.stream_stats(),
                  "complete": interrupted is None, "interrupted": interrupted or "",
                  "blocks": self._accounting["blocks"], "costs": self._accounting["costs"], "lost_ids": self._accounting["lost_ids"],
                  "returned_ids": self._accounting["returned_ids"], "id_ranges": self._id_ranges}
        with atomic_write(Path(log_dir) / "stream" / f"rank{rank}.json", "w") as handle:
            handle.write(json.dumps(record, default=str, indent=1))

    # ------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """The stream's state for Lightning checkpoints: per rank, its cursor, accounting and reservoir.

        Under DDP every rank's state is gathered (each rank owns its shard and reservoir) into the
        checkpoint that rank 0 writes; Lightning calls this on every rank.
        """
        if self.pool is None and self.reservoir is None:
            return {}
        self._sync_accounting()
        local = {k: v for k, v in self._accounting.items() if k not in ("blocks", "costs")}
        if self.reservoir is not None:
            reservoir = self.reservoir.state_dict()
            if not self.hparams.checkpoint_samples:
                reservoir.update(samples=[], sample_ids=[], times_seen=[])
            local["reservoir"] = reservoir
        rank, world = self._rank()
        ranks = [local]
        if world > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            ranks = [None] * world
            torch.distributed.all_gather_object(ranks, local)
        return {"version": 1, "seed": self.hparams.seed, "world_size": world, "ranks": ranks}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (Lightning calls it on resume, before the stream starts). Only a
        ``fit`` streams: ``validate``/``test`` from a checkpoint ignore the stream state (on any number
        of ranks)."""
        if not state:
            return
        trainer = getattr(self, "trainer", None)
        if trainer is not None and trainer.state.fn != TrainerFn.FITTING:
            return
        if state.get("version") != 1:
            raise ValueError(f"unsupported online stream state version {state.get('version')!r}, expected 1")
        if state["seed"] != self.hparams.seed:
            raise ValueError(f"checkpoint streamed seed {state['seed']}, this run is configured with seed {self.hparams.seed}")
        rank, world = self._rank()
        if state["world_size"] != world:
            raise ValueError(f"checkpoint was written by {state['world_size']} ranks; resuming on {world} would mix their shards")
        if self.pool is not None:
            raise RuntimeError("cannot restore the stream state while the stream is running")
        self._resume = dict(state["ranks"][rank])

    def train_dataloader(self) -> DataLoader:
        self.start_stream()
        per_rank = max(1, self.hparams.samples_per_epoch // self._rank()[1])
        trainer = getattr(self, "trainer", None)
        # One process only: under DDP a rank leaving its data wait alone would strand the others in a collective.
        terminated = (lambda: bool(trainer.received_sigterm)) if trainer is not None and self._rank()[1] == 1 else None
        return DataLoader(ReservoirDataset(self.reservoir, per_rank, terminated), batch_size=self.hparams.batch_size,
                          num_workers=0)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.datasets["val"], batch_size=self.hparams.batch_size)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.datasets["test"], batch_size=self.hparams.batch_size)
