"""Speed benchmark of the batched pseudo-spectral ETDRK4 solver against in-run references.

Run from the repository root::

    .venv/bin/python benchmarks/bench_spectral.py            # full run (a few minutes)
    .venv/bin/python benchmarks/bench_spectral.py --quick    # smoke run (about a minute)
    .venv/bin/python benchmarks/bench_spectral.py --threads 1 2

Every speed is printed as a ratio against a reference measured in the same run (this machine is
shared and noisy, absolute numbers move by 2x from one minute to the next). Measurements are
interleaved in rounds (ours, reference, ours, reference, ...) and the median of the per-round
ratios is reported. The last lines, prefixed ``BENCH_JSON``, hold one JSON object per measurement.

Parts
-----
1. ``burgers1d`` (N=1024, batch 64, T=1, nu=0.1): ours vs a per-trajectory SciPy ``solve_ivp``
   method-of-lines reference at equal final accuracy, both measured against the exact Cole-Hopf
   solution. The SciPy method is picked by the benchmark itself: every candidate (BDF, Radau, LSODA,
   and in a full run RK45) walks a tolerance ladder until it is at least as accurate as ours; the
   fastest one wins.
2. ``ns2d`` (64^2, batch 16, T=2, nu=1e-3, the problem's forcing): same, against a tight-tolerance
   DOP853 solution (cross-checked against ours with a 4x smaller step).
3. Exponax (JAX ETDRK4) on the identical burgers1d setting, jit + vmap; skipped if not installed.
4. Threads: ours is measured with each ``--threads`` count in parts 1-3, and once more while a
   busy-loop process competes for the CPUs (contention probe); a default is recommended.
5. Peak memory of streaming ns2d trajectories (64^2, 50 frames) to HDF5 through
   ``pdebench.io.trajectory_file.TrajectoryWriter`` in batches of 16, in a subprocess (peak RSS).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy
import scipy.sparse as sp
import torch
from scipy.integrate import solve_ivp

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: _report.py sits next to it
from _report import Report, fmt, machine_info  # noqa: E402

REPORT = Report()
say, status, table, record = REPORT.say, REPORT.status, REPORT.table, REPORT.record


# -- output --------------------------------------------------------------------------------------


def relative_l2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-sample relative L2 error ``|a - b| / |b|`` over all but the first axis."""
    a = np.asarray(a, dtype=np.float64).reshape(len(a), -1)
    b = np.asarray(b, dtype=np.float64).reshape(len(b), -1)
    return np.linalg.norm(a - b, axis=1) / np.linalg.norm(b, axis=1)


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


# -- exact Burgers solution ----------------------------------------------------------------------


