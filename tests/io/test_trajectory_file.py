"""Tests of the atomic HDF5 writer and the PDEBench-compatible reader."""

from __future__ import annotations

import hashlib
import os
import pickle
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from pdebench.io.trajectory_file import TrajectoryFile, TrajectoryWriter, read_trajectories
from pdebench.core.trajectories import Trajectories

REPO_ROOT = Path(__file__).resolve().parents[2]


def make_batch(
    n: int,
    t: int,
    space: tuple[int, ...],
    *,
    start: int = 0,
    fields: dict[str, int | None] | None = None,
    params: dict | None = None,
    seed: int = 7,
) -> Trajectories:
    """A float64 batch like a solver emits: fields name -> channels (None: scalar field)."""
    fields = {"u": None} if fields is None else fields
    generator = torch.Generator().manual_seed(seed * 1000 + start)
    values = {
        name: torch.randn(n, t, *space, *([channels] if channels else []), generator=generator, dtype=torch.float64)
        for name, channels in fields.items()
    }
    coords = {"t": np.linspace(0.0, 1.0, t)}
    coords.update({axis: np.linspace(0.0, 1.0, size, endpoint=False) for axis, size in zip("xyz", space)})
    return Trajectories(
        fields=values,
        coords=coords,
        params={"nu": 0.01} if params is None else params,
        sample_ids=np.stack([np.full(n, seed), np.arange(start, start + n)], axis=1),
        provenance={"solver": "test", "dt": 1e-3, "wall_time": 0.5},
    )


def write(path: Path, batches: list[Trajectories], **kwargs) -> None:
    with TrajectoryWriter(path, **kwargs) as writer:
        for batch in batches:
            writer.append(batch)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ---------------------------------------------------------------------------------------------
# round trips of our own files
# ---------------------------------------------------------------------------------------------


def test_round_trip_1d_single_field_multi_batch(tmp_path: Path) -> None:
    batches = [make_batch(4, 5, (16,), start=4 * i) for i in range(3)]
    path = tmp_path / "burgers.h5"
    write(path, batches)

    got = read_trajectories(path)
    expected = torch.cat([b.fields["u"] for b in batches]).to(torch.float32)
    assert list(got.fields) == ["u"]
    assert got.fields["u"].dtype == torch.float32
    assert torch.equal(got.fields["u"], expected)
    np.testing.assert_array_equal(got.sample_ids, np.concatenate([b.sample_ids for b in batches]))
    np.testing.assert_array_equal(got.coords["t"], batches[0].coords["t"])
    np.testing.assert_array_equal(got.coords["x"], batches[0].coords["x"])
    assert got.params == {"nu": 0.01}
    assert got.provenance["solver"] == "test"
    assert got.provenance["wall_time"] == pytest.approx(1.5)  # summed over batches
    with h5py.File(path, "r") as f:  # PDEBench layout: one field -> `tensor`
        assert f["tensor"].shape == (12, 5, 16)
        assert f["tensor"].dtype == np.float32
        assert f["tensor"].maxshape == (None, 5, 16)
        assert f["tensor"].compression == "gzip"
        assert f["sample_ids"].dtype == np.int64
        assert f.attrs["num_samples"] == 12
        assert f.attrs["pdebench_format_version"] == 1
        assert f.attrs["provenance.solver"] == "test"
        assert f.attrs["nu"] == 0.01
        assert list(f["x-coordinate"][()]) == list(batches[0].coords["x"])
    assert listing(tmp_path) == ["burgers.h5"]


def test_round_trip_2d_multi_field_with_channels(tmp_path: Path) -> None:
    fields = {"density": None, "pressure": None, "V": 2}
    batches = [make_batch(3, 4, (8, 6), start=3 * i, fields=fields) for i in range(2)]
    path = tmp_path / "cfd.h5"
    write(path, batches, compression="lzf", chunk_rows=2)

    with TrajectoryFile(path) as f:
        assert f.layout == "native"
        assert f.fields == {"density": (6, 4, 8, 6), "pressure": (6, 4, 8, 6), "V": (6, 4, 8, 6, 2)}
        got = f.read()
    for name in fields:
        expected = torch.cat([b.fields[name] for b in batches]).to(torch.float32)
        assert torch.equal(got.fields[name], expected), name
    assert got.spatial_axes == ["x", "y"]
    with h5py.File(path, "r") as h5:
        assert set(h5) >= {"density", "pressure", "V", "x-coordinate", "y-coordinate", "t-coordinate"}
        assert h5["V"].chunks[0] == 2
        assert h5["V"].compression == "lzf"


