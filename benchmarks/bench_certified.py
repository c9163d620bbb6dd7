"""Cost of certified time stepping (``rtol``, default 1e-6) against fixed steps.

Part 1, burgers1d (ν = 0.1, 1024 points, 101 frames, rough GRF initial conditions), 16 samples, one
batch, float64, one torch thread. Three arms, interleaved over ``--rounds`` rounds (median wall time):

* **fixed default step**: the problem's ``max_dt`` = 1e-2 (``rtol=None``, the default before
  certification); misses 1e-6 in the first frames;
* **fixed 1e-3**: the fixed step the issue measured to meet 1e-6 in every frame (``dt = 1e-3``);
* **rtol 1e-6**: the default ``SpectralSolver()``.

Each arm's largest relative L2 error over every frame and sample is measured against a reference
solved with ``rtol = 1e-11`` (its own estimate is printed, far below the arms' errors). Figures are
ratios against the fixed-1e-3 arm of the same run; one ``BENCH_JSON`` line per arm.

Part 2 (``--problems``, default every spectral time-dependent problem at its default size),
``--problem-samples`` samples each: the default tolerance against the fixed default step, both timed
once after a warm-up, each one's largest error measured against an ``rtol = 1e-8`` solve.
Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_certified.py`` (about 10 min; part 1
alone with ``--problems none``, about 1 min).
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
    parser.add_argument("--problems", default="all", help="comma-separated problems for part 2, 'all' or 'none'")
    parser.add_argument("--problem-samples", type=int, default=2)
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
    arms = {"fixed default step": SpectralSolver(rtol=None), "fixed 1e-3": SpectralSolver(dt=1e-3),
            "rtol 1e-6": SpectralSolver()}
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
    names = ([] if args.problems == "none" else
             [n for n in PROBLEMS.available(record="time-dependent")
              if PROBLEMS.build(n).solver == "spectral"] if args.problems == "all" else args.problems.split(","))
    rows = []
    for name in names:
        with report.status(f"{name}: fixed default step, rtol 1e-6 and the rtol 1e-8 reference"):
            rows.append(_default_against_fixed(report, PROBLEMS.build(name), args.problem_samples))
    if rows:
        report.table(f"the default tolerance (rtol 1e-6) against the fixed default step, {args.problem_samples} samples",
                     ["problem", "fixed step s", "rtol 1e-6 s", "time ratio", "fixed step's max error",
                      "rtol 1e-6's max error"], rows)
    report.emit_json()


def _default_against_fixed(report, problem, samples: int) -> list[str]:
    """One row of part 2: wall times (after a warm-up) and largest per-frame errors of both arms."""
    import numpy as np

    from pdebench.core.metrics import relative_l2
    from pdebench.solvers.spectral.solver import SpectralSolver

    ids = np.column_stack([np.full(samples, 3), np.arange(samples)])
    u0 = problem.sample_initial_conditions(3, list(range(samples)))
    truth = SpectralSolver(rtol=1e-8).solve(problem, u0, ids).fields[problem.field_name]
    walls, errors = {}, {}
    for arm, solver in {"fixed": SpectralSolver(rtol=None), "rtol": SpectralSolver()}.items():
        solver.solve(problem, u0[:1], ids[:1])  # warm-up: coefficients, plans
        start = time.perf_counter()
        frames = solver.solve(problem, u0, ids).fields[problem.field_name]
        walls[arm] = time.perf_counter() - start
        errors[arm] = max(float(relative_l2(frames[b : b + 1, j], truth[b : b + 1, j]))
                          for b in range(samples) for j in range(1, problem.n_out + 1))
    ratio = walls["rtol"] / walls["fixed"]
    report.record(benchmark="certified_default", problem=problem.name, fixed_s=walls["fixed"], rtol_s=walls["rtol"],
                  ratio_rtol_to_fixed=ratio, fixed_max_rel_l2=errors["fixed"], rtol_max_rel_l2=errors["rtol"],
                  **machine_info(samples=samples))
    return [problem.name, fmt(walls["fixed"]), fmt(walls["rtol"]), f"{ratio:.2f}x", fmt(errors["fixed"]), fmt(errors["rtol"])]


if __name__ == "__main__":
    main()
