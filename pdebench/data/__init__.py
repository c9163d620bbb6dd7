"""The record that flows (:class:`Trajectories`) and its files (HDF5, netCDF)."""

from pdebench.core.trajectories import Trajectories

__all__ = ["Trajectories"]
