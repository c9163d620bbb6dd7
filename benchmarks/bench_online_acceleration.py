r"""The darcy3d generator's cost per sample while the operator that warm-starts it trains (issue 22).

An FNO trains (``python train.py fit``, ``configs/darcy2d/fno.yaml`` on darcy3d pairs at ``n`` interior
nodes per axis, a checkpoint ``last.ckpt`` every epoch, written atomically) for ``--train-seconds``. Meanwhile
this process generates fresh darcy3d samples (``(1_000_000, i)``, never trained on) in blocks of
``--block``, ``--points`` blocks spread over the training time: every block is solved twice with AMG-PCG
(``--method``) to :math:`\|b - A x\| \le 10^{-8}\|b\|`, once from
the zero start (the cold reference) and once from a
:class:`~pdebench.training.acceleration.ReloadingOperatorGuess` of ``last.ckpt`` (``every_samples = block``:
each block takes the newest checkpoint; zeros before the first one). Per block: the training time, the
model version, seconds and CG iterations per sample of both arms, and the guess's relative residual
:math:`\|b - A\gamma x_0\|/\|b\|` (:math:`\gamma` the Galerkin scaling CG applies) and relative error against
the solve. The arms share the two cores with the trainer alike (interleaved per block), so their ratio is
the figure. One ``BENCH_JSON`` line per block and one summary; a PNG of the curves in ``--out``.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_online_acceleration.py`` (about 4 min, n = 24;
``--quick``: n = 16, 45 s of training, about 1.5 min).
"""

from __future__ import annotations

import argparse
import json
import os
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


class Recorded:
    """A guess callable that keeps its last output (to measure the guess's quality after the solve)."""

    def __init__(self, inner) -> None:
        self.inner, self.last = inner, None

    @property
    def source(self) -> str:
        return self.inner.source

    def __call__(self, coefficients):
        self.last = self.inner(coefficients)
        return self.last


def guess_quality(problem, inputs, guesses, solutions) -> tuple[float, float]:
    """Median relative residual of the Galerkin-scaled guesses and their relative error against the solutions."""
    import numpy as np

    from pdebench.solvers.fv.elliptic import elliptic_system

    residuals, errors = [], []
    for a, g, u in zip(inputs.numpy(), guesses.numpy(), solutions[:, 0].numpy()):
        A, b = elliptic_system(a, problem.forcing)
        inner = (slice(1, -1),) * 3
        x0, exact = g[inner].ravel(), u[inner].ravel()
        denom = float(x0 @ (A @ x0))
        x = (float(x0 @ b) / denom) * x0 if denom > 0 else x0
        residuals.append(float(np.linalg.norm(b - A @ x) / np.linalg.norm(b)))
        errors.append(float(np.linalg.norm(x - exact) / np.linalg.norm(exact)))
    return statistics.median(residuals), statistics.median(errors)


