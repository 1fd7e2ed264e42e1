r"""Optional dependencies, probed once, on first use.

``WITH_X`` is :obj:`True` when package ``x`` imports cleanly, and the module
handle ``x`` (``torch_scatter``, ``torch_sparse``, ...) is the imported module
or :obj:`None`. Library code branches on these flags (never on a fresh
``try: import``), and tests gate on them with
:func:`gdl_pyg.testing.with_package`.

The probes are lazy (a module-level ``__getattr__``): ``import gdl_pyg`` does
not import e3nn, trimesh, torch_scatter, ... (about a second and a half of
start-up between them). The first read of ``WITH_X`` or ``x`` imports the
package: a package that :func:`importlib.util.find_spec` finds but that fails
to import (an ABI mismatch of a compiled extension, say) reads as
``WITH_X = False`` and ``x = None``. A package ``find_spec`` does not find is
not imported at all. Each answer is then cached as an ordinary module
attribute, so later reads cost nothing and ``monkeypatch.setattr`` works.
"""
import importlib
import importlib.util
import warnings
from typing import Any, Dict, List, Optional

__all__ = [  # noqa: F822  (lazy names, see __getattr__)
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

#: module handle -> the package it imports
_MODULES: Dict[str, str] = {
    "torch_scatter": "torch_scatter",
    "torch_sparse": "torch_sparse",
    "torch_cluster": "torch_cluster",
    "pyg_lib": "pyg_lib",
    "e3nn": "e3nn",
    "trimesh": "trimesh",
    "meshio": "meshio",
    "plyfile": "plyfile",
}
#: flag -> module handle
_FLAGS: Dict[str, str] = {"WITH_" + name.upper(): name for name in _MODULES}


def _find(name: str) -> bool:
    r"""Whether ``name`` could be imported, without importing it."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a broken parent, or __spec__ None in sys.modules
        return False


def _probe(name: str) -> Optional[object]:
    r"""The module ``name`` imported, or :obj:`None` when it is not installed
    or fails to import (an ImportError, or an ABI mismatch raising
    OSError / RuntimeError / ...)."""
    if not _find(name):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return importlib.import_module(name)
    except Exception:
        return None


def __getattr__(name: str) -> Any:
    if name in _FLAGS:
        handle = _FLAGS[name]
        module = globals()[handle] if handle in globals() else _probe(_MODULES[handle])
        globals().setdefault(handle, module)
        value = globals()[handle] is not None
    elif name in _MODULES:
        value = _probe(_MODULES[name])
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # cached: __getattr__ is not called for it again
    return value


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(_FLAGS) | set(_MODULES))
