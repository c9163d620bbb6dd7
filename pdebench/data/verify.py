r"""Verify a data file: re-solve some of its samples much more accurately and measure its error.

:func:`verify_file` reads a grid file with :class:`~pdebench.io.trajectory_file.TrajectoryFile`
(our files and PDEBench's published layouts), recognises its problem, re-solves ``K`` of its samples
(evenly spaced rows) on the file's own grid with a much tighter tolerance and measures the relative
L2 error of every stored frame against that reference,

.. math:: e_{b,k} = \lVert u^{\text{file}}_{b,k} - u^{\text{ref}}_{b,k} \rVert_2 / \lVert u^{\text{ref}}_{b,k} \rVert_2

(:func:`~pdebench.core.metrics.relative_l2`, one value per sample ``b`` and frame ``k``). A sample
passes when every frame is within the threshold: the file's certified tolerance times
:data:`SAFETY_FACTOR` (at least :data:`STORAGE_FLOOR`, what float32 storage allows) where the file
carries a certificate (``provenance.error_estimate.rtol``), else :data:`FIXED_THRESHOLD`.

What is recognised
------------------
* Our time-dependent files solved by the spectral solver (``provenance.problem``, rebuilt from
  ``provenance.problem_args``; files written before that attribute existed are rebuilt from their
  attributes and grid, other arguments at their defaults, and the report says so). The reference is
  :class:`~pdebench.solvers.spectral.SpectralSolver` with ``rtol`` (default ``min(1e-10, file rtol / 10)``).
  It starts from the initial condition the sample's id draws (float64) where that matches the stored
  frame 0 to float32 rounding, else from the stored frame 0. A discarded warm-up is not re-run:
  the reference starts from the stored frame 0.
* Our steady files (``darcy2d``, ``darcy3d``): the stored coefficient ``nu`` is solved again by the
  problem's solver (finite elements, finite volumes) with the linear-solve tolerance ``rtol``.
* PDEBench 1-D files (layout ``tensor``, ``(N, T, X)``): ``Nu`` and ``Rho`` -> ``reaction_diffusion1d``
  (Fisher, PDEBench's :math:`u_t = \nu u_{xx} + \rho u(1-u)`), ``Nu`` alone -> ``burgers1d`` with
  :math:`\nu = Nu/\pi` (PDEBench's Burgers is :math:`u_t + (u^2/2)_x = (Nu/\pi) u_{xx}`), ``beta`` ->
  ``advection1d``. All three are periodic in PDEBench, as ours; their ``x`` are cell centres
  :math:`(j + 1/2)\Delta x`, ours grid points :math:`j \Delta x`: the equations are translation
  invariant and periodic, so the shift does not change the solution map. Where the attribute is
  missing, the parameter is read from PDEBench's file name (``..._Nu0.1.hdf5``, ``..._beta0.4.hdf5``,
  ``ReacDiff_Nu0.5_Rho1.0.hdf5``).
* PDEBench's Darcy layout (``nu``/``tensor``) on a grid that includes the boundary
  (:math:`x_j = j/(n-1)`, the FNO setting), forcing from the ``beta`` or ``f`` attribute (else 1).

Not verifiable (:class:`NotVerifiable`, a ``ValueError``: the command exits with status 2 and one line
saying why): particle files (SPH has no certified reference), mesh files, FNO ``.mat`` files (not read:
MATLAB's column-major ``a``/``u`` without coordinates, the viscosity only in the file name),
finite-volume problems (the certified stepping stops at E1's shocks: no tight reference past them), PDEBench files whose
equation cannot be told from their attributes or name, and PDEBench's cell-centred Darcy grid
(boundary excluded), which our FEM nodes cannot reproduce.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from rich.table import Table

from pdebench.core.metrics import relative_l2
from pdebench.core.plots import plot_verification_errors
from pdebench.io.base import layout_of, same_value
from pdebench.io.mesh_file import LAYOUT as MESH_LAYOUT
from pdebench.io.particle_file import LAYOUT as PARTICLE_LAYOUT
from pdebench.io.trajectory_file import TrajectoryFile
from pdebench.problems import PROBLEMS
from pdebench.problems.base import Problem
from pdebench.problems.elliptic import SteadyProblem
from pdebench.solvers import SOLVERS
from pdebench.solvers.base import BlowUpError
from pdebench.solvers.spectral.solver import MIN_RTOL

__all__ = [
    "DEFAULT_SAMPLES", "FIXED_THRESHOLD", "REFERENCE_RTOL", "SAFETY_FACTOR", "STORAGE_FLOOR",
    "NotVerifiable", "SampleCheck", "VerifyReport", "VerifySettings", "report_table", "verify_file", "write_report",
]

#: Samples re-solved by default (fewer where the file holds fewer).
DEFAULT_SAMPLES = 4
#: Tolerance of the reference solve by default (spectral ``rtol``; FEM linear-solve ``tol``).
REFERENCE_RTOL = 1e-10
#: A certified file passes where every frame is within this many times its certified tolerance.
SAFETY_FACTOR = 10.0
#: The smallest threshold: float32 storage rounds each value to 6e-8 relative, and a reference that
#: starts from a stored float32 frame carries that rounding along.
STORAGE_FLOOR = 1e-6
#: Threshold of a file without a certificate (uncertified files of ours, foreign files).
FIXED_THRESHOLD = 1e-4
#: A regenerated initial condition is used where it matches the stored frame 0 this closely.
_IC_MATCH = 1e-6


class NotVerifiable(ValueError):
    """The file cannot be verified; the message says what it is and why."""


@dataclass(frozen=True)
class VerifySettings:
    """How :func:`verify_file` checks a file.

    Parameters
    ----------
    samples
        ``K``: samples re-solved (evenly spaced rows; all of them where the file holds fewer).
    rtol
        Tolerance of the reference solve (spectral ``rtol`` in ``[MIN_RTOL, 1)``, FEM linear-solve
        ``tol``); ``None``: :data:`REFERENCE_RTOL`, or a tenth of the file's certified tolerance if smaller.
    threshold
        Largest relative L2 error a frame may have; ``None``: from the file's certificate (module docstring).
    """

    samples: int = DEFAULT_SAMPLES
    rtol: float | None = None
    threshold: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.samples, bool) or not isinstance(self.samples, (int, np.integer)) or self.samples < 1:
            raise ValueError(f"-k (samples to re-solve) must be an integer >= 1, got {self.samples!r}")
        if self.rtol is not None and not (_is_number(self.rtol) and MIN_RTOL <= self.rtol < 1):
            raise ValueError(f"--rtol must be a number in [{MIN_RTOL:g}, 1) (float64 cannot meet less), got {self.rtol!r}")
        if self.threshold is not None and not (_is_number(self.threshold) and 0 < self.threshold < math.inf):
            raise ValueError(f"--threshold must be a positive finite number, got {self.threshold!r}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass
class SampleCheck:
    """One re-solved sample: its row, id, ``(T,)`` errors and the frames over the threshold."""

    row: int
    sample_id: tuple[int, int]
    errors: np.ndarray
    flagged_frames: list[int]

    @property
    def max_error(self) -> float:
        return float(np.nanmax(self.errors)) if np.isfinite(self.errors).all() else math.inf

    @property
    def worst_frame(self) -> int:
        bad = ~np.isfinite(self.errors)
        return int(np.flatnonzero(bad)[0]) if bad.any() else int(np.argmax(self.errors))

    @property
    def passed(self) -> bool:
        return not self.flagged_frames


@dataclass
class VerifyReport:
    """What :func:`verify_file` found (:meth:`to_dict` is ``verify.json``)."""

    path: Path
    layout: str
    problem: str
    problem_args: dict[str, Any]
    reference: dict[str, Any]
    threshold: float
    threshold_source: str
    times: np.ndarray
    num_samples: int
    samples: list[SampleCheck]
    notes: list[str] = field(default_factory=list)
    inconsistencies: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[SampleCheck]:
        """The re-solved samples with a frame over the threshold."""
        return [check for check in self.samples if not check.passed]

    @property
    def passed(self) -> bool:
        """Every re-solved sample within the threshold and the metadata consistent."""
        return not self.failed and not self.inconsistencies

    def summary(self) -> str:
        """One line: passed, or which samples and frames failed."""
        if self.passed:
            worst = max((check.max_error for check in self.samples), default=0.0)
            return (f"verified: {len(self.samples)} of {self.num_samples} samples within {self.threshold:.3g} "
                    f"(largest error {worst:.3g})")
        parts = [f"row {c.row} {c.sample_id} frames {_ranges(c.flagged_frames)} (max {c.max_error:.3g})" for c in self.failed]
        text = f"FAILED: {len(self.failed)} of {len(self.samples)} re-solved samples over {self.threshold:.3g}: " + "; ".join(parts)
        if self.inconsistencies:
            text += ("; " if self.failed else "") + "; ".join(self.inconsistencies)
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": str(self.path), "layout": self.layout, "problem": self.problem, "problem_args": self.problem_args,
            "reference": self.reference, "threshold": self.threshold, "threshold_source": self.threshold_source,
            "passed": self.passed, "num_samples": self.num_samples, "times": self.times.tolist(),
            "samples": [{"row": c.row, "sample_id": list(c.sample_id), "max_error": c.max_error, "worst_frame": c.worst_frame,
                         "passed": c.passed, "flagged_frames": c.flagged_frames, "errors": c.errors.tolist()}
                        for c in self.samples],
            "failed_rows": [c.row for c in self.failed], "inconsistencies": self.inconsistencies, "notes": self.notes,
            "summary": self.summary(),
        }


def _ranges(frames: list[int]) -> str:
    """``[3, 4, 5, 9]`` -> ``"3-5, 9"``."""
    out: list[str] = []
    for frame in frames:
        if out and frame == int(out[-1].split("-")[-1]) + 1:
            out[-1] = f"{out[-1].split('-')[0]}-{frame}"
        else:
            out.append(str(frame))
    return ", ".join(out)


# --------------------------------------------------------------------------------------------------
# Recognising the file
# --------------------------------------------------------------------------------------------------


@dataclass
class _Target:
    """What the file holds and how to re-solve it."""

    problem: Problem | SteadyProblem
    field: str
    notes: list[str]
    inconsistencies: list[str]
    file_rtol: float | None = None
    exact_args: bool = False
    """The problem was rebuilt from every argument it was made with (its samples can be redrawn)."""
    foreign: bool = False


def _refuse_other_layouts(path: Path) -> None:
    if path.suffix.lower() == ".mat":
        raise NotVerifiable(
            f"{path}: not verifiable: FNO .mat files are not read (pdebench.io reads HDF5 grid files; MATLAB "
            "stores 'a'/'u' column-major without coordinates and the viscosity only in the file name); "
            "convert it to the grid layout first")
    try:
        with h5py.File(path, "r") as file:
            layout = layout_of(file.attrs)
    except OSError as exc:
        raise ValueError(f"{path}: not an HDF5 file ({exc})") from None
    if layout == PARTICLE_LAYOUT:
        raise NotVerifiable(f"{path}: not verifiable: SPH particle file (SPH has no certified reference; "
                            "its accuracy is a resolution study, not a tolerance)")
    if layout == MESH_LAYOUT:
        raise NotVerifiable(f"{path}: not verifiable: mesh file (re-solving mesh problems is not implemented; "
                            "pdebench verify covers grid files)")


def _argument_for(problem, key: str, value: Any):
    """``problem`` with the one constructor argument that makes ``params()[key] == value`` changed
    (found by trying each argument whose value equals the current ``params()[key]``), or ``None``."""
    claimed = problem.params()
    for name, current in problem.arguments().items():
        if isinstance(current, bool) or not same_value(current, claimed[key]):
            continue
        if isinstance(current, int) and not (_is_number(value) and float(value).is_integer()):
            continue
        try:
            candidate = problem.replace(**{name: type(current)(value) if _is_number(current) else value})
        except (ValueError, TypeError):
            continue
        others = {k: v for k, v in candidate.params().items() if k != key}
        if same_value(candidate.params()[key], value) and all(same_value(v, claimed[k]) for k, v in others.items()):
            return candidate
    return None


def _apply_attributes(problem, params: dict[str, Any], target_notes: list[str], inconsistencies: list[str], *,
                      exact: bool):
    """The file's parameter attributes are its claim: ``problem`` with each disagreeing attribute mapped
    onto its argument (and the disagreement reported where the arguments were stored)."""
    for key, expected in problem.params().items():
        if key not in params:
            target_notes.append(f"parameter {key} not stored (taken as {expected!r})")
            continue
        value = params[key]
        if same_value(value, expected):
            continue
        changed = _argument_for(problem, key, value)
        if exact:
            inconsistencies.append(f"attribute {key} = {value!r} disagrees with provenance.problem_args "
                                   f"({problem.name} gives {expected!r})"
                                   + ("; the data are checked against the attribute" if changed is not None else ""))
        if changed is None:
            if not exact:
                raise NotVerifiable(f"{problem.name}: attribute {key} = {value!r} maps to no argument of the problem")
            continue
        problem = changed
    return problem


def _grid_arguments(cls_args: dict[str, Any], coords: dict[str, np.ndarray], num_frames: int) -> dict[str, Any]:
    """Grid and time arguments (``nx``/``resolution``, ``length``, ``t_final``, ``n_out``) from a file's coordinates."""
    out: dict[str, Any] = {}
    x = np.asarray(coords.get("x", []), dtype=np.float64)
    if len(x) >= 2:
        for name in ("nx", "resolution"):
            if name in cls_args:
                out[name] = len(x)
        if "length" in cls_args:
            out["length"] = float(np.mean(np.diff(x)) * len(x))
    t = np.asarray(coords.get("t", []), dtype=np.float64)
    if len(t) == num_frames and num_frames >= 2 and "n_out" in cls_args:
        out["n_out"], out["t_final"] = num_frames - 1, float(t[-1] - t[0])
    return out


