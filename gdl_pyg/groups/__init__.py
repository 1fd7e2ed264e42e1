r"""Symmetry groups as values that act on :class:`~torch_geometric.data.Data`.

Every group samples elements (:meth:`Group.sample`) and applies them to a
``Data`` (:meth:`Group.act`), moving nodes, coordinates and features according
to their declared representations. Groups never import layers.
"""
from gdl_pyg.groups.base import Group, apply_matrix, attr_level, permute_nodes
from gdl_pyg.groups.euclidean import E3, O3, SO2, SO3, random_rotation
from gdl_pyg.groups.gauge import GaugeGroup, gauge_matrix
from gdl_pyg.groups.grid import CyclicGroup, DihedralGroup, Translations
from gdl_pyg.groups.icosahedral import IcosahedralGroup
from gdl_pyg.groups.permutation import Permutations
from gdl_pyg.groups.time_warping import TimeWarping

__all__ = [
    "Group",
    "Permutations",
    "Translations",
    "CyclicGroup",
    "DihedralGroup",
    "SO2",
    "SO3",
    "O3",
    "E3",
    "GaugeGroup",
    "IcosahedralGroup",
    "TimeWarping",
    "permute_nodes",
    "apply_matrix",
    "attr_level",
    "gauge_matrix",
    "random_rotation",
]