def cole_hopf(u0: np.ndarray, nu: float, t: float, length: float = 1.0, refine: int = 8) -> np.ndarray:
    r"""Exact viscous Burgers solution ``u_t + (u^2/2)_x = nu u_xx`` at time ``t`` on the grid of ``u0``.

    Cole-Hopf: ``u = -2 nu phi_x / phi`` with ``phi_t = nu phi_xx`` and
    ``phi_0 = exp(-(1/2nu) int_0^x u0)``. ``u0`` (zero mean, so the integral is periodic) is read
    as the trigonometric polynomial through its grid values (its Nyquist mode dropped: it has no
    antiderivative on the grid); the antiderivative is taken exactly in Fourier space and evaluated
    on a ``refine`` times finer grid, where ``phi_0`` is sampled and advanced exactly mode by mode
    (``exp(-nu k^2 t)``). The result is subsampled back to the grid points.
    """
    u0 = np.asarray(u0, dtype=np.float64)
    batch, n = u0.shape
    m = n * refine
    u_hat = np.fft.rfft(u0, axis=-1)
    if np.abs(u_hat[:, 0]).max() > 1e-9 * n * max(1.0, np.abs(u0).max()):
        raise ValueError("Cole-Hopf reference needs zero-mean initial conditions")
    k = 2 * np.pi * np.arange(n // 2 + 1) / length
    antiderivative_hat = np.zeros_like(u_hat)
    antiderivative_hat[:, 1:-1] = u_hat[:, 1:-1] / (1j * k[1:-1])
    fine_hat = np.zeros((batch, m // 2 + 1), dtype=complex)
    fine_hat[:, : n // 2 + 1] = antiderivative_hat * (m / n)
    antiderivative = np.fft.irfft(fine_hat, n=m, axis=-1)
    antiderivative -= antiderivative.mean(axis=-1, keepdims=True)  # scale phi to O(1)
    phi_hat = np.fft.rfft(np.exp(-antiderivative / (2 * nu)), axis=-1)
    k_fine = 2 * np.pi * np.arange(m // 2 + 1) / length
    phi_hat *= np.exp(-nu * k_fine**2 * t)
    phi = np.fft.irfft(phi_hat, n=m, axis=-1)
    phi_x = np.fft.irfft(1j * k_fine * phi_hat, n=m, axis=-1)
    return (-2 * nu * phi_x / phi)[:, ::refine]


# -- SciPy method-of-lines references ------------------------------------------------------------


class _Deadline(Exception):
    pass


def _with_deadline(rhs: Callable, deadline: float) -> Callable:
    def wrapped(t, y):
        if time.perf_counter() > deadline:
            raise _Deadline
        return rhs(t, y)

    return wrapped


class BurgersMOL:
    """Pseudo-spectral method of lines for ``u_t + (u^2/2)_x = nu u_xx`` on ``[0, L)``, numpy FFT.

    State: the ``N/2+1`` real-FFT coefficients (``norm="forward"``, so they are mode amplitudes),
    packed as ``[Re, Im]``. Nonlinear term dealiased with the 2/3 rule (modes ``|n| < N/3`` kept, as
    in pdebench), linear term ``-nu k^2`` exact on every mode. The stiff solvers get the constant
    diagonal Jacobian of the linear part (sparse for BDF/Radau, banded with zero bandwidth for LSODA;
    no finite-difference Jacobian: it would cost ``N`` RHS calls); Newton's iteration absorbs the
    (non-stiff) nonlinear part.
    """

    def __init__(self, n: int, nu: float, length: float = 1.0) -> None:
        self.n, self.m = n, n // 2 + 1
        index = np.arange(self.m)
        k = 2 * np.pi * index / length
        self.ik = 1j * np.where(index == n // 2, 0.0, k)  # derivative symbol, Nyquist zeroed
        self.mask = (index < n / 3).astype(np.float64)
        self.linear = -nu * k**2
        diagonal = np.concatenate([self.linear, self.linear])
        self.jac_sparse = sp.diags(diagonal).tocsc()
        self.jac_banded = diagonal[None, :]

    def pack(self, u: np.ndarray) -> np.ndarray:
        h = np.fft.rfft(u, norm="forward")
        return np.concatenate([h.real, h.imag])

    def unpack(self, y: np.ndarray) -> np.ndarray:
        """``(2m, T)`` or ``(2m,)`` packed states -> grid values ``(T, N)`` or ``(N,)``."""
        h = y[: self.m] + 1j * y[self.m :]
        return np.fft.irfft(h, n=self.n, axis=0, norm="forward").T

    def rhs(self, t: float, y: np.ndarray) -> np.ndarray:
        h = y[: self.m] + 1j * y[self.m :]
        u = np.fft.irfft(self.mask * h, n=self.n, norm="forward")
        r = self.linear * h - 0.5 * self.mask * self.ik * np.fft.rfft(u * u, norm="forward")
        return np.concatenate([r.real, r.imag])


class VorticityMOL:
    """Pseudo-spectral method of lines for 2-D vorticity ``w_t + u.grad w = nu lap w + f`` (numpy FFT).

    Same conventions as :class:`BurgersMOL`: ``rfft2`` coefficients (``norm="forward"``) packed as
    ``[Re, Im]``, 2/3 rule on both axes, the four inverse transforms of one evaluation in one call.
    """

    def __init__(self, n: int, nu: float, forcing: np.ndarray, length: float = 1.0) -> None:
        self.n = n
        nx = np.fft.fftfreq(n, 1.0 / n)[:, None]
        ny = np.fft.rfftfreq(n, 1.0 / n)[None, :]
        kx, ky = 2 * np.pi * nx / length, 2 * np.pi * ny / length
        k2 = kx**2 + ky**2
        self.shape = k2.shape
        self.m = k2.size
        self.ikx = 1j * np.where(np.abs(nx) == n // 2, 0.0, kx) * np.ones_like(ky)
        self.iky = 1j * np.where(np.abs(ny) == n // 2, 0.0, ky) * np.ones_like(kx)
        self.mask = ((np.abs(nx) < n / 3) & (np.abs(ny) < n / 3)).astype(np.float64)
        self.inverse_laplacian = np.where(k2 > 0, 1.0 / np.where(k2 > 0, k2, 1.0), 0.0)
        self.linear = -nu * k2
        self.forcing_hat = np.fft.rfft2(forcing, norm="forward")
        diagonal = np.concatenate([self.linear.ravel(), self.linear.ravel()])
        self.jac_sparse = sp.diags(diagonal).tocsc()
        self.jac_banded = diagonal[None, :]

    def pack(self, w: np.ndarray) -> np.ndarray:
        h = np.fft.rfft2(w, norm="forward").ravel()
        return np.concatenate([h.real, h.imag])

    def unpack(self, y: np.ndarray) -> np.ndarray:
        h = (y[: self.m] + 1j * y[self.m :]).reshape(self.shape)
        return np.fft.irfft2(h, s=(self.n, self.n), norm="forward")

    def rhs(self, t: float, y: np.ndarray) -> np.ndarray:
        h = (y[: self.m] + 1j * y[self.m :]).reshape(self.shape)
        hm = self.mask * h
        psi = hm * self.inverse_laplacian
        stacked = np.stack([self.iky * psi, -self.ikx * psi, self.ikx * hm, self.iky * hm])
        u, v, wx, wy = np.fft.irfft2(stacked, s=(self.n, self.n), norm="forward")
        r = self.linear * h - self.mask * np.fft.rfft2(u * wx + v * wy, norm="forward") + self.forcing_hat
        r = r.ravel()
        return np.concatenate([r.real, r.imag])


def mol_solve(mol, u0: np.ndarray, t_final: float, t_eval: np.ndarray, method: str, rtol: float,
              deadline: float = math.inf) -> tuple[np.ndarray, int]:
    """One trajectory: returns (state at ``t_final`` on the grid, RHS evaluations)."""
    y0 = mol.pack(u0)
    kwargs = {}
    if method in ("BDF", "Radau"):
        kwargs["jac"] = mol.jac_sparse
    elif method == "LSODA":  # banded storage with zero bandwidth: the diagonal
        kwargs.update(jac=lambda t, y: mol.jac_banded, lband=0, uband=0)
    sol = solve_ivp(_with_deadline(mol.rhs, deadline), (0.0, t_final), y0, method=method,
                    t_eval=t_eval, rtol=rtol, atol=rtol * 1e-3, **kwargs)
    if not sol.success:
        raise RuntimeError(f"solve_ivp {method} rtol={rtol:g} failed: {sol.message}")
    return mol.unpack(sol.y[:, -1]), int(sol.nfev)


def choose_mol_method(mol, u0: np.ndarray, targets: np.ndarray, reference: np.ndarray, t_final: float,
                      t_eval: np.ndarray, candidates: list[str], cap_s: float, prune: float,
                      floor_s: float) -> dict:
    """Pick the fastest SciPy method reaching the accuracy ``targets`` (per sample of ``u0``).

    Each candidate walks a tolerance ladder (``rtol = 10^-3 ... 10^-13`` in half decades, atol =
    1e-3 rtol, mode amplitudes are O(1)) on the first trajectory until its error is at most ours;
    the tolerance is then checked on the whole subset (tightened while the subset mean error is
    above ours). A run is aborted past ``min(cap_s, max(prune x best so far, floor_s))`` seconds per
    trajectory: it cannot win. Returns a summary with the winner and every candidate's outcome.
    """
    ladder = [10.0 ** (-e) for e in np.arange(3.0, 13.01, 0.5)]
    best = None
    outcomes = []
    for method in candidates:
        limit = cap_s if best is None else min(cap_s, max(prune * best["time_per_traj"], floor_s))
        outcome = {"method": method, "status": "not reached", "looser": None}
        try:
            chosen = None
            for i, rtol in enumerate(ladder):
                elapsed, (u_t, nfev) = timed(lambda: mol_solve(mol, u0[0], t_final, t_eval, method, rtol,
                                                                time.perf_counter() + limit))
                err = float(relative_l2(u_t[None], reference[:1])[0])
                if err <= targets[0]:
                    chosen = i
                    break
                outcome["looser"] = {"rtol": rtol, "err": err, "time_per_traj": elapsed}
            if chosen is None:
                outcomes.append(outcome)
                continue
            while chosen < len(ladder):  # check on the whole subset
                rtol = ladder[chosen]
                deadline = time.perf_counter() + limit * len(u0)
                elapsed, runs = timed(lambda: [mol_solve(mol, u, t_final, t_eval, method, rtol, deadline) for u in u0])
                errs = relative_l2(np.stack([r[0] for r in runs]), reference)
                if errs.mean() <= targets.mean() or chosen == len(ladder) - 1:
                    break
                outcome["looser"] = {"rtol": rtol, "err": float(errs.mean()), "time_per_traj": elapsed / len(u0)}
                chosen += 1
            outcome.update(status="ok", rtol=rtol, err=float(errs.mean()), errs=errs.tolist(),
                           time_per_traj=elapsed / len(u0), nfev=int(np.mean([r[1] for r in runs])))
            if best is None or outcome["time_per_traj"] < best["time_per_traj"]:
                best = outcome
        except _Deadline:
            outcome.update(status="aborted", limit_s=limit)
        outcomes.append(outcome)
    if best is None:
        raise RuntimeError("no SciPy method reached the target accuracy; see the candidates above")
    return {"best": best, "candidates": outcomes}


def describe_candidates(summary: dict, target: float) -> list[list[str]]:
    rows = []
    for c in summary["candidates"]:
        if c["status"] == "ok":
            rows.append([c["method"], f"{c['rtol']:.1e}", fmt(c["err"]), fmt(c["err"] / target),
                         fmt(c["time_per_traj"]), str(c["nfev"])])
        elif c["status"] == "aborted":
            rows.append([c["method"], "-", "-", "-", f"> {c['limit_s']:.3g} (aborted)", "-"])
        else:
            rows.append([c["method"], "-", "not reached", "-", "-", "-"])
    return rows


# -- pdebench ------------------------------------------------------------------------------------


def over_budget(args, times_per_traj: list[float], batch: int) -> bool:
    """Whether one thread count has used up its timing budget (the rest of its rounds are skipped).

    Guards the run time when a thread count collapses under load from other processes (see the
    contention probe): at least one round is always timed.
    """
    budget = 20.0 if args.quick else 60.0
    return len(times_per_traj) >= 1 and sum(times_per_traj) * batch > budget



def ours_solve(problem, ic: torch.Tensor, threads: int, dt: float | None = None):
    from pdebench.solvers import SpectralSolver

    torch.set_num_threads(threads)
    return SpectralSolver(dt=dt, dtype="float64").solve(problem, ic)


def final_frame(traj, problem) -> np.ndarray:
    return traj.fields[problem.field_name][:, -1].double().cpu().numpy()


# -- parts ---------------------------------------------------------------------------------------


def bench_burgers(args, common: dict) -> dict:
    from pdebench.problems.onedim import Burgers1D

    batch, subset = 64, (2 if args.quick else 4)
    problem = Burgers1D(nx=1024, nu=0.1, t_final=1.0)
    dt = 1e-2
    ic = problem.sample_initial_conditions(0, range(batch))
    exact = cole_hopf(ic.numpy(), problem.nu, problem.t_final, problem.length)

    with status("burgers1d: warm-up and accuracy of pdebench"):
        ours_err = {}
        for threads in args.threads:
            traj = ours_solve(problem, ic, threads, dt)  # warm-up (first call pays one-off costs)
            ours_err[threads] = relative_l2(final_frame(traj, problem), exact)
        errs = ours_err[args.threads[0]]
        h = traj.provenance.get("dt", dt)
    say(f"[bold]burgers1d[/bold] N=1024 batch={batch} T=1 nu=0.1 dt={h:g}: pdebench rel. L2 error vs Cole-Hopf "
        f"{errs.mean():.3e} (max {errs.max():.3e})")

    mol = BurgersMOL(problem.nx, problem.nu, problem.length)
    candidates = ["BDF", "Radau", "LSODA"] + ([] if args.quick else ["RK45"])
    with status(f"burgers1d: choosing the SciPy method ({', '.join(candidates)}) at equal accuracy"):
        summary = choose_mol_method(
            mol, ic[:subset].numpy(), errs[:subset], exact[:subset], problem.t_final, problem.output_times(),
            candidates, cap_s=5.0 if args.quick else 20.0, prune=3.0 if args.quick else 20.0,
            floor_s=1.0 if args.quick else 2.0)
    best = summary["best"]
    table(f"burgers1d: SciPy solve_ivp candidates (error target = pdebench's {errs[:subset].mean():.3e} "
          f"on the {subset}-trajectory subset; first trajectory for the ladder)",
          ["method", "rtol", "rel. L2 err", "err / ours", "s / traj", "RHS evals"],
          describe_candidates(summary, errs[:subset].mean()))
    say(f"  chosen: [bold]{best['method']}[/bold] rtol={best['rtol']:.1e} (fastest to reach pdebench's error)")

    rounds = 3 if args.quick else 5
    per_round: dict[int, list[tuple[float, float]]] = {t: [] for t in args.threads}
    ref_times = []
    with status(f"burgers1d: {rounds} timing rounds"):
        for _ in range(rounds):
            for threads in args.threads:
                if over_budget(args, per_round[threads], batch):
                    continue
                elapsed, _ = timed(lambda: ours_solve(problem, ic, threads, dt))
                per_round[threads].append(elapsed / batch)
            elapsed, _ = timed(lambda: [mol_solve(mol, u, problem.t_final, problem.output_times(), best["method"],
                                                  best["rtol"]) for u in ic[:subset].numpy()])
            ref_times.append(elapsed / subset)
    ref_tps = 1.0 / statistics.median(ref_times)
    rows, out = [], {}
    for threads in args.threads:
        ratios = [r / o for o, r in zip(per_round[threads], ref_times)]
        ours_tps = 1.0 / statistics.median(per_round[threads])
        speedup = statistics.median(ratios)
        looser = best.get("looser")
        bracket = (looser["time_per_traj"] / statistics.median(per_round[threads])) if looser else None
        rows.append([str(threads), fmt(ours_tps), fmt(ref_tps), f"[bold]{speedup:.3g}x[/bold]",
                     f"{min(ratios):.3g}-{max(ratios):.3g}", fmt(bracket)])
        out[threads] = record(
            bench="burgers1d", impl="pdebench", threads=threads, quick=args.quick, nx=1024, batch=batch, t_final=1.0,
            nu=0.1, dt=h, traj_per_s=ours_tps, traj_steps_per_s=ours_tps * round(problem.t_final / h),
            rel_l2_err=float(errs.mean()), reference="scipy.solve_ivp " + best["method"], ref_rtol=best["rtol"],
            ref_rel_l2_err=best["err"], ref_traj_per_s=ref_tps, speedup_vs_ref=speedup,
            speedup_vs_ref_range=[min(ratios), max(ratios)], speedup_vs_looser_ref=bracket,
            target_speedup=20.0, rounds=rounds, **common)
    table("burgers1d: pdebench (batch 64) vs per-trajectory SciPy at equal accuracy (median of rounds)",
          ["threads", "pdebench traj/s", f"SciPy {best['method']} traj/s", "speedup", "per-round range",
           "vs next-looser rtol"], rows)
    say(f"  errors vs Cole-Hopf: pdebench {errs.mean():.3e}, SciPy {best['method']} {best['err']:.3e} "
        f"(subset of {subset}); target speedup >= 20x. 'vs next-looser rtol': speedup against the SciPy run one "
        f"half-decade looser (less accurate than ours) -- the equal-accuracy ratio lies between the two.")
    record(bench="burgers1d", impl="scipy", method=best["method"], rtol=best["rtol"], atol=best["rtol"] * 1e-3,
           rel_l2_err=best["err"], traj_per_s=ref_tps, rhs_evals=best["nfev"], subset=subset, quick=args.quick,
           candidates=[{k: v for k, v in c.items() if k != "errs"} for c in summary["candidates"]], **common)
    return {"problem": problem, "ic": ic, "exact": exact, "errs": errs, "dt": dt, "per_round": per_round}


def bench_ns(args, common: dict) -> dict:
    from pdebench.problems.navier_stokes import NavierStokes2D

    batch, subset = 16, (1 if args.quick else 2)
    problem = NavierStokes2D(resolution=64, nu=1e-3, t_final=2.0, n_out=2)
    ic = problem.sample_initial_conditions(0, range(batch))
    mol = VorticityMOL(problem.resolution, problem.nu, problem.forcing().numpy(), problem.length)
    t_eval = problem.output_times()

    with status("ns2d: reference (DOP853, rtol=1e-13) and warm-up"):
        reference = np.stack([mol_solve(mol, w, problem.t_final, t_eval, "DOP853", 1e-13)[0]
                              for w in ic[:subset].numpy()])
        for threads in args.threads:
            traj = ours_solve(problem, ic, threads)
        h = float(traj.provenance["dt"])
        steps = round(problem.t_final / h)
        ours_all = final_frame(traj, problem)
        errs = relative_l2(ours_all[:subset], reference)
        fine = final_frame(ours_solve(problem, ic[:subset], args.threads[-1], h / 4), problem)
        consistency = relative_l2(fine, reference)
    say(f"[bold]ns2d[/bold] 64^2 batch={batch} T=2 nu=1e-3: pdebench step h={h:.4g} ({steps} steps, stability-"
        f"limited), rel. L2 error vs DOP853(rtol 1e-13) {errs.mean():.3e}; pdebench at h/4 vs that reference "
        f"{consistency.mean():.1e} (reference check)")

    candidates = ["DOP853", "RK45", "LSODA", "BDF"]
    with status(f"ns2d: choosing the SciPy method ({', '.join(candidates)}) at equal accuracy"):
        summary = choose_mol_method(
            mol, ic[:subset].numpy(), errs, reference, problem.t_final, t_eval, candidates,
            cap_s=5.0 if args.quick else 20.0, prune=3.0 if args.quick else 20.0, floor_s=1.0 if args.quick else 2.0)
    best = summary["best"]
    table(f"ns2d: SciPy solve_ivp candidates (error target = pdebench's {errs.mean():.3e})",
          ["method", "rtol", "rel. L2 err", "err / ours", "s / traj", "RHS evals"],
          describe_candidates(summary, errs.mean()))
    say(f"  chosen: [bold]{best['method']}[/bold] rtol={best['rtol']:.1e}")

    rounds = 3 if args.quick else 5
    per_round: dict[int, list[float]] = {t: [] for t in args.threads}
    ref_times = []
    with status(f"ns2d: {rounds} timing rounds"):
        for _ in range(rounds):
            for threads in args.threads:
                if over_budget(args, per_round[threads], batch):
                    continue
                elapsed, _ = timed(lambda: ours_solve(problem, ic, threads))
                per_round[threads].append(elapsed / batch)
            elapsed, _ = timed(lambda: [mol_solve(mol, w, problem.t_final, t_eval, best["method"], best["rtol"])
                                        for w in ic[:subset].numpy()])
            ref_times.append(elapsed / subset)
    ref_tps = 1.0 / statistics.median(ref_times)
    rows = []
    for threads in args.threads:
        ratios = [r / o for o, r in zip(per_round[threads], ref_times)]
        ours_tps = 1.0 / statistics.median(per_round[threads])
        speedup = statistics.median(ratios)
        looser = best.get("looser")
        bracket = (looser["time_per_traj"] / statistics.median(per_round[threads])) if looser else None
        rows.append([str(threads), fmt(ours_tps), fmt(ours_tps * steps), fmt(ref_tps), f"[bold]{speedup:.3g}x[/bold]",
                     f"{min(ratios):.3g}-{max(ratios):.3g}", fmt(bracket)])
        record(bench="ns2d", impl="pdebench", threads=threads, quick=args.quick, resolution=64, batch=batch,
               t_final=2.0, nu=1e-3, dt=h, steps=steps, traj_per_s=ours_tps, traj_steps_per_s=ours_tps * steps,
               rel_l2_err=float(errs.mean()), reference="scipy.solve_ivp " + best["method"], ref_rtol=best["rtol"],
               ref_rel_l2_err=best["err"], ref_traj_per_s=ref_tps, speedup_vs_ref=speedup,
               speedup_vs_ref_range=[min(ratios), max(ratios)], speedup_vs_looser_ref=bracket, rounds=rounds,
               **common)
    table("ns2d: pdebench (batch 16) vs per-trajectory SciPy at equal accuracy (median of rounds)",
          ["threads", "pdebench traj/s", "traj-steps/s", f"SciPy {best['method']} traj/s", "speedup",
           "per-round range", "vs next-looser rtol"], rows)
    say(f"  errors vs DOP853(1e-13): pdebench {errs.mean():.3e}, SciPy {best['method']} {best['err']:.3e}")
    record(bench="ns2d", impl="scipy", method=best["method"], rtol=best["rtol"], atol=best["rtol"] * 1e-3,
           rel_l2_err=best["err"], traj_per_s=ref_tps, rhs_evals=best["nfev"], subset=subset, quick=args.quick,
           candidates=[{k: v for k, v in c.items() if k != "errs"} for c in summary["candidates"]], **common)
    return {"per_round": per_round, "steps": steps}


def bench_exponax(args, common: dict, burgers: dict) -> dict | None:
    try:
        import jax

        jax.config.update("jax_enable_x64", True)
        import exponax
        import jax.numpy as jnp
    except ImportError as exc:
        say(f"[yellow]exponax: skipped ({exc}); install the optional extra: "
            f".venv/bin/pip install -e '.\\[bench]' (jax==0.10.2 jaxlib==0.10.2 exponax==0.2.0)[/yellow]")
        record(bench="burgers1d", impl="exponax", skipped=str(exc), quick=args.quick, **common)
        return None
    problem, ic, exact, dt = burgers["problem"], burgers["ic"], burgers["exact"], burgers["dt"]
    batch, n_steps = ic.shape[0], round(problem.t_final / dt)
    x0 = jax.device_put(jnp.asarray(ic.numpy()[:, None, :]))
    configs = {}
    with status("exponax: jit compile, accuracy"):
        for conservative in (False, True):
            # Exponax: u_t + b1 * 1/2 (u^2)_x = nu u_xx with b1 = convection_scale = 1: the same equation as
            # Burgers1D. order=4 is ETDRK4 (Exponax's default is order=2). Contour: its default 16 points.
            stepper = exponax.stepper.Burgers(1, problem.length, problem.nx, dt, diffusivity=problem.nu,
                                              convection_scale=1.0, order=4, conservative=conservative)
            rollout = jax.jit(jax.vmap(exponax.rollout(stepper, n_steps, include_init=True)))
            trj = rollout(x0).block_until_ready()  # compile + warm-up
            errs = relative_l2(np.asarray(trj[:, -1, 0]), exact)
            configs[conservative] = {"fn": rollout, "errs": errs, "times": []}
    rounds = 3 if args.quick else 5
    ours_times: dict[int, list[float]] = {t: [] for t in args.threads}
    with status(f"exponax: {rounds} timing rounds (interleaved with pdebench)"):
        for _ in range(rounds):
            for threads in args.threads:
                if over_budget(args, ours_times[threads], batch):
                    continue
                elapsed, _ = timed(lambda: ours_solve(problem, ic, threads, dt))
                ours_times[threads].append(elapsed / batch)
            for cfg in configs.values():
                elapsed, _ = timed(lambda: cfg["fn"](x0).block_until_ready())
                cfg["times"].append(elapsed / batch)
    # The faster Exponax form is the peer (both forms are the same PDE and reach the same error).
    peer_key = min(configs, key=lambda c: statistics.median(configs[c]["times"]))
    peer = configs[peer_key]
    peer_tps = 1.0 / statistics.median(peer["times"])
    ours_errs = burgers["errs"]
    rows = []
    for conservative, cfg in configs.items():
        tps = 1.0 / statistics.median(cfg["times"])
        rows.append([f"exponax ETDRK4 ({'conservative' if conservative else 'u u_x'} form)", fmt(tps),
                     fmt(cfg["errs"].mean()), "1 (peer)" if conservative == peer_key else fmt(tps / peer_tps)])
        record(bench="burgers1d", impl="exponax", form="conservative" if conservative else "nonconservative",
               order=4, num_circle_points=16, dt=dt, batch=batch, quick=args.quick, traj_per_s=tps,
               rel_l2_err=float(cfg["errs"].mean()), jax=jax.__version__, exponax=getattr(exponax, "__version__", "?"),
               peer=conservative == peer_key, **common)
    for threads in args.threads:
        ratios = [p / o for o, p in zip(ours_times[threads], peer["times"])]
        tps = 1.0 / statistics.median(ours_times[threads])
        ratio = statistics.median(ratios)
        rows.append([f"pdebench ETDRK4, {threads} thread(s)", fmt(tps), fmt(ours_errs.mean()),
                     f"[bold]{ratio:.3g}x[/bold] ({min(ratios):.3g}-{max(ratios):.3g})"])
        record(bench="burgers1d", impl="pdebench_vs_exponax", threads=threads, dt=dt, batch=batch, quick=args.quick,
               traj_per_s=tps, rel_l2_err=float(ours_errs.mean()), exponax_traj_per_s=peer_tps,
               exponax_rel_l2_err=float(peer["errs"].mean()), speedup_vs_exponax=ratio,
               speedup_vs_exponax_range=[min(ratios), max(ratios)], target_speedup=1.5, rounds=rounds, **common)
    table("burgers1d (N=1024, batch 64, T=1, dt=1e-2, float64): pdebench vs Exponax (jit+vmap rollout, 101 frames)",
          ["implementation", "traj/s", "rel. L2 err vs Cole-Hopf", "speed / Exponax"], rows)
    ratio_err = ours_errs.mean() / peer["errs"].mean()
    say(f"  same step, same scheme: error ratio pdebench/Exponax = {ratio_err:.3f} (target speed ratio >= 1.5x). "
        f"JAX uses its own CPU thread pool (not limited by --threads).")
    return {"ours_times": ours_times}


_HOG = "import time\nend = time.time() + {seconds}\nwhile time.time() < end:\n    pass\n"


def contention_probe(args, burgers: dict) -> dict[int, dict[str, float]]:
    """Slowdown of short solves (burgers1d T=0.2 batch 64, ns2d T=0.25 batch 16) when one CPU-bound
    process competes for a core: quiet time, then time with a busy-loop child running (killed right
    after, and bounded to a minute by itself anyway). Geometric mean over the two problems."""
    from pdebench.problems.navier_stokes import NavierStokes2D

    ns = NavierStokes2D(resolution=64, nu=1e-3, t_final=0.25, n_out=1)
    cases = [(burgers["problem"].replace(t_final=0.2, n_out=20), burgers["ic"], burgers["dt"]),
             (ns, ns.sample_initial_conditions(0, range(16)), None)]
    out, repeats = {}, (2 if args.quick else 3)  # mean, not min: the collapse is erratic
    for threads in args.threads:
        quiet, loaded = [], []
        for problem, ic, dt in cases:
            ours_solve(problem, ic, threads, dt)
            quiet.append(statistics.mean(timed(lambda: ours_solve(problem, ic, threads, dt))[0] for _ in range(repeats)))
        hog = subprocess.Popen([sys.executable, "-c", _HOG.format(seconds=60)])
        try:
            time.sleep(0.3)
            for problem, ic, dt in cases:
                loaded.append(statistics.mean(timed(lambda: ours_solve(problem, ic, threads, dt))[0]
                                              for _ in range(repeats)))
        finally:
            hog.kill()
            hog.wait()
        slowdowns = [b / a for a, b in zip(quiet, loaded)]
        out[threads] = {"quiet_s": quiet, "contended_s": loaded, "slowdowns": slowdowns,
                        "slowdown": math.exp(statistics.mean(math.log(x) for x in slowdowns))}
    return out


def recommend_threads(args, common: dict, parts: dict[str, dict[int, list[float]]], probe: dict | None) -> None:
    """Recommend a thread count: the best worst case over "machine otherwise idle" (the timing rounds)
    and "one other CPU-bound process running" (the contention probe), throughput relative to the first
    count; without a probe, the fastest."""
    if len(args.threads) < 2:
        return
    base = args.threads[0]
    rows, idle, contended = [], {}, {}
    for threads in args.threads:
        speedups = {}
        for name, per_round in parts.items():
            ratios = [b / t for b, t in zip(per_round[base], per_round[threads])]
            speedups[name] = statistics.median(ratios)
        idle[threads] = math.exp(statistics.mean(math.log(s) for s in speedups.values()))
        extra = []
        if probe:
            contended[threads] = idle[threads] * probe[base]["slowdown"] / probe[threads]["slowdown"]
            extra = [f"{probe[threads]['slowdown']:.3g}x ({', '.join(f'{x:.3g}' for x in probe[threads]['slowdowns'])})",
                     f"{contended[threads]:.3g}x"]
        rows.append([str(threads)] + [f"{speedups[n]:.3g}x" for n in parts] + [f"{idle[threads]:.3g}x"] + extra)
    if probe:
        recommended = max(args.threads, key=lambda t: min(idle[t], contended[t]))
        reason = "; ".join(f"{t} thread(s): {idle[t]:.3g}x in the timing rounds, {contended[t]:.3g}x with one competing process"
                           for t in args.threads) + " (relative to " + f"{base} thread(s); best worst case wins)"
    else:
        recommended = max(idle, key=idle.get)
        reason = "fastest in this run (no contention probe)"
    table(f"threads: pdebench throughput relative to {base} thread(s) (median of interleaved rounds)",
          ["threads"] + list(parts) + ["geo. mean (timing rounds)"]
          + (["slowdown under 1 competing process (burgers, ns2d)", "throughput then"] if probe else []), rows)
    say(f"  recommended default: [bold]torch.set_num_threads({recommended})[/bold] on this {os.cpu_count()}-core machine: "
        f"{reason}")
    record(bench="threads", impl="pdebench", thread_counts=args.threads, relative_throughput_idle=idle,
           relative_throughput_contended=contended or None, contention_probe=probe, recommended=recommended,
           reason=reason, quick=args.quick, **common)


# -- memory --------------------------------------------------------------------------------------


def _peak_rss_kb() -> int:
    """Peak resident set of this process image in KiB: ``VmHWM`` (per address space, so not inflated by
    the parent that forked us), else ``ru_maxrss``."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def memory_child(samples: int, t_final: float, n_out: int, batch: int, path: str, threads: int) -> None:
    """Generate ``samples`` ns2d trajectories in batches and stream them to ``path``; print a JSON line."""
    torch.set_num_threads(threads)
    from pdebench.io.trajectory_file import TrajectoryWriter
    from pdebench.problems.navier_stokes import NavierStokes2D
    from pdebench.solvers import SpectralSolver

    start = time.perf_counter()
    problem = NavierStokes2D(resolution=64, t_final=t_final, n_out=n_out)
    solver = SpectralSolver()
    rss_after_import = _peak_rss_kb()
    with TrajectoryWriter(path, overwrite=True) as writer:
        for first in range(0, samples, batch):
            indices = list(range(first, min(first + batch, samples)))
            ic = problem.sample_initial_conditions(0, indices)
            ids = np.column_stack([np.zeros(len(indices), dtype=np.int64), np.asarray(indices)])
            writer.append(solver.solve(problem, ic, sample_ids=ids))
    print(json.dumps({"samples": samples, "frames": n_out + 1, "wall_s": time.perf_counter() - start,
                      "vmhwm_kb": _peak_rss_kb(), "vmhwm_after_import_kb": rss_after_import,
                      "file_bytes": os.path.getsize(path)}), flush=True)


# A forked child starts with its parent's resident-set high-water mark (Linux keeps it across fork and
# exec), so RUSAGE_CHILDREN read in this (large) process would report at least our own size. A small
# launcher process forks the generator instead and reads RUSAGE_CHILDREN itself.
_LAUNCHER = (
    "import resource, subprocess, sys\n"
    "rc = subprocess.run(sys.argv[1:]).returncode\n"
    "print('RUSAGE_CHILDREN_MAXRSS_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, flush=True)\n"
    "sys.exit(rc)\n"
)


def _memory_run(samples: int, t_final: float, n_out: int, batch: int, threads: int) -> dict:
    """One generator subprocess (through the small launcher); its measurements, or ``{"failed": ...}``."""
    with tempfile.TemporaryDirectory(prefix="bench_spectral_") as folder:
        path = str(Path(folder) / "ns2d.h5")
        command = [sys.executable, "-c", _LAUNCHER, sys.executable, str(Path(__file__).resolve()), "--_memory-child",
                   str(samples), str(t_final), str(n_out), str(batch), path, str(threads)]
        proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"failed": f"exit {proc.returncode}: {proc.stderr[-3000:]}"}
    lines = proc.stdout.strip().splitlines()
    child = json.loads(next(line for line in lines if line.startswith("{")))
    child["rusage_children_kb"] = int(next(x for x in lines if x.startswith("RUSAGE_CHILDREN_MAXRSS_KB")).split()[1])
    return child


def bench_memory(args, common: dict, threads: int) -> None:
    try:
        from pdebench.io.trajectory_file import TrajectoryWriter  # noqa: F401
    except ImportError as exc:
        say(f"[yellow]memory: skipped (pdebench.io.trajectory_file.TrajectoryWriter not available: {exc})[/yellow]")
        record(bench="memory_ns2d_stream", skipped=str(exc), quick=args.quick, **common)
        return
    samples = args.memory_samples or (160 if args.quick else 1000)
    small = max(48, samples // 6 // 16 * 16)  # a second, smaller run: does the peak grow with the count?
    t_final = args.memory_t_final or (1.0 if args.quick else 2.0)
    n_out, batch = 50, 16
    note = (f"ns2d 64^2, {n_out + 1} frames, batches of {batch}, T={t_final:g}"
            + ("" if t_final == 50 else " (the problem's T=50 shortened for time: memory depends on the number "
               "of trajectories, frames and the batch, not on T; --memory-t-final 50 runs the full horizon)")
            + (" [--quick: fewer trajectories and shorter T]" if args.quick and not args.memory_samples else ""))
    runs = {}
    for count in (small, samples):
        with status(f"memory: streaming {count} trajectories to HDF5 in a subprocess"):
            runs[count] = _memory_run(count, t_final, n_out, batch, threads)
        if "failed" in runs[count]:
            say(f"[red]memory: generator failed ({count} trajectories):[/red]\n{runs[count]['failed']}")
            record(bench="memory_ns2d_stream", samples=count, failed=runs[count]["failed"][-500:], quick=args.quick,
                   **common)
            return
    rows = []
    for count, run in runs.items():
        peak = run["rusage_children_kb"] / 1024
        data = count * (n_out + 1) * 64 * 64 * 4 / 2**20
        ok = peak < 1024
        rows.append([str(count), f"[bold]{peak:.0f}[/bold]", f"{run['vmhwm_kb'] / 1024:.0f}",
                     f"{run['vmhwm_after_import_kb'] / 1024:.0f}", f"{data:.0f}", f"{peak / data:.3g}",
                     f"{run['file_bytes'] / 2**20:.0f}", f"{run['wall_s']:.1f}",
                     "[green]OK[/green]" if ok else "[red]EXCEEDED[/red]"])
        record(bench="memory_ns2d_stream", samples=count, frames=n_out + 1, resolution=64, batch=batch,
               t_final=t_final, peak_rss_mib=peak, vmhwm_mib=run["vmhwm_kb"] / 1024,
               rss_after_import_mib=run["vmhwm_after_import_kb"] / 1024, dataset_mib=data,
               file_mib=run["file_bytes"] / 2**20, wall_s=run["wall_s"], limit_mib=1024, ok=ok, threads=threads,
               quick=args.quick, **common)
    table(f"memory: peak RSS streaming to HDF5 (TrajectoryWriter, gzip), {note}",
          ["trajectories", "peak RSS MiB", "VmHWM MiB", "after imports", "data MiB (f32)", "peak/data", "file MiB",
           "wall s", "< 1 GiB"], rows)
    growth = (runs[samples]["rusage_children_kb"] - runs[small]["rusage_children_kb"]) / 1024
    more_data = (samples - small) * (n_out + 1) * 64 * 64 * 4 / 2**20
    verdict = "flat: streaming holds one batch" if growth < 0.1 * more_data else "NOT flat: something accumulates"
    say(f"  peak grows by {growth:.0f} MiB from {small} to {samples} trajectories, for {more_data:.0f} MiB more data "
        f"({verdict}). RUSAGE_CHILDREN is read by a small launcher process: read here it would include this "
        f"process's own size.")
    record(bench="memory_ns2d_stream_growth", samples=[small, samples], growth_mib=growth, more_data_mib=more_data,
           flat=growth < 0.1 * more_data, quick=args.quick, **common)


# -- main ----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer rounds, smaller subsets, short memory run")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch thread counts (default 1 2)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["burgers", "ns2d", "exponax", "contention", "memory"],
                        help="parts to leave out")
    parser.add_argument("--memory-samples", type=int, default=None, help="trajectories in the memory part")
    parser.add_argument("--memory-t-final", type=float, default=None, help="horizon T of the memory part")
    parser.add_argument("--_memory-child", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._memory_child:
        s, t, n, b, path, th = args._memory_child
        memory_child(int(s), float(t), int(n), int(b), path, int(th))
        return 0
    if any(t < 1 for t in args.threads):
        parser.error("--threads must be positive")

    common = machine_info({"numpy": np.__version__, "scipy": scipy.__version__})
    start = time.perf_counter()
    say(f"[bold]bench_spectral[/bold] {'--quick ' if args.quick else ''}threads={args.threads} on "
        f"{os.cpu_count()} CPUs, torch {torch.__version__}, load average {common['loadavg_start']:.2f}")
    thread_parts = {}
    burgers = None
    if "burgers" not in args.skip or "exponax" not in args.skip:
        burgers = bench_burgers(args, common)
        thread_parts["burgers1d"] = burgers["per_round"]
    if "ns2d" not in args.skip:
        ns = bench_ns(args, common)
        thread_parts["ns2d"] = ns["per_round"]
    if "exponax" not in args.skip and burgers is not None:
        bench_exponax(args, common, burgers)
    if thread_parts and len(args.threads) > 1:
        probe = None
        if burgers is not None and "contention" not in args.skip:
            with status("threads: contention probe (one busy-loop process competing for the CPUs)"):
                probe = contention_probe(args, burgers)
        recommend_threads(args, common, thread_parts, probe)
    if "memory" not in args.skip:
        bench_memory(args, common, 1)  # memory does not depend on threads; 1 is robust to other load
    say(f"total {time.perf_counter() - start:.0f} s, load average at end {os.getloadavg()[0]:.2f}")
    REPORT.emit_json()
    return 0


if __name__ == "__main__":
    sys.exit(main())
