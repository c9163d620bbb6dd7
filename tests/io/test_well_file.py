"""The Well's layout both ways: our export read by The Well's own ``WellDataset``, our reader on a Well
file built by hand from The Well's documentation, export -> read -> export, and the same values as
the netCDF export."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import xarray as xr

from pdebench.cli import main
from pdebench.core.trajectories import Trajectories
from pdebench.data.export import export_netcdf, export_zarr, export_well
from pdebench.io.trajectory_file import TrajectoryFile, TrajectoryWriter, read_trajectories
from pdebench.problems.base import PROBLEMS

WellDataset = pytest.importorskip("the_well.data").WellDataset

N, T = 3, 4
PERIODIC = 2  # the_well.data.datasets.BoundaryCondition.PERIODIC
WALL = 0


def grid_2d() -> Trajectories:
    """ns2d-named 2-D trajectories: a scalar, a vector (2 channels) and a 3-channel field."""
    generator = torch.Generator().manual_seed(0)
    return Trajectories(
        fields={"vorticity": torch.randn(N, T, 8, 6, generator=generator),
                "velocity": torch.randn(N, T, 8, 6, 2, generator=generator),
                "tracers": torch.randn(N, T, 8, 6, 3, generator=generator)},
        coords={"t": np.linspace(0.0, 0.3, T), "x": np.arange(8) / 8, "y": np.arange(6) / 6},
        params={"nu": 1e-3, "forced": True, "scheme": "etdrk4"},
        sample_ids=np.stack([np.full(N, 7), np.arange(N) + 2], axis=1),
        provenance={"problem": "ns2d", "solver": "spectral", "dt": 1e-3, "error_estimate": {"rtol": 1e-4}},
    )


def mppde_1d() -> Trajectories:
    """mppde_e2-named 1-D trajectories: its alpha, beta, gamma are drawn per sample from the ids."""
    generator = torch.Generator().manual_seed(1)
    return Trajectories(
        fields={"u": torch.randn(N, T, 10, generator=generator)},
        coords={"t": np.linspace(0.0, 4.0, T), "x": np.arange(10) * 1.6},
        params={},
        sample_ids=np.stack([np.full(N, 5), np.arange(N)], axis=1),
        provenance={"problem": "mppde_e2", "problem_args": {"nx": 10, "n_out": T - 1}},
    )


CASES = {"grid_2d": (grid_2d, ["velocity"]), "mppde_1d": (mppde_1d, [])}


def native_file(path: Path, traj: Trajectories) -> Path:
    with TrajectoryWriter(path, allow_nonfinite=True) as writer:
        writer.append(traj)
    return path


def exported(tmp_path: Path, case: str) -> tuple[Trajectories, Path]:
    make, vectors = CASES[case]
    traj = make()
    (tmp_path / "well").mkdir()
    dest = export_well(native_file(tmp_path / "src.h5", traj), tmp_path / "well" / f"{case}.h5", vector_fields=vectors)
    return traj, dest


def well_channels(traj: Trajectories, vectors: list[str]) -> dict[str, np.ndarray]:
    """The channels The Well's reader should give, named as it names them: t0 fields (a field with C
    channels as NAME_0 .. NAME_{C-1}) in field order, then each vector's NAME_x, NAME_y."""
    axes = traj.spatial_axes
    out: dict[str, np.ndarray] = {}
    for name, value in traj.fields.items():
        if name in vectors:
            continue
        array = value.numpy()
        if array.ndim == 2 + len(axes):
            out[name] = array
        else:
            out.update({f"{name}_{c}": array[..., c] for c in range(array.shape[-1])})
    for name in vectors:
        out.update({f"{name}_{axis}": traj.fields[name].numpy()[..., i] for i, axis in enumerate(axes)})
    return out


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_wells_own_reader_gives_every_value_of_our_export(tmp_path: Path, case: str) -> None:
    traj, dest = exported(tmp_path, case)
    vectors = CASES[case][1]
    dataset = WellDataset(path=str(dest.parent), n_steps_input=1, n_steps_output=T - 1, full_trajectory_mode=True,
                          boundary_return_type="padding", flatten_tensors=True)
    meta = dataset.metadata
    expected = well_channels(traj, vectors)
    names = [name for order in (0, 1, 2) for name in meta.field_names[order]]
    assert names == list(expected)
    assert meta.dataset_name == traj.provenance["problem"]
    assert meta.n_spatial_dims == len(traj.spatial_axes)
    assert meta.spatial_resolution == tuple(len(traj.coords[a]) for a in traj.spatial_axes)
    assert meta.n_trajectories_per_file == [N] and meta.n_steps_per_trajectory == [T]
    problem = PROBLEMS.build(traj.provenance["problem"], **traj.provenance.get("problem_args", {}))
    per_sample = problem.sample_parameters(traj.sample_ids)
    constants = {name: value for name, value in traj.params.items() if isinstance(value, float)}
    assert meta.constant_scalar_names == [*constants, *per_sample]
    assert len(dataset) == N
    grid = np.stack(np.meshgrid(*[traj.coords[a].astype(np.float32) for a in traj.spatial_axes], indexing="ij"), -1)
    for row in range(N):
        sample = dataset[row]
        frames = torch.cat([sample["input_fields"], sample["output_fields"]]).numpy()  # (T, *space, C)
        want = np.stack([value[row] for value in expected.values()], axis=-1)
        np.testing.assert_array_equal(frames, want)
        scalars = [np.float32(value) for value in constants.values()] + [np.float32(v[row]) for v in per_sample.values()]
        np.testing.assert_array_equal(sample["constant_scalars"].numpy(), np.array(scalars, dtype=np.float32))
        np.testing.assert_array_equal(sample["boundary_conditions"].numpy(), np.full((len(traj.spatial_axes), 2), PERIODIC))
        np.testing.assert_array_equal(sample["space_grid"].numpy(), grid)
        times = np.concatenate([sample["input_time_grid"].numpy(), sample["output_time_grid"].numpy()])
        t32 = traj.coords["t"].astype(np.float32)
        np.testing.assert_array_equal(times, t32 - t32[0])


