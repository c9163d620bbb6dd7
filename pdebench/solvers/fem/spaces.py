"""Finite-element spaces: element families, one basis per mesh, coefficients at quadrature points.

A :class:`FunctionSpace` builds its :class:`skfem.CellBasis` once (the reference-to-physical maps,
shape-function values and gradients at every quadrature point of every element). Every coefficient
field is then turned into an array of values at those same quadrature points, shape
``(n_elements, n_quadrature)``, and handed to the forms: changing a coefficient never rebuilds the
basis or touches the mesh, and no Python loop runs over elements.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal, Union

import numpy as np
from skfem import Basis, CellBasis, ElementTriP1, ElementTriP2, ElementVector, FacetBasis, MeshTri
from skfem.element import Element

from pdebench.problems.meshes import validate_mesh

#: Scalar triangle element families by name.
ELEMENT_FAMILIES: dict[str, type[Element]] = {"P1": ElementTriP1, "P2": ElementTriP2}

#: A coefficient: a constant, an array (per element, per vertex or per quadrature point) or a
#: function of the coordinates ``x`` of shape ``(2, ...)`` returning values of shape ``(...)``.
Coefficient = Union[float, np.ndarray, Callable[[np.ndarray], np.ndarray]]
Location = Literal["elements", "vertices", "quadrature"]


def element(family: str, *, vector: bool = False) -> Element:
    """The scikit-fem element of a family name.

    Parameters
    ----------
    family
        ``"P1"`` (linear) or ``"P2"`` (quadratic) Lagrange triangles.
    vector
        Two-component (displacement) version, ``ElementVector(...)``.

    Raises
    ------
    ValueError
        For an unknown family, naming it and the valid ones.
    """
    if family not in ELEMENT_FAMILIES:
        raise ValueError(f"unknown element family {family!r}; valid families: {sorted(ELEMENT_FAMILIES)}")
    scalar = ELEMENT_FAMILIES[family]()
    return ElementVector(scalar) if vector else scalar


@dataclass(frozen=True, eq=False)
class FunctionSpace:
    """A Lagrange space on a triangle mesh, with its basis built once.

    Parameters
    ----------
    mesh
        The triangle mesh (checked for degenerate elements).
    family
        Element family, ``"P1"`` or ``"P2"``.
    vector
        Two-component vector space (plane elasticity).
    intorder
        Quadrature degree; ``None`` uses scikit-fem's default ``2 * degree``.

    Attributes
    ----------
    basis
        The :class:`skfem.CellBasis`; ``basis.N`` degrees of freedom.

    Examples
    --------
    >>> from pdebench.solvers.fem import FunctionSpace, unit_square, diffusion_matrix
    >>> space = FunctionSpace(unit_square(9), "P1")
    >>> A = diffusion_matrix(space, a=1.0)          # the same basis serves every coefficient
    >>> A.shape
    (81, 81)
    """

    mesh: MeshTri
    family: str = "P1"
    vector: bool = False
    intorder: int | None = None
    basis: CellBasis = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        elem = element(self.family, vector=self.vector)
        validate_mesh(self.mesh)
        object.__setattr__(self, "basis", Basis(self.mesh, elem, intorder=self.intorder))

    # ---------------------------------------------------------------- sizes
    @property
    def ndofs(self) -> int:
        """Number of degrees of freedom ``N`` (both components for a vector space)."""
        return int(self.basis.N)

    @property
    def degree(self) -> int:
        """Polynomial degree of the element (1 or 2)."""
        return int(self.basis.elem.maxdeg)

    @property
    def n_quadrature(self) -> int:
        """Quadrature points per element."""
        return int(self.basis.X.shape[1])

    @cached_property
    def quadrature_points(self) -> np.ndarray:
        """Global quadrature-point coordinates, shape ``(2, n_elements, n_quadrature)``."""
        return np.asarray(self.basis.global_coordinates())

    @cached_property
    def vertex_basis(self) -> CellBasis:
        """Scalar P1 basis on the same quadrature (interpolates vertex-valued coefficients)."""
        return self.basis.with_element(ElementTriP1())

    @property
    def dof_coordinates(self) -> np.ndarray:
        """Coordinates of every degree of freedom, shape ``(2, N)``."""
        return np.asarray(self.basis.doflocs)

    def components(self) -> list[np.ndarray]:
        """DOF indices per component: one array for a scalar space, two (``u_x``, ``u_y``) for a vector one."""
        if not self.vector:
            return [np.arange(self.ndofs)]
        return [np.asarray(i, dtype=np.int64) for i in self.basis.split_indices()]

    # ---------------------------------------------------------------- coefficients
    def coefficient(self, value: Coefficient, *, at: Location | None = None, name: str = "coefficient") -> np.ndarray:
        """Values of a scalar coefficient at the quadrature points, shape ``(n_elements, n_quadrature)``.

        Parameters
        ----------
        value
            A number (constant); an array of shape ``(n_elements,)`` (piecewise constant per element,
            e.g. a thresholded Darcy permeability), ``(n_vertices,)`` (continuous, P1-interpolated) or
            ``(n_elements, n_quadrature)`` (given at quadrature points); or a callable ``f(x)`` with
            ``x`` of shape ``(2, ...)``, evaluated at the quadrature points.
        at
            Where an array lives: ``"elements"``, ``"vertices"`` or ``"quadrature"``; ``None`` infers it
            from the shape (an error if ``n_elements == n_vertices`` makes a 1-D array ambiguous).
        name
            Used in error messages.

        Raises
        ------
        ValueError
            For a shape that fits no location, an ambiguous 1-D array or non-finite values.
        """
        return _quadrature_values(self, value, at=at, name=name)

    # ---------------------------------------------------------------- boundaries
    def boundary_facets(self, where: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
        """Boundary facet indices, optionally those whose midpoint ``x`` (shape ``(2, n)``) satisfies ``where``."""
        if where is None:
            return np.asarray(self.mesh.boundary_facets())
        return np.asarray(self.mesh.facets_satisfying(where, boundaries_only=True))

    def boundary_dofs(
        self, where: Callable[[np.ndarray], np.ndarray] | None = None, *, component: int | None = None
    ) -> np.ndarray:
        """DOF indices on the boundary (or on the boundary facets selected by ``where``), sorted.

        Parameters
        ----------
        where
            Facet-midpoint test ``where(x) -> bool``, ``x`` of shape ``(2, n)``; ``None`` = whole boundary.
        component
            For a vector space, only this component (0 = ``u_x``, 1 = ``u_y``); ``None`` = all.
        """
        dofs = self.basis.get_dofs(facets=self.boundary_facets(where))
        if component is not None:
            if not self.vector or component not in (0, 1):
                raise ValueError(f"component {component} needs a vector space and must be 0 or 1")
            return np.sort(np.asarray(dofs.all(f"u^{component + 1}"), dtype=np.int64))
        return np.sort(np.asarray(dofs.all(), dtype=np.int64))

    def facet_basis(self, facets: np.ndarray | None = None) -> FacetBasis:
        """A :class:`skfem.FacetBasis` on the given boundary facets (all boundary facets if ``None``).

        Build it once per boundary part and reuse it for Neumann/Robin terms of every sample.
        """
        return self.basis.boundary(facets=facets, intorder=self.intorder)

    # ---------------------------------------------------------------- functions
    def interpolate(self, fun: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """Lagrange (nodal) interpolant of ``fun`` as a DOF vector of shape ``(N,)``.

        ``fun(x)`` takes coordinates ``x`` of shape ``(2, n)`` and returns shape ``(n,)`` (scalar space)
        or ``(2, n)`` (vector space).
        """
        out = np.zeros(self.ndofs)
        if not self.vector:
            out[:] = fun(self.dof_coordinates)
            return out
        for k, dofs in enumerate(self.components()):
            out[dofs] = np.asarray(fun(self.dof_coordinates[:, dofs]))[k]
        return out


def _quadrature_values(space: FunctionSpace, value: Coefficient, *, at: Location | None, name: str) -> np.ndarray:
    n_el, n_q = space.mesh.nelements, space.n_quadrature
    n_v = space.mesh.p.shape[1]
    if callable(value):
        out = np.asarray(value(space.quadrature_points), dtype=np.float64)
        out = np.broadcast_to(out, (n_el, n_q))
    else:
        array = np.asarray(value, dtype=np.float64)
        if array.ndim == 0:
            out = np.full((n_el, n_q), float(array))
        else:
            if at is None:
                if array.shape == (n_el, n_q):
                    at = "quadrature"
                elif array.ndim == 1 and n_el == n_v and array.size == n_el:
                    raise ValueError(
                        f"{name}: a 1-D array of length {n_el} is ambiguous (n_elements == n_vertices); "
                        "pass at='elements' or at='vertices'"
                    )
                elif array.shape == (n_el,):
                    at = "elements"
                elif array.shape == (n_v,):
                    at = "vertices"
            expected = {"elements": (n_el,), "vertices": (n_v,), "quadrature": (n_el, n_q)}
            if at not in expected or array.shape != expected[at]:
                raise ValueError(
                    f"{name}: shape {array.shape} fits no location (expected a scalar, {expected['elements']} "
                    f"per element, {expected['vertices']} per vertex or {expected['quadrature']} per quadrature "
                    f"point{'' if at is None else f'; at={at!r}'})"
                )
            if at == "elements":
                out = np.repeat(array[:, None], n_q, axis=1)
            elif at == "vertices":
                out = np.asarray(space.vertex_basis.interpolate(array))
            else:
                out = array
    if not np.isfinite(out).all():
        raise ValueError(f"{name} has non-finite values")
    return out


def require_positive(values: np.ndarray, name: str) -> np.ndarray:
    """Raise unless every quadrature value is positive; the message names the minimum and its element.

    Parameters
    ----------
    values
        Shape ``(n_elements, n_quadrature)``.
    """
    flat = int(np.argmin(values))
    minimum = float(values.flat[flat])
    if minimum <= 0:
        element_index = flat // values.shape[1] if values.ndim == 2 else flat
        raise ValueError(f"{name} must be positive; minimum value {minimum:g} (element {element_index})")
    return values
