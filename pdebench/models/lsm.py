"""Latent Spectral Model (LSM; Wu et al., ICML 2023): a U-Net whose skips pass neural spectral blocks.

The model, for ``x: (B, C_in, *space) -> (B, C_out, *space)`` with ``len(space) == dim``:

1. *Lift.* The grid coordinates (in [0, 1] per axis, optional) are appended to the input channels and
   a 1x1 convolution maps them to ``width`` features.
2. *Pad.* Each spatial size ``n`` is padded (``"replicate"`` mode, split as evenly as possible
   between the two ends) to the next multiple of ``q = 2**levels * k`` with ``k = patch_size`` (or
   ``k = num_patches``): then every max-pool halves the size exactly and every level splits into
   whole patches. The padding is cropped off again before the projection, so the output has the
   input's size. No padding happens when ``n`` is already a multiple of ``q``.
3. *U-Net backbone.* Level 0 applies a block (two ``conv3 -> norm -> activation``); level ``i``
   (``1 <= i <= levels``) max-pools by 2 and applies a block. The features are
   ``w, 2w, 4w, ..., 2**(levels-1) w`` and the bottom (``i = levels``) repeats the last one: with
   ``levels=4`` they are ``w, 2w, 4w, 8w, 8w``, the paper's. The decoder goes up from the bottom:
   linear/bilinear up-sampling by 2, concatenation with the *processed* skip features of that level,
   a block down to the next finer level's width.
4. *Neural spectral block at every level.* The features of level ``i`` (the bottom included) go
   through a :class:`NeuralSpectralBlock` before the decoder uses them.
5. *Project.* A 1x1 convolution to ``projection_channels``, GELU, a 1x1 convolution to ``C_out``.

Neural spectral block (:class:`NeuralSpectralBlock`), on features ``x`` of ``C`` channels:

* *Patchify* into patches of ``p`` pixels per axis (``P = p**dim`` pixels per patch); each patch is
  processed alone, with the same weights.
* *Encode* (cross-attention pixels -> tokens, ``heads`` heads of ``d = C / heads`` channels): with
  ``T = num_tokens`` learned latent tokens ``z0 (heads, T, d)`` shared by all patches and samples,
  ``[K, V] = x W_kv``, ``z = z0 + softmax(z0 K^T / sqrt(d)) V``, giving ``T`` tokens of ``C``
  channels per patch.
* *Spectral update*, per channel ``c`` (:class:`SpectralUpdate`), with ``M = basis``::

      z_c <- z_c + sum_{m=0}^{M-1} ( a_{c,m} sin(m pi z_c / M) + b_{c,m} cos(m pi z_c / M) )

  ``a, b`` of shape ``(C, M)`` are learned; each term is one of the paper's "basis operators", the
  coefficients its weights.
* *Decode* (cross-attention tokens -> pixels): ``Q = x W_q``, ``x <- x + softmax(Q z^T / sqrt(d)) z``
  (the updated tokens are keys and values), then un-patchify.

Differences from the authors' release, on purpose: the attention logits are scaled by
``1/sqrt(d)``; the blocks use ``norm`` (group norm by default, independent of the batch) and GELU;
the padding is replicate-padding split between both ends (not zeros at the end); any ``levels``
and 1D/2D/3D grids come from one n-dimensional implementation.

References
----------
.. [1] H. Wu, T. Hu, H. Luo, J. Wang, M. Long. "Solving High-Dimensional PDEs with Latent Spectral
   Models". ICML 2023, PMLR 202:37417-37438, arXiv:2301.12664.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from pdebench.models.contract import check_input, constructor_args
from pdebench.models.registry import register_model
from pdebench.models.unet import _ACTIVATIONS, _CONV, _NORMS, _PADDING_MODES, _POOL, _Block
from pdebench.registry import require_choice, require_int

_INTERPOLATION = {1: "linear", 2: "bilinear", 3: "trilinear"}


class SpectralUpdate(nn.Module):
    """Per-channel update of latent tokens with a learned sine/cosine basis (LSM's transition).

    ``z: (..., C) -> (..., C)``, channels last::

        z_c <- z_c + sum_{m=0}^{M-1} ( a[c, m] sin(m pi z_c / M) + b[c, m] cos(m pi z_c / M) )

    Parameters
    ----------
    channels : int
        ``C``, the number of channels (each has its own coefficients).
    basis : int
        ``M``, the number of basis frequencies ``m = 0 .. M-1``. The ``m = 0`` cosine is a per-channel
        bias; the ``m = 0`` sine is identically zero (its coefficient gets no gradient).

    Attributes
    ----------
    sin_weight, cos_weight : nn.Parameter
        ``a`` and ``b``, each of shape ``(C, M)``.
    """

    def __init__(self, channels: int, basis: int) -> None:
        super().__init__()
        for name, value in (("channels", channels), ("basis", basis)):
            require_int(name, value, 1, "SpectralUpdate: ")
        self.channels, self.basis = channels, basis
        self.sin_weight = nn.Parameter(torch.empty(channels, basis))
        self.cos_weight = nn.Parameter(torch.empty(channels, basis))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Small random coefficients: the update starts close to the identity."""
        nn.init.normal_(self.sin_weight, std=0.02)
        nn.init.normal_(self.cos_weight, std=0.02)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``z: (..., C)`` -> updated ``(..., C)`` (see the class docstring for the formula)."""
        if z.shape[-1] != self.channels:
            raise ValueError(f"SpectralUpdate expects {self.channels} channels last, got shape {tuple(z.shape)}")
        frequencies = torch.arange(self.basis, dtype=z.dtype, device=z.device) * (math.pi / self.basis)  # m pi / M
        phase = z.unsqueeze(-1) * frequencies  # (..., C, M)
        return z + (torch.sin(phase) * self.sin_weight).sum(-1) + (torch.cos(phase) * self.cos_weight).sum(-1)


class NeuralSpectralBlock(nn.Module):
    """LSM's neural spectral block: patchify, pixels -> latent tokens, spectral update, tokens -> pixels.

    ``x: (B, C, *space) -> (B, C, *space)``; every spatial size must be a multiple of the patch size
    (``patch_size``), or of ``num_patches`` (then the patch size is ``size // num_patches``). See the
    module docstring for the equations.

    Parameters
    ----------
    channels : int
        ``C``; must be divisible by ``heads``.
    dim : int
        Number of spatial dimensions (1, 2 or 3).
    patch_size, num_patches : int or None
        Pixels per patch along each axis, or patches along each axis; exactly one is set.
    num_tokens : int
        Latent tokens per patch ``T``.
    heads : int
        Attention heads.
    basis : int
        ``M`` of :class:`SpectralUpdate`.
    """

    def __init__(
        self,
        channels: int,
        dim: int,
        patch_size: int | None = None,
        num_patches: int | None = None,
        num_tokens: int = 4,
        heads: int = 8,
        basis: int = 12,
    ) -> None:
        super().__init__()
        for name, value in (("channels", channels), ("heads", heads), ("num_tokens", num_tokens)):
            require_int(name, value, 1, "NeuralSpectralBlock: ")
        if (patch_size is None) == (num_patches is None):
            raise ValueError(f"NeuralSpectralBlock: set exactly one of patch_size and num_patches, got "
                             f"patch_size={patch_size!r}, num_patches={num_patches!r}")
        if channels % heads:
            raise ValueError(f"NeuralSpectralBlock: channels={channels} must be divisible by heads={heads}")
        self.channels, self.dim, self.heads, self.num_tokens = channels, dim, heads, num_tokens
        self.patch_size, self.num_patches = patch_size, num_patches
        self.head_dim = channels // heads
        self.latent = nn.Parameter(torch.empty(heads, num_tokens, self.head_dim))
        nn.init.normal_(self.latent, std=0.02)
        self.to_kv = nn.Linear(channels, 2 * channels)
        self.to_q = nn.Linear(channels, channels)
        self.spectral = SpectralUpdate(channels, basis)

    def patch_shape(self, space: tuple[int, ...]) -> tuple[int, ...]:
        """Pixels per patch along each axis for a feature map of spatial shape ``space``."""
        if self.patch_size is not None:
            patch = (self.patch_size,) * len(space)
        else:
            patch = tuple(n // self.num_patches for n in space)
        bad = [n for n, p in zip(space, patch) if p < 1 or n % p]
        if bad:
            what = f"patch_size={self.patch_size}" if self.patch_size is not None else f"num_patches={self.num_patches}"
            raise ValueError(f"NeuralSpectralBlock: spatial shape {tuple(space)} does not split into whole patches ({what})")
        return patch

    def _split_heads(self, t: torch.Tensor) -> torch.Tensor:
        """``(N, L, C) -> (N, heads, L, d)``."""
        return t.unflatten(-1, (self.heads, self.head_dim)).transpose(1, 2)

    @staticmethod
    def _merge_heads(t: torch.Tensor) -> torch.Tensor:
        """``(N, heads, L, d) -> (N, L, C)``."""
        return t.transpose(1, 2).flatten(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x: (B, C, *space) -> (B, C, *space)``."""
        batch, channels, *space = x.shape
        patch = self.patch_shape(tuple(space))
        grid = [n // p for n, p in zip(space, patch)]
        d = len(space)
        # Patchify: (B, C, g1, p1, ..., gd, pd) -> (B, g1..gd, p1..pd, C) -> (B * G, P, C).
        split = x.reshape(batch, channels, *[s for pair in zip(grid, patch) for s in pair])
        order = [0, *range(2, 2 + 2 * d, 2), *range(3, 3 + 2 * d, 2), 1]
        pixels = split.permute(order).reshape(-1, math.prod(patch), channels)

        # Encode: learned tokens attend to the patch's pixels.
        keys, values = self.to_kv(pixels).chunk(2, dim=-1)
        latent = self.latent.unsqueeze(0).expand(pixels.shape[0], -1, -1, -1)  # (N, h, T, d)
        tokens = latent + F.scaled_dot_product_attention(latent, self._split_heads(keys), self._split_heads(values))
        # Spectral update per channel, then decode: pixels attend to the updated tokens.
        tokens = self._split_heads(self.spectral(self._merge_heads(tokens)))
        queries = self._split_heads(self.to_q(pixels))
        pixels = pixels + self._merge_heads(F.scaled_dot_product_attention(queries, tokens, tokens))

        # Un-patchify: the inverse of the permutation above.
        out = pixels.reshape(batch, *grid, *patch, channels).permute([order.index(k) for k in range(len(order))])
        return out.reshape(batch, channels, *space)


@register_model("lsm", board="operator", description="Latent Spectral Model (U-Net with neural spectral blocks), 1D/2D/3D")
class LSM(nn.Module):
    """Latent Spectral Model: a U-Net whose skip features pass neural spectral blocks.

    Maps ``x: (B, in_channels, *space) -> (B, out_channels, *space)``, ``len(space) == dim``, at any
    resolution (inputs are replicate-padded to a valid size and cropped back; see the module
    docstring for the architecture and the equations).

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of the input and the output.
    dim : int, optional
        Number of spatial dimensions, 1, 2 or 3. Default 1.
    width : int, optional
        ``w``: features of the finest level; level ``i`` has ``w * 2**min(i, levels-1)`` (with
        ``levels=4``: ``w, 2w, 4w, 8w, 8w``). Must be divisible by ``heads``. Default 32.
    levels : int, optional
        Number of 2x down-samplings. Default 4.
    patch_size : int or None, optional
        Pixels per patch along each axis, the same at every level. Default (when ``num_patches`` is
        not set either) 3, i.e. padding to multiples of ``3 * 2**levels`` (85 -> 96 with ``levels=4``).
    num_patches : int or None, optional
        Alternatively, patches per axis at every level (patch size = level size // ``num_patches``);
        sizes are padded to multiples of ``num_patches * 2**levels``. Set at most one of the two.
    num_tokens : int, optional
        Latent tokens per patch. Default 4.
    heads : int, optional
        Attention heads of the neural spectral blocks. Default 8.
    basis : int, optional
        ``M``, sine/cosine basis size of the spectral update. Default 12.
    projection_channels : int, optional
        Hidden channels of the final two-layer pointwise projection. Default 128.
    norm : {"group", "batch", "none"}, optional
        Normalisation in the convolution blocks. ``"group"`` (default) does not depend on the batch.
    activation : {"gelu", "relu", "tanh"}, optional
        Activation in the convolution blocks. Default ``"gelu"``.
    padding_mode : {"zeros", "circular"}, optional
        Padding of the 3-point convolutions. Default ``"zeros"`` (the size padding breaks periodicity
        anyway unless the size is already valid).
    positional_embedding : bool, optional
        Append the grid coordinates (``linspace(0, 1, n)`` per axis) to the input. Default True.

    Attributes
    ----------
    init_args : dict
        The constructor arguments; ``LSM(**model.init_args)`` rebuilds the architecture.

    Examples
    --------
    >>> import torch
    >>> model = LSM(in_channels=1, out_channels=1, dim=2, width=8, levels=2)
    >>> model(torch.randn(2, 1, 25, 25)).shape  # padded to 36 x 36 inside, cropped back
    torch.Size([2, 1, 25, 25])
    >>> model.padded_shape((25, 25))
    (36, 36)
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        dim: int = 1,
        width: int = 32,
        levels: int = 4,
        patch_size: int | None = None,
        num_patches: int | None = None,
        num_tokens: int = 4,
        heads: int = 8,
        basis: int = 12,
        projection_channels: int = 128,
        norm: Literal["group", "batch", "none"] = "group",
        activation: Literal["gelu", "relu", "tanh"] = "gelu",
        padding_mode: Literal["zeros", "circular"] = "zeros",
        positional_embedding: bool = True,
    ) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels), ("width", width),
                            ("levels", levels), ("num_tokens", num_tokens), ("heads", heads), ("basis", basis),
                            ("projection_channels", projection_channels)):
            require_int(name, value, 1, "LSM: ")
        if not isinstance(dim, int) or isinstance(dim, bool) or dim not in _CONV:
            raise ValueError(f"LSM: dim (number of spatial dimensions) must be 1, 2 or 3, got {dim!r}")
        if patch_size is not None and num_patches is not None:
            raise ValueError(f"LSM: set at most one of patch_size and num_patches, got patch_size={patch_size!r}, "
                             f"num_patches={num_patches!r}")
        for name, value in (("patch_size", patch_size), ("num_patches", num_patches)):
            if value is not None:
                require_int(name, value, 1, "LSM: ")
        if width % heads:
            raise ValueError(f"LSM: width={width} must be divisible by heads={heads} (every level's channels are "
                             f"split between the attention heads)")
        for name, value, choices in (("norm", norm, _NORMS), ("activation", activation, _ACTIVATIONS),
                                     ("padding_mode", padding_mode, _PADDING_MODES)):
            require_choice(name, value, choices, "LSM: ")
        if not isinstance(positional_embedding, bool):
            raise ValueError(f"LSM: positional_embedding must be True or False, got {positional_embedding!r}")

        self.init_args: dict[str, Any] = constructor_args(self, locals())
        if patch_size is None and num_patches is None:
            patch_size = 3
        self.in_channels, self.out_channels, self.dim, self.levels = in_channels, out_channels, dim, levels
        self.patch_size, self.num_patches = patch_size, num_patches
        self.positional_embedding = positional_embedding

        conv = _CONV[dim]
        block = dict(dim=dim, norm=norm, activation=activation, padding_mode=padding_mode)
        self.features = [width * 2 ** min(i, levels - 1) for i in range(levels + 1)]
        f = self.features

        self.lift = conv(in_channels + (dim if positional_embedding else 0), f[0], kernel_size=1)
        self.encoders = nn.ModuleList([_Block(f[0], f[0], **block)])
        self.encoders.extend(_Block(f[i - 1], f[i], **block) for i in range(1, levels + 1))
        self.pool = _POOL[dim](kernel_size=2, stride=2)
        spectral = dict(dim=dim, patch_size=patch_size, num_patches=num_patches, num_tokens=num_tokens, heads=heads,
                        basis=basis)
        self.spectral_blocks = nn.ModuleList(NeuralSpectralBlock(c, **spectral) for c in f)
        # Decoder, coarsest first: level i gets the up-sampled coarser features (f[i+1] channels, or
        # f[i] after the first decoder) and its own processed skip (f[i]); it outputs f[i-1] (f[0] at i = 0).
        self.decoders = nn.ModuleList()
        for i in reversed(range(levels)):
            c_up = f[levels] if i == levels - 1 else f[i]
            self.decoders.append(_Block(c_up + f[i], f[max(i - 1, 0)], **block))
        self.project = nn.Sequential(conv(f[0], projection_channels, kernel_size=1), nn.GELU(),
                                     conv(projection_channels, out_channels, kernel_size=1))

    @property
    def divisor(self) -> int:
        """Spatial sizes are padded to a multiple of this: ``2**levels * (patch_size or num_patches)``."""
        return 2**self.levels * (self.patch_size if self.patch_size is not None else self.num_patches)

    def padded_shape(self, space: tuple[int, ...]) -> tuple[int, ...]:
        """The spatial shape the backbone runs at for an input of spatial shape ``space``."""
        q = self.divisor
        return tuple(-(-n // q) * q for n in space)

    def _grid(self, x: torch.Tensor) -> torch.Tensor:
        """Coordinates ``(B, dim, *space)`` in [0, 1] per axis."""
        axes = [torch.linspace(0, 1, n, dtype=x.dtype, device=x.device) for n in x.shape[2:]]
        grid = torch.stack(torch.meshgrid(*axes, indexing="ij"))
        return grid.unsqueeze(0).expand(x.shape[0], *grid.shape)

    def forward(self, x: torch.Tensor, **conditioning: Any) -> torch.Tensor:
        """``(B, in_channels, *space) -> (B, out_channels, *space)``, ``len(space) == dim``, any sizes >= 1;
        ``conditioning`` (the operator contract's) is ignored."""
        check_input(x, f"LSM(dim={self.dim})", self.in_channels, self.dim)
        space = tuple(x.shape[2:])
        if self.positional_embedding:
            x = torch.cat([x, self._grid(x)], dim=1)
        x = self.lift(x)

        # Replicate-pad to the valid size, split between both ends of each axis (F.pad lists the last axis first).
        extra = [m - n for n, m in zip(space, self.padded_shape(space))]
        pads = [(e // 2, e - e // 2) for e in extra]
        if any(extra):
            x = F.pad(x, [p for pair in reversed(pads) for p in pair], mode="replicate")

        skips = []
        for i, encoder in enumerate(self.encoders):
            x = encoder(x if i == 0 else self.pool(x))
            skips.append(x)
        x = self.spectral_blocks[-1](skips[-1])
        for decoder, i in zip(self.decoders, reversed(range(self.levels))):
            up = F.interpolate(x, size=skips[i].shape[2:], mode=_INTERPOLATION[self.dim], align_corners=False)
            x = decoder(torch.cat([up, self.spectral_blocks[i](skips[i])], dim=1))

        if any(extra):
            x = x[(slice(None), slice(None), *(slice(lo, lo + n) for (lo, _), n in zip(pads, space)))]
        return self.project(x)