def _hand_made_well_file(path: Path) -> dict[str, np.ndarray]:
    """A 2-D file written with h5py from The Well's docs/data_format.md alone (not by our writer)."""
    rng = np.random.default_rng(3)
    b, t, w, h = 2, 5, 8, 4
    values = {
        "density": rng.standard_normal((b, t, w, h)).astype(np.float32),
        "porosity": rng.standard_normal((b, w, h)).astype(np.float32),  # constant in time
        "velocity": rng.standard_normal((b, t, w, h, 2)).astype(np.float32),
        "stress": rng.standard_normal((b, t, w, h, 2, 2)).astype(np.float32),
        "Mach": rng.uniform(0.1, 0.5, b).astype(np.float32),
        "x": np.linspace(0, 1, w, dtype=np.float32), "y": np.linspace(0, 2, h, dtype=np.float32),
        "time": np.linspace(0, 1, t, dtype=np.float32),
    }
    with h5py.File(path, "w") as f:
        f.attrs.update({"simulation_parameters": ["Reynolds"], "Reynolds": 100.0, "dataset_name": "hand_made",
                        "grid_type": "cartesian", "n_spatial_dims": 2, "n_trajectories": b})
        dims = f.create_group("dimensions")
        dims.attrs["spatial_dims"] = ["x", "y"]
        dims.create_dataset("time", data=values["time"]).attrs["sample_varying"] = False
        for axis in ("x", "y"):
            dims.create_dataset(axis, data=values[axis]).attrs.update({"sample_varying": False, "time_varying": False})
        bcs = f.create_group("boundary_conditions")
        for axis, kind, n in (("x", "periodic", w), ("y", "wall", h)):
            group = bcs.create_group(f"{axis.upper()}_boundary")
            group.attrs.update({"associated_dims": [axis], "associated_fields": [], "bc_type": kind,
                                "sample_varying": False, "time_varying": False})
            mask = np.zeros(n, dtype=bool)
            mask[[0, -1]] = True
            group.create_dataset("mask", data=mask)
            group.create_dataset("values", data=np.zeros(2, dtype=np.float32))
        scalars = f.create_group("scalars")
        scalars.attrs["field_names"] = ["Reynolds", "Mach", "forcing"]
        scalars.create_dataset("Reynolds", data=np.float32(100.0)).attrs.update({"sample_varying": False, "time_varying": False})
        scalars.create_dataset("Mach", data=values["Mach"]).attrs.update({"sample_varying": True, "time_varying": False})
        scalars.create_dataset("forcing", data=np.ones(t, np.float32)).attrs.update({"sample_varying": False, "time_varying": True})
        t0 = f.create_group("t0_fields")
        t0.attrs["field_names"] = ["density", "porosity"]
        t0.create_dataset("density", data=values["density"]).attrs.update(
            {"dim_varying": [True, True], "sample_varying": True, "time_varying": True})
        t0.create_dataset("porosity", data=values["porosity"]).attrs.update(
            {"dim_varying": [True, True], "sample_varying": True, "time_varying": False})
        t1 = f.create_group("t1_fields")
        t1.attrs["field_names"] = ["velocity"]
        t1.create_dataset("velocity", data=values["velocity"]).attrs.update(
            {"dim_varying": [True, True], "sample_varying": True, "time_varying": True})
        t2 = f.create_group("t2_fields")
        t2.attrs["field_names"] = ["stress"]
        t2.create_dataset("stress", data=values["stress"]).attrs.update(
            {"dim_varying": [True, True], "sample_varying": True, "time_varying": True, "symmetric": False, "antisymmetric": False})
    return values


