"""Speed benchmark of SPH: the torch cell-list neighbour search against brute force, a full time step, and their scaling.

Run from the repository root::

    .venv/bin/python benchmarks/bench_sph.py            # full run (about a minute)
    .venv/bin/python benchmarks/bench_sph.py --quick    # smoke run (a few seconds)
    .venv/bin/python benchmarks/bench_sph.py --sizes 10000 20000 40000 80000 --threads 2

Scene: the initial state of a 2-D dam break. ``N`` particles on a square lattice of spacing
``dx = 1 / nx`` fill a water column of width 1 and height 2 (``nx = ceil(sqrt(N / 2))`` particles per
row, rows filled bottom up, the last one possibly partial) at the left of a tank
``[0, 4] x [0, 2.5]`` (walls not periodic). Smoothing length ``h = 1.3 dx`` and the Wendland C2
support give the search radius ``2 h = 2.6 dx``: about 21 neighbours per interior particle, the
density of a production weakly compressible SPH run. The lattice is shifted by ``dx / 2`` from the
walls; no lattice distance equals the radius (``2.6^2`` is not a sum of two squares of integers).

Parts
-----
1. ``neighbours``: wall time of :func:`pdebench.solvers.sph.neighbour_pairs` (cell list) for each
   size (default 10k, 20k, 40k; median of ``--repeats`` after one warm-up call) and of
   :func:`pdebench.solvers.sph.brute_force_pairs` (O(N^2), chunked) up to 20k, or while one call
   is predicted to stay under ``--brute-cap`` seconds (quadratic extrapolation from the previous
   size). At the smallest size both pair sets are checked to be identical.
2. ``scaling``: the cell list's cost ratio per doubling of ``N``, ``t(2N) / t(N)`` of the medians
   (target ``<= 2.3``: linear scaling is 2.0, the margin covers the shared, noisy machine), and the
   same ratio of the fastest calls (``ratio_best``), which other load on the machine disturbs less.
3. ``full_step``: one kick-drift-kick step of the scheme on the ``dam_break2d`` scene (walls
   included) with about each size of particles: milliseconds, particle-steps per second, the cost per
   doubling, and at the smallest size the same step with brute-force pairs beside it.

Absolute times move with the load of this shared machine; the ratios are the figures to read.
The last lines, prefixed ``BENCH_JSON``, hold one JSON object per measurement.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: _report.py sits next to it
from _report import Report, fmt, machine_info  # noqa: E402

from pdebench.solvers.sph import WCSPH, brute_force_pairs, neighbour_pairs  # noqa: E402

REPORT = Report()
say, status, table, record = REPORT.say, REPORT.status, REPORT.table, REPORT.record

#: Tank and water column of the dam-break scene (lengths in column widths).
TANK_LOWER, TANK_UPPER = (0.0, 0.0), (4.0, 2.5)
COLUMN_HEIGHT = 2.0
H_OVER_DX = 1.3
SUPPORT = 2.0  # Wendland C2 / cubic spline support, in units of h


def dam_break_positions(n: int) -> tuple[torch.Tensor, float]:
    """Lattice particles of a 2-D dam-break water column.

    Parameters
    ----------
    n : int
        Number of particles.

    Returns
    -------
    positions : Tensor, shape (n, 2), float64
        Particles at ``((k + 1/2) dx, (l + 1/2) dx)``, ``k < nx``, rows ``l`` filled bottom up.
    dx : float
        Lattice spacing ``1 / nx``, ``nx = ceil(sqrt(n / COLUMN_HEIGHT))``.
    """
    nx = math.ceil(math.sqrt(n / COLUMN_HEIGHT))
    dx = 1.0 / nx
    k = torch.arange(n, dtype=torch.float64)
    positions = torch.stack([(torch.remainder(k, nx) + 0.5) * dx, (torch.div(k, nx, rounding_mode="floor") + 0.5) * dx],
                            dim=1)
    return positions, dx


def time_median(fn: Callable[[], Any], repeats: int) -> tuple[float, list[float], Any]:
    """Median wall time of ``repeats`` calls after one warm-up call.

    Returns
    -------
    median : float
        Seconds.
    times : list of float
        Every timed call, seconds.
    out : Any
        The last call's result.
    """
    out = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times, out


def bench_neighbours(args: argparse.Namespace, common: dict[str, Any]) -> dict[int, float]:
    """Part 1 and 2: cell list vs brute force per size, and the cell list's cost per doubling."""
    cell_times: dict[int, float] = {}
    cell_best: dict[int, float] = {}
    brute_times: dict[int, float] = {}
    rows = []
    sizes = sorted(args.sizes)
    for n in sizes:
        x, dx = dam_break_positions(n)
        radius = SUPPORT * H_OVER_DX * dx

        def cell() -> tuple[torch.Tensor, ...]:
            return neighbour_pairs(x, radius, TANK_LOWER, TANK_UPPER)

        with status(f"neighbours: cell list, N={n}"):
            t_cell, times, (i, j, _) = time_median(cell, args.repeats)
        cell_times[n], cell_best[n] = t_cell, min(times)
        pairs = int(i.numel())
        record(bench="sph_neighbours", impl="cell_list", n=n, dx=dx, radius=radius, pairs=pairs,
               pairs_per_particle=pairs / n, seconds=t_cell, seconds_all=times, repeats=args.repeats,
               quick=args.quick, **common)

        t_brute = None
        predicted = None
        if brute_times:
            last = max(brute_times)
            predicted = brute_times[last] * (n / last) ** 2
        run_brute = n <= args.brute_max and (predicted is None or predicted <= args.brute_cap)
        if run_brute:
            with status(f"neighbours: brute force, N={n}"):
                t_brute, btimes, (bi, bj, _) = time_median(
                    lambda: brute_force_pairs(x, radius, TANK_LOWER, TANK_UPPER), args.brute_repeats)
            brute_times[n] = t_brute
            same = None
            if n == sizes[0]:
                same = torch.equal(torch.sort(i * n + j).values, torch.sort(bi * n + bj).values)
                if not same:
                    say(f"[red]cell list and brute force disagree at N={n}[/red]")
            record(bench="sph_neighbours", impl="brute_force", n=n, radius=radius, pairs=int(bi.numel()),
                   seconds=t_brute, seconds_all=btimes, repeats=args.brute_repeats, same_pairs=same,
                   speedup_cell_list=t_brute / t_cell, quick=args.quick, **common)
        else:
            reason = (f"N > --brute-max {args.brute_max}" if n > args.brute_max
                      else f"predicted {predicted:.1f} s > --brute-cap {args.brute_cap} s")
            record(bench="sph_neighbours", impl="brute_force", n=n, skipped=reason, quick=args.quick, **common)
        rows.append([str(n), fmt(pairs / n), fmt(t_cell * 1e3), fmt(t_brute * 1e3 if t_brute else None),
                     fmt(t_brute / t_cell if t_brute else None)])
    table(f"neighbour search, 2-D dam break, radius 2.6 dx, threads={torch.get_num_threads()}",
          ["N", "pairs/particle", "cell list ms", "brute force ms", "speed-up"], rows)

    scaling_rows = []
    for small, large in zip(sizes, sizes[1:]):
        if large != 2 * small:
            continue
        ratio = cell_times[large] / cell_times[small]
        ratio_best = cell_best[large] / cell_best[small]  # fastest calls: less sensitive to other load
        met = ratio <= args.target
        scaling_rows.append([f"{small} -> {large}", fmt(ratio), fmt(ratio_best), f"<= {args.target}",
                             "met" if met else "NOT met"])
        record(bench="sph_neighbours_scaling", impl="cell_list", n_small=small, n_large=large, ratio=ratio,
               ratio_best=ratio_best, target=args.target, met=met, quick=args.quick, **common)
    if scaling_rows:
        table("cell list cost per doubling of N (median; fastest call)",
              ["N", "t(2N)/t(N)", "best-of ratio", "target", ""], scaling_rows)
    return cell_times


