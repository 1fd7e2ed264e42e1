r"""The rotation group of the icosahedron, acting on signals on an icosphere by
permuting its vertices (the largest finite subgroup of SO(3) that a spherical
mesh can carry exactly)."""
from typing import Any, List, Mapping, Optional

import torch
from torch import Tensor
from torch_geometric.data import Data

from gdl_pyg.groups.base import TRIVIAL, Group, apply_matrix, permute_nodes

__all__ = ["IcosahedralGroup"]


class IcosahedralGroup(Group):
    r"""The 60 rotations :math:`I \subset SO(3)` of the icosahedron of
    :func:`gdl_pyg.domains.icosphere`, acting on signals on the sphere.

    An element is an index ``g`` in ``0..59`` into
    :func:`gdl_pyg.domains.sphere.icosahedral_rotations` (``0`` is the
    identity). Rotating a signal by :math:`R` moves the value at :math:`p` to
    :math:`R p`, :math:`(g \cdot x)(p) = x(R^\top p)`: the vertices are
    relabelled (the rotation maps the vertex set onto itself, exactly up to
    round-off) while ``pos`` stays the same point set. Features declared
    ``"vector"`` (tangent or ambient vectors) are also multiplied by :math:`R`.
    """
    name = "I (icosahedral rotations)"

    def __init__(self):
        self.default_fields = {}
        self._rotations: Optional[Tensor] = None

    @property
    def rotations(self) -> Tensor:
        if self._rotations is None:
            from gdl_pyg.domains.sphere import icosahedral_rotations
            self._rotations = icosahedral_rotations()
        return self._rotations

    def elements(self, data: Optional[Data] = None) -> List[int]:
        return list(range(60))

    def identity(self, data: Optional[Data] = None) -> int:
        return 0

    def sample(self, data: Optional[Data] = None,
               generator: Optional[torch.Generator] = None) -> int:
        return int(torch.randint(0, 60, (1,), generator=generator))

    def act(self, g: Any, data: Data, fields: Optional[Mapping[str, Any]] = None) -> Data:
        from gdl_pyg.domains.sphere import rotation_permutation
        if "pos" not in data:
            raise ValueError("'IcosahedralGroup' acts on a 'Data' with the icosphere's 'pos'")
        R = self.rotations[int(g)]
        # new vertex i shows the old value at R^T p_i = p[perm[i]]
        perm = rotation_permutation(data.pos, R.T)
        out = permute_nodes(data, perm)
        out.pos = data.pos
        for key, rep in self._fields(fields).items():
            if key not in data or rep in TRIVIAL:
                continue
            if rep != "vector":
                raise ValueError(f"'IcosahedralGroup' knows the representations 'trivial' and "
                                 f"'vector' (got {rep!r} for '{key}')")
            out[key] = apply_matrix(out[key], R)
        return out
