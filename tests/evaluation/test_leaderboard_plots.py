"""Leaderboard figures: each writes a PNG atomically, and bad shapes raise before anything is written."""

from __future__ import annotations

import pdebench.atomic

import logging
import os

import numpy as np
import pytest
import torch

from pdebench.evaluation import leaderboard_plots
from pdebench.evaluation.leaderboard_plots import plot_error_vs_cost, plot_prediction, plot_resolution, plot_rollout_errors
from pdebench.evaluation.pareto import CostCurve

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png_alone(path, folder) -> None:
    """``path`` is a non-empty PNG and the only file in ``folder`` (no temporary file left behind)."""
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > len(PNG_SIGNATURE)
    assert sorted(p.name for p in folder.iterdir()) == [path.name]


@pytest.fixture
def curve() -> CostCurve:
    costs = np.array([0.03, 0.2, 0.7, 2.0, 4.0])
    errors = 2.0 * costs**-0.5
    errors[3] = 3.0  # one rung off the front
    return CostCurve(costs, errors, labels=["N=16", "N=32", "N=64", "N=96 (bad)", "N=128"])


# --------------------------------------------------------------------------------------------------
# Error vs cost
# --------------------------------------------------------------------------------------------------


def test_error_vs_cost_writes_a_png(tmp_path, curve):
    models = {"FNO": (0.01, 2.0), "U-Net": (0.5, 0.5), "tiny": (0.001, 50.0)}  # faster, more accurate, worse
    out = plot_error_vs_cost(curve, models, tmp_path / "pareto.png", title="Burgers")
    assert out == tmp_path / "pareto.png"
    assert_png_alone(out, tmp_path)


def test_error_vs_cost_without_models_or_labels_creates_the_folder(tmp_path):
    path = tmp_path / "new" / "pareto.png"
    plot_error_vs_cost(CostCurve([1.0, 2.0], [0.2, 0.1]), {}, path, show_speedup=False)
    assert_png_alone(path, path.parent)


@pytest.mark.parametrize(
    ("value", "match"),
    [((0.1,), "pair"), ((0.1, 0.2, 0.3), "pair"), (("fast", 0.2), "pair"), ((-0.1, 0.2), "cost"), ((0.1, float("nan")), "error")],
)
def test_error_vs_cost_bad_models_raise(tmp_path, curve, value, match):
    with pytest.raises(ValueError, match=match):
        plot_error_vs_cost(curve, {"m": value}, tmp_path / "pareto.png")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------------
# Rollout errors
# --------------------------------------------------------------------------------------------------


def test_rollout_errors_writes_a_png(tmp_path):
    steps = np.arange(1, 21)
    curves = {"FNO": 1e-3 * 1.2**steps, "U-Net": torch.linspace(1e-3, 1e-1, 12, dtype=torch.float64), "list": [0.1, 0.2]}
    out = plot_rollout_errors(curves, tmp_path / "rollout.png", dt=0.01)
    assert_png_alone(out, tmp_path)
    plot_rollout_errors({"FNO": curves["FNO"]}, out)  # steps on x; overwrites in place
    assert_png_alone(out, tmp_path)


def test_rollout_errors_warns_about_points_it_cannot_show(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="pdebench.evaluation.leaderboard_plots"):
        plot_rollout_errors({"diverged": [0.1, 0.5, np.inf, np.nan]}, tmp_path / "r.png")
    assert "2 of 4 steps" in caplog.text
    assert_png_alone(tmp_path / "r.png", tmp_path)


@pytest.mark.parametrize(
    ("curves", "dt", "match"),
    [
        ({}, None, "empty"),
        ({"m": np.ones((3, 2))}, None, r"1-D .*\(3, 2\)"),
        ({"m": []}, None, "non-empty"),
        ({"m": [0.1, -0.2]}, None, r"\[1\] = -0\.2"),
        ({"m": [0.1, 0.2]}, 0.0, "dt"),
    ],
)
def test_rollout_errors_bad_inputs_raise(tmp_path, curves, dt, match):
    with pytest.raises(ValueError, match=match):
        plot_rollout_errors(curves, tmp_path / "r.png", dt=dt)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------------
