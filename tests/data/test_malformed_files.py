"""Malformed or non-finite trajectory files never crash: the reader, ``pdebench plot`` and
``pdebench export`` each answer one line naming the file and what is wrong (exit 2 for the CLI), and
outputs that cannot fit on the disk are refused before anything is written."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pdebench.data.hdf5 import check_free_disk


def test_check_free_disk_refuses_in_one_line_with_estimate_and_free_space(tmp_path: Path, monkeypatch) -> None:
    usage = shutil.disk_usage(tmp_path)
    check_free_disk(tmp_path, 1024, "the export")  # fits: no error
    monkeypatch.setattr(shutil, "disk_usage", lambda folder: usage._replace(free=3 * 2**30))
    with pytest.raises(ValueError, match=r"^the export needs about 5 GiB, 3 GiB free on ") as info:
        check_free_disk(tmp_path, 5 * 2**30, "the export")
    assert str(tmp_path) in str(info.value) and "\n" not in str(info.value)