def test_darcy_pair_is_written_as_pdebench_darcy(tmp_path: Path) -> None:
    batch = make_batch(3, 1, (8, 8), fields={"nu": None, "tensor": None})
    path = tmp_path / "darcy.h5"
    write(path, [batch])
    with h5py.File(path, "r") as f:
        assert f["nu"].shape == (3, 8, 8)
        assert f["tensor"].shape == (3, 1, 8, 8)
    got = read_trajectories(path)
    assert got.fields["nu"].shape == (3, 1, 8, 8)
    assert torch.equal(got.fields["nu"], batch.fields["nu"].float())
    assert torch.equal(got.fields["tensor"], batch.fields["tensor"].float())


def test_lazy_reader_rows_fields_and_pickle(tmp_path: Path) -> None:
    batch = make_batch(10, 3, (5,), fields={"a": None, "b": None})
    path = tmp_path / "f.h5"
    write(path, [batch])
    with TrajectoryFile(path, fields=["b"]) as f:
        assert len(f) == 10
        assert list(f.fields) == ["b"]
        rows = [7, 2, 2, -1]
        sub = f[rows]
        assert torch.equal(sub.fields["b"], batch.fields["b"][[7, 2, 2, 9]].float())
        np.testing.assert_array_equal(sub.sample_ids, batch.sample_ids[[7, 2, 2, 9]])
        assert f[3].num_samples == 1
        assert torch.equal(f[1:8:3].fields["b"], batch.fields["b"][1:8:3].float())
        assert f[5:2].num_samples == 0
        clone = pickle.loads(pickle.dumps(f))
        assert torch.equal(clone[0:2].fields["b"], f[0:2].fields["b"])
        clone.close()
        with pytest.raises(IndexError):
            f[10]
        with pytest.raises(ValueError, match="no field"):
            f.read(fields=["c"])
    only_a = read_trajectories(path, rows=slice(0, 4), fields=["a"])
    assert list(only_a.fields) == ["a"] and only_a.num_samples == 4


# ---------------------------------------------------------------------------------------------
# PDEBench's published layouts, built as PDEBench writes them
# ---------------------------------------------------------------------------------------------


def _pdebench_1d(path: Path) -> np.ndarray:
    rng = np.random.default_rng(0)
    tensor = rng.standard_normal((4, 6, 16)).astype(np.float32)
    with h5py.File(path, "w") as f:
        f.create_dataset("tensor", data=tensor)
        f.create_dataset("x-coordinate", data=np.linspace(0, 1, 16, dtype=np.float32))
        f.create_dataset("t-coordinate", data=np.linspace(0, 2, 7, dtype=np.float32))  # T + 1 edges
        f.attrs["beta"] = 0.4
    return tensor


def test_read_pdebench_tensor_1d_with_time_edges(tmp_path: Path) -> None:
    path = tmp_path / "1D_Advection_Sols_beta0.4.hdf5"
    tensor = _pdebench_1d(path)
    before = digest(path)
    with TrajectoryFile(path) as f:
        assert f.layout == "tensor"
        assert f.fields == {"tensor": (4, 6, 16)}
        got = f[:]
    assert digest(path) == before  # read unchanged
    np.testing.assert_array_equal(got.fields["tensor"].numpy(), tensor)
    np.testing.assert_array_equal(got.coords["t"], np.linspace(0, 2, 7, dtype=np.float32)[:6])
    assert len(got.coords["x"]) == 16
    assert got.params == {"beta": pytest.approx(0.4)}
    np.testing.assert_array_equal(got.sample_ids, np.stack([np.full(4, -1), np.arange(4)], axis=1))