def _native_target(file: TrajectoryFile) -> _Target:
    provenance, notes, inconsistencies = file.provenance, [], []
    name = provenance.get("problem")
    if not name:
        raise NotVerifiable(f"{file.path}: not verifiable: no provenance.problem names the problem")
    if name not in PROBLEMS:
        raise NotVerifiable(f"{file.path}: not verifiable: problem {name!r} is not registered here")
    args = provenance.get("problem_args")
    exact = isinstance(args, dict)
    if exact:
        problem = PROBLEMS.build(name, **args)
    else:
        defaults = PROBLEMS.build(name)
        grid = _grid_arguments(defaults.arguments(), file.coords, file.num_frames)
        problem = defaults.replace(**grid) if grid else defaults
        others = sorted(set(defaults.arguments()) - set(grid))
        notes.append(f"provenance.problem_args not stored (a file written before it was): {name} rebuilt from its "
                     f"attributes and grid; other arguments at their defaults ({', '.join(others)})")
    problem = _apply_attributes(problem, file.params, notes, inconsistencies, exact=exact)
    estimate = provenance.get("error_estimate")
    file_rtol = float(estimate["rtol"]) if isinstance(estimate, dict) and _is_number(estimate.get("rtol")) else None
    field_name = problem.field_name if problem.field_name in file.fields else next(iter(file.fields))
    return _Target(problem, field_name, notes, inconsistencies, file_rtol, exact_args=exact)


