r"""MP-PDE training: temporal bundles, time and PDE-parameter conditioning, the pushforward trick.

:class:`BundledOperatorModule` is an :class:`~pdebench.training.module.OperatorModule` for operators
that map a bundle of ``K`` frames to the next ``K`` (``mppde_grid``), trained on
:class:`~pdebench.data.bundles.BundleDataModule` windows ``(x, y, t_last, params)``.

Training step (Brandstetter, Worrall & Welling 2022, §2.3): draw the number of unrolled bundles
``u ∈ {0, …, U}`` (seeded by the global step, so a resumed run repeats it), roll the operator ``u``
bundles forward from the input **without gradient** (the pushforward trick), and take the loss of the
next bundle against ``y[:, u]``:

.. math::
    \tilde u^{(0)} = u^{(0)},\quad \tilde u^{(s)} = \mathrm{sg}\,\mathcal A(\tilde u^{(s-1)};\, t_s, \theta)
    \ (s \le u),\qquad \mathcal L = \ell\big(\mathcal A(\tilde u^{(u)};\, t_u, \theta),\ y_u\big),

with ``t_s = t_last + s K Δt`` the time of the last frame of the ``s``-th bundle and θ the PDE
parameters. The operator is called as ``model(x, t=t, dt=Δt, params=θ)``.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import numpy as np
import torch

from pdebench.core.metrics import nrmse
from pdebench.training.base import OptimConfig
from pdebench.training.losses import LossName
from pdebench.training.module import OperatorModule
from pdebench.training.predictor import SampleParams

log = logging.getLogger(__name__)


class BundledOperatorModule(OperatorModule):
    """Train a temporal-bundling operator (``mppde_grid``) with conditioning and the pushforward trick.

    Parameters
    ----------
    max_unroll
        Largest number ``U`` of bundles rolled out without gradient (at most the data's ``max_unroll``).
    unroll_seed
        The unroll count of step ``s`` is drawn from ``(unroll_seed, s)``.
    model, model_args, in_channels, out_channels, spatial_dims, history, loss, optim, rollout_trajectories
        As :class:`OperatorModule` (``in_channels = out_channels = history = K`` come from the data;
        the loss defaults to MSE on physical values, the paper's; ``optim`` to AdamW at 1e-4 with
        weight decay 1e-8, :attr:`default_optim`).

    Notes
    -----
    ``frame_dt`` (the data's frame interval) is a buffer saved in checkpoints, so a loaded module rolls
    out without its data; so are the names of the PDE parameters it is conditioned on
    (``param_names``, from the data card). :meth:`rollout` takes the frame times and the per-sample
    parameters of the trajectories it predicts.
    """

    default_optim: ClassVar[OptimConfig] = OptimConfig(lr=1e-4, weight_decay=1e-8)

    def __init__(
        self,
        model: str = "mppde_grid",
        model_args: dict[str, Any] | None = None,
        in_channels: int = 25,
        out_channels: int = 25,
        spatial_dims: int = 1,
        history: int = 25,
        loss: LossName = "mse",
        optim: OptimConfig | None = None,
        rollout_trajectories: int = 8,
        max_unroll: int = 2,
        unroll_seed: int = 0,
    ) -> None:
        # LightningCLI needs the typed signature; OperatorModule's input noise and window pushforward
        # are not used (the pushforward here is over bundles, below).
        super().__init__(model=model, model_args=model_args, in_channels=in_channels, out_channels=out_channels,
                         spatial_dims=spatial_dims, history=history, loss=loss, optim=optim,
                         rollout_trajectories=rollout_trajectories)
        if max_unroll < 0:
            raise ValueError(f"max_unroll must be >= 0, got {max_unroll}")
        if self.hparams.in_channels != self.hparams.out_channels:
            raise ValueError(f"a bundle operator maps K frames to K frames; got in_channels={self.hparams.in_channels}, "
                             f"out_channels={self.hparams.out_channels}")
        self.max_unroll, self.unroll_seed = int(max_unroll), int(unroll_seed)
        self.register_buffer("frame_dt", torch.tensor(float("nan"), dtype=torch.float64))
        self.param_names: list[str] = []

    # ------------------------------------------------------------------ model
    @property
    def time_window(self) -> int:
        return int(self.hparams.out_channels)

    def _condition(self, t_last: torch.Tensor, params: torch.Tensor) -> dict[str, torch.Tensor]:
        if not torch.isfinite(self.frame_dt):
            raise ValueError("frame_dt is unknown: fit on a BundleDataModule first, or load a fitted checkpoint")
        dtype = params.dtype if params.is_floating_point() else torch.float32
        return {"t": t_last.to(dtype), "dt": self.frame_dt.to(dtype), "params": params.to(dtype) if params.shape[-1] else None}

    def probe_forward(self, x: torch.Tensor) -> torch.Tensor:
        params = int(getattr(self.model, "init_args", {}).get("params", 0))
        return self.model(x, t=torch.zeros(1), dt=1.0, params=torch.zeros(1, params) if params else None)

    def step_bundle(self, x: torch.Tensor, t_last: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """Next bundle ``(B, K, *space)`` of the physical bundle ``x`` ending at times ``t_last`` ``(B,)``."""
        return self(x, **self._condition(t_last, params))

    def unroll_count(self, step: int) -> int:
        """Bundles rolled out without gradient at global step ``step`` (uniform on ``0..max_unroll``)."""
        if self.max_unroll == 0:
            return 0
        g = torch.Generator().manual_seed(self.unroll_seed * 1_000_003 + int(step))
        return int(torch.randint(0, self.max_unroll + 1, (1,), generator=g))

    # --------------------------------------------------------------- training
    def on_fit_start(self) -> None:
        super().on_fit_start()
        datamodule = self.trainer.datamodule
        times = np.asarray(datamodule.frame_times(), dtype=np.float64)
        dt = np.diff(times)
        if len(dt) == 0 or not np.allclose(dt, dt[0], rtol=1e-6):
            raise ValueError("bundled training needs equally spaced frames")
        if not torch.isfinite(self.frame_dt) or abs(float(self.frame_dt) - dt[0]) > 1e-9 * abs(dt[0]):
            self.frame_dt.fill_(float(dt[0]))
        self.param_names = list(datamodule.param_names)
        if self.max_unroll > datamodule.max_unroll:
            raise ValueError(f"model max_unroll={self.max_unroll} exceeds the data's max_unroll={datamodule.max_unroll}")

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self.param_names = list((checkpoint.get("pdebench", {}).get("data") or {}).get("param_names") or [])

    def _bundle_loss(self, batch, unroll: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y, t_last, params = batch
        k = self.time_window
        step_time = k * self.frame_dt.to(t_last.dtype)
        with torch.no_grad():
            for s in range(unroll):
                x = self.step_bundle(x, t_last + s * step_time, params)
        pred = self.step_bundle(x.detach(), t_last + unroll * step_time, params)
        return self.loss_fn(pred, y[:, unroll]), pred

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        unroll = min(self.unroll_count(self.global_step), batch[1].shape[1] - 1)
        loss, _ = self._bundle_loss(batch, unroll)
        self.log("train_loss", loss, prog_bar=True, batch_size=batch[0].shape[0])
        self.count_samples(batch[0].shape[0])
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        loss, pred = self._bundle_loss(batch, 0)
        self.log("val_loss", loss, prog_bar=True, batch_size=pred.shape[0])
        self.log("val_nrmse", nrmse(pred, batch[1][:, 0], time_axis=False), batch_size=pred.shape[0])

    def test_step(self, batch, batch_idx: int) -> None:
        _, pred = self._bundle_loss(batch, 0)
        self._test_outputs.append((pred.cpu(), batch[1][:, 0].cpu()))

    def _rollout_pair(self, split: str, count: int | None) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(prediction, reference)`` of whole trajectories of ``split`` rolled out bundle by bundle
        (conditioned), in the metrics' ``(N, C, *space, T − K)`` layout."""
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None or not hasattr(datamodule, "split_parameters") or self.trainer.sanity_checking:
            return None
        frames = datamodule.trajectories(split)
        params = datamodule.split_parameters(split)
        if count is not None:
            frames, params = frames[:count], params[:count]
        pred = self.roll_bundles(frames.to(self.device), datamodule.frame_times(), params.to(self.device))
        target = frames[:, self.time_window :].to(self.device)
        return torch.movedim(pred, 1, -1), torch.movedim(target, 1, -1)

    # ---------------------------------------------------------------- rollout
    @torch.no_grad()
    def rollout(self, frames: torch.Tensor, times: np.ndarray | None = None, params: SampleParams | None = None) -> torch.Tensor:
        """:meth:`Predictor.rollout <pdebench.training.predictor.Predictor.rollout>`: bundle by bundle
        from the first ``K`` frames of ``frames`` ``(N, T, 1, *space)`` (or ``(N, T, *space)``) ->
        frames ``K … T − 1``, conditioned on ``times`` (default ``j · frame_dt``) and on the
        ``params`` named in ``param_names``."""
        missing = [name for name in self.param_names if params is None or name not in params]
        if missing:
            raise ValueError(f"the model is conditioned on {', '.join(missing)}; pass them per sample in params")
        values = (torch.stack([torch.as_tensor(np.asarray(params[name], dtype=np.float64)) for name in self.param_names], dim=1)
                  if self.param_names else frames.new_zeros(frames.shape[0], 0))
        return self.roll_bundles(frames, times, values)

    def roll_bundles(self, frames: torch.Tensor, times: np.ndarray | None, params: torch.Tensor) -> torch.Tensor:
        """Bundle-by-bundle prediction from the first ``K`` frames of ``frames``.

        Parameters
        ----------
        frames
            ``(N, T, 1, *space)`` or ``(N, T, *space)`` physical trajectories (only the first ``K``
            frames are read).
        times
            ``(≥ K,)`` frame times (``None``: ``j · frame_dt``); the conditioning time of the first
            bundle is ``times[K − 1]``.
        params
            ``(N, P)`` PDE parameters in ``param_names`` order (``P = 0`` when the model has none).

        Returns
        -------
        torch.Tensor
            Frames ``K … T − 1``, shaped as ``frames``.
        """
        k = self.time_window
        n = frames.shape[0]
        steps = frames.shape[1] - k
        squeeze = frames.ndim >= 4 and frames.shape[2] == 1
        window = frames[:, :k, 0] if squeeze else frames[:, :k]
        t0 = float(times[k - 1]) if times is not None else (k - 1) * float(self.frame_dt)
        if params.shape[0] != n:
            raise ValueError(f"params has {params.shape[0]} rows for {n} trajectories")
        params = params.to(device=window.device, dtype=window.dtype)
        out, made, bundle = [], 0, 0
        while made < steps:
            t_last = torch.full((n,), t0 + bundle * k * float(self.frame_dt), dtype=window.dtype, device=window.device)
            window = self.step_bundle(window, t_last, params)
            out.append(window)
            made += k
            bundle += 1
        pred = torch.cat(out, dim=1)[:, :steps]
        return pred.unsqueeze(2) if squeeze else pred
