r"""The :class:`PointCloudGraph` transform: a neighbourhood graph with
tangent frames, log maps and connection on a point cloud."""
from typing import Optional

from torch_geometric.data import Data
from torch_geometric.transforms import BaseTransform

from gdl_pyg.domains.points import points_to_data

__all__ = ["PointCloudGraph"]


class PointCloudGraph(BaseTransform):
    r"""Builds a :math:`k`-NN (:obj:`k`) or radius (:obj:`r`) graph on
    ``data.pos`` with the mesh-like geometry of
    :func:`gdl_pyg.domains.points_to_data` (``normal``, ``frame``,
    ``edge_logmap``, ``edge_connection``), so mesh layers run on point
    clouds. Normals already in ``data.normal`` are used (e.g. from
    :class:`SampleSurface`), else estimated by PCA; ``data.batch`` is
    respected; other attributes are kept.

    .. math::
        \mathcal{N}(i) = k\text{-NN}(i) \quad\text{or}\quad
        \{ j : \lVert \mathbf{x}_j - \mathbf{x}_i \rVert < r \}

    Args:
        k (int, optional): neighbours per point (give :obj:`k` or :obj:`r`).
        r (float, optional): neighbourhood radius.
        use_normal (bool, optional): use ``data.normal`` when present.
            (default: :obj:`True`)
        normal_k (int, optional): neighbours of the PCA normals.
            (default: :obj:`16`)
        orientation (str, optional): ``"mst"``, ``"centroid"`` or :obj:`None`,
            see :func:`gdl_pyg.domains.points.estimate_normals`.
            (default: :obj:`"mst"`)
        max_num_neighbors (int, optional): cap of the radius graph.
            (default: :obj:`32`)
    """
    def __init__(self, k: Optional[int] = None, r: Optional[float] = None,
                 use_normal: bool = True, normal_k: int = 16,
                 orientation: Optional[str] = "mst", max_num_neighbors: int = 32):
        if (k is None) == (r is None):
            raise ValueError(f"'PointCloudGraph' expected exactly one of 'k' or 'r' "
                             f"(got k={k!r}, r={r!r})")
        self.k, self.r = k, r
        self.use_normal = use_normal
        self.normal_k = normal_k
        self.orientation = orientation
        self.max_num_neighbors = max_num_neighbors

    def forward(self, data: Data) -> Data:
        if getattr(data, "pos", None) is None:
            raise ValueError(f"'{type(self).__name__}' expected a 'Data' with 'pos'")
        normal = data.normal if self.use_normal and "normal" in data else None
        batch = data.batch if "batch" in data else None
        geo = points_to_data(data.pos, k=self.k, r=self.r, normal=normal, batch=batch,
                             max_num_neighbors=self.max_num_neighbors,
                             normal_k=self.normal_k, orientation=self.orientation)
        for key in geo.keys():
            data[key] = geo[key]
        return data

    def __repr__(self) -> str:
        arg = f"k={self.k}" if self.k is not None else f"r={self.r}"
        return f"{type(self).__name__}({arg})"
