"""The operator registry: every model the platform trains or evaluates, with its kind.

Kinds (DESIGN.md, "Operator kinds"):

* ``operator`` — data-driven operators ``forward(x: (B, C_in, *space), **conditioning) -> (B, C_out, *space)``;
* ``physics`` — trained on a PDE residual without solver data (NSM);
* ``instance`` — solves one PDE instance by optimisation (GP Kronecker);
* ``linear-solver`` — a learned component inside a Krylov iteration (DCDM).

Every data-driven operator's constructor takes ``in_channels``, ``out_channels`` and ``dim`` (number
of spatial dimensions) so that the data module can set them, plus its own typed hyper-parameters.
"""

from __future__ import annotations

from typing import Literal

from pdebench.registry import Registry

ModelKind = Literal["operator", "physics", "instance", "linear-solver"]
KINDS: tuple[str, ...] = ("operator", "physics", "instance", "linear-solver")

MODELS: Registry = Registry("model")


def register_model(name: str, *, kind: ModelKind = "operator", description: str | None = None):
    """Register a model class under ``name`` with its ``kind`` (see the module docstring)."""
    if kind not in KINDS:
        raise ValueError(f"model kind must be one of {KINDS}, got {kind!r}")
    return MODELS.register(name, kind=kind, description=description)
