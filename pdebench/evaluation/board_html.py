"""The board's page: one self-contained ``index.html`` beside a board's ``results.json``.

Written from the ``results.json`` document and the board's :class:`~.board_io.RowFormat`, so that every
column of the board's tables (and any it gains) is on the page. One section per task:

* the task's table(s), the cells written by the one table renderer (:func:`.board_io.board_tables`
  in the :data:`~.board_io.HTML` markup, every row, :func:`.board_io.html_table`), each row marked
  ``data-row="task/name"``; a click on a column's header sorts the rows by it (numerically where a
  cell starts with a number, ``12.3× (faster…)``, ``1.2e-03``, ``≥ 30``; text after the numbers; empty
  and ``–`` cells last), a second click the other way;
* where the format has :attr:`~.board_io.RowFormat.front` keys ``(cost, error)``, the accuracy–cost
  plot of the task's solver rows (their Pareto front) and its other rows (the models)
  (:func:`~.leaderboard_plots.error_vs_cost_image`), with an image map: hovering a model or a front
  rung names it (``title``) and marks its row in the table;
* the board's own figures of the task found in the folder (the rollout error curves
  ``<task>_rollout.png`` and ``<task>_rollout_mse.png``, the residual histories ``<task>_residuals.png``, the resolution plot ``<task>_resolution.png``,
  each model's ``<task>_<name>_sample0.png``; ``<task>_error_vs_cost.png`` where the page draws no
  plot of its own);
* the task's record from the document (its settings and reference);

and a footer with the run's environment (hardware, CPU count, device, threads, versions, git
revision) and when it was created. Nothing is fetched when the page is viewed: the style, the script
and the images (base64 PNG) are inline, and the page's content security policy forbids every other
source.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pdebench.evaluation.board_io import HTML, RowFormat, board_tables, html_table, write_atomic
from pdebench.evaluation.leaderboard_plots import ImageMap, error_vs_cost_image
from pdebench.evaluation.pareto import CostCurve

__all__ = ["ENVIRONMENT_KEYS", "PAGE_NAME", "accuracy_cost_image", "page_html", "write_html"]

#: The page's file name, beside ``results.json``.
PAGE_NAME = "index.html"
#: The environment's entries in the footer, in this order (others the document has follow them).
ENVIRONMENT_KEYS = ("hardware", "cpu_count", "device", "threads", "torch", "pdebench", "python", "git_revision")
#: How the plot and the hover text name an error key of :attr:`RowFormat.front`.
_ERROR_NAMES = {"nrmse": "nRMSE", "rel_l2": "rel. L2 error"}
#: The radius of an image-map area around a point's centre [px] (a model's marker is 9 pt across).
_AREA_RADIUS = 8

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5rem auto; max-width: 1400px;
       padding: 0 1rem; color: #1b1b1b; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.25rem; margin-top: 2.5rem; border-bottom: 1px solid #ccc; }
h3 { font-size: 1.05rem; }
table.board { border-collapse: collapse; font-size: 0.85rem; margin: 0.5rem 0 1rem; }
table.board th, table.board td { border: 1px solid #ddd; padding: 0.25rem 0.5rem; text-align: left;
                                 vertical-align: top; }
table.board th { background: #f2f2f2; cursor: pointer; user-select: none; white-space: nowrap; }
table.board th:hover { background: #e4e4e4; }
table.board th[aria-sort="ascending"]::after { content: " \\25B2"; }
table.board th[aria-sort="descending"]::after { content: " \\25BC"; }
table.board tr.hover td { background: #fff2b3; }
table.board td:first-child { white-space: nowrap; }
.failed { color: #b00020; font-weight: 600; }
.note { font-size: 0.85rem; color: #444; }
figure { display: inline-block; margin: 0.5rem 1rem 0.5rem 0; vertical-align: top; }
figcaption { font-size: 0.8rem; color: #555; }
details { font-size: 0.85rem; margin: 0.5rem 0; } pre { background: #f7f7f7; padding: 0.5rem; overflow-x: auto; }
footer { margin-top: 3rem; border-top: 1px solid #ccc; font-size: 0.8rem; color: #444; }
footer dl { display: grid; grid-template-columns: max-content auto; gap: 0.1rem 1rem; }
footer dt { font-weight: 600; } footer dd { margin: 0; }
"""

