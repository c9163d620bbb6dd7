"""Zarr export (``pdebench export --format zarr``) and reading Zarr stores like HDF5 files."""

from __future__ import annotations

import multiprocessing
import os
import pickle
from pathlib import Path

import h5py
import lightning as L
import numpy as np
import pytest
import torch
import xarray as xr
import zarr

import pdebench.data.export as export
from pdebench.cli import main
from pdebench.core.trajectories import Trajectories
from pdebench.data.datamodules import OfflineDataModule
from pdebench.data.export import export_netcdf, export_zarr, zarr_chunk_rows
from pdebench.io.trajectory_file import TrajectoryFile, TrajectoryWriter
from pdebench.training import OperatorModule
from pdebench.training.base import OptimConfig


def make_batch(n: int, start: int, *, t: int = 5, space: tuple[int, ...] = (8, 6), channels: int = 2) -> Trajectories:
    generator = torch.Generator().manual_seed(start)
    coords = {"t": np.linspace(0.0, 1.0, t)}
    coords.update({axis: np.linspace(0.0, 1.0, size, endpoint=False) for axis, size in zip("xyz", space)})
    fields = {"u": torch.randn(n, t, *space, generator=generator)}
    if channels:
        fields["velocity"] = torch.randn(n, t, *space, channels, generator=generator)
    return Trajectories(
        fields=fields,
        coords=coords,
        params={"nu": 0.01, "periodic": True, "modes": [1, 2, 3]},
        sample_ids=np.stack([np.full(n, 3), np.arange(start, start + n)], axis=1),
        provenance={"solver": "spectral", "dt": 1e-3, "error_estimate": {"time_max": 1e-6, "time_per_frame": [0.0, 1e-6]}},
    )


def write_file(path: Path, batches: list[Trajectories], **options) -> Path:
    with TrajectoryWriter(path, **options) as writer:
        for batch in batches:
            writer.append(batch)
    return path


@pytest.fixture()
def h5_file(tmp_path: Path) -> Path:
    """12 trajectories ``u (12, 5, 8, 6)`` and ``velocity (12, 5, 8, 6, 2)``, ids (3, 0..11)."""
    return write_file(tmp_path / "a.h5", [make_batch(4, 4 * i) for i in range(3)])


def store_files(store: Path) -> dict[str, bytes]:
    return {str(path.relative_to(store)): path.read_bytes() for path in sorted(store.rglob("*")) if path.is_file()}


def test_zarr_export_reads_back_as_the_file(h5_file: Path, tmp_path: Path) -> None:
    dest = tmp_path / "a.zarr"
    written: list[int] = []
    assert export_zarr(h5_file, dest, chunk_rows=5, progress=written.append) == dest  # rows 5, 5, 2 appended
    assert written == [5, 5, 2]
    with TrajectoryFile(dest) as store, TrajectoryFile(h5_file) as source:
        assert store.layout == "zarr" and len(store) == 12
        assert store.fields == source.fields and list(store.fields) == ["u", "velocity"]
        for rows in (None, [9, 1, 1, 5], slice(3, 11, 2), 7):
            a, b = store.read(rows), source.read(rows)
            for name in b.fields:
                assert a.fields[name].dtype == torch.float32
                assert torch.equal(a.fields[name], b.fields[name])
            np.testing.assert_array_equal(a.sample_ids, b.sample_ids)
        assert store.coords.keys() == source.coords.keys()
        for name, value in source.coords.items():
            np.testing.assert_array_equal(store.coords[name], value)
        assert store.params == {"nu": 0.01, "periodic": 1, "modes": [1, 2, 3]} == source.params
        assert store.provenance == source.provenance
    # the third-party reader sees the HDF5 datasets' values, chunked by sample and compressed
    with xr.open_zarr(dest) as ds, h5py.File(h5_file, "r") as f:
        np.testing.assert_array_equal(ds["u"].values, f["u"][()])
        np.testing.assert_array_equal(ds["velocity"].values, f["velocity"][()])
        np.testing.assert_array_equal(ds["sample_index"].values, f["sample_ids"][:, 1])
        np.testing.assert_array_equal(ds["x"].values, f["x-coordinate"][()])
    rows = zarr_chunk_rows(TrajectoryFile(h5_file))
    assert rows == (4 << 20) // (5 * 8 * 6 * 2 * 4)  # ~4 MiB of the largest field's rows
    velocity = zarr.open_array(dest / "velocity", mode="r")
    assert velocity.chunks == (rows, 5, 8, 6, 2)
    assert [type(codec).__name__ for codec in velocity.compressors] == ["BloscCodec"]


