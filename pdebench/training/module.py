"""The LightningModule that trains any registered data-driven operator on solver data."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DistributedSampler

from pdebench.core.metrics import all_metrics, geometric_mean_rollout, nrmse, rollout_metrics, rollout_nrmse
from pdebench.models import MODELS
from pdebench.training.losses import LossName, make_loss
from pdebench.training.base import OptimConfig, TrainingBase
from pdebench.training.predictor import SampleParams

log = logging.getLogger(__name__)


class OperatorModule(TrainingBase):
    """Train a data-driven operator from :data:`pdebench.models.MODELS`.

    The operator sees normalised inputs and predicts normalised outputs; losses and metrics are
    computed on physical (de-normalised) fields. Normalisation statistics are fitted on the training
    split at the start of fitting and saved in the checkpoint.

    Training modes (batches are ``x: (B, history*C, *space)``, ``y: (B, unroll, C, *space)``):

    * one step (``unroll = 1`` in the data): ``loss(f(x), y_1)``;
    * autoregressive (``unroll = r > 1``): ``pushforward=True`` rolls ``r − 1`` steps without
      gradient and trains on the last (Brandstetter et al. 2022); ``False`` back-propagates through
      all ``r`` steps and averages their losses;
    * ``input_noise = σ``: Gaussian noise of ``σ`` normalised units on the input window;
    * lead-time conditioned (``task="all2all"`` data, Poseidon): batches are ``(x, y, lead_time)``
      with ``lead_time: (B,)``, and the operator is called as ``model(x, t=lead_time)``; one target
      frame per sample. 2-tuples are never given a ``t``. Predict at any lead time with
      :meth:`predict` (``module.predict(x, t=lead_time)``).

    Parameters
    ----------
    model, model_args
        Registry name and constructor arguments (``in_channels``, ``out_channels`` and ``dim`` are set
        from the data).
    in_channels, out_channels, spatial_dims, history
        Set from the data module by ``train.py``'s argument links.
    loss
        ``"rel_l2"`` (relative L2 per sample and channel, averaged), ``"h1"`` or ``"mse"``.
    pushforward, input_noise
        Autoregressive training options.
    optim
        :class:`~pdebench.training.base.OptimConfig` (YAML: ``optim: {lr: 1e-3, scheduler: cosine}``).
    rollout_trajectories
        Validation trajectories rolled out each epoch (``next_step`` data only).
    noise_seed
        Input noise of step ``s`` is drawn from ``(noise_seed, s)``: resumed runs repeat it exactly.
    """

    def __init__(
        self,
        model: str = "fno",
        model_args: dict[str, Any] | None = None,
        in_channels: int = 1,
        out_channels: int = 1,
        spatial_dims: int = 1,
        history: int = 1,
        loss: LossName = "rel_l2",
        pushforward: bool = True,
        input_noise: float = 0.0,
        optim: OptimConfig | None = None,
        rollout_trajectories: int = 8,
        noise_seed: int = 0,
    ) -> None:
        super().__init__(in_channels, out_channels, spatial_dims, history, optim)
        entry = MODELS.get(model)
        if entry.board != "operator":
            raise ValueError(f"model {model!r} is a {entry.board!r} model; OperatorModule trains data-driven operators "
                             f"({', '.join(MODELS.available(board='operator'))})")
        if in_channels % history:
            raise ValueError(f"in_channels={in_channels} is not a multiple of history={history}")
        if input_noise < 0:
            raise ValueError(f"input_noise must be >= 0, got {input_noise}")
        linked = sorted({"in_channels", "out_channels", "dim"} & set(model_args or {}))
        if linked:
            raise ValueError(f"model_args: {', '.join(linked)} is set by the data (in_channels, out_channels, "
                             f"spatial_dims); remove it from model_args")
        self.model = MODELS.build(model, in_channels=in_channels, out_channels=out_channels, dim=spatial_dims, **(model_args or {}))
        self.rollout_trajectories, self.noise_seed = rollout_trajectories, noise_seed
        self.loss_fn = make_loss(loss, spatial_dims)
        self._test_outputs: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._test_positions: list[torch.Tensor] = []
        self._eval_seen = 0  # samples of the running validation/test epoch seen by this rank
        self._val_sums = torch.zeros(3, dtype=torch.float64)  # loss, nRMSE, samples
        self._test_lead_times: list[torch.Tensor] = []

    # ------------------------------------------------------------------ model
    def forward(self, x: torch.Tensor, **conditioning: torch.Tensor) -> torch.Tensor:
        """Physical ``(B, C_in, *space)`` -> physical ``(B, C_out, *space)``."""
        return self.y_norm.decode(self.model(self.x_norm.encode(x), **conditioning))

    @torch.no_grad()
    def predict(self, x: torch.Tensor, **conditioning: float | torch.Tensor) -> torch.Tensor:
        """:meth:`Predictor.predict <pdebench.training.predictor.Predictor.predict>`: physical
        ``(B, C_in, *space)`` -> physical ``(B, C_out, *space)``.

        A lead-time-conditioned operator (e.g. ``scot`` trained on ``all2all`` data) takes ``t``: one
        lead time for the batch or one per sample ``(B,)``, in the units of the training data
        (``all2all``: fractions ``(t_j − t_i) / (t_{T−1} − t_0)`` of the trajectory horizon).
        """
        if "t" in conditioning:
            t = torch.as_tensor(conditioning["t"], dtype=x.dtype, device=x.device)
            t = t.expand(x.shape[0]) if t.ndim == 0 else t
            if t.shape != (x.shape[0],):
                raise ValueError(f"lead time t must be a scalar or have shape (B,) = ({x.shape[0]},), got {tuple(t.shape)}")
            conditioning = {**conditioning, "t": t}
        return self(x, **conditioning)

    @staticmethod
    def split_batch(batch: tuple[torch.Tensor, ...] | list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """``(x, y)`` → ``(x, y, {})``; ``(x, y, lead_time)`` → ``(x, y, {"t": lead_time})``, the keyword
        conditioning passed to the operator (``lead_time: (B,)``)."""
        if len(batch) == 2:
            x, y = batch
            return x, y, {}
        if len(batch) == 3:
            x, y, lead_time = batch
            if lead_time.shape != (x.shape[0],):
                raise ValueError(f"lead times must have shape (B,) = ({x.shape[0]},), got {tuple(lead_time.shape)}")
            return x, y, {"t": lead_time.to(x.dtype)}
        raise ValueError(f"a batch is (x, y) or (x, y, lead_time); got {len(batch)} elements")

    def shift_window(self, window: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
        """Drop the oldest frame of ``window`` ``(B, h*C, *space)`` and append ``frame`` ``(B, C, *space)``."""
        return torch.cat([window[:, frame.shape[1] :], frame], dim=1)

    @torch.no_grad()
    def rollout(self, frames: torch.Tensor, times: np.ndarray | None = None, params: SampleParams | None = None) -> torch.Tensor:
        """:meth:`Predictor.rollout <pdebench.training.predictor.Predictor.rollout>` from the first
        ``history`` frames of physical ``frames (N, T, C, *space)`` -> ``(N, T − history, C, *space)``
        (``times`` and ``params`` are not read: the operator is not conditioned on them)."""
        return self.autoregress(frames)

    def autoregress(self, frames: torch.Tensor) -> torch.Tensor:
        """The operator fed its own output, from the first ``history`` frames of ``frames``
        ``(N, T, C, *space)`` (in the units the operator sees through its normalisers) ->
        ``(N, T − history, C, *space)``."""
        h = self.history
        window = frames[:, :h].flatten(1, 2)
        out = []
        for _ in range(frames.shape[1] - h):
            nxt = self(window)
            out.append(nxt)
            window = self.shift_window(window, nxt)
        return torch.stack(out, dim=1)

    # --------------------------------------------------------------- training
    def setup(self, stage: str) -> None:
        """Check the data against the model before any step: channels, then one forward pass at the
        data's resolution (a U-Net needs sizes divisible by 2**levels, an FNO enough points for its modes)."""
        datamodule = self.checked_datamodule()
        if datamodule is None:
            return
        with torch.no_grad():
            self.probe_forward(torch.zeros(1, self.x_norm.mean.numel(), *datamodule.resolution))

    def probe_forward(self, x: torch.Tensor) -> torch.Tensor:
        """One forward pass of the operator on a dummy input ``(1, C_in, *space)`` (with whatever
        conditioning a subclass's operator requires), run by :meth:`setup` before training."""
        return self.model(x)

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        x, y, conditioning = self.split_batch(batch)
        if self.hparams.input_noise > 0:
            std = self.x_norm.std.view(1, -1, *([1] * (x.ndim - 2)))
            # Noise drawn from (seed, step) alone, so a resumed run draws the same noise.
            generator = torch.Generator(device="cpu").manual_seed(self.noise_seed * 1_000_003 + self.global_step)
            noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
            x = x + self.hparams.input_noise * std * noise
        unroll = y.shape[1]
        if conditioning and unroll != 1:
            raise ValueError(f"lead-time batches (x, y, lead_time) have one target frame; got y with {unroll} frames")
        if unroll == 1:
            loss = self.loss_fn(self(x, **conditioning), y[:, 0])
        elif self.hparams.pushforward:
            with torch.no_grad():
                for step in range(unroll - 1):
                    x = self.shift_window(x, self(x))
            loss = self.loss_fn(self(x), y[:, -1])
        else:
            losses = []
            for step in range(unroll):
                pred = self(x)
                losses.append(self.loss_fn(pred, y[:, step]))
                x = self.shift_window(x, pred)
            loss = torch.stack(losses).mean()
        self.log("train_loss", loss, prog_bar=True, batch_size=x.shape[0])
        self.count_samples(x.shape[0])
        return loss

    # ------------------------------------------------------------- evaluation
    # Validation and test metrics are those of the whole held-out set, also under DDP: each rank sums
    # its per-sample values (leaving out the repeats DistributedSampler pads the last ranks with),
    # the sums and counts are all-reduced, and the test predictions are gathered in dataset order;
    # a run on any number of ranks logs what one process logs.
    def _eval_loader(self, stage: str) -> Any:
        loaders = self.trainer.test_dataloaders if stage == "test" else self.trainer.val_dataloaders
        return loaders[0] if isinstance(loaders, (list, tuple)) else loaders

    def _eval_rows(self, stage: str, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(positions, real)`` ``(count,)`` of the next ``count`` samples of this rank's ``stage``
        loader: their place in the sampler's (padded) order across ranks, and whether they are real
        samples (not DistributedSampler's padding, which repeats the first samples)."""
        start = self._eval_seen
        self._eval_seen += count
        local = torch.arange(start, start + count)
        sampler = getattr(self._eval_loader(stage), "sampler", None) if self._trainer is not None else None
        if isinstance(sampler, DistributedSampler):
            positions = sampler.rank + local * sampler.num_replicas
            return positions, positions < len(sampler.dataset)
        return local, torch.ones(count, dtype=torch.bool)

    def _all_reduce_sum(self, values: torch.Tensor) -> torch.Tensor:
        if self._trainer is not None and self.trainer.world_size > 1 and torch.distributed.is_initialized():
            return self.trainer.strategy.reduce(values.to(self.device), reduce_op="sum").cpu()
        return values

    def on_validation_epoch_start(self) -> None:
        self._eval_seen = 0
        self._val_sums = torch.zeros(3, dtype=torch.float64)  # loss, nRMSE, samples

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        x, y, conditioning = self.split_batch(batch)
        pred = self(x, **conditioning)
        _, real = self._eval_rows("val", x.shape[0])
        losses = torch.stack([self.loss_fn(pred[i : i + 1], y[i : i + 1, 0]) for i in range(x.shape[0])]).double()
        errors = nrmse(pred, y[:, 0], time_axis=False, reduction="none").double()
        real = real.to(losses.device)
        self._val_sums += torch.stack([losses[real].sum(), errors[real].sum(), real.sum().double()]).detach().cpu()

    def on_validation_epoch_end(self) -> None:
        sums = getattr(self, "_val_sums", None)
        if sums is not None and sums[2] > 0:  # a subclass with its own validation_step logs its own
            loss, error, count = self._all_reduce_sum(sums).tolist()
            # identical on every rank already: sync_dist averages equal values (and keeps Lightning quiet)
            self.log("val_loss", loss / count, prog_bar=True, sync_dist=True)
            self.log("val_nrmse", error / count, sync_dist=True)
        curve = self._rollout_curve("val", self.rollout_trajectories)
        if curve is not None:
            self.log("val_rollout_nrmse_gmean", geometric_mean_rollout(curve), sync_dist=True)

    def _rollout_curve(self, split: str, count: int | None) -> torch.Tensor | None:
        """Per-step rollout nRMSE ``(T − history,)`` on ``count`` trajectories of ``split``."""
        pair = self._rollout_pair(split, count)
        return None if pair is None else rollout_nrmse(*pair)

    def _rollout_pair(self, split: str, count: int | None) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(prediction, reference)`` of the rollout of ``count`` (all: ``None``) trajectories of
        ``split`` from their first ``history`` frames, in the metrics' ``(N, C, *space, T − history)``
        layout; ``None`` without ``next_step`` data, while sanity checking, or with no step to predict."""
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None or getattr(datamodule.hparams, "task", None) != "next_step" or self.trainer.sanity_checking:
            return None
        frames = datamodule.trajectories(split)
        frames = (frames if count is None else frames[:count]).to(self.device)
        if frames.shape[1] <= self.history:
            return None
        pred = self.autoregress(frames)
        target = frames[:, self.history :]
        # (N, T, C, *space) -> the metrics' (B, C, *space, T)
        return torch.movedim(pred, 1, -1), torch.movedim(target, 1, -1)

    def on_test_epoch_start(self) -> None:
        self._eval_seen = 0
        self._test_positions: list[torch.Tensor] = []

    def test_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        x, y, conditioning = self.split_batch(batch)
        positions, real = self._eval_rows("test", x.shape[0])
        self._test_positions.append(positions[real])
        real = real.to(x.device)
        self._test_outputs.append((self(x, **conditioning)[real].cpu(), y[real, 0].cpu()))
        if "t" in conditioning:
            self._test_lead_times.append(conditioning["t"][real].cpu())

    def _gathered_test_outputs(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``(pred, target, lead times or None)`` of the whole test set in the sampler's order: every
        rank's share gathered (DDP), padding already left out."""
        pred = torch.cat([p for p, _ in self._test_outputs])
        target = torch.cat([t for _, t in self._test_outputs])
        leads = torch.cat(self._test_lead_times) if self._test_lead_times else None
        positions = torch.cat(getattr(self, "_test_positions", []) or [torch.arange(len(pred))])
        self._test_outputs.clear()
        self._test_lead_times.clear()
        if self.trainer.world_size > 1 and torch.distributed.is_initialized():
            shares: list[Any] = [None] * self.trainer.world_size
            torch.distributed.all_gather_object(shares, (positions, pred, target, leads))
            positions = torch.cat([share[0] for share in shares])
            pred, target = torch.cat([share[1] for share in shares]), torch.cat([share[2] for share in shares])
            leads = torch.cat([share[3] for share in shares]) if leads is not None else None
        order = torch.argsort(positions)
        return pred[order], target[order], None if leads is None else leads[order]

    def on_test_epoch_end(self) -> None:
        pred, target, leads = self._gathered_test_outputs()
        # one frame per window: a time axis of length one
        metrics = {f"test_{name}": value for name, value in all_metrics(pred.unsqueeze(-1), target.unsqueeze(-1)).items()}
        if leads is not None:
            self.test_lead_time_curve = self._lead_time_curve(pred, target, leads)
            metrics["test_nrmse_max_lead"] = float(self.test_lead_time_curve[1][-1])
            if self.trainer.is_global_zero:
                self._save_lead_time_curve(*self.test_lead_time_curve)
        pair = self._rollout_pair("test", None)
        if pair is not None:
            curve = rollout_nrmse(*pair)
            # the rollout's summaries replace all_metrics' one-frame rollout_nrmse_gmean: corr_time
            # (corr_step), rollout_nrmse_gmean, vrmse_1, vrmse_6-12, vrmse_13-30
            metrics.update({f"test_{name}": value for name, value in rollout_metrics(*pair).items()})
            metrics["test_rollout_nrmse_final"] = float(curve[-1])
            self.test_rollout_curve = curve.cpu()
            if self.trainer.is_global_zero:
                self._save_rollout_curve(curve.cpu())
        self.log_dict(metrics, sync_dist=True)  # the whole set's, equal on every rank

    @staticmethod
    def _lead_time_curve(pred: torch.Tensor, target: torch.Tensor, leads: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean nRMSE per distinct lead time: ``(leads (K,), nrmse (K,))``, leads ascending.

        ``pred``, ``target``: ``(N, C, *space)``; ``leads``: ``(N,)``.
        """
        errors = nrmse(pred, target, time_axis=False, reduction="none")
        values, groups = torch.unique(leads, return_inverse=True)
        sums = torch.zeros(len(values), dtype=errors.dtype).index_add_(0, groups, errors)
        counts = torch.zeros(len(values), dtype=errors.dtype).index_add_(0, groups, torch.ones_like(errors))
        return values, sums / counts

    def _save_lead_time_curve(self, leads: torch.Tensor, errors: torch.Tensor) -> None:
        """Write ``lead_time_nrmse.csv`` (lead time as a fraction of the horizon, mean nRMSE) into the
        trainer's log folder."""
        folder = Path(self.trainer.log_dir or self.trainer.default_root_dir)
        folder.mkdir(parents=True, exist_ok=True)
        rows = "\n".join(f"{float(t):.6g},{float(e):.6g}" for t, e in zip(leads, errors))
        (folder / "lead_time_nrmse.csv").write_text("lead_time,nrmse\n" + rows + "\n")
        log.info("lead-time curve written to %s", folder)

    def _save_rollout_curve(self, curve: torch.Tensor) -> None:
        """Write ``rollout_nrmse.csv`` and ``rollout_nrmse.png`` into the trainer's log folder."""
        from pdebench.core.plots import plot_rollout_curve  # matplotlib loads only when a curve is drawn

        folder = Path(self.trainer.log_dir or self.trainer.default_root_dir)
        folder.mkdir(parents=True, exist_ok=True)
        rows = "\n".join(f"{i + 1},{float(v):.6g}" for i, v in enumerate(curve))
        (folder / "rollout_nrmse.csv").write_text("step,nrmse\n" + rows + "\n")
        plot_rollout_curve(curve, folder / "rollout_nrmse.png", label=self.hparams.model)
        log.info("rollout curve written to %s", folder)
