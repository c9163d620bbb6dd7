"""The ``pdebench`` console script: list, generate, stream, leaderboard, evaluate, export, plot, verify,
clean, physics, train-dcdm, train-learned-ic, demo.

Every bad argument ends in a one-line ``pdebench: error: ...`` message and exit status 2, before
anything is written.

Each command imports the layers it runs inside its function: the whole package with torch, Lightning
and the solvers takes seconds to import (9 s measured on the 2-core machine against 0.16 s for this
module), and ``pdebench --help``, ``list`` and every refusal of a bad argument should not wait for it.
These are the package's only deferred internal imports besides matplotlib's (drawn only on demand).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

from pdebench.registry import RegistryError, require_choice
from pdebench.signals import EXIT_USAGE, Terminated, exit_status, sigterm_interrupts

_USER_ERRORS = (ValueError, RegistryError, FileExistsError, FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)


def _parse_settings(name: str, registry, settings: Sequence[str]) -> dict[str, Any]:
    """``["key=value", ...]`` -> typed keyword arguments of registry entry ``name``."""
    out: dict[str, Any] = {}
    for item in settings:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects key=value, got {item!r}")
        out[key.strip()] = registry.coerce(name, key.strip(), text.strip())
    return out


def _solver_settings(problem, registry, args: argparse.Namespace) -> dict[str, Any]:
    """``--solver-set`` as typed arguments of the problem's solver, and ``--rtol`` as its ``rtol``
    (refused, naming the solver, where the solver cannot certify a tolerance)."""
    from pdebench.solvers.base import uncertified_reason

    settings = _parse_settings(problem.solver, registry, args.solver_set)
    if args.rtol is not None:
        reason = uncertified_reason(registry.get(problem.solver))
        if reason is not None:
            raise ValueError(f"--rtol: {problem.name}'s solver {problem.solver!r} cannot certify a time tolerance: {reason}")
        if "dt" in settings:
            raise ValueError(f"--rtol {args.rtol:g} and --solver-set dt={settings['dt']:g}: a fixed step turns the "
                             f"certificate off; give one of them")
        settings["rtol"] = args.rtol
        registry.build(problem.solver, **settings)  # a bad tolerance is refused here, before any output
    return settings


def _verify_count(text: str | None) -> int | None:
    """``--verify [K]``: ``None`` (the flag alone: the default count) or ``K``, an integer >= 0."""
    if text is None:
        return None
    if not text.strip().isdigit():
        raise ValueError(f"--verify must be an integer >= 0 (samples re-solved on a 2x finer grid), got {text!r}")
    return int(text)


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn(),
        console=console, transient=False,
    )


def _advance(progress: Progress, task: Any, unit: str = "samples"):
    """``advance(count)``: move the bar by ``count`` and show the rate so far (``"12.3 samples/s"``)."""
    def advance(count: int) -> None:
        progress.advance(task, count)
        elapsed = progress.tasks[task].elapsed or 1e-9
        progress.update(task, rate=f"{progress.tasks[task].completed / elapsed:.1f} {unit}/s")

    return advance


def _certifies(entry, why: str | None) -> str:
    """``pdebench list``'s certificate cell: ``"yes, by default 1e-06"``, ``"yes, when asked"`` or ``"no: why"``."""
    if why is not None:
        return f"no: {why}"
    default = entry.arguments()["rtol"].default
    return f"yes, by default {default:g}" if default is not None else "yes, when asked (--rtol)"


def _output_format(args: argparse.Namespace) -> str:
    """``--format``; by default a rich table on a terminal and Markdown when stdout is not one."""
    return getattr(args, "format", None) or ("table" if sys.stdout.isatty() else "markdown")


def _show(console: Console, fmt: str, tables, document: Any) -> None:
    """Print ``document`` as one JSON document (``fmt`` ``"json"``), else ``tables(markup)`` (a list of
    :class:`~pdebench.evaluation.board_io.TextTable`, cells in the markup of ``fmt``) rendered by
    :func:`~pdebench.evaluation.board_io.render_tables` to the console's width."""
    if fmt == "json":
        console.file.write(json.dumps(document, indent=1, allow_nan=False) + "\n")
        return
    from pdebench.evaluation.board_io import MARKUPS, render_tables

    rendered = render_tables(tables(MARKUPS[fmt]), fmt, console.width)
    if isinstance(rendered, str):
        console.file.write(rendered)
    else:
        console.print(rendered)


#: ``pdebench list``'s columns after ``name`` and the registry's own (record or board), and their headers.
_LIST_HEADERS = {"description": "description", "arguments": "arguments", "certifies_rtol": "certifies --rtol"}