def test_zarr_export_read_export_is_bit_identical(h5_file: Path, tmp_path: Path) -> None:
    first = export_zarr(h5_file, tmp_path / "first.zarr", chunk_rows=5)
    second = export_zarr(first, tmp_path / "second.zarr", chunk_rows=7)
    a, b = store_files(first), store_files(second)
    assert a.keys() == b.keys() and "zarr.json" in a and "u/c/0/0/0/0" in a
    assert [name for name in a if a[name] != b[name]] == []


def test_netcdf_and_zarr_exports_hold_the_same_values(h5_file: Path, tmp_path: Path) -> None:
    export_netcdf(h5_file, tmp_path / "a.nc")
    export_zarr(h5_file, tmp_path / "a.zarr")
    with xr.open_dataset(tmp_path / "a.nc") as nc, xr.open_zarr(tmp_path / "a.zarr") as zr:
        xr.testing.assert_identical(nc.load(), zr.load())


def test_offline_data_module_trains_from_a_zarr_store_as_from_its_file(tmp_path: Path) -> None:
    h5_file = write_file(tmp_path / "line.h5", [make_batch(10, 0, t=4, space=(16,), channels=0)])
    store = export_zarr(h5_file, tmp_path / "line.zarr")

    def fit(path: Path) -> dict[str, torch.Tensor]:
        L.seed_everything(3)
        module = OperatorModule(model="fno", model_args={"n_modes": 2, "hidden_channels": 4, "n_layers": 1},
                                optim=OptimConfig(lr=1e-2))
        data = OfflineDataModule(str(path), task="next_step", batch_size=4)
        trainer = L.Trainer(accelerator="cpu", max_steps=3, deterministic=True, logger=False, enable_progress_bar=False,
                            enable_model_summary=False, enable_checkpointing=False, limit_val_batches=0,
                            default_root_dir=tmp_path)
        initial = {k: v.clone() for k, v in module.state_dict().items()}
        trainer.fit(module, datamodule=data)
        assert trainer.global_step == 3
        trained = module.state_dict()
        assert any(not torch.equal(initial[k], trained[k]) for k in trained)
        return trained

    from_h5, from_zarr = fit(h5_file), fit(store)
    assert all(torch.equal(from_h5[k], from_zarr[k]) for k in from_h5)


def _read_in_child(file: TrajectoryFile, queue) -> None:
    queue.put(file.read([10, 2]).fields["velocity"].numpy())


def test_a_zarr_reader_reads_after_fork_and_pickles_by_path(h5_file: Path, tmp_path: Path) -> None:
    store = TrajectoryFile(export_zarr(h5_file, tmp_path / "a.zarr"))
    expected = store.read([10, 2]).fields["velocity"].numpy()  # opened and read in the parent first
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_read_in_child, args=(store, queue))
    child.start()
    got = queue.get(timeout=60)
    child.join(timeout=60)
    assert child.exitcode == 0
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(store)).read([10, 2]).fields["velocity"].numpy(), expected)


