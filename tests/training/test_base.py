"""The training base: OptimConfig's validation and schedules, and what every training module shares."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from pdebench.training.base import OptimConfig, TrainingBase
from pdebench.training.bundled import BundledOperatorModule
from pdebench.training.graph_module import GraphOperatorModule
from pdebench.training.module import OperatorModule
from pdebench.training.module_classes import TRAINING_MODULES


@pytest.mark.parametrize(("raw", "message"), [
    ({"optimizer": "lbfgs"}, "optimizer must be one of adam, adamw, sgd, got 'lbfgs'"),
    ({"lr": 0.0}, "lr must be a positive number, got 0.0"),
    ({"lr": float("nan")}, "lr must be a positive number, got nan"),
    ({"weight_decay": -1.0}, "weight_decay must be >= 0, got -1.0"),
    ({"scheduler": "linear"}, "scheduler must be one of cosine, step, none, got 'linear'"),
    ({"learning_rate": 1e-3}, "optim: unknown key\\(s\\) learning_rate; expected"),
])
def test_bad_settings_are_refused_by_name(raw, message):
    with pytest.raises(ValueError, match=message):
        OptimConfig.of(raw)


def _lrs(config: OptimConfig, steps: int, total: float) -> list[float]:
    """The learning rate before each of ``steps`` optimiser steps of a one-parameter model."""
    parameter = torch.nn.Parameter(torch.zeros(1))
    built = config.build([{"params": [parameter], "lr": config.lr}], total)
    optimizer, scheduler = (built, None) if isinstance(built, torch.optim.Optimizer) else (
        built["optimizer"], built["lr_scheduler"]["scheduler"])
    rates = []
    for _ in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
    return rates


def test_schedules_follow_their_formulas():
    total = 20
    cosine = _lrs(OptimConfig(lr=2e-3, scheduler="cosine"), total + 1, total)
    assert cosine == pytest.approx([0.5 * 2e-3 * (1 + math.cos(math.pi * t / total)) for t in range(total + 1)], abs=1e-15)
    step = _lrs(OptimConfig(lr=1e-2, scheduler="step", step_size=3, gamma=0.1), 10, math.inf)
    assert step == pytest.approx([1e-2 * 0.1 ** (t // 3) for t in range(10)], rel=1e-12)
    assert _lrs(OptimConfig(lr=5e-4, scheduler="none"), 4, math.inf) == [5e-4] * 4
    with pytest.raises(ValueError, match="scheduler 'cosine' anneals over the run's steps"):
        _lrs(OptimConfig(scheduler="cosine"), 1, math.inf)


def test_the_optimiser_is_the_one_named():
    parameter = [torch.nn.Parameter(torch.zeros(1))]
    for name, cls in (("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW), ("sgd", torch.optim.SGD)):
        optimizer = OptimConfig(optimizer=name, weight_decay=0.25, scheduler="none").build([{"params": parameter}], math.inf)
        assert type(optimizer) is cls and optimizer.param_groups[0]["weight_decay"] == 0.25


def test_modules_keep_optim_as_a_plain_mapping_and_rebuild_from_it():
    module = OperatorModule(model="fno", model_args={"n_modes": 4, "hidden_channels": 4, "n_layers": 1},
                            optim=OptimConfig(lr=2e-3, scheduler="step"))
    assert module.hparams["optim"] == dataclasses.asdict(module.optim)  # what a weights_only checkpoint can hold
    assert OperatorModule(**module.hparams).optim == module.optim
    # a module's own default where optim is not given
    assert BundledOperatorModule(model_args={"time_window": 4, "hidden": 8, "layers": 1}, in_channels=4, out_channels=4,
                                 history=4).optim == OptimConfig(lr=1e-4, weight_decay=1e-8)


def test_every_training_module_stands_on_the_base():
    assert all(issubclass(cls, TrainingBase) for cls in TRAINING_MODULES.values())
    assert not issubclass(GraphOperatorModule, OperatorModule)  # graphs take no grid-operator arguments
    module = GraphOperatorModule(model_args={"hidden": 8, "layers": 1}, in_channels=3, out_channels=2, history=3)
    assert module.history == 3 and set(module.hparams) >= {"optim", "loss", "history"} and "pushforward" not in module.hparams