def test_read_pdebench_tensor_2d(tmp_path: Path) -> None:
    path = tmp_path / "2D_rdb_like.h5"
    tensor = np.random.default_rng(1).standard_normal((3, 5, 8, 6)).astype(np.float32)
    with h5py.File(path, "w") as f:
        f.create_dataset("tensor", data=tensor)
        f.create_dataset("x-coordinate", data=np.arange(8.0))
        f.create_dataset("y-coordinate", data=np.arange(6.0))
        f.create_dataset("t-coordinate", data=np.arange(5.0))
        f.attrs["Nu"] = 0.001
        f.attrs["rho"] = 1.0
    got = read_trajectories(path, rows=[2, 0])
    np.testing.assert_array_equal(got.fields["tensor"].numpy(), tensor[[2, 0]])
    assert got.spatial_axes == ["x", "y"]
    np.testing.assert_array_equal(got.coords["t"], np.arange(5.0))
    assert got.params == {"Nu": 0.001, "rho": 1.0}
    np.testing.assert_array_equal(got.sample_ids[:, 1], [2, 0])


def test_read_pdebench_darcy(tmp_path: Path) -> None:
    path = tmp_path / "2D_DarcyFlow_beta1.0_Train.hdf5"
    rng = np.random.default_rng(2)
    nu = rng.standard_normal((3, 8, 8)).astype(np.float32)
    out = rng.standard_normal((3, 1, 8, 8)).astype(np.float32)
    with h5py.File(path, "w") as f:
        f.create_dataset("nu", data=nu)
        f.create_dataset("tensor", data=out)
        f.create_dataset("x-coordinate", data=np.linspace(0, 1, 8))
        f.create_dataset("y-coordinate", data=np.linspace(0, 1, 8))
        f.attrs["beta"] = 1.0
    before = digest(path)
    with TrajectoryFile(path) as f:
        assert f.layout == "darcy"
        assert f.fields == {"nu": (3, 1, 8, 8), "tensor": (3, 1, 8, 8)}
        got = f[1:]
    assert digest(path) == before
    np.testing.assert_array_equal(got.fields["nu"].numpy(), nu[1:, None])
    np.testing.assert_array_equal(got.fields["tensor"].numpy(), out[1:])
    assert "t" not in got.coords and got.params == {"beta": 1.0}


def test_read_pdebench_cfd_multi_field(tmp_path: Path) -> None:
    path = tmp_path / "2D_CFD_Rand_M0.1.hdf5"
    rng = np.random.default_rng(3)
    data = {name: rng.standard_normal((2, 4, 8, 8)).astype(np.float32) for name in ("Vy", "density", "Vx", "pressure")}
    with h5py.File(path, "w") as f:
        for name, value in data.items():
            f.create_dataset(name, data=value)
        f.create_dataset("x-coordinate", data=np.linspace(0, 1, 8))
        f.create_dataset("y-coordinate", data=np.linspace(0, 1, 8))
        f.create_dataset("t-coordinate", data=np.linspace(0, 1, 5))  # T + 1
        f.attrs["M"] = 0.1
        f.attrs["eta"] = 1e-8
    before = digest(path)
    with TrajectoryFile(path) as f:
        assert f.layout == "multi_field"
        assert list(f.fields) == ["density", "pressure", "Vx", "Vy"]
        got = f.read()
    assert digest(path) == before
    for name, value in data.items():
        np.testing.assert_array_equal(got.fields[name].numpy(), value)
    assert len(got.coords["t"]) == 4
    assert got.params == {"M": 0.1, "eta": 1e-8}


