r"""Train :class:`~pdebench.models.mppde.MPPDE` one step on graphs (meshes and particles) with Lightning.

:class:`GraphOperatorModule` trains on PyG graph batches from
:class:`~pdebench.data.graph_datamodule.GraphDataModule` instead of grid tensors. What it shares with
the grid modules is :class:`~pdebench.training.base.TrainingBase`: channel normalisers fitted on the
training split (``x_norm``, ``y_norm``, saved in the checkpoint), the
:class:`~pdebench.training.base.OptimConfig`, the training budget and ``checkpoint["pdebench"]``
(budget, data card, module class).

The model (``mppde`` in multi-feature mode, ``bundling=False``) maps normalised node features
:math:`\hat x = (x - \mu_x)/\sigma_x` to normalised targets; predictions are
:math:`y = \sigma_y\,\mathrm{MPPDE}(\hat x) + \mu_y`.

Losses (``loss``)
    ``"mse"``: mean squared error on **normalised** targets,
    :math:`\frac{1}{|V| C}\sum_{i \in V}\|\hat y_i - \hat y^*_i\|^2`, over the loss nodes :math:`V`
    (all nodes on a mesh; fluid particles only: walls are fixed).
    ``"rel_l2"``: mean over graphs of the relative L2 error on **physical** values,
    :math:`\frac1B\sum_b \|y_b - y^*_b\|_2 / (\|y^*_b\|_2 + 10^{-12})` over the loss nodes of graph ``b``
    (:func:`~pdebench.core.metrics.segment_relative_l2`).

Metrics
    ``train_loss``, ``val_loss``; ``val_rel_l2`` and ``test_rel_l2`` (relative L2 per sample,
    physical, averaged), ``test_rel_l2_median``, ``test_mse`` (physical). Particle data: at the end
    of each validation epoch a rollout of one validation trajectory (:meth:`rollout_particles`,
    semi-implicit Euler :math:`v \leftarrow v + a\,\Delta t`, :math:`x \leftarrow x + v\,\Delta t`, the
    radius graph rebuilt each step, wall particles on their recorded paths) logs the fluid position
    MSE ``val_rollout_pos_mse_h{k}`` at horizons ``k`` in ``rollout_horizons``.
"""

from __future__ import annotations

import copy
import logging
from typing import Any, Literal

import torch
from torch_geometric.data import Data

from pdebench.core.graphs import ParticleBox
from pdebench.core.metrics import segment_relative_l2
from pdebench.core.graphs import particle_graph
from pdebench.models import MODELS
from pdebench.training.base import OptimConfig, TrainingBase

log = logging.getLogger(__name__)

#: Added to a graph's target norm in the relative L2 loss and metrics (a graph whose counted targets are zero scores 0).
GRAPH_REL_L2_EPS = 1e-12

__all__ = ["GRAPH_REL_L2_EPS", "GraphOperatorModule"]


