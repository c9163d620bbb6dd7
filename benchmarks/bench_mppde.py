"""MP-PDE rollout cost against the classical solvers of the MP-PDE benchmark (E1: forced inviscid Burgers).

Run from the repository root::

    .venv/bin/python benchmarks/bench_mppde.py                         # ~1-2 min, 1 thread
    .venv/bin/python benchmarks/bench_mppde.py --checkpoint outputs/mppde_e1_nx50/checkpoints/last.ckpt
    .venv/bin/python benchmarks/bench_mppde.py --quick

What is timed (32 E1 trajectories, T = 4, 250 output steps; every figure is the median of interleaved
rounds, reported as a ratio to the **fine solver measured in the same round**, since the machine is
shared and noisy):

* *fine solver*: WENO5 finite volumes (``fv-weno``) on 200 cells, the resolution the training data and
  the leaderboard reference are solved at;
* *coarse solver*: the same scheme on the model's 50 cells (the paper's "WENO5 at the same resolution");
* *MP-PDE*: the paper's network (128 features, 6 layers, bundles of 25) rolling out 226 frames from the
  first 25 at 50 cells, batch of 32, ``torch.no_grad``. Its cost does not depend on its weights: without
  ``--checkpoint`` it runs freshly initialised. With a checkpoint, its accumulated error is printed too.

The paper (GPU, their solvers) reports 0.09 s for MP-PDE against 1.9 s for WENO5 at nx = 100 on E1.
Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import Report, fmt, machine_info  # noqa: E402

from pdebench.data.generate import solve_samples  # noqa: E402
from pdebench.core.metrics import accumulated_error  # noqa: E402
from pdebench.problems import PROBLEMS  # noqa: E402
from pdebench.solvers import SOLVERS  # noqa: E402


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default=None, help="a trained BundledOperatorModule checkpoint (mppde_e1, nx 50)")
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="8 samples, 1 round")
    args = parser.parse_args()
    if args.quick:
        args.samples, args.rounds = 8, 1
    torch.set_num_threads(args.threads)
    report = Report()
    coarse = PROBLEMS.build("mppde_e1", nx=50)
    fine = coarse.refined(4)
    solver = SOLVERS.build("fv-weno")
    seed, indices = 1_000_000, np.arange(args.samples)

    from pdebench.training.bundled import BundledOperatorModule

    if args.checkpoint:
        module = BundledOperatorModule.load_from_checkpoint(args.checkpoint, map_location="cpu", weights_only=True)
    else:
        module = BundledOperatorModule(model_args=dict(time_window=25, hidden=128, layers=6, length=16.0, radius_in_cells=3.0))
        module.frame_dt.fill_(coarse.dt_out)
    module.eval()

    truth = None
    rounds: dict[str, list[float]] = {"fine": [], "coarse": [], "mppde": []}
    for r in range(args.rounds + 1):  # round 0 warms up (plans, caches) and is not counted
        t_fine, fine_traj = timed(lambda: solve_samples(fine, solver, seed, indices))
        t_coarse, coarse_traj = timed(lambda: solve_samples(coarse, solver, seed, indices))
        if truth is None:
            truth = fine.restrict(fine_traj.fields["u"].double(), coarse.nx)  # (N, T, 50) block averages
        frames = truth.float().unsqueeze(2)
        with torch.no_grad():
            t_model, pred = timed(lambda: module.rollout(frames, times=coarse.output_times()))
        if r:
            rounds["fine"].append(t_fine)
            rounds["coarse"].append(t_coarse)
            rounds["mppde"].append(t_model)
        report.say(f"round {r}{' (warm-up)' if r == 0 else ''}: fine {t_fine:.2f} s, coarse {t_coarse:.2f} s, "
                   f"MP-PDE {t_model:.3f} s")
    k = 25

    def as_metric(frames: torch.Tensor) -> torch.Tensor:  # (N, T, X) -> the metrics' (N, 1, X, T)
        return frames.double().unsqueeze(1).movedim(2, -1)

    scored = as_metric(truth[:, k:])
    coarse_error = float(accumulated_error(as_metric(coarse_traj.fields["u"][:, k:]), scored))
    model_error = float(accumulated_error(as_metric(pred[:, :, 0]), scored)) if args.checkpoint else None
    median = {name: statistics.median(v) for name, v in rounds.items()}
    ratio = {name: statistics.median(a / b for a, b in zip(rounds["fine"], v)) for name, v in rounds.items()}
    rows = [["WENO5 200 cells (fine)", fmt(median["fine"] / args.samples), "1", "0 (reference)"],
            ["WENO5 50 cells (coarse)", fmt(median["coarse"] / args.samples), fmt(ratio["coarse"]), fmt(coarse_error)],
            ["MP-PDE 50 cells", fmt(median["mppde"] / args.samples), fmt(ratio["mppde"]),
             fmt(model_error) if model_error is not None else "(untrained)"]]
    report.table(f"E1, {args.samples} trajectories, 250 steps, {args.threads} thread(s)",
                 ["method", "s / trajectory", "speed-up vs fine", "accumulated error"], rows)
    common = machine_info(threads=args.threads, quick=args.quick)
    report.record(bench="mppde_e1_rollout_cost", samples=args.samples, rounds=args.rounds,
                  fine_s_per_traj=median["fine"] / args.samples, coarse_s_per_traj=median["coarse"] / args.samples,
                  mppde_s_per_traj=median["mppde"] / args.samples, speedup_coarse_vs_fine=ratio["coarse"],
                  speedup_mppde_vs_fine=ratio["mppde"], accumulated_error_coarse=coarse_error,
                  accumulated_error_mppde=model_error, checkpoint=args.checkpoint, **common)
    report.emit_json()


if __name__ == "__main__":
    main()
