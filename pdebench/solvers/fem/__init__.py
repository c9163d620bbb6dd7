"""Finite-element discretisation on triangle meshes (scikit-fem): P1/P2 spaces, assembled
operators (diffusion, Helmholtz, plane-strain elasticity, mass, loads, Robin/Neumann), Dirichlet
condensation, grid sampling and error norms. The mesh builders are geometry and live in the problems
layer (:mod:`pdebench.problems.meshes`); they are re-exported here for convenience.

Typical use (one basis, many coefficient samples)::

    space = FunctionSpace(unit_square(85), "P1")          # basis built once
    dofs = space.boundary_dofs()
    b = load_vector(space, 1.0)
    sampler = GridSampler(space, grid, grid)
    for a_grid in coefficients:                            # (85, 85) thresholded field per sample
        a = element_means(space.mesh, grid_to_vertices(space.mesh, a_grid, grid, grid))
        system = condense_dirichlet(diffusion_matrix(space, a, at="elements"), b, dofs, 0.0)
        u = solve_direct(system)
        out = sampler(u)                                   # (85, 85)
"""

from pdebench.problems.meshes import (
    disk_with_holes,
    grid_vertex_indices,
    l_shape,
    mesh_size,
    rectangle,
    signed_areas,
    triangulation,
    unit_square,
    validate_mesh,
    validate_triangulation,
)
from pdebench.solvers.fem.assembly import (
    boundary_load,
    boundary_mass,
    diffusion_matrix,
    elasticity_matrix,
    helmholtz_matrix,
    lame_parameters,
    load_vector,
    mass_matrix,
)
from pdebench.solvers.fem.coefficients import element_means, grid_to_vertices
from pdebench.solvers.fem.dirichlet import CondensedSystem, condense_dirichlet, solve_direct
from pdebench.solvers.fem.errors import h1_seminorm_error, l2_error
from pdebench.solvers.fem.sampling import GridSampler
from pdebench.solvers.fem.spaces import ELEMENT_FAMILIES, FunctionSpace, element

__all__ = [
    "ELEMENT_FAMILIES",
    "CondensedSystem",
    "FunctionSpace",
    "GridSampler",
    "boundary_load",
    "boundary_mass",
    "condense_dirichlet",
    "diffusion_matrix",
    "disk_with_holes",
    "elasticity_matrix",
    "element",
    "element_means",
    "grid_to_vertices",
    "grid_vertex_indices",
    "h1_seminorm_error",
    "helmholtz_matrix",
    "l2_error",
    "l_shape",
    "lame_parameters",
    "load_vector",
    "mass_matrix",
    "mesh_size",
    "rectangle",
    "signed_areas",
    "solve_direct",
    "triangulation",
    "unit_square",
    "validate_mesh",
    "validate_triangulation",
]
