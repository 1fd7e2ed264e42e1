r"""Optional dependencies, probed once at import time.

``WITH_X`` is :obj:`True` when package ``x`` imported cleanly. Library code
branches on these flags (never on a fresh ``try: import``), and tests gate on
them with :func:`gdl_pyg.testing.with_package`.
"""
import importlib
import warnings
from typing import Optional

__all__ = [
    "WITH_TORCH_SCATTER",
    "WITH_TORCH_SPARSE",
    "WITH_TORCH_CLUSTER",
    "WITH_PYG_LIB",
    "WITH_E3NN",
    "WITH_TRIMESH",
    "WITH_MESHIO",
    "WITH_PLYFILE",
    "torch_scatter",
    "torch_sparse",
    "torch_cluster",
    "pyg_lib",
]


def _probe(name: str) -> Optional[object]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return importlib.import_module(name)
    except Exception:  # ImportError, or an ABI mismatch raising OSError/RuntimeError
        return None


torch_scatter = _probe("torch_scatter")
torch_sparse = _probe("torch_sparse")
torch_cluster = _probe("torch_cluster")
pyg_lib = _probe("pyg_lib")
e3nn = _probe("e3nn")
trimesh = _probe("trimesh")
meshio = _probe("meshio")
plyfile = _probe("plyfile")

WITH_TORCH_SCATTER = torch_scatter is not None
WITH_TORCH_SPARSE = torch_sparse is not None
WITH_TORCH_CLUSTER = torch_cluster is not None
WITH_PYG_LIB = pyg_lib is not None
WITH_E3NN = e3nn is not None
WITH_TRIMESH = trimesh is not None
WITH_MESHIO = meshio is not None
WITH_PLYFILE = plyfile is not None