def cmd_list(args: argparse.Namespace, console: Console) -> int:
    """The registered problems, solvers and models: name, record (or board), description, arguments and,
    for solvers, whether they certify ``--rtol``; every name whole in every format."""
    from pdebench.evaluation.board_io import TextTable
    from pdebench.models import MODELS
    from pdebench.problems import PROBLEMS
    from pdebench.solvers import SOLVERS
    from pdebench.solvers.base import uncertified_reason

    registries = {"problems": (PROBLEMS, "record"), "solvers": (SOLVERS, "record"), "models": (MODELS, "board")}
    listed: dict[str, list[dict[str, Any]]] = {}
    for title, (registry, field) in registries.items():
        if args.what not in (None, title):
            continue
        listed[title] = [
            {"name": entry.name, field: getattr(entry, field), "description": entry.description,
             "arguments": list(entry.arguments()),
             **({"certifies_rtol": _certifies(entry, uncertified_reason(entry))} if registry is SOLVERS else {})}
            for entry in registry.entries()]

    def tables(markup) -> list:
        out = []
        for title, records in listed.items():
            keys = ["name", registries[title][1], "description", "arguments", *(["certifies_rtol"] if title == "solvers" else [])]
            rows = [[markup.text(", ".join(r[k]) if isinstance(r[k], list) else str(r[k])) for k in keys] for r in records]
            out.append(TextTable(tuple(_LIST_HEADERS.get(k, k) for k in keys), {None: rows}, title, group_header=None))
        return out

    _show(console, _output_format(args), tables, listed)
    return 0


def cmd_generate(args: argparse.Namespace, console: Console) -> int:
    from pdebench.data.generate import check_generation_args, check_generation_fits, generate_dataset
    from pdebench.data.verification import check_verify
    from pdebench.io.base import check_destination
    from pdebench.problems import PROBLEMS
    from pdebench.solvers import SOLVERS

    check_generation_args(args.num_samples, args.seed, args.batch_size)
    verify = _verify_count(args.verify)
    check_destination(Path(args.output), args.overwrite)

    problem = PROBLEMS.build(args.problem, **_parse_settings(args.problem, PROBLEMS, args.set))
    solver_kwargs = _solver_settings(problem, SOLVERS, args)
    SOLVERS.validate(problem.solver, solver_kwargs)
    check_verify(problem, verify, args.num_samples)
    check_generation_fits(problem, args.output, num_samples=args.num_samples, batch_size=args.batch_size,
                          solve_refinement=args.solve_refinement)  # before the progress bar: a refusal is one line
    if args.accelerate:
        from pdebench.training.acceleration import solver_acceleration  # deferred: loads torch models (slow start)

        solver_kwargs.update(solver_acceleration(args.accelerate, problem))
    with _progress(console) as progress:
        task = progress.add_task(f"{problem.name} → {args.output}", total=args.num_samples, rate="")
        summary = generate_dataset(
            problem, args.output, num_samples=args.num_samples, seed=args.seed, batch_size=args.batch_size,
            overwrite=args.overwrite, solver_kwargs=solver_kwargs, progress=_advance(progress, task),
            solve_refinement=args.solve_refinement, verify=verify,
        )
    shapes = ", ".join(f"{name} {shape}" for name, shape in summary.field_shapes.items())
    console.print(
        f"[green]wrote[/] {summary.path}: {summary.num_samples} samples ({shapes}) in {summary.wall_time_s:.2f} s — "
        f"{summary.samples_per_second:.1f} samples/s, {summary.bytes_written / 2**20:.2f} MiB, "
        f"solver {summary.solver}" + (f" (dt={summary.dt:.3g})" if summary.dt == summary.dt else "")
    )
    if summary.verification is not None:
        errors = ", ".join(f"{name} {value.max():.2e}" for name, value in summary.verification.per_frame.items())
        console.print(f"verified {len(summary.verification.samples)} samples on a 2x finer grid: largest spatial error {errors}")
    return 0


