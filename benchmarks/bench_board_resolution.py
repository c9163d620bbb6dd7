"""Cost of the resolution protocol: the default suite's board with ``eval_resolutions`` against without.

The default suite (``configs/leaderboard/burgers1d.yaml``: burgers1d, nu = 0.01, u(0) -> u(1) on 1024
points, 64 held-out samples, the six-rung solver ladder timed 3 times per rung) is run twice per round:
once as it ships (``eval_resolutions: [512, 1024, 2048]``: each model is also scored at 512 and 2048
points and each score placed on a ladder re-timed at that grid) and once with the protocol switched off.
The reference cache is filled before the first round, so both arms read the same cached truth and time
only what a board run does again. The figure is ``with / without`` of the medians over ``--rounds``
interleaved rounds; one ``BENCH_JSON`` line.

The models are the suite's checkpoints when they exist (``make demo`` writes them); otherwise one small
FNO is trained here for one epoch on 32 samples of the task's problem (its accuracy does not matter for
the timing, only that it takes the grid). Run:
``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_board_resolution.py`` (about 4 min).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import Report, fmt, machine_info  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def train_small_fno(task, folder: Path) -> Path:
    """Train a width-16 FNO for one epoch on 32 samples of ``task``'s problem; its ``last.ckpt``."""
    from pdebench.data.generate import generate_dataset

    data = folder / "train.h5"
    generate_dataset(task.task_problem, data, num_samples=32, seed=7, batch_size=32)
    args = [sys.executable, str(ROOT / "train.py"), "fit", "--config", str(ROOT / "configs/burgers1d/fno.yaml"),
            "--data.init_args.path", str(data), "--data.init_args.batch_size", "8", "--trainer.max_epochs", "1",
            "--model.model_args", "{n_modes: 16, hidden_channels: 16, n_layers: 2}", "--trainer.limit_val_batches", "1"]
    subprocess.run(args, cwd=folder, check=True, capture_output=True, text=True)
    (checkpoint,) = folder.glob("outputs/*/checkpoints/last.ckpt")
    return checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default=str(ROOT / "configs/leaderboard/burgers1d.yaml"))
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    import torch

    from pdebench.evaluation.leaderboard import run_suite
    from pdebench.evaluation.suite import ModelEntry, Suite

    torch.set_num_threads(1)
    report = Report()
    suite = Suite.from_yaml(args.suite)
    (task,) = suite.tasks
    if not task.eval_resolutions:
        raise SystemExit(f"suite {args.suite!r} lists no eval_resolutions: nothing to compare")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        models = tuple(m for m in suite.models if m.checkpoint and Path(m.checkpoint).exists())
        if not models:
            with report.status("no checkpoint of the suite exists: training a small FNO for one epoch"):
                models = (ModelEntry(name="FNO (1 epoch)", checkpoint=str(train_small_fno(task, folder))),)
        arms = {
            "with": dataclasses.replace(suite, models=models, cache_dir=str(folder / "cache")),
            "without": dataclasses.replace(suite, models=models, cache_dir=str(folder / "cache"),
                                           tasks=(dataclasses.replace(task, eval_resolutions=()),)),
        }
        with report.status("filling the reference cache (untimed)"):
            run_suite(arms["with"], folder / "warm")
        times: dict[str, list[float]] = {arm: [] for arm in arms}
        for round_ in range(args.rounds):
            for arm, arm_suite in arms.items():
                with report.status(f"round {round_ + 1}/{args.rounds}: board {arm} eval_resolutions"):
                    start = time.perf_counter()
                    run_suite(arm_suite, folder / arm)
                    times[arm].append(time.perf_counter() - start)
    plain, with_grids = statistics.median(times["without"]), statistics.median(times["with"])
    ratio = with_grids / plain
    grids = ", ".join(map(str, task.eval_resolutions))
    report.table(f"board of {Path(args.suite).name}, {len(models)} model(s), medians of {args.rounds} interleaved rounds",
                 ["eval_resolutions", "models", "without s", "with s", "ratio"],
                 [[grids, str(len(models)), fmt(plain), fmt(with_grids), fmt(ratio)]])
    report.record(benchmark="board_resolution", suite=Path(args.suite).name, eval_resolutions=list(task.eval_resolutions),
                  models=[m.name for m in models], without_s=plain, with_s=with_grids, ratio=ratio,
                  **machine_info(rounds=args.rounds))
    report.emit_json()


if __name__ == "__main__":
    main()
