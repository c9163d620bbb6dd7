"""`pdebench generate` and `pdebench stream` with a particle problem (dam_break2d): the files hold the
solver's own frames, every row regenerates alone from its id, and a stream equals a generated file."""

from __future__ import annotations

import numpy as np
import pytest

from pdebench.cli import main
from pdebench.io.particle_file import ParticleDataset
from pdebench.problems import PROBLEMS
from pdebench.solvers import SOLVERS

TINY = ["--set", "resolution=8", "--set", "t_final=0.04", "--set", "n_out=2"]
TINY_ARGS = {"resolution": 8, "t_final": 0.04, "n_out": 2}


def _compare(a, b) -> None:
    assert a.sample_id == b.sample_id
    np.testing.assert_array_equal(a.time, b.time)
    for name in ("positions", "velocities", "density", "pressure"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-6, atol=1e-6, err_msg=name)
    np.testing.assert_array_equal(a.particle_type, b.particle_type)
    assert a.params == pytest.approx(b.params)


def test_generate_writes_solver_frames_and_rows_regenerate_alone(tmp_path) -> None:
    path = tmp_path / "dam.h5"
    assert main(["generate", "dam_break2d", "-n", "3", "--seed", "5", "-o", str(path), "--batch-size", "2", *TINY]) == 0
    problem = PROBLEMS.build("dam_break2d", **TINY_ARGS)
    solver = SOLVERS.build("sph")
    with ParticleDataset(path) as data:
        assert len(data) == 3
        assert data.sample_ids().tolist() == [[5, 0], [5, 1], [5, 2]]
        assert data.provenance["problem"] == "dam_break2d" and data.provenance["seed"] == 5
        assert data.radius == pytest.approx(2 * 1.3 / 8)
        # sample (5, 2) alone, straight from the solver
        alone, _ = solver.run_scene(problem, problem.scene(5, 2), (5, 2))
        _compare(data[2], alone)
        counts = {data[i].num_particles for i in range(3)}
        assert len(counts) > 1  # aspect ratios differ, so do the particle counts
        for i in range(3):
            t = data[i]
            assert t.positions.shape[0] == problem.n_out + 1
            # walls stay put, fluid stays inside the tank
            wall = t.particle_type == 1
            np.testing.assert_array_equal(t.positions[-1, wall], t.positions[0, wall])
            assert (t.positions[:, ~wall, 1] > 0).all()
        graph = data.to_pyg(0, 1)
        assert graph.pos.shape == (data[0].num_particles, 2) and graph.y is not None


def test_stream_spills_the_rows_generate_writes(tmp_path) -> None:
    generated, streamed = tmp_path / "g.h5", tmp_path / "s.h5"
    assert main(["generate", "dam_break2d", "-n", "4", "--seed", "2", "-o", str(generated), *TINY]) == 0
    assert main(["stream", "dam_break2d", "-n", "4", "--seed", "2", "-o", str(streamed), "--batch-size", "2",
                 "--workers", "2", *TINY]) == 0
    with ParticleDataset(generated) as g, ParticleDataset(streamed) as s:
        assert len(s) == 4 and s.provenance["complete"] and s.provenance["source"] == "stream"
        rows = {tuple(sid): k for k, sid in enumerate(g.sample_ids().tolist())}
        assert sorted(rows) == sorted(tuple(x) for x in s.sample_ids().tolist())
        for k, sid in enumerate(s.sample_ids().tolist()):
            _compare(s[k], g[rows[tuple(sid)]])


def test_online_training_refuses_particle_problems() -> None:
    from pdebench.data.online import OnlineDataModule

    with pytest.raises(ValueError, match="particle problem"):
        OnlineDataModule(problem="dam_break2d", problem_args=TINY_ARGS)
