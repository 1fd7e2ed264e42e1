r"""The :class:`RandomRotation3D` transform: a Haar-random rotation of a
geometric ``Data``."""
from typing import Any, Dict, Mapping, Optional

from torch_geometric.data import Data
from torch_geometric.transforms import BaseTransform

from gdl_pyg.groups.euclidean import SO3, random_rotation

__all__ = ["RandomRotation3D"]

_DEFAULT_FIELDS = {"pos": "point", "normal": "vector", "face_normal": "vector",
                   "frame": "vector"}


class RandomRotation3D(BaseTransform):
    r"""Rotates ``pos`` about the origin by a uniformly random
    :math:`Q \in SO(3)` (Haar measure) and every vector attribute with it:
    ``normal``, ``face_normal`` and the rows of ``frame`` by default, plus
    what :obj:`fields` names (``"vector"``, ``"pseudovector"`` or e3nn irreps
    such as ``"4x0e + 2x1o"``, acted on by Wigner-D matrices).

    .. math::
        \mathbf{x}_i \mapsto Q\,\mathbf{x}_i, \qquad
        \mathbf{v}_i \mapsto Q\,\mathbf{v}_i

    Intrinsic attributes (areas, Laplacian, ``edge_logmap``,
    ``edge_connection``) are unchanged, since the frames rotate with the
    shape.

    Args:
        fields (dict, optional): extra ``{attribute: representation}``.
            (default: :obj:`None`)
    """
    def __init__(self, fields: Optional[Mapping[str, Any]] = None):
        if fields is not None and not isinstance(fields, Mapping):
            raise TypeError(f"'RandomRotation3D' expected 'fields' to be a mapping "
                            f"(got {type(fields).__name__})")
        self.fields: Dict[str, Any] = dict(fields or {})

    def forward(self, data: Data) -> Data:
        fields = {**_DEFAULT_FIELDS, **self.fields}
        fields = {k: v for k, v in fields.items() if k in data}
        return SO3().act(random_rotation(), data, fields)

    def __repr__(self) -> str:
        extra = f"fields={self.fields}" if self.fields else ""
        return f"{type(self).__name__}({extra})"