_NAME_PATTERNS = {"Nu": r"_Nu([0-9.eE+-]+?)(?:_|\.h5|\.hdf5|$)", "Rho": r"_Rho([0-9.eE+-]+?)(?:_|\.h5|\.hdf5|$)",
                  "beta": r"_beta([0-9.eE+-]+?)(?:_|\.h5|\.hdf5|$)"}


def _pdebench_parameters(file: TrajectoryFile, notes: list[str]) -> dict[str, float]:
    """``Nu``, ``Rho``, ``beta`` from the attributes, else from PDEBench's file name."""
    found: dict[str, float] = {}
    lowered = {key.lower(): value for key, value in file.params.items()}
    for key, pattern in _NAME_PATTERNS.items():
        if key.lower() in lowered and _is_number(np.asarray(lowered[key.lower()]).reshape(-1)[0]):
            found[key] = float(np.asarray(lowered[key.lower()]).reshape(-1)[0])
        elif (match := re.search(pattern, file.path.name, flags=re.IGNORECASE)) is not None:
            try:
                found[key] = float(match.group(1))
            except ValueError:
                continue
            notes.append(f"{key} = {found[key]:g} read from the file name (no {key} attribute)")
    return found


def _foreign_1d_target(file: TrajectoryFile) -> _Target:
    shape = file.fields["tensor"]
    if len(shape) != 3:
        raise NotVerifiable(f"{file.path}: not verifiable: a PDEBench single-field file of shape {shape}; only 1-D "
                            "files (N, T, X) of Burgers, advection and diffusion-reaction are recognised (PDEBench's 2-D "
                            "diffusion-reaction and Darcy use boundary conditions our periodic solvers do not have)")
    notes: list[str] = []
    found = _pdebench_parameters(file, notes)
    if "Nu" in found and "Rho" in found:
        name, changes = "reaction_diffusion1d", {"kind": "fisher", "nu": found["Nu"], "rho": found["Rho"]}
        notes.append("PDEBench diffusion-reaction u_t = Nu u_xx + Rho u(1 - u), periodic: our reaction_diffusion1d (fisher)")
    elif "Nu" in found:
        name, changes = "burgers1d", {"nu": found["Nu"] / math.pi}
        notes.append(f"PDEBench Burgers u_t + (u^2/2)_x = (Nu/pi) u_xx, periodic: our burgers1d with nu = Nu/pi = {found['Nu'] / math.pi:.6g}")
    elif "beta" in found:
        name, changes = "advection1d", {"beta": found["beta"]}
        notes.append("PDEBench advection u_t + beta u_x = 0, periodic: our advection1d")
    else:
        raise NotVerifiable(f"{file.path}: not verifiable: a PDEBench 1-D file without a Nu, Rho or beta attribute "
                            f"(attributes: {sorted(file.params)}) or name: its equation is unknown")
    coords = file.coords
    x, t = np.asarray(coords.get("x", []), dtype=np.float64), np.asarray(coords.get("t", []), dtype=np.float64)
    for axis, values, count in (("x", x, shape[2]), ("t", t, shape[1])):
        if len(values) != count or count < 2 or not np.allclose(np.diff(values), np.diff(values).mean(), rtol=1e-4, atol=0):
            raise NotVerifiable(f"{file.path}: not verifiable: {axis}-coordinate must be {count} uniformly spaced values")
    defaults = PROBLEMS.build(name)
    problem = defaults.replace(**changes, **_grid_arguments(defaults.arguments(), coords, shape[1]), max_dt=None)
    if x[0] != 0:
        notes.append(f"x from {x[0]:.4g} (cell centres): our grid starts at 0; the equation is periodic and translation "
                     "invariant, so the stored values are re-solved as they are")
    if problem.nx % 2:
        raise NotVerifiable(f"{file.path}: not verifiable: {problem.nx} grid points (our spectral solver needs an even count)")
    notes.append("a foreign file's solver settings are unknown: compared against our spectral solver")
    return _Target(problem, "tensor", notes, [], None, foreign=True)


