"""tilegen: patch-OT texture synthesis and seamless tiled generation.

This package is the torch-free part: the noise field, the window arithmetic, image I/O, the
ONNX contract and the Dask/Zarr tiler. `train/` and `export/` build on it; it imports neither.
"""

from pathlib import Path as _Path

__version__ = "0.1.0"

# The user's folders train/, export/ and cli.py sit beside this one in a checkout; an install
# puts them under this package (tilegen.train, tilegen.export, tilegen.cli: pyproject.toml), so
# that it adds no generic top-level module. In a checkout the same names resolve to the folders.
_checkout = _Path(__file__).resolve().parent.parent
if (_checkout / "pyproject.toml").is_file() and (_checkout / "train" / "__init__.py").is_file():
    __path__.append(str(_checkout))
