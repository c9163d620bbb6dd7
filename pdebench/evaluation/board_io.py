"""The one results path of every board (:mod:`.boards`): a board's rows are dataclasses, written as
``results.json`` (the document), ``results.csv`` (its :attr:`RowFormat.csv_columns`) and ``results.md``,
and printed as one rich table, all by the functions here from the board's :class:`RowFormat`; plus
what every board shares: the run's environment and the document's head, a failed row, timed repeats,
the checked suite mapping (:class:`BoardSuite`) and the board plots' finish."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import math
import os
import platform
import subprocess
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.table import Table

from pdebench import __version__
from pdebench.atomic import atomic_write
from pdebench.evaluation.pareto import front_rows
from pdebench.evaluation.suite import ModelEntry, YamlSuite, build_tasks
from pdebench.registry import dataclass_from_mapping

log = logging.getLogger(__name__)

Record = Mapping[str, Any]
#: ``schema_version`` of every board's ``results.json``.
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Markup:
    """How a table cell marks an entry and a failure: ``str.format`` templates with one ``{}``."""

    bold: str
    failed: str


#: ``results.md`` cells.
MARKDOWN = Markup("**{}**", "failed: {}")
#: The printed (rich) table's cells.
RICH = Markup("[bold]{}[/]", "[red]failed[/]: {}")


def _as_listed(rows: list[Record]) -> list[Record]:
    return rows


def _no_extra(row: Record) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class RowFormat:
    """How one board's rows (as dicts, :func:`dataclasses.asdict`) become its tables.

    Attributes
    ----------
    title
        Head of the printed table's title (``"leaderboard"``, ``"instance board"``).
    csv_columns
        The columns of ``results.csv``: a row's fields, the values of :attr:`csv_values` and the
        environment's keys (hardware, threads, torch, git revision), in this order.
    headers
        The table's column headers after ``task`` (``results.md``) or under the task's line (printed).
    cells
        ``(row, markup) -> cells``, one per header, for every row (failed ones included).
    csv_values
        ``row -> {column: value}`` for CSV columns that are not fields of the row (a placement's
        speed-up, a metric); default none.
    order
        The rows of one task in the order the tables show them; default as run.
    front
        ``(cost, error)`` keys of the ``kind == "solver"`` rows: the printed table shows of those only
        the ones on their Pareto front (:func:`~pdebench.evaluation.pareto.front_rows`), cheapest
        first; ``None``: every row.
    then
        A second table of the same rows under this one (the operator board's rollout metrics), in
        ``results.md`` and printed; its :attr:`order` picks the rows it shows (tasks left with none are
        left out, and with no row at all the table is). Its ``csv_columns`` are not used.
    """

    title: str
    csv_columns: tuple[str, ...]
    headers: tuple[str, ...]
    cells: Callable[[Record, Markup], list[str]]
    csv_values: Callable[[Record], dict[str, Any]] = _no_extra
    order: Callable[[list[Record]], list[Record]] = _as_listed
    front: tuple[str, str] | None = None
    then: RowFormat | None = None

    def by_task(self, rows: Sequence[Record]) -> dict[str, list[Record]]:
        """Task name -> its rows in :attr:`order`, tasks in the order they first appear (a task whose
        rows :attr:`order` drops all of is left out)."""
        tasks = {task: self.order([r for r in rows if r["task"] == task]) for task in dict.fromkeys(r["task"] for r in rows)}
        return {task: mine for task, mine in tasks.items() if mine}


def fmt(value: float | None, spec: str = ".3g") -> str:
    """``value`` formatted by ``spec``, ``"–"`` for ``None``."""
    return "–" if value is None else format(value, spec)


def rows_to_csv(rows: Sequence[Record], row_format: RowFormat, env: Mapping[str, Any]) -> str:
    """``results.csv``: a header of :attr:`RowFormat.csv_columns` and one line per row."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=row_format.csv_columns, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, **row_format.csv_values(row), **env})
    return buffer.getvalue()


def _markdown_lines(rows: Sequence[Record], row_format: RowFormat) -> list[str]:
    def line(cells: Sequence[str]) -> str:
        return "|" + "|".join(f" {c} " if c else " " for c in cells) + "|"

    lines = [line(("task", *row_format.headers)), "|---" * (len(row_format.headers) + 1) + "|"]
    for task, mine in row_format.by_task(rows).items():
        lines += [line((task, *row_format.cells(r, MARKDOWN))) for r in mine]
    return lines


def markdown_table(rows: Sequence[Record], row_format: RowFormat, notes: Mapping[str, str] | None = None) -> str:
    """``results.md``: one line per row under ``| task | headers |``, then ``- task: note`` lines, then
    the :attr:`RowFormat.then` table under its title, if it has rows."""
    lines = _markdown_lines(rows, row_format)
    if notes:
        lines.append("")
        lines += [f"- {task}: {text}" for task, text in notes.items()]
    more = row_format.then
    if more is not None and more.by_task(rows):
        lines += ["", f"{more.title}:", "", *_markdown_lines(rows, more)]
    return "\n".join(lines) + "\n"


def results_tables(document: Mapping[str, Any], row_format: RowFormat) -> list[Table]:
    """:func:`results_table` of ``row_format``, then that of its :attr:`RowFormat.then` if it has rows."""
    tables = [results_table(document, row_format)]
    if row_format.then is not None and row_format.then.by_task(document["rows"]):
        tables.append(results_table(document, row_format.then))
    return tables


def results_table(document: Mapping[str, Any], row_format: RowFormat) -> Table:
    """The printed table of a ``results.json`` document: per task a line with its name, then its rows
    (of the solver rows only the Pareto front when :attr:`RowFormat.front` is set)."""
    env = document["environment"]
    table = Table(title=f"{row_format.title} {document['suite']} ({env['hardware']}, {env['threads']} thread(s), "
                        f"git {env['git_revision']})", title_justify="left")
    for column in row_format.headers:
        table.add_column(column, overflow="fold")
    for task, rows in row_format.by_task(document["rows"]).items():
        table.add_row(f"[italic]{task}[/]", *[""] * (len(row_format.headers) - 1))
        if row_format.front is not None:
            solver = [r for r in rows if r["kind"] == "solver" and r["status"] == "ok"]
            rows = [r for r in rows if r["kind"] != "solver"] + front_rows(solver, *row_format.front)
        for row in rows:
            table.add_row(*row_format.cells(row, RICH))
    return table


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` so that ``path`` holds either its old content or all of ``text``."""
    with atomic_write(path, "w") as handle:
        handle.write(text)


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, ±inf; e.g. a diverged fit's error history or a
    checkpoint's training record) replaced by ``None`` and numpy scalars / tuples made plain, so that
    ``json.dumps(..., allow_nan=False)`` never fails on a result."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def write_results(out: Path, document: dict[str, Any], row_format: RowFormat,
                  notes: Mapping[str, str] | None = None) -> Path:
    """Write a board's results under ``out``, each file atomically, and return the ``results.json`` path.

    ``document`` holds ``environment`` and ``rows`` (the rows as dicts) besides the board's own
    records; ``results.json`` is the document made :func:`json_safe`, ``results.csv``
    :func:`rows_to_csv` of its rows and ``results.md`` :func:`markdown_table` with ``notes`` (task ->
    one line) under it.
    """
    path = out / "results.json"
    write_atomic(path, json.dumps(json_safe(document), indent=1, allow_nan=False))
    write_atomic(out / "results.csv", rows_to_csv(document["rows"], row_format, document["environment"]))
    write_atomic(out / "results.md", markdown_table(document["rows"], row_format, notes))
    return path


def environment() -> dict[str, Any]:
    """Hardware and software of this run (recorded with every results file)."""
    try:
        revision = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10,
                                  cwd=Path(__file__).resolve().parent).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        revision = "unknown"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    return {"hardware": cpu, "cpu_count": os.cpu_count(), "device": "cpu", "threads": torch.get_num_threads(),
            "torch": torch.__version__, "pdebench": __version__, "git_revision": revision, "python": platform.python_version()}


def results_document(suite: str, kind: str | None, **records: Any) -> dict[str, Any]:
    """A ``results.json`` document: ``schema_version``, ``kind`` (the operator board has none), ``suite``,
    ``created``, :func:`environment`, then ``records`` (the board's ``tasks``, ``rows``, ...) in order."""
    head: dict[str, Any] = {"schema_version": SCHEMA_VERSION, **({"kind": kind} if kind else {}), "suite": suite}
    return {**head, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "environment": environment(), **records}


def output_folder(output: str | Path | None, default: str) -> Path:
    """``output`` (or the suite's ``default``) as a folder that exists."""
    out = Path(output or default)
    out.mkdir(parents=True, exist_ok=True)
    return out


def fail_row(row: Any, error: Exception, **cleared: Any) -> None:
    """Mark a board row failed with ``"Type: message"`` and set ``cleared`` (field -> value, e.g. the
    partial results) on it; logged as a warning, with the traceback at debug level."""
    row.status, row.error = "failed", f"{type(error).__name__}: {error}"
    for name, value in cleared.items():
        setattr(row, name, value)
    log.warning("%s on %s failed: %s", row.name, row.task, row.error)
    log.debug("%s", traceback.format_exc())


def timed(run: Callable[[], Any], repeats: int) -> tuple[Any, list[float]]:
    """``run()`` once without gradients (warm-up, the scored output), then ``repeats`` timed runs
    (wall seconds each)."""
    with torch.no_grad():
        output = run()
        timings = []
        for _ in range(repeats):
            start = time.perf_counter()
            run()
            timings.append(time.perf_counter() - start)
    return output, timings


def suite_tasks(raw: Any, suite_cls: type, task_cls: type, kind: str, origin: str) -> list:
    """Check a board suite's YAML mapping and build its tasks.

    Refuses, naming the bad value: a non-mapping, keys that are not fields of ``suite_cls``, a
    ``kind`` other than ``kind``, an empty or non-string ``name``, a non-string ``output``, no
    tasks, repeated task names (:func:`~pdebench.evaluation.suite.build_tasks`).
    """
    if not isinstance(raw, dict):
        raise ValueError(f"{origin}: expected a mapping with name, kind, tasks; got {type(raw).__name__}")
    fields = [f.name for f in dataclasses.fields(suite_cls)]
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ValueError(f"{origin}: unknown key(s) {', '.join(unknown)}; expected {', '.join(fields)}")
    if raw.get("kind", kind) != kind:
        raise ValueError(f"{origin}: kind must be {kind!r} for this suite, got {raw.get('kind')!r}")
    if not isinstance(raw.get("name"), str) or not raw.get("name"):
        raise ValueError(f"{origin}: name must be a non-empty string, got {raw.get('name')!r}")
    if not isinstance(raw.get("output", ""), str):
        raise ValueError(f"{origin}: output must be a folder path, got {raw.get('output')!r}")
    return build_tasks(raw, task_cls, origin)


class BoardSuite(YamlSuite):
    """A board suite (a dataclass with ``name``, ``tasks``, ``kind``, ``output`` and maybe ``models``)
    whose class names its task type ``TASK`` and its ``KIND``: :meth:`from_dict` checks the mapping
    (:func:`suite_tasks`), builds the tasks and the model entries and prefixes what the suite's own
    checks refuse with ``origin``."""

    TASK: type
    KIND: str

    @classmethod
    def from_dict(cls, raw: dict[str, Any], origin: str = "suite"):
        """Build and validate a suite from its YAML mapping; ``ValueError`` names any bad value."""
        built: dict[str, Any] = {"tasks": tuple(suite_tasks(raw, cls, cls.TASK, cls.KIND, origin))}
        if "models" in {f.name for f in dataclasses.fields(cls)}:
            built["models"] = tuple(dataclass_from_mapping(ModelEntry, m, f"{origin}: model {i}")
                                    for i, m in enumerate(raw.get("models") or []))
        rest = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items() if k not in built}
        try:
            return cls(**built, **rest)
        except ValueError as error:
            raise ValueError(f"{origin}: {error}") from None


def save_log_plot(fig, ax, path: Path) -> Path:
    """Finish a board plot (log grid, small legend) and write it to ``path`` as PNG, atomically."""

    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    with atomic_write(path) as handle:
        fig.savefig(handle, format="png", dpi=110)
    return path