# ------------------------------------------------------------------------------------------------
# Full time step of the scheme
# ------------------------------------------------------------------------------------------------


def dam_break_scene(n: int, neighbour_search: Callable[..., Any] | None = None) -> tuple[Any, Any, int]:
    """The ``dam_break2d`` scene (column H = 2a, tank 4a, walls included) with about ``n`` particles.

    Returns
    -------
    solver : WCSPH
        The scene's stepper (with ``neighbour_search`` if given).
    state : ParticleState
        Its initial particles.
    resolution : int
        Particles across the column width, chosen so that the total (fluid + walls) is closest to ``n``.
    """
    from pdebench.problems.particles import DamBreak2D

    def build(resolution: int):
        return DamBreak2D(resolution=resolution, tank_length=4.0, aspect_min=2.0, aspect_max=2.0).build(2.0, 1e-6)

    low, high = 8, 8
    while build(high).state.num_particles < n:
        low, high = high, 2 * high
    while high - low > 1:  # particle count grows with the resolution
        mid = (low + high) // 2
        low, high = (mid, high) if build(mid).state.num_particles < n else (low, mid)
    resolution = min((low, high), key=lambda r: abs(build(r).state.num_particles - n))
    scene = build(resolution)
    solver = WCSPH.from_settings(scene.physics, neighbour_search=neighbour_search)
    return solver, scene.state, resolution