def _foreign_darcy_target(file: TrajectoryFile) -> _Target:
    shape = file.fields["tensor"]
    x = np.asarray(file.coords.get("x", np.linspace(0, 1, shape[2])), dtype=np.float64)
    n = shape[2]
    if len(shape) != 4 or shape[2] != shape[3] or len(x) != n or not np.allclose(x, np.linspace(0, 1, n), atol=1e-6):
        raise NotVerifiable(f"{file.path}: not verifiable: Darcy on a grid that is not x_j = j/(n-1) (x from {x[0]:.4g}: "
                            "PDEBench's cell centres exclude the boundary, where our FEM nodes sit and u = 0)")
    notes = ["a foreign file's solver settings are unknown: compared against our FEM solver"]
    lowered = {key.lower(): value for key, value in file.params.items()}
    forcing = next((float(lowered[k]) for k in ("beta", "f", "forcing") if k in lowered and _is_number(lowered[k])), None)
    if forcing is None:
        forcing = 1.0
        notes.append("parameter forcing not stored: taken as f = 1 (the FNO setting)")
    problem = PROBLEMS.build("darcy2d", resolution=n, forcing=forcing)
    return _Target(problem, "tensor", notes, [], None, foreign=True)


def _target(file: TrajectoryFile) -> _Target:
    if file.layout == "native":
        return _native_target(file)
    if file.layout == "tensor":
        return _foreign_1d_target(file)
    if file.layout == "darcy":
        return _foreign_darcy_target(file)
    raise NotVerifiable(f"{file.path}: not verifiable: PDEBench {file.layout} layout (compressible flow and per-seed "
                        "groups are not recognised)")


