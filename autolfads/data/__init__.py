"""autolfads.data: the HDF5 contract, the datamodule and synthetic data.

Importing this package is light (h5py and numpy only); the Lightning datamodule lives in
``autolfads.data.datamodule`` and the Lorenz generator in ``autolfads.data.synthetic``.
"""

from autolfads.data.contract import DataSummary, inspect_data_file

__all__ = ["DataSummary", "inspect_data_file"]
