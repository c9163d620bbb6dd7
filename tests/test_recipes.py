"""The "How to add" recipes of docs/ARCHITECTURE.md, done exactly as the page shows them.

The page's code blocks that open with ``# file: PATH`` are written, as they stand, into a copy of the
repository, and its ``console`` blocks' ``$`` commands are run there in page order. The results are
checked against the cable equation's exact solution: each Fourier mode decays as
``exp(-(nu k^2 + gamma) t)``.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from pdebench.io.trajectory_file import read_trajectories

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "ARCHITECTURE.md"
BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.DOTALL)
NU, GAMMA, LENGTH, T_FINAL = 0.01, 0.5, 1.0, 1.0  # the recipe's defaults

PREDICT = """
import json, sys, torch
from pdebench.evaluation.leaderboard import load_model
from pdebench.evaluation.suite import ModelEntry
from pdebench.problems import PROBLEMS
module, _ = load_model(ModelEntry("fm", sys.argv[1]))
problem = PROBLEMS.build("cable1d")
u0 = problem.sample_initial_conditions(seed=1, indices=range(16)).float()  # seed 1: never trained on
with torch.no_grad():
    prediction = module.predict(u0[:, None])[:, 0]  # the Predictor protocol, physical units
json.dump({"u0": u0.tolist(), "prediction": prediction.tolist()}, sys.stdout)
"""


def recipe_blocks() -> tuple[dict[str, str], list[str]]:
    """``({path: text}, [command, ...])`` of the page's "How to add" section."""
    text = PAGE.read_text()
    section = text[text.index("## How to add"):]
    files, commands = {}, []
    for lang, body in BLOCK.findall(section):
        first, _, rest = body.partition("\n")
        if first.startswith("# file: "):
            files[first.removeprefix("# file: ").strip()] = body if lang == "yaml" else rest
        elif lang == "console":
            commands += [line[2:] for line in body.splitlines() if line.startswith("$ ")]
    return files, commands


def exact_cable(u0: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``(B, X)`` initial fields, ``(T,)`` times -> ``(B, T, X)`` exact solutions of the cable equation."""
    k = 2 * np.pi * np.fft.rfftfreq(u0.shape[-1], d=LENGTH / u0.shape[-1])
    decay = np.exp(-(NU * k**2 + GAMMA) * t[:, None])  # (T, K)
    return np.fft.irfft(np.fft.rfft(u0, axis=-1)[:, None] * decay, n=u0.shape[-1], axis=-1)


def relative_l2(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def run(command: str, cwd: Path) -> None:
    argv = shlex.split(command)
    if argv[0] == "pdebench":
        argv = [sys.executable, "-m", "pdebench", *argv[1:]]
    elif argv[0] == "python":
        argv = [sys.executable, *argv[1:]]
    env = {"PYTHONPATH": str(cwd), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{command} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"


def test_the_page_shows_both_recipes() -> None:
    files, commands = recipe_blocks()
    assert set(files) == {"pdebench/problems/cable1d.py", "pdebench/models/fourier_multiplier.py",
                          "configs/cable1d/fourier_multiplier.yaml"}
    assert any(c.startswith("pdebench generate cable1d") for c in commands)
    assert any(c.startswith("python train.py fit --config configs/cable1d/") for c in commands)


def test_recipes_add_a_problem_and_an_operator_that_learns_its_exact_solution(tmp_path: Path) -> None:
    for part in ("pdebench", "configs"):
        shutil.copytree(ROOT / part, tmp_path / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "train.py", tmp_path)
    files, commands = recipe_blocks()
    for path, text in files.items():
        assert not (tmp_path / path).exists(), f"{path} already exists: the recipe must add it"
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    for command in commands:
        run(command, tmp_path)

    data = read_trajectories(tmp_path / "data" / "cable1d.h5")
    u = data.fields["u"].double().numpy()  # (N, T, X)
    t = np.asarray(data.coords["t"], dtype=np.float64)
    assert u.shape == (64, 11, 128)
    assert relative_l2(u, exact_cable(u[:, 0], t)) < 1e-6  # ETDRK4 is exact for a linear equation

    checkpoint = tmp_path / "outputs" / "cable1d_fourier_multiplier" / "checkpoints" / "last.ckpt"
    done = subprocess.run([sys.executable, "-c", PREDICT, str(checkpoint)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env={"PYTHONPATH": str(tmp_path), "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-4000:]
    out = json.loads(done.stdout)
    u0, prediction = np.asarray(out["u0"]), np.asarray(out["prediction"])
    exact = exact_cable(u0, np.array([T_FINAL]))[:, 0]
    assert relative_l2(prediction, exact) < 5e-3  # measured 1.1e-4; the learned multiplier is the exact solution operator
    assert relative_l2(u0, exact) > 1  # ... and the identity is far from it (4.4)
