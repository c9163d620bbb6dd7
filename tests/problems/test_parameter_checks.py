"""Problem parameters that are not finite are refused with a message that says so (issue 17, item 14)."""

import math

import pytest

from pdebench.cli import main
from pdebench.problems import PROBLEMS


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_non_finite_t_final_is_called_not_finite(value):
    with pytest.raises(ValueError, match="t_final must be finite and positive"):
        PROBLEMS.build("burgers1d", t_final=value)


def test_negative_t_final_is_called_not_positive():
    with pytest.raises(ValueError, match=r"t_final must be positive, got -1"):
        PROBLEMS.build("burgers1d", t_final=-1.0)


def test_cli_t_final_inf_one_line_exit_2(tmp_path, capsys):
    status = main(["generate", "burgers1d", "-n", "2", "-o", str(tmp_path / "b.h5"), "--set", "t_final=inf"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert len(err) == 1 and "finite" in err[0]
    assert list(tmp_path.iterdir()) == []