#: Sorting by a header's column and marking the row of a hovered plot point (no library, no network).
_SCRIPT = """
"use strict";
function cellKey(cell) {
  var text = cell ? cell.textContent.trim() : "";
  if (text === "" || text === "\\u2013" || text === "-") return [2, 0];
  var m = /^[\\u2265\\u2264<>~]?\\s*([-+]?(?:\\d[\\d,]*(?:\\.\\d*)?|\\.\\d+)(?:[eE][-+]?\\d+)?)/.exec(text);
  if (m) return [0, parseFloat(m[1].replace(/,/g, ""))];
  return [1, text.toLowerCase()];
}
function sortBy(table, th) {
  var col = Number(th.dataset.col);
  var dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
  table.querySelectorAll("thead th").forEach(function (h) { h.removeAttribute("aria-sort"); });
  th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
  var body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);
  rows.sort(function (a, b) {
    var ka = cellKey(a.cells[col]), kb = cellKey(b.cells[col]);
    if (ka[0] !== kb[0]) return ka[0] - kb[0];
    if (ka[1] === kb[1]) return 0;
    return (ka[1] < kb[1] ? -1 : 1) * dir;
  });
  rows.forEach(function (r) { body.appendChild(r); });
}
document.querySelectorAll("table.board").forEach(function (table) {
  table.querySelectorAll("thead th").forEach(function (th) {
    th.tabIndex = 0;
    th.addEventListener("click", function () { sortBy(table, th); });
    th.addEventListener("keydown", function (e) {
      if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sortBy(table, th); }
    });
  });
});
document.querySelectorAll("map area[data-row]").forEach(function (area) {
  function mark(on) {
    document.querySelectorAll("tr[data-row]").forEach(function (tr) {
      if (tr.dataset.row === area.dataset.row) tr.classList.toggle("hover", on);
    });
  }
  ["mouseover", "focus"].forEach(function (e) { area.addEventListener(e, function () { mark(true); }); });
  ["mouseout", "blur"].forEach(function (e) { area.addEventListener(e, function () { mark(false); }); });
});
"""

#: Only inline sources: anything the page would fetch is refused by the browser.
_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def accuracy_cost_image(task: str, rows: Sequence[Mapping[str, Any]], front: tuple[str, str]) -> ImageMap | None:
    """The accuracy–cost plot of one task's rows: the ``kind == "solver"`` rows with status ``ok`` and a
    positive cost and error (``front``: their keys) are the ladder, whose Pareto front is drawn, the
    other such rows the models (:func:`~.leaderboard_plots.error_vs_cost_image`). ``None`` without a
    solver row to draw."""
    cost_key, error_key = front
    drawn = [r for r in rows if r.get("status") == "ok" and _positive(r.get(cost_key)) and _positive(r.get(error_key))]
    solver = [r for r in drawn if r.get("kind") == "solver"]
    if not solver:
        return None
    curve = CostCurve(np.array([r[cost_key] for r in solver]), np.array([r[error_key] for r in solver]),
                      tuple(str(r["name"]) for r in solver))
    models = {str(r["name"]): (r[cost_key], r[error_key]) for r in drawn if r.get("kind") != "solver"}
    error_name = _ERROR_NAMES.get(error_key, error_key)
    return error_vs_cost_image(curve, models, f"{task}: accuracy against cost", xlabel="cost per sample [s]",
                               ylabel=error_name)


def _png(data: bytes, alt: str, extra: str = "") -> str:
    source = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    return f'<img src="{source}" alt="{html.escape(alt)}"{extra}>'


def _plot_html(task: str, index: int, image: ImageMap, error_key: str) -> str:
    """The plot of the ``index``-th task as an ``<img>`` at its own pixel size (image-map coordinates are
    not scaled) and its ``<map>``: one circle per point, titled ``"name (model): nRMSE 0.0123, cost
    0.00045 s"``, marking the row ``task/name`` and linking to the task's section."""
    error_name = _ERROR_NAMES.get(error_key, error_key)
    name = f"plot-{index}"
    areas = []
    for p in image.points:
        what = "solver front" if p.kind == "front" else "model"
        title = f"{p.name} ({what}): {error_name} {p.error:.3g}, cost {p.cost:.3g} s"
        areas.append(f'<area shape="circle" coords="{p.x:.0f},{p.y:.0f},{_AREA_RADIUS}" href="#task-{index}" '
                     f'title="{html.escape(title)}" alt="{html.escape(title)}" data-kind="{p.kind}" '
                     f'data-row="{html.escape(f"{task}/{p.name}")}">')
    img = _png(image.png, f"{task}: {error_name} against cost, the solver's Pareto front and the models",
               f' width="{image.width}" height="{image.height}" usemap="#{name}"')
    return (f'<figure class="plot">{img}<map name="{name}">' + "".join(areas) + "</map>"
            "<figcaption>hover a point to name it and mark its row</figcaption></figure>")


