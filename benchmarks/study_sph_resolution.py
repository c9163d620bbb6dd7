"""Resolution study of the SPH solver on start-up Poiseuille flow: the error against the analytic transient.

SPH takes no ``rtol`` (``SPHSolver.no_time_certificate``: weakly compressible SPH converges only as the
particle count and the smoothing length are refined together, and no a-posteriori estimate of a
frame's error exists). This study records instead how its error falls with resolution.

Run from the repository root::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/study_sph_resolution.py                    # 10, 20, 40, 80 across (~2 min)
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/study_sph_resolution.py --resolutions 10 20 # quick

Scene: ``poiseuille2d`` at Re = 10 (``nu = 0.1``, body force ``F = 8 nu``, steady centreline speed 1),
started from rest, ``n`` particles across the channel, smoothing length ``h = 1.3 dx`` (refined with
``dx = 1/n``), Wendland C2, Morris viscosity, Adami walls, ``c0 = 10`` (Mach 0.1), frames every 0.05 s
to ``t = 0.5`` (the slowest mode has decayed to ``exp(-pi^2 nu t) = 0.61`` of its start). The error of a
frame is the relative L2 error over the fluid particles of the velocity against the analytic transient
(:func:`pdebench.problems.particles.poiseuille_velocity`, streamwise; the cross-stream velocity is 0)
evaluated at each particle's height. Prints the table (per resolution the error at the first frame,
at ``t = 0.5`` and the largest over the frames; the observed orders ``log2(e_n / e_2n)`` at the first
and the last frame), one ``BENCH_JSON`` line per resolution (with every frame's error) and one for the
orders, and writes a PNG of the error against time (``--png``, default
``docs/sph_poiseuille_resolution.png``).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import Report, fmt, machine_info  # noqa: E402

REYNOLDS = 10.0
T_FINAL, N_OUT = 0.5, 10


def run(resolution: int) -> dict[str, Any]:
    """One start-up Poiseuille run at ``resolution`` particles across: per-frame errors and costs."""
    from pdebench.core.particles import FLUID
    from pdebench.problems import PROBLEMS
    from pdebench.problems.particles import poiseuille_velocity
    from pdebench.solvers.sph.solver import SPHSolver

    problem = PROBLEMS.build("poiseuille2d", resolution=resolution, t_final=T_FINAL, n_out=N_OUT)
    scene = problem.build(REYNOLDS)
    start = time.perf_counter()
    trajectory, steps = SPHSolver().run_scene(problem, scene)
    wall = time.perf_counter() - start
    fluid = trajectory.particle_type == FLUID
    nu, force = scene.params["nu"], scene.params["force"]
    errors = [0.0]
    for frame, t in enumerate(trajectory.time[1:], start=1):
        exact = poiseuille_velocity(trajectory.positions[frame, fluid, 1], float(t), nu=nu, force=force)
        velocity = trajectory.velocities[frame, fluid]
        gap = np.sqrt(np.sum((velocity[:, 0] - exact) ** 2 + velocity[:, 1] ** 2))
        errors.append(float(gap / np.sqrt(np.sum(exact**2))))
    return {"resolution": resolution, "particles": int(fluid.sum()), "steps": steps, "wall_s": wall,
            "time": trajectory.time.tolist(), "errors": errors}


def plot(runs: list[dict[str, Any]], path: Path) -> Path:
    """Error against time, one line per resolution (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6), constrained_layout=True)
    for r in runs:
        ax.semilogy(r["time"][1:], r["errors"][1:], marker="o", ms=3, label=f"{r['resolution']} across ({r['particles']} fluid)")
    ax.set(xlabel="t (s)", ylabel="relative L2 error of the velocity",
           title=f"SPH start-up Poiseuille flow, Re = {REYNOLDS:g}: error against the analytic transient")
    ax.title.set_fontsize(9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolutions", type=int, nargs="+", default=[10, 20, 40, 80],
                        help="particles across the channel, each twice the previous for the orders")
    parser.add_argument("--png", default="docs/sph_poiseuille_resolution.png")
    args = parser.parse_args()
    if len(args.resolutions) < 2 or any(b != 2 * a for a, b in zip(args.resolutions, args.resolutions[1:])):
        parser.error(f"--resolutions must be two or more, each twice the previous; got {args.resolutions}")

    import torch

    torch.set_num_threads(1)
    report = Report()
    runs = []
    for n in args.resolutions:
        with report.status(f"poiseuille2d, {n} particles across"):
            runs.append(run(n))
    worst = [max(r["errors"]) for r in runs]
    first = [r["errors"][1] for r in runs]
    final = [r["errors"][-1] for r in runs]
    order_first = [math.log2(a / b) for a, b in zip(first, first[1:])]
    order_final = [math.log2(a / b) for a, b in zip(final, final[1:])]
    t_first = runs[0]["time"][1]
    rows = []
    for i, r in enumerate(runs):
        rows.append([str(r["resolution"]), str(r["particles"]), str(r["steps"]), fmt(r["wall_s"]), fmt(first[i]),
                     fmt(final[i]), fmt(worst[i]), fmt(order_first[i - 1]) if i else "", fmt(order_final[i - 1]) if i else ""])
        report.record(benchmark="sph_resolution", scene="poiseuille2d", reynolds=REYNOLDS, resolution=r["resolution"],
                      particles=r["particles"], steps=r["steps"], wall_s=r["wall_s"], max_rel_l2=worst[i],
                      rel_l2_per_frame=r["errors"], **machine_info())
    report.record(benchmark="sph_resolution_orders", resolutions=args.resolutions, order_first_frame=order_first,
                  order_final_frame=order_final)
    report.table(f"poiseuille2d, Re = {REYNOLDS:g}: velocity error against the analytic transient",
                 ["across", "fluid particles", "steps", "wall s", f"rel. L2 t = {t_first:g}", f"rel. L2 t = {T_FINAL:g}",
                  "max over frames", f"order t = {t_first:g}", f"order t = {T_FINAL:g}"], rows)
    report.say(f"wrote {plot(runs, Path(args.png))}")
    report.emit_json()


if __name__ == "__main__":
    main()
