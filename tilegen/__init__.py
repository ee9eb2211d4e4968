"""tilegen: patch-OT texture synthesis and seamless tiled generation.

This package is the torch-free part: the noise field, the window arithmetic, image I/O, the
ONNX contract and the Dask/Zarr tiler. `train/` and `export/` build on it; it imports neither.
"""

__version__ = "0.1.0"
