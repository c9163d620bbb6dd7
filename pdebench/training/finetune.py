"""Pre-training on dataset mixtures and fine-tuning from a pre-trained checkpoint (DPOT workflow).

* :class:`MaskedOperatorModule` trains an operator on :class:`~pdebench.data.mixture.MixtureDataModule`
  batches ``(x, y, mask, source)``: padded channels are zeroed on the way in and out of the operator
  and the loss counts only the real channels (:func:`masked_loss`). With plain ``(x, y)`` batches it
  is :class:`~pdebench.training.OperatorModule`.
* :class:`FineTuneModule` starts from the operator weights of a pre-trained checkpoint
  (``pretrained``) and trains the data-specific head (embedding, temporal aggregation, recovery:
  the model's ``head_prefixes``) with ``lr_head`` and the body with ``lr_body``.

Pre-train, then fine-tune, from the command line::

    python train.py fit --config configs/pretrain/dpot_mixture.yaml
    python train.py fit --config configs/pretrain/dpot_finetune.yaml \\
        --model.init_args.pretrained outputs/pretrain_dpot/checkpoints/last.ckpt

Denoising auto-regressive pre-training (Hao et al. 2024) is ``input_noise > 0`` on ``next_step``
windows; nothing else is needed.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from pdebench.core.metrics import all_metrics, geometric_mean_rollout, relative_l2, rollout_nrmse
from pdebench.training.base import OptimConfig
from pdebench.training.losses import REL_L2_EPS, LossName
from pdebench.training.module import OperatorModule
from pdebench.data.mixture import MixtureDataModule

log = logging.getLogger(__name__)

def masked_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, kind: LossName = "rel_l2",
                eps: float = REL_L2_EPS) -> torch.Tensor:
    """Loss over the real channels only.

    Parameters
    ----------
    pred, target
        ``(B, C, *space)``.
    mask
        ``(B, C)`` bool: ``True`` for the channels that count.
    kind
        ``"rel_l2"``: mean over the real ``(b, c)`` of ``‖p_bc − y_bc‖₂ / (‖y_bc‖₂ + ε)``, the norms over
        space (:func:`~pdebench.core.metrics.relative_l2` of the real rows; with every channel real this
        is the platform's ``rel_l2`` loss); ``"mse"``: mean of ``(p − y)²`` over the real ``(b, c)`` and
        all points.

    Returns
    -------
    torch.Tensor
        0-d. Values of the padded channels never enter it, so neither do their gradients.
    """
    if mask.shape != pred.shape[:2] or pred.shape != target.shape:
        raise ValueError(f"need pred, target (B, C, *space) and mask (B, C); got {tuple(pred.shape)}, "
                         f"{tuple(target.shape)}, {tuple(mask.shape)}")
    if not bool(mask.any()):
        raise ValueError("the channel mask selects no channel")
    if kind == "rel_l2":  # (K, points) for the K real (b, c)
        return relative_l2(pred.flatten(2)[mask], target.flatten(2)[mask], batch_dims=1, eps=eps, reduction="mean")
    if kind == "mse":
        return (pred - target).flatten(2)[mask].pow(2).mean()
    raise ValueError(f"masked losses are 'rel_l2' or 'mse', got {kind!r} (h1 has no channel-masked form here)")


class MaskedOperatorModule(OperatorModule):
    """:class:`~pdebench.training.OperatorModule` for channel-masked mixtures (DPOT pre-training).

    Batches are ``(x, y)`` (then nothing changes) or ``(x, y, mask, source)`` from
    :class:`~pdebench.data.mixture.MixtureDataModule`: ``mask (B, C)`` marks each sample's real
    channels. While a masked batch is processed, :meth:`forward` zeroes the padded channels of the
    (normalised) input window and of the output, and the loss is :func:`masked_loss`; so the values
    in padded channels change neither the loss nor the gradients. Validation logs ``val_loss`` and
    ``val_nrmse`` over real channels (in the mixture's normalised units); ``test`` reports the
    metrics per dataset in physical units (``test_<name>_<metric>``) and their mean over datasets
    (``test_<metric>``); rollouts run per dataset and their nRMSE curves are averaged.

    Parameters are those of :class:`~pdebench.training.OperatorModule`.
    """

    #: :class:`~pdebench.data.mixture.MixtureDataModule` checks this before training.
    accepts_channel_masks = True

    def __init__(
        self,
        model: str = "dpot",
        model_args: dict[str, Any] | None = None,
        in_channels: int = 1,
        out_channels: int = 1,
        spatial_dims: int = 2,
        history: int = 1,
        loss: LossName = "rel_l2",
        pushforward: bool = True,
        input_noise: float = 0.0,
        optim: OptimConfig | None = None,
        rollout_trajectories: int = 8,
        noise_seed: int = 0,
    ) -> None:
        super().__init__(model, model_args, in_channels, out_channels, spatial_dims, history, loss, pushforward, input_noise,
                         optim, rollout_trajectories, noise_seed)
        self._plain_loss = self.loss_fn
        self.loss_fn = self._loss
        self._mask: torch.Tensor | None = None
        self._masked_test: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self._dataset_stats: dict[str, Any] | None = None  # a one-file mixture's card, once loaded

    # ---------------------------------------------------------------- rollout
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the statistics of a one-file mixture (its data card's ``stats`` and ``max_channels``),
        with which :meth:`rollout` takes that file's physical frames."""
        super().on_load_checkpoint(checkpoint)
        card = checkpoint.get("pdebench", {}).get("data") or {}
        if card.get("source") == "mixture" and len(card.get("datasets") or []) == 1:
            self._dataset_stats = {"stats": card["datasets"][0].get("stats"), "max_channels": int(card["max_channels"])}

    @torch.no_grad()
    def rollout(self, frames: torch.Tensor, times: Any = None, params: Any = None) -> torch.Tensor:
        """:meth:`Predictor.rollout <pdebench.training.predictor.Predictor.rollout>`: physical
        ``(N, T, C, *space)`` -> ``(N, T − history, C, *space)``.

        A module loaded from a one-file mixture checkpoint sees frames as the mixture did: normalised
        with the file's statistics recorded in the card and padded to ``max_channels``, rolled out
        under the channel mask, mapped back to physical units on its real channels.
        """
        if self._dataset_stats is None:
            return self.autoregress(frames)
        stats = self._dataset_stats["stats"]
        if not stats:
            raise ValueError("the mixture card has no normalisation stats (trained before they were recorded)")
        view = (1, 1, -1) + (1,) * (frames.ndim - 3)
        mean, std = torch.tensor(stats["mean"]).view(view).to(frames), torch.tensor(stats["std"]).view(view).to(frames)
        channels, max_channels = len(stats["mean"]), self._dataset_stats["max_channels"]
        pad = frames.new_zeros(*frames.shape[:2], max_channels - channels, *frames.shape[3:])
        mask = (torch.arange(max_channels) < channels).expand(frames.shape[0], -1)
        with self.channel_mask(mask):
            out = self.autoregress(torch.cat([(frames - mean) / std, pad], dim=2))
        return out[:, :, :channels] * std + mean

    # ------------------------------------------------------------------ masks
    @contextlib.contextmanager
    def channel_mask(self, mask: torch.Tensor | None) -> Iterator[None]:
        """Within the block, :meth:`forward` and the loss use ``mask (B, C_out)`` (``None``: no mask)."""
        previous, self._mask = self._mask, mask
        try:
            yield
        finally:
            self._mask = previous

    def forward(self, x: torch.Tensor, **conditioning: torch.Tensor) -> torch.Tensor:
        """Physical ``(B, C_in, *space)`` -> physical ``(B, C_out, *space)``; under
        :meth:`channel_mask`, padded channels are zero on the normalised input and on the output."""
        if self._mask is None:
            return super().forward(x, **conditioning)
        view = (*self._mask.shape, *([1] * (x.ndim - 2)))
        keep_out = self._mask.to(x.dtype).view(view)
        keep_in = self._mask.repeat(1, self.history).to(x.dtype).view(x.shape[0], -1, *view[2:])
        return self.y_norm.decode(self.model(self.x_norm.encode(x) * keep_in, **conditioning)) * keep_out

    def _loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self._mask is None:
            return self._plain_loss(pred, target)
        return masked_loss(pred, target, self._mask, self.hparams.loss)

    @staticmethod
    def _unpack(batch) -> tuple[tuple[torch.Tensor, ...], torch.Tensor | None, torch.Tensor | None]:
        """``(x, y, mask, source)`` -> ``((x, y), mask, source)``; any other batch -> ``(batch, None, None)``."""
        if len(batch) == 4:
            x, y, mask, source = batch
            if mask.dtype != torch.bool or mask.shape != (x.shape[0], y.shape[2]):
                raise ValueError(f"channel mask must be bool (B, C) = ({x.shape[0]}, {y.shape[2]}), got "
                                 f"{mask.dtype} {tuple(mask.shape)}")
            return (x, y), mask, source
        return tuple(batch), None, None

    # --------------------------------------------------------------- training
    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        plain, mask, _ = self._unpack(batch)
        with self.channel_mask(mask):
            return super().training_step(plain, batch_idx)

    def validation_step(self, batch, batch_idx: int) -> None:
        plain, mask, _ = self._unpack(batch)
        if mask is None:
            return super().validation_step(plain, batch_idx)
        x, y = plain
        with self.channel_mask(mask):
            pred = self(x)
            self.log("val_loss", self.loss_fn(pred, y[:, 0]), prog_bar=True, batch_size=x.shape[0])
        # per-(b, c) nRMSE = ‖p − y‖ / ‖y‖ over the real channels
        self.log("val_nrmse", masked_loss(pred, y[:, 0], mask, "rel_l2"), batch_size=x.shape[0])

    def test_step(self, batch, batch_idx: int) -> None:
        plain, mask, source = self._unpack(batch)
        if mask is None:
            return super().test_step(plain, batch_idx)
        x, y = plain
        with self.channel_mask(mask):
            pred = self(x)
        self._masked_test.append((pred.cpu(), y[:, 0].cpu(), source.cpu()))

    def on_test_epoch_end(self) -> None:
        if not self._masked_test:
            return super().on_test_epoch_end()
        pred = torch.cat([p for p, _, _ in self._masked_test])
        target = torch.cat([t for _, t, _ in self._masked_test])
        source = torch.cat([s for _, _, s in self._masked_test])
        self._masked_test.clear()
        datamodule = self.trainer.datamodule
        metrics: dict[str, float] = {}
        per_source: list[dict[str, float]] = []
        for s in sorted(set(source.tolist())):
            rows = source == s
            # (n, C_max, *space) normalised -> (n, C_s, *space) physical, with a time axis of length one
            p = datamodule.decode(pred[rows].unsqueeze(1), s)[:, 0]
            t = datamodule.decode(target[rows].unsqueeze(1), s)[:, 0]
            scores = all_metrics(p.unsqueeze(-1), t.unsqueeze(-1))
            per_source.append(scores)
            metrics.update({f"test_{datamodule.names[s]}_{name}": value for name, value in scores.items()})
        metrics.update({f"test_{name}": float(sum(m[name] for m in per_source) / len(per_source)) for name in per_source[0]})
        curve = self._rollout_curve("test", None)
        if curve is not None:
            # all_metrics' rollout entry of a one-frame window is the one-step nRMSE: replace it by the rollout's
            for name, source_curve in self.source_rollout_curves.items():
                metrics[f"test_{name}_rollout_nrmse_gmean"] = float(geometric_mean_rollout(source_curve))
                metrics[f"test_{name}_rollout_nrmse_final"] = float(source_curve[-1])
            metrics["test_rollout_nrmse_gmean"] = float(geometric_mean_rollout(curve))
            metrics["test_rollout_nrmse_final"] = float(curve[-1])
            self.test_rollout_curve = curve.cpu()
            self._save_rollout_curve(curve.cpu())
        self.log_dict(metrics)

    def _rollout_curve(self, split: str, count: int | None) -> torch.Tensor | None:
        """Per-step rollout nRMSE; for a mixture, the mean over datasets of each dataset's curve in
        physical units (curves cut to the shortest), with the per-dataset curves kept in
        ``self.source_rollout_curves``."""

        datamodule = getattr(self.trainer, "datamodule", None)
        if not isinstance(datamodule, MixtureDataModule):
            return super()._rollout_curve(split, count)
        if self.trainer.sanity_checking:
            return None
        curves = {}
        for s, name in enumerate(datamodule.names):
            if not len(datamodule.sources[s].splits[split]):
                continue
            frames = datamodule.trajectories(split, s)
            frames = (frames if count is None else frames[:count]).to(self.device)
            if frames.shape[1] <= self.history:
                continue
            mask = datamodule.channel_mask(s).to(self.device).expand(frames.shape[0], -1)
            with self.channel_mask(mask):
                pred = self.autoregress(datamodule.encode(frames, s))
            pred = datamodule.decode(pred, s)
            target = frames[:, self.history :]
            curves[name] = rollout_nrmse(torch.movedim(pred, 1, -1), torch.movedim(target, 1, -1))
        if not curves:
            return None
        self.source_rollout_curves = {name: c.cpu() for name, c in curves.items()}
        steps = min(len(c) for c in curves.values())
        return torch.stack([c[:steps] for c in curves.values()]).mean(0)


def read_pretrained(path: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Hyper-parameters and operator weights of a checkpoint.

    Parameters
    ----------
    path
        A Lightning checkpoint of an :class:`~pdebench.training.OperatorModule` (or subclass), whose
        ``state_dict`` holds the operator under ``model.``; or a file holding the operator's own
        ``state_dict`` (then the hyper-parameters are empty).

    Returns
    -------
    hparams, weights
        ``hparams``: the checkpoint's ``hyper_parameters`` (``model``, ``model_args``,
        ``in_channels``, ...); ``weights``: the operator's tensors, keys without the ``model.`` prefix.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no pre-trained checkpoint at {path}")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, dict):
        raise ValueError(f"{path} holds a {type(checkpoint).__name__}, not a checkpoint or a state_dict")
    if "state_dict" in checkpoint:
        weights = {k[len("model."):]: v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}
        if not weights:
            raise ValueError(f"{path}: the checkpoint's state_dict has no operator weights (keys 'model.*')")
        return dict(checkpoint.get("hyper_parameters", {})), weights
    if not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        raise ValueError(f"{path} is neither a Lightning checkpoint nor a state_dict of tensors")
    return {}, dict(checkpoint)


class FineTuneModule(MaskedOperatorModule):
    """Fine-tune a pre-trained operator: weights from ``pretrained``, two learning rates.

    The operator is rebuilt with the pre-trained checkpoint's ``model`` and ``model_args`` (unless
    given) and loaded with its weights exactly (normalisers are not copied: they are fitted on the
    fine-tuning data). The optimiser has two parameter groups: the head (the model's
    ``head_prefixes``, e.g. DPOT's embedding, temporal aggregation and recovery, or ``head``) at
    ``lr_head`` and the rest (the body) at ``lr_body``; the scheduler anneals both. The data's
    channels and history must match the pre-trained operator's: fine-tune through
    :class:`~pdebench.data.mixture.MixtureDataModule` (one file, the pre-training's
    ``max_channels``) when the new problem has fewer channels.

    Parameters
    ----------
    pretrained
        Checkpoint to start from (:func:`read_pretrained`). ``None``: no pre-trained weights, e.g.
        ``FineTuneModule.load_from_checkpoint(ckpt, pretrained=None)`` of a fine-tuned checkpoint
        whose pre-training file is gone (its weights come from ``ckpt``), or a from-scratch baseline
        with the same two learning rates.
    lr_head, lr_body
        Learning rates of the head and of the body (``lr_body = 0`` freezes the body's values); they
        take the place of ``optim.lr`` (``optim`` gives the optimiser, weight decay and schedule).
    head
        Top-level sub-module names that form the head (default: the model's ``head_prefixes``).
    model, model_args
        Default (``None``): the pre-trained checkpoint's.
    Others
        As :class:`~pdebench.training.OperatorModule`.
    """

    def __init__(
        self,
        pretrained: str | None = None,
        lr_head: float = 1e-3,
        lr_body: float = 1e-4,
        head: list[str] | None = None,
        model: str | None = None,
        model_args: dict[str, Any] | None = None,
        in_channels: int = 1,
        out_channels: int = 1,
        spatial_dims: int = 2,
        history: int = 1,
        loss: LossName = "rel_l2",
        pushforward: bool = True,
        input_noise: float = 0.0,
        optim: OptimConfig | None = None,
        rollout_trajectories: int = 8,
        noise_seed: int = 0,
    ) -> None:
        if lr_head <= 0 or lr_body < 0:
            raise ValueError(f"need lr_head > 0 and lr_body >= 0; got {lr_head}, {lr_body}")
        saved, weights = read_pretrained(pretrained) if pretrained is not None else ({}, None)
        if model is None:
            model = saved.get("model")
            if model is None:
                raise ValueError("model is not set and no pre-trained checkpoint names one: set model (and model_args)")
        if model_args is None:
            model_args = saved.get("model_args")
        elif saved.get("model_args") is not None and dict(model_args) != dict(saved["model_args"]):
            log.warning("model_args %s differ from the pre-trained model's %s", model_args, saved["model_args"])
        if saved.get("model") not in (None, model):
            raise ValueError(f"pretrained checkpoint {pretrained} holds a {saved['model']!r} model, not {model!r}")
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels), ("spatial_dims", spatial_dims),
                            ("history", history)):
            if name in saved and saved[name] != value:
                raise ValueError(f"the pre-trained model has {name}={saved[name]} but the data give {value}; fine-tune "
                                 f"through MixtureDataModule with the pre-training's history and max_channels")
        super().__init__(model, model_args, in_channels, out_channels, spatial_dims, history, loss, pushforward, input_noise,
                         optim, rollout_trajectories, noise_seed)
        # Record the resolved architecture (a fine-tuned checkpoint rebuilds without the pre-trained file).
        self.hparams.update(model=model, model_args=model_args)
        self.head = tuple(head) if head is not None else tuple(getattr(self.model, "head_prefixes", ()))
        if not self.head:
            raise ValueError(f"model {model!r} declares no head_prefixes: name its head sub-modules in head")
        top = {name.split(".")[0] for name, _ in self.model.named_parameters()}
        unknown = sorted(set(self.head) - top)
        if unknown:
            raise ValueError(f"head names {unknown} are not sub-modules of {model!r} ({', '.join(sorted(top))})")
        if weights is not None:
            self.load_pretrained_weights(weights, source=str(pretrained))

    def load_pretrained_weights(self, weights: dict[str, torch.Tensor], source: str = "weights") -> None:
        """Copy ``weights`` (the operator's ``state_dict``) into the operator; names and shapes must match."""
        own = self.model.state_dict()
        missing = sorted(set(own) - set(weights))
        unexpected = sorted(set(weights) - set(own))
        mismatched = sorted(k for k in set(own) & set(weights) if own[k].shape != weights[k].shape)
        if missing or unexpected or mismatched:
            detail = "; ".join(f"{what}: {', '.join(keys[:5])}{' …' if len(keys) > 5 else ''}"
                               for what, keys in (("missing", missing), ("unexpected", unexpected),
                                                  ("shape differs", mismatched)) if keys)
            raise ValueError(f"{source} does not fit the {self.hparams.model!r} operator built here ({detail})")
        self.model.load_state_dict(weights, strict=True)
        log.info("loaded %d pre-trained tensors from %s", len(weights), source)

    def parameter_groups(self) -> list[dict[str, Any]]:
        """``[{"name": "head", "params", "lr": lr_head}, {"name": "body", "params", "lr": lr_body}]``."""
        head, body = [], []
        for name, parameter in self.model.named_parameters():
            (head if name.split(".")[0] in self.head else body).append(parameter)
        if not head or not body:
            raise ValueError(f"head {self.head} leaves {'no head' if not head else 'no body'} parameters to train")
        return [{"name": "head", "params": head, "lr": self.hparams.lr_head},
                {"name": "body", "params": body, "lr": self.hparams.lr_body}]
