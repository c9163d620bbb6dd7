"""Tests of the particle trajectory file (atomic writer, lazy reader) and its radius graphs."""

from __future__ import annotations

import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch_geometric.data import Batch

from pdebench.core.particles import FLUID, WALL, ParticleTrajectory
from pdebench.core.graphs import frame_graph
from pdebench.io.particle_file import ParticleDataset, ParticleDataWriter

LOWER = np.array([0.0, 0.0])
UPPER = np.array([1.0, 0.5])
RADIUS = 0.12


def make_trajectory(
    seed: int,
    index: int,
    *,
    n: int,
    t: int,
    lower: np.ndarray = LOWER,
    upper: np.ndarray = UPPER,
    params: dict[str, float] | None = None,
) -> ParticleTrajectory:
    """Random particles uniformly inside the box, random velocities, densities near 1000 kg/m^3,
    irregular increasing times; the last quarter of the particles are walls."""
    rng = np.random.default_rng(1000 * seed + index)
    d = len(lower)
    particle_type = np.full(n, FLUID, dtype=np.int64)
    particle_type[3 * n // 4 :] = WALL
    return ParticleTrajectory(
        sample_id=(seed, index),
        time=np.cumsum(rng.uniform(0.5e-3, 1.5e-3, size=t)),
        positions=rng.uniform(lower, upper, size=(t, n, d)),
        velocities=rng.normal(size=(t, n, d)),
        density=1000.0 + rng.normal(scale=5.0, size=(t, n)),
        pressure=rng.normal(scale=1e3, size=(t, n)),
        particle_type=particle_type,
        mass=rng.uniform(0.9, 1.1, size=n),
        params={"aspect_ratio": 1.0 + index, "nu": 1e-3 * (seed + 1)} if params is None else params,
    )


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def writer(path: Path, **kwargs) -> ParticleDataWriter:
    options = {"lower": LOWER, "upper": UPPER, "radius": RADIUS}
    options.update(kwargs)
    return ParticleDataWriter(path, **options)


def brute_force_edges(pos: np.ndarray, radius: float, length: np.ndarray, periodic: np.ndarray) -> dict:
    """``{(i, j): x_i - x_j}`` for every ordered pair closer than ``radius`` (minimum image), in float64."""
    disp = pos[:, None, :] - pos[None, :, :]
    disp = np.where(periodic, disp - length * np.round(disp / length), disp)
    close = (np.sqrt((disp**2).sum(-1)) < radius) & ~np.eye(len(pos), dtype=bool)
    return {(int(i), int(j)): disp[i, j] for i, j in zip(*np.nonzero(close), strict=True)}


# --------------------------------------------------------------------------------------------------
# Record
# --------------------------------------------------------------------------------------------------


def test_trajectory_rejects_bad_shapes_naming_field_found_and_expected() -> None:
    good = make_trajectory(0, 0, n=5, t=3)
    with pytest.raises(ValueError, match=r"density has shape \(3, 4\); expected \(3, 5\)"):
        ParticleTrajectory(**{**vars(good), "density": good.density[:, :4]})
    with pytest.raises(ValueError, match=r"mass has shape \(5, 1\); expected \(5,\)"):
        ParticleTrajectory(**{**vars(good), "mass": good.mass[:, None]})
    with pytest.raises(ValueError, match="d = 4"):
        ParticleTrajectory(**{**vars(good), "positions": np.zeros((3, 5, 4)), "velocities": np.zeros((3, 5, 4))})
    with pytest.raises(ValueError, match="strictly increasing"):
        ParticleTrajectory(**{**vars(good), "time": np.array([0.0, 1.0, 1.0])})
    with pytest.raises(ValueError, match="particle_type"):
        ParticleTrajectory(**{**vars(good), "particle_type": np.array([0, 1, 2, 0, 0])})


# --------------------------------------------------------------------------------------------------
# Writer and reader
# --------------------------------------------------------------------------------------------------


def test_round_trip_ragged_trajectories(tmp_path: Path) -> None:
    path = tmp_path / "particles.h5"
    trajectories = [
        make_trajectory(0, 0, n=40, t=5),
        make_trajectory(0, 1, n=25, t=3),
        make_trajectory(1, 0, n=33, t=7),
    ]
    with writer(path, provenance={"solver": "WCSPH", "kernel": {"name": "wendland", "h": 0.06}}) as w:
        w.append(trajectories[:2])
        w.append(trajectories[2:])
        w.update_provenance({"wall_time": 1.5})
        assert not path.exists()
    assert leftovers(tmp_path) == ["particles.h5"]

    with h5py.File(path, "r") as f:  # the documented layout
        assert f.attrs["pdebench_layout"] == "particles"
        assert sorted(f["trajectories"]) == ["000000", "000001", "000002"]
        group = f["trajectories/000001"]
        assert group["positions"].shape == (3, 25, 2) and group["positions"].dtype == np.float32
        assert group["time"].dtype == np.float64 and group["mass"].dtype == np.float64
        assert group["particle_type"].dtype == np.int8 and group["pressure"].shape == (3, 25)
        assert (group.attrs["seed"], group.attrs["index"], group.attrs["params.aspect_ratio"]) == (0, 1, 2.0)
        assert f["sample_ids"].dtype == np.int64 and f["sample_ids"].maxshape == (None, 2)

    data = ParticleDataset(path)
    with data:
        assert len(data) == 3 and data.dim == 2 and data.radius == RADIUS
        np.testing.assert_array_equal(data.lower, LOWER)
        np.testing.assert_array_equal(data.upper, UPPER)
        np.testing.assert_array_equal(data.periodic, [False, False])
        np.testing.assert_array_equal(data.sample_ids(), [[0, 0], [0, 1], [1, 0]])
        np.testing.assert_array_equal(data.params["aspect_ratio"], [1.0, 2.0, 1.0])
        np.testing.assert_array_equal(data.params["nu"], [1e-3, 1e-3, 2e-3])
        assert data.provenance == {"solver": "WCSPH", "kernel": {"name": "wendland", "h": 0.06}, "wall_time": 1.5}
        for k, original in enumerate(trajectories):
            read = data[k]
            assert read.sample_id == original.sample_id and read.params == original.params
            assert (read.num_particles, read.num_frames) == (original.num_particles, original.num_frames)
            np.testing.assert_array_equal(read.time, original.time)  # float64, exact
            np.testing.assert_array_equal(read.mass, original.mass)
            np.testing.assert_array_equal(read.particle_type, original.particle_type)
            for name in ("positions", "velocities", "density", "pressure"):
                assert getattr(read, name).dtype == np.float32
                np.testing.assert_array_equal(getattr(read, name), getattr(original, name).astype(np.float32))
        assert data[-1].sample_id == (1, 0)
        with pytest.raises(IndexError, match=r"-3 \.\. 2"):
            data[3]
        clone = pickle.loads(pickle.dumps(data))
        np.testing.assert_array_equal(clone[1].positions, data[1].positions)
        clone.close()


def test_exception_inside_with_leaves_no_file(tmp_path: Path) -> None:
    path = tmp_path / "out.h5"
    with pytest.raises(RuntimeError, match="solver failed"):
        with writer(path) as w:
            w.append([make_trajectory(0, 0, n=10, t=2)])
            assert w.temp_path.exists() and not path.exists()
            raise RuntimeError("solver failed")
    assert leftovers(tmp_path) == []


def test_existing_destination_untouched(tmp_path: Path) -> None:
    path = tmp_path / "out.h5"
    path.write_bytes(b"old")
    with pytest.raises(FileExistsError, match="out.h5"):
        writer(path)  # raised before anything is created
    assert leftovers(tmp_path) == ["out.h5"] and path.read_bytes() == b"old"
    with pytest.raises(RuntimeError):
        with writer(path, overwrite=True) as w:
            w.append([make_trajectory(0, 0, n=10, t=2)])
            raise RuntimeError("killed")
    assert leftovers(tmp_path) == ["out.h5"] and path.read_bytes() == b"old"
    with writer(path, overwrite=True) as w:
        w.append([make_trajectory(0, 0, n=10, t=2)])
    assert len(ParticleDataset(path)) == 1


def test_close_without_trajectories_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no trajectories"):
        with writer(tmp_path / "out.h5"):
            pass
    assert leftovers(tmp_path) == []


def test_nan_pressure_refused_and_nothing_from_that_call_written(tmp_path: Path) -> None:
    path = tmp_path / "out.h5"
    good, bad = make_trajectory(3, 0, n=12, t=4), make_trajectory(3, 1, n=12, t=4)
    bad.pressure[2, 5] = np.nan
    with writer(path) as w:
        with pytest.raises(ValueError, match=r"sample \(3, 1\).*pressure.*\(2, 5\)"):
            w.append([good, bad])
        assert w.num_samples == 0
        w.append([good])  # still usable, and (3, 0) was not recorded as written
        bad.pressure[2, 5] = 0.0
        w.append([bad])
    with ParticleDataset(path) as data:
        np.testing.assert_array_equal(data.sample_ids(), [[3, 0], [3, 1]])
        with h5py.File(path, "r") as f:
            assert sorted(f["trajectories"]) == ["000000", "000001"]


def test_float32_overflow_refused(tmp_path: Path) -> None:
    traj = make_trajectory(0, 0, n=6, t=2)
    traj.velocities[1, 3, 0] = 1e39  # finite in float64, inf in float32
    with writer(tmp_path / "out.h5") as w:
        with pytest.raises(ValueError, match=r"sample \(0, 0\).*velocities.*float32"):
            w.append([traj])
        w.abort()


def test_particle_outside_box_refused_naming_frame_and_particle(tmp_path: Path) -> None:
    traj = make_trajectory(2, 7, n=15, t=4)
    traj.positions[3, 11, 1] = UPPER[1] + 0.01
    with writer(tmp_path / "out.h5") as w:
        with pytest.raises(ValueError, match=r"sample \(2, 7\): particle 11 at frame 3 .*outside the box"):
            w.append([traj])
        w.abort()


def test_periodic_axis_accepts_unwrapped_positions(tmp_path: Path) -> None:
    path = tmp_path / "out.h5"
    traj = make_trajectory(0, 0, n=15, t=3)
    traj.positions[1, 4, 0] = UPPER[0] + 0.3  # outside on the periodic x axis: stored as given
    with writer(path, periodic=[True, False]) as w:
        w.append([traj])
    with ParticleDataset(path) as data:
        assert data[0].positions[1, 4, 0] == np.float32(UPPER[0] + 0.3)
        graph = data.to_pyg(0, 1)
        assert graph.pos[4, 0].item() == pytest.approx(0.3, abs=1e-6)  # wrapped into the box


def test_position_within_tolerance_stays_inside_after_float32_cast(tmp_path: Path) -> None:
    # float32(upper) == 1, but upper + 2e-10 (inside the 1e-9 L tolerance) rounds up to 1 + 2^-23.
    upper = np.array([1.0 + 2.0**-24 - 1e-10, 1.0])
    traj = make_trajectory(0, 0, n=10, t=2, upper=upper)
    traj.positions[:, 0, 0] = upper[0] + 2e-10
    assert np.float32(traj.positions[0, 0, 0]) > np.float32(upper[0])
    path = tmp_path / "out.h5"
    with writer(path, upper=upper, radius=0.3) as w:
        w.append([traj])
    with ParticleDataset(path) as data:
        assert data[0].positions[0, 0, 0] <= np.float32(upper[0])
        assert data.to_pyg(0, 0).num_nodes == 10  # the neighbour search accepts the stored frame


def test_duplicate_sample_id_refused(tmp_path: Path) -> None:
    with writer(tmp_path / "out.h5") as w:
        w.append([make_trajectory(0, 0, n=8, t=2)])
        with pytest.raises(ValueError, match=r"\(0, 0\) is already in"):
            w.append([make_trajectory(0, 1, n=8, t=2), make_trajectory(0, 0, n=9, t=2)])
        with pytest.raises(ValueError, match=r"\(5, 5\) appears twice"):
            w.append([make_trajectory(5, 5, n=8, t=2), make_trajectory(5, 5, n=9, t=2)])
        assert w.num_samples == 1
        w.abort()


def test_mismatched_dimension_or_param_names_refused(tmp_path: Path) -> None:
    with writer(tmp_path / "out.h5") as w:
        with pytest.raises(ValueError, match=r"sample \(1, 0\).*d = 3.*dim 2"):
            w.append([make_trajectory(1, 0, n=8, t=2, lower=np.zeros(3), upper=np.ones(3))])
        with pytest.raises(ValueError, match=r"sample \(0, 1\).*missing \['nu'\], extra \['viscosity'\]"):
            other = make_trajectory(0, 1, n=8, t=2, params={"aspect_ratio": 1.0, "viscosity": 0.1})
            w.append([make_trajectory(0, 0, n=8, t=2), other])
        w.append([make_trajectory(0, 0, n=8, t=2)])
        with pytest.raises(ValueError, match=r"sample \(0, 2\).*param names"):
            w.append([make_trajectory(0, 2, n=8, t=2, params={"aspect_ratio": 1.0})])
        w.abort()


def test_not_a_particle_file(tmp_path: Path) -> None:
    path = tmp_path / "plain.h5"
    with h5py.File(path, "w") as f:
        f["tensor"] = np.zeros((2, 3))
    with pytest.raises(ValueError, match="not a particle data file.*pdebench_layout"):
        ParticleDataset(path)
    with pytest.raises(FileNotFoundError):
        ParticleDataset(tmp_path / "missing.h5")
    (tmp_path / "text.h5").write_text("hello")
    with pytest.raises(ValueError, match="not an HDF5 file"):
        ParticleDataset(tmp_path / "text.h5")


# --------------------------------------------------------------------------------------------------
# Graphs
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("periodic", "lower", "upper"),
    [
        ((False, False), (0.0, 0.0), (1.0, 0.5)),
        ((True, True), (0.0, 0.0), (1.0, 0.5)),
        ((False, True, False), (-0.2, 0.0, 0.0), (0.3, 0.3, 0.4)),
    ],
)
def test_to_pyg_edges_match_brute_force_radius_graph(tmp_path: Path, periodic, lower, upper) -> None:
    lower, upper, periodic = np.array(lower), np.array(upper), np.array(periodic)
    traj = make_trajectory(4, 2, n=120, t=4, lower=lower, upper=upper)
    path = tmp_path / "out.h5"
    with writer(path, lower=lower, upper=upper, periodic=periodic) as w:
        w.append([traj])
    with ParticleDataset(path) as data:
        graph = data.to_pyg(0, 2)
        pos = data[0].positions[2].astype(np.float64)
    expected = brute_force_edges(pos, RADIUS, upper - lower, periodic)
    assert len(expected) > 100
    if periodic.any():  # the case exercises the minimum image
        assert any(np.abs(pos[i] - pos[j]).max() > RADIUS for i, j in expected)
    source, target = graph.edge_index.numpy()
    assert set(zip(target.tolist(), source.tolist(), strict=True)) == set(expected)
    assert graph.edge_index.shape[1] == len(expected)  # no duplicates
    want = np.array([expected[(i, j)] for i, j in zip(target.tolist(), source.tolist(), strict=True)])
    np.testing.assert_allclose(graph.edge_attr.numpy() * RADIUS, want, atol=1e-6)
    assert graph.edge_attr.dtype == torch.float32 and graph.edge_attr.shape[1] == len(lower)
    assert (torch.linalg.norm(graph.edge_attr.double(), dim=1) < 1.0).all()