# Resolution
# --------------------------------------------------------------------------------------------------


def test_resolution_plot_writes_a_png_with_a_grid_a_model_cannot_take(tmp_path):
    path = plot_resolution([32, 64, 128], {"fno": [0.02, 0.01, 0.011], "vit": [None, 0.01, np.nan]}, [0.1, 0.01, 1e-3],
                           tmp_path / "r.png", training_grid=64)
    assert_png_alone(path, tmp_path)


@pytest.mark.parametrize("grids, models, best, match", [
    ([64, 32], {}, [0.1, 0.1], "positive and increasing"),
    ([32, 64], {"fno": [0.1]}, [0.1, 0.1], r"models\['fno'\] must have one value per resolution"),
    ([32, 64], {"fno": [0.1, -1.0]}, [0.1, 0.1], "positive where finite"),
    ([32, 64], {}, [0.1, 0.1, 0.1], "solver_best must have one value per resolution"),
])
def test_resolution_plot_bad_inputs_raise(tmp_path, grids, models, best, match):
    with pytest.raises(ValueError, match=match):
        plot_resolution(grids, models, best, tmp_path / "r.png")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------------
# One prediction
# --------------------------------------------------------------------------------------------------

X = np.linspace(0.0, 1.0, 32, endpoint=False)
T = np.linspace(0.0, 0.5, 6)


def test_prediction_1d(tmp_path):
    truth = np.sin(2 * np.pi * X)
    out = plot_prediction(truth, truth + 0.05 * np.cos(2 * np.pi * X), tmp_path / "p1.png", coords={"x": X})
    assert_png_alone(out, tmp_path)


@pytest.mark.parametrize("how", ["layout", "coords"])
def test_prediction_space_time(tmp_path, how):
    truth = np.sin(2 * np.pi * (X[None, :] - T[:, None]))  # (T, X)
    kwargs = {"layout": "tx"} if how == "layout" else {"coords": {"t": T, "x": X}}
    out = plot_prediction(truth, 0.9 * truth, tmp_path / "ptx.png", **kwargs)
    assert_png_alone(out, tmp_path)


def test_prediction_2d_positive_field_from_tensors(tmp_path):
    truth = torch.rand(16, 12, dtype=torch.float64) + 1.0  # (X, Y), one sign: sequential colour map
    out = plot_prediction(truth, truth + 0.01, tmp_path / "pxy.png", layout="xy", title="density")
    assert_png_alone(out, tmp_path)


@pytest.mark.parametrize(
    ("truth", "prediction", "kwargs", "match"),
    [
        (np.zeros(8), np.zeros(9), {}, "shapes differ"),
        (np.zeros((4, 8)), np.zeros((4, 8)), {}, "layout='tx' or layout='xy'"),
        (np.zeros((2, 4, 8)), np.zeros((2, 4, 8)), {}, "1-D"),
        (np.zeros(0), np.zeros(0), {}, "empty"),
        (np.zeros(8), np.zeros(8), {"layout": "xy"}, "2-D field"),
        (np.zeros((4, 8)), np.zeros((4, 8)), {"layout": "xyz"}, "layout must be one of"),
        (np.zeros(8), np.zeros(8), {"coords": {"x": np.zeros(7)}}, r"coords\['x'\].*\(8,\)"),
    ],
)
def test_prediction_bad_inputs_raise(tmp_path, truth, prediction, kwargs, match):
    with pytest.raises(ValueError, match=match):
        plot_prediction(truth, prediction, tmp_path / "p.png", **kwargs)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------------
# Atomic writes
# --------------------------------------------------------------------------------------------------


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "r.png"
    path.write_bytes(b"old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(pdebench.atomic.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        plot_rollout_errors({"m": [0.1, 0.2]}, path)
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["r.png"]
