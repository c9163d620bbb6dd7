"""Tests of the xarray / netCDF export."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import xarray as xr

import pdebench.data.export as export
from pdebench.data.export import export_netcdf, to_xarray
from pdebench.io.trajectory_file import TrajectoryWriter, read_trajectories
from pdebench.core.trajectories import Trajectories


def make_batch(n: int, t: int, space: tuple[int, ...], *, start: int = 0, channels: int | None = None) -> Trajectories:
    generator = torch.Generator().manual_seed(start)
    coords = {"t": np.linspace(0.0, 1.0, t)}
    coords.update({axis: np.linspace(0.0, 1.0, size, endpoint=False) for axis, size in zip("xyz", space)})
    fields = {"u": torch.randn(n, t, *space, generator=generator)}
    if channels:
        fields["velocity"] = torch.randn(n, t, *space, channels, generator=generator)
    return Trajectories(
        fields=fields,
        coords=coords,
        params={"nu": 0.01, "periodic": True},
        sample_ids=np.stack([np.full(n, 3), np.arange(start, start + n)], axis=1),
        provenance={"solver": "spectral", "dt": 1e-3},
    )


def write_file(path: Path, batches: list[Trajectories]) -> None:
    with TrajectoryWriter(path) as writer:
        for batch in batches:
            writer.append(batch)


def test_to_xarray_1d() -> None:
    batch = make_batch(3, 4, (8,))
    ds = to_xarray(batch)
    assert ds["u"].dims == ("sample", "t", "x")
    np.testing.assert_array_equal(ds["u"].values, batch.fields["u"].numpy())
    np.testing.assert_array_equal(ds["t"].values, batch.coords["t"])
    np.testing.assert_array_equal(ds["x"].values, batch.coords["x"])
    np.testing.assert_array_equal(ds["sample_seed"].values, batch.sample_ids[:, 0])
    np.testing.assert_array_equal(ds["sample_index"].values, batch.sample_ids[:, 1])
    assert ds.attrs["nu"] == 0.01
    assert ds.attrs["periodic"] == 1
    assert ds.attrs["provenance.solver"] == "spectral"


def test_to_xarray_2d_with_components() -> None:
    batch = make_batch(2, 3, (8, 6), channels=2)
    ds = to_xarray(batch)
    assert ds["u"].dims == ("sample", "t", "x", "y")
    assert ds["velocity"].dims == ("sample", "t", "x", "y", "component")
    np.testing.assert_array_equal(ds["velocity"].values, batch.fields["velocity"].numpy())
    np.testing.assert_array_equal(ds["y"].values, batch.coords["y"])


def test_xarray_of_file_equals_file(tmp_path: Path) -> None:
    path = tmp_path / "a.h5"
    write_file(path, [make_batch(3, 4, (8, 6), start=3 * i, channels=2) for i in range(2)])
    ds = to_xarray(read_trajectories(path))
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(ds["u"].values, f["u"][()])
        np.testing.assert_array_equal(ds["velocity"].values, f["velocity"][()])
        np.testing.assert_array_equal(ds["x"].values, f["x-coordinate"][()])
        np.testing.assert_array_equal(ds["t"].values, f["t-coordinate"][()])
        np.testing.assert_array_equal(ds["sample_index"].values, f["sample_ids"][:, 1])


def test_export_netcdf_streams_and_equals_data(tmp_path: Path) -> None:
    src = tmp_path / "a.h5"
    write_file(src, [make_batch(4, 5, (8, 6), start=4 * i, channels=2) for i in range(3)])
    dest = tmp_path / "a.nc"
    assert export_netcdf(src, dest, chunk_rows=5) == dest  # 12 rows in chunks of 5, 5, 2
    expected = to_xarray(read_trajectories(src))
    with xr.open_dataset(dest) as ds:
        xr.testing.assert_identical(ds.load(), expected)
        assert ds.sizes["sample"] == 12
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.h5", "a.nc"]


def test_export_netcdf_of_pdebench_file(tmp_path: Path) -> None:
    src = tmp_path / "1D_Burgers_Sols_Nu0.1.hdf5"
    tensor = np.random.default_rng(0).standard_normal((3, 4, 16)).astype(np.float32)
    with h5py.File(src, "w") as f:
        f.create_dataset("tensor", data=tensor)
        f.create_dataset("x-coordinate", data=np.linspace(0, 1, 16, dtype=np.float32))
        f.create_dataset("t-coordinate", data=np.linspace(0, 1, 5, dtype=np.float32))
        f.attrs["Nu"] = 0.1
    dest = export_netcdf(src, tmp_path / "burgers.nc")
    with xr.open_dataset(dest) as ds:
        np.testing.assert_array_equal(ds["tensor"].values, tensor)
        assert ds.sizes["t"] == 4
        assert ds.attrs["Nu"] == pytest.approx(0.1)


def test_export_refuses_overwrite_and_cleans_up_on_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "a.h5"
    write_file(src, [make_batch(4, 3, (8,))])
    dest = tmp_path / "a.nc"
    dest.write_bytes(b"keep me")
    with pytest.raises(FileExistsError, match="a.nc"):
        export_netcdf(src, dest)
    assert dest.read_bytes() == b"keep me"

    calls = {"n": 0}
    real = export.to_xarray

    def failing(traj: Trajectories) -> xr.Dataset:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("disk full")
        return real(traj)

    monkeypatch.setattr(export, "to_xarray", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        export_netcdf(src, dest, overwrite=True, chunk_rows=2)
    assert dest.read_bytes() == b"keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.h5", "a.nc"]
