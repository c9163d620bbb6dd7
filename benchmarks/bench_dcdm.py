"""Deep conjugate direction method (DCDM) against CG, Jacobi-PCG, IC(0)-PCG and AMG-PCG on Darcy matrices.

Run from the repository root::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_dcdm.py            # full run (~2 min)
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_dcdm.py --quick    # smoke run (~10 s)
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_dcdm.py --config configs/dcdm/dcdm2d_64_unet.yaml

Systems: ``-div(a grad u) = f`` on (0,1)², u = 0 on the boundary, 5-point finite volumes with
harmonic-mean faces (``poisson_matrix``), ``a`` the project's ``darcy2d`` field (values {3, 12}).
The network is trained as ``pdebench train-dcdm --config`` would (``--config``, default
``configs/dcdm/dcdm2d_64.yaml``: the symmetric positive-definite network, 3000 steps at 64² on four
coefficients of seed 0; unsupervised DCDM loss on Ritz-vector right-hand sides). The same network
before training (its BPX start) is solved beside it, to show what the training adds.

Evaluation (all in the same run, tolerance 1e-6 relative residual, zero start):

* ``64² seen-a``: a training coefficient with right-hand sides never seen (Gaussian noise, f = 1);
* ``64² new-a``: a held-out coefficient (seed 1_000_000);
* ``128² new-a``: the 64²-trained network at 128² (resolution independence).

Targets (the issue): DCDM iterations <= 1/5 of CG's; iterations roughly independent of 64² -> 128²;
wall time reported honestly against AMG-PCG (setup + solve). Ratios are of measurements made in this
run. Also printed: the cost of one network application against one AMG V-cycle and one matrix product.

Measured here (2026-11-29, full run, 1 thread, the other core busy with a leaderboard run; 112 s in
all, training 109 s, loss 2.14 -> 0.54, 327 parameters):

* DCDM iterations 25 / 28 (64² seen-a noise / f=1), 26 / 30 (64² new-a), 32 / 38 (128² new-a): 0.056-0.098
  of CG's (300 / 325, 290 / 305, 568 / 614): target <= 0.2 met. 128² / 64²: 1.23 (noise), 1.27 (f=1),
  where CG's ratio is 1.96-2.0: roughly resolution-independent, met.
* Untrained (BPX start): 42 / 49, 43 / 49, 55 / 68: the training removes 40 % of the iterations.
* IC(0)-PCG 59-134, AMG-PCG 6-8 iterations.
* Wall time (set-up + solve): DCDM 1.6-2.6x AMG-PCG's at 64², 4.2-4.4x at 128². One network
  application costs 1.08 ms at 64², 1.6x an AMG V-cycle (0.70 ms), and DCDM needs ~4x AMG's iterations.
* The paper's nonlinear U-Net (``--config configs/dcdm/dcdm2d_64_unet.yaml``, 1500 steps) does not reach
  1e-6 within 600 iterations on any system (see ``configs/leaderboard/dcdm.yaml`` results in the README).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: _report.py sits next to it
from _report import Report, fmt, machine_info  # noqa: E402

from pdebench.models.dcdm import dcdm_solve, load_dcdm, network_operator  # noqa: E402
from pdebench.problems.elliptic_matrices import darcy_coefficient, poisson_matrix  # noqa: E402
from pdebench.solvers.linalg import make_preconditioner as make_baseline_preconditioner  # noqa: E402
from pdebench.solvers.linalg import pcg  # noqa: E402
from pdebench.training.dcdm_fit import ARCHITECTURES, load_dcdm_config, run_dcdm_training  # noqa: E402

TOL = 1e-6
BASELINE_LABELS = {"none": "CG", "jacobi": "Jacobi-PCG", "ic0": "IC(0)-PCG", "amg": "AMG-PCG"}


def solve_all(A, b, nets: dict[str, torch.nn.Module], grid: tuple[int, ...], maxiter: int) -> dict[str, tuple]:
    """``label -> (iterations, setup + solve seconds, converged, final relative residual)`` for the
    baselines and every network (float64 direction maps, the paper's loop without safeguard for the
    SPD network, with it for the U-Net)."""
    res = {}
    for kind, label in BASELINE_LABELS.items():
        M = make_baseline_preconditioner(A, kind)
        r = pcg(A, b, M, TOL, maxiter=4 * A.shape[0])
        res[label] = (r.iterations, r.setup_time + r.time, r.converged, float(r.residuals[-1]))
    for label, net in nets.items():
        t0 = time.perf_counter()
        op = network_operator(net, grid)
        d = dcdm_solve(A, b, op, TOL, maxiter=maxiter)
        res[label] = (d.iterations, time.perf_counter() - t0, d.converged, float(d.residuals[-1]))
    return res


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/dcdm/dcdm2d_64.yaml", help="DCDM training run (configs/dcdm/)")
    parser.add_argument("--steps", type=int, default=None, help="override the config's training steps")
    parser.add_argument("--quick", action="store_true", help="30 training steps, 64² only (smoke run)")
    parser.add_argument("--maxiter", type=int, default=600)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    config = load_dcdm_config(args.config)
    if config.dim != 2:
        parser.error(f"this benchmark runs 2-D configs (64² and 128² systems); {args.config} has dim {config.dim}")
    steps = 30 if args.quick else args.steps
    torch.set_num_threads(args.threads)
    rep = Report()
    common = machine_info({"scipy": __import__("scipy").__version__, "pyamg": __import__("pyamg").__version__},
                          threads=args.threads, config=args.config, arch=config.arch,
                          steps=config.train_config(steps).steps)
    t_start = time.perf_counter()
    torch.manual_seed(config.seed)
    untrained = ARCHITECTURES[config.arch](dim=2, **config.network)
    with tempfile.TemporaryDirectory() as tmp, rep.status(f"training {config.arch} DCDM at {config.n}² "
                                                          f"({config.train_config(steps).steps} steps)"):
        path, record = run_dcdm_training(config, steps=steps, output=Path(tmp) / "net.pt")
        model, _ = load_dcdm(path)
    rep.say(f"training: {record['optimiser_time_s']:.1f} s, loss {record['loss_first10']:.3f} -> "
            f"{record['loss_last10']:.3f} ({record['parameters']} parameters)")
    rep.record(**common, stage="train", time_s=record["optimiser_time_s"], loss_first10=record["loss_first10"],
               loss_last10=record["loss_last10"])

    nets = {"DCDM untrained": untrained, "DCDM": model}
    cases = [("64² seen-a", 64, 0, 0), ("64² new-a", 64, 1_000_000, 0)]
    if not args.quick:
        cases.append(("128² new-a", 128, 1_000_000, 0))
    columns = list(BASELINE_LABELS.values()) + list(nets)
    rows, dcdm_its = [], {}
    for label, n, seed, idx in cases:
        A = poisson_matrix(darcy_coefficient(n, seed, idx))
        rhs = {"noise": np.random.default_rng(100 + n).standard_normal(n * n), "f=1": np.ones(n * n)}
        for rname, b in rhs.items():
            res = solve_all(A, b, nets, (n, n), args.maxiter)
            its, secs, conv, _ = res["DCDM"]
            dcdm_its[(label, rname)] = its
            iter_ratio, time_ratio = its / res["CG"][0], secs / res["AMG-PCG"][1]
            rows.append([f"{label} {rname}"] + [f"{res[c][0]}{'' if res[c][2] else '*'} / {fmt(res[c][1], 2)}s" for c in columns]
                        + [fmt(iter_ratio), fmt(time_ratio)])
            rep.record(**common, stage="solve", case=label, rhs=rname, n=n,
                       **{f"{c}_iters": res[c][0] for c in columns}, **{f"{c}_time_s": res[c][1] for c in columns},
                       dcdm_converged=conv, dcdm_final_residual=res["DCDM"][3], dcdm_over_cg_iters=iter_ratio,
                       dcdm_over_amg_time=time_ratio, target_iters_ratio=0.2, met=bool(conv and iter_ratio <= 0.2))
    rep.table(f"iterations / wall time (setup + solve) to {TOL:g} (* = not converged; DCDM capped at {args.maxiter})",
              ["case", *columns, "DCDM/CG its", "DCDM/AMG time"], rows)
    # cost of one direction against one AMG V-cycle and one matrix product, on the 64² new-a matrix
    n = 64
    A = poisson_matrix(darcy_coefficient(n, 1_000_000, 0))
    r = np.random.default_rng(0).standard_normal(n * n)
    amg = make_baseline_preconditioner(A, "amg")
    op = network_operator(model, (n, n))
    cost = {name: _median_time(f) for name, f in (("matvec", lambda: A @ r), ("AMG V-cycle", lambda: amg.apply(r)),
                                                   ("DCDM network", lambda: op(r)))}
    rep.say("one application at 64²: " + ", ".join(f"{k} {v * 1e3:.3f} ms" for k, v in cost.items())
            + f" (network / V-cycle {cost['DCDM network'] / cost['AMG V-cycle']:.1f}x)")
    rep.record(**common, stage="apply_cost", n=n, **{f"{k}_s": v for k, v in cost.items()},
               network_over_vcycle=cost["DCDM network"] / cost["AMG V-cycle"])
    if not args.quick:
        for rname in ("noise", "f=1"):
            ratio = dcdm_its[("128² new-a", rname)] / max(dcdm_its[("64² new-a", rname)], 1)
            rep.say(f"DCDM iterations 128² / 64² ({rname}): {ratio:.2f}")
            rep.record(**common, stage="resolution", rhs=rname, dcdm_iters_128_over_64=ratio)
    rep.say(f"total {time.perf_counter() - t_start:.0f} s")
    rep.emit_json()
    return 0


def _median_time(f, repeats: int = 21) -> float:
    f()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


if __name__ == "__main__":
    raise SystemExit(main())
