"""scOT: the scalable Operator Transformer of Poseidon (Herde et al. 2024), a lead-time-conditioned
shifted-window (Swin V2) U-Net over patches, for 2D fields.

Architecture (channels-last tokens ``(B, H, W, C)`` inside)
-----------------------------------------------------------
* **Patch embedding**: a ``p x p`` convolution with stride ``p`` maps ``(B, C_in, X, Y)`` to
  ``(B, X/p, Y/p, embed_dim)`` tokens, followed by a time-conditioned LayerNorm.
* **Encoder**: stage ``i = 0 … S-1`` has ``embed_dim * 2**i`` channels and ``depths[i]`` Swin V2
  blocks with ``num_heads[i]`` heads; between stages *patch merging* concatenates each 2x2 group
  of tokens (``4C``), maps it linearly to ``2C`` and normalises.
* **Decoder**: from the coarsest stage back to stage 0, *patch expansion* maps ``C -> 2C``
  linearly and rearranges it into a 2x2 group of ``C/2`` tokens (normalised); the skip connection
  of the encoder stage at the same resolution is concatenated and mapped back to ``C/2``
  linearly, then ``depths[i]`` blocks follow.
* **Patch recovery**: a ``p x p`` transposed convolution with stride ``p`` back to the grid, a
  GELU and a ``5 x 5`` convolution to ``C_out`` channels.

A Swin V2 block (Liu et al. 2022) is residual *post-norm* self-attention in non-overlapping
windows, then an MLP::

    z ← z + LN_t(W-MSA(z)),      z ← z + LN_t(MLP(z)),

where odd-numbered blocks of a stage shift the windows by half a window (cyclic roll with an
attention mask, so tokens only attend to tokens that are neighbours in the grid). Attention is
*scaled cosine* attention with a learned per-head temperature ``τ`` (``exp(τ) ≤ 100``) and a
continuous relative position bias ``16 σ(MLP(log-spaced Δ))``:

    Attn(Q, K, V) = softmax( cos(q_i, k_j) · e^τ + B_ij ) V.

**Time-conditioned LayerNorm** (Poseidon, eq. for ``LN_{α(t), β(t)}``): every LayerNorm of the
network (embedding, blocks, merging, expansion) takes the lead time ``t`` of its sample and
normalises each token ``z`` over its ``C`` channels with an affine map that is *linear in t*::

    LN_t(z) = γ(t) ⊙ (z − μ(z)) / sqrt(σ²(z) + ε) + β(t),
    γ(t) = γ₀ + γ₁ t,   β(t) = β₀ + β₁ t     (per channel; γ₀ = 1, β₀ = 0 at initialisation).

**Any resolution.** Inputs are padded (``padding``) to the smallest size that is a multiple of
``patch_size * 2**(S-1)`` and at which every stage's token grid is a multiple of its window, then
the output is cropped back. A stage whose token grid is smaller than ``window_size`` along an axis
uses the whole axis as its window there (and does not shift along it), as Swin does; where all
grids are at least ``window_size`` this is a multiple of ``patch_size * window_size * 2**(S-1)``.

References
----------
.. [1] M. Herde, B. Raonić, T. Rohner, R. Käppeli, R. Molinaro, E. de Bézenac, S. Mishra.
   "Poseidon: Efficient Foundation Models for PDEs". NeurIPS 2024, arXiv:2405.19101.
.. [2] Z. Liu et al. "Swin Transformer V2: Scaling Up Capacity and Resolution". CVPR 2022,
   arXiv:2111.09883.
.. [3] Z. Liu et al. "Swin Transformer: Hierarchical Vision Transformer using Shifted Windows".
   ICCV 2021, arXiv:2103.14030.
"""

from __future__ import annotations

import math
from typing import Any, Literal, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pdebench.models.contract import check_input, constructor_args
from pdebench.models.registry import register_model
from pdebench.registry import require_choice, require_int


_PADDINGS: tuple[str, ...] = ("circular", "replicate", "zeros")

_MAX_LOGIT_SCALE = math.log(100.0)  # Swin V2: the cosine-attention temperature exp(τ) is at most 100


