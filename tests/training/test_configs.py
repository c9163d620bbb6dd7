"""Every shipped LightningCLI config parses against the training modules' signatures."""

from __future__ import annotations

import contextlib
import io

import pytest
import yaml

from pdebench.training.cli import main
from tests.cli_runs import ROOT

CONFIGS = sorted(p for p in (ROOT / "configs").glob("**/*.yaml")
                 if {"trainer", "model", "data"} <= set(yaml.safe_load(p.read_text()) or {}))


def test_the_configs_are_found():
    assert len(CONFIGS) >= 25


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: str(p.relative_to(ROOT / "configs")))
def test_config_parses_with_its_module_and_optimiser(config):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as stop:
        main(["fit", "--config", str(config), "--print_config"])
    assert stop.value.code in (0, None), out.getvalue()[-2000:]
    parsed = yaml.safe_load(out.getvalue())["model"]
    written = yaml.safe_load(config.read_text())["model"]
    assert parsed["class_path"] == written["class_path"]
    # every optimiser setting the file writes reaches the module's OptimConfig unchanged
    for key, value in (written["init_args"].get("optim") or {}).items():
        assert parsed["init_args"]["optim"][key] == value, (config, key)