def plot(blocks: list[dict], out: Path, n: int, method: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [b["train_s"] for b in blocks]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    axes[0].plot(t, [b["cold_iterations"] for b in blocks], "o-", ms=3, label="cold (zero start)")
    axes[0].plot(t, [b["warm_iterations"] for b in blocks], "s-", ms=3, label="warm (reloaded FNO)")
    axes[0].set_ylabel("CG iterations per sample")
    axes[1].plot(t, [b["cold_s"] for b in blocks], "o-", ms=3, label="cold")
    axes[1].plot(t, [b["warm_s"] for b in blocks], "s-", ms=3, label="warm (FNO forward included)")
    axes[1].set_ylabel("solve seconds per sample")
    warm = [b for b in blocks if b["loads"]]
    axes[2].plot([b["train_s"] for b in warm], [b["guess_residual"] for b in warm], "s-", ms=3, label="relative residual")
    axes[2].plot([b["train_s"] for b in warm], [b["guess_error"] for b in warm], "^-", ms=3, label="relative error")
    axes[2].axhline(1.0, color="gray", lw=0.8, ls="--")
    axes[2].set_yscale("log")
    axes[2].set_ylabel("FNO guess (Galerkin-scaled)")
    for ax in axes:
        ax.set_xlabel("seconds since the trainer started (imports included)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"darcy3d {n}³, {method} to 1e-8: cold vs warm start from the FNO training beside it", fontsize=9)
    fig.tight_layout()
    path = out / "bench_online_acceleration.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=24, help="interior nodes per axis")
    parser.add_argument("--train-samples", type=int, default=128)
    parser.add_argument("--train-seconds", type=float, default=150.0)
    parser.add_argument("--block", type=int, default=4, help="samples per generated block (= reload_every)")
    parser.add_argument("--points", type=int, default=20, help="blocks spread over the training time")
    parser.add_argument("--method", default="amg-pcg", choices=["amg-pcg", "ic0-pcg"], help="CG preconditioner of both arms")
    parser.add_argument("--out", default="outputs/bench_online_acceleration", help="folder of the plot and curve")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.n, args.train_samples, args.train_seconds = 16, 48, 45.0

    import torch

    from pdebench.data.generate import generate_dataset
    from pdebench.problems import PROBLEMS
    from pdebench.solvers.fv.elliptic import FVEllipticSolver
    from pdebench.training.acceleration import ReloadingOperatorGuess

    torch.set_num_threads(1)
    report = Report()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    problem = PROBLEMS.build("darcy3d", resolution=args.n + 2)
    blocks: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data = folder / "darcy3d_train.h5"
        with report.status(f"generating {args.train_samples} darcy3d training samples at {args.n}³ (AMG-PCG)"):
            generate_dataset(problem, data, num_samples=args.train_samples, seed=0, batch_size=16,
                             solver_kwargs={"method": "amg-pcg"})
        seconds = int(args.train_seconds)
        command = [sys.executable, str(ROOT / "train.py"), "fit", "--config", str(ROOT / "configs/darcy2d/fno.yaml"),
                   "--data.init_args.path", str(data), "--data.init_args.batch_size", "4", "--trainer.max_epochs", "1000",
                   "--trainer.max_time", f"00:00:{seconds // 60:02d}:{seconds % 60:02d}",
                   "--model.model_args", "{n_modes: 8, hidden_channels: 16, n_layers: 4}"]
        checkpoint = folder / "outputs/darcy2d_fno/checkpoints/last.ckpt"
        guess = Recorded(ReloadingOperatorGuess(checkpoint, every_samples=args.block, problem="darcy3d"))
        warm_solver = FVEllipticSolver(method=args.method, tol=TOL, initial_guess=guess)
        cold_solver = FVEllipticSolver(method=args.method, tol=TOL)
        env = dict(os.environ, OMP_NUM_THREADS="1")
        start = time.perf_counter()
        log_file = (folder / "train.log").open("w")  # a file, not a pipe: a full pipe would stall the trainer
        trainer = subprocess.Popen(command, cwd=folder, env=env, stdout=log_file, stderr=subprocess.STDOUT, text=True)
        index, last_round = 0, False
        try:
            while True:
                finished = trainer.poll() is not None
                ids = [(HELD_OUT, i) for i in range(index, index + args.block)]
                inputs = problem.sample_inputs(HELD_OUT, range(index, index + args.block))
                index += args.block
                train_s = time.perf_counter() - start
                with report.status(f"training {train_s:.0f} s: block {len(blocks) + 1} ({args.block} samples, cold and warm)"):
                    t0 = time.perf_counter()
                    cold = cold_solver.solve(problem, inputs, ids)
                    t1 = time.perf_counter()
                    warm = warm_solver.solve(problem, inputs, ids)
                    t2 = time.perf_counter()
                loads = guess.inner.loads
                residual, error = guess_quality(problem, inputs, guess.last, cold.fields["tensor"]) if loads else (1.0, 1.0)
                block = {"block": len(blocks), "train_s": train_s, "loads": loads, "warm_start_from": warm.provenance["warm_start_from"],
                         "cold_s": (t1 - t0) / args.block, "warm_s": (t2 - t1) / args.block,
                         "cold_iterations": statistics.mean(cold.provenance["iterations_per_sample"]),
                         "warm_iterations": statistics.mean(warm.provenance["iterations_per_sample"]),
                         "guess_residual": residual, "guess_error": error, "training_finished": finished}
                blocks.append(block)
                report.record(benchmark="online_acceleration_block", n=args.n, block_samples=args.block, method=args.method, **block,
                              warm_vs_cold_iterations=block["warm_iterations"] / block["cold_iterations"],
                              warm_vs_cold_seconds=block["warm_s"] / block["cold_s"])
                if last_round:
                    break
                last_round = finished  # one block after training ended, from its final checkpoint
                wait = len(blocks) * args.train_seconds / args.points - (time.perf_counter() - start)
                while wait > 0 and trainer.poll() is None:  # the next block at its slot (or when training ends)
                    time.sleep(min(wait, 0.5))
                    wait -= 0.5
        finally:
            if trainer.poll() is None:
                trainer.terminate()
                trainer.wait(timeout=30)
            log_file.close()
        if not blocks or not blocks[-1]["loads"]:
            raise RuntimeError(f"training saved no checkpoint: {(folder / 'train.log').read_text()[-3000:]}")
    loaded = [b for b in blocks if b["loads"]]
    summary = {"blocks": len(blocks), "samples": index, "checkpoint_versions": blocks[-1]["loads"],
               "cold_iterations": statistics.median(b["cold_iterations"] for b in blocks),
               "cold_s_per_sample": statistics.median(b["cold_s"] for b in blocks),
               "final_warm_vs_cold_iterations": blocks[-1]["warm_iterations"] / blocks[-1]["cold_iterations"],
               "final_warm_vs_cold_seconds": blocks[-1]["warm_s"] / blocks[-1]["cold_s"],
               "median_warm_vs_cold_iterations_loaded": statistics.median(b["warm_iterations"] / b["cold_iterations"] for b in loaded) if loaded else None,
               "median_warm_vs_cold_seconds_loaded": statistics.median(b["warm_s"] / b["cold_s"] for b in loaded) if loaded else None,
               "final_guess_relative_residual": blocks[-1]["guess_residual"], "final_guess_relative_error": blocks[-1]["guess_error"]}
    report.record(benchmark="online_acceleration", n=args.n, block_samples=args.block, tol=TOL, method=args.method, **summary,
                  **machine_info(threads=1, train_seconds=args.train_seconds, train_samples=args.train_samples))
    (out / "bench_online_acceleration.json").write_text(json.dumps(blocks, indent=1))
    png = plot(blocks, out, args.n, args.method)
    report.table(f"darcy3d {args.n}³ per generated sample while the FNO trains ({args.method} to 1e-8; {args.block} samples a block)",
                 ["train s", "model", "cold it", "warm it", "warm/cold it", "cold s", "warm s", "warm/cold s", "guess res", "guess err"],
                 [[fmt(b["train_s"]), str(b["loads"] or "-"), fmt(b["cold_iterations"]), fmt(b["warm_iterations"]),
                   fmt(b["warm_iterations"] / b["cold_iterations"]), fmt(b["cold_s"]), fmt(b["warm_s"]),
                   fmt(b["warm_s"] / b["cold_s"]), fmt(b["guess_residual"]) if b["loads"] else "-",
                   fmt(b["guess_error"]) if b["loads"] else "-"] for b in blocks])
    report.say(f"plot: {png}; curve: {out / 'bench_online_acceleration.json'}")
    report.emit_json()


if __name__ == "__main__":
    main()
