"""gdl_pyg: the Geometric Deep Learning blueprint as PyTorch Geometric layers.

Grids, groups, graphs, geodesics and gauges are all converted to
:class:`torch_geometric.data.Data`; every local equivariant map is a
:class:`torch_geometric.nn.MessagePassing`; every symmetry is a value in
:mod:`gdl_pyg.groups` that acts on a ``Data``; and
:func:`gdl_pyg.testing.assert_equivariant` checks any module against any group.

The subpackages are imported on first use (``gdl_pyg.groups`` works after a
bare ``import gdl_pyg``), so that ``gdl-pyg --version`` and ``gdl-pyg
configs`` start without importing PyTorch Geometric.
"""
import importlib
from typing import Any, List

__version__ = "0.1.0"

from gdl_pyg import typing  # noqa: F401,E402  (lazy: probes optional packages on first use)

__all__ = ["__version__", "groups", "testing", "domains"]

#: subpackages that ``gdl_pyg.<name>`` imports on first access
_SUBPACKAGES = ("groups", "testing", "domains", "io", "ops", "nn", "transforms", "lightning",
                "datasets", "utils")


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        return importlib.import_module(f"{__name__}.{name}")  # also binds gdl_pyg.<name>
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(_SUBPACKAGES))
