"""Dam-break validation of the SPH solver against Martin & Moyce (1952), with figures for the README.

Run from the repository root::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/validate_dam_break.py                # 16 and 30 particles per width
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/validate_dam_break.py --resolutions 16  # quick

Scene: ``dam_break2d`` with a column of height ``H = 2a`` (Martin & Moyce's square-root-two case), water's
viscosity at their scale (``a = 2.25 in``) by Reynolds similarity, run to ``T = t sqrt(2g/a) = 3``.
The front is the largest ``x`` of a fluid particle, ``Z = x / a``.

Writes ``docs/dam_break_front.png`` (Z against T: the data, each resolution, Ritter's ideal front
``Z = 1 + 2T``) and ``docs/dam_break_snapshot.png`` (particles coloured by pressure at T = 0, 1.5, 3,
finest resolution), prints a table of relative front errors at the data points and one ``BENCH_JSON``
line per resolution (relative errors, wall time, particles, steps).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import Report, fmt, machine_info  # noqa: E402

from pdebench.problems.particles import DamBreak2D  # noqa: E402
from pdebench.solvers.sph.scheme import WCSPH  # noqa: E402

REPORT = Report()
say, status, table, record = REPORT.say, REPORT.status, REPORT.table, REPORT.record

#: Martin & Moyce (1952), H = 2a: (T = t sqrt(2g/a), Z = x_front / a).
MARTIN_MOYCE = [(0.849, 1.245), (1.212, 1.443), (1.602, 1.884), (2.283, 2.689), (2.950, 3.728)]
G = 9.81
SNAPSHOT_T = (0.0, 1.5, 3.0)


def run(resolution: int) -> dict[str, Any]:
    """Front history and snapshots of one dam break at ``resolution`` particles per column width."""
    t_end = 3.0 / math.sqrt(2 * G)
    problem = DamBreak2D(resolution=resolution, t_final=t_end, n_out=1)
    scene = problem.build(2.0, nu=1e-6 * (1.0 / 0.057) ** 1.5)
    state = scene.state
    stepper = WCSPH.from_settings(scene.physics)
    T, Z = [0.0], [float(state.positions[state.fluid, 0].max())]
    snapshots = {0.0: (state.positions.numpy().copy(), stepper.rates(state).pressure.numpy().copy(),
                       state.particle_type.numpy().copy())}
    steps = [0]

    def front(s) -> None:
        steps[0] += 1
        T.append(s.time * math.sqrt(2 * G))
        Z.append(float(s.positions[s.fluid, 0].max()))

    start = time.perf_counter()
    for t_snap in SNAPSHOT_T[1:]:
        state = stepper.run(state, t_snap / math.sqrt(2 * G), callback=front)
        pressure = stepper.rates(state).pressure
        snapshots[t_snap] = (state.positions.numpy().copy(), pressure.numpy().copy(), state.particle_type.numpy().copy())
    wall = time.perf_counter() - start
    errors = {t: float(np.interp(t, T, Z)) / z - 1.0 for t, z in MARTIN_MOYCE}
    return {"resolution": resolution, "T": np.array(T), "Z": np.array(Z), "errors": errors, "wall_s": wall,
            "steps": steps[0], "particles": scene.state.num_particles, "snapshots": snapshots,
            "rho0g": problem.rho0 * G}


def plot_front(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.2), constrained_layout=True)
    T = np.linspace(0, 3, 50)
    ax.plot(T, 1 + 2 * T, ":", color="grey", label="Ritter (ideal, $Z = 1 + 2T$)")
    for r in results:
        ax.plot(r["T"], r["Z"], label=f"SPH, {r['resolution']} particles per width ({r['particles']} total)")
    data = np.array(MARTIN_MOYCE)
    ax.plot(data[:, 0], data[:, 1], "ko", label="Martin & Moyce (1952)")
    ax.fill_between(T[T >= 1.5], 0, 10, color="tab:green", alpha=0.06, label="10 % comparison ($T \\geq 1.5$)")
    ax.set(xlabel="$T = t\\sqrt{2g/a}$", ylabel="front $Z = x/a$", xlim=(0, 3.1), ylim=(0.9, 4.3),
           title="Dam break, $H = 2a$: surge front")
    ax.legend(fontsize=8, loc="upper left")
    fig.savefig(path, dpi=130)
    plt.close(fig)


def plot_snapshot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(SNAPSHOT_T), 1, figsize=(7, 2.0 * len(SNAPSHOT_T)), constrained_layout=True,
                             sharex=True)
    vmax = 2.0 * result["rho0g"]  # rho0 g H with H = 2a, a = 1
    for ax, t in zip(axes, SNAPSHOT_T):
        x, p, particle_type = result["snapshots"][t]
        wall = particle_type == 1
        ax.scatter(x[wall, 0], x[wall, 1], s=0.5, c="0.6")
        sc = ax.scatter(x[~wall, 0], x[~wall, 1], s=1.0, c=p[~wall], cmap="viridis", vmin=0, vmax=vmax)
        ax.set_aspect("equal")
        ax.set_ylim(-0.2, 2.2)
        ax.set_title(f"T = {t:g}", fontsize=9)
    fig.colorbar(sc, ax=axes, label="pressure (Pa)", shrink=0.8)
    axes[-1].set_xlabel("x / a")
    fig.suptitle(f"dam_break2d, {result['particles']} particles", fontsize=10)
    fig.savefig(path, dpi=130)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resolutions", type=int, nargs="+", default=[16, 30])
    parser.add_argument("--out", type=Path, default=Path("docs"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    common = machine_info(threads=1)
    results = []
    for resolution in args.resolutions:
        with status(f"dam break, {resolution} particles per width"):
            results.append(run(resolution))
        r = results[-1]
        record(bench="sph_dam_break", resolution=resolution, particles=r["particles"], steps=r["steps"],
               wall_s=r["wall_s"], rel_front_error={str(t): e for t, e in r["errors"].items()}, **common)
    table("front Z / Martin & Moyce - 1", ["T", "data Z", *(f"res {r['resolution']}" for r in results)],
          [[str(t), str(z), *(f"{r['errors'][t]:+.3f}" for r in results)] for t, z in MARTIN_MOYCE])
    table("runs", ["resolution", "particles", "steps", "wall s"],
          [[str(r["resolution"]), str(r["particles"]), str(r["steps"]), fmt(r["wall_s"])] for r in results])
    args.out.mkdir(parents=True, exist_ok=True)
    plot_front(results, args.out / "dam_break_front.png")
    plot_snapshot(results[-1], args.out / "dam_break_snapshot.png")
    say(f"wrote {args.out / 'dam_break_front.png'} and {args.out / 'dam_break_snapshot.png'}")
    REPORT.emit_json()
    return 0


if __name__ == "__main__":
    sys.exit(main())
