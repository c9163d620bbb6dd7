"""Reporting helpers shared by the benchmark scripts in this folder.

The benchmarks print their progress and tables with rich (plain ``print`` if rich is missing) and,
at the end, one ``BENCH_JSON <json>`` line per measurement. :class:`Report` holds the console and
the list of measurements; :func:`machine_info` gives the machine and version fields every
measurement carries; :func:`fmt` formats a number for a table cell.

The scripts are run as ``python benchmarks/bench_x.py``, so they import this module by putting
their own folder on ``sys.path`` first.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import sys
from collections.abc import Mapping, Sequence
from typing import Any

try:  # rich is a project dependency; degrade to print if it is missing.
    from rich.console import Console
    from rich.table import Table
except ImportError:  # pragma: no cover
    Console = Table = None


class Report:
    """Console output and the measurements of one benchmark run.

    Attributes
    ----------
    console : rich.console.Console or None
        Where messages and tables go; ``None`` when rich is not installed (plain ``print``).
    results : list of dict
        The measurements, in the order :meth:`record` got them; :meth:`emit_json` prints them.
    """

    def __init__(self) -> None:
        self.console = (Console(highlight=False, width=None if sys.stdout.isatty() else 140)
                        if Console is not None else None)
        self.results: list[dict[str, Any]] = []

    def say(self, message: str) -> None:
        """Print a line (rich markup allowed).

        Parameters
        ----------
        message : str
            The line to print.
        """
        if self.console is not None:
            self.console.print(message)
        else:  # pragma: no cover
            print(message, flush=True)

    def status(self, message: str) -> contextlib.AbstractContextManager:
        """A spinner while a stage runs (rich), else a plain line.

        Parameters
        ----------
        message : str
            What the stage does.

        Returns
        -------
        contextlib.AbstractContextManager
            Use it in a ``with`` block around the stage.
        """
        if self.console is not None:
            return self.console.status(message)
        print(message, flush=True)  # pragma: no cover
        return contextlib.nullcontext()  # pragma: no cover

    def table(self, title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        """Print a table: first column left-aligned, the others right-aligned.

        Parameters
        ----------
        title : str
            Printed above the table.
        columns : sequence of str
            Column headers.
        rows : sequence of sequence of str
            The cells, one sequence per row, already formatted.
        """
        if self.console is not None:
            t = Table(title=title, title_justify="left")
            for c in columns:
                t.add_column(c, justify="right" if c != columns[0] else "left")
            for r in rows:
                t.add_row(*r)
            self.console.print(t)
        else:  # pragma: no cover
            print(title)
            print(" | ".join(columns))
            for r in rows:
                print(" | ".join(r))

    def record(self, **fields: Any) -> dict[str, Any]:
        """Keep one measurement for the ``BENCH_JSON`` lines.

        Parameters
        ----------
        **fields
            The measurement's fields (JSON-serialisable; numpy scalars are written as floats).

        Returns
        -------
        dict
            The measurement, as kept (later changes to it show in the output).
        """
        self.results.append(fields)
        return fields

    def emit_json(self) -> None:
        """Print every measurement as a ``BENCH_JSON <json>`` line.

        A measurement without ``loadavg_end`` gets the current 1-minute load average.
        """
        for result in self.results:
            result.setdefault("loadavg_end", os.getloadavg()[0])
            print("BENCH_JSON " + json.dumps(result, default=float), flush=True)


def machine_info(packages: Mapping[str, str] | None = None, **settings: Any) -> dict[str, Any]:
    """The machine and version fields every measurement of a run carries.

    Parameters
    ----------
    packages : mapping of str to str, optional
        Further package versions, placed after ``torch``'s.
    **settings
        Run settings (e.g. ``threads``), placed after the versions.

    Returns
    -------
    dict
        ``cpu_count``, ``torch``, the ``packages``, ``python``, ``pdebench``, the ``settings`` and
        ``loadavg_start`` (1-minute load average now), in this order.
    """
    import torch

    import pdebench

    return {"cpu_count": os.cpu_count(), "torch": torch.__version__, **(packages or {}),
            "python": platform.python_version(), "pdebench": getattr(pdebench, "__version__", "?"),
            **settings, "loadavg_start": os.getloadavg()[0]}


def fmt(x: float | None, digits: int = 3) -> str:
    """Format a number with ``digits`` significant digits; ``"-"`` for ``None``, NaN or infinity.

    Parameters
    ----------
    x : float or None
        The number.
    digits : int, default 3
        Significant digits.

    Returns
    -------
    str
        The formatted number.
    """
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{x:.{digits}g}"
