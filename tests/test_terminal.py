"""What the console script prints is whole for a person and parseable for a script: ``pdebench list``
and the boards as a rich table that fits the terminal (names never cut), as Markdown when stdout is
not a terminal, as one JSON document with ``--format json``."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

from rich.console import Console

from pdebench.cli import _run_board, main
from pdebench.evaluation.board_io import MARKDOWN, RICH, markdown_table, render_tables, results_document, write_results
from pdebench.evaluation.boards import BOARDS
from pdebench.evaluation.leaderboard import Row
from pdebench.models import MODELS
from pdebench.problems import PROBLEMS
from pdebench.solvers import SOLVERS

ROOT = Path(__file__).resolve().parents[1]
REGISTERED = {"problems": {e.name for e in PROBLEMS.entries()}, "solvers": {e.name for e in SOLVERS.entries()},
              "models": {e.name for e in MODELS.entries()}}


def markdown_names(text: str) -> dict[str, list[str]]:
    """``## title`` -> the first cells of the Markdown table under it (header and rule left out)."""
    names: dict[str, list[str]] = {}
    title = None
    for line in text.splitlines():
        if line.startswith("## "):
            title = line[3:]
            names[title] = []
        elif line.startswith("| ") and title is not None:
            names[title].append(line.split("|")[1].strip())
    return {title: cells[1:] for title, cells in names.items() if cells and cells[0] == "name"}


def test_list_into_a_pipe_prints_markdown_with_every_full_name():
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"} | {"PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-m", "pdebench", "list"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, timeout=120)  # `pdebench list | cat`: stdout is a pipe
    assert result.returncode == 0, result.stderr
    assert "…" not in result.stdout and "┃" not in result.stdout
    assert {title: set(cells) for title, cells in markdown_names(result.stdout).items()} == REGISTERED
    assert "reaction_diffusion1d" in markdown_names(result.stdout)["problems"]


def test_list_as_json_is_one_document_with_every_name(capsys):
    assert main(["list", "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert {title: {entry["name"] for entry in entries} for title, entries in document.items()} == REGISTERED
    burgers = next(entry for entry in document["problems"] if entry["name"] == "burgers1d")
    assert burgers["record"] == "time-dependent" and "nu" in burgers["arguments"]


def test_a_narrow_terminal_table_splits_but_cuts_no_name(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "60")
    assert main(["list", "--format", "table"]) == 0
    text = capsys.readouterr().out
    assert max(len(line) for line in text.splitlines()) <= 60 and "…" not in text
    first_cells = {line.split("│")[1].strip() for line in text.splitlines() if line.startswith("│")}
    assert set().union(*REGISTERED.values()) <= first_cells
    assert "problems (1/" in text  # four columns do not fit 60 beside the names: parts


def _board_rows() -> list[dict]:
    """A model with the longest cells the operator board writes, a failed model and two rungs."""
    placement = {"speedup": None, "verdict": "less accurate than every solver rung", "speedup_bound": 0.0213,
                 "speedup_bound_kind": "upper", "solver_error_at_equal_cost": None,
                 "equal_cost_reason": "more expensive than every rung"}
    rows = [Row("burgers1d_nu0.01_t1", "fno_with_a_long_name", "model", metrics={"nrmse": 0.25}, nrmse=0.25, cost_s=4.9e-3,
                placement=placement, parameters=198209, train_time_s=49.0, train_trajectories=480, train_samples_used=355,
                speedup_vs_reference=21.8),
            Row("burgers1d_nu0.01_t1", "unet", "model", status="failed", error="ValueError: no checkpoint"),
            Row("burgers1d_nu0.01_t1", "spectral n=8 dt≤0.05", "solver", metrics={"nrmse": 0.64}, nrmse=0.64, cost_s=6e-5,
                speedup_vs_reference=1770.0),
            Row("burgers1d_nu0.01_t1", "spectral n=256", "solver", metrics={"nrmse": 2e-7}, nrmse=2e-7, cost_s=3.9e-3,
                speedup_vs_reference=27.4)]
    return [dataclasses.asdict(r) for r in rows]


def _document() -> dict:
    environment = {"hardware": "Intel(R) Xeon(R) Processor", "threads": 1, "git_revision": "c8fbbad"}
    return {"suite": "burgers1d", "environment": environment, "rows": _board_rows()}


def test_the_leaderboard_table_fits_100_columns_with_every_name_and_column():
    board = BOARDS["operator"]
    console = Console(record=True, width=100)
    console.print(render_tables(board.tables(_document(), RICH), "table", 100))
    text = console.export_text()
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 100 and "…" not in text
    first_cells = [line.split("│")[1].strip() for line in lines if line.startswith("│")]
    for name in ("burgers1d_nu0.01_t1", "fno_with_a_long_name", "unet", "spectral n=8 dt≤0.05", "spectral n=256"):
        assert name in first_cells, text
    header_words = {word for line in lines if line.startswith("┃") for word in line.replace("┃", " ").split()}
    for header in board.row_format.headers:
        assert set(header.split()) <= header_words, header
    assert {"less", "accurate", "than", "every", "solver", "rung", "(≤", "0.0213×)"} <= set(text.replace("│", " ").split())


def test_printed_markdown_is_the_results_md_writer_under_the_title():
    board = BOARDS["operator"]
    document = _document()  # both rungs are on the Pareto front: the printed view holds every row
    printed = render_tables(board.tables(document, MARKDOWN), "markdown")
    title = "## leaderboard burgers1d (Intel(R) Xeon(R) Processor, 1 thread(s), git c8fbbad)\n\n"
    assert printed == title + markdown_table(document["rows"], board.row_format)


def test_leaderboard_json_prints_the_results_document_alone(tmp_path, capsys):
    board = BOARDS["operator"]

    def run_suite(suite, output, progress):
        progress("scored")
        document = results_document("burgers1d", None, tasks=[], rows=_board_rows())
        return write_results(Path(output), document, board.row_format)

    fake = dataclasses.replace(board, count_steps=lambda suite: 1, run_suite=run_suite, check_entries=None)
    results = _run_board(fake, SimpleNamespace(name="burgers1d"), tmp_path, Console(), "json")
    out, err = capsys.readouterr()
    assert json.loads(out) == json.loads(results.read_text())
    assert "results" in err and str(results) in err.replace("\n", "")
