"""The one results path of every board (:mod:`.boards`): a board's rows are dataclasses, written as
``results.json`` (the document), ``results.csv`` (its :attr:`RowFormat.csv_columns`) and ``results.md``,
and printed, all by the functions here from the board's :class:`RowFormat`; plus what every board
shares: the run's environment and the document's head, a failed row, timed repeats, the checked
suite mapping (:class:`BoardSuite`) and the board plots' finish.

Every table the package prints (the boards, ``pdebench list``) is a :class:`TextTable` rendered by
:func:`render_tables`: a rich table on a terminal, split into parts that fit its width with the names
never cut, Markdown (the writer of ``results.md``, :func:`markdown_text`) or HTML (:func:`html_table`,
the tables of the board's page, :mod:`.board_html`)."""

from __future__ import annotations

import csv
import dataclasses
import html
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
from rich.console import Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from pdebench import __version__
from pdebench.atomic import atomic_write
from pdebench.evaluation.pareto import front_rows
from pdebench.evaluation.suite import ModelEntry, YamlSuite, build_tasks
from pdebench.registry import dataclass_from_mapping

log = logging.getLogger(__name__)

Record = Mapping[str, Any]
#: ``schema_version`` of every board's ``results.json``.
SCHEMA_VERSION = 1


def _markdown_text(text: str) -> str:
    """``text`` as a literal Markdown table cell: ``|`` escaped, line breaks as spaces."""
    return text.replace("|", "\\|").replace("\n", " ")


@dataclass(frozen=True)
class Markup:
    """How a table cell marks an entry and a failure (``str.format`` templates with one ``{}``) and
    makes plain text literal (``text``)."""

    bold: str
    failed: str
    text: Callable[[str], str] = str


#: ``results.md`` cells.
MARKDOWN = Markup("**{}**", "failed: {}", _markdown_text)
#: The printed (rich) table's cells.
RICH = Markup("[bold]{}[/]", "[red]failed[/]: {}", escape)
#: HTML cells (:func:`html_table`): a cell's text is escaped whole when it is written, so an entry's or
#: failure's mark is a pair of private-use characters that no text holds, turned into its tag after the
#: escape (:data:`_HTML_TAGS`); names and error messages, which the boards' cells do not escape, stay
#: text.
HTML = Markup("\ue000{}\ue001", "\ue002failed\ue003: {}")
_HTML_TAGS = {"\ue000": "<strong>", "\ue001": "</strong>", "\ue002": '<span class="failed">', "\ue003": "</span>"}
#: The cell markup of each format a table renders in (``pdebench ... --format``: ``table``,
#: ``markdown``; ``json`` prints the data instead of a table; ``html``: the board's page).
MARKUPS: dict[str, Markup] = {"table": RICH, "markdown": MARKDOWN, "html": HTML}


@dataclass(frozen=True)
class TextTable:
    """A table to print, its cells written in one :class:`Markup`.

    Attributes
    ----------
    headers
        The column headers; the first column holds the rows' names (never wrapped nor cut).
    groups
        Heading (a task) -> its rows (one cell per header), in order; the key ``None``: rows under no
        heading. Markdown writes a heading in a first column named :attr:`group_header` (``None``: no
        such column, for a table without headings), a rich table as a line of its own above its rows.
    title
        Printed above the table (rich: its title; Markdown: a ``##`` heading); ``""``: none.
    notes
        Heading -> one line, printed under the table as ``- heading: note``.
    keys
        Heading -> the names of its rows (the board rows' ``name``), in the order of :attr:`groups`: HTML
        marks each row ``data-row="heading/name"`` (:func:`html_table`); empty: unmarked rows.
    """

    headers: tuple[str, ...]
    groups: Mapping[str | None, Sequence[Sequence[str]]]
    title: str = ""
    group_header: str | None = "task"
    notes: Mapping[str, str] = dataclasses.field(default_factory=dict)
    keys: Mapping[str | None, Sequence[str]] = dataclasses.field(default_factory=dict)


def markdown_text(table: TextTable, title: bool = True) -> str:
    """``table`` as Markdown: the ``##`` title (when ``title`` and set), ``| headers |``, one line per row
    (its heading first when the table has headings), then the ``- heading: note`` lines."""
    def line(cells: Sequence[str]) -> str:
        return "|" + "|".join(f" {c} " if c else " " for c in cells) + "|"

    headed = table.group_header is not None
    headers = ((table.group_header,) if headed else ()) + tuple(table.headers)
    lines = [f"## {table.title}", ""] if title and table.title else []
    lines += [line(headers), "|---" * len(headers) + "|"]
    for group, rows in table.groups.items():
        lines += [line(((group or "",) if headed else ()) + tuple(row)) for row in rows]
    if table.notes:
        lines.append("")
        lines += [f"- {group}: {text}" for group, text in table.notes.items()]
    return "\n".join(lines) + "\n"


