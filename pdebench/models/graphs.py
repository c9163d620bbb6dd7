"""Graph builders for the graph models: they live in :mod:`pdebench.core.graphs` (one edge convention
for meshes, particles and grids, documented there) and are re-exported here for the models' imports."""

from __future__ import annotations

from pdebench.core.graphs import grid_graph, knn_graph, mesh_edges, mesh_graph, particle_edges, radius_graph

__all__ = ["grid_graph", "knn_graph", "mesh_edges", "mesh_graph", "particle_edges", "radius_graph"]