def test_our_reader_opens_a_well_file_made_from_the_wells_documentation(tmp_path: Path) -> None:
    values = _hand_made_well_file(tmp_path / "hand.h5")
    with TrajectoryFile(tmp_path / "hand.h5") as file:
        assert file.layout == "well"
        traj = file.read()
        per_sample = file.sample_parameters()
        assert list(per_sample) == ["Mach"]
        np.testing.assert_array_equal(per_sample["Mach"], values["Mach"])
        assert file.sample_parameters([1])["Mach"].tolist() == [values["Mach"][1]]
    b, t = values["density"].shape[:2]
    np.testing.assert_array_equal(traj.fields["density"].numpy(), values["density"])
    np.testing.assert_array_equal(traj.fields["porosity"].numpy(), np.repeat(values["porosity"][:, None], t, axis=1))
    np.testing.assert_array_equal(traj.fields["velocity"].numpy(), values["velocity"])
    np.testing.assert_array_equal(traj.fields["stress"].numpy(), values["stress"].reshape(b, t, 8, 4, 4))
    for axis in ("x", "y"):
        np.testing.assert_array_equal(traj.coords[axis], values[axis])
    np.testing.assert_array_equal(traj.coords["t"], values["time"])
    assert traj.params == {"Reynolds": 100.0}
    assert traj.sample_ids.tolist() == [[-1, 0], [-1, 1]]
    well = traj.provenance["well"]
    assert well["dataset_name"] == "hand_made"
    assert well["boundaries"] == {"x": "PERIODIC", "y": "WALL"}
    assert {name: spec["order"] for name, spec in well["tensor_fields"].items()} == {"velocity": 1, "stress": 2}

    # exported again, The Well's reader sees the same layout: vectors stay vectors, the wall stays a wall
    (tmp_path / "again").mkdir()
    again = export_well(tmp_path / "hand.h5", tmp_path / "again" / "hand.h5")
    dataset = WellDataset(path=str(again.parent), n_steps_input=1, n_steps_output=t - 1, full_trajectory_mode=True)
    assert dataset.metadata.field_names == {0: ["density", "porosity"], 1: ["velocity_x", "velocity_y"],
                                            2: ["stress_xx", "stress_xy", "stress_yx", "stress_yy"]}
    np.testing.assert_array_equal(dataset[0]["boundary_conditions"].numpy(), [[PERIODIC, PERIODIC], [WALL, WALL]])
    np.testing.assert_array_equal(read_trajectories(again).fields["stress"], traj.fields["stress"])


def test_an_incomplete_well_file_is_refused_in_one_line(tmp_path: Path) -> None:
    _hand_made_well_file(tmp_path / "hand.h5")
    with h5py.File(tmp_path / "hand.h5", "a") as f:
        del f["t2_fields"]
    with pytest.raises(ValueError, match=r"hand\.h5: not a complete Well file: no group 't2_fields'$"):
        TrajectoryFile(tmp_path / "hand.h5")


