"""Malformed or non-finite trajectory files never crash: the reader, ``pdebench plot`` and
``pdebench export`` each answer one line naming the file and what is wrong (exit 2 for the CLI), and
outputs that cannot fit on the disk are refused before anything is written (issue 17, items 6-8)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import xarray as xr

from pdebench.data.datamodules import OfflineDataModule
from pdebench.data.export import export_netcdf
from pdebench.io.base import check_free_disk
from pdebench.io.trajectory_file import TrajectoryFile, TrajectoryWriter, describe_nonfinite, find_nonfinite
from pdebench.core.trajectories import Trajectories
from tests.cli_runs import assert_one_line_refusal
from tests.cli_runs import pdebench_cli as cli

N, T, X = 8, 6, 16


def write_valid(path: Path, *, bad: dict[tuple[int, int], float] | None = None) -> Path:
    """A native file of ``N`` trajectories; ``bad`` puts values (NaN, inf) at ``(row, frame)``."""
    u = torch.randn(N, T, X, generator=torch.Generator().manual_seed(0))
    for (row, frame), value in (bad or {}).items():
        u[row, frame, 3] = value
    traj = Trajectories(fields={"u": u}, coords={"x": np.linspace(0, 1, X), "t": np.linspace(0, 1, T)},
                        params={"nu": 0.1}, sample_ids=np.stack([np.zeros(N, int), np.arange(N)], axis=1))
    with TrajectoryWriter(path, allow_nonfinite=bool(bad)) as writer:
        writer.append(traj)
    return path


def make_malformed(folder: Path, kind: str) -> Path:
    """One malformed file of each kind the reader must refuse."""
    path = folder / f"{kind}.h5"
    if kind == "truncated":  # as `head -c 13393 valid.h5 > t.h5`
        valid = write_valid(folder / "valid_for_truncation.h5")
        path.write_bytes(valid.read_bytes()[: valid.stat().st_size // 2])
    elif kind == "one_dim_native":  # our file with its field replaced by a 1-D dataset
        write_valid(path)
        with h5py.File(path, "a") as file:
            del file["tensor"]
            file["tensor"] = np.zeros(10, dtype=np.float32)
    elif kind == "one_dim_cfd":
        with h5py.File(path, "w") as file:
            file["Vx"] = np.zeros(10, dtype=np.float32)
    elif kind == "darcy_scalar_nu":  # 'nu' and 'tensor' without the (N, 1, X) axes of a Darcy pair
        with h5py.File(path, "w") as file:
            file["nu"] = np.float32(1.0)
            file["tensor"] = np.zeros(10, dtype=np.float32)
    elif kind == "declared_contiguous":  # 1.28 TB declared, nothing stored
        with h5py.File(path, "w") as file:
            file.create_dataset("tensor", shape=(10**9, 5, 64), dtype="f4")
    elif kind == "declared_chunked":  # compressed, no chunk written
        with h5py.File(path, "w") as file:
            file.create_dataset("tensor", shape=(10**9, 5, 64), dtype="f4", chunks=(64, 5, 64), compression="gzip")
    elif kind == "partly_stored":  # 3 of 10 chunks written, a fill value for the rest
        with h5py.File(path, "w") as file:
            dataset = file.create_dataset("tensor", shape=(100, 5, 8), dtype="f4", chunks=(10, 5, 8),
                                          compression="gzip", fillvalue=1.0)
            dataset[:30] = 2.0
    return path


MALFORMED = {
    "truncated": "cannot be read (truncated or damaged HDF5 file)",
    "one_dim_native": "dataset '/tensor' has shape (10,); a field needs (N, T, *space[, C])",
    "one_dim_cfd": "no field dataset of shape (N, T, X[, ...]); found Vx (10,)",
    "darcy_scalar_nu": "unknown layout. Found: nu (), tensor (10,)",
    "declared_contiguous": "declares shape (1000000000, 5, 64) (1,280,000,000,000 bytes) but stores 0 bytes",
    "declared_chunked": "declares shape (1000000000, 5, 64) in 15,625,000 chunks but stores only 0",
    "partly_stored": "declares shape (100, 5, 8) in 10 chunks but stores only 3",
}


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_reader_refuses_a_malformed_file_in_one_line_naming_it(tmp_path: Path, kind: str) -> None:
    path = make_malformed(tmp_path, kind)
    with pytest.raises(ValueError) as info:
        with TrajectoryFile(path) as file:
            file.read()
    message = str(info.value)
    assert "\n" not in message and str(path) in message and MALFORMED[kind] in message, message


def test_compressed_fully_stored_data_is_not_a_false_alarm(tmp_path: Path) -> None:
    path = tmp_path / "zeros.h5"
    with h5py.File(path, "w") as file:  # compresses to far fewer bytes than declared
        file.create_dataset("tensor", data=np.zeros((200, 5, 64), np.float32), chunks=(10, 5, 64), compression="gzip")
    with TrajectoryFile(path) as file:
        assert file.read().fields["tensor"].shape == (200, 5, 64)
        assert file.nbytes == 200 * 5 * 64 * 4


def test_cli_plot_and_export_refuse_malformed_files_in_one_line(tmp_path: Path) -> None:
    for command, kind in [("plot", "truncated"), ("export", "one_dim_native"), ("plot", "declared_chunked"),
                          ("export", "declared_contiguous")]:
        path = make_malformed(tmp_path, kind)
        before = sorted(p.name for p in tmp_path.iterdir())
        assert_one_line_refusal(cli([command, path.name], tmp_path), path.name, MALFORMED[kind])
        assert sorted(p.name for p in tmp_path.iterdir()) == before  # no .png, no .nc, no temp file


def test_find_nonfinite_names_exact_rows_and_frames() -> None:
    values = np.zeros((5, 4, 3))
    values[2, 1, 0], values[2, 3, 2] = np.nan, np.inf
    channels = torch.zeros(5, 4, 3, 2)
    channels[4, 0, 0, 1] = float("-inf")
    found = find_nonfinite([values, channels], rows=[10, 11, 12, 13, 14], frames=[0, 2, 4, 6])
    assert found == {12: [2, 6], 14: [0]}
    assert describe_nonfinite(found) == "rows 12 (frames 2, 6), 14 (frame 0)"
    assert find_nonfinite(torch.zeros(3, 2)) == {} and describe_nonfinite({3: [1]}) == "row 3 (frame 1)"


def test_training_names_only_the_bad_row_and_its_frames(tmp_path: Path) -> None:
    path = write_valid(tmp_path / "nan.h5", bad={(2, 3): float("nan"), (2, 4): float("inf")})
    dm = OfflineDataModule(str(path), task="next_step", train_fraction=0.5, val_fraction=0.25)
    split = next(name for name, rows in dm.splits.items() if 2 in rows)
    assert len(dm.splits[split]) > 1  # the split holds good rows too: they must not be named
    with pytest.raises(ValueError, match=re.escape(f"{path}: non-finite values in row 2 (frames 3, 4)")):
        dm.trajectories(split)


def test_export_refuses_nonfinite_unless_allowed_and_plot_warns(tmp_path: Path) -> None:
    write_valid(tmp_path / "nan.h5", bad={(2, 3): float("nan"), (2, 4): float("inf"), (6, 0): float("nan")})
    refused = cli(["export", "nan.h5"], tmp_path)
    assert_one_line_refusal(refused, "nan.h5: non-finite values in rows 2 (frames 3, 4), 6 (frame 0)", "--allow-nonfinite")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nan.h5"]

    kept = cli(["export", "nan.h5", "--allow-nonfinite"], tmp_path)
    assert kept.returncode == 0, kept.stderr[-3000:]
    assert f"{N}/{N}" in kept.stdout and "rows/s" in kept.stdout  # the progress bar
    with xr.open_dataset(tmp_path / "nan.nc") as ds:
        assert np.isnan(ds["u"].values[2, 3, 3]) and int(np.isfinite(ds["u"].values).sum()) == N * T * X - 3

    plotted = cli(["plot", "nan.h5"], tmp_path)
    assert plotted.returncode == 0 and (tmp_path / "nan.png").exists(), plotted.stderr[-3000:]
    warning = " ".join(plotted.stderr.split())
    assert "nan.h5: non-finite values in row 2 (frames 3, 4)" in warning and "plotting them anyway" in warning
    assert "RuntimeWarning" not in plotted.stderr  # the colour scale ignores NaN and inf


def test_export_library_refuses_nonfinite_and_reports_progress(tmp_path: Path) -> None:
    source = write_valid(tmp_path / "nan.h5", bad={(5, 1): float("nan")})
    with pytest.raises(ValueError, match=re.escape("non-finite values in row 5 (frame 1)")):
        export_netcdf(source, tmp_path / "out.nc", chunk_rows=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nan.h5"]
    counts: list[int] = []
    export_netcdf(source, tmp_path / "out.nc", chunk_rows=3, allow_nonfinite=True, progress=counts.append)
    assert counts == [3, 3, 2]


def test_check_free_disk_refuses_in_one_line_with_estimate_and_free_space(tmp_path: Path, monkeypatch) -> None:
    usage = shutil.disk_usage(tmp_path)
    check_free_disk(tmp_path, 1024, "the export")  # fits: no error
    monkeypatch.setattr(shutil, "disk_usage", lambda folder: usage._replace(free=3 * 2**30))
    with pytest.raises(ValueError, match=r"^the export needs about 5 GiB, 3 GiB free on ") as info:
        check_free_disk(tmp_path, 5 * 2**30, "the export")
    assert str(tmp_path) in str(info.value) and "\n" not in str(info.value)


def test_cli_export_refuses_an_output_that_does_not_fit_before_writing(tmp_path: Path) -> None:
    write_valid(tmp_path / "valid.h5")
    prelude = ("import shutil\nreal = shutil.disk_usage\n"
               "shutil.disk_usage = lambda folder: real(folder)._replace(free=1000)")
    result = cli(["export", "valid.h5", "-o", "out.nc"], tmp_path, prelude=prelude)
    assert_one_line_refusal(result, "exporting valid.h5 to out.nc needs about 0.00098 GiB, 0.000000931 GiB free on", str(tmp_path.resolve()))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["valid.h5"]