def _figures(out: Path, task: str, rows: Sequence[Mapping[str, Any]], with_plot: bool) -> list[str]:
    """The board's own PNGs of ``task`` present in ``out``, inlined with their file name as caption."""
    names = [f"{task}_rollout.png", f"{task}_rollout_mse.png", f"{task}_residuals.png", f"{task}_resolution.png"]
    if not with_plot:
        names.append(f"{task}_error_vs_cost.png")
    names += [f"{task}_{r['name']}_sample0.png" for r in rows if r.get("kind") != "solver"]
    figures = []
    for name in dict.fromkeys(names):
        path = out / name
        if path.is_file():
            figures.append(f"<figure>{_png(path.read_bytes(), name)}<figcaption>{html.escape(name)}</figcaption></figure>")
    return figures


def _footer(document: Mapping[str, Any]) -> str:
    env = dict(document.get("environment") or {})
    keys = [k for k in ENVIRONMENT_KEYS if k in env] + [k for k in env if k not in ENVIRONMENT_KEYS]
    items = [("suite", document.get("suite")), ("created", document.get("created")),
             ("schema version", document.get("schema_version")), *((k.replace("_", " "), env[k]) for k in keys)]
    body = "".join(f"<dt>{html.escape(str(k))}</dt><dd>{html.escape('–' if v is None else str(v))}</dd>" for k, v in items)
    return f"<footer><h2>environment</h2><dl>{body}</dl></footer>"


def page_html(document: Mapping[str, Any], row_format: RowFormat, out: Path | None = None,
              notes: Mapping[str, str] | None = None) -> str:
    """The page of a ``results.json`` ``document`` of the board whose rows ``row_format`` tables (see the
    module docstring); ``out``: the folder to take the board's figures from (``None``: none);
    ``notes``: task -> one line under its table.

    Raises
    ------
    ValueError
        For a document without a list of ``rows`` (dicts with ``task`` and ``name``).
    """
    rows = document.get("rows") if isinstance(document, Mapping) else None
    if not isinstance(rows, list) or not all(isinstance(r, Mapping) and "task" in r and "name" in r for r in rows):
        raise ValueError("the document must be a board's results.json: a mapping whose rows is a list of rows "
                         f"with task and name, got {type(rows).__name__ if not isinstance(rows, list) else 'other rows'}")
    tables = board_tables(document, row_format, HTML, printed=False)
    formats = [row_format] + ([row_format.then] if len(tables) > 1 else [])
    by_task = row_format.by_task(rows)
    records = {t.get("name"): t for t in document.get("tasks") or [] if isinstance(t, Mapping)}
    title = f"{row_format.title} {document.get('suite', '')}".strip()
    sections = []
    for index, task in enumerate(dict.fromkeys(g for table in tables for g in table.groups)):
        parts = [f'<section id="task-{index}"><h2>{html.escape(str(task))}</h2>']
        for table, fmt in zip(tables, formats):
            if task not in table.groups:
                continue
            if fmt is not row_format:
                parts.append(f"<h3>{html.escape(fmt.title)}</h3>")
            parts.append(html_table(table, task))
            if fmt is row_format and notes and task in notes:
                parts.append(f'<p class="note">{html.escape(notes[task])}</p>')
        image = accuracy_cost_image(str(task), by_task.get(task, []), row_format.front) if row_format.front else None
        if image is not None:
            parts.append(_plot_html(str(task), index, image, row_format.front[1]))
        if out is not None:
            parts += _figures(out, str(task), by_task.get(task, []), image is not None)
        if task in records:
            parts.append("<details><summary>task settings</summary><pre>"
                         + html.escape(json.dumps(records[task], indent=1)) + "</pre></details>")
        parts.append("</section>")
        sections.append("\n".join(parts))
    contents = "".join(f'<li><a href="#task-{i}">{html.escape(str(t))}</a></li>'
                       for i, t in enumerate(dict.fromkeys(g for table in tables for g in table.groups)))
    return "\n".join([
        "<!doctype html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_POLICY}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<link rel="icon" href="data:,">',
        f"<title>{html.escape(title)}</title>", f"<style>{_STYLE}</style>", "</head>", "<body>",
        f"<header><h1>{html.escape(title)}</h1>"
        "<p>Click a column's header to sort the rows by it (again: the other way).</p>"
        f"<nav><ul>{contents}</ul></nav></header>",
        "<main>", *sections, "</main>", _footer(document), f"<script>{_SCRIPT}</script>", "</body>", "</html>", ""])


def write_html(out: Path, document: Mapping[str, Any], row_format: RowFormat,
               notes: Mapping[str, str] | None = None) -> Path:
    """Write :func:`page_html` of ``document`` (figures from ``out``) to ``out / index.html``, atomically,
    and return its path."""
    out = Path(out)
    path = out / PAGE_NAME
    write_atomic(path, page_html(document, row_format, out, notes))
    return path