def _contents(path: Path) -> dict[str, tuple]:
    """Every group's and dataset's attributes (value and type) and every dataset's dtype, shape and values."""
    out: dict[str, tuple] = {}

    def attrs(item) -> dict:
        return {key: (type(value).__name__, getattr(value, "dtype", None), np.asarray(value).tolist())
                for key, value in item.attrs.items()}

    def visit(name: str, item) -> None:
        data = (item.dtype, item.shape, item[()].tolist()) if isinstance(item, h5py.Dataset) else None
        out[name] = (attrs(item), data)

    with h5py.File(path) as f:
        out["/"] = (attrs(f), None)
        f.visititems(visit)
    return out


@pytest.mark.parametrize("case", sorted(CASES))
def test_export_read_export_of_the_well_layout_is_bit_identical(tmp_path: Path, case: str) -> None:
    traj, first = exported(tmp_path, case)
    second = export_well(first, tmp_path / "second.h5")
    assert _contents(second) == _contents(first)
    back = read_trajectories(first)
    for name, value in traj.fields.items():
        assert torch.equal(back.fields[name], value)
    assert back.params == traj.params
    assert {k: v for k, v in back.provenance.items() if k != "well"} == traj.provenance
    assert back.sample_ids.tolist() == traj.sample_ids.tolist()


