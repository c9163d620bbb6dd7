"""DPOT: the auto-regressive denoising operator transformer (Hao et al., ICML 2024), 2D.

A DPOT maps the last ``T`` frames of a trajectory to the next one. Each frame is cut into
``p × p`` patches and embedded, the ``T`` embedded frames are aggregated into one latent field by
learned per-frame maps modulated by Fourier time features, a stack of AFNO blocks (Fourier token
mixing on the kept low modes of the patch grid, then a channel MLP) evolves the latent field, and a
transposed convolution recovers the grid.

Shapes (channels-first, the platform's operator contract)::

    x  (B, T*C, H, W)          T = in_channels // out_channels frames, oldest first
    -> frames (B, T, C, H', W')    H', W' = H, W rounded up to multiples of p (circular padding)
    -> h_t    (B, T, D, h, w)      h = H'/p, w = W'/p            patch embedding of [u_t, x, y]
    -> z      (B, h, w, D)         temporal aggregation
    -> z      (B, h, w, D)         ``depth`` AFNO blocks
    -> y      (B, C, H, W)         recovery (transposed conv, cropped back to H × W)

Equations (``LN`` layer norm, ``F`` the 2D real FFT over the patch grid, ``σ`` GELU applied to real
and imaginary parts):

* patch embedding: ``h_t = W_e2 σ(Conv_{p×p, stride p}([u_t, x, y]))`` with the grid coordinates
  ``x, y ∈ [0, 1)`` as two extra input channels (resolution-independent positions);
* temporal aggregation: ``z = Σ_{t=0}^{T-1} W_t (h_t ⊙ cos(γ t))`` with learned ``W_t ∈ R^{D×D}``
  and learned frequencies ``γ ∈ R^D`` (the real part of the paper's ``Σ_t W_t h_t e^{-iγt}``);
* AFNO block: ``z ← z + F⁻¹[S_λ(MLP_k(F[LN z]_k))]`` where, on each kept mode ``k`` (``|k₁| < m``,
  ``0 ≤ k₂ < m``), ``MLP_k(v) = W₂ σ(W₁ v + b₁) + b₂`` with block-diagonal complex ``W₁, W₂``
  (``num_blocks`` blocks, shared by every mode), ``S_λ`` soft-shrinkage of real and imaginary parts
  (sparsity), and every other mode set to zero; then ``z ← z + W_b σ(W_a LN z)`` (channel MLP);
* recovery: ``y = W_r2 σ(ConvT_{p×p, stride p}(LN z))`` cropped to ``H × W``.

Denoising auto-regressive training (the paper's pre-training) is the ``next_step`` task of the
data modules with :class:`~pdebench.training.OperatorModule`'s ``input_noise``; multi-dataset
pre-training and fine-tuning live in :mod:`pdebench.data.mixture` and
:mod:`pdebench.training.finetune`.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from pdebench.models.contract import constructor_args
from pdebench.models.registry import register_model
from pdebench.registry import check_at_least_one, require_choice

PaddingMode = Literal["circular", "reflect", "replicate", "zeros"]
_PADDING_MODES: tuple[str, ...] = ("circular", "reflect", "replicate", "zeros")


def kept_modes_mask(shape: tuple[int, int], modes: int | None) -> torch.Tensor:
    """Modes an AFNO mixer keeps, in the ``rfft2`` layout.

    Parameters
    ----------
    shape
        ``(h, w)`` of the patch grid.
    modes
        Keep wavenumbers ``|k₁| < modes`` (both signs, first axis) and ``0 ≤ k₂ < modes`` (the
        half axis of the real FFT); ``None`` keeps every mode.

    Returns
    -------
    torch.Tensor
        ``(h, w // 2 + 1)`` bool. The set is symmetric in ``k₁``, so the column ``k₂ = 0`` keeps
        conjugate pairs together.
    """
    h, w = shape
    if modes is None:
        return torch.ones(h, w // 2 + 1, dtype=torch.bool)
    k1 = torch.fft.fftfreq(h, 1.0 / h).abs()
    k2 = torch.arange(w // 2 + 1, dtype=k1.dtype)
    return (k1[:, None] < modes) & (k2[None, :] < modes)


class AFNOMixer(nn.Module):
    """Adaptive Fourier token mixing (Guibas et al. 2022) on a channels-last field.

    ``z (B, h, w, D) -> F⁻¹[S_λ(W₂ σ(W₁ F[z]_k + b₁) + b₂)] (B, h, w, D)`` on the kept modes ``k``
    (:func:`kept_modes_mask`), zero on the others. ``W₁`` is block-diagonal: ``D`` channels split
    into ``num_blocks`` blocks of ``d = D / num_blocks``, each block a complex ``d × d·hidden_factor``
    matrix (``W₂`` the reverse); the same weights serve every mode. The FFT is orthonormal.

    Parameters
    ----------
    channels
        ``D``.
    num_blocks
        Blocks of the block-diagonal weights (``D`` must be divisible by it).
    modes
        Kept wavenumbers per axis (``None``: all).
    hidden_factor
        Width of the complex MLP's hidden layer per block, relative to the block size.
    sparsity
        Soft-shrinkage threshold ``λ`` (``0`` disables it).
    """

    def __init__(self, channels: int, num_blocks: int = 4, modes: int | None = None, hidden_factor: int = 1,
                 sparsity: float = 0.01) -> None:
        super().__init__()
        if channels % num_blocks:
            raise ValueError(f"channels={channels} is not divisible by num_blocks={num_blocks}")
        self.channels, self.num_blocks, self.modes, self.sparsity = channels, num_blocks, modes, sparsity
        block = channels // num_blocks
        hidden = block * hidden_factor
        scale = 0.02
        # complex weights stored as (..., 2) real tensors (real, imaginary)
        self.w1 = nn.Parameter(scale * torch.randn(num_blocks, block, hidden, 2))
        self.b1 = nn.Parameter(scale * torch.randn(num_blocks, hidden, 2))
        self.w2 = nn.Parameter(scale * torch.randn(num_blocks, hidden, block, 2))
        self.b2 = nn.Parameter(scale * torch.randn(num_blocks, block, 2))

    def spectral_mlp(self, v: torch.Tensor) -> torch.Tensor:
        """``S_λ(W₂ σ(W₁ v + b₁) + b₂)`` on complex ``v (..., D)`` -> ``(..., D)``; ``σ`` (GELU) and the soft
        shrinkage ``S_λ(a) = sign(a) max(|a| − λ, 0)`` act on the real and imaginary parts separately."""
        shape = v.shape
        v = v.reshape(*shape[:-1], self.num_blocks, -1)
        w1, b1 = torch.view_as_complex(self.w1), torch.view_as_complex(self.b1)
        w2, b2 = torch.view_as_complex(self.w2), torch.view_as_complex(self.b2)
        hidden = torch.einsum("...ni,nio->...no", v, w1) + b1
        out = torch.einsum("...ni,nio->...no", torch.complex(F.gelu(hidden.real), F.gelu(hidden.imag)), w2) + b2
        if self.sparsity != 0:
            out = torch.complex(F.softshrink(out.real, self.sparsity), F.softshrink(out.imag, self.sparsity))
        return out.reshape(shape)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``(B, h, w, D) -> (B, h, w, D)``."""
        _, h, w, _ = z.shape
        spectrum = torch.fft.rfft2(z, dim=(1, 2), norm="ortho")  # (B, h, w//2+1, D)
        keep = kept_modes_mask((h, w), self.modes).to(z.device)
        mixed = torch.zeros_like(spectrum)
        mixed[:, keep] = self.spectral_mlp(spectrum[:, keep])  # (B, K, D) on the K kept modes
        return torch.fft.irfft2(mixed, s=(h, w), dim=(1, 2), norm="ortho")


class AFNOBlock(nn.Module):
    """``z ← z + AFNOMixer(LN z)``; ``z ← z + W_b σ(W_a LN z)`` on ``(B, h, w, D)``.

    Parameters
    ----------
    channels, num_blocks, modes, hidden_factor, sparsity
        Of the :class:`AFNOMixer`.
    mlp_ratio
        Hidden width of the channel MLP relative to ``D``.
    """

    def __init__(self, channels: int, num_blocks: int = 4, modes: int | None = None, hidden_factor: int = 1,
                 sparsity: float = 0.01, mlp_ratio: float = 2.0) -> None:
        super().__init__()
        hidden = max(1, int(round(channels * mlp_ratio)))
        self.norm1 = nn.LayerNorm(channels)
        self.mixer = AFNOMixer(channels, num_blocks, modes, hidden_factor, sparsity)
        self.norm2 = nn.LayerNorm(channels)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.GELU(), nn.Linear(hidden, channels))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``(B, h, w, D) -> (B, h, w, D)``."""
        z = z + self.mixer(self.norm1(z))
        return z + self.mlp(self.norm2(z))


class TemporalAggregation(nn.Module):
    """``z = Σ_{t=0}^{T-1} W_t (h_t ⊙ cos(γ t))``: ``(B, T, D, h, w) -> (B, h, w, D)``.

    ``W_t`` start at ``I / T`` plus small noise (the mean of the frames), ``γ_d`` spread over
    ``[0, π / T)`` (slow oscillations over the window).

    Parameters
    ----------
    frames
        ``T``.
    channels
        ``D``.
    """

    def __init__(self, frames: int, channels: int) -> None:
        super().__init__()
        self.frames = frames
        eye = torch.eye(channels).expand(frames, channels, channels) / frames
        self.weight = nn.Parameter(eye + 0.02 * torch.randn(frames, channels, channels) / math.sqrt(channels))
        self.gamma = nn.Parameter(torch.arange(channels, dtype=torch.float32) * (math.pi / frames / channels))

    def time_features(self) -> torch.Tensor:
        """``cos(γ t)`` as ``(T, D)``."""
        t = torch.arange(self.frames, dtype=self.gamma.dtype, device=self.gamma.device)
        return torch.cos(t[:, None] * self.gamma[None, :])

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """``(B, T, D, h, w) -> (B, h, w, D)``."""
        modulated = h * self.time_features()[None, :, :, None, None]
        return torch.einsum("btdyx,ted->byxe", modulated, self.weight)


@register_model("dpot", board="operator", description="DPOT: patch embedding, temporal aggregation, AFNO blocks (2D)")
class DPOT(nn.Module):
    """Auto-regressive denoising operator transformer (DPOT), 2D: ``T`` frames -> the next frame.

    See the module docstring for the shapes and equations. The input's ``in_channels`` are the
    ``T = in_channels / out_channels`` history frames of ``C = out_channels`` channels each, oldest
    first (the ``next_step`` windows of :mod:`pdebench.data.datamodules`).

    Parameters
    ----------
    in_channels, out_channels
        ``T·C`` and ``C``.
    dim
        Spatial dimensions; only ``2`` is implemented.
    patch_size
        ``p``: side of the square patches (stride of the embedding convolution). Grids not divisible
        by ``p`` are padded (``padding_mode``) and the output cropped back.
    embed_dim
        ``D``: latent channels.
    depth
        Number of AFNO blocks.
    num_blocks
        Blocks of the AFNO mixers' block-diagonal weights (``D`` must be divisible by it).
    modes
        Fourier modes of the patch grid kept per axis by the mixers (``None``: all).
    mlp_ratio
        Channel-MLP width relative to ``D``.
    hidden_factor
        Width of the mixers' complex MLP per block, relative to the block size.
    sparsity
        Soft-shrinkage threshold ``λ`` of the mixers (``0``: none).
    recovery_channels
        Channels after the transposed convolution, before the last 1×1 convolution.
    positional
        Append the grid coordinates ``x, y ∈ [0, 1)`` to every frame before the embedding.
    padding_mode
        How a grid is padded to a multiple of ``p``: ``"circular"`` (periodic data), ``"reflect"``,
        ``"replicate"`` or ``"zeros"``.

    Attributes
    ----------
    head_prefixes : tuple of str
        Sub-modules that form the data-specific "head" (embedding, temporal aggregation, recovery);
        the AFNO blocks are the "body". :class:`~pdebench.training.finetune.FineTuneModule` gives the
        two groups their own learning rates.

    Examples
    --------
    >>> model = DPOT(in_channels=4, out_channels=1, dim=2, patch_size=4, embed_dim=32, depth=2)
    >>> model(torch.randn(2, 4, 32, 32)).shape
    torch.Size([2, 1, 32, 32])

    References
    ----------
    Hao et al., "DPOT: Auto-Regressive Denoising Operator Transformer for Large-Scale PDE
    Pre-Training", ICML 2024. Guibas et al., "Adaptive Fourier Neural Operators: Efficient Token
    Mixers for Transformers", ICLR 2022.
    """

    head_prefixes: tuple[str, ...] = ("embed", "aggregate", "recover")

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        dim: int = 2,
        patch_size: int = 4,
        embed_dim: int = 64,
        depth: int = 4,
        num_blocks: int = 4,
        modes: int | None = None,
        mlp_ratio: float = 2.0,
        hidden_factor: int = 1,
        sparsity: float = 0.01,
        recovery_channels: int = 32,
        positional: bool = True,
        padding_mode: PaddingMode = "circular",
    ) -> None:
        super().__init__()
        if dim != 2:
            raise ValueError(f"DPOT is implemented for 2D grids only (dim=2); got dim={dim}")
        check_at_least_one(in_channels=in_channels, out_channels=out_channels, patch_size=patch_size, embed_dim=embed_dim,
                           depth=depth, num_blocks=num_blocks, hidden_factor=hidden_factor,
                           recovery_channels=recovery_channels)
        if in_channels % out_channels:
            raise ValueError(f"in_channels={in_channels} must be history * out_channels (out_channels={out_channels}): "
                             f"DPOT reads the input as history frames of out_channels channels")
        if embed_dim % num_blocks:
            raise ValueError(f"embed_dim={embed_dim} is not divisible by num_blocks={num_blocks}")
        if modes is not None and modes < 1:
            raise ValueError(f"modes must be >= 1 or None (all), got {modes}")
        if sparsity < 0 or mlp_ratio <= 0:
            raise ValueError(f"need sparsity >= 0 and mlp_ratio > 0; got {sparsity}, {mlp_ratio}")
        require_choice("padding_mode", padding_mode, _PADDING_MODES)
        self.init_args = constructor_args(self, locals())
        self.frames, self.channels = in_channels // out_channels, out_channels
        self.patch_size, self.positional, self.padding_mode = patch_size, positional, padding_mode
        frame_channels = out_channels + (2 if positional else 0)
        self.embed = nn.Sequential(
            nn.Conv2d(frame_channels, embed_dim, kernel_size=patch_size, stride=patch_size),
            nn.GELU(),
            nn.Conv2d(embed_dim, embed_dim, kernel_size=1),
        )
        self.aggregate = TemporalAggregation(self.frames, embed_dim)
        self.blocks = nn.ModuleList(
            AFNOBlock(embed_dim, num_blocks, modes, hidden_factor, sparsity, mlp_ratio) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(embed_dim)
        self.recover = nn.Sequential(
            nn.ConvTranspose2d(embed_dim, recovery_channels, kernel_size=patch_size, stride=patch_size),
            nn.GELU(),
            nn.Conv2d(recovery_channels, out_channels, kernel_size=1),
        )

    def _pad(self, frames: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W) -> (N, C, H', W')`` with ``H', W'`` the next multiples of ``p``."""
        p = self.patch_size
        pad_h, pad_w = (-frames.shape[-2]) % p, (-frames.shape[-1]) % p
        if not (pad_h or pad_w):
            return frames
        mode = "constant" if self.padding_mode == "zeros" else self.padding_mode
        if mode == "reflect" and (pad_h >= frames.shape[-2] or pad_w >= frames.shape[-1]):
            raise ValueError(f"grid {tuple(frames.shape[-2:])} is too small to reflect-pad to a multiple of {p}")
        return F.pad(frames, (0, pad_w, 0, pad_h), mode=mode)

    def _with_coordinates(self, frames: torch.Tensor) -> torch.Tensor:
        """Append ``x, y ∈ [0, 1)`` (fractions of the padded grid): ``(N, C, H, W) -> (N, C+2, H, W)``."""
        n, _, height, width = frames.shape
        y = torch.arange(height, dtype=frames.dtype, device=frames.device) / height
        x = torch.arange(width, dtype=frames.dtype, device=frames.device) / width
        grid = torch.stack(torch.meshgrid(y, x, indexing="ij"))  # (2, H, W)
        return torch.cat([frames, grid.expand(n, -1, -1, -1)], dim=1)

    def forward(self, x: torch.Tensor, **conditioning: torch.Tensor) -> torch.Tensor:
        """``(B, T·C, H, W) -> (B, C, H, W)``; conditioning is ignored."""
        if x.ndim != 4:
            raise ValueError(f"DPOT expects (B, C, X, Y) input, got shape {tuple(x.shape)}")
        if x.shape[1] != self.frames * self.channels:
            raise ValueError(f"DPOT built for {self.frames} frames x {self.channels} channels = {self.frames * self.channels} "
                             f"input channels; got {x.shape[1]}")
        batch, _, height, width = x.shape
        frames = self._pad(x.reshape(batch * self.frames, self.channels, height, width))
        if self.positional:
            frames = self._with_coordinates(frames)
        h = self.embed(frames)  # (B*T, D, h, w)
        h = h.reshape(batch, self.frames, *h.shape[1:])
        z = self.aggregate(h)  # (B, h, w, D)
        for block in self.blocks:
            z = block(z)
        z = self.norm(z).permute(0, 3, 1, 2)  # (B, D, h, w)
        return self.recover(z)[..., :height, :width]