def html_cell(cell: str) -> str:
    """An :data:`HTML` cell as HTML: its text escaped, its marks made tags."""
    text = html.escape(cell)
    for mark, tag in _HTML_TAGS.items():
        text = text.replace(mark, tag)
    return text


def html_table(table: TextTable, group: str | None) -> str:
    """The rows of ``group`` of ``table`` (cells in :data:`HTML`) as a ``<table class="board">``: a header
    cell per header (``<th>``, which the page's script sorts by), one ``<tr>`` per row, marked
    ``data-row="group/name"`` where :attr:`TextTable.keys` names it, then the group's note as a caption
    below."""
    keys = table.keys.get(group)
    head = "".join(f'<th scope="col" data-col="{j}">{html.escape(h)}</th>' for j, h in enumerate(table.headers))
    lines = [f'<table class="board"><thead><tr>{head}</tr></thead><tbody>']
    for i, row in enumerate(table.groups[group]):
        mark = f' data-row="{html.escape(f"{group}/{keys[i]}")}"' if keys is not None else ""
        lines.append(f"<tr{mark}>" + "".join(f"<td>{html_cell(c)}</td>" for c in row) + "</tr>")
    lines.append("</tbody></table>")
    if group in table.notes:
        lines.append(f'<p class="note">{html.escape(table.notes[group])}</p>')
    return "\n".join(lines)


def html_text(table: TextTable) -> str:
    """``table`` as HTML: its title (``<h2>``), then per heading an ``<h3>`` and :func:`html_table`."""
    parts = [f"<h2>{html.escape(table.title)}</h2>"] if table.title else []
    for group in table.groups:
        if group is not None:
            parts.append(f"<h3>{html.escape(group)}</h3>")
        parts.append(html_table(table, group))
    return "\n".join(parts) + "\n"


def _cell_widths(cells: Sequence[str]) -> tuple[int, int]:
    """``(longest word, longest line)`` of rich-markup cells, in terminal columns."""
    plain = [Text.from_markup(cell).plain for cell in cells]
    words = [len(word) for text in plain for word in text.split()]
    return max(words, default=0), max((len(line) for text in plain for line in text.splitlines()), default=0)


#: A rich column is packed at least this wide (unless its longest cell is narrower), so that a part
#: of a split table is not a stack of one-word columns.
_MIN_COLUMN = 10


def _column_parts(headers: Sequence[str], rows: Sequence[Sequence[str]], headings: Sequence[str], width: int) -> list[list[int]]:
    """The other columns' indices split into parts that fit ``width`` beside the name column (0).

    A column needs its longest word (rich wraps at spaces), at least :data:`_MIN_COLUMN`; the name
    column its longest name or heading (it is never wrapped). Each column costs 3 more (padding and
    border), a table 1 more. A column too wide for any part is given one of its own (rich folds it).
    """
    def need(j: int) -> int:
        word, line = _cell_widths([headers[j], *(row[j] for row in rows)])
        return max(word, min(line, _MIN_COLUMN))

    names = max(_cell_widths([headers[0], *(row[0] for row in rows), *headings])[1], 1) + 3 + 1
    parts: list[list[int]] = [[]]
    used = names
    for j in range(1, len(headers)):
        cost = need(j) + 3
        if parts[-1] and used + cost > width:
            parts.append([])
            used = names
        parts[-1].append(j)
        used += cost
    return parts


def rich_tables(table: TextTable, width: int) -> list[Table]:
    """``table`` as rich tables that fit ``width`` terminal columns: one, or parts each repeating the
    name column (:func:`_column_parts`); a heading is an italic line above its rows."""
    rows = [row for group in table.groups.values() for row in group]
    headings = [group for group in table.groups if group is not None]
    parts = _column_parts(table.headers, rows, headings, width)
    out = []
    for number, columns in enumerate(parts, start=1):
        suffix = f" ({number}/{len(parts)})" if len(parts) > 1 else ""
        part = Table(title=(escape(table.title) + suffix) if table.title or suffix else None, title_justify="left")
        part.add_column(table.headers[0], no_wrap=True)
        for j in columns:
            part.add_column(table.headers[j], overflow="fold")
        for group, group_rows in table.groups.items():
            if group is not None:
                part.add_row(f"[italic]{escape(group)}[/]", *[""] * len(columns))
            for row in group_rows:
                part.add_row(row[0], *(row[j] for j in columns))
        if table.notes and number == len(parts):
            part.caption = "; ".join(f"{escape(group)}: {escape(text)}" for group, text in table.notes.items())
        out.append(part)
    return out