class GraphOperatorModule(TrainingBase):
    """One-step MP-PDE training on graph batches (see the module docstring).

    Parameters
    ----------
    model_args
        :class:`~pdebench.models.mppde.MPPDE` arguments (``hidden``, ``layers``, ``encode_position``,
        ``norm``, ...); ``in_features``, ``out_features``, ``dim`` and ``bundling`` are set here.
    in_channels, out_channels, spatial_dims, history
        Linked from the data module by the CLI.
    loss
        ``"mse"`` (normalised) or ``"rel_l2"`` (physical), see the module docstring.
    optim
        :class:`~pdebench.training.base.OptimConfig`.
    rollout_horizons
        Particle data: horizons (steps) of the validation rollout's position MSE; ``[]`` disables it.
    rollout_trajectories
        Particle data: validation trajectories rolled out per epoch.
    """

    def __init__(
        self,
        model_args: dict[str, Any] | None = None,
        in_channels: int = 1,
        out_channels: int = 1,
        spatial_dims: int = 2,
        history: int = 1,
        loss: Literal["mse", "rel_l2"] = "mse",
        optim: OptimConfig | None = None,
        rollout_horizons: list[int] | None = None,
        rollout_trajectories: int = 1,
    ) -> None:
        if loss not in ("mse", "rel_l2"):
            raise ValueError(f"loss must be 'mse' or 'rel_l2' for graphs, got {loss!r}")
        linked = sorted({"in_channels", "out_channels", "dim", "in_features", "out_features", "bundling"} & set(model_args or {}))
        if linked:
            raise ValueError(f"model_args: {', '.join(linked)} is set by the data / the graph module; remove it")
        super().__init__(in_channels, out_channels, spatial_dims, history, optim)
        self.model = MODELS.build("mppde", **(model_args or {}), in_features=in_channels, out_features=out_channels,
                                  dim=spatial_dims, bundling=False)
        self.rollout_trajectories = rollout_trajectories
        self.graph_loss = loss
        self.rollout_horizons = [1, 5, 10] if rollout_horizons is None else [int(h) for h in rollout_horizons]
        self._test_errors: list[torch.Tensor] = []
        self._test_sq: list[torch.Tensor] = []
        self.particle_box: tuple[ParticleBox, bool] | None = None  # the particle data's box and density flag

    # ------------------------------------------------------------------ model
    def forward(self, data: Data) -> torch.Tensor:
        """Physical node features ``data.x (N, C_in)`` -> physical prediction ``(N, C_out)``."""
        graph = copy.copy(data)
        graph.x = self.x_norm.encode(data.x)
        return self.y_norm.decode(self.model(graph))

    @staticmethod
    def _mask(data: Data) -> torch.Tensor | None:
        return getattr(data, "fluid", None)

    def _loss(self, pred: torch.Tensor, data: Data) -> torch.Tensor:
        mask = self._mask(data)
        if self.graph_loss == "rel_l2":
            return segment_relative_l2(pred, data.y, data.batch, data.num_graphs, mask=mask, eps=GRAPH_REL_L2_EPS,
                                       reduction="mean")
        err = (self.y_norm.encode(pred) - self.y_norm.encode(data.y)) ** 2
        return err[mask].mean() if mask is not None else err.mean()

    @staticmethod
    def _graph_batch(data: Data) -> Data:
        if getattr(data, "batch", None) is None:
            data.batch = torch.zeros(data.num_nodes, dtype=torch.long, device=data.x.device)
        return data

    # ------------------------------------------------------------------ training
    def setup(self, stage: str) -> None:
        """Check the data's channels against the model and run one forward pass on a training graph."""
        datamodule = self.checked_datamodule()
        if datamodule is None:
            return
        datamodule.setup(stage)
        split = next(s for s in ("train", "val", "test") if s in datamodule.datasets)
        with torch.no_grad():
            self.model(self._graph_batch(copy.copy(datamodule.datasets[split][0])))

    def training_step(self, batch: Data, batch_idx: int) -> torch.Tensor:
        batch = self._graph_batch(batch)
        loss = self._loss(self(batch), batch)
        self.log("train_loss", loss, prog_bar=True, batch_size=batch.num_graphs)
        self.count_samples(int(batch.num_graphs))
        return loss

    def validation_step(self, batch: Data, batch_idx: int) -> None:
        batch = self._graph_batch(batch)
        pred = self(batch)
        n = batch.num_graphs
        self.log("val_loss", self._loss(pred, batch), prog_bar=True, batch_size=n)
        error = segment_relative_l2(pred, batch.y, batch.batch, n, mask=self._mask(batch), eps=GRAPH_REL_L2_EPS, reduction="mean")
        self.log("val_rel_l2", error, batch_size=n)

    def on_validation_epoch_end(self) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if (datamodule is None or getattr(datamodule, "record", None) != "particles" or self.trainer.sanity_checking
                or not self.rollout_horizons or not len(datamodule.splits["val"])):
            return
        errors = []
        for row in datamodule.splits["val"][: self.rollout_trajectories]:
            curve = self.rollout_particles(datamodule.trajectory(int(row)), datamodule.box, max(self.rollout_horizons),
                                           getattr(datamodule.hparams, "particle_density", False))[1]
            errors.append(curve)
        steps = min(len(c) for c in errors)
        curve = torch.stack([c[:steps] for c in errors]).mean(0)
        for h in self.rollout_horizons:
            if h <= steps:
                self.log(f"val_rollout_pos_mse_h{h}", curve[h - 1])

    @torch.no_grad()
    def rollout_particles(self, trajectory: Any, box: Any, steps: int, use_density: bool = False,
                          start: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        r"""Roll the model out on a recorded particle trajectory.

        From frame ``f0 = start`` (default ``history - 1``) with the recorded velocity history,
        repeat ``steps`` times: predict :math:`a` on the radius graph of the current state, then
        :math:`v \leftarrow v + a\,\Delta t_f`, :math:`x \leftarrow x + v\,\Delta t_f` for fluid
        particles (wall particles follow their recorded positions and velocities; the density
        channel, if used, is the recorded one).

        Parameters
        ----------
        trajectory
            A trajectory of :meth:`GraphDataModule.trajectory` (``time``, ``positions``,
            ``velocities``, ``density``, ``particle_type``).
        box
            :class:`~pdebench.core.graphs.ParticleBox`.
        steps
            Rollout length (clipped to the frames recorded).

        Returns
        -------
        positions : Tensor, shape (S, N, d)
            Predicted positions of frames ``f0 + 1 .. f0 + S``.
        mse : Tensor, shape (S,)
            Fluid position MSE (mean over particles and components) per step.
        """
        h = self.history
        f0 = h - 1 if start is None else int(start)
        steps = min(int(steps), len(trajectory.time) - 1 - f0)
        particle_type = torch.from_numpy(trajectory.particle_type)
        fluid = (particle_type == 0).to(self.device)
        velocities = torch.from_numpy(trajectory.velocities[f0 - h + 1 : f0 + 1]).to(self.device)  # (h, N, d) float64
        pos = torch.from_numpy(trajectory.positions[f0]).to(self.device)
        out, mse = [], []
        for s in range(steps):
            f = f0 + s
            density = torch.from_numpy(trajectory.density[f]) if use_density else None
            graph = particle_graph(pos.cpu(), velocities.cpu(), particle_type, box, density).to(self.device)
            acc = self(self._graph_batch(graph)).to(torch.float64)
            dt = float(trajectory.time[f + 1] - trajectory.time[f])
            v_new = velocities[-1] + acc * dt
            x_new = pos + v_new * dt
            true_x = torch.from_numpy(trajectory.positions[f + 1]).to(self.device)
            true_v = torch.from_numpy(trajectory.velocities[f + 1]).to(self.device)
            v_new = torch.where(fluid[:, None], v_new, true_v)
            pos = box.inside(torch.where(fluid[:, None], x_new, true_x))
            velocities = torch.cat([velocities[1:], v_new[None]])
            out.append(pos.float())
            mse.append(((pos - true_x)[fluid] ** 2).mean().float())
        if not out:
            return torch.zeros(0, *pos.shape), torch.zeros(0)
        return torch.stack(out), torch.stack(mse)

    # ------------------------------------------------------------------ test
    def test_step(self, batch: Data, batch_idx: int) -> None:
        batch = self._graph_batch(batch)
        pred = self(batch)
        mask = self._mask(batch)
        self._test_errors.append(segment_relative_l2(pred, batch.y, batch.batch, batch.num_graphs, mask=mask, eps=GRAPH_REL_L2_EPS).cpu())
        err = (pred - batch.y) ** 2
        self._test_sq.append((err[mask] if mask is not None else err).reshape(-1).cpu())

    def on_test_epoch_end(self) -> None:
        errors = torch.cat(self._test_errors)
        sq = torch.cat(self._test_sq)
        self._test_errors.clear()
        self._test_sq.clear()
        self.test_rel_l2_per_sample = errors
        self.log_dict({"test_rel_l2": errors.mean(), "test_rel_l2_median": errors.median(), "test_mse": sq.mean()})

    def predict_step(self, batch: Data, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        return self(self._graph_batch(batch))

    @torch.no_grad()
    def predict(self, x: Data, **conditioning: Any) -> torch.Tensor:
        """:meth:`Predictor.predict <pdebench.training.predictor.Predictor.predict>`: physical node
        features ``x.x (nodes, C_in)`` of a graph -> physical ``(nodes, C_out)`` (no conditioning)."""
        if conditioning:
            raise ValueError(f"graph operators take no conditioning; got {', '.join(conditioning)}")
        return self(self._graph_batch(copy.copy(x)))

    def rollout(self, frames: Any, times: Any = None, params: Any = None) -> torch.Tensor:
        """:meth:`Predictor.rollout <pdebench.training.predictor.Predictor.rollout>` of a particle
        model over the recorded trajectory ``frames`` (:meth:`GraphDataModule.trajectory`): the
        positions ``(S, particles, d)`` of frames ``history … T − 1`` (:meth:`rollout_particles`,
        in the box of the training data; frame times are the trajectory's own)."""
        if self.particle_box is None:
            raise ValueError("this graph model has no particle box: rollouts need a model fitted on particle data "
                             "(a mesh model predicts one step: use predict)")
        box, use_density = self.particle_box
        return self.rollout_particles(frames, box, len(frames.time) - self.history, use_density)[0]

    # ------------------------------------------------------------------ checkpoints
    def on_fit_start(self) -> None:
        super().on_fit_start()
        datamodule = self.trainer.datamodule
        if getattr(datamodule, "record", None) == "particles":
            self.particle_box = (datamodule.box, bool(getattr(datamodule.hparams, "particle_density", False)))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Add the particle box and density flag of the training data (``checkpoint["pdebench"]["particles"]``)."""
        super().on_save_checkpoint(checkpoint)
        if self.particle_box is not None:
            box, use_density = self.particle_box
            checkpoint["pdebench"]["particles"] = {"lower": list(box.lower), "upper": list(box.upper),
                                                   "periodic": list(box.periodic), "radius": box.radius,
                                                   "density": use_density}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        saved = checkpoint.get("pdebench", {}).get("particles")
        if saved:
            box = ParticleBox.of(saved["lower"], saved["upper"], saved["periodic"], saved["radius"])
            self.particle_box = (box, bool(saved["density"]))