def cmd_stream(args: argparse.Namespace, console: Console) -> int:
    """Run data-generation workers on their own and spill what they solve to an HDF5 file.

    Ctrl-C, SIGTERM or a failing worker pool keeps the samples received so far: the file is finished
    and moved into place atomically like a complete one, with ``provenance.complete`` false and
    ``provenance.interrupted`` naming the cause (exit status 130 for Ctrl-C, 143 for SIGTERM, 1 for a
    worker failure). When nothing had arrived, nothing is written and an existing destination is
    untouched. ``provenance.drawn_ranges`` = the rows + ``dropped_ranges`` + ``lost_ranges`` +
    ``returned_ranges`` (in flight at the stop), disjoint.
    """
    from pdebench.data.generate import build_solver, check_generation_args, check_generation_fits, check_solver_step
    from pdebench.io.base import check_destination
    from pdebench.data.spill import spill_stream
    from pdebench.data.workers import WorkerConfig, make_worker_pool
    from pdebench.problems import PROBLEMS
    from pdebench.solvers import SOLVERS

    check_generation_args(args.num_samples, args.seed, args.batch_size)
    if (args.output is None) == (args.feed is None):
        raise ValueError("give exactly one destination: --output FILE.h5 (spill) or --feed NAME (feed trainers through Ray)")
    if args.feed is not None and args.backend != "ray":
        raise ValueError(f"--feed {args.feed} publishes through Ray; add --backend ray")
    if args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
    if args.address is not None and args.backend != "ray":
        raise ValueError(f"--address {args.address} needs --backend ray (the local backend runs processes on this machine)")
    output = Path(args.output) if args.output is not None else None
    if output is not None:
        check_destination(output, args.overwrite)
    problem_args = _parse_settings(args.problem, PROBLEMS, args.set)
    problem = PROBLEMS.build(args.problem, **problem_args)
    solver_kwargs = _solver_settings(problem, SOLVERS, args)
    SOLVERS.validate(problem.solver, solver_kwargs)
    check_solver_step(problem, build_solver(problem, **solver_kwargs), args.seed, min(args.batch_size, args.num_samples))
    if output is not None:
        check_generation_fits(problem, output, num_samples=args.num_samples, batch_size=args.batch_size)
    config = WorkerConfig(args.problem, problem_args, solver_kwargs, seed=args.seed, batch_size=args.batch_size,
                          max_samples=args.num_samples, threads=args.threads)
    pool = make_worker_pool(config, args.backend, num_workers=args.workers, address=args.address)
    if args.feed is not None:
        return _stream_to_feed(pool, args, problem.name, console)
    with _progress(console) as progress:
        task = progress.add_task(f"{problem.name} → {args.output} ({args.workers} {args.backend} workers)",
                                 total=args.num_samples, rate="")
        summary = spill_stream(pool, problem, output, overwrite=args.overwrite, progress=_advance(progress, task),
                               provenance={"backend": args.backend, "num_workers": args.workers})
    counts = (f"{summary.dropped} dropped (blew up), {summary.lost} lost with dead workers, "
              f"{len(summary.returned_ids)} returned unused (in flight at the stop)")
    if summary.interrupted is not None:
        status = exit_status(summary.interrupted)
        cause = {"KeyboardInterrupt": "interrupted", "SIGTERM": "terminated (SIGTERM)"}.get(
            summary.interrupted, f"error: the workers failed ({summary.interrupted})")
        if summary.path is None:
            kept = f"no samples had arrived; nothing was written{' and ' + str(output) + ' is untouched' if output.exists() else ''}"
        else:
            kept = (f"kept the {summary.written} of {args.num_samples} samples received in {summary.path} "
                    f"(provenance.complete = false; {counts})")
        print(f"pdebench: {cause}; {kept}".replace("\n", " "), file=sys.stderr)
        return status
    if summary.path is None:
        print(f"pdebench: error: no samples were written to {output}: {counts}", file=sys.stderr)
        return 1
    console.print(
        f"[green]wrote[/] {summary.path}: {summary.written} of {args.num_samples} samples in {summary.wall_time_s:.2f} s — "
        f"{summary.samples_per_second:.1f} samples/s, {summary.bytes_written / 2**20:.2f} MiB; {counts}"
        + (f"; {summary.restarts} worker restarts" if summary.restarts else "")
    )
    return 0


def _stream_to_feed(pool, args: argparse.Namespace, name: str, console: Console) -> int:
    """Publish the pool's batches on the Ray feed ``args.feed`` until ``-n`` samples are read."""
    from pdebench.data.ray_feed import publish

    with pool, _progress(console) as progress:  # the Ray pool joins (or starts) the cluster
        task = progress.add_task(f"{name} → Ray feed {args.feed!r} ({args.workers} ray workers)", total=args.num_samples, rate="")

        def counted():
            for batch in pool.batches():
                progress.advance(task, len(batch.sample_ids))
                yield batch

        published = publish(counted(), args.feed)
    console.print(f"[green]fed[/] {published} batches to {args.feed!r}; {pool.dropped} dropped (blew up), {len(pool.lost_ids)} lost")
    return 0


def cmd_physics(args: argparse.Namespace, console: Console) -> int:
    """Train an NSM (or its PINN baseline) from a YAML config; print the error curve, save model and results."""
    from pdebench.training.physics import load_physics_config, run_physics

    config = load_physics_config(args.config)
    if args.output is not None:
        config = dataclasses.replace(config, output=args.output)
    result, out = run_physics(config, steps=args.steps)
    curve = ", ".join(f"{step}: {error:.3g}" for step, error in zip(result.eval_steps, result.errors))
    console.print(f"[green]{config.problem}[/] ({config.mode}): relative L2 {result.errors[-1]:.3g} after "
                  f"{len(result.losses)} steps in {result.train_time_s:.1f} s (by step: {curve}); wrote {out}/model.pt, result.json")
    return 0