class TimeConditionedLayerNorm(nn.Module):
    """LayerNorm over the last (channel) axis whose scale and shift are linear in the lead time.

    ``LN_t(z) = γ(t) ⊙ (z − μ(z)) / sqrt(σ²(z) + ε) + β(t)`` with ``γ(t) = γ₀ + γ₁ t`` and
    ``β(t) = β₀ + β₁ t``, all four ``(C,)`` learned; ``μ``, ``σ²`` are the mean and (biased)
    variance of each token over its ``C`` channels.

    Parameters
    ----------
    channels : int
        Number of channels ``C`` (the last axis of the input).
    eps : float, optional
        ``ε`` of the variance. Default ``1e-5``.
    slope_std : float, optional
        ``γ₁`` and ``β₁`` start as ``N(0, slope_std²)`` draws so that a fresh model already depends
        on ``t`` (``0`` starts them at zero). ``γ₀ = 1`` and ``β₀ = 0`` at initialisation. Default
        0.5: fitting targets that differ only in ``t`` (same input) escaped a plateau far sooner
        than with 0.02 or 0.2 (3 seeds, 600 Adam steps: 1.7e3-2.7e3x loss reduction against
        0.8e3-0.9e3x with 0.02).

    Shapes
    ------
    ``z: (B, *, C)``, ``t: (B,)`` → ``(B, *, C)``.
    """

    def __init__(self, channels: int, eps: float = 1e-5, slope_std: float = 0.5) -> None:
        super().__init__()
        self.channels, self.eps = channels, eps
        self.weight = nn.Parameter(torch.ones(channels))  # γ₀
        self.bias = nn.Parameter(torch.zeros(channels))  # β₀
        self.weight_t = nn.Parameter(torch.randn(channels) * slope_std)  # γ₁
        self.bias_t = nn.Parameter(torch.randn(channels) * slope_std)  # β₁

    def forward(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if t.shape != (z.shape[0],):
            raise ValueError(f"TimeConditionedLayerNorm: t must have shape (B,) = ({z.shape[0]},), got {tuple(t.shape)}")
        t = t.to(z.dtype)[:, None]
        gamma = self.weight + t * self.weight_t  # (B, C)
        beta = self.bias + t * self.bias_t
        view = (z.shape[0],) + (1,) * (z.ndim - 2) + (self.channels,)
        return F.layer_norm(z, (self.channels,), eps=self.eps) * gamma.view(view) + beta.view(view)

    def extra_repr(self) -> str:
        return f"{self.channels}, eps={self.eps}"


def _window_partition(z: torch.Tensor, wh: int, ww: int) -> torch.Tensor:
    """``(B, H, W, C)`` → ``(B * H/wh * W/ww, wh * ww, C)`` (windows in row-major order)."""
    b, h, w, c = z.shape
    z = z.view(b, h // wh, wh, w // ww, ww, c).permute(0, 1, 3, 2, 4, 5)
    return z.reshape(-1, wh * ww, c)


def _window_merge(windows: torch.Tensor, wh: int, ww: int, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`_window_partition`: ``(B * nW, wh * ww, C)`` → ``(B, H, W, C)``."""
    c = windows.shape[-1]
    z = windows.view(-1, h // wh, w // ww, wh, ww, c).permute(0, 1, 3, 2, 4, 5)
    return z.reshape(-1, h, w, c)


def _shift_mask(h: int, w: int, wh: int, ww: int, sh: int, sw: int, device: torch.device) -> torch.Tensor | None:
    """Additive attention mask ``(nW, N, N)`` (``0`` or ``-inf``) of a grid rolled by ``(-sh, -sw)``:
    tokens that the roll brought together from opposite edges do not attend to each other."""
    if sh == 0 and sw == 0:
        return None
    labels = torch.zeros(h, w, device=device)
    rows = (slice(0, h - wh), slice(h - wh, h - sh), slice(h - sh, h)) if sh else (slice(0, h),)
    cols = (slice(0, w - ww), slice(w - ww, w - sw), slice(w - sw, w)) if sw else (slice(0, w),)
    region = 0
    for r in rows:
        for c in cols:
            labels[r, c] = region
            region += 1
    windows = _window_partition(labels.view(1, h, w, 1), wh, ww).squeeze(-1)  # (nW, N)
    different = windows[:, :, None] != windows[:, None, :]
    return torch.zeros(different.shape, device=device).masked_fill(different, float("-inf"))


class WindowAttention(nn.Module):
    """Swin V2 multi-head scaled cosine self-attention inside windows, with a continuous relative
    position bias.

    ``softmax(cos(q_i, k_j) · min(e^τ, 100) + 16 σ(MLP(Δ̂_ij)) + M_ij) V`` per head, where
    ``Δ̂ = sign(Δ) log2(1 + 8|Δ|/(w−1)) / log2 8`` is the log-spaced relative offset of tokens ``i``
    and ``j`` (``w`` the configured window size, so offsets mean the same in every window shape) and
    ``M`` the shift mask.

    Shapes
    ------
    ``z: (B', N, C)`` windows of ``N = wh * ww`` tokens, ``mask: (nW, N, N)`` with ``B'`` a multiple
    of ``nW`` → ``(B', N, C)``.
    """

    def __init__(self, channels: int, heads: int, window_size: int, cpb_hidden: int) -> None:
        super().__init__()
        self.heads, self.window_size = heads, window_size
        self.qkv = nn.Linear(channels, 3 * channels)
        self.logit_scale = nn.Parameter(torch.full((heads, 1, 1), math.log(10.0)))
        self.cpb = nn.Sequential(nn.Linear(2, cpb_hidden), nn.ReLU(), nn.Linear(cpb_hidden, heads, bias=False))
        self.proj = nn.Linear(channels, channels)
        self._offsets: dict[tuple[int, int, str], tuple[torch.Tensor, torch.Tensor]] = {}

    def _relative_offsets(self, wh: int, ww: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-spaced offset table ``((2wh−1)(2ww−1), 2)`` and the index ``(N, N)`` into it."""
        key = (wh, ww, str(device))
        if key not in self._offsets:
            scale = max(self.window_size - 1, 1)
            dh = torch.arange(-(wh - 1), wh, dtype=torch.float32)
            dw = torch.arange(-(ww - 1), ww, dtype=torch.float32)
            table = torch.stack(torch.meshgrid(dh, dw, indexing="ij"), dim=-1).reshape(-1, 2) * (8.0 / scale)
            table = torch.sign(table) * torch.log2(1.0 + table.abs()) / math.log2(8.0)
            coords = torch.stack(torch.meshgrid(torch.arange(wh), torch.arange(ww), indexing="ij")).flatten(1)  # (2, N)
            delta = coords[:, :, None] - coords[:, None, :]  # (2, N, N)
            index = (delta[0] + wh - 1) * (2 * ww - 1) + (delta[1] + ww - 1)
            self._offsets[key] = (table.to(device), index.to(device))
        return self._offsets[key]

    def forward(self, z: torch.Tensor, wh: int, ww: int, mask: torch.Tensor | None) -> torch.Tensor:
        b, n, c = z.shape
        q, k, v = self.qkv(z).view(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)  # (B', h, N, d)
        logits = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)
        logits = logits * torch.clamp(self.logit_scale, max=_MAX_LOGIT_SCALE).exp()
        table, index = self._relative_offsets(wh, ww, z.device)
        bias = self.cpb(table.to(z.dtype))[index.view(-1)].view(n, n, self.heads).permute(2, 0, 1)
        logits = logits + 16.0 * torch.sigmoid(bias)
        if mask is not None:
            windows = mask.shape[0]
            logits = (logits.view(b // windows, windows, self.heads, n, n) + mask[None, :, None].to(logits.dtype)).view(b, self.heads, n, n)
        out = (logits.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, n, c)
        return self.proj(out)


class SwinBlock(nn.Module):
    """Swin V2 block: ``z ← z + LN_t(W-MSA(z))``, ``z ← z + LN_t(MLP(z))`` (post-norm), windows
    shifted by half a window when ``shift`` (along the axes with more than one window).

    Shapes
    ------
    ``z: (B, H, W, C)``, ``t: (B,)``, ``window: (wh, ww)`` dividing ``(H, W)`` → ``(B, H, W, C)``.
    """

    def __init__(self, channels: int, heads: int, window_size: int, shift: bool, mlp_ratio: float, cpb_hidden: int) -> None:
        super().__init__()
        self.shift = shift
        self.attn = WindowAttention(channels, heads, window_size, cpb_hidden)
        self.norm1 = TimeConditionedLayerNorm(channels)
        hidden = int(round(channels * mlp_ratio))
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.GELU(), nn.Linear(hidden, channels))
        self.norm2 = TimeConditionedLayerNorm(channels)

    def forward(self, z: torch.Tensor, t: torch.Tensor, window: tuple[int, int]) -> torch.Tensor:
        _, h, w, _ = z.shape
        wh, ww = window
        sh = wh // 2 if self.shift and h > wh else 0
        sw = ww // 2 if self.shift and w > ww else 0
        shifted = torch.roll(z, shifts=(-sh, -sw), dims=(1, 2)) if sh or sw else z
        attended = self.attn(_window_partition(shifted, wh, ww), wh, ww, _shift_mask(h, w, wh, ww, sh, sw, z.device))
        attended = _window_merge(attended, wh, ww, h, w)
        if sh or sw:
            attended = torch.roll(attended, shifts=(sh, sw), dims=(1, 2))
        z = z + self.norm1(attended, t)
        return z + self.norm2(self.mlp(z), t)


class _Stage(nn.Module):
    """``depth`` Swin blocks, the odd ones with shifted windows."""

    def __init__(self, channels: int, depth: int, heads: int, window_size: int, mlp_ratio: float, cpb_hidden: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinBlock(channels, heads, window_size, shift=i % 2 == 1, mlp_ratio=mlp_ratio, cpb_hidden=cpb_hidden)
            for i in range(depth)
        )

    def forward(self, z: torch.Tensor, t: torch.Tensor, window: tuple[int, int]) -> torch.Tensor:
        for block in self.blocks:
            z = block(z, t, window)
        return z


class PatchMerging(nn.Module):
    """2x2 token groups → one token: ``(B, H, W, C)`` → concat ``(B, H/2, W/2, 4C)`` → linear
    ``2C`` → ``LN_t``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.reduction = nn.Linear(4 * channels, 2 * channels, bias=False)
        self.norm = TimeConditionedLayerNorm(2 * channels)

    def forward(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        z = torch.cat([z[:, 0::2, 0::2], z[:, 1::2, 0::2], z[:, 0::2, 1::2], z[:, 1::2, 1::2]], dim=-1)
        return self.norm(self.reduction(z), t)


class PatchExpansion(nn.Module):
    """One token → a 2x2 group: ``(B, H, W, C)`` → linear ``2C`` → ``(B, 2H, 2W, C/2)`` → ``LN_t``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.expand = nn.Linear(channels, 2 * channels, bias=False)
        self.norm = TimeConditionedLayerNorm(channels // 2)

    def forward(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        b, h, w, c = z.shape
        z = self.expand(z).view(b, h, w, 2, 2, c // 2).permute(0, 1, 3, 2, 4, 5).reshape(b, 2 * h, 2 * w, c // 2)
        return self.norm(z, t)


@register_model("scot", board="operator", description="Poseidon's scOT: lead-time-conditioned Swin V2 U-Net (2D)")
class ScOT(nn.Module):
    """scOT (Poseidon): a shifted-window transformer U-Net over patches with time-conditioned
    LayerNorms; maps an input field and a lead time ``t`` to the field ``t`` later.

    Maps ``x: (B, in_channels, X, Y)`` and ``t: (B,)`` to ``(B, out_channels, X, Y)`` for any
    ``X, Y`` (padded internally, see the module docstring). The architecture and the
    time-conditioned LayerNorm ``LN_t(z) = (γ₀ + γ₁ t) ⊙ norm(z) + (β₀ + β₁ t)`` are described in
    the module docstring.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of the input and output fields.
    dim : int, optional
        Number of spatial dimensions; only ``2`` is implemented (the paper's setting).
    patch_size : int, optional
        Side ``p`` of the square patches that become tokens. Default 4 (Poseidon).
    embed_dim : int, optional
        Token channels of stage 0; stage ``i`` has ``embed_dim * 2**i``. Default 48 (Poseidon-T).
    depths : sequence of int, optional
        Swin blocks per stage (the decoder uses the same depths). Default ``(4, 4, 4, 4)``.
    num_heads : sequence of int, optional
        Attention heads per stage; ``embed_dim * 2**i`` must be divisible by ``num_heads[i]``.
        Default ``(3, 6, 12, 24)``.
    window_size : int, optional
        Side of the square attention windows in tokens (clamped to the token grid on coarse
        stages). Default 16.
    mlp_ratio : float, optional
        Hidden width of the block MLPs relative to the stage channels. Default 4.
    cpb_hidden : int, optional
        Hidden width of the continuous position-bias MLP. Default 64.
    padding : {"circular", "replicate", "zeros"}, optional
        How inputs are padded to a size the patches and windows tile; ``"circular"`` (default)
        suits periodic domains. The padding is cropped from the output.

    Attributes
    ----------
    init_args : dict
        The constructor arguments as plain values; ``ScOT(**model.init_args)`` rebuilds the model.

    Examples
    --------
    >>> import torch
    >>> model = ScOT(in_channels=1, out_channels=1, dim=2, embed_dim=16, depths=(2, 2), num_heads=(2, 4), window_size=4)
    >>> model(torch.randn(2, 1, 40, 40), t=torch.tensor([0.1, 0.5])).shape
    torch.Size([2, 1, 40, 40])
    >>> model.padded_size(40)
    64
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        dim: int = 2,
        patch_size: int = 4,
        embed_dim: int = 48,
        depths: Sequence[int] = (4, 4, 4, 4),
        num_heads: Sequence[int] = (3, 6, 12, 24),
        window_size: int = 16,
        mlp_ratio: float = 4.0,
        cpb_hidden: int = 64,
        padding: Literal["circular", "replicate", "zeros"] = "circular",
    ) -> None:
        super().__init__()
        if dim != 2:
            raise ValueError(f"ScOT is implemented for 2D fields only (dim=2, input (B, C, X, Y)), got dim={dim!r}")
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels), ("patch_size", patch_size),
                            ("embed_dim", embed_dim), ("window_size", window_size), ("cpb_hidden", cpb_hidden)):
            require_int(name, value, 1, "ScOT: ")
        depths, num_heads = [int(d) for d in depths], [int(h) for h in num_heads]
        if not depths or len(depths) != len(num_heads):
            raise ValueError(f"ScOT: depths and num_heads need one entry per stage (at least one); got {depths}, {num_heads}")
        if min(depths) < 1 or min(num_heads) < 1:
            raise ValueError(f"ScOT: every depth and head count must be >= 1; got depths={depths}, num_heads={num_heads}")
        channels = [embed_dim * 2**i for i in range(len(depths))]
        bad = [(c, h) for c, h in zip(channels, num_heads) if c % h]
        if bad:
            raise ValueError(f"ScOT: stage channels must be divisible by their heads; (channels, heads) {bad} are not "
                             f"(stage i has embed_dim * 2**i = {channels} channels)")
        if not mlp_ratio > 0:
            raise ValueError(f"ScOT: mlp_ratio must be > 0, got {mlp_ratio!r}")
        require_choice("padding", padding, _PADDINGS, "ScOT: ")

        mlp_ratio = float(mlp_ratio)
        self.init_args: dict[str, Any] = constructor_args(self, locals())
        self.in_channels, self.out_channels, self.dim = in_channels, out_channels, dim
        self.patch_size, self.window_size, self.padding = patch_size, window_size, padding
        self.num_stages = len(depths)
        block = dict(window_size=window_size, mlp_ratio=mlp_ratio, cpb_hidden=cpb_hidden)

        self.embed = nn.Conv2d(in_channels, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.embed_norm = TimeConditionedLayerNorm(embed_dim)
        self.encoder = nn.ModuleList(_Stage(c, d, h, **block) for c, d, h in zip(channels, depths, num_heads))
        self.merges = nn.ModuleList(PatchMerging(c) for c in channels[:-1])
        # Decoder, coarsest first: expand stage i+1 (2C) to stage i (C), fuse the skip (C + C -> C), blocks.
        self.expansions = nn.ModuleList(PatchExpansion(2 * c) for c in reversed(channels[:-1]))
        self.fusions = nn.ModuleList(nn.Linear(2 * c, c) for c in reversed(channels[:-1]))
        self.decoder = nn.ModuleList(
            _Stage(c, d, h, **block) for c, d, h in zip(reversed(channels[:-1]), reversed(depths[:-1]), reversed(num_heads[:-1]))
        )
        self.recover = nn.ConvTranspose2d(embed_dim, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.head = nn.Conv2d(embed_dim, out_channels, kernel_size=5, padding=2,
                              padding_mode="circular" if padding == "circular" else "zeros")
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        """Swin initialisation: truncated-normal (σ = 0.02) linear weights, zero biases."""
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    # ------------------------------------------------------------------ sizes
    def _windows(self, grid: int) -> list[int]:
        """Window side per stage along an axis whose stage-0 token grid is ``grid``."""
        return [min(self.window_size, grid // 2**i) for i in range(self.num_stages)]

    def padded_size(self, n: int) -> int:
        """Smallest size ``>= n`` that the patches, merges and windows tile exactly.

        A multiple ``m`` of ``patch_size * 2**(S-1)`` such that every stage's token grid
        ``g_i = m / (patch_size 2**i)`` is a multiple of its window ``min(window_size, g_i)``.
        """
        if n < 1:
            raise ValueError(f"ScOT: spatial size must be >= 1, got {n}")
        step = self.patch_size * 2 ** (self.num_stages - 1)
        m = math.ceil(n / step) * step
        while True:
            grid = m // self.patch_size
            if all((grid // 2**i) % w == 0 for i, w in enumerate(self._windows(grid))):
                return m
            m += step

    def _pad(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Pad ``(B, C, X, Y)`` at the end of each axis to ``size``."""
        (nx, ny), (px, py) = x.shape[2:], size
        if (nx, ny) == (px, py):
            return x
        if self.padding == "circular":  # periodic extension, any amount (F.pad allows at most one period)
            ix = torch.arange(px, device=x.device) % nx
            iy = torch.arange(py, device=x.device) % ny
            return x[:, :, ix][:, :, :, iy]
        mode = "constant" if self.padding == "zeros" else "replicate"
        return F.pad(x, (0, py - ny, 0, px - nx), mode=mode)

    def _lead_times(self, t: Any, batch: int, like: torch.Tensor) -> torch.Tensor:
        if t is None:
            return torch.zeros(batch, dtype=like.dtype, device=like.device)
        t = torch.as_tensor(t, dtype=like.dtype, device=like.device)
        if t.ndim == 0:
            return t.expand(batch)
        if t.ndim == 2 and t.shape[1] == 1:
            t = t[:, 0]
        if t.shape != (batch,):
            raise ValueError(f"ScOT: lead time t must be a scalar or have shape (B,) = ({batch},), got {tuple(t.shape)}")
        return t

    # ---------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor, t: torch.Tensor | float | None = None, **conditioning: Any) -> torch.Tensor:
        """Predict the field a lead time ``t`` after ``x``.

        Parameters
        ----------
        x : torch.Tensor
            Input ``(B, in_channels, X, Y)``, any ``X, Y >= 1``.
        t : torch.Tensor or float, optional
            Lead times ``(B,)`` (or one scalar for the batch), in the units the model was trained
            with (all2all data: fractions of the trajectory horizon). ``None`` means ``0``.
        **conditioning
            Other conditioning keywords are accepted for the operator contract and ignored.

        Returns
        -------
        torch.Tensor
            ``(B, out_channels, X, Y)``.
        """
        check_input(x, "ScOT", self.in_channels, 2, "X, Y")
        b, _, nx, ny = x.shape
        t = self._lead_times(t, b, x)
        px, py = self.padded_size(nx), self.padded_size(ny)
        z = self.embed(self._pad(x, (px, py))).permute(0, 2, 3, 1)  # (B, gx, gy, C)
        z = self.embed_norm(z, t)
        windows = list(zip(self._windows(px // self.patch_size), self._windows(py // self.patch_size)))

        skips: list[torch.Tensor] = []
        for i, stage in enumerate(self.encoder):
            z = stage(z, t, windows[i])
            if i < self.num_stages - 1:
                skips.append(z)
                z = self.merges[i](z, t)
        for k, (expand, fuse, stage) in enumerate(zip(self.expansions, self.fusions, self.decoder)):
            i = self.num_stages - 2 - k
            z = fuse(torch.cat([expand(z, t), skips[i]], dim=-1))
            z = stage(z, t, windows[i])
        y = self.head(F.gelu(self.recover(z.permute(0, 3, 1, 2))))
        return y[:, :, :nx, :ny]