def test_read_pdebench_seed_groups(tmp_path: Path) -> None:
    path = tmp_path / "2D_diff-react_NA_NA.h5"
    rng = np.random.default_rng(4)
    data = {seed: rng.standard_normal((5, 8, 6, 2)).astype(np.float32) for seed in (2, 0, 10, 1)}
    with h5py.File(path, "w") as f:
        for seed, value in data.items():
            group = f.create_group(f"{seed:04d}")
            group.create_dataset("data", data=value)
            group.create_dataset("grid/x", data=np.linspace(-1, 1, 8))
            group.create_dataset("grid/y", data=np.linspace(-1, 1, 6))
            group.create_dataset("grid/t", data=np.linspace(0, 5, 5))
    before = digest(path)
    with TrajectoryFile(path) as f:
        assert f.layout == "seed_groups"
        assert f.fields == {"data": (4, 5, 8, 6, 2)}
        got = f.read()
        picked = f[[3, 1]]
    assert digest(path) == before
    expected = np.stack([data[seed] for seed in sorted(data)])
    np.testing.assert_array_equal(got.fields["data"].numpy(), expected)
    np.testing.assert_array_equal(picked.fields["data"].numpy(), expected[[3, 1]])
    assert got.spatial_axes == ["x", "y"]
    np.testing.assert_array_equal(got.coords["t"], np.linspace(0, 5, 5))
    np.testing.assert_array_equal(got.sample_ids[:, 0], -1)


def test_unknown_layout_lists_contents(tmp_path: Path) -> None:
    path = tmp_path / "odd.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("mystery", data=np.zeros(3))
    with pytest.raises(ValueError, match=r"unknown layout.*mystery.*darcy"):
        read_trajectories(path)


def test_missing_and_non_hdf5_files(tmp_path: Path) -> None:
    missing = tmp_path / "nope.h5"
    with pytest.raises(FileNotFoundError, match="nope.h5"):
        read_trajectories(missing)
    text = tmp_path / "notes.h5"
    text.write_text("not hdf5")
    with pytest.raises(ValueError, match="not an HDF5 file"):
        TrajectoryFile(text)


# ---------------------------------------------------------------------------------------------
# atomicity and early checks
# ---------------------------------------------------------------------------------------------


def test_overwrite_refused_at_construction(tmp_path: Path) -> None:
    path = tmp_path / "data.h5"
    write(path, [make_batch(2, 3, (4,))])
    before = digest(path)
    with pytest.raises(FileExistsError, match="data.h5"):
        TrajectoryWriter(path)
    assert digest(path) == before
    assert listing(tmp_path) == ["data.h5"]

    replacement = make_batch(5, 3, (4,), seed=9)
    write(path, [replacement], overwrite=True)
    assert read_trajectories(path).num_samples == 5
    assert listing(tmp_path) == ["data.h5"]


