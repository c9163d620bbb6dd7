"""Fourier neural operators from neuraloperator (wrapped, not reimplemented): FNO and TFNO."""

from __future__ import annotations

import torch
from neuralop.models import FNO as _NeuralopFNO
from torch import nn

from pdebench.models.contract import constructor_args
from pdebench.models.registry import register_model
from pdebench.registry import check_at_least_one


@register_model("fno", board="operator", description="Fourier neural operator (neuraloperator's FNO), 1D/2D/3D")
class FNO(nn.Module):
    """Fourier neural operator: lifting, ``n_layers`` spectral-convolution blocks, projection.

    A thin wrapper around :class:`neuralop.models.FNO` with the platform's operator contract.

    Parameters
    ----------
    in_channels, out_channels
        Channels of the input ``(B, C_in, *space)`` and output ``(B, C_out, *space)``.
    dim
        Number of spatial dimensions.
    n_modes
        Fourier modes kept per dimension (at most ``resolution // 2 + 1``).
    hidden_channels
        Width of the spectral blocks.
    n_layers
        Number of spectral blocks.
    factorization, rank
        Tensor factorisation of the spectral weights (``None`` dense; ``"tucker"`` with ``rank≈0.1``
        gives TFNO).
    positional_embedding
        Append the grid coordinates as input channels (neuraloperator's ``"grid"`` embedding).

    Examples
    --------
    >>> model = FNO(in_channels=1, out_channels=1, dim=1, n_modes=16, hidden_channels=32)
    >>> model(torch.randn(4, 1, 128)).shape
    torch.Size([4, 1, 128])

    References
    ----------
    Li et al., "Fourier Neural Operator for Parametric Partial Differential Equations", ICLR 2021.
    Kossaifi et al., "Multi-Grid Tensorized Fourier Neural Operator", TMLR 2024 (TFNO).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        dim: int = 1,
        n_modes: int = 16,
        hidden_channels: int = 64,
        n_layers: int = 4,
        factorization: str | None = None,
        rank: float = 1.0,
        positional_embedding: bool = True,
    ) -> None:
        super().__init__()
        check_at_least_one(in_channels=in_channels, out_channels=out_channels, n_modes=n_modes,
                           hidden_channels=hidden_channels, n_layers=n_layers)
        if dim not in (1, 2, 3):
            raise ValueError(f"dim must be 1, 2 or 3, got {dim}")
        self.init_args = constructor_args(self, locals())
        self.dim, self.n_modes = dim, n_modes
        self.net = _NeuralopFNO(
            n_modes=(n_modes,) * dim,
            in_channels=in_channels,
            out_channels=out_channels,
            hidden_channels=hidden_channels,
            n_layers=n_layers,
            factorization=factorization,
            rank=rank,
            positional_embedding="grid" if positional_embedding else None,
        )

    def state_dict(self, *args, **kwargs):
        """Tensors only: neuraloperator adds its constructor arguments (functions included) under
        ``_metadata``, which ``torch.load(weights_only=True)`` refuses; ``init_args`` rebuild the model."""
        state = super().state_dict(*args, **kwargs)
        state.pop("_metadata", None)
        return state

    def forward(self, x: torch.Tensor, **conditioning: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, *space) -> (B, C_out, *space)``; conditioning is ignored."""
        if x.ndim != self.dim + 2:
            raise ValueError(f"FNO with dim={self.dim} expects (B, C, {'X, Y, Z'[: 3 * self.dim - 2]}) input, got shape {tuple(x.shape)}")
        small = [n for n in x.shape[2:] if n // 2 + 1 < self.n_modes]
        if small:
            raise ValueError(f"resolution {tuple(x.shape[2:])} is too coarse for n_modes={self.n_modes} (needs >= {2 * (self.n_modes - 1)} points per axis)")
        return self.net(x)


@register_model("tfno", board="operator", description="Tucker-factorised FNO (neuraloperator), 1D/2D/3D")
class TFNO(FNO):
    """FNO with Tucker-factorised spectral weights (``factorization="tucker"``, ``rank=0.1`` by default);
    see :class:`FNO` for the parameters."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        dim: int = 1,
        n_modes: int = 16,
        hidden_channels: int = 64,
        n_layers: int = 4,
        factorization: str | None = "tucker",
        rank: float = 0.1,
        positional_embedding: bool = True,
    ) -> None:
        super().__init__(in_channels, out_channels, dim, n_modes, hidden_channels, n_layers, factorization, rank, positional_embedding)
