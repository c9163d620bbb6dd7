"""PDEBench-style U-Net baseline, one n-dimensional implementation for 1D, 2D and 3D grids.

The architecture is the Ronneberger et al. (2015) U-Net as PDEBench (Takamoto et al. 2022) uses it
for its baselines: ``levels`` encoder blocks with ``width * 2**i`` features, each followed by a 2x
max-pool; a bottleneck block with ``width * 2**levels`` features; a decoder that up-samples by a 2x
transposed convolution, concatenates the encoder features of the same resolution (the skip
connection) and applies a block; and a final 1x1 convolution to the output channels. A block is two
``conv(k=3, padding=1) -> norm -> activation`` layers.

Every spatial size must be divisible by ``2**levels`` so that each pooling halves it exactly and
the decoder returns to the input resolution; :meth:`UNet.forward` checks this before any compute.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torch import nn

from pdebench.models.contract import check_input, constructor_args
from pdebench.models.registry import register_model
from pdebench.registry import require_choice, require_int

_NORMS: tuple[str, ...] = ("batch", "group", "none")
_ACTIVATIONS: dict[str, type[nn.Module]] = {"gelu": nn.GELU, "relu": nn.ReLU, "tanh": nn.Tanh}
_PADDING_MODES: tuple[str, ...] = ("zeros", "circular")

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_CONV_T = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_POOL = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}
_BATCH_NORM = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}


def _group_count(channels: int) -> int:
    """GroupNorm groups for ``channels``: a power-of-two divisor of ``channels``, at most 8, with at
    least 4 channels per group where possible (so narrow layers still normalise over several
    channels, not one)."""
    groups = math.gcd(channels, 8)
    while groups > 1 and channels // groups < 4:
        groups //= 2
    return groups


def _norm(kind: str, dim: int, channels: int) -> nn.Module:
    if kind == "batch":
        return _BATCH_NORM[dim](channels)
    if kind == "group":
        return nn.GroupNorm(_group_count(channels), channels)
    return nn.Identity()


class _Block(nn.Sequential):
    """Two ``conv(k=3, padding=1) -> norm -> activation`` layers: ``(B, c_in, *s) -> (B, c_out, *s)``."""

    def __init__(self, c_in: int, c_out: int, dim: int, norm: str, activation: str, padding_mode: str) -> None:
        layers: list[nn.Module] = []
        for c in (c_in, c_out):
            layers += [
                # A bias before a normalisation is cancelled by it, so only "none" keeps one.
                _CONV[dim](c, c_out, kernel_size=3, padding=1, padding_mode=padding_mode, bias=norm == "none"),
                _norm(norm, dim, c_out),
                _ACTIVATIONS[activation](),
            ]
        super().__init__(*layers)


@register_model("unet", board="operator", description="PDEBench-style U-Net (1D/2D)")
class UNet(nn.Module):
    """PDEBench-style U-Net: a convolutional encoder-decoder with skip connections.

    Maps ``x: (B, in_channels, *space) -> (B, out_channels, *space)`` with ``len(space) == dim``.
    The encoder has ``levels`` blocks of ``width, 2 width, ..., 2**(levels-1) width`` features, each
    followed by a 2x max-pool; the bottleneck has ``2**levels width`` features; the decoder mirrors
    the encoder with 2x transposed convolutions and concatenated skip features; a final 1x1
    convolution gives the output channels. Each block is two ``conv(k=3, padding=1) -> norm ->
    activation`` layers. With the defaults (``levels=4``) the features are ``w, 2w, 4w, 8w`` and the
    bottleneck ``16w``, as in PDEBench's baseline.

    Parameters
    ----------
    in_channels : int
        Number of input channels (for an autoregressive model, history frames x field components).
    out_channels : int
        Number of output channels.
    dim : int, optional
        Number of spatial dimensions, 1, 2 or 3. Default 1.
    width : int, optional
        Features of the first (finest) level; level ``i`` has ``width * 2**i``. Default 32.
    levels : int, optional
        Number of down-sampling steps. Every spatial size of an input must be divisible by
        ``2**levels``. Default 4.
    norm : {"batch", "group", "none"}, optional
        Normalisation after each convolution. ``"group"`` (default) uses up to 8 groups with at
        least 4 channels per group where the layer is wide enough; it is independent of the batch,
        so a prediction does not depend on the other samples. ``"batch"`` is PDEBench's choice.
    activation : {"gelu", "relu", "tanh"}, optional
        Activation after each normalisation. Default ``"gelu"``.
    padding_mode : {"zeros", "circular"}, optional
        Padding of the 3-point convolutions. ``"circular"`` (default) suits periodic domains: the
        model then commutes with periodic shifts by multiples of ``2**levels`` grid points (with
        ``norm="group"`` or ``"none"``, or ``"batch"`` in eval mode). ``"zeros"`` suits bounded domains.

    Attributes
    ----------
    init_args : dict
        The constructor arguments as plain Python values; ``UNet(**model.init_args)`` rebuilds the
        same architecture (a checkpoint stores these next to the ``state_dict``).

    Examples
    --------
    >>> import torch
    >>> model = UNet(in_channels=3, out_channels=1, dim=1, width=8)
    >>> model(torch.randn(2, 3, 64)).shape
    torch.Size([2, 1, 64])
    >>> model2d = UNet(in_channels=2, out_channels=2, dim=2, width=8, levels=3)
    >>> model2d(torch.randn(2, 2, 32, 32)).shape
    torch.Size([2, 2, 32, 32])

    References
    ----------
    .. [1] O. Ronneberger, P. Fischer, T. Brox. "U-Net: Convolutional Networks for Biomedical Image
       Segmentation". MICCAI 2015, arXiv:1505.04597.
    .. [2] M. Takamoto, T. Praditia, R. Leiteritz, D. MacKinlay, F. Alesiani, D. Pflüger,
       M. Niepert. "PDEBench: An Extensive Benchmark for Scientific Machine Learning".
       NeurIPS 2022 Datasets and Benchmarks, arXiv:2210.07182.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        dim: int = 1,
        width: int = 32,
        levels: int = 4,
        norm: Literal["batch", "group", "none"] = "group",
        activation: Literal["gelu", "relu", "tanh"] = "gelu",
        padding_mode: Literal["zeros", "circular"] = "circular",
    ) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels), ("width", width), ("levels", levels)):
            require_int(name, value, 1, "UNet: ")
        if not isinstance(dim, int) or isinstance(dim, bool) or dim not in _CONV:
            raise ValueError(f"UNet: dim (number of spatial dimensions) must be 1, 2 or 3, got {dim!r}")
        for name, value, choices in (("norm", norm, _NORMS), ("activation", activation, _ACTIVATIONS),
                                     ("padding_mode", padding_mode, _PADDING_MODES)):
            require_choice(name, value, choices, "UNet: ")

        self.init_args: dict[str, Any] = constructor_args(self, locals())
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.dim = dim
        self.levels = levels

        block = dict(dim=dim, norm=norm, activation=activation, padding_mode=padding_mode)
        features = [width * 2**i for i in range(levels + 1)]  # encoder levels, then the bottleneck

        self.encoders = nn.ModuleList()
        c_prev = in_channels
        for c in features[:-1]:
            self.encoders.append(_Block(c_prev, c, **block))
            c_prev = c
        self.pool = _POOL[dim](kernel_size=2, stride=2)
        self.bottleneck = _Block(features[-2], features[-1], **block)

        # Decoder, coarsest level first: up-sample 2c -> c, concatenate the skip (c), block 2c -> c.
        self.upsamples = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for c in reversed(features[:-1]):
            self.upsamples.append(_CONV_T[dim](2 * c, c, kernel_size=2, stride=2))
            self.decoders.append(_Block(2 * c, c, **block))
        self.head = _CONV[dim](features[0], out_channels, kernel_size=1)

    @property
    def divisor(self) -> int:
        """Every spatial size of an input must be a multiple of this (``2**levels``)."""
        return 2**self.levels

    def _check_input(self, x: torch.Tensor) -> None:
        check_input(x, f"UNet(dim={self.dim})", self.in_channels, self.dim)
        for n in x.shape[2:]:
            if n % self.divisor:
                raise ValueError(
                    f"spatial size {n} is not divisible by {self.divisor} (levels={self.levels}); "
                    f"resample or lower levels (input shape {tuple(x.shape)})"
                )

    def forward(self, x: torch.Tensor, **conditioning: Any) -> torch.Tensor:
        """Apply the U-Net.

        Parameters
        ----------
        x : torch.Tensor
            Input of shape ``(B, in_channels, *space)``, ``len(space) == dim``, each spatial size
            divisible by ``2**levels``.
        **conditioning
            Accepted for the operator contract and ignored (this baseline is unconditioned).

        Returns
        -------
        torch.Tensor
            Output of shape ``(B, out_channels, *space)``.
        """
        self._check_input(x)
        skips: list[torch.Tensor] = []
        for encoder in self.encoders:
            x = encoder(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        for upsample, decoder, skip in zip(self.upsamples, self.decoders, reversed(skips)):
            x = decoder(torch.cat([upsample(x), skip], dim=1))
        return self.head(x)
