"""Running ``python train.py`` as a user would, and small callbacks the training tests put into configs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import lightning as L

ROOT = Path(__file__).resolve().parents[2]

_FIT_EACH = """
import json, os, sys, traceback
sys.argv = ["train.py"]
from pdebench.training.cli import main
jobs, report = json.load(open(REPORT + ".jobs")), {}
for name, (args, cwd) in jobs.items():
    os.chdir(cwd)
    try:
        main(args)
        report[name] = ""
    except BaseException:  # SystemExit from a refused argument too: report it, go on with the next job
        report[name] = traceback.format_exc()[-4000:]
json.dump(report, open(REPORT, "w"))
"""


def train_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """``python train.py ARGS`` in ``cwd``; fails the test with the tail of its output."""
    result = subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=cwd, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-4000:])
    return result


def train_cli_each(jobs: dict[str, tuple[list[str], Path]], report: Path) -> dict[str, str]:
    """Every job's ``train.py ARGS`` run in its own folder, one after another in ONE fresh process
    (the imports, most of a tiny run's time, paid once). Returns job name -> ``""`` when its run
    finished, else the tail of its traceback."""
    Path(f"{report}.jobs").write_text(json.dumps({name: [args, str(cwd)] for name, (args, cwd) in jobs.items()}))
    script = f"REPORT = {str(report)!r}\n{_FIT_EACH}"
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                            timeout=60 * len(jobs) + 120)
    assert result.returncode == 0 and report.exists(), (result.stdout[-2000:], result.stderr[-4000:])
    return json.loads(report.read_text())


class KillAtEpoch(L.Callback):
    """SIGKILL the training process when epoch ``epoch`` starts (after the previous epoch's checkpoint)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            os.kill(os.getpid(), signal.SIGKILL)


class InterruptAtStep(L.Callback):
    """At global step ``step``, record the online workers' pids in ``pid_file`` and then interrupt
    training: ``how="sigint"`` sends this process SIGINT (a user's Ctrl-C), ``how="sigterm"`` SIGTERM (a
    scheduler's stop), ``how="error"`` raises."""

    def __init__(self, step: int, how: str, pid_file: str) -> None:
        self.step, self.how, self.pid_file = step, how, pid_file

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        if trainer.global_step != self.step:
            return
        with open(self.pid_file, "w") as f:
            f.write(" ".join(map(str, trainer.datamodule.pool.pids)))
        if self.how in ("sigint", "sigterm"):
            os.kill(os.getpid(), signal.SIGINT if self.how == "sigint" else signal.SIGTERM)
        else:
            raise RuntimeError("training failed on purpose")
