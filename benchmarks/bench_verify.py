"""Cost of ``generate --verify`` at 2 % of the samples against the same generation without it.

Two problems at their default sizes, ``--samples`` samples (default 100, so 2 % is 2 samples: the
first and the last), batches of 32, one torch thread, the whole ``generate_dataset`` call (solve,
write, and for the verified arm the finer solves):

* **burgers1d** (spectral ETDRK4, 1024 points, 101 frames): the check solves 2048 points with
  ``max_dt / 2``;
* **darcy2d** (P1 finite elements, 85² nodes, direct solves): the check solves 169² nodes.

The two arms are interleaved over ``--rounds`` rounds (median wall time); the figure is the ratio
``verified / plain`` of the same run, and the overhead ``ratio - 1``. One ``BENCH_JSON`` line per problem.
Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_verify.py`` (about 2 min).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import Report, fmt, machine_info  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--problems", nargs="+", default=["burgers1d", "darcy2d"])
    args = parser.parse_args()

    import torch

    from pdebench.data.generate import generate_dataset
    from pdebench.data.verification import verify_count
    from pdebench.problems import PROBLEMS

    torch.set_num_threads(1)
    report = Report()
    count = verify_count(None, args.samples)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name in args.problems:
            problem = PROBLEMS.build(name)
            times: dict[int, list[float]] = {0: [], count: []}
            largest = float("nan")
            for _ in range(args.rounds):
                for verify in times:
                    with report.status(f"{name}: {args.samples} samples, verify={verify}"):
                        start = time.perf_counter()
                        summary = generate_dataset(problem, Path(folder) / f"{name}.h5", num_samples=args.samples,
                                                   overwrite=True, verify=verify)
                        times[verify].append(time.perf_counter() - start)
                    if summary.verification is not None:
                        largest = max(float(v.max()) for v in summary.verification.per_frame.values())
            plain, checked = statistics.median(times[0]), statistics.median(times[count])
            ratio = checked / plain
            grid = "x".join(map(str, problem.spatial_shape))
            rows.append([name, grid, str(count), fmt(plain), fmt(checked), fmt(ratio), f"{100 * (ratio - 1):.1f} %",
                         f"{largest:.1e}"])
            report.record(benchmark="verify", problem=name, grid=grid, verified=count, plain_s=plain, verified_s=checked,
                          ratio=ratio, overhead=ratio - 1, largest_space_error=largest,
                          **machine_info(samples=args.samples, rounds=args.rounds))
    report.table(f"generate --verify {count} of {args.samples} samples (2 %), medians of {args.rounds} interleaved rounds",
                 ["problem", "grid", "verified", "plain s", "verified s", "ratio", "overhead", "largest space error"], rows)
    report.emit_json()


if __name__ == "__main__":
    main()