def render_tables(tables: Sequence[TextTable], fmt: str, width: int = 100) -> str | Group:
    """The tables in ``fmt`` of :data:`MARKUPS` (their cells written in that markup): ``"markdown"``,
    one text (tables apart by a blank line); ``"html"``, one text of :func:`html_text`; ``"table"``, a
    rich :class:`~rich.console.Group` of :func:`rich_tables` that fit ``width`` columns."""
    if fmt == "markdown":
        return "\n".join(markdown_text(table) for table in tables)
    if fmt == "html":
        return "\n".join(html_text(table) for table in tables)
    if fmt == "table":
        return Group(*(part for table in tables for part in rich_tables(table, width)))
    raise ValueError(f"tables render as {' or '.join(MARKUPS)}, got {fmt!r}")


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
        writer.writerow({**env, **row, **row_format.csv_values(row)})  # a row's own device beats the run's
    return buffer.getvalue()


def board_table(document: Mapping[str, Any], row_format: RowFormat, markup: Markup, *, printed: bool = True,
                notes: Mapping[str, str] | None = None) -> TextTable:
    """The :class:`TextTable` of a ``results.json`` document (``rows``; ``environment`` and ``suite`` for
    the title): a task's rows under its name, in :attr:`RowFormat.order`. ``printed``: the printed
    view, titled, and of the solver rows only the Pareto front when :attr:`RowFormat.front` is set;
    else every row, untitled (``results.md``)."""
    groups: dict[str | None, list[list[str]]] = {}
    keys: dict[str | None, list[str]] = {}
    for task, rows in row_format.by_task(document["rows"]).items():
        if printed and row_format.front is not None:
            solver = [r for r in rows if r["kind"] == "solver" and r["status"] == "ok"]
            rows = [r for r in rows if r["kind"] != "solver"] + front_rows(solver, *row_format.front)
        groups[task] = [row_format.cells(r, markup) for r in rows]
        keys[task] = [r["name"] for r in rows]
    title = ""
    if printed:
        env = document["environment"]
        title = (f"{row_format.title} {document['suite']} ({env['hardware']}, {env['threads']} thread(s), "
                 f"git {env['git_revision']})")
    return TextTable(tuple(row_format.headers), groups, title, notes=dict(notes or {}), keys=keys)


def board_tables(document: Mapping[str, Any], row_format: RowFormat, markup: Markup, *,
                 printed: bool = True) -> list[TextTable]:
    """:func:`board_table` of ``row_format``, then that of its :attr:`RowFormat.then` (the operator
    board's rollout metrics) where that has rows."""
    tables = [board_table(document, row_format, markup, printed=printed)]
    more = row_format.then
    if more is not None and more.by_task(document["rows"]):
        tables.append(board_table(document, more, markup, printed=printed))
    return tables


def markdown_table(rows: Sequence[Record], row_format: RowFormat, notes: Mapping[str, str] | None = None) -> str:
    """``results.md``: one line per row under ``| task | headers |``, then ``- task: note`` lines, then
    the :attr:`RowFormat.then` table under its title, if it has rows."""
    text = markdown_text(board_table({"rows": rows}, row_format, MARKDOWN, printed=False, notes=notes))
    more = row_format.then
    if more is not None and more.by_task(rows):
        text += f"\n{more.title}:\n\n" + markdown_text(board_table({"rows": rows}, more, MARKDOWN, printed=False))
    return text


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


def environment(device: torch.device | str = "cpu") -> dict[str, Any]:
    """Hardware and software of this run (recorded with every results file); ``device`` is where
    the board ran its models (:func:`device_name`)."""
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

    return {"hardware": cpu, "cpu_count": os.cpu_count(), "device": device_name(device), "threads": torch.get_num_threads(),
            "torch": torch.__version__, "pdebench": __version__, "git_revision": revision, "python": platform.python_version()}


def results_document(suite: str, kind: str | None, device: torch.device | str = "cpu", **records: Any) -> dict[str, Any]:
    """A ``results.json`` document: ``schema_version``, ``kind`` (the operator board has none), ``suite``,
    ``created``, :func:`environment` (on ``device``), then ``records`` (the board's ``tasks``, ``rows``, ...) in order."""
    head: dict[str, Any] = {"schema_version": SCHEMA_VERSION, **({"kind": kind} if kind else {}), "suite": suite}
    return {**head, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "environment": environment(device), **records}


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


def timed(run: Callable[[], Any], repeats: int, device: torch.device | str = "cpu") -> tuple[Any, list[float]]:
    """``run()`` once without gradients (warm-up, the scored output), then ``repeats`` timed runs
    (wall seconds each).

    On a CUDA ``device`` kernels run asynchronously, so the clock would stop before the work is done:
    each timed run starts and ends with ``torch.cuda.synchronize(device)`` (the warm-up run, untimed,
    takes the kernels' compilation and the allocator's first allocations)."""
    device = torch.device(device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    with torch.no_grad():
        output = run()
        timings = []
        for _ in range(repeats):
            sync()
            start = time.perf_counter()
            run()
            sync()
            timings.append(time.perf_counter() - start)
    return output, timings


def device_name(device: torch.device | str) -> str:
    """``"cpu"`` or ``"cuda:0 (NVIDIA H100 80GB HBM3)"``: a device and, for CUDA, its hardware."""
    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return str(device)


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
