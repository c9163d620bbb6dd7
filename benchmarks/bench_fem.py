"""Sorted Krylov recycling (SKR) against independent solves on data sets of FEM systems, and FEM data generation speed.

Run from the repository root::

    .venv/bin/python benchmarks/bench_fem.py                 # full run (~5-6 min on 2 busy cores)
    .venv/bin/python benchmarks/bench_fem.py --quick         # smoke run (~1 min)
    .venv/bin/python benchmarks/bench_fem.py --skip generation --rounds 3
    .venv/bin/python benchmarks/bench_fem.py --tol 1e-10 --darcy-resolution 85

The machine is shared and noisy, so every speed claim is a ratio of two measurements made in the same
run: each part runs all its contenders once per round, in an order rotated from round to round, and a
ratio is the median (with min-max) over rounds of the per-round ratios. Iteration counts are
deterministic and are compared directly. The last lines, prefixed ``BENCH_JSON``, hold one JSON object
per measurement. A plot (generation samples/s against unknowns; iterations per system along the solve
order with and without recycling) and the per-system iterations as JSON go to ``--out`` (default
``outputs/bench_fem/``, ignored by git). Nothing here asserts on timings.

Data sets (one sequence of ``--*-systems`` linear systems each, all solved to the same relative
residual ``--tol``, default 1e-8, with :func:`pdebench.solvers.linalg.solve_sequence`)
------------------------------------------------------------------------------------------------------
*darcy2d*: ``Darcy2D(resolution=R).sample_inputs(seed, range(N))`` (R=128, N=200: 126^2 = 15,876
unknowns; ``--quick``: R=64, N=40), assembled exactly as the registered ``FEMSolver`` does: its
cached discretisation (P1 on ``unit_square(R)``, load ``f=1``, boundary dofs), harmonic element means
of the nodal permeability, ``diffusion_matrix(..., at="elements")``, Dirichlet condensation ``u=0``.
SPD, same right-hand side for every sample. Sorting features: the permeability fields (as
``FEMSolver(method="skr")`` passes them).

*helmholtz*: ``-Laplace u - k^2 u = f`` with ``u = 0`` on the boundary, P1 on the unstructured
``disk_with_holes(h)`` mesh (h=0.03: 3,238 unknowns; ``--quick``: h=0.04: 1,752), assembled per sample with
``helmholtz_matrix`` + ``load_vector`` + ``condense_dirichlet``. Sample ``i`` draws, from its own
seeded generators, a wavenumber ``k`` uniform in ``--k-band`` (default 6-12) and a smooth source
``f = sum_{p,q<4} a_pq / (1 + p + q) cos(pi p x / 2 + phi_pq) cos(pi q y / 2 + psi_pq)``. Resonances
are avoided exactly for the discrete operator: the generalised eigenvalues of ``(K, M)`` (stiffness,
mass, condensed) up to the band's top are computed with ``eigsh`` and a ``k`` whose ``k^2`` lies
closer than ``--resonance-margin`` (0.3) mean eigenvalue gaps to one is redrawn. The systems are
indefinite (the count of eigenvalues below ``k^2`` is reported). Sorting features: ``k`` alone (the
only parameter of the matrix). Note that with a constant ``k`` every ``A(k) = K - k^2 M`` has the
same eigenvectors (those of the pencil), so a recycled space carries over equally well in any order;
sorting can then only help through the warm start, which the independent random sources defeat.

(a) SKR's protocol: the same Krylov method and preconditioner without and with sorting + recycling
------------------------------------------------------------------------------------------------------
For each preconditioner, three runs over the same systems:

* *without*: independent solves from zero (``"pcg"`` / ``"gmres"``, the very code of the recycling
  solvers with nothing recycled), in the original order;
* *recycling only*: ``"skr-cg"`` / ``"skr-gmres"`` in the original order (warm start from the previous
  solution + the recycled deflation/recycle space), to show what sorting adds;
* *sorted + recycled*: the same with ``features`` (greedy nearest-neighbour order of
  :func:`~pdebench.solvers.linalg.sort_systems`).

darcy2d: CG with Jacobi and with a fresh smoothed-aggregation AMG per system (the *without* of AMG is
``"amg-pcg"``, which is ``"pcg"`` with ``"amg"``), ``skr-cg`` with its defaults (20 deflation vectors).
helmholtz: flexible GMRES(60) with ``"ilu"`` (``make_preconditioner``'s ``spilu``, drop_tol 1e-4,
fill_factor 10) and with ``"none"``; ``skr-gmres`` is GCRO-DR(60, 20); every GMRES run is capped at
``--gmres-maxiter`` (1000) iterations per system. The Helmholtz mesh is smaller than darcy2d's because
that ILU is not reliable on these indefinite matrices beyond it: at h <= 0.02 (7,500+ unknowns) ``spilu``
raises "Factor is exactly singular" for some ``k`` of the band (a failed run is reported, not hidden). A run that leaves systems unconverged is shown as
such; when that is the *without* run, its iteration and time ratios are lower bounds (``>=``).

Time = the ``SequenceResult`` accounting: per-system preconditioner setup (or factorisation) + solve,
plus the sorting time; matrix assembly is excluded for every contender (the systems are built before
the rounds). Reported per pair: total iterations and their ratio (without / with; target >= 2x), time
ratio (target >= 1.5x; SKR's paper reports 1.9-4.5x on Darcy), and met / not met. Every run's
solutions are compared with the direct solve's (max relative difference over the systems).

(b) Against the fastest independent solve
------------------------------------------
darcy2d: sparse LU per system (``"direct"``, ``splu``) and ``"amg-pcg"``; helmholtz: ``"direct"``. Per
round the faster of the candidates is taken, and ``t_fastest / t_skr`` is reported for each
sorted + recycled run (> 1: SKR faster), whichever way it falls.

Generation throughput
---------------------
The registered ``FEMSolver()`` (``method="auto"``: direct up to 100k unknowns) generating darcy2d
samples at R = 32, 64, 85, 128, 256 (``--gen-sizes``; ``--quick``: up to 128): samples/s of
``problem.sample_inputs`` + ``solver.solve`` (assembly, linear solves, sampling onto the grid), with the
solver's cached discretisation built beforehand (its time shown apart). The linear-solve share is
timed by wrapping the solver instance's ``_solve_all``; the rest of ``solve`` is assembly + grid
sampling. Sizes are measured in rounds (all sizes per round, ``--gen-rounds``), median reported, with
the growth exponent of the time per sample against unknowns between neighbouring sizes.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy
import scipy.sparse.linalg as spla

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: _report.py sits next to it
from _report import Report, fmt, machine_info  # noqa: E402

REPORT = Report()
say, status, table, record = REPORT.say, REPORT.status, REPORT.table, REPORT.record

SEED = 0
TARGET_ITERATIONS, TARGET_TIME = 2.0, 1.5
GMRES_RESTART, GMRES_RECYCLE = 60, 20


# -- the data sets -------------------------------------------------------------------------------


@dataclass
class DataSet:
    """One sequence of condensed systems and what sorting may use."""

    name: str
    matrices: list
    rhs: np.ndarray  # (N, n)
    features: np.ndarray  # (N, d)
    unknowns: int
    assembly_s: float
    info: dict[str, Any] = field(default_factory=dict)


def darcy_systems(resolution: int, count: int, seed: int) -> DataSet:
    """darcy2d samples assembled as ``FEMSolver.solve`` does (its own cached discretisation)."""
    from pdebench.problems.elliptic import Darcy2D
    from pdebench.solvers.fem import condense_dirichlet, diffusion_matrix, element_means, grid_to_vertices
    from pdebench.solvers.fem.solver import FEMSolver

    problem = Darcy2D(resolution=resolution)
    disc = FEMSolver().discretisation(problem)
    inputs = problem.sample_inputs(seed, range(count)).numpy()
    mesh = disc.space.mesh
    start = time.perf_counter()
    systems = []
    for sample in inputs:
        coefficient = element_means(mesh, grid_to_vertices(mesh, sample, disc.x, disc.y), mean="harmonic")
        systems.append(condense_dirichlet(diffusion_matrix(disc.space, coefficient, at="elements"), disc.load,
                                          disc.dirichlet, 0.0))
    assembly = time.perf_counter() - start
    A0 = systems[0].A
    return DataSet("darcy2d", [s.A for s in systems], np.stack([s.b for s in systems]), inputs.reshape(count, -1),
                   A0.shape[0], assembly, {"resolution": resolution, "nnz_per_row": A0.nnz / A0.shape[0]})


def pencil_eigenvalues(K, M, upper: float) -> np.ndarray:
    """All generalised eigenvalues of ``(K, M)`` up to (at least) ``upper``, ascending."""
    n = K.shape[0]
    count = 40
    while True:
        count = min(count, n - 2)
        lam = np.sort(spla.eigsh(K, k=count, M=M, sigma=0.0, return_eigenvectors=False))
        if lam[-1] > upper or count >= n - 2:
            return lam
        count *= 2


def helmholtz_source(rng: np.random.Generator):
    """A smooth random source ``f(x)`` (``x`` of shape ``(2, ...)``), coefficients from ``rng``."""
    a = rng.standard_normal((4, 4)) / (1.0 + np.add.outer(np.arange(4), np.arange(4)))
    phi, psi = rng.uniform(0.0, 2.0 * np.pi, (2, 4, 4))
    p = np.arange(4)

    def f(x: np.ndarray) -> np.ndarray:
        X, Y = x[0].reshape(-1), x[1].reshape(-1)
        cx = np.cos(np.pi / 2 * p[:, None, None] * X + phi[:, :, None])  # (4, 4, m): cos(pi p x / 2 + phi_pq)
        cy = np.cos(np.pi / 2 * p[None, :, None] * Y + psi[:, :, None])  # cos(pi q y / 2 + psi_pq)
        return np.einsum("pq,pqm->m", a, cx * cy).reshape(x.shape[1:])

    return f


def helmholtz_systems(h: float, count: int, seed: int, band: tuple[float, float], margin: float) -> DataSet:
    """Dirichlet Helmholtz systems on ``disk_with_holes(h)``, random ``k`` away from resonances, random sources."""
    from pdebench.solvers.fem import (
        FunctionSpace,
        condense_dirichlet,
        diffusion_matrix,
        disk_with_holes,
        helmholtz_matrix,
        load_vector,
        mass_matrix,
    )

    space = FunctionSpace(disk_with_holes(h), "P1")
    dofs = space.boundary_dofs()
    zero = np.zeros(space.ndofs)
    K = condense_dirichlet(diffusion_matrix(space, 1.0), zero, dofs, 0.0).A
    M = condense_dirichlet(mass_matrix(space, 1.0), zero, dofs, 0.0).A
    lo, hi = band
    start = time.perf_counter()
    lam = pencil_eigenvalues(K, M, hi**2)
    eig_s = time.perf_counter() - start
    in_band = lam[(lam >= lo**2) & (lam <= hi**2)]
    gap = float(np.mean(np.diff(in_band))) if in_band.size >= 2 else float(np.mean(np.diff(lam)))
    ks, sources, redrawn = [], [], 0
    for i in range(count):
        k_seq, f_seq = np.random.SeedSequence((seed, i)).spawn(2)
        k_rng = np.random.default_rng(k_seq)
        while True:
            k = float(k_rng.uniform(lo, hi))
            if np.min(np.abs(k**2 - lam)) >= margin * gap:
                break
            redrawn += 1
        ks.append(k)
        sources.append(helmholtz_source(np.random.default_rng(f_seq)))
    ks = np.array(ks)
    start = time.perf_counter()
    systems = [condense_dirichlet(helmholtz_matrix(space, k), load_vector(space, f), dofs, 0.0) for k, f in zip(ks, sources)]
    assembly = time.perf_counter() - start
    negative = np.array([int(np.sum(lam < k**2)) for k in ks])
    distance = np.array([np.min(np.abs(k**2 - lam)) / gap for k in ks])
    A0 = systems[0].A
    return DataSet("helmholtz", [s.A for s in systems], np.stack([s.b for s in systems]), ks[:, None], A0.shape[0],
                   assembly, {"h": h, "k_band": list(band), "mesh_vertices": int(space.mesh.p.shape[1]),
                              "nnz_per_row": A0.nnz / A0.shape[0], "eigenvalue_gap": gap, "eigsh_s": eig_s,
                              "eigenvalues_in_band": int(in_band.size), "redrawn_k": redrawn,
                              "negative_eigenvalues_min": int(negative.min()), "negative_eigenvalues_max": int(negative.max()),
                              "min_resonance_distance_gaps": float(distance.min()), "k_min": float(ks.min()),
                              "k_max": float(ks.max())})


# -- contenders and rounds -----------------------------------------------------------------------


@dataclass(frozen=True)
class Contender:
    """One ``solve_sequence`` configuration."""

    key: str
    method: str
    preconditioner: str | None = None
    sort: bool = False
    options: tuple = ()  # ((name, value), ...) passed to solve_sequence

    @property
    def recycled(self) -> bool:
        return self.method.startswith("skr")


def darcy_contenders() -> list[Contender]:
    return [Contender("direct", "direct"),
            Contender("amg-pcg", "amg-pcg"),
            Contender("pcg+jacobi", "pcg", "jacobi"),
            Contender("skr-cg+jacobi unsorted", "skr-cg", "jacobi"),
            Contender("skr-cg+jacobi sorted", "skr-cg", "jacobi", sort=True),
            Contender("skr-cg+amg unsorted", "skr-cg", "amg"),
            Contender("skr-cg+amg sorted", "skr-cg", "amg", sort=True)]


def helmholtz_contenders(maxiter: int) -> list[Contender]:
    plain = (("restart", GMRES_RESTART), ("maxiter", maxiter))
    skr = (("restart", GMRES_RESTART), ("n_recycle", GMRES_RECYCLE), ("maxiter", maxiter))
    return [Contender("direct", "direct"),
            Contender("gmres+ilu", "gmres", "ilu", options=plain),
            Contender("skr-gmres+ilu unsorted", "skr-gmres", "ilu", options=skr),
            Contender("skr-gmres+ilu sorted", "skr-gmres", "ilu", sort=True, options=skr),
            Contender("gmres+none", "gmres", "none", options=plain),
            Contender("skr-gmres+none unsorted", "skr-gmres", "none", options=skr),
            Contender("skr-gmres+none sorted", "skr-gmres", "none", sort=True, options=skr)]


# (label, without, recycling only, sorted + recycled) per problem
PAIRS = {
    "darcy2d": [("CG + Jacobi", "pcg+jacobi", "skr-cg+jacobi unsorted", "skr-cg+jacobi sorted"),
                ("CG + AMG (fresh per system)", "amg-pcg", "skr-cg+amg unsorted", "skr-cg+amg sorted")],
    "helmholtz": [("GMRES(60) + ILU", "gmres+ilu", "skr-gmres+ilu unsorted", "skr-gmres+ilu sorted"),
                  ("GMRES(60), no preconditioner", "gmres+none", "skr-gmres+none unsorted", "skr-gmres+none sorted")],
}
INDEPENDENT = {"darcy2d": ["direct", "amg-pcg"], "helmholtz": ["direct"]}


def run_contender(c: Contender, data: DataSet, tol: float) -> dict[str, Any]:
    """One ``solve_sequence`` over the whole data set; what it cost (solutions kept for the accuracy check)."""
    from pdebench.solvers.linalg import solve_sequence

    kwargs: dict[str, Any] = dict(c.options)
    if c.preconditioner is not None and c.method != "amg-pcg":
        kwargs["preconditioner"] = c.preconditioner
    if c.sort:
        kwargs["features"] = data.features
    gc.collect()
    start = time.perf_counter()
    try:
        res = solve_sequence(data.matrices, data.rhs, c.method, tol=tol, check=False, **kwargs)
    except (RuntimeError, np.linalg.LinAlgError) as err:  # e.g. spilu: "Factor is exactly singular"
        return {"error": f"{type(err).__name__}: {err}", "wall_s": time.perf_counter() - start}
    wall = time.perf_counter() - start
    return {"time_s": res.total_time + res.sort_time, "setup_s": float(res.setup_times.sum()), "sort_s": res.sort_time,
            "wall_s": wall, "iterations": res.iterations.copy(), "order": res.order.copy(),
            "converged": int(res.converged.sum()), "max_residual": float(res.residuals.max()), "solutions": res.solutions}


def run_rounds(data: DataSet, contenders: list[Contender], rounds: int, tol: float) -> dict[str, list[dict]]:
    """Every contender once per round, the order rotated each round (round 0 starts with ``direct``)."""
    runs: dict[str, list[dict]] = {c.key: [] for c in contenders}
    reference = None
    for r in range(rounds):
        shift = r % len(contenders)
        for c in contenders[shift:] + contenders[:shift]:
            with status(f"{data.name}: round {r + 1}/{rounds}, {c.key}"):
                out = run_contender(c, data, tol)
            sols = out.pop("solutions", None)
            if c.key == "direct" and reference is None:
                reference = sols
            if r == 0 and sols is not None and reference is not None:  # round 0 starts with direct
                diff = np.linalg.norm(sols - reference, axis=1) / np.linalg.norm(reference, axis=1)
                out["rel_diff_vs_direct"] = float(diff.max())
            del sols
            runs[c.key].append(out)
            if "error" in out:
                say(f"  [red]{data.name} {c.key} failed[/red] in round {r + 1}: {out['error']}")
    return runs


# -- summaries -----------------------------------------------------------------------------------


def median_range(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def ratio_cell(med: float, lo: float, hi: float, bound: bool, rounds: int) -> str:
    prefix = ">= " if bound else ""
    return f"{prefix}{med:.2f}x" + (f" [{lo:.2f}-{hi:.2f}]" if rounds > 1 else "")


def ok(runs: list[dict]) -> bool:
    return all("error" not in r for r in runs)


def summarise(data: DataSet, contenders: list[Contender], runs: dict[str, list[dict]], args, common: dict) -> dict:
    """Tables (a) and (b) of one data set, and their BENCH_JSON records."""
    N, rounds = len(data.matrices), args.rounds
    by_key = {c.key: c for c in contenders}
    rows = []
    for c in contenders:
        rr = runs[c.key]
        if not ok(rr):
            rows.append([c.key, "failed", "-", "-", "-", "-", "-", "-"])
            record(bench="fem_sequence", problem=data.name, contender=c.key, method=c.method,
                   preconditioner=c.preconditioner, sorted=c.sort, error=next(r["error"] for r in rr if "error" in r),
                   n_systems=N, unknowns=data.unknowns, tol=args.tol, quick=args.quick, **common)
            continue
        its = rr[0]["iterations"]
        same = all(np.array_equal(r["iterations"], its) for r in rr)
        t_med, t_lo, t_hi = median_range([r["time_s"] for r in rr])
        rows.append([c.key, f"{int(its.sum()):,}", f"{its.mean():.1f}", f"{t_med:.2f}" + (f" [{t_lo:.2f}-{t_hi:.2f}]" if rounds > 1 else ""),
                     f"{statistics.median(r['setup_s'] for r in rr):.2f}", f"{rr[0]['converged']}/{N}",
                     f"{rr[0]['max_residual']:.1e}", fmt(rr[0].get("rel_diff_vs_direct"), 2)])
        record(bench="fem_sequence", problem=data.name, contender=c.key, method=c.method, preconditioner=c.preconditioner,
               sorted=c.sort, recycled=c.recycled, options=dict(c.options), n_systems=N, unknowns=data.unknowns, tol=args.tol,
               total_iterations=int(its.sum()), mean_iterations=float(its.mean()), max_iterations=int(its.max()),
               iterations_same_every_round=same, time_s_median=t_med, time_s_rounds=[r["time_s"] for r in rr],
               setup_s_median=statistics.median(r["setup_s"] for r in rr), sort_s=rr[0]["sort_s"],
               wall_s_rounds=[r["wall_s"] for r in rr], converged=rr[0]["converged"], max_residual=rr[0]["max_residual"],
               max_rel_diff_vs_direct=rr[0].get("rel_diff_vs_direct"), rounds=rounds, quick=args.quick,
               assembly_s_per_system=data.assembly_s / N, **data.info, **common)
    table(f"{data.name}: {N} systems, {data.unknowns:,} unknowns, tol {args.tol:g}, {rounds} round(s); "
          f"time = setup + solve (+ sort), median (min-max) over rounds",
          ["contender", "iterations", "per system", "time s", "setup s", "converged", "max residual", "vs direct"], rows)

    # (a) the SKR protocol
    rows_a, pairs_out = [], []
    for label, without, middle, with_ in PAIRS[data.name]:
        if not (ok(runs[without]) and ok(runs[with_])):
            rows_a.append([label, "-", "-", "-", "-", "a run failed", "-"])
            record(bench="fem_skr_protocol", problem=data.name, pair=label, error="a run failed", **common)
            continue
        w, s = runs[without], runs[with_]
        m = runs[middle] if ok(runs[middle]) else None
        its_w, its_s = int(w[0]["iterations"].sum()), int(s[0]["iterations"].sum())
        bound = w[0]["converged"] < N  # capped baseline: ratios are lower bounds
        with_failed = s[0]["converged"] < N
        its_ratio = its_w / its_s
        t_ratio = median_range([a["time_s"] / b["time_s"] for a, b in zip(w, s)])
        fields: dict[str, Any] = {}
        if m is not None:
            its_m = int(m[0]["iterations"].sum())
            tm_ratio = median_range([a["time_s"] / b["time_s"] for a, b in zip(w, m)])
            sort_gain = median_range([a["time_s"] / b["time_s"] for a, b in zip(m, s)])
            fields = {"iterations_recycling_only": its_m, "iterations_ratio_recycling_only": its_w / its_m,
                      "time_ratio_recycling_only_median": tm_ratio[0], "time_ratio_recycling_only_range": tm_ratio[1:],
                      "sorting_iterations_ratio": its_m / its_s, "sorting_time_ratio_median": sort_gain[0],
                      "converged_recycling_only": m[0]["converged"]}
        its_met = its_ratio >= TARGET_ITERATIONS and not with_failed
        t_met = t_ratio[0] >= TARGET_TIME and not with_failed

        def word(met: bool) -> str:  # a lower bound below the target decides nothing
            return "met" if met else ("open (lower bound)" if bound and not with_failed else "NOT met")

        verdict = (f"iterations {word(its_met)}, time {word(t_met)}"
                   + (" (sorted run left systems unconverged)" if with_failed else ""))
        rows_a.append([label, f"{its_w:,} / " + (f"{fields['iterations_recycling_only']:,}" if m else "-") + f" / {its_s:,}",
                       ("" if not bound else ">= ") + f"{its_ratio:.2f}x",
                       (ratio_cell(fields["time_ratio_recycling_only_median"], *fields["time_ratio_recycling_only_range"], bound, args.rounds)
                        if m else "-"),
                       ratio_cell(*t_ratio, bound, args.rounds),
                       verdict,
                       (f"{fields['sorting_iterations_ratio']:.2f}x / {fields['sorting_time_ratio_median']:.2f}x" if m else "-")])
        pairs_out.append((label, without, middle, with_))
        record(bench="fem_skr_protocol", problem=data.name, pair=label, without=without, recycling_only=middle,
               sorted_recycled=with_, n_systems=N, unknowns=data.unknowns, tol=args.tol,
               iterations_without=its_w, iterations_sorted_recycled=its_s, iterations_ratio=its_ratio,
               time_ratio_median=t_ratio[0], time_ratio_range=t_ratio[1:], ratios_are_lower_bounds=bound,
               converged_without=w[0]["converged"], converged_sorted_recycled=s[0]["converged"],
               target_iterations=TARGET_ITERATIONS, target_time=TARGET_TIME, iterations_target_met=its_met,
               time_target_met=t_met, rounds=args.rounds, quick=args.quick, **fields, **common)
    table(f"(a) {data.name}, SKR protocol: same method + preconditioner, without (independent, from zero) vs with "
          f"sorting + recycling; targets >= {TARGET_ITERATIONS:g}x iterations, >= {TARGET_TIME:g}x time",
          ["method", "its: without / recycled / sorted+rec.", "its ratio", "time ratio, recycled",
           "time ratio, sorted+rec.", "targets", "sorting adds its / time"], rows_a)

    # (b) against the fastest independent solve
    candidates = [k for k in INDEPENDENT[data.name] if ok(runs[k]) and runs[k][0]["converged"] == N]
    rows_b = []
    if candidates:
        fastest_per_round = [min(runs[k][r]["time_s"] for k in candidates) for r in range(rounds)]
        winners = [min(candidates, key=lambda k, r=r: runs[k][r]["time_s"]) for r in range(rounds)]
        fastest = max(set(winners), key=winners.count)
        for label, _, _, with_ in PAIRS[data.name]:
            if not ok(runs[with_]):
                continue
            s = runs[with_]
            speed = median_range([f / x["time_s"] for f, x in zip(fastest_per_round, s)])
            faster = speed[0] >= 1.0
            verdict = f"SKR {speed[0]:.2f}x faster" if faster else f"SKR {1 / speed[0]:.2f}x slower"
            if s[0]["converged"] < N:
                verdict += f" ({N - s[0]['converged']} systems unconverged)"
            rows_b.append([with_, f"{statistics.median(x['time_s'] for x in s):.2f}", fastest,
                           f"{statistics.median(fastest_per_round):.2f}", ratio_cell(*speed, False, rounds), verdict])
            record(bench="fem_vs_fastest", problem=data.name, skr=with_, pair=label, fastest_independent=fastest,
                   candidates=candidates, fastest_time_s_rounds=fastest_per_round,
                   skr_time_s_rounds=[x["time_s"] for x in s], speedup_median=speed[0], speedup_range=speed[1:],
                   skr_faster=faster, n_systems=N, unknowns=data.unknowns, tol=args.tol, rounds=rounds,
                   quick=args.quick, **common)
        table(f"(b) {data.name}: sorted + recycled against the fastest independent solve of {', '.join(candidates)} "
              f"(per round); speedup = t_fastest / t_skr",
              ["SKR run", "SKR time s", "fastest", "fastest time s", "speedup", "verdict"], rows_b)
    return {"pairs": pairs_out, "runs": runs}


def bench_sequences(args, common: dict) -> dict:
    out = {}
    if "darcy" not in args.skip:
        with status(f"darcy2d: sampling and assembling {args.darcy_systems} systems at R={args.darcy_resolution}"):
            data = darcy_systems(args.darcy_resolution, args.darcy_systems, SEED)
        say(f"darcy2d: {len(data.matrices)} systems, {data.unknowns:,} unknowns, {data.info['nnz_per_row']:.1f} nnz/row, "
            f"assembly {1e3 * data.assembly_s / len(data.matrices):.1f} ms/system (excluded from the solve times)")
        contenders = darcy_contenders()
        runs = run_rounds(data, contenders, args.rounds, args.tol)
        out["darcy2d"] = summarise(data, contenders, runs, args, common)
        del data
        gc.collect()
    if "helmholtz" not in args.skip:
        with status(f"helmholtz: mesh, eigenvalues and {args.helmholtz_systems} systems at h={args.helmholtz_h}"):
            data = helmholtz_systems(args.helmholtz_h, args.helmholtz_systems, SEED, tuple(args.k_band), args.resonance_margin)
        i = data.info
        say(f"helmholtz: {len(data.matrices)} systems, {data.unknowns:,} unknowns ({i['mesh_vertices']:,} vertices), "
            f"k in [{i['k_min']:.2f}, {i['k_max']:.2f}], {i['eigenvalues_in_band']} discrete resonances in the band "
            f"(mean gap {i['eigenvalue_gap']:.2f} in k^2; nearest kept k^2 at {i['min_resonance_distance_gaps']:.2f} gaps, "
            f"{i['redrawn_k']} draws rejected), {i['negative_eigenvalues_min']}-{i['negative_eigenvalues_max']} negative "
            f"eigenvalues; assembly {1e3 * data.assembly_s / len(data.matrices):.1f} ms/system")
        contenders = helmholtz_contenders(args.gmres_maxiter)
        runs = run_rounds(data, contenders, args.rounds, args.tol)
        out["helmholtz"] = summarise(data, contenders, runs, args, common)
        del data
        gc.collect()
    return out


# -- generation throughput -----------------------------------------------------------------------


def bench_generation(args, common: dict) -> list[dict]:
    import torch

    from pdebench.problems.elliptic import Darcy2D
    from pdebench.solvers.fem.solver import FEMSolver

    torch.set_num_threads(1)
    counts = dict(zip(args.gen_sizes, args.gen_samples))
    setups: dict[int, dict] = {}
    for R in args.gen_sizes:
        problem = Darcy2D(resolution=R)
        solver = FEMSolver()
        start = time.perf_counter()
        solver.discretisation(problem)
        setup = time.perf_counter() - start
        linear = [0.0]
        inner = solver._solve_all

        def timed(*a, _inner=inner, _linear=linear, **k):
            t0 = time.perf_counter()
            try:
                return _inner(*a, **k)
            finally:
                _linear[0] += time.perf_counter() - t0

        solver._solve_all = timed
        solver.solve(problem, problem.sample_inputs(SEED + 1, range(2)))  # warm-up (imports, caches), not timed
        setups[R] = {"problem": problem, "solver": solver, "linear": linear, "setup_s": setup, "runs": []}
    for r in range(args.gen_rounds):
        for R in args.gen_sizes:
            s, n = setups[R], counts[R]
            with status(f"generation: round {r + 1}/{args.gen_rounds}, R={R}, {n} samples"):
                gc.collect()
                s["linear"][0] = 0.0
                t0 = time.perf_counter()
                inputs = s["problem"].sample_inputs(SEED, range(n))
                t1 = time.perf_counter()
                traj = s["solver"].solve(s["problem"], inputs)
                t2 = time.perf_counter()
            s["runs"].append({"inputs_s": t1 - t0, "solve_s": t2 - t1, "linear_s": s["linear"][0]})
            s["method"], s["unknowns"] = traj.provenance["method"], traj.provenance["unknowns"]
    rows, results = [], []
    previous = None
    for R in args.gen_sizes:
        s, n = setups[R], counts[R]
        per = [(x["inputs_s"] + x["solve_s"]) / n for x in s["runs"]]
        t_med = statistics.median(per)
        inputs_ms = 1e3 * statistics.median(x["inputs_s"] for x in s["runs"]) / n
        linear_ms = 1e3 * statistics.median(x["linear_s"] for x in s["runs"]) / n
        assembly_ms = 1e3 * statistics.median(x["solve_s"] - x["linear_s"] for x in s["runs"]) / n
        growth = None if previous is None else float(np.log(t_med / previous[1]) / np.log(s["unknowns"] / previous[0]))
        previous = (s["unknowns"], t_med)
        rows.append([str(R), f"{s['unknowns']:,}", s["method"], str(n), f"{1 / t_med:.1f}", f"{1e3 * t_med:.1f}",
                     f"{inputs_ms:.1f}", f"{assembly_ms:.1f}", f"{linear_ms:.1f}",
                     f"{100 * linear_ms / (1e3 * t_med):.0f}%", fmt(growth, 2), f"{s['setup_s']:.2f}"])
        results.append(record(bench="fem_generation", problem="darcy2d", resolution=R, unknowns=s["unknowns"],
                              method=s["method"], samples=n, rounds=args.gen_rounds, samples_per_s=1 / t_med,
                              samples_per_s_rounds=[1 / p for p in per], ms_per_sample=1e3 * t_med,
                              inputs_ms_per_sample=inputs_ms, assembly_and_sampling_ms_per_sample=assembly_ms,
                              linear_solve_ms_per_sample=linear_ms, growth_exponent_vs_previous=growth,
                              discretisation_setup_s=s["setup_s"], quick=args.quick, **common))
    table(f"generation: FEMSolver() (method auto) darcy2d samples/s, median of {args.gen_rounds} round(s); "
          "growth = d log(time per sample) / d log(unknowns) from the previous size",
          ["R", "unknowns", "method", "samples", "samples/s", "ms/sample", "inputs ms", "assembly+grid ms",
           "linear solve ms", "solve share", "growth", "setup once s"], rows)
    return results


# -- plot ----------------------------------------------------------------------------------------


def plot(sequences: dict, generation: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    panels = [(name, p) for name, res in sequences.items() for p in res["pairs"]]
    n_panels = len(panels) + (1 if generation else 0)
    if n_panels == 0:
        return
    cols = min(3, n_panels)
    rows = (n_panels + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 4.0 * rows), squeeze=False)
    axes = axes.ravel()
    i = 0
    dump: dict[str, Any] = {}
    if generation:
        ax = axes[0]
        x = [g["unknowns"] for g in generation]
        ax.loglog(x, [g["samples_per_s"] for g in generation], "o-", label="samples/s")
        ax.loglog(x, [1e3 / g["linear_solve_ms_per_sample"] for g in generation], "s--", ms=4, label="linear solves only")
        ax.loglog(x, [1e3 / g["assembly_and_sampling_ms_per_sample"] for g in generation], "^--", ms=4,
                  label="assembly + grid only")
        for g in generation:
            ax.annotate(f"R={g['resolution']}", (g["unknowns"], g["samples_per_s"]), textcoords="offset points",
                        xytext=(4, 4), fontsize=7)
        ax.set_xlabel("unknowns")
        ax.set_ylabel("darcy2d samples/s (FEMSolver, auto)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
        dump["generation"] = generation
        i = 1
    for name, (label, without, middle, with_) in panels:
        ax = axes[i]
        i += 1
        runs = sequences[name]["runs"]
        dump[f"{name}: {label}"] = {}
        for key, style in ((without, "-"), (middle, "-"), (with_, "-")):
            r = runs[key][0]
            if "error" in r:
                continue
            its = r["iterations"][r["order"]]  # along this run's own solve order
            if key == without and "error" not in runs[with_][0]:
                its = r["iterations"][runs[with_][0]["order"]]  # independent solves: shown in the sorted order
            what = {without: "without (independent)", middle: "recycling, original order",
                    with_: "sorted + recycled"}[key]
            ax.plot(np.arange(its.size), its, style, lw=1, label=f"{what}: {int(its.sum()):,}")
            dump[f"{name}: {label}"][key] = its.tolist()
        capped = runs[without][0].get("converged", 0) < runs[without][0]["iterations"].size if ok(runs[without]) else False
        ax.set_title(f"{name}: {label}" + (" (without: capped, unconverged)" if capped else ""), fontsize=9)
        ax.set_xlabel("position in the solve order (independent: sorted order)")
        ax.set_ylabel("iterations per system")
        shown = [v for k in (without, middle, with_) for v in dump[f"{name}: {label}"].get(k, [])]
        if shown and max(shown) > 10 * max(1, min(shown)):
            ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    for ax in axes[i:]:
        ax.axis("off")
    fig.tight_layout()
    path = out / "bench_fem.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    (out / "bench_fem_iterations.json").write_text(json.dumps(dump, default=float))
    say(f"  plot: {path}; per-system iterations: {out / 'bench_fem_iterations.json'}")


# -- main ----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="darcy2d R=64 x 40 systems, helmholtz h=0.04 x 40, one round, generation up to R=128")
    parser.add_argument("--tol", type=float, default=1e-8, help="relative residual of every iterative solve (default 1e-8)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds of the sequence contenders (default 2, quick 1)")
    parser.add_argument("--darcy-resolution", type=int, default=None, help="darcy2d grid points per axis (default 128, quick 64)")
    parser.add_argument("--darcy-systems", type=int, default=None, help="darcy2d systems (default 200, quick 40)")
    parser.add_argument("--helmholtz-h", type=float, default=None, help="disk_with_holes mesh size (default 0.03, quick 0.04)")
    parser.add_argument("--helmholtz-systems", type=int, default=None, help="helmholtz systems (default 200, quick 40)")
    parser.add_argument("--k-band", type=float, nargs=2, default=[6.0, 12.0], metavar=("LO", "HI"), help="wavenumber band")
    parser.add_argument("--resonance-margin", type=float, default=0.3,
                        help="min distance of k^2 to a discrete eigenvalue, in mean eigenvalue gaps (default 0.3)")
    parser.add_argument("--gmres-maxiter", type=int, default=1000, help="iteration cap per system of every GMRES run")
    parser.add_argument("--gen-sizes", type=int, nargs="+", default=None, help="generation resolutions (default 32 64 85 128 256)")
    parser.add_argument("--gen-samples", type=int, nargs="+", default=None, help="samples per generation size")
    parser.add_argument("--gen-rounds", type=int, default=None, help="generation rounds (default 2, quick 1)")
    parser.add_argument("--out", default="outputs/bench_fem", help="folder of the plot (default outputs/bench_fem)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["darcy", "helmholtz", "generation"], help="parts to leave out")
    args = parser.parse_args(argv)

    q = args.quick
    args.rounds = args.rounds or (1 if q else 2)
    args.darcy_resolution = args.darcy_resolution or (64 if q else 128)
    args.darcy_systems = args.darcy_systems or (40 if q else 200)
    args.helmholtz_h = args.helmholtz_h or (0.04 if q else 0.03)
    args.helmholtz_systems = args.helmholtz_systems or (40 if q else 200)
    args.gen_rounds = args.gen_rounds or (1 if q else 2)
    default_counts = {32: 200, 64: 100, 85: 64, 128: 32, 256: 8} if not q else {32: 50, 64: 20, 85: 12, 128: 6}
    args.gen_sizes = args.gen_sizes or list(default_counts)
    if args.gen_samples is None:
        args.gen_samples = [default_counts.get(R, max(4, int(200 * (32 / R) ** 2))) for R in args.gen_sizes]
    if len(args.gen_samples) != len(args.gen_sizes):
        parser.error("--gen-samples needs one count per --gen-sizes entry")
    if (min(args.rounds, args.darcy_systems, args.helmholtz_systems, args.gen_rounds, args.gmres_maxiter, *args.gen_samples) < 1
            or args.darcy_resolution < 5 or min(args.gen_sizes) < 5 or not 0 < args.tol < 1
            or not 0 < args.k_band[0] < args.k_band[1] or args.helmholtz_h <= 0):
        parser.error("sizes must be positive, resolutions >= 5, 0 < tol < 1 and 0 < k_lo < k_hi")

    import pyamg
    import skfem

    common = machine_info({"numpy": np.__version__, "scipy": scipy.__version__, "scikit-fem": skfem.__version__,
                           "pyamg": pyamg.__version__}, threads=os.environ.get("OMP_NUM_THREADS", "unset"))
    start = time.perf_counter()
    say(f"[bold]bench_fem[/bold] {'--quick ' if q else ''}tol {args.tol:g}, {args.rounds} round(s), "
        f"OMP_NUM_THREADS={common['threads']} on {os.cpu_count()} CPUs, scipy {scipy.__version__}, pyamg "
        f"{pyamg.__version__}, scikit-fem {skfem.__version__}, load average {common['loadavg_start']:.2f}")
    sequences = bench_sequences(args, common)
    generation = bench_generation(args, common) if "generation" not in args.skip else []
    plot(sequences, generation, Path(args.out))
    say(f"total {time.perf_counter() - start:.0f} s, load average at end {os.getloadavg()[0]:.2f}, "
        f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10:.0f} MiB")
    REPORT.emit_json()
    return 0


if __name__ == "__main__":
    sys.exit(main())
