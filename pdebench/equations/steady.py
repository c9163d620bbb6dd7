r"""Steady semi-linear elliptic equations :math:`s\,\Delta u + r(u) = f`, stated once for every representation.

An equation states its definition pointwise on the Laplacian: :meth:`SteadyEquation.residual` takes
the solution values ``u``, their Laplacian (however a representation computes it: GP-HM's kernel
derivatives, a finite-difference stencil, spectral coefficients' symbol) and the source ``f``, and
returns :math:`s\,\Delta u + r(u) - f`. The finite-difference solver also needs the sign :math:`s`
of the Laplacian and the slope :math:`r'(u)` of the reaction (Newton's Jacobian). The expressions work
on torch tensors and numpy arrays alike (elementwise arithmetic only).

* :data:`POISSON`: :math:`-\Delta u = f` (:math:`s = -1`, no reaction);
* :data:`ALLEN_CAHN`: the stationary Allen–Cahn form :math:`\Delta u + u(u^2 - 1) = f` of Xu et al.
  (ICLR 2024), a source-driven steady problem (the evolution equation
  :math:`u_t = \nu\Delta u + \rho(u - u^3)` of :class:`~pdebench.equations.spectral.AllenCahn` is a
  different PDE).

Shapes: ``u``, ``laplacian`` and ``f`` broadcast together; the result has their common shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SteadyEquation:
    r""":math:`s\,\Delta u + r(u) = f` with :math:`r(u) = u(u^2 - 1)` when :attr:`cubic`, else :math:`r = 0`.

    Attributes
    ----------
    name
        ``"poisson"`` or ``"allen_cahn"`` (the name results files record).
    laplacian_sign
        :math:`s`, ``-1.0`` or ``1.0``.
    cubic
        Whether the Allen–Cahn reaction :math:`u(u^2 - 1)` is present (the equation is then nonlinear).
    """

    name: str
    laplacian_sign: float
    cubic: bool = False

    @property
    def is_linear(self) -> bool:
        """True when the equation has no reaction term (one linear solve)."""
        return not self.cubic

    def residual(self, u: Any, laplacian: Any, f: Any) -> Any:
        r""":math:`s\,\Delta u + r(u) - f`, elementwise.

        Parameters
        ----------
        u
            Solution values (tensor or array, any shape).
        laplacian
            :math:`\Delta u` at the same points, same shape.
        f
            Source values at the same points (broadcastable).
        """
        if self.laplacian_sign < 0:
            left = -laplacian
        else:
            left = laplacian
        if self.cubic:
            left = left + u * (u * u - 1)
        return left - f

    def reaction_slope(self, u: Any) -> Any:
        r""":math:`r'(u)`: :math:`3u^2 - 1` for Allen–Cahn; ``0 * u`` for a linear equation."""
        return 3.0 * u * u - 1.0 if self.cubic else 0 * u


POISSON = SteadyEquation("poisson", -1.0)
ALLEN_CAHN = SteadyEquation("allen_cahn", 1.0, cubic=True)