def test_nonfinite_values_are_refused_and_nothing_is_left(tmp_path: Path) -> None:
    batch = make_batch(9, 0, channels=0)
    batch.fields["u"][7, 2, 3, 1] = float("nan")
    src = write_file(tmp_path / "bad.h5", [batch], allow_nonfinite=True)
    with pytest.raises(ValueError, match=r"row 7 \(frame 2\)"):
        export_zarr(src, tmp_path / "bad.zarr", chunk_rows=4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.h5"]
    export_zarr(src, tmp_path / "kept.zarr", allow_nonfinite=True)
    values = TrajectoryFile(tmp_path / "kept.zarr").read().fields["u"]
    assert torch.isnan(values[7, 2, 3, 1]) and int(torch.isnan(values).sum()) == 1


def test_existing_destination_is_refused_and_an_error_leaves_nothing(h5_file: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    dest = export_zarr(h5_file, tmp_path / "a.zarr")
    before = store_files(dest)
    with pytest.raises(FileExistsError, match="already exists"):
        export_zarr(h5_file, dest)
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    with pytest.raises(IsADirectoryError, match="not a Zarr store"):
        export_zarr(h5_file, folder, overwrite=True)
    assert (folder / "keep.txt").read_text() == "mine"

    calls = []

    def failing(traj: Trajectories) -> xr.Dataset:
        calls.append(traj.num_samples)
        if len(calls) == 2:
            raise RuntimeError("disk on fire")
        return to_xarray(traj)

    to_xarray = export.to_xarray
    monkeypatch.setattr(export, "to_xarray", failing)
    with pytest.raises(RuntimeError, match="disk on fire"):
        export_zarr(h5_file, dest, overwrite=True, chunk_rows=5)
    assert store_files(dest) == before  # the old store is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.h5", "a.zarr", "notes"]
    monkeypatch.undo()
    export_zarr(h5_file, dest, overwrite=True, chunk_rows=5, compression=False)  # replaced: other bytes, same values
    assert store_files(dest) != before
    assert torch.equal(TrajectoryFile(dest).read().fields["u"], TrajectoryFile(h5_file).read().fields["u"])


def test_a_store_with_a_missing_chunk_is_refused(h5_file: Path, tmp_path: Path) -> None:
    dest = export_zarr(h5_file, tmp_path / "a.zarr")
    TrajectoryFile(dest)
    (dest / "u" / "c" / "0" / "0" / "0" / "0").unlink()
    with pytest.raises(ValueError, match="'u' declares shape .* but stores only 0"):
        TrajectoryFile(dest)


def test_cli_exports_zarr_and_refuses_an_unbuilt_format(h5_file: Path, tmp_path: Path, capsys) -> None:
    assert main(["export", str(h5_file), "--format", "zarr"]) == 0
    assert torch.equal(TrajectoryFile(tmp_path / "a.zarr").read().fields["u"], TrajectoryFile(h5_file).read().fields["u"])
    assert main(["export", str(h5_file), "--format", "zarr"]) == 2
    assert "already exists" in capsys.readouterr().err
    if "well" not in export.EXPORTERS:
        assert main(["export", str(h5_file), "--format", "well", "-o", str(tmp_path / "w.h5")]) == 2
        err = capsys.readouterr().err
        assert "--format well" in err and len(err.strip().splitlines()) == 1
        assert not (tmp_path / "w.h5").exists()


def test_the_folder_a_killed_export_left_is_swept_by_the_next_write(h5_file: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    from pdebench.atomic import _host_tag

    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    left = tmp_path / f".a.zarr.tmp-{int(done.stdout)}-0123abcd-{_host_tag()}"  # its writer is gone
    (left / "u" / "c").mkdir(parents=True)
    (left / "u" / "c" / "0").write_bytes(b"partial")
    working = tmp_path / f".b.zarr.tmp-{os.getpid()}-89abcdef-{_host_tag()}"  # a writer still at work (this one)
    working.mkdir()
    export_zarr(h5_file, tmp_path / "c.zarr")
    assert not left.exists() and working.exists()
