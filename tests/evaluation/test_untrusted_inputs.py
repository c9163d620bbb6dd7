"""Files from others run no code: a checkpoint cannot choose what gets imported, a file that is not
a checkpoint and a YAML file with Python tags are each refused with one line, exit 2, nothing written."""

from __future__ import annotations

import os
import pickle
import sys
from pathlib import Path

import pytest
import torch
import yaml

from pdebench.registry import read_yaml
from tests.cli_runs import assert_one_line_refusal, pdebench_cli, pdebench_in_process
from tests.evaluation.test_leaderboard import ROOT, tiny_checkpoint  # noqa: F401 - the fixture

SUITE = {"name": "tiny", "tasks": [{"name": "tiny", "problem": "burgers1d", "problem_args": {"nx": 64, "n_out": 1},
                                     "samples": 2, "ladder_resolutions": [16], "repeats": 1}]}


def suite_file(folder: Path) -> Path:
    path = folder / "suite.yaml"
    path.write_text(yaml.safe_dump({**SUITE, "output": str(folder / "out"), "cache_dir": str(folder / "cache")}))
    return path


@pytest.fixture
def cli(monkeypatch, capsys):
    """``pdebench ARGS`` run in this process (:func:`~tests.cli_runs.pdebench_in_process`): these checks are of
    what the command prints, returns, writes and imports, which a fresh interpreter would not change (one test
    below runs the console script in its own process)."""
    return lambda args, cwd: pdebench_in_process(args, cwd, monkeypatch, capsys)


@pytest.mark.parametrize(("module_class", "command", "fresh_process"),
                         [("evilmod.Foo", "evaluate", False), ("evilmod.Foo", "leaderboard", True),
                          ("this.Foo", "leaderboard", False), ("os.system", "evaluate", False),
                          ("pdebench.training.module.torch", "evaluate", False)])
def test_a_checkpoint_naming_a_foreign_module_class_imports_nothing(tiny_checkpoint, tmp_path, cli, module_class, command,  # noqa: F811
                                                                    fresh_process):
    (tmp_path / "evilmod.py").write_text(f"open({str(tmp_path / 'ran')!r}, 'w').write('code ran')\nclass Foo: pass\n")
    modules_before = set(sys.modules)
    saved = torch.load(tiny_checkpoint, map_location="cpu", weights_only=True)
    saved["pdebench"]["module_class"] = module_class
    evil = tmp_path / "evil.ckpt"
    torch.save(saved, evil)
    suite = suite_file(tmp_path)
    args = {"evaluate": ["evaluate", str(evil), "--suite", str(suite)],
            "leaderboard": ["leaderboard", "--suite", str(suite), "--model", f"x={evil}"]}[command]
    result = pdebench_cli(args, tmp_path) if fresh_process else cli(args, tmp_path)
    assert_one_line_refusal(result, str(evil), repr(module_class), "not one of pdebench's training modules")
    assert "Zen of Python" not in result.stdout + result.stderr and not (tmp_path / "ran").exists()
    assert not {"evilmod", "this"} & (set(sys.modules) - modules_before)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.ckpt", "evilmod.py", "suite.yaml"]


class RunsCode:
    def __reduce__(self):
        return (os.system, ("touch ran",))


@pytest.mark.parametrize("content", ["text", "pickle", "empty", "list"])
def test_a_file_that_is_not_a_checkpoint_is_refused_in_one_line_without_advice_to_run_its_code(tmp_path, cli, content):
    bad = tmp_path / "bad.ckpt"
    if content == "text":
        bad.write_text("hello, I am not a checkpoint\n")
    elif content == "pickle":
        bad.write_bytes(pickle.dumps(RunsCode()))
    elif content == "empty":
        bad.write_bytes(b"")
    else:
        torch.save([torch.zeros(2)], bad)
    suite = suite_file(tmp_path)
    result = cli(["evaluate", str(bad), "--suite", str(suite)], tmp_path)
    assert_one_line_refusal(result, str(bad))
    assert "weights_only=False" not in result.stderr and not (tmp_path / "ran").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.ckpt", "suite.yaml"]


TAGGED = "name: !!python/object/apply:os.system ['touch ran']\ntasks: []\n"


@pytest.mark.parametrize("command", ["leaderboard", "evaluate", "physics", "train-dcdm", "train-learned-ic"])
def test_a_yaml_file_with_a_python_tag_is_refused_in_one_line(tmp_path, cli, command):
    config = tmp_path / "evil.yaml"
    config.write_text(TAGGED)
    args = {"leaderboard": ["leaderboard", "--suite", str(config)],
            "evaluate": ["evaluate", str(ROOT / "README.md"), "--suite", str(config)],
            "physics": ["physics", "--config", str(config)],
            "train-dcdm": ["train-dcdm", "--config", str(config)],
            "train-learned-ic": ["train-learned-ic", "--config", str(config)]}[command]
    if command == "evaluate":  # the checkpoint must pass first: use a real one's card
        ckpt = tmp_path / "m.ckpt"
        torch.save({"state_dict": {}, "pdebench": {}}, ckpt)
        args[1] = str(ckpt)
    result = cli(args, tmp_path)
    assert_one_line_refusal(result, str(config), "not a plain YAML", "line 1")
    assert not (tmp_path / "ran").exists()
    if command == "leaderboard":  # the same reader serves all four: one binary file through the CLI
        binary = tmp_path / "binary.yaml"
        binary.write_bytes(bytes(range(256)))
        result = cli([a.replace(str(config), str(binary)) for a in args], tmp_path)
        assert_one_line_refusal(result, str(binary), "binary")


@pytest.mark.parametrize("text", [TAGGED, "a: [1, 2\n", "a: 1\n  b: 2\n"])
def test_read_yaml_names_the_file_and_the_line_of_a_yaml_that_is_not_plain(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=r"c\.yaml.*not a plain YAML thing \(line \d+\)") as info:
        read_yaml(path, "thing")
    assert "\n" not in str(info.value)
    path.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(ValueError, match="binary"):
        read_yaml(path, "thing")
    with pytest.raises(FileNotFoundError):
        read_yaml(tmp_path / "missing.yaml", "thing")
    path.write_text("a: 1\nb: [x, y]\n")
    assert read_yaml(path, "thing") == {"a": 1, "b": ["x", "y"]}