# --------------------------------------------------------------------------------------------------
# Re-solving
# --------------------------------------------------------------------------------------------------


def _rows(num_rows: int, samples: int) -> np.ndarray:
    """``min(samples, num_rows)`` evenly spaced rows, first and last included."""
    return np.unique(np.linspace(0, num_rows - 1, min(samples, num_rows)).round().astype(np.int64))


def _check_grid(file: TrajectoryFile, target: _Target, shape: tuple[int, ...]) -> None:
    problem = target.problem
    expected = (len(problem.output_times()), *problem.spatial_shape)
    if tuple(shape[1 : 2 + problem.dim]) != expected:
        raise NotVerifiable(f"{file.path}: not verifiable: field {target.field!r} has frames x grid {shape[1:]}, but "
                            f"{problem.name} as rebuilt gives {expected}")
    if target.foreign:
        return
    coords = problem.coordinates()
    for axis in ("t", "x", "y", "z")[: problem.dim + 1]:
        stored = file.coords.get(axis)
        if stored is not None and not np.allclose(stored, coords[axis], rtol=1e-9, atol=1e-9 * max(1.0, *problem.lengths)):
            raise NotVerifiable(f"{file.path}: not verifiable: the {axis}-coordinate disagrees with {problem.name} as rebuilt")


