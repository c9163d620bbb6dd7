"""MP-PDE on graphs: multi-feature MPPDE, the darcy2d_mesh problem, GraphDataModule, GraphOperatorModule and
the CLI end to end on tiny mesh (darcy2d_mesh) and particle (dam_break2d) files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch, Data

from pdebench.problems import PROBLEMS  # noqa: F401  (first: registers the problems and solvers)
from pdebench.data.generate import generate_dataset
from pdebench.training.predictor import Predictor
from pdebench.data.graph_datamodule import GraphDataModule
from pdebench.io.mesh_file import MeshDataset
from pdebench.io.particle_file import ParticleDataset
from pdebench.models.mppde import MPPDE
from pdebench.problems.darcy_mesh import DarcyMesh, neumann_gaussian_field_at, unit_square_mesh
from pdebench.solvers.fem.darcy_mesh_solver import DarcyMeshSolver
from tests.training.helpers import train_cli

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("graph_data")
    paths = {"mesh": folder / "darcy2d_mesh.h5", "particles": folder / "dam_break2d.h5"}
    generate_dataset(PROBLEMS.build("darcy2d_mesh", h=0.1), paths["mesh"], num_samples=12, seed=3, batch_size=12)
    dam = PROBLEMS.build("dam_break2d", resolution=8, n_out=12, t_final=0.12, tank_length=2.0)
    generate_dataset(dam, paths["particles"], num_samples=4, seed=1, batch_size=4)
    return paths


def mesh_graphs(path: Path, rows: list[int]) -> list[Data]:
    data = GraphDataModule(str(path), record="mesh", batch_size=4)
    return data._mesh_graphs(np.asarray(rows))


# ----------------------------------------------------------------------------------------- MPPDE options


def test_mppde_multi_feature_options_and_errors():
    model = MPPDE(hidden=16, layers=2, dim=2, in_features=3, out_features=2, bundling=False, in_channels=3, out_channels=2)
    pos = torch.rand(10, 2)
    data = Data(x=torch.randn(10, 3), pos=pos, edge_index=torch.tensor([[0, 1, 2, 3], [1, 2, 3, 0]]))
    assert model(data).shape == (10, 2)  # no data.dt, no data.t needed
    assert model.init_args["in_features"] == 3 and model.init_args["bundling"] is False
    with pytest.raises(ValueError, match="bundling"):
        MPPDE(in_features=3, out_features=2)
    with pytest.raises(ValueError, match="in_channels .* must equal in_features"):
        MPPDE(hidden=16, in_features=3, out_features=2, bundling=False, in_channels=4)
    # scalar history without bundling: the raw decoder output, (N, K)
    raw = MPPDE(time_window=4, hidden=16, layers=1, bundling=False)
    assert raw(Data(x=torch.randn(10, 4), pos=torch.rand(10, 1), edge_index=data.edge_index)).shape == (10, 4)
    assert "in_features" not in MPPDE(time_window=4, hidden=16).init_args  # the default API is unchanged


def test_mppde_on_a_mesh_graph_is_node_permutation_equivariant(tiny_files):
    torch.manual_seed(0)
    graph = mesh_graphs(tiny_files["mesh"], [0])[0]
    model = MPPDE(hidden=32, layers=3, dim=2, in_features=2, out_features=1, bundling=False).eval()
    n = graph.num_nodes
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(1))
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(n)  # new index of old node k
    permuted = Data(x=graph.x[perm], pos=graph.pos[perm], edge_index=inverse[graph.edge_index], edge_attr=graph.edge_attr)
    with torch.no_grad():
        out, out_perm = model(graph), model(permuted)
    torch.testing.assert_close(out_perm, out[perm], atol=1e-5, rtol=0)
    assert out.std() > 1e-3  # not a constant map


def test_mppde_overfits_a_tiny_mesh_batch(tiny_files):
    torch.manual_seed(0)
    batch = Batch.from_data_list(mesh_graphs(tiny_files["mesh"], [0, 1]))
    x_mean, x_std = batch.x.mean(0), batch.x.std(0)
    batch.x = (batch.x - x_mean) / x_std
    target = (batch.y - batch.y.mean()) / batch.y.std()
    model = MPPDE(hidden=32, layers=3, dim=2, in_features=2, out_features=1, bundling=False)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for step in range(400):
        loss = torch.nn.functional.mse_loss(model(batch), target)
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first / 100, (first, loss.item())


# ----------------------------------------------------------------------------------------- darcy2d_mesh


class _PoissonSquare:
    """The registered Poisson problem moved onto the darcy2d_mesh square mesh (for the cross-check)."""

    @staticmethod
    def build(h: float):
        from dataclasses import dataclass

        from pdebench.problems.mesh_problems import Poisson

        @dataclass(frozen=True, kw_only=True)
        class PoissonSquare(Poisson):
            domains = ("square",)
            domain: str = "square"

            def mesh(self):
                return unit_square_mesh(float(self.h))

            def nodes(self):
                return DarcyMesh(h=self.h).nodes()

        return PoissonSquare(h=h)


def test_darcy_mesh_with_constant_permeability_reproduces_the_fem_mesh_poisson_solve():
    from pdebench.solvers import SOLVERS

    problem = DarcyMesh(h=0.05, forcing=2.0)
    n = problem.num_nodes
    darcy = DarcyMeshSolver().solve(problem, {"a": np.full((2, n), 4.0)}).fields["u"].numpy()
    poisson = SOLVERS.build("fem-mesh").solve(_PoissonSquare.build(0.05), {"f": np.full((1, n), 2.0)}).fields["u"].numpy()
    np.testing.assert_allclose(darcy[0], poisson[0] / 4.0, rtol=1e-10, atol=1e-14)
    assert darcy[0].max() > 0.01


def _square_series(x: np.ndarray, y: np.ndarray, terms: int = 81) -> np.ndarray:
    """Exact -Δu = 1 on the unit square, u = 0: 16/π⁴ Σ_{m,n odd} sin(mπx) sin(nπy) / (mn(m²+n²))."""
    u = np.zeros_like(x)
    for m in range(1, terms, 2):
        for k in range(1, terms, 2):
            u += np.sin(m * np.pi * x) * np.sin(k * np.pi * y) / (m * k * (m * m + k * k))
    return 16.0 / np.pi**4 * u


def test_darcy_mesh_p1_solve_converges_at_second_order_on_the_jittered_mesh():
    errors = []
    for h in (0.1, 0.05):
        problem = DarcyMesh(h=h)
        nodes = problem.nodes()
        u = DarcyMeshSolver().solve(problem, {"a": np.ones((1, len(nodes)))}).fields["u"].numpy()[0]
        errors.append(math.sqrt(np.mean((u - _square_series(nodes[:, 0], nodes[:, 1])) ** 2)))
    assert errors[1] < 2e-4
    assert errors[0] / errors[1] > 3.0, errors  # O(h²): ratio 4 for h -> h/2


def test_darcy_mesh_permeability_is_the_darcy2d_field_at_the_nodes():
    from pdebench.problems.elliptic import neumann_gaussian_field

    grid = neumann_gaussian_field(5, [0, 3], 17, tau=3.0, alpha=2.0).numpy()  # (2, 17, 17), [x, y]
    x = np.linspace(0.0, 1.0, 17)
    points = np.stack(np.meshgrid(x, x, indexing="ij"), axis=-1).reshape(-1, 2)
    np.testing.assert_allclose(neumann_gaussian_field_at(5, [0, 3], points, tau=3.0, alpha=2.0), grid.reshape(2, -1), atol=1e-10)
    a = DarcyMesh(h=0.1).sample_inputs(5, [0, 1, 2])["a"]
    assert set(np.unique(a)) == {3.0, 12.0}
    assert DarcyMesh(h=0.1, jitter=0.0).mesh().p.shape[1] == 16 * 16


# ----------------------------------------------------------------------------------------- data module


def test_graph_datamodule_splits_by_sample_and_normalises(tiny_files):
    mesh = GraphDataModule(str(tiny_files["mesh"]), batch_size=4, seed=2)
    assert mesh.record == "mesh" and (mesh.in_channels, mesh.out_channels, mesh.spatial_dims, mesh.history) == (2, 1, 2, 1)
    rows = np.concatenate(list(mesh.splits.values()))
    assert sorted(rows.tolist()) == list(range(12))
    stats = mesh.normalization_stats()
    assert stats["x_mean"][1] == 0 and stats["x_std"][1] == 1  # the Dirichlet marker is not normalised
    batch = next(iter(mesh.train_dataloader()))
    assert batch.num_graphs == 4 and batch.edge_attr.shape[1] == 2
    torch.testing.assert_close(batch.edge_attr, batch.pos[batch.edge_index[1]] - batch.pos[batch.edge_index[0]])
    card = mesh.data_card()
    assert card["problem"] == "darcy2d_mesh" and card["seed"] == 3 and card["resolution"] == [mesh.mesh_info["num_nodes"]]
    with MeshDataset(tiny_files["mesh"]) as data:  # the one-off cost the leaderboard charges: the file's generation time
        assert card["data_cost_s"] == data.provenance["wall_time_s"] > 0

    particles = GraphDataModule(str(tiny_files["particles"]), history=3, batch_size=2)
    assert particles.record == "particles" and (particles.in_channels, particles.out_channels) == (3 * 2 + 2, 2)
    particles.setup()
    assert len(particles.datasets["train"]) == len(particles.splits["train"]) * (13 - 3)  # frames 2 .. 11
    graph = particles.datasets["train"][0]
    traj = particles.trajectory(int(particles.splits["train"][0]))
    torch.testing.assert_close(graph.y, torch.from_numpy(traj.acceleration(2)).float())
    torch.testing.assert_close(graph.x[:, 4:6], torch.from_numpy(traj.velocities[2]).float())  # newest velocity
    src, dst = graph.edge_index
    torch.testing.assert_close(graph.edge_attr, (graph.pos[dst] - graph.pos[src]) / particles.box.radius, atol=1e-6, rtol=0)
    assert particles.data_card()["box"]["radius"] == particles.box.radius
    with ParticleDataset(tiny_files["particles"]) as data:
        assert particles.data_card()["data_cost_s"] == data.provenance["wall_time_s"] > 0


# ----------------------------------------------------------------------------------------- CLI


TINY = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
        "--trainer.limit_test_batches", "1", "--model.init_args.model_args",
        "{hidden: 16, layers: 2}"]


@pytest.mark.parametrize("config, kind, extra", [
    ("darcy2d/mppde_mesh.yaml", "mesh", []),
    ("dam_break2d/mppde.yaml", "particles", ["--data.init_args.history", "3", "--model.init_args.rollout_horizons", "[1, 5]"]),
], ids=["darcy2d_mesh", "dam_break2d"])
def test_cli_fits_mppde_on_tiny_graph_data_and_checkpoints_the_card(config, kind, extra, tiny_files, tmp_path):
    from pdebench.training.graph_module import GraphOperatorModule

    train_cli(["fit", "--config", str(ROOT / "configs" / config), "--data.init_args.path", str(tiny_files[kind]), *TINY, *extra],
            tmp_path)
    (checkpoint,) = tmp_path.glob("outputs/*/checkpoints/last.ckpt")
    saved = torch.load(checkpoint, weights_only=True)
    card = saved["pdebench"]["data"]
    assert saved["pdebench"]["module_class"] == "pdebench.training.graph_module.GraphOperatorModule"
    assert card["problem"] == ("darcy2d_mesh" if kind == "mesh" else "dam_break2d")
    assert saved["pdebench"]["budget"]["samples_seen"] > 0
    module = GraphOperatorModule.load_from_checkpoint(checkpoint, weights_only=True)
    assert bool(module.x_norm.fitted) and module.model.out_features == (1 if kind == "mesh" else 2)
    assert isinstance(module, Predictor)
    if kind == "mesh":
        with pytest.raises(ValueError, match="no particle box"):
            module.rollout(None)
        return
    # the Predictor rollout of the loaded model: in the training data's box, over the whole trajectory
    data = GraphDataModule(str(tiny_files[kind]), history=3)
    traj = data.trajectory(int(data.splits["val"][0]))
    assert module.particle_box == (data.box, False)
    positions = module.rollout(traj)
    assert positions.shape == (len(traj.time) - 3, *traj.positions.shape[1:])
    torch.testing.assert_close(positions, module.rollout_particles(traj, data.box, len(traj.time))[0])


def test_particle_rollout_integrates_semi_implicit_euler_and_rebuilds_graphs(tiny_files):
    from pdebench.training.graph_module import GraphOperatorModule

    data = GraphDataModule(str(tiny_files["particles"]), history=3)
    traj = data.trajectory(int(data.splits["val"][0]))
    module = GraphOperatorModule(model_args={"hidden": 8, "layers": 1}, in_channels=data.in_channels, out_channels=2,
                                 history=3)  # unfitted normalisers: identity

    class Recorded(torch.nn.Module):  # "predicts" the recorded acceleration of frame 2, 3, ...
        def __init__(self) -> None:
            super().__init__()
            self.frame, self.edges = 2, []

        def forward(self, graph: Data) -> torch.Tensor:
            self.edges.append(graph.edge_index.shape[1])
            out = torch.from_numpy(traj.acceleration(self.frame)).float()
            self.frame += 1
            return out

    module.model = Recorded()
    positions, mse = module.rollout_particles(traj, data.box, steps=3)
    assert positions.shape == (3, *traj.positions.shape[1:]) and mse.shape == (3,) and len(module.model.edges) == 3
    fluid = traj.particle_type == 0
    dt = traj.time[3] - traj.time[2]
    v3 = traj.velocities[2] + traj.acceleration(2).astype(np.float32) * dt  # v += a dt
    expected = np.where(fluid[:, None], traj.positions[2] + v3 * dt, traj.positions[3])  # x += v dt (walls recorded)
    np.testing.assert_allclose(positions[0].numpy(), expected, atol=1e-5)
    assert float(mse[0]) < 1e-4 and torch.all(mse >= 0)


def test_mismatched_graph_channels_fail_before_training(tiny_files, tmp_path):
    import lightning as L

    from pdebench.training.graph_module import GraphOperatorModule

    data = GraphDataModule(str(tiny_files["mesh"]), batch_size=4)  # 2 input channels (field + Dirichlet marker)
    module = GraphOperatorModule(in_channels=3, out_channels=1, spatial_dims=2, model_args={"hidden": 8, "layers": 1})
    trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False, default_root_dir=tmp_path)
    with pytest.raises(ValueError, match="model expects in_channels=3 but the data give 2"):
        trainer.fit(module, datamodule=data)
    assert not list(tmp_path.rglob("*.ckpt"))
