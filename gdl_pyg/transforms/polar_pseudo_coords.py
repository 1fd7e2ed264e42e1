r"""The :class:`PolarPseudoCoords` transform: MoNet pseudo-coordinates of the
mesh edges from their geodesic polar coordinates (``edge_logmap``)."""
import math
from typing import Optional

import torch
from torch_geometric.data import Data
from torch_geometric.transforms import BaseTransform

__all__ = ["PolarPseudoCoords"]

COORDS = ("polar", "cartesian")


class PolarPseudoCoords(BaseTransform):
    r"""Writes the pseudo-coordinates of the `"Geometric Deep Learning on
    Graphs and Manifolds Using Mixture Model CNNs"
    <https://arxiv.org/abs/1611.08402>`_ paper (MoNet) into ``edge_attr``,
    from the geodesic polar coordinates :math:`(r_{ij}, \phi_{ij})` of every
    edge (``edge_logmap``, written by :class:`~gdl_pyg.transforms.MeshGeometry`).

    **MoNet = PyG's** :class:`~torch_geometric.nn.conv.GMMConv` **on these
    pseudo-coordinates** (see :class:`~gdl_pyg.nn.models.MoNet`): the layer
    itself is PyG's, unchanged; this transform supplies the intrinsic
    coordinates MoNet uses on manifolds. They are normalised to
    :math:`[0, 1]^2` like PyG's :class:`~torch_geometric.transforms.Polar`
    and :class:`~torch_geometric.transforms.Cartesian` do for extrinsic
    positions:

    .. math::
        \text{polar:}\quad \mathbf{u}_{ij} = \Big(\frac{r_{ij}}{R},\;
            \frac{\phi_{ij} \bmod 2\pi}{2\pi}\Big), \qquad
        \text{cartesian:}\quad \mathbf{u}_{ij} = \frac{1}{2}
            + \frac{r_{ij}}{2R}(\cos\phi_{ij}, \sin\phi_{ij}),

    with :math:`R` = :obj:`max_radius`, or the largest :math:`r` of the
    graph when :obj:`max_radius` is :obj:`None`.

    The coordinates are intrinsic: rigid motions of the mesh (with the
    geometry recomputed) leave them unchanged. But they depend on the gauge,
    the choice of the reference direction :math:`\phi = 0` at every vertex:
    rotating the frame of :math:`i` by :math:`\theta_i`
    (:class:`~gdl_pyg.groups.GaugeGroup`) maps :math:`\phi_{ij}` to
    :math:`\phi_{ij} - \theta_i`. Unlike GEM-CNN
    (gauge equivariant) or :class:`~gdl_pyg.nn.conv.GeodesicConv` (invariant
    by angular max pooling), MoNet on these coordinates is therefore **not**
    gauge invariant; its output depends on the reference direction that
    :func:`~gdl_pyg.domains.mesh_to_data` picks (the neighbour with the
    smallest index), hence on the vertex numbering.

    Args:
        max_radius (float, optional): the normalising radius :math:`R`.
            (default: :obj:`None`, the largest :math:`r` of the graph)
        coords (str, optional): ``"polar"`` or ``"cartesian"``.
            (default: :obj:`"polar"`)
        cat (bool, optional): concatenate to an existing ``edge_attr``
            instead of replacing it. (default: :obj:`True`)
    """
    def __init__(self, max_radius: Optional[float] = None, coords: str = "polar",
                 cat: bool = True):
        if max_radius is not None and (isinstance(max_radius, bool)
                                       or not isinstance(max_radius, (int, float))
                                       or not math.isfinite(max_radius) or max_radius <= 0):
            raise ValueError(f"'{type(self).__name__}' expected a positive finite "
                             f"'max_radius' or None (got {max_radius!r})")
        if coords not in COORDS:
            raise ValueError(f"'{type(self).__name__}' expected 'coords' to be one of "
                             f"{list(COORDS)} (got {coords!r})")
        self.max_radius = None if max_radius is None else float(max_radius)
        self.coords = coords
        self.cat = cat

    def forward(self, data: Data) -> Data:
        name = type(self).__name__
        lm = data.get("edge_logmap")
        if lm is None:
            raise ValueError(f"'{name}' needs 'edge_logmap' (the polar coordinates (r, phi) "
                             f"of every edge); add it first with the 'MeshGeometry' "
                             f"transform (gdl_pyg.transforms.MeshGeometry)")
        if lm.dim() != 2 or lm.size(1) != 2:
            raise ValueError(f"'{name}' expected 'edge_logmap' of shape [num_edges, 2] "
                             f"(got {list(lm.shape)})")
        r, phi = lm[:, 0], lm[:, 1]
        if self.max_radius is not None:
            R = self.max_radius
        else:
            R = float(r.max()) if r.numel() > 0 else 1.0
            R = R if R > 0 else 1.0
        if self.coords == "polar":
            u = torch.stack([r / R, torch.remainder(phi, 2 * math.pi) / (2 * math.pi)], -1)
        else:
            u = 0.5 + (0.5 / R) * r.unsqueeze(-1) * torch.stack([torch.cos(phi),
                                                                 torch.sin(phi)], -1)
        old = data.get("edge_attr")
        if self.cat and old is not None:
            old = old.view(-1, 1) if old.dim() == 1 else old
            u = torch.cat([old, u.to(old.dtype)], dim=-1)
        data.edge_attr = u
        return data

    def __repr__(self) -> str:
        args = [] if self.max_radius is None else [f"max_radius={self.max_radius:g}"]
        if self.coords != "polar":
            args.append(f"coords={self.coords!r}")
        return f"{type(self).__name__}({', '.join(args)})"
