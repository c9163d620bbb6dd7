"""Running the ``pdebench`` console script as a user would, and the shape of its refusals."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def pdebench_cli(args: list[str], cwd: Path, *, prelude: str = "") -> subprocess.CompletedProcess:
    """``python -m pdebench ARGS`` run from ``cwd`` (first on the import path, as for a user there);
    ``prelude`` is Python run first in that process (e.g. to fake the free disk)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    if prelude:
        command = [sys.executable, "-c", f"{prelude}\nimport runpy, sys\nsys.argv = ['pdebench', *{args!r}]\n"
                   "runpy.run_module('pdebench', run_name='__main__')"]
    else:
        command = [sys.executable, "-m", "pdebench", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def pdebench_in_process(args: list[str], cwd: Path, monkeypatch, capsys) -> subprocess.CompletedProcess:
    """``pdebench ARGS`` through :func:`pdebench.cli.main` in this process, from ``cwd`` with ``cwd`` first
    on the import path (as :func:`pdebench_cli` puts it for a user there), its output captured.

    Saves a fresh interpreter's start (~6 s on two cores) where a check needs none: what the command
    prints, its exit status, the files it leaves, and which modules it imported (``sys.modules``).
    """
    from pdebench.cli import main

    monkeypatch.chdir(cwd)
    monkeypatch.syspath_prepend(str(cwd))
    capsys.readouterr()
    status = main(args)
    out = capsys.readouterr()
    return subprocess.CompletedProcess(["pdebench", *args], status, out.out, out.err)


def assert_one_line_refusal(result: subprocess.CompletedProcess, *needles: str) -> None:
    """Exit 2 and a single ``pdebench: error: ...`` line on stderr holding every one of ``needles``."""
    err = result.stderr.strip()
    assert result.returncode == 2, result.stderr[-3000:]
    assert "\n" not in err and err.startswith("pdebench: error:"), err
    for needle in needles:
        assert needle in err, err