def bench_full_step(args: argparse.Namespace, common: dict[str, Any],
                    neighbour_seconds: dict[int, float]) -> None:
    """Part 3: wall time of one full WCSPH kick-drift-kick step on the dam-break scene.

    One step as :meth:`WCSPH.run` takes it: one neighbour search, three density-rate and one
    momentum evaluation, the Adami wall update (rates of the previous step reused). Median of
    ``args.repeats`` after a warm-up. Recorded per size: ``seconds``, ``particle_steps_per_s`` and the
    cost per doubling normalised to the exact particle counts (``ratio_per_doubling = (t2/t1) /
    (N2/N1) * 2``; linear is 2). Beside it, at the smallest size, the same step with the brute-force
    pair search (:func:`brute_force_pairs`).
    """
    rows, step_times, counts = [], {}, {}
    for n in sorted(args.sizes):
        solver, state, resolution = dam_break_scene(n)
        rates = solver.rates(state)
        dt = 0.5 * solver.stable_dt(state, rates)
        with status(f"full step: N~{n}"):
            t_step, times, _ = time_median(lambda: solver._kdk(state, dt, rates), args.repeats)
        count = state.num_particles
        step_times[n], counts[n] = t_step, count
        brute = None
        if n == min(args.sizes):
            b_solver, _, _ = dam_break_scene(n, neighbour_search=brute_force_pairs)
            with status(f"full step with brute-force pairs: N={count}"):
                brute, _, _ = time_median(lambda: b_solver._kdk(state, dt, rates), args.brute_repeats)
        record(bench="sph_full_step", impl="cell_list", n=count, n_target=n, resolution=resolution, seconds=t_step,
               seconds_all=times, particle_steps_per_s=count / t_step, seconds_brute_force=brute,
               speedup_vs_brute_force=(brute / t_step) if brute else None, quick=args.quick, **common)
        rows.append([str(count), fmt(t_step * 1e3), fmt(count / t_step), fmt(brute * 1e3 if brute else None),
                     fmt(brute / t_step if brute else None)])
    table(f"one WCSPH step (kick-drift-kick, walls), dam break, threads={torch.get_num_threads()}",
          ["N", "step ms", "particle-steps/s", "brute-force step ms", "speed-up"], rows)
    scaling = []
    sizes = sorted(args.sizes)
    for small, large in zip(sizes, sizes[1:]):
        if large != 2 * small:
            continue
        ratio = step_times[large] / step_times[small] / (counts[large] / counts[small]) * 2.0
        met = ratio <= args.target
        scaling.append([f"{counts[small]} -> {counts[large]}", fmt(ratio), f"<= {args.target}", "met" if met else "NOT met"])
        record(bench="sph_full_step_scaling", n_small=counts[small], n_large=counts[large], ratio_per_doubling=ratio,
               target=args.target, met=met, quick=args.quick, **common)
    if scaling:
        table("full step cost per doubling of N (normalised to exact counts)", ["N", "ratio", "target", ""], scaling)


# -- main ----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats, brute force at the smallest size only")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 20_000, 40_000],
                        help="particle counts (default 10000 20000 40000)")
    parser.add_argument("--repeats", type=int, default=None, help="timed cell-list calls per size (default 7, quick 3)")
    parser.add_argument("--brute-repeats", type=int, default=None, help="timed brute-force calls (default 3, quick 1)")
    parser.add_argument("--brute-max", type=int, default=20_000, help="largest N for brute force (default 20000)")
    parser.add_argument("--brute-cap", type=float, default=30.0,
                        help="skip brute force when one call is predicted to take longer (s, default 30)")
    parser.add_argument("--target", type=float, default=2.3, help="target cost ratio per doubling (default 2.3)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["full_step"], help="parts to leave out")
    args = parser.parse_args(argv)
    if args.threads < 1 or any(n < 2 for n in args.sizes):
        parser.error("--threads must be positive and --sizes at least 2")
    args.repeats = args.repeats or (3 if args.quick else 7)
    args.brute_repeats = args.brute_repeats or (1 if args.quick else 3)
    if args.quick:
        args.brute_max = min(args.brute_max, min(args.sizes))
    torch.set_num_threads(args.threads)

    common = machine_info(threads=args.threads)
    start = time.perf_counter()
    say(f"[bold]bench_sph[/bold] {'--quick ' if args.quick else ''}sizes={args.sizes} threads={args.threads} on "
        f"{os.cpu_count()} CPUs, torch {torch.__version__}, load average {common['loadavg_start']:.2f}")
    cell_times = bench_neighbours(args, common)
    if "full_step" not in args.skip:
        bench_full_step(args, common, cell_times)
    say(f"total {time.perf_counter() - start:.0f} s, load average at end {os.getloadavg()[0]:.2f}")
    REPORT.emit_json()
    return 0


if __name__ == "__main__":
    sys.exit(main())