def test_darcy_exports_with_wall_boundaries_and_again_bit_identical(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(4)
    traj = Trajectories(fields={"nu": torch.rand(2, 1, 5, 5, generator=generator), "tensor": torch.rand(2, 1, 5, 5, generator=generator)},
                        coords={"t": np.zeros(1), "x": np.linspace(0, 1, 5), "y": np.linspace(0, 1, 5)},
                        params={"resolution": 5}, sample_ids=np.stack([np.ones(2), np.arange(2)], axis=1),
                        provenance={"problem": "darcy2d", "problem_args": {"resolution": 5}})
    first = export_well(native_file(tmp_path / "darcy.h5", traj), tmp_path / "darcy.well.h5")
    with h5py.File(first) as f:
        assert sorted(f["boundary_conditions"]) == ["x_wall", "y_wall"]
        assert f["boundary_conditions/y_wall"].attrs["bc_type"] == "WALL"
        assert f["boundary_conditions/y_wall/mask"][()].tolist() == [True, False, False, False, True]
        assert list(f["scalars"].attrs["field_names"]) == ["resolution"] and f["scalars/resolution"].shape == ()
    assert _contents(export_well(first, tmp_path / "again.h5")) == _contents(first)


def test_a_pdebench_file_exports_with_its_name_and_no_boundary_it_does_not_state(tmp_path: Path) -> None:
    u = np.random.default_rng(5).standard_normal((2, 3, 16)).astype(np.float32)
    with h5py.File(tmp_path / "1D_Advection_Sols_beta0.4.hdf5", "w") as f:  # PDEBench's single-field layout
        f["tensor"] = u
        f["x-coordinate"] = np.linspace(0, 1, 16, endpoint=False)
        f["t-coordinate"] = np.linspace(0, 2, 4)  # PDEBench's T + 1 interval edges
    (tmp_path / "well").mkdir()
    dest = export_well(tmp_path / "1D_Advection_Sols_beta0.4.hdf5", tmp_path / "well" / "adv.h5")
    dataset = WellDataset(path=str(dest.parent), n_steps_input=1, n_steps_output=2, full_trajectory_mode=True)
    assert dataset.metadata.dataset_name == "1D_Advection_Sols_beta0.4"
    assert dataset.metadata.boundary_condition_types == []
    np.testing.assert_array_equal(dataset[1]["boundary_conditions"].numpy(), [[1, 1]])  # The Well's default: open
    np.testing.assert_array_equal(torch.cat([dataset[1]["input_fields"], dataset[1]["output_fields"]])[..., 0].numpy(), u[1])


def _xarray_values(path: Path, opener=xr.open_dataset) -> dict[str, np.ndarray]:
    """Fields, fp32 coordinates and sample ids as xarray reads a netCDF file (or, with ``xr.open_zarr``, a store)."""
    with opener(path) as ds:
        out = {name: ds[name].values for name in ds.data_vars}
        out.update({f"coord {name}": ds[name].values.astype(np.float32) for name in ("t", "x", "y") if name in ds.coords})
        out["sample ids"] = np.stack([ds["sample_seed"].values, ds["sample_index"].values], axis=1)
    return out


def _well_values(path: Path) -> dict[str, np.ndarray]:
    traj = read_trajectories(path)
    out = {name: value.numpy() for name, value in traj.fields.items()}
    out.update({f"coord {name}": np.asarray(value, dtype=np.float32) for name, value in traj.coords.items()})
    out["sample ids"] = traj.sample_ids
    return out


EXPORTS = {  # format -> (export function, suffix, values as an independent reader sees them); one line a format
    "netcdf": (export_netcdf, ".nc", _xarray_values),
    "well": (export_well, ".h5", _well_values),
    "zarr": (export_zarr, ".zarr", lambda path: _xarray_values(path, xr.open_zarr)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_export_of_a_file_holds_the_same_values(tmp_path: Path, case: str) -> None:
    source = native_file(tmp_path / "src.h5", CASES[case][0]())
    values = {fmt: read(export(source, tmp_path / f"out{suffix}")) for fmt, (export, suffix, read) in EXPORTS.items()}
    reference = values.pop("netcdf")
    for fmt, found in values.items():
        assert sorted(found) == sorted(reference), fmt
        for name, value in reference.items():
            np.testing.assert_array_equal(found[name], value, err_msg=f"{fmt}: {name}")


def test_export_refuses_nonfinite_values_unless_allowed_and_reports_progress(tmp_path: Path) -> None:
    traj = mppde_1d()
    traj.fields["u"][1, 2, 3] = float("nan")
    source = native_file(tmp_path / "nan.h5", traj)
    with pytest.raises(ValueError, match=r"non-finite values in row 1 \(frame 2\)"):
        export_well(source, tmp_path / "out.h5", chunk_rows=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nan.h5"]
    counts: list[int] = []
    export_well(source, tmp_path / "out.h5", chunk_rows=2, allow_nonfinite=True, progress=counts.append)
    assert counts == [2, 1]
    assert np.isnan(read_trajectories(tmp_path / "out.h5").fields["u"][1, 2, 3])


def test_a_well_export_that_does_not_fit_the_layout_is_refused_naming_the_field(tmp_path: Path) -> None:
    source = native_file(tmp_path / "src.h5", grid_2d())
    with pytest.raises(ValueError, match="field 'tracers' is named a vector on 2 axes: it needs 2 channels, it has 3"):
        export_well(source, tmp_path / "out.h5", vector_fields=["tracers"])
    with pytest.raises(ValueError, match="vector field 'speed' is not a field of"):
        export_well(source, tmp_path / "out.h5", vector_fields=["speed"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src.h5"]


def test_cli_exports_the_well_layout_and_refuses_an_unknown_format_in_one_line(tmp_path: Path, capsys) -> None:
    source = native_file(tmp_path / "src.h5", mppde_1d())
    assert main(["export", str(source), "--format", "hdf4"]) == 2
    err = capsys.readouterr().err
    assert err == "pdebench: error: --format must be one of ('netcdf', 'well', 'zarr'), got 'hdf4'\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src.h5"]
    assert main(["export", str(source), "--format", "well"]) == 0
    assert read_trajectories(tmp_path / "src.well.h5").fields["u"].equal(read_trajectories(source).fields["u"])


def test_offline_training_runs_on_a_well_file(tmp_path: Path) -> None:
    import lightning as L

    from pdebench.data.datamodules import OfflineDataModule
    from pdebench.training.module import OperatorModule

    generator = torch.Generator().manual_seed(2)
    traj = Trajectories(fields={"u": torch.randn(8, 3, 16, generator=generator)},
                        coords={"t": np.linspace(0, 1, 3), "x": np.arange(16) / 16}, params={"Nu": 0.1},
                        sample_ids=np.stack([np.zeros(8), np.arange(8)], axis=1), provenance={"problem": "burgers1d"})
    well = export_well(native_file(tmp_path / "src.h5", traj), tmp_path / "b.h5")
    data = OfflineDataModule(str(well), task="next_step", batch_size=4)
    rows = data.splits["train"]
    np.testing.assert_array_equal(data.trajectories("train")[:, :, 0].numpy(), traj.fields["u"][rows].numpy())
    module = OperatorModule(model="fno", in_channels=1, out_channels=1, spatial_dims=1,
                            model_args={"n_modes": 4, "hidden_channels": 4})
    trainer = L.Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        limit_val_batches=0, default_root_dir=tmp_path)
    trainer.fit(module, datamodule=data)
    assert trainer.global_step == 2
    assert all(torch.isfinite(p).all() for p in module.parameters())