def _initial_conditions(target: _Target, stored0: torch.Tensor, ids: np.ndarray, rows: np.ndarray,
                        notes: list[str]) -> tuple[torch.Tensor, str]:
    """``(u0, start)``: where to start the reference (``(K, *space)``) and how to say it.

    The initial conditions the ids draw (float64) where the problem was rebuilt from every argument:
    a stored frame 0 that differs from its draw then shows as an error at frame 0 only (a corrupted
    frame). Where no stored frame 0 matches its draw (an older sampler, say), and where nothing can be
    drawn (foreign files, a warm-up), the stored frames 0 (float32), and the notes say so.
    """
    problem = target.problem
    if not (target.exact_args and isinstance(problem, Problem) and (ids[:, 0] >= 0).all()):
        return stored0, "the stored frame 0 (float32)"
    drawn = torch.empty_like(stored0)
    for seed in np.unique(ids[:, 0]):
        group = np.flatnonzero(ids[:, 0] == seed)
        drawn[group] = problem.sample_initial_conditions(int(seed), ids[group, 1].tolist()).to(stored0.dtype)
    mismatch = relative_l2(stored0, drawn, reduction="none").numpy()
    if not (mismatch <= _IC_MATCH).any():
        notes.append(f"no stored frame 0 is the initial condition its id draws (relative L2 {mismatch.min():.3g} "
                     "at least): the reference starts from the stored frames 0")
        return stored0, "the stored frame 0 (float32)"
    for row in np.flatnonzero(~(mismatch <= _IC_MATCH)):
        notes.append(f"frame 0 of row {rows[row]} is not the initial condition its id {tuple(map(int, ids[row]))} "
                     f"draws (relative L2 {mismatch[row]:.3g}); the reference starts from the draw")
    return drawn, "the initial conditions the sample ids draw (float64)"


