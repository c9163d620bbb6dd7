r"""Learned acceleration of the darcy3d generator's linear solves, against the classical solvers, in one run.

Held-out 3-D Darcy systems (``darcy3d``: the 7-point finite-volume matrix of
:math:`-\nabla\cdot(a\nabla u) = 1`, :math:`a \in \{3, 12\}` from the thresholded 3-D Gaussian field;
samples ``(1_000_000, i)``, never trained on) at ``n`` interior nodes per axis (32 and 48 by default), each
solved to :math:`\|b - A x\| \le 10^{-8}\|b\|` per sample, 1 torch thread:

1. **learned preconditioner**: the learned incomplete Cholesky (``configs/learned_ic/learned_ic3d.yaml``,
   trained here on eight 16³ systems) in PCG against IC(0)-PCG (same sparsity): iterations and wall time
   (set-up + solve); targets ≤ 0.5× the iterations and ≤ 1× the time;
2. **warm start**: PCG started from an FNO's prediction (trained here for ``--train-seconds`` on
   ``--train-samples`` darcy3d samples at n = 32, training seeds) against the zero start, the same
   preconditioner (AMG and IC(0)); target ≥ 30 % fewer iterations;
3. **generation per sample** (the whole :func:`~pdebench.data.generate.generate_dataset` call, FNO forward
   included): accelerated (AMG-PCG from the FNO's guess; the learned IC from the guess) against the best
   independent solver among sparse LU and AMG-PCG; target ≥ 1.3× faster at 48³.

Every figure is a ratio of medians measured in this run (the arms interleaved per system). One
``BENCH_JSON`` line per measurement. Run:
``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_learned_acceleration.py`` (about 8 min;
``--quick``: n = 16 and 24, a 30 s FNO, about 2 min).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import Report, fmt, machine_info  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
HELD_OUT = 1_000_000
TOL = 1e-8


def train_fno(folder: Path, n: int, samples: int, seconds: float, report: Report) -> Path:
    """An FNO on darcy3d pairs at ``n`` interior nodes (training seed 0), trained for ``seconds`` of wall time."""
    from pdebench.data.generate import generate_dataset
    from pdebench.problems import PROBLEMS

    data = folder / "darcy3d_train.h5"
    with report.status(f"generating {samples} darcy3d training samples at {n}³ (AMG-PCG)"):
        generate_dataset(PROBLEMS.build("darcy3d", resolution=n + 2), data, num_samples=samples, seed=0, batch_size=16,
                         solver_kwargs={"method": "amg-pcg"})
    args = [sys.executable, str(ROOT / "train.py"), "fit", "--config", str(ROOT / "configs/darcy2d/fno.yaml"),
            "--data.init_args.path", str(data), "--data.init_args.batch_size", "4", "--trainer.max_epochs", "1000",
            "--trainer.max_time", f"00:00:{int(seconds) // 60:02d}:{int(seconds) % 60:02d}",  # DD:HH:MM:SS, under an hour
            "--model.model_args", "{n_modes: 8, hidden_channels: 16, n_layers: 4}"]
    with report.status(f"training an FNO for {seconds:.0f} s"):
        subprocess.run(args, cwd=folder, check=True, capture_output=True, text=True)
    (checkpoint,) = folder.glob("outputs/*/checkpoints/last.ckpt")
    return checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 48], help="interior nodes per axis")
    parser.add_argument("--systems", type=int, default=3, help="held-out systems per size")
    parser.add_argument("--train-samples", type=int, default=160)
    parser.add_argument("--train-seconds", type=float, default=150.0)
    parser.add_argument("--lu-sizes", type=int, nargs="*", default=[32, 48], help="sizes at which sparse LU is timed (1 system)")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.lu_sizes, args.train_samples, args.train_seconds = [16, 24], [16, 24], 64, 30.0

    import numpy as np
    import scipy.sparse.linalg as spla
    import torch

    from pdebench.data.generate import generate_dataset
    from pdebench.models.learned_ic import load_learned_ic
    from pdebench.problems import PROBLEMS
    from pdebench.solvers.fv.elliptic import FVEllipticSolver, elliptic_system
    from pdebench.training.acceleration import LearnedFactorPreconditioner, operator_guess
    from pdebench.training.learned_ic_fit import load_learned_ic_config, run_learned_ic_training

    torch.set_num_threads(1)
    report = Report()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        with report.status("training the learned IC (configs/learned_ic/learned_ic3d.yaml)"):
            start = time.perf_counter()
            lic_path, _ = run_learned_ic_training(load_learned_ic_config(ROOT / "configs/learned_ic/learned_ic3d.yaml"),
                                                  output=folder / "lic3d.pt")
            lic_train_s = time.perf_counter() - start
        lic = LearnedFactorPreconditioner(load_learned_ic(lic_path)[0], str(lic_path))
        start = time.perf_counter()
        fno_path = train_fno(folder, args.sizes[0], args.train_samples, args.train_seconds, report)
        fno_train_s = time.perf_counter() - start

        arms = {  # name: solver keyword arguments (the guess is added per arm below)
            "ic0": {"method": "ic0-pcg"},
            "learned_ic": {"method": "pcg", "preconditioner": lic},
            "amg": {"method": "amg-pcg"},
            "amg+fno": {"method": "amg-pcg", "warm": True},
            "ic0+fno": {"method": "ic0-pcg", "warm": True},
            "learned_ic+fno": {"method": "pcg", "preconditioner": lic, "warm": True},
        }
        rows = []
        for n in args.sizes:
            problem = PROBLEMS.build("darcy3d", resolution=n + 2)
            guess = operator_guess(fno_path, problem)
            solvers = {name: FVEllipticSolver(tol=TOL, **{k: v for k, v in kw.items() if k != "warm"},
                                              initial_guess=guess if kw.get("warm") else None)
                       for name, kw in arms.items()}
            if n in args.lu_sizes:
                solvers["lu"] = FVEllipticSolver(method="direct")
            times: dict[str, list[float]] = {name: [] for name in solvers}
            iters: dict[str, list[int]] = {name: [] for name in solvers}
            for i in range(args.systems):
                inputs = problem.sample_inputs(HELD_OUT, [i])
                for name, solver in solvers.items():
                    if name == "lu" and i > 0:
                        continue
                    with report.status(f"{n}³ system {i + 1}/{args.systems}: {name}"):
                        start = time.perf_counter()
                        traj = solver.solve(problem, inputs, [(HELD_OUT, i)])  # the guess's forward pass included
                        times[name].append(time.perf_counter() - start)
                    iters[name].append(int(traj.provenance["iterations_per_sample"][0]))
            # what limits a warm start: the guess's error and its residual (CG stops on ||b - Ax|| <= tol ||b||)
            quality = []
            for i in range(args.systems):
                inputs = problem.sample_inputs(HELD_OUT, [i])
                a = inputs[0].numpy()
                A, b = elliptic_system(a, problem.forcing)
                exact = spla.spsolve(A.tocsc(), b)
                x0 = guess(inputs)[0].numpy()[(slice(1, -1),) * 3].ravel()
                gamma = float(x0 @ b / (x0 @ (A @ x0)))  # the Galerkin start CG takes from a guess
                quality.append((float(np.linalg.norm(gamma * x0 - exact) / np.linalg.norm(exact)),
                                float(np.linalg.norm(b - A @ (gamma * x0)) / np.linalg.norm(b))))
            guess_error, guess_residual = (statistics.median(q[k] for q in quality) for k in (0, 1))
            report.say(f"{n}³: the FNO guess's relative error {guess_error:.2e}, its relative residual {guess_residual:.2e}")
            med = {name: statistics.median(v) for name, v in times.items()}
            it = {name: statistics.median(v) for name, v in iters.items()}
            best_classical = min(med["amg"], med.get("lu", float("inf")))
            for name in solvers:
                rows.append([f"{n}³", name, fmt(it[name]), fmt(med[name]), fmt(it[name] / it["ic0"]) if it["ic0"] else "-",
                             fmt(med[name] / med["ic0"]), fmt(best_classical / med[name])])
            report.record(benchmark="learned_acceleration", n=n, unknowns=n**3, systems=args.systems,
                          iterations=it, seconds=med,
                          learned_ic_vs_ic0_iterations=it["learned_ic"] / it["ic0"],
                          learned_ic_vs_ic0_time=med["learned_ic"] / med["ic0"],
                          warm_vs_cold_iterations={"amg": it["amg+fno"] / it["amg"], "ic0": it["ic0+fno"] / it["ic0"],
                                                   "learned_ic": it["learned_ic+fno"] / it["learned_ic"]},
                          fno_guess_relative_error=guess_error, fno_guess_relative_residual=guess_residual,
                          best_classical=("lu" if med.get("lu", float("inf")) < med["amg"] else "amg"),
                          speedup_vs_best_classical={name: best_classical / med[name] for name in solvers},
                          **machine_info(threads=1, fno_train_s=fno_train_s, learned_ic_train_s=lic_train_s,
                                         train_samples=args.train_samples))

        # generation per sample through the generator itself (write included), accelerated vs plain
        n = args.sizes[-1]
        problem = PROBLEMS.build("darcy3d", resolution=n + 2)
        guess = operator_guess(fno_path, problem)
        generation = {"amg": {"method": "amg-pcg"}, "amg+fno": {"method": "amg-pcg", "initial_guess": guess},
                      "learned_ic+fno": {"method": "pcg", "preconditioner": lic, "initial_guess": guess}}
        gen_times: dict[str, list[float]] = {name: [] for name in generation}
        for round_ in range(2):
            for name, kwargs in generation.items():
                with report.status(f"generate darcy3d {n}³, 4 samples: {name} (round {round_ + 1})"):
                    summary = generate_dataset(problem, folder / f"{name}.h5", num_samples=4, seed=HELD_OUT + 10, batch_size=4,
                                               overwrite=True, solver_kwargs=kwargs)
                    gen_times[name].append(summary.wall_time_s / 4)
        per_sample = {name: min(v) for name, v in gen_times.items()}
        report.record(benchmark="learned_acceleration_generation", n=n, seconds_per_sample=per_sample,
                      speedup_vs_amg={name: per_sample["amg"] / v for name, v in per_sample.items()},
                      **machine_info(threads=1))
    report.table("darcy3d linear solves to 1e-8 (medians over held-out systems; time = set-up + solve [+ FNO forward])",
                 ["grid", "arm", "iterations", "s / solve", "iter / ic0", "time / ic0", "best classical / this"], rows)
    report.table(f"darcy3d generation at {n}³ (generate_dataset, 4 samples, best of 2 rounds)",
                 ["arm", "s / sample", "speed-up vs amg"],
                 [[name, fmt(v), fmt(per_sample["amg"] / v)] for name, v in per_sample.items()])
    report.emit_json()


if __name__ == "__main__":
    main()
