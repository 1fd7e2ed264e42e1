r"""The :class:`SampleSurface` transform: area-weighted point sampling of a
mesh surface, with normals."""
import torch
from torch_geometric.data import Data
from torch_geometric.transforms import SamplePoints

__all__ = ["SampleSurface"]


class SampleSurface(SamplePoints):
    r"""Samples :obj:`num` points uniformly on the surface of a mesh ``Data``
    (``pos [N, 3]``, ``face [3, F]``): a face is drawn with probability
    proportional to its area, then a uniform point in it,

    .. math::
        \mathbf{p} = \mathbf{x}_a + u\,(\mathbf{x}_b - \mathbf{x}_a)
            + v\,(\mathbf{x}_c - \mathbf{x}_a), \qquad
        P(f) = A_f / \textstyle\sum_g A_g,

    with :math:`(u, v)` uniform on the triangle, and with the unit face normal
    as ``normal`` (oriented by the face winding). A validating wrapper of
    :class:`torch_geometric.transforms.SamplePoints` (which needs no pyg-lib)
    that includes normals by default. Apply it to a raw mesh: per-vertex
    attributes of the mesh no longer match the sampled points.

    Args:
        num (int): the number of points.
        remove_faces (bool, optional): drop ``face``. (default: :obj:`True`)
        include_normals (bool, optional): store the face normal of each sample
            in ``normal``. (default: :obj:`True`)
    """
    def __init__(self, num: int, remove_faces: bool = True, include_normals: bool = True):
        if isinstance(num, bool) or not isinstance(num, int) or num < 1:
            raise ValueError(f"'SampleSurface' expected a positive number of points "
                             f"(got {num!r})")
        super().__init__(num, remove_faces=remove_faces, include_normals=include_normals)

    def forward(self, data: Data) -> Data:
        pos, face = getattr(data, "pos", None), getattr(data, "face", None)
        if pos is None or face is None:
            raise ValueError("'SampleSurface' expected a mesh 'Data' with 'pos' and 'face'")
        if pos.dim() != 2 or pos.size(1) != 3:
            raise ValueError(f"Expected 'pos' tensor with shape [num_nodes, 3] "
                             f"(got {list(pos.shape)})")
        if face.dim() != 2 or face.size(0) != 3 or face.size(1) == 0:
            raise ValueError(f"Expected 'face' tensor with shape [3, num_faces] "
                             f"(got {list(face.shape)})")
        if not bool(torch.isfinite(pos).all()):
            raise ValueError("'SampleSurface' received a 'pos' with NaN or infinite values")
        if int(face.min()) < 0 or int(face.max()) >= pos.size(0):
            raise ValueError(f"Expected 'face' indices in [0, {pos.size(0) - 1}] (got values "
                             f"in [{int(face.min())}, {int(face.max())}])")
        return super().forward(data)