def verify_file(path: str | Path, settings: VerifySettings | None = None) -> VerifyReport:
    """Re-solve ``settings.samples`` samples of the file at ``path`` and measure every frame's error.

    Parameters
    ----------
    path
        A grid HDF5 file (our layout or PDEBench's, see the module docstring).
    settings
        ``K``, the reference tolerance and the threshold (:class:`VerifySettings`).

    Returns
    -------
    VerifyReport
        Per sample the ``(T,)`` relative L2 errors and the frames over the threshold; the notes say
        what was not verified and why.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    NotVerifiable
        A file that cannot be verified (the message says why).
    ValueError
        A file the readers refuse.
    """
    settings = settings or VerifySettings()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    _refuse_other_layouts(path)
    with TrajectoryFile(path) as file:
        target = _target(file)
        problem = target.problem
        shape = file.fields[target.field]
        _check_grid(file, target, shape)
        rows = _rows(len(file), settings.samples)
        batch = file.read(rows, fields=[target.field, *(["nu"] if isinstance(problem, SteadyProblem) else [])])
        num_rows, times = len(file), np.asarray(problem.output_times(), dtype=np.float64)
    notes, ids = list(target.notes), batch.sample_ids
    if settings.samples > num_rows:
        notes.append(f"-k {settings.samples}: the file holds {num_rows} samples; all are re-solved")
    elif len(rows) < num_rows:
        notes.append(f"{num_rows - len(rows)} of {num_rows} samples not re-solved (K = {len(rows)}: rows {', '.join(map(str, rows))})")
    stored = batch.fields[target.field].to(torch.float64)
    file_rtol = target.file_rtol
    rtol = settings.rtol if settings.rtol is not None else max(MIN_RTOL, min(REFERENCE_RTOL, file_rtol / 10 if file_rtol else 1.0))
    if isinstance(problem, SteadyProblem):
        solver = SOLVERS.build(problem.solver, tol=rtol)
        reference = solver.solve(problem, batch.fields["nu"][:, 0].to(torch.float64), ids).fields[problem.field_name]
        described = {"solver": problem.solver, "tol": rtol, "input": "the stored coefficient nu"}
        notes.append("the re-solve is on the file's mesh: it checks the linear solves and the data, not the discretisation error")
    elif problem.solver == "spectral":
        if float(getattr(problem, "warmup_time", 0.0)) > 0:
            if "t_warmup" not in problem.arguments():
                raise NotVerifiable(f"{path}: not verifiable: {problem.name} discards a warm-up it has no t_warmup argument for")
            problem = problem.replace(t_warmup=0.0)
            notes.append("the warm-up is not re-run: the reference starts from the stored frame 0")
            target = dataclasses.replace(target, exact_args=False, problem=problem)
        u0, start = _initial_conditions(target, stored[:, 0], ids, rows, notes)
        solver = SOLVERS.build("spectral", rtol=rtol)
        try:
            reference = solver.solve(problem, u0, ids).fields[problem.field_name].to(torch.float64)
        except BlowUpError as exc:
            raise ValueError(f"{path}: the reference solve blew up ({str(exc).splitlines()[0]}): the stored initial "
                             "frames are not a state of the file's equation") from None
        described = {"solver": "spectral", "rtol": rtol, "start": start}
        notes.append("the re-solve is on the file's grid: it measures the time-stepping and storage error, not the "
                     "spatial discretisation error")
    else:
        raise NotVerifiable(f"{path}: not verifiable: {problem.name} is solved by {problem.solver!r}, whose certified "
                            "stepping stops at the shocks E1 forms, so no tight reference exists past them (the "
                            "spectral and FEM solvers have one)")
    errors = relative_l2(stored, reference, batch_dims=2, reduction="none").numpy()
    if settings.threshold is not None:
        threshold, source = float(settings.threshold), "--threshold"
    elif file_rtol is not None:
        threshold = max(SAFETY_FACTOR * file_rtol, STORAGE_FLOOR)
        source = f"the file's certified rtol {file_rtol:g} x {SAFETY_FACTOR:g} (at least {STORAGE_FLOOR:g}, float32 storage)"
    else:
        threshold = FIXED_THRESHOLD
        source = f"fixed {FIXED_THRESHOLD:g}: the file carries no certified tolerance"
        if not target.foreign and isinstance(problem, Problem):
            notes.append("the file is not certified (generated without --rtol): checked against the fixed threshold")
    checks = [SampleCheck(int(row), (int(ids[i, 0]), int(ids[i, 1])), errors[i],
                          [int(k) for k in np.flatnonzero(~(errors[i] <= threshold))]) for i, row in enumerate(rows)]
    return VerifyReport(path, "native" if not target.foreign else ("darcy" if isinstance(problem, SteadyProblem) else "tensor"),
                        problem.name, problem.arguments(), described, threshold, source, times, num_rows, checks, notes,
                        list(target.inconsistencies))


