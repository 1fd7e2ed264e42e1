r"""The base class of symmetry groups acting on :class:`~torch_geometric.data.Data`.

A group element ``g`` acts on a ``Data`` in up to three ways:

1. on the *domain*: a relabelling of the nodes (a permutation of the nodes, a
   rotation of a pixel grid, a cyclic shift, a repetition of time steps),
   which moves every node-level attribute and relabels ``edge_index``;
2. on *coordinates*: ``pos`` is rotated / translated;
3. on *fibres*: a feature attribute declared with a representation ``rep``
   is multiplied by :math:`\rho(g)` along its last dimension (vectors rotate,
   e3nn irreps get a Wigner-D matrix, gauge features get per-vertex SO(2)
   rotations).

Which attribute transforms how is declared with a ``fields`` mapping
``{attribute name: representation}``; every group has sensible defaults
(``pos`` is a point, everything else is invariant in its fibre), so usually
only feature attributes with non-trivial representations must be named.
Representations are group-specific values; ``"trivial"`` (alias
``"scalar"``) is understood by all groups.
"""
from abc import ABC, abstractmethod
from typing import Any, Dict, Mapping, Optional

import torch
from torch import Tensor
from torch_geometric.data import Data

TRIVIAL = ("trivial", "scalar", "invariant", None)


def num_graphs_of(data: Data) -> int:
    r"""The number of graphs in ``data`` (1 for a ``Data`` without ``batch``)."""
    if "batch" in data and isinstance(data.batch, Tensor) and data.batch.numel() > 0:
        return int(data.batch.max()) + 1
    return 1


def attr_level(data: Data, key: str) -> str:
    r"""Classifies attribute ``key`` of ``data`` as ``"node"``, ``"edge"``,
    ``"edge_index"``, ``"graph"`` or ``"other"``.

    Unlike PyG's cached heuristics this is recomputed each time, so it stays
    right while attributes are replaced. ``face`` and other ``*index*`` keys
    holding node indices (``[2, *]`` / ``[3, *]`` integer tensors) are
    ``"index"`` (relabelled by node permutations); ``face_*`` keys and
    ``laplacian_weight`` are ``"other"``; keys containing ``"edge"`` are edge
    attributes; ``batch`` / ``ptr`` are handled specially; a tensor whose first
    dimension is the number of nodes is node-level; ``y`` / ``*_graph`` keys
    whose first dimension is the number of graphs are graph-level.
    """
    value = data[key]
    if key == "edge_index":
        return "edge_index"
    if not isinstance(value, Tensor) or value.dim() == 0:
        return "other"
    if (key == "face" or "index" in key) and value.dim() == 2 and value.size(0) in (2, 3) \
            and not value.is_floating_point():
        return "index"  # node indices (PyG's __inc__ rule): relabelled, not gathered
    if key.startswith(("face_", "adj")) or key == "laplacian_weight":
        return "other"  # per face / per non-zero, never per node
    if key == "batch":
        return "node"
    if key == "ptr":
        return "other"
    if "edge" in key:
        return "edge"
    num_nodes = data.num_nodes
    if value.size(0) == num_nodes and not key.endswith("_graph"):
        return "node"
    num_graphs = num_graphs_of(data)
    if value.size(0) == num_graphs:
        return "graph"
    return "other"


class Group(ABC):
    r"""A symmetry group that acts on :class:`~torch_geometric.data.Data`.

    Subclasses implement :meth:`sample` and :meth:`act`; finite groups also
    implement :meth:`elements`. Group elements are plain values (integers,
    tuples, tensors) so that error messages can print them.
    """

    #: A short name, e.g. ``"C4"``, ``"SO(3)"``.
    name: str = "G"
    #: Default field representations, merged under the user's ``fields``.
    default_fields: Dict[str, Any] = {}

    @abstractmethod
    def sample(self, data: Optional[Data] = None,
               generator: Optional[torch.Generator] = None) -> Any:
        r"""Draws a random element (one that acts on ``data``, where the
        group needs to know the data, e.g. the number of nodes)."""

    def elements(self, data: Optional[Data] = None):
        r"""All elements of a finite group (raises for infinite groups)."""
        raise NotImplementedError(f"'{self.name}' is not a finite group")

    def identity(self, data: Optional[Data] = None) -> Any:
        raise NotImplementedError

    @abstractmethod
    def act(self, g: Any, data: Data,
            fields: Optional[Mapping[str, Any]] = None) -> Data:
        r"""Returns a new ``Data`` with ``g`` applied to it (``data`` is not
        modified). ``fields`` maps attribute names to representations."""

    # helpers ---------------------------------------------------------------
    def _fields(self, fields: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
        out = dict(self.default_fields)
        if fields is not None:
            if not isinstance(fields, Mapping):
                raise TypeError(
                    f"'{type(self).__name__}.act' expected 'fields' to be a mapping "
                    f"{{attribute name: representation}} (got {type(fields).__name__})")
            out.update(fields)
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def permute_nodes(data: Data, perm: Tensor, num_nodes: Optional[int] = None) -> Data:
    r"""Relabels the nodes of ``data``: new node ``i`` is old node ``perm[i]``.

    Node-level attributes are gathered, ``edge_index``, ``face`` and other
    node-index tensors are relabelled (the edge order and edge attributes are
    kept), everything else is copied.
    """
    out = data.clone()
    n = data.num_nodes if num_nodes is None else num_nodes
    if perm.numel() != n:
        raise ValueError(f"Expected a permutation of {n} nodes (got {perm.numel()} entries)")
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(perm.numel(), device=perm.device)
    for key in data.keys():
        level = attr_level(data, key)
        if level == "node":
            out[key] = data[key][perm.to(data[key].device)]
        elif level in ("edge_index", "index"):
            out[key] = inv.to(data[key].device)[data[key]]
    return out


def apply_matrix(value: Tensor, mat: Tensor) -> Tensor:
    r"""Multiplies the last dimension of ``value`` by ``mat`` (``[d, d]``, or
    ``[N, d, d]`` per row of ``value``)."""
    mat = mat.to(dtype=value.dtype, device=value.device)
    if mat.dim() == 2:
        if value.size(-1) != mat.size(0):
            raise ValueError(
                f"Expected a feature of last dimension {mat.size(0)} for this "
                f"representation (got shape {list(value.shape)})")
        return value @ mat.transpose(-1, -2)
    # per-row matrices: value [N, ..., d], mat [N, d, d]
    if value.size(0) != mat.size(0) or value.size(-1) != mat.size(-1):
        raise ValueError(
            f"Expected a feature of shape [{mat.size(0)}, ..., {mat.size(-1)}] for this "
            f"representation (got shape {list(value.shape)})")
    shape = value.shape
    v = value.reshape(shape[0], -1, shape[-1])
    return torch.einsum("nij,nkj->nki", mat, v).reshape(shape)