def _train_solver_network(args: argparse.Namespace, console: Console, config: Any, label: str, run: Callable) -> int:
    """A training run of a linear-solver network (DCDM, learned IC) with a progress bar; print its card's summary.

    ``config`` is the run's :class:`~pdebench.training.system_fit.SystemsRunConfig`, ``run`` its
    ``run_*_training(config, steps=, output=, callback=)``.
    """
    steps = args.steps if args.steps is not None else config.train_config().steps
    if steps < 1:
        raise ValueError(f"--steps must be >= 1, got {steps}")
    grid = "x".join([str(config.n)] * config.dim)
    with _progress(console) as progress:
        task = progress.add_task(f"{label} on {config.systems} {grid} systems", total=steps, rate="")

        def advance(step: int, loss: float) -> None:
            progress.update(task, advance=1, rate=f"loss {loss:.3g}")

        path, record = run(config, steps=args.steps, output=args.output, callback=advance)
    console.print(f"[green]trained[/] {record['class']} ({record['parameters']} parameters) in "
                  f"{record['optimiser_time_s']:.1f} s, loss {record['loss_first10']:.3g} -> {record['loss_last10']:.3g}; "
                  f"wrote {path}")
    return 0


def cmd_train_dcdm(args: argparse.Namespace, console: Console) -> int:
    """Train a DCDM network from a YAML config (configs/dcdm/) with a progress bar; save its checkpoint."""
    from pdebench.training.dcdm_fit import load_dcdm_config, run_dcdm_training

    config = load_dcdm_config(args.config)
    return _train_solver_network(args, console, config, f"DCDM {config.arch}", run_dcdm_training)


def cmd_train_learned_ic(args: argparse.Namespace, console: Console) -> int:
    """Train a learned incomplete-Cholesky network from a YAML config (configs/learned_ic/); save its checkpoint."""
    from pdebench.training.learned_ic_fit import load_learned_ic_config, run_learned_ic_training

    config = load_learned_ic_config(args.config)
    return _train_solver_network(args, console, config, "learned IC", run_learned_ic_training)


def cmd_export(args: argparse.Namespace, console: Console) -> int:
    from pdebench.data.export import EXPORT_FORMATS, EXPORT_SUFFIXES, EXPORTERS
    from pdebench.io.base import check_destination
    from pdebench.io.trajectory_file import TrajectoryFile

    require_choice("--format", args.format, EXPORT_FORMATS)
    export = EXPORTERS[args.format]
    source = Path(args.file)
    dest = Path(args.output) if args.output else source.with_name(source.stem + EXPORT_SUFFIXES[args.format])
    check_destination(dest, args.overwrite, store=args.format == "zarr")
    with TrajectoryFile(source) as file:  # an unreadable file is refused before the progress bar
        total = len(file)
    with _progress(console) as progress:
        task = progress.add_task(f"{source.name} → {dest}", total=total, rate="")
        path = export(source, dest, overwrite=args.overwrite, allow_nonfinite=args.allow_nonfinite,
                      progress=_advance(progress, task, "rows"))
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size
    console.print(f"[green]exported[/] {source} → {path} ({size / 2**20:.2f} MiB)")
    return 0


def cmd_plot(args: argparse.Namespace, console: Console) -> int:
    from pdebench.io.trajectory_file import TrajectoryFile, describe_nonfinite, find_nonfinite
    from pdebench.core.plots import plot_trajectories

    source = Path(args.file)
    with TrajectoryFile(source) as file:
        traj = file.read(slice(0, args.samples))
    bad = find_nonfinite(traj.fields.values())
    if bad:
        logging.getLogger(__name__).warning(
            "%s: non-finite values in %s; plotting them anyway (they show blank)", source, describe_nonfinite(bad)
        )
    path = plot_trajectories(traj, args.output or source.with_suffix(".png"), field=args.field, max_samples=args.samples)
    console.print(f"[green]plotted[/] {source} → {path}")
    return 0


