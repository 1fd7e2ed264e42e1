r"""Graph construction that PyG from PyPI lacks without pyg-lib or
torch-cluster: :math:`k`-NN and radius graphs, farthest point sampling and
voxel-grid clustering, in pure torch (CPU or GPU), with exact KD-tree
searches through :class:`scipy.spatial.cKDTree` on CPU (``backend="scipy"``),
dispatching to :obj:`torch_cluster` when it is installed
(``backend="auto"``)."""
from gdl_pyg.ops.knn import knn, knn_graph, nearest
from gdl_pyg.ops.radius import radius, radius_graph
from gdl_pyg.ops.fps import fps
from gdl_pyg.ops.voxel import grid_cluster, voxel_grid

__all__ = [
    "knn",
    "knn_graph",
    "nearest",
    "radius",
    "radius_graph",
    "fps",
    "grid_cluster",
    "voxel_grid",
]
