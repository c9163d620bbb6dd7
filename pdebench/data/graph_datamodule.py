r"""Graph data for message-passing models: unstructured-mesh samples and SPH particle frames.

:class:`GraphDataModule` reads a file of :mod:`pdebench.io.mesh_file` (``pdebench generate poisson |
darcy2d_mesh | ...``) or of :mod:`pdebench.io.particle_file` (``pdebench generate dam_break2d ...``)
and serves :class:`torch_geometric.data.Data` graphs in PyG batches. The train/validation/test split
is **by sample** (mesh) or **by trajectory** (particles), a fixed permutation of ``seed``.

Mesh files (``task = "mesh_pairs"``, steady operator learning)
    One graph per sample on the file's fixed mesh (edges: the mesh edges, both directions):

    * ``x`` ``(N, C_in)``: the ``input_fields`` (e.g. the permeability ``a``), then a Dirichlet
      marker channel (1 on ``u = 0`` nodes) when ``dirichlet_marker``;
    * ``y`` ``(N, C_out)``: the ``output_fields`` (e.g. ``u``);
    * ``pos`` ``(N, 2)``; ``edge_index`` and ``edge_attr`` ``(E, 2)`` = :math:`x_i - x_j` (target minus
      source) exactly as the file's ``to_pyg`` gives them (:func:`pdebench.core.graphs.mesh_graph`).

Particle files (``task = "particle_acceleration"``, GNS-style next-step learning)
    One graph per frame ``f`` of a trajectory, ``history - 1 <= f <= T - 2``, built by
    :func:`pdebench.core.graphs.particle_graph` (the radius graph of :func:`~pdebench.core.graphs.particle_edges` with the
    file's kernel radius, minimum image on periodic axes, as the file's ``to_pyg`` builds it):

    * ``x`` ``(N, history d + 2)``: velocities of frames ``f - history + 1 .. f`` (oldest first), then
      the particle-type one-hot (fluid, wall) (``+ 1`` column :math:`\rho/\rho_{ref}` with
      ``particle_density``);
    * ``y`` ``(N, d)``: the acceleration :math:`a^f = (v^{f+1} - v^f) / (t^{f+1} - t^f)`;
    * ``edge_attr`` ``(E, d)`` = :math:`(x_i - x_j) / r`; ``pos`` ``(N, d)``; ``fluid`` ``(N,)`` bool
      (the loss mask: wall particles are fixed); ``frame_dt`` (one per graph).

Normalisation (:meth:`GraphDataModule.normalization_stats`): per-channel mean and std over the
training split's nodes; marker and one-hot channels are left as they are (mean 0, std 1); particle
velocity channels share one mean/std per component across the history slots, and particle statistics
are taken over fluid particles only.

Both records follow the one edge convention of :mod:`pdebench.core.graphs`; the split is
:func:`pdebench.data.splits.split_indices`, the same as every other data module's.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader

from pdebench.core.graphs import ParticleBox, particle_graph, reference_density
from pdebench.core.particles import FLUID
from pdebench.io.base import generation_seconds
from pdebench.io.mesh_file import MeshDataset
from pdebench.io.particle_file import ParticleDataset
from pdebench.data.splits import SplitDataModule

log = logging.getLogger(__name__)

__all__ = ["GraphDataModule"]

GraphRecord = Literal["auto", "mesh", "particles"]


class _GraphList(Dataset):
    def __init__(self, graphs: list[Data]) -> None:
        self.graphs = graphs

    def __len__(self) -> int:
        return len(self.graphs)

    def __getitem__(self, i: int) -> Data:
        return self.graphs[i]


@dataclass
class _Trajectory:
    """What the particle graphs need of one trajectory (float64 numpy arrays)."""

    row: int
    time: np.ndarray  # (T,)
    positions: np.ndarray  # (T, N, d)
    velocities: np.ndarray  # (T, N, d)
    density: np.ndarray  # (T, N) / rho_ref
    particle_type: np.ndarray  # (N,)

    def acceleration(self, frame: int) -> np.ndarray:
        return (self.velocities[frame + 1] - self.velocities[frame]) / (self.time[frame + 1] - self.time[frame])


class _ParticleFrames(Dataset):
    """Frames ``(trajectory, f)`` of a split as graphs, built on access."""

    def __init__(self, trajectories: list[_Trajectory], history: int, stride: int, box: ParticleBox,
                 use_density: bool) -> None:
        self.trajectories, self.history, self.box, self.use_density = trajectories, history, box, use_density
        self.index = [(k, f) for k, traj in enumerate(trajectories)
                      for f in range(history - 1, len(traj.time) - 1, stride)]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> Data:
        k, f = self.index[i]
        traj = self.trajectories[k]
        h = self.history
        data = particle_graph(torch.from_numpy(traj.positions[f]), torch.from_numpy(traj.velocities[f - h + 1 : f + 1]),
                              torch.from_numpy(traj.particle_type), self.box,
                              torch.from_numpy(traj.density[f]) if self.use_density else None)
        data.y = torch.from_numpy(traj.acceleration(f).astype(np.float32))
        data.frame_dt = torch.tensor([traj.time[f + 1] - traj.time[f]], dtype=torch.float32)
        data.sample_id = torch.tensor([[traj.row, f]], dtype=torch.long)
        return data


class GraphDataModule(SplitDataModule):
    """Mesh samples or particle frames as PyG graph batches (see the module docstring).

    Parameters
    ----------
    path
        A mesh data file (:mod:`pdebench.io.mesh_file`) or a particle data file
        (:mod:`pdebench.io.particle_file`).
    record
        The record the file holds, as the problem registry names it: ``"mesh"``, ``"particles"``
        or ``"auto"`` (from the file).
    input_fields, output_fields
        Mesh: nodal fields stacked into ``x`` and ``y`` (default: every field but ``u`` -> ``["u"]``).
    dirichlet_marker
        Mesh: append the Dirichlet-node marker channel to ``x``.
    history
        Particles: velocity frames per input (``in_channels = history d + 2``). Mesh: must be 1.
    frame_stride
        Particles: use every ``frame_stride``-th frame as a training sample.
    particle_density
        Particles: add :math:`\\rho/\\rho_{ref}` as an input channel.
    train_fraction, val_fraction
        Split of the samples (mesh) or trajectories (particles); the rest is the test set.
    max_trajectories
        Use only the first samples/trajectories of the file.
    batch_size, num_workers, seed
        Loader settings; ``seed`` fixes the split and the per-epoch shuffling.

    Attributes
    ----------
    in_channels, out_channels, spatial_dims, history
        What the CLI links into the model.
    """

    def __init__(
        self,
        path: str,
        record: GraphRecord = "auto",
        input_fields: list[str] | None = None,
        output_fields: list[str] | None = None,
        dirichlet_marker: bool = True,
        history: int = 1,
        frame_stride: int = 1,
        particle_density: bool = False,
        train_fraction: float = 0.8,
        val_fraction: float = 0.1,
        max_trajectories: int | None = None,
        batch_size: int = 8,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self._check_arguments(path, "graph data", train_fraction, val_fraction, history=history,
                              frame_stride=frame_stride, batch_size=batch_size)
        self.record = self._detect(path) if record == "auto" else record
        if self.record == "mesh":
            self._init_mesh()
        elif self.record == "particles":
            self._init_particles()
        else:
            raise ValueError(f"record must be 'auto', 'mesh' or 'particles', got {record!r}")
        self.splits = self._split("samples")
        self.datasets: dict[str, Dataset] = {}

    # ------------------------------------------------------------------ files
    @staticmethod
    def _detect(path: str) -> str:
        try:
            ParticleDataset(path).close()
            return "particles"
        except ValueError:
            return "mesh"

    def _init_mesh(self) -> None:
        hp = self.hparams
        if hp.history != 1:
            raise ValueError(f"mesh data are steady input -> output pairs: history must be 1, got {hp.history}")
        with MeshDataset(hp.path) as data:
            fields = dict(data.fields)
            self.output_fields = list(hp.output_fields or ["u"])
            self.input_fields = list(hp.input_fields or [f for f in fields if f not in self.output_fields])
            missing = sorted(set(self.input_fields + self.output_fields) - set(fields))
            if missing or not self.input_fields:
                raise ValueError(f"{hp.path}: fields {missing or 'inputs (none left)'} not found; fields are {list(fields)}")
            prov = data.provenance
            self.mesh_info = {"num_nodes": int(data.mesh.num_nodes), "num_cells": int(data.mesh.num_cells),
                              "element": data.mesh.element, "mesh_size": prov.get("mesh_size")}
            if hp.dirichlet_marker and "dirichlet" not in data.mesh.boundary:
                raise ValueError(f"{hp.path}: no 'dirichlet' boundary marker; set dirichlet_marker: false")
            total = len(data)
        channels = {name: 1 if len(fields[name]) == 2 else int(fields[name][-1]) for name in fields}
        self._card = {"problem": prov.get("problem"), "params": _params(prov.get("problem_params")), "seed": prov.get("seed"),
                      "data_cost_s": generation_seconds(prov)}
        self.num_trajectories = total if hp.max_trajectories is None else min(total, hp.max_trajectories)
        n_fields = sum(channels[f] for f in self.input_fields)
        self.in_channels = n_fields + (1 if hp.dirichlet_marker else 0)
        self.out_channels = sum(channels[f] for f in self.output_fields)
        self._x_normalised = torch.tensor([True] * n_fields + [False] * (self.in_channels - n_fields))
        self.spatial_dims = 2
        self.task = "mesh_pairs"

    def _init_particles(self) -> None:
        hp = self.hparams
        with ParticleDataset(hp.path) as data:
            self.box = ParticleBox.of(data.lower, data.upper, data.periodic, data.radius)
            prov = data.provenance
            total = len(data)
            frames = min(data[i].num_frames for i in range(total)) if total else 0
        d = len(self.box.lower)
        if frames < hp.history + 1:
            raise ValueError(f"{hp.path}: {frames} frames; history={hp.history} needs at least {hp.history + 1}")
        self._card = {"problem": prov.get("problem"), "params": _params(prov.get("problem_params")), "seed": prov.get("seed"),
                      "data_cost_s": generation_seconds(prov)}
        self.num_trajectories = total if hp.max_trajectories is None else min(total, hp.max_trajectories)
        self.in_channels = hp.history * d + 2 + (1 if hp.particle_density else 0)
        self.out_channels = d
        normalised = [True] * (hp.history * d) + [True] * (1 if hp.particle_density else 0) + [False, False]
        self._x_normalised = torch.tensor(normalised)
        self.spatial_dims = d
        self.task = "particle_acceleration"
        self._trajectories: dict[int, _Trajectory] = {}

    @property
    def history(self) -> int:
        """Frames of the input (velocity history of the particles; 1 for mesh pairs)."""
        return int(self.hparams.history)

    # ------------------------------------------------------------------ datasets
    def trajectory(self, row: int) -> _Trajectory:
        """Particle trajectory ``row`` of the file (float64 arrays, density over ``rho_ref``; cached)."""
        if row not in self._trajectories:
            with ParticleDataset(self.hparams.path) as data:
                traj = data[int(row)]
            types = np.asarray(traj.particle_type, dtype=np.int64)
            rho_ref = reference_density(traj.density[0], types)
            self._trajectories[row] = _Trajectory(int(row), np.asarray(traj.time, dtype=np.float64),
                                                  np.asarray(traj.positions, dtype=np.float64),
                                                  np.asarray(traj.velocities, dtype=np.float64),
                                                  np.asarray(traj.density, dtype=np.float64) / rho_ref, types)
        return self._trajectories[row]

    def _mesh_graphs(self, rows: np.ndarray) -> list[Data]:
        """The file's own graphs (``to_pyg``) of samples ``rows``, unchanged."""
        hp = self.hparams
        if len(rows) == 0:
            return []
        with MeshDataset(hp.path) as data:
            return data.to_pyg_list(self.input_fields, self.output_fields, indices=rows.tolist(), params=[],
                                    dirichlet="dirichlet" if hp.dirichlet_marker else None)

    def _dataset(self, split: str) -> Dataset:
        rows = self.splits[split]
        if self.record == "mesh":
            return _GraphList(self._mesh_graphs(rows))
        return _ParticleFrames([self.trajectory(int(r)) for r in rows], self.history, self.hparams.frame_stride,
                               self.box, self.hparams.particle_density)

    def setup(self, stage: str | None = None) -> None:
        for split in ("train", "val", "test"):
            if split not in self.datasets and len(self.splits[split]):
                self.datasets[split] = self._dataset(split)

    def normalization_stats(self, eps: float = 1e-6) -> dict[str, torch.Tensor]:
        """Per-channel statistics of the training split: ``x_mean, x_std (C_in,)``, ``y_mean, y_std (C_out,)``.

        Marker/one-hot channels get mean 0 and std 1; particle statistics are over fluid particles
        (velocities of every frame, pooled over the history slots; accelerations of every pair of
        consecutive frames).
        """
        self.setup()
        if self.record == "mesh":
            graphs = self.datasets["train"].graphs
            x = torch.cat([g.x for g in graphs]).double()
            y = torch.cat([g.y for g in graphs]).double()
            x_mean, x_std = x.mean(0), x.std(0)
            y_mean, y_std = y.mean(0), y.std(0)
        else:
            vel, acc, rho = [], [], []
            for row in self.splits["train"]:
                traj = self.trajectory(int(row))
                fluid = traj.particle_type == FLUID
                vel.append(traj.velocities[:, fluid].reshape(-1, traj.velocities.shape[-1]))
                dv = (traj.velocities[1:, fluid] - traj.velocities[:-1, fluid]) / np.diff(traj.time)[:, None, None]
                acc.append(dv.reshape(-1, dv.shape[-1]))
                rho.append(traj.density[:, fluid].reshape(-1))
            v, a = torch.from_numpy(np.concatenate(vel)), torch.from_numpy(np.concatenate(acc))
            parts_mean = [v.mean(0).repeat(self.history)]
            parts_std = [v.std(0).repeat(self.history)]
            if self.hparams.particle_density:
                r = torch.from_numpy(np.concatenate(rho))
                parts_mean.append(r.mean()[None])
                parts_std.append(r.std()[None])
            x_mean = torch.cat([*parts_mean, torch.zeros(2, dtype=torch.float64)])
            x_std = torch.cat([*parts_std, torch.ones(2, dtype=torch.float64)])
            y_mean, y_std = a.mean(0), a.std(0)
        keep = ~self._x_normalised
        x_mean = torch.where(keep, torch.zeros_like(x_mean), x_mean)
        x_std = torch.where(keep, torch.ones_like(x_std), x_std)
        return {"x_mean": x_mean.float(), "x_std": x_std.clamp_min(eps).float(),
                "y_mean": y_mean.float(), "y_std": y_std.clamp_min(eps).float()}

    def data_card(self) -> dict[str, Any]:
        """What a model trained on this module has seen (stored in checkpoints): problem, params,
        resolution (mesh: nodes, cells, mesh size; particles: box and kernel radius), task, history,
        trajectories and seed."""
        hp = self.hparams
        card = {**self._card, "source": f"file:{hp.path}", "task": self.task, "history": self.history,
                "train_trajectories": int(len(self.splits["train"])), "split_seed": int(hp.seed)}
        if self.record == "mesh":
            card["resolution"] = [self.mesh_info["num_nodes"]]
            card["mesh"] = dict(self.mesh_info)
            card["input_fields"], card["output_fields"] = list(self.input_fields), list(self.output_fields)
        else:
            card["resolution"] = None
            card["box"] = {"lower": list(self.box.lower), "upper": list(self.box.upper),
                           "periodic": list(self.box.periodic), "radius": self.box.radius}
            card["frame_stride"] = int(hp.frame_stride)
        return card

    # ------------------------------------------------------------------ loaders
    loader_class = DataLoader  # PyG's: batches graphs

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        self.setup()
        return super()._loader(split, shuffle)


def _params(value: Any) -> dict[str, Any]:
    """The file's ``problem_params`` provenance as a dict (JSON strings decoded)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {"raw": value}
    return dict(value) if isinstance(value, dict) else {}