def cmd_clean(args: argparse.Namespace, console: Console) -> int:
    """Remove the temporary files that killed runs left under the folders (see :mod:`pdebench.atomic`)."""
    from pdebench.atomic import stale_temporaries, sweep_stale_temporaries

    folders = [Path(folder) for folder in args.folders]
    for folder in folders:
        if not folder.is_dir():
            raise NotADirectoryError(f"pdebench clean expects folders, got {folder} ({'a file' if folder.exists() else 'missing'})")
    for folder in folders:
        found = stale_temporaries(folder, recursive=True)
        if args.dry_run:
            for item in found:
                console.print(f"would remove {item.path} ({item.size / 2**20:.1f} MiB, process {item.pid} is gone)")
            continue
        removed = sweep_stale_temporaries(folder, recursive=True)
        console.print(f"[green]cleaned[/] {folder}: removed {len(removed)} temporary file(s) of killed runs, "
                      f"{sum(item.size for item in removed) / 2**20:.1f} MiB")
    return 0


def cmd_verify(args: argparse.Namespace, console: Console) -> int:
    """Re-solve ``-k`` samples of a file much more accurately; table, verify.json, verify_errors.png;
    exit 0 when every re-solved sample is within the threshold, 1 when not (the report names them)."""
    from pdebench.data.verify import VerifySettings, report_table, verify_file, write_report

    settings = VerifySettings(samples=args.samples, rtol=args.rtol, threshold=args.threshold)  # refusals first
    report = verify_file(args.file, settings)
    out = Path(args.output_dir) if args.output_dir else Path(args.file).with_name(Path(args.file).stem + "_verify")
    json_path, png = write_report(report, out)
    console.print(report_table(report))
    for note in report.notes:
        console.print(f"[dim]note:[/] {note}")
    for problem in report.inconsistencies:
        console.print(f"[bold red]inconsistent:[/] {problem}")
    console.print(("[green]" if report.passed else "[bold red]") + report.summary() + "[/]")
    console.print(f"wrote {json_path} and {png}")
    return 0 if report.passed else 1


def _run_board(board, suite, output: Path | None, console: Console, fmt: str = "table", html: bool = False) -> Path:
    """Run a suite on its board (:data:`pdebench.evaluation.boards.BOARDS`) with a spinner per step;
    print the board's table in ``fmt`` (``json``: the ``results.json`` document; the spinner and the
    closing lines go to stderr unless ``fmt`` is ``table``); with ``html``, write the board's page
    ``index.html`` beside results.json (:func:`pdebench.evaluation.board_html.write_html`) and print its
    path; return results.json."""
    if board.check_entries is not None:
        board.check_entries(suite)  # a foreign or malformed checkpoint stops the board before it starts
    status = console if fmt == "table" else Console(stderr=True)
    steps = board.count_steps(suite)
    with Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=status) as progress:
        task = progress.add_task(f"{board.kind} board {suite.name}", total=steps)

        def note(message: str) -> None:
            progress.update(task, description=message, advance=1)

        results = board.run_suite(suite, output, progress=note)
        progress.update(task, description=f"{board.kind} board {suite.name}: done", completed=steps)
    document = json.loads(results.read_text())
    _show(console, fmt, lambda markup: board.tables(document, markup), document)
    status.print(f"[green]results[/] {results} (+ results.csv, results.md, plots) in {results.parent}")
    if html:
        from pdebench.evaluation.board_html import write_html

        status.print(f"[green]page[/] {write_html(results.parent, document, board.row_format)}")
    return results


def _model_entries(items: Sequence[str]) -> tuple:
    """``--model NAME=CHECKPOINT`` arguments as :class:`~pdebench.evaluation.suite.ModelEntry` entries."""
    from pdebench.evaluation.suite import ModelEntry

    entries = []
    for item in items:
        name, sep, checkpoint = item.partition("=")
        if not sep or not name or not checkpoint:
            raise ValueError(f"--model expects NAME=CHECKPOINT, got {item!r}")
        entries.append(ModelEntry(name, checkpoint))
    return tuple(entries)


def cmd_leaderboard(args: argparse.Namespace, console: Console) -> int:
    from pdebench.evaluation.boards import read_suite

    board, suite = read_suite(args.suite)
    if args.model:
        if not board.takes_models:
            raise ValueError(f"--model does not apply to a {board.kind} suite (its entries are its tasks' settings)")
        suite = dataclasses.replace(suite, models=_model_entries(args.model))
    _run_board(board, suite, Path(args.output) if args.output else None, console, _output_format(args), args.html)
    return 0


