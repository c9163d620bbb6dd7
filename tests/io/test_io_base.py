"""The one dataset-file base (pdebench.io.base): one layout tag for the three layouts, files written
with the attributes of before the tag was unified still read the same, one reader that is fork-safe
and pickles by path."""

from __future__ import annotations

import multiprocessing
import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from pdebench.core.particles import FLUID, WALL, ParticleTrajectory
from pdebench.core.trajectories import Trajectories
from pdebench.io.base import LAYOUT_ATTR, VERSION_ATTR
from pdebench.io.mesh_file import MeshDataset, MeshDataWriter
from pdebench.io.particle_file import ParticleDataset, ParticleDataWriter
from pdebench.io.trajectory_file import TrajectoryFile, TrajectoryWriter

IDS = np.array([[4, 0], [4, 1], [4, 2]])


def grid_file(path: Path) -> Path:
    rng = np.random.default_rng(0)
    batch = Trajectories(fields={"u": torch.from_numpy(rng.standard_normal((3, 2, 5)))},
                         coords={"t": np.array([0.0, 0.1]), "x": np.linspace(0, 1, 5, endpoint=False)},
                         params={"nu": 0.01}, sample_ids=IDS, provenance={"solver": "test", "nested": {"a": 1}})
    with TrajectoryWriter(path) as writer:
        writer.append(batch)
    return path


def mesh_file(path: Path) -> Path:
    nodes = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    cells = np.array([[0, 1, 2], [1, 3, 2]])
    with MeshDataWriter(path, nodes, cells, {"dirichlet": [0, 1]}, provenance={"solver": "test"}) as writer:
        writer.append({"u": np.arange(12.0).reshape(3, 4)}, IDS, params={"k": [1.0, 2.0, 3.0]})
    return path


def particle_file(path: Path) -> Path:
    rng = np.random.default_rng(1)
    particle_type = np.array([FLUID, FLUID, WALL])
    with ParticleDataWriter(path, lower=[0, 0], upper=[1, 1], radius=0.5, provenance={"solver": "test"}) as writer:
        writer.append([ParticleTrajectory(sample_id=tuple(int(v) for v in sid), time=np.array([0.0, 0.1]),
                                          positions=rng.uniform(0, 1, (2, 3, 2)), velocities=rng.normal(size=(2, 3, 2)),
                                          density=np.full((2, 3), 1000.0), pressure=np.zeros((2, 3)),
                                          particle_type=particle_type, mass=np.ones(3), params={"nu": 0.1}) for sid in IDS])
    return path


def as_before_the_tag(path: Path, kind: str) -> None:
    """Rewrite the root attributes as the writers of before the unified tag left them."""
    with h5py.File(path, "a") as f:
        if kind == "grid":  # the version only
            del f.attrs[LAYOUT_ATTR]
        elif kind == "mesh":
            del f.attrs[LAYOUT_ATTR], f.attrs[VERSION_ATTR]
            f.attrs["layout"] = "mesh_nodal"
            f.attrs["pdebench_mesh_format_version"] = np.int64(1)
        else:
            del f.attrs[VERSION_ATTR]
            f.attrs["pdebench_particles_format_version"] = np.int64(1)


def contents(reader) -> dict:
    """What a reader gives, layout by layout, as plain values."""
    out = {"n": len(reader), "ids": reader.sample_ids().tolist(), "provenance": reader.provenance}
    if isinstance(reader, TrajectoryFile):
        out.update(params=reader.params, u=reader.read().fields["u"].numpy().tolist(), layout=reader.layout)
    elif isinstance(reader, MeshDataset):
        out.update(params={k: v.tolist() for k, v in reader.params.items()}, u=reader.read_field("u").tolist())
    else:
        out.update(params={k: v.tolist() for k, v in reader.params.items()}, x=reader[1].positions.tolist())
    return out


LAYOUTS = {"grid": (grid_file, TrajectoryFile), "mesh": (mesh_file, MeshDataset), "particles": (particle_file, ParticleDataset)}


@pytest.mark.parametrize("kind", sorted(LAYOUTS))
def test_files_with_the_attributes_of_before_the_unified_tag_read_the_same(tmp_path: Path, kind: str) -> None:
    make, reader = LAYOUTS[kind]
    new, old = make(tmp_path / "new.h5"), make(tmp_path / "old.h5")
    with h5py.File(new) as f:
        assert f.attrs[LAYOUT_ATTR] == {"grid": "grid", "mesh": "mesh_nodal", "particles": "particles"}[kind]
        assert f.attrs[VERSION_ATTR] == 1
    as_before_the_tag(old, kind)
    with h5py.File(old) as f:
        assert VERSION_ATTR not in f.attrs or LAYOUT_ATTR not in f.attrs
    with reader(new) as a, reader(old) as b:
        assert contents(a) == contents(b)
        assert contents(a)["ids"] == IDS.tolist() and contents(a)["provenance"]["solver"] == "test"


def test_each_reader_refuses_the_other_layouts_old_and_new(tmp_path: Path) -> None:
    for kind, (make, _) in LAYOUTS.items():
        for age in ("new", "old"):
            path = make(tmp_path / f"{kind}-{age}.h5")
            if age == "old":
                as_before_the_tag(path, kind)
            for other, (_, reader) in LAYOUTS.items():
                if other != kind:
                    with pytest.raises(ValueError, match="not a|unknown layout"):
                        reader(path)


def test_newer_version_refused_naming_it(tmp_path: Path) -> None:
    for kind, (make, reader) in LAYOUTS.items():
        path = make(tmp_path / f"{kind}.h5")
        with h5py.File(path, "a") as f:
            f.attrs[VERSION_ATTR] = np.int64(9)
        with pytest.raises(ValueError, match="version 9; this reader knows up to 1"):
            reader(path)


def _child_reads(reader, queue) -> None:
    queue.put(contents(reader))


@pytest.mark.parametrize("kind", sorted(LAYOUTS))
def test_reader_opened_before_a_fork_reads_in_the_child_and_pickles_by_path(tmp_path: Path, kind: str) -> None:
    make, reader_class = LAYOUTS[kind]
    with reader_class(make(tmp_path / "a.h5")) as reader:
        expected = contents(reader)
        context = multiprocessing.get_context("fork")
        queue = context.Queue()
        child = context.Process(target=_child_reads, args=(reader, queue))
        child.start()
        got = queue.get(timeout=60)
        child.join(timeout=60)
        assert child.exitcode == 0 and got == expected
        assert contents(reader) == expected  # the parent's handle still works
        state = reader.__getstate__()
        assert state["path"] == reader.path and all(not isinstance(v, h5py.HLObject) for v in state.values())
        with pickle.loads(pickle.dumps(reader)) as copy:
            assert contents(copy) == expected
    assert contents(reader) == expected  # after close: opened again on use