def test_destination_folder_checked_at_construction(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(FileNotFoundError, match="missing"):
        TrajectoryWriter(tmp_path / "missing" / "x.h5")
    monkeypatch.setattr(os, "access", lambda *args, **kwargs: False)
    with pytest.raises(PermissionError, match="x.h5"):
        TrajectoryWriter(tmp_path / "x.h5")
    assert listing(tmp_path) == []


def test_exception_inside_with_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "out.h5"
    with pytest.raises(RuntimeError, match="solver blew up"):
        with TrajectoryWriter(path) as writer:
            writer.append(make_batch(2, 3, (4,)))
            assert writer.temp_path.exists()
            raise RuntimeError("solver blew up")
    assert listing(tmp_path) == []


def test_exception_keeps_existing_file_when_overwriting(tmp_path: Path) -> None:
    path = tmp_path / "out.h5"
    write(path, [make_batch(2, 3, (4,))])
    before = digest(path)
    with pytest.raises(KeyboardInterrupt):
        with TrajectoryWriter(path, overwrite=True) as writer:
            writer.append(make_batch(3, 3, (4,), seed=1))
            raise KeyboardInterrupt
    assert digest(path) == before
    assert listing(tmp_path) == ["out.h5"]


def test_nothing_appended_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no trajectories"):
        with TrajectoryWriter(tmp_path / "empty.h5"):
            pass
    assert listing(tmp_path) == []


_KILL_SCRIPT = textwrap.dedent(
    """
    import sys, time
    import numpy as np, torch
    from pdebench.io.trajectory_file import TrajectoryWriter
    from pdebench.core.trajectories import Trajectories

    with TrajectoryWriter(sys.argv[1]) as writer:
        for i in range(1000):
            batch = Trajectories(
                fields={"u": torch.randn(4, 8, 32)},
                coords={"t": np.arange(8.0), "x": np.arange(32.0)},
                sample_ids=np.stack([np.zeros(4), np.arange(4 * i, 4 * i + 4)], axis=1),
            )
            writer.append(batch)
            print("appended", i, flush=True)
            time.sleep(0.2)
    """
)


def test_sigkill_mid_write_leaves_no_final_file(tmp_path: Path) -> None:
    script = tmp_path / "writer_script.py"
    script.write_text(_KILL_SCRIPT)
    out = tmp_path / "out" / "killed.h5"
    out.parent.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("appended"), proc.stderr.read()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()
    names = listing(out.parent)
    assert all(name.startswith(".killed.h5.tmp-") for name in names)  # only the abandoned temp file
    assert names, "the writer should have been writing to a temporary file"


# ---------------------------------------------------------------------------------------------
# validation of batches
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("second", "match"),
    [
        (make_batch(2, 3, (4,), fields={"v": None}), "fields"),
        (make_batch(2, 3, (5,)), "shape"),
        (make_batch(2, 4, (4,)), "shape"),
        (make_batch(2, 3, (4,), params={"nu": 0.02}), "param 'nu'"),
        (make_batch(2, 3, (4,), params={"nu": 0.01, "beta": 1.0}), "params"),
    ],
)
def test_mismatched_batch_raises(tmp_path: Path, second: Trajectories, match: str) -> None:
    path = tmp_path / "m.h5"
    with pytest.raises(ValueError, match=match):
        with TrajectoryWriter(path) as writer:
            writer.append(make_batch(2, 3, (4,)))
            writer.append(second)
    assert listing(tmp_path) == []


def test_mismatched_coords_raise_and_writer_stays_usable(tmp_path: Path) -> None:
    path = tmp_path / "c.h5"
    first = make_batch(2, 3, (4,))
    shifted = make_batch(2, 3, (4,), start=2)
    shifted.coords["x"] = shifted.coords["x"] + 0.5
    with TrajectoryWriter(path) as writer:
        writer.append(first)
        with pytest.raises(ValueError, match="coordinate 'x'"):
            writer.append(shifted)
        writer.append(make_batch(2, 3, (4,), start=2))
    assert read_trajectories(path).num_samples == 4


def test_non_finite_batch_refused(tmp_path: Path) -> None:
    batch = make_batch(3, 3, (4,))
    batch.fields["u"][1, 2, 0] = float("nan")
    with pytest.raises(ValueError, match=r"non-finite.*\(7, 1\)"):
        with TrajectoryWriter(tmp_path / "nan.h5") as writer:
            writer.append(batch)
    write(tmp_path / "nan_ok.h5", [batch], allow_nonfinite=True)
    assert torch.isnan(read_trajectories(tmp_path / "nan_ok.h5").fields["u"][1, 2, 0])


def test_field_shape_must_match_coords(tmp_path: Path) -> None:
    batch = make_batch(2, 3, (4,))
    batch.coords["x"] = np.arange(5.0)
    with pytest.raises(ValueError, match="expected"):
        with TrajectoryWriter(tmp_path / "s.h5") as writer:
            writer.append(batch)
    assert listing(tmp_path) == []


def test_params_and_provenance_types_round_trip(tmp_path: Path) -> None:
    batch = make_batch(2, 3, (4,), params={"nu": 0.1, "n_modes": 12, "scheme": "etdrk4", "stiff": True})
    batch.provenance.update({"grid": [64, 64], "note": None})
    path = tmp_path / "p.h5"
    write(path, [batch], provenance={"git": "abc123"})
    got = read_trajectories(path)
    assert got.params == {"nu": 0.1, "n_modes": 12, "scheme": "etdrk4", "stiff": True}
    assert got.provenance == {
        "solver": "test", "dt": 1e-3, "wall_time": 0.5, "grid": [64, 64], "note": None, "git": "abc123",
    }