def cmd_evaluate(args: argparse.Namespace, console: Console) -> int:
    from pdebench.training.module_classes import read_checkpoint_card
    from pdebench.evaluation.boards import read_suite
    from pdebench.evaluation.suite import ModelEntry

    read_checkpoint_card(args.checkpoint)  # before anything is written
    board, suite = read_suite(args.suite)
    if board.kind != "operator":
        raise ValueError(f"evaluate scores an operator checkpoint, but {args.suite} is a {board.kind} suite; run "
                         f"pdebench leaderboard --suite {args.suite}"
                         + (" --model NAME=CHECKPOINT" if board.takes_models else ""))
    task = suite.task(args.task) if args.task else suite.tasks[0]
    name = args.name or Path(args.checkpoint).stem
    one = dataclasses.replace(suite, tasks=(task,), models=(ModelEntry(name, args.checkpoint),))
    output = Path(args.output) if args.output else Path(suite.output) / f"evaluate-{name}"
    results = _run_board(board, one, output, console, _output_format(args))
    row = next(r for r in json.loads(results.read_text())["rows"] if r["kind"] == "model")
    if row["status"] != "ok":
        print(f"pdebench: error: {name} could not be evaluated on {task.name}: {row['error']}", file=sys.stderr)
        return 1
    return 0


DEMO_MODELS = {  # name: (model overrides, epochs); budgets sized for the 10-minute demo on 2 cores
    "FNO": (["--model.model", "fno", "--model.model_args", "{n_modes: 16, hidden_channels: 64, n_layers: 4}"], 15),
    "TFNO": (["--model.model", "tfno", "--model.model_args", "{n_modes: 16, hidden_channels: 64, n_layers: 4, rank: 0.1}"], 8),
    "U-Net": (["--model.model", "unet", "--model.model_args", "{width: 16, levels: 4}"], 8),
}


def cmd_demo(args: argparse.Namespace, console: Console) -> int:
    """The main job on the embedded default: stream burgers1d from spectral workers into the reservoir,
    train FNO, TFNO and U-Net online, run the default leaderboard suite, print it and write its page
    (``index.html``)."""
    from pdebench.evaluation.boards import BOARDS
    from pdebench.evaluation.suite import ModelEntry, Suite

    if not args.budget > 0:
        raise ValueError(f"--budget must be positive, got {args.budget}")
    root = Path(__file__).resolve().parents[1]
    config = root / "configs" / "burgers1d" / "fno_online.yaml"
    suite_file = root / "configs" / "leaderboard" / "burgers1d.yaml"
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    entries = []
    for step, (name, (overrides, epochs)) in enumerate(DEMO_MODELS.items(), start=1):
        folder = out / name.lower().replace("-", "")
        epochs = max(1, round(epochs * args.budget))
        console.rule(f"[{step}/{len(DEMO_MODELS) + 1}] {name}")  # a rule cuts a long title: the story goes below
        console.print(f"spectral workers stream burgers1d (ν = 0.01, 1024 points, u(0) → u(1)) into the reservoir "
                      f"while {name} trains ({epochs} epochs of 1000 samples)")
        command = [sys.executable, "-m", "pdebench.training.cli", "fit", "--config", str(config), *overrides,
                   "--data.init_args.problem_args", "{nu: 0.01, n_out: 1}",
                   "--trainer.max_epochs", str(epochs), "--trainer.default_root_dir", str(folder),
                   "--trainer.logger", json.dumps([{"class_path": "lightning.pytorch.loggers.CSVLogger",
                                                    "init_args": {"save_dir": str(folder), "name": "csv"}}]),
                   "--trainer.callbacks", json.dumps([
                       {"class_path": "lightning.pytorch.callbacks.RichProgressBar"},
                       {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                        "init_args": {"dirpath": str(folder / "checkpoints"), "save_last": True, "save_top_k": 0,
                                      "enable_version_counter": False}}])]
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        result = subprocess.run(command, env=env)
        if result.returncode != 0:
            raise RuntimeError(f"training {name} failed (exit {result.returncode}); command: {' '.join(command)}")
        entries.append(ModelEntry(name, str(folder / "checkpoints" / "last.ckpt")))
        record = next(iter(sorted(folder.glob("csv/*/stream/rank0.json"))), None)
        if record is not None:
            stats = json.loads(record.read_text())
            console.print(f"stream: {stats['received']} samples received, {stats['consumed']} consumed, "
                          f"trainer waited {stats['wait_time_s']:.1f} s, {stats['solver_dropped']} blown-up dropped, "
                          f"{stats['lost']} lost, {stats['worker_restarts']} worker restarts")
    console.rule(f"[{len(DEMO_MODELS) + 1}/{len(DEMO_MODELS) + 1}] leaderboard")
    console.print("the models against the spectral solver's ladder")
    suite = dataclasses.replace(Suite.from_yaml(suite_file), models=tuple(entries), cache_dir=str(out / "leaderboard" / "cache"))
    _run_board(BOARDS["operator"], suite, out / "leaderboard", console, _output_format(args), html=True)
    console.print(f"demo finished in {time.perf_counter() - start:.0f} s")
    return 0


