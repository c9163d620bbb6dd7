"""The bottom layer: what every other layer passes around and measures with, importing nothing of
the package above it.

:mod:`.trajectories` the grid record (``Trajectories``), :mod:`.particles` the particle records
(``ParticleState``, ``ParticleTrajectory``, each particle's ``particle_type``), :mod:`.metrics` every error metric,
:mod:`.grid_transfer` field transfers between grids, :mod:`.graphs` the one graph convention,
:mod:`.plots` pictures of trajectories and rollout curves.
"""
