"""gdl_pyg: the Geometric Deep Learning blueprint as PyTorch Geometric layers.

Grids, groups, graphs, geodesics and gauges are all converted to
:class:`torch_geometric.data.Data`; every local equivariant map is a
:class:`torch_geometric.nn.MessagePassing`; every symmetry is a value in
:mod:`gdl_pyg.groups` that acts on a ``Data``; and
:func:`gdl_pyg.testing.assert_equivariant` checks any module against any group.
"""
__version__ = "0.1.0"

from gdl_pyg import typing  # noqa: F401  (probes optional packages once)
from gdl_pyg import groups, testing, domains  # noqa: F401

__all__ = ["__version__", "groups", "testing", "domains"]