def test_graph_features_target_and_time(tmp_path: Path) -> None:
    traj = make_trajectory(0, 0, n=30, t=5)
    traj.density[:, traj.particle_type == WALL] += 200.0  # rho_ref must ignore the walls
    path = tmp_path / "out.h5"
    with writer(path) as w:
        w.append([traj])
    with ParticleDataset(path) as data:
        stored = data[0]
        graph = data.to_pyg(0, 3, history=3)
        last = data.to_pyg(0, -1, history=2)
        with pytest.raises(ValueError, match="history=3 needs frame >= 2"):
            data.to_pyg(0, 1, history=3)
    same = frame_graph(stored, 3, radius=RADIUS, lower=LOWER, upper=UPPER, history=3)
    for key in ("x", "pos", "edge_index", "edge_attr", "y", "particle_type", "time"):
        torch.testing.assert_close(graph[key], same[key], rtol=0, atol=0)

    n, d = 30, 2
    x = graph.x.numpy()
    assert graph.x.shape == (n, 3 * d + 3) and graph.x.dtype == torch.float32
    for k, f in enumerate((1, 2, 3)):  # oldest first
        np.testing.assert_array_equal(x[:, k * d : (k + 1) * d], stored.velocities[f])
    rho_ref = np.median(stored.density[0][stored.particle_type == FLUID])
    np.testing.assert_allclose(x[:, 3 * d], stored.density[3] / rho_ref, rtol=1e-6)
    np.testing.assert_array_equal(x[:, 3 * d + 1 :], np.eye(2)[stored.particle_type])
    np.testing.assert_array_equal(graph.pos.numpy(), stored.positions[3])
    assert graph.particle_type.dtype == torch.long

    v = stored.velocities.astype(np.float64)
    accel = (v[4] - v[3]) / (stored.time[4] - stored.time[3])
    np.testing.assert_allclose(graph.y.numpy(), accel, rtol=1e-5)
    assert graph.y.dtype == torch.float32 and graph.y.shape == (n, d)
    assert graph.time.item() == stored.time[3]
    assert "y" not in last and last.time.item() == stored.time[4]
    batch = Batch.from_data_list([graph, same])
    assert batch.num_nodes == 2 * n and batch.time.shape == (2,)


def test_frame_graph_refuses_particle_outside_box() -> None:
    traj = make_trajectory(0, 0, n=10, t=2)
    traj.positions[0, 6] = [2.0, 0.1]
    with pytest.raises(ValueError, match="particle 6"):
        frame_graph(traj, 0, radius=RADIUS, lower=LOWER, upper=UPPER)
