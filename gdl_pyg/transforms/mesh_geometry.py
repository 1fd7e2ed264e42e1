r"""The :class:`MeshGeometry` transform: discrete differential geometry of a
mesh ``Data`` (``pos`` and ``face``), computed once as a pre-transform."""
from typing import Optional

from torch_geometric.data import Data
from torch_geometric.transforms import BaseTransform

from gdl_pyg.domains.mesh import mesh_to_data

__all__ = ["MeshGeometry"]


class MeshGeometry(BaseTransform):
    r"""Adds the geometry that mesh layers read to a ``Data`` with ``pos``
    and ``face`` (normals, face normals and areas, vertex ``mass``, the
    cotangent Laplacian, tangent ``frame``, mesh ``edge_index``,
    ``edge_logmap`` and ``edge_connection``), by
    :func:`gdl_pyg.domains.mesh_to_data`; every other attribute (``x``,
    ``y``, ...) is kept. Geometry is preprocessing: use it as the
    ``pre_transform`` of a dataset (e.g. :class:`~torch_geometric.datasets.FAUST`)
    so it is computed once and cached.

    .. math::
        (\mathbf{X}, \mathcal{F}) \mapsto \bigl(\mathbf{n}, A, L, M,
        (e_1, e_2), (r_{ij}, \phi_{ij}), c_{ji}\bigr)

    Args:
        method (str, optional): ``"intrinsic"`` (angle-normalised polar maps,
            needs a manifold mesh) or ``"extrinsic"`` (projected angles).
            (default: :obj:`"intrinsic"`)
        normal_weighting (str, optional): ``"angle"`` or ``"area"``.
            (default: :obj:`"angle"`)
        mass (str, optional): ``"mixed"`` or ``"barycentric"``.
            (default: :obj:`"mixed"`)
        geodesic_radius (float, optional): add neighbours within this
            geodesic (Dijkstra) radius. (default: :obj:`None`)
    """
    def __init__(self, method: str = "intrinsic", normal_weighting: str = "angle",
                 mass: str = "mixed", geodesic_radius: Optional[float] = None):
        self.method = method
        self.normal_weighting = normal_weighting
        self.mass = mass
        self.geodesic_radius = geodesic_radius

    def forward(self, data: Data) -> Data:
        if getattr(data, "pos", None) is None or getattr(data, "face", None) is None:
            raise ValueError(f"'{type(self).__name__}' expected a mesh 'Data' with 'pos' and "
                             f"'face' (got attributes {sorted(data.keys())})")
        geo = mesh_to_data(data.pos, data.face, method=self.method,
                           normal_weighting=self.normal_weighting, mass=self.mass,
                           geodesic_radius=self.geodesic_radius)
        for key in geo.keys():
            data[key] = geo[key]
        return data

    def __repr__(self) -> str:
        extra = "" if self.geodesic_radius is None else \
            f", geodesic_radius={self.geodesic_radius}"
        return f"{type(self).__name__}(method={self.method!r}{extra})"