def _add_settings(p: argparse.ArgumentParser) -> None:
    """``--set`` and ``--solver-set`` (``generate``, ``stream``)."""
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="problem parameter (repeatable)")
    p.add_argument("--solver-set", action="append", default=[], metavar="KEY=VALUE", help="solver argument, e.g. dt=1e-3")
    p.add_argument("--rtol", type=float, default=None, metavar="R",
                   help="certify every stored frame to relative L2 error R in time (spectral and fv-weno solvers)")


def _add_run_config(p: argparse.ArgumentParser, folder: str, output: str) -> None:
    """``--config``, ``--steps`` and ``--output`` of a run from a YAML config (``physics``, ``train-dcdm``,
    ``train-learned-ic``)."""
    p.add_argument("--config", required=True, help=f"YAML file ({folder}*.yaml)")
    p.add_argument("--steps", type=int, default=None, help="override train.steps (quick runs)")
    p.add_argument("--output", default=None, help=f"override the {output}")


def _add_format(p: argparse.ArgumentParser) -> None:
    """``--format`` of the commands that print a table (``list``, ``leaderboard``, ``evaluate``)."""
    p.add_argument("--format", choices=["table", "json", "markdown"], default=None,
                   help="table (rich), json (one document) or markdown; default: table on a terminal, else markdown")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pdebench", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list registered problems, solvers and models")
    p.add_argument("what", nargs="?", choices=["problems", "solvers", "models"])
    _add_format(p)
    p.set_defaults(run=cmd_list)

    p = sub.add_parser("generate", help="solve a problem for many random inputs into an HDF5 file")
    p.add_argument("problem", help="registered problem name (see `pdebench list`)")
    p.add_argument("--num-samples", "-n", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", "-o", required=True, help="destination .h5 file")
    _add_settings(p)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: 2 threads are 1.7x faster on an "
                   "idle 2-core machine but 2-6x slower when anything else competes; see benchmarks/)")
    p.add_argument("--solve-refinement", type=int, default=1, metavar="R",
                   help="solve on an R-times finer grid (max_dt / R) and store the result restricted to the problem's "
                        "grid (MP-PDE data: --set nx=50 --solve-refinement 4 solves on 200 points)")
    p.add_argument("--verify", nargs="?", const=None, default="0", metavar="K",
                   help="re-solve K samples (alone: 2%%, at least 2; 0: none) on a 2x finer grid and record the measured "
                        "spatial error per field and frame in provenance.error_estimate")
    p.add_argument("--accelerate", action="append", default=[], metavar="CHECKPOINT",
                   help="a trained operator of the problem's input -> solution pairs whose prediction starts every CG "
                        "solve, or a learned incomplete Cholesky (pdebench train-learned-ic) that preconditions it; "
                        "repeatable, one of each (fv-elliptic problems, e.g. darcy3d); the tolerance, so the accuracy, "
                        "is unchanged")
    p.set_defaults(run=cmd_generate)

    p = sub.add_parser("stream", help="run data-generation workers on their own and spill what they solve to an HDF5 file")
    p.add_argument("problem", help="registered problem name (see `pdebench list`)")
    p.add_argument("--samples", "--num-samples", "-n", dest="num_samples", type=int, required=True,
                   help="sample indices 0..n-1 to solve (rows are written in the order batches arrive)")
    p.add_argument("--output", "-o", help="destination .h5 file (spill)")
    p.add_argument("--feed", help="instead of a file, publish on the Ray feed NAME that online trainers read "
                   "(OnlineDataModule backend: ray, feed: NAME, address: ...)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2, help="worker processes (local) or actors (ray)")
    p.add_argument("--batch-size", type=int, default=8, help="samples per solver call (one message per batch)")
    _add_settings(p)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--backend", choices=["local", "ray"], default="local")
    p.add_argument("--address", help="Ray cluster address (--backend ray; default: start a local Ray)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per worker (and in this process)")
    p.set_defaults(run=cmd_stream)

    p = sub.add_parser("leaderboard", help="evaluate every model of a suite against the classical solver")
    p.add_argument("--suite", required=True, help="suite YAML (see configs/leaderboard/); its `kind:` (instance, "
                   "linear-solver; default operator) picks the board")
    p.add_argument("--output", help="results folder (default: the suite's output)")
    p.add_argument("--model", action="append", default=[], metavar="NAME=CHECKPOINT",
                   help="evaluate these instead of the suite's models (repeatable; linear-solver suites: DCDM or "
                   "learned-IC checkpoints)")
    p.add_argument("--html", action="store_true", help="also write the board's page, index.html (sortable tables, "
                   "the accuracy-cost plot, the figures; self-contained), beside results.json")
    _add_format(p)
    p.set_defaults(run=cmd_leaderboard)

    p = sub.add_parser("evaluate", help="evaluate one checkpoint on a leaderboard task")
    p.add_argument("checkpoint")
    p.add_argument("--suite", default=str(Path(__file__).resolve().parents[1] / "configs" / "leaderboard" / "burgers1d.yaml"))
    p.add_argument("--task", help="task name in the suite (default: its first)")
    p.add_argument("--name", help="row label (default: the checkpoint's file name)")
    p.add_argument("--output", help="results folder")
    _add_format(p)
    p.set_defaults(run=cmd_evaluate)

    p = sub.add_parser("export", help="convert an HDF5 file to netCDF or Zarr (xarray's schema) or The Well's HDF5 layout")
    p.add_argument("file")
    p.add_argument("--format", default="netcdf", metavar="{netcdf,well,zarr}",
                   help="netcdf (default: FILE.nc), well (The Well's layout: FILE.well.h5) or zarr (a Zarr store, "
                        "a folder chunked by sample: FILE.zarr)")
    p.add_argument("--output", "-o")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--allow-nonfinite", action="store_true", help="export NaN/inf values too (refused by default)")
    p.set_defaults(run=cmd_export)

    p = sub.add_parser("plot", help="PNG of a few trajectories of a file")
    p.add_argument("file")
    p.add_argument("--output", "-o")
    p.add_argument("--field")
    p.add_argument("--samples", type=int, default=4)
    p.set_defaults(run=cmd_plot)

    p = sub.add_parser("verify", help="re-solve a few samples of a data file much more accurately and report its error "
                       "per sample and frame (exit 1 when a sample is over the threshold)")
    p.add_argument("file", help="an HDF5 grid file: ours, or PDEBench's 1-D Burgers/advection/diffusion-reaction or Darcy")
    p.add_argument("-k", "--samples", type=int, default=4, metavar="K", help="samples to re-solve, evenly spaced rows (default 4)")
    p.add_argument("--rtol", type=float, default=None, metavar="R",
                   help="tolerance of the reference solve (default min(1e-10, the file's certified rtol / 10))")
    p.add_argument("--threshold", type=float, default=None, metavar="E",
                   help="largest relative L2 error a frame may have (default: 10x the file's certified rtol, else 1e-4)")
    p.add_argument("-o", "--output-dir", default=None, metavar="OUT_DIR", help="where verify.json and verify_errors.png "
                   "go (default: FILE's name + _verify, beside it)")
    p.set_defaults(run=cmd_verify)

    p = sub.add_parser("clean", help="remove the temporary files that killed runs left (writes also sweep their own folder)")
    p.add_argument("folders", nargs="*", default=["."], help="folders to sweep, with their subfolders (default: .)")
    p.add_argument("--dry-run", action="store_true", help="list what would be removed")
    p.set_defaults(run=cmd_clean)

    p = sub.add_parser("physics", help="train a physics model (NSM) on a PDE residual, no solver data (configs/physics/)")
    _add_run_config(p, "configs/physics/", "output folder")
    p.set_defaults(run=cmd_physics)

    p = sub.add_parser("train-dcdm", help="train a DCDM network on Poisson systems, no solver data (configs/dcdm/)")
    _add_run_config(p, "configs/dcdm/", "checkpoint path")
    p.add_argument("--threads", type=int, default=None, help="torch threads")
    p.set_defaults(run=cmd_train_dcdm)

    p = sub.add_parser("train-learned-ic", help="train a learned incomplete-Cholesky preconditioner on solver pairs "
                       "of Poisson systems (configs/learned_ic/)")
    _add_run_config(p, "configs/learned_ic/", "checkpoint path")
    p.add_argument("--threads", type=int, default=None, help="torch threads")
    p.set_defaults(run=cmd_train_learned_ic)

    p = sub.add_parser("demo", help="the embedded default job: stream, train online, leaderboard (about 10 min)")
    p.add_argument("--output-dir", default="demo_output")
    p.add_argument("--budget", type=float, default=1.0, help="scale the training epochs (e.g. 0.2 for a quick look)")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the trainer (2 collapse when the workers compete)")
    p.set_defaults(run=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pdebench`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    console = Console(stderr=False)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="%(message)s",
        handlers=[RichHandler(console=Console(stderr=True), show_path=False)],
    )
    try:
        with sigterm_interrupts():  # SIGTERM takes every Ctrl-C path: partial streams kept, temp files removed
            if getattr(args, "threads", None) is not None:
                if args.threads < 1:
                    raise ValueError(f"--threads must be >= 1, got {args.threads}")
                import torch

                torch.set_num_threads(args.threads)
            return int(args.run(args, console) or 0)
    except _USER_ERRORS as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"pdebench: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM as Terminated
        what = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
        print(f"pdebench: {what}; nothing was written under the final name", file=sys.stderr)
        return exit_status(exc)


if __name__ == "__main__":
    sys.exit(main())
