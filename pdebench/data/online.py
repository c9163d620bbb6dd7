"""Online training data: solver workers stream samples into a reservoir that the trainer reads.

Melissa's design (REFERENCE.md): no dataset on disk. :class:`OnlineDataModule` starts a
:class:`~pdebench.data.workers.LocalWorkerPool` and a feeder thread that cuts each solved batch into
training pairs and puts them into a :class:`~pdebench.data.reservoir.Reservoir` living in the trainer
process (DataLoader ``num_workers=0``: loader workers would each copy the reservoir). Validation and
test sets are solved once, in the trainer process, from sample streams no worker uses
(``seed + 1`` and ``seed + 2``; normalisation statistics come from a calibration stream ``seed + 3``).
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset

from pdebench.data.datamodules import to_channels_first, trajectory_pairs
from pdebench.data.generate import build_solver, solve_samples
from pdebench.data.reservoir import Reservoir, ReservoirClosed, ReservoirConfig
from pdebench.data.workers import LocalWorkerPool, WorkerConfig
from pdebench.problems import PROBLEMS

log = logging.getLogger(__name__)


def training_pairs(frames: torch.Tensor, task: str, history: int, unroll: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Cut trajectories ``(n, T, C, *space)`` into ``(x, y)`` pairs as :class:`OfflineDataModule` does."""
    dataset = trajectory_pairs(frames, task, history, unroll)
    return [dataset[i] for i in range(len(dataset))]


class ReservoirDataset(IterableDataset):
    """``samples_per_epoch`` pairs drawn from a reservoir (an epoch ends early if the stream ends)."""

    def __init__(self, reservoir: Reservoir, samples_per_epoch: int) -> None:
        self.reservoir, self.samples_per_epoch = reservoir, samples_per_epoch

    def __iter__(self):
        for _ in range(self.samples_per_epoch):
            try:
                sample, _ = self.reservoir.get()
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
        ``"next_step"`` windows or ``"initial_to_final"`` pairs, as in the offline module.
    num_workers
        Solver processes.
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
    """

    def __init__(
        self,
        problem: str,
        problem_args: dict[str, Any] | None = None,
        solver_args: dict[str, Any] | None = None,
        task: Literal["next_step", "initial_to_final"] = "next_step",
        history: int = 1,
        unroll: int = 1,
        num_workers: int = 2,
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
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if task not in ("next_step", "initial_to_final"):
            raise ValueError(f"task must be 'next_step' or 'initial_to_final', got {task!r}")
        for name, value in (("history", history), ("unroll", unroll), ("samples_per_epoch", samples_per_epoch),
                            ("batch_size", batch_size), ("val_trajectories", val_trajectories),
                            ("test_trajectories", test_trajectories), ("calibration_trajectories", calibration_trajectories)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        self.problem = PROBLEMS.build(problem, **(problem_args or {}))
        frames = self.problem.n_out + 1
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
        self.pool: LocalWorkerPool | None = None
        self._feeder: threading.Thread | None = None
        self._held_out: dict[str, torch.Tensor] = {}

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
            traj = solve_samples(self.problem, solver, self.hparams.seed + offset, np.arange(count))
            self._held_out[split] = to_channels_first(traj.fields[self.problem.field_name].float(), self.spatial_dims)
        return self._held_out[split]

    def _pairs(self, split: str):
        return trajectory_pairs(self.trajectories(split), self.hparams.task, self.hparams.history, self.hparams.unroll)

    def normalization_stats(self) -> dict[str, torch.Tensor]:
        """Per-channel statistics of the calibration stream (like the offline module's training split)."""
        frames = self.trajectories("calibration")
        dims = [0, 1, *range(3, frames.ndim)]
        mean, std = frames.mean(dims), frames.std(dims).clamp_min(1e-6)
        return {"x_mean": mean.repeat(self.in_channels), "x_std": std.repeat(self.in_channels), "y_mean": mean, "y_std": std}

    # -------------------------------------------------------------- streaming
    def _feed(self) -> None:
        hp = self.hparams
        try:
            for batch in self.pool.batches():
                frames = to_channels_first(batch.fields[self.problem.field_name], self.spatial_dims)
                starts = len(training_pairs(frames[:1], hp.task, hp.history, hp.unroll))
                for i, pair in enumerate(training_pairs(frames, hp.task, hp.history, hp.unroll)):
                    seed, index = batch.sample_ids[i // starts]
                    if not self.reservoir.put(pair, (int(seed), int(index), i % starts)):
                        if self.reservoir.closed:
                            return
        except Exception:  # noqa: BLE001 - a feeder failure must stop training visibly
            log.exception("the online feeder failed; closing the reservoir")
        finally:
            self.reservoir.close()

    def start_stream(self) -> None:
        """Start workers, reservoir and feeder (idempotent)."""
        if self.pool is not None:
            return
        self.reservoir = Reservoir(self.reservoir_config)
        self.pool = LocalWorkerPool(self.worker_config, num_workers=self.hparams.num_workers).start()
        self._feeder = threading.Thread(target=self._feed, name="pdebench-feeder", daemon=True)
        self._feeder.start()

    def stop_stream(self) -> None:
        """Stop workers and feeder; every worker process is terminated."""
        if self.pool is not None:
            self.pool.stop()
        if self.reservoir is not None:
            self.reservoir.close()
        if self._feeder is not None:
            self._feeder.join(timeout=5)
        self.pool = None

    def setup(self, stage: str | None = None) -> None:
        self.datasets = {"val": self._pairs("val"), "test": self._pairs("test")}

    def teardown(self, stage: str | None = None) -> None:
        self.stop_stream()

    def stream_stats(self) -> dict[str, Any]:
        """Reservoir statistics plus worker restarts and dropped (blown-up) samples."""
        stats = dict(self.reservoir.stats()) if self.reservoir is not None else {}
        if self.pool is not None:
            stats.update(worker_restarts=self.pool.restarts, solver_dropped=self.pool.dropped)
        return stats

    def train_dataloader(self) -> DataLoader:
        self.start_stream()
        return DataLoader(ReservoirDataset(self.reservoir, self.hparams.samples_per_epoch), batch_size=self.hparams.batch_size, num_workers=0)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.datasets["val"], batch_size=self.hparams.batch_size)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.datasets["test"], batch_size=self.hparams.batch_size)
