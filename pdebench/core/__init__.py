"""The records that flow through pdebench (grid trajectories first); imports nothing of the package."""