# --------------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------------


def report_table(report: VerifyReport) -> Table:
    """The console table: one row per re-solved sample (max error, worst frame and its time, flagged frames)."""
    reference = ", ".join(f"{key} {value:g}" if isinstance(value, float) else f"{key}: {value}" if key == "start" else str(value)
                          for key, value in report.reference.items())
    table = Table(title=f"pdebench verify {report.path.name}: {report.problem} against {reference}", title_justify="left")
    for column in ("row", "sample id", "max rel. L2", "worst frame", "t", "frames over threshold", "status"):
        table.add_column(column, justify="right" if column not in ("frames over threshold", "status") else "left")
    for check in report.samples:
        worst = check.worst_frame
        status = "[green]ok[/]" if check.passed else "[bold red]FAIL[/]"
        flagged = _ranges(check.flagged_frames) if check.flagged_frames else "-"
        style = None if check.passed else "bold red"
        table.add_row(str(check.row), str(check.sample_id), f"{check.max_error:.3g}", str(worst),
                      f"{report.times[worst]:.4g}" if worst < len(report.times) else "?", flagged, status, style=style)
    table.caption = f"threshold {report.threshold:.3g} ({report.threshold_source})"
    return table


def write_report(report: VerifyReport, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``verify.json`` (:meth:`VerifyReport.to_dict`) and ``verify_errors.png`` (error against
    time, one line per sample) into ``out_dir``; returns both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "verify.json"
    json_path.write_text(json.dumps(report.to_dict(), indent=2, default=float) + "\n")
    png = plot_verification_errors(report.times, np.stack([c.errors for c in report.samples]),
                                   [f"row {c.row} {c.sample_id}" for c in report.samples], out / "verify_errors.png",
                                   threshold=report.threshold, title=f"{report.path.name}: {report.problem}")
    return json_path, png
