"""Training: the Lightning module that trains any data-driven operator, its losses and rollouts."""

from pdebench.training.module import OperatorModule

__all__ = ["OperatorModule"]
