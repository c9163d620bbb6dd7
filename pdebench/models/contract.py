"""What the data-driven operators of this folder share beyond :mod:`.registry`'s contract: their
constructor arguments as ``init_args`` (which rebuild the model, and which a checkpoint stores) and the
check of an input ``(B, C_in, *space)``."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn


def constructor_args(model: nn.Module, values: Mapping[str, Any]) -> dict[str, Any]:
    """``init_args`` of ``model``: its class's constructor parameters, in order, with their values in
    ``values`` (the constructor's ``locals()``, after any normalisation of a value); ``type(model)(**init_args)``
    rebuilds the architecture."""
    return {name: values[name] for name in inspect.signature(type(model).__init__).parameters if name != "self"}


def check_input(x: torch.Tensor, owner: str, in_channels: int, dim: int, axes: str | None = None) -> None:
    """Refuse an input that is not ``(B, in_channels, *space)`` with ``dim`` spatial axes.

    ``ValueError`` ``"{owner} expects input of shape (B, C, {axes}) ({dim + 2} dimensions), got shape ..."``
    (``axes`` default ``"n, n"`` for ``dim=2``), or ``"{name} expects {in_channels} input channels, got ..."``
    with ``name`` the ``owner`` before any ``"("`` (``"UNet(dim=2)"`` -> ``"UNet"``).
    """
    if x.ndim != dim + 2:
        raise ValueError(f"{owner} expects input of shape (B, C, {axes or ', '.join(['n'] * dim)}) ({dim + 2} dimensions), "
                         f"got shape {tuple(x.shape)}")
    if x.shape[1] != in_channels:
        raise ValueError(f"{owner.split('(')[0]} expects {in_channels} input channels, got {x.shape[1]} (shape {tuple(x.shape)})")
