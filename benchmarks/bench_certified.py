"""Cost of certified time stepping (``rtol``) against the fixed step that meets the same tolerance.

burgers1d (ν = 0.1, 1024 points, 101 frames, rough GRF initial conditions), 16 samples, one batch,
float64, one torch thread. Three arms, interleaved over ``--rounds`` rounds (median wall time):

* **default**: today's fixed step (the problem's ``max_dt`` = 1e-2); misses 1e-6 in the first frames;
* **fixed 1e-3**: the fixed step the issue measured to meet 1e-6 in every frame (``dt = 1e-3``);
* **rtol 1e-6**: ``SpectralSolver(rtol=1e-6)``.

Each arm's largest relative L2 error over every frame and sample is measured against a reference
solved with ``rtol = 1e-11`` (its own estimate is printed, far below the arms' errors). Figures are
ratios against the fixed-1e-3 arm of the same run; one ``BENCH_JSON`` line per arm.
Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_certified.py`` (about 1 min).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import Report, fmt, machine_info  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    import torch

    from pdebench.core.metrics import relative_l2
    from pdebench.problems import PROBLEMS
    from pdebench.solvers.spectral.solver import SpectralSolver

    torch.set_num_threads(1)
    report = Report()
    problem = PROBLEMS.build("burgers1d", nu=0.1, n_out=100)
    u0 = problem.sample_initial_conditions(seed=3, indices=range(args.samples))
    with report.status("reference (rtol 1e-11)"):
        reference = SpectralSolver(rtol=1e-11).solve(problem, u0)
    truth = reference.fields["u"]
    arms = {"default": SpectralSolver(), "fixed 1e-3": SpectralSolver(dt=1e-3), "rtol 1e-6": SpectralSolver(rtol=1e-6)}
    times: dict[str, list[float]] = {name: [] for name in arms}
    errors: dict[str, float] = {}
    for _ in range(args.rounds):
        for name, solver in arms.items():
            start = time.perf_counter()
            frames = solver.solve(problem, u0).fields["u"]
            times[name].append(time.perf_counter() - start)
            errors[name] = max(float(relative_l2(frames[b : b + 1, j], truth[b : b + 1, j]))
                               for b in range(args.samples) for j in range(1, problem.n_out + 1))
    base = statistics.median(times["fixed 1e-3"])
    rows = []
    for name in arms:
        median = statistics.median(times[name])
        rows.append([name, fmt(median), fmt(median / base), fmt(errors[name]), "yes" if errors[name] <= 1e-6 else "no"])
        report.record(benchmark="certified", arm=name, wall_s=median, ratio_to_fixed_1e3=median / base,
                      max_rel_l2=errors[name], meets_1e6=errors[name] <= 1e-6,
                      **machine_info(samples=args.samples, rounds=args.rounds))
    report.table(f"burgers1d ν = 0.1, {args.samples} samples x 101 frames (reference estimate "
                 f"{reference.provenance['error_estimate']['time_max']:.1e})",
                 ["arm", "wall s (median)", "time / fixed 1e-3", "max rel. L2 (every frame)", "meets 1e-6"], rows)
    report.emit_json()


if __name__ == "__main__":
    main()
