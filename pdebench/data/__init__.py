"""The record that flows (:class:`Trajectories`) and its files (HDF5, netCDF)."""

from pdebench.data.trajectories import Trajectories

__all__ = ["Trajectories"]
