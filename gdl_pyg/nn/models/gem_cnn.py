r"""The gauge equivariant mesh CNN (sec. 4.5 "Gauges" of the `"Geometric
Deep Learning" <https://arxiv.org/abs/2104.13478>`_ book): GEM convolutions,
regular nonlinearities and parallel transport pooling on a mesh hierarchy,
with an invariant readout per vertex (segmentation) or per mesh
(classification).
"""
from typing import List, Literal, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.utils import scatter

from gdl_pyg.nn.conv.gem_conv import GEMConv
from gdl_pyg.nn.models._utils import (LEVELS, _check_choice, _check_dropout, _check_int,
                                      _node_features)
from gdl_pyg.nn.nonlinearity import RegularNonlinearity
from gdl_pyg.nn.pool.parallel_transport_pool import (ParallelTransportPool,
                                                     ParallelTransportUnpool)

__all__ = ["GEMCNN"]


class _Block(torch.nn.Module):
    r"""GEMConv followed by the regular nonlinearity."""

    def __init__(self, c_in: int, c_out: int, in_order: int, out_order: int, num_rings: int,
                 max_radius: float, num_samples: Optional[int]):
        super().__init__()
        self.conv = GEMConv(c_in, c_out, in_order, out_order, num_rings=num_rings,
                            max_radius=max_radius)
        self.act = RegularNonlinearity(out_order, num_samples=num_samples)

    def reset_parameters(self):
        self.conv.reset_parameters()

    def forward(self, x: Tensor, edge_index: Tensor, edge_logmap: Tensor,
                edge_connection: Tensor) -> Tensor:
        return self.act(self.conv(x, edge_index, edge_logmap, edge_connection))


def _level_key(key: str, level: int) -> str:
    return key if level == 0 else f"{key}_{level}"


class GEMCNN(torch.nn.Module):
    r"""The gauge equivariant mesh CNN from the `"Gauge Equivariant Mesh
    CNNs: Anisotropic convolutions on geometric graphs"
    <https://arxiv.org/abs/2003.05425>`_ paper. Features are fields
    :math:`\mathbf{h}_v \in \mathbb{R}^{C \times (2M+1)}` of SO(2)
    representations of orders :math:`0..M` (:obj:`max_order`); a stage is
    :obj:`num_layers` blocks

    .. math::
        \mathbf{h}^{(\ell)} = \sigma_{reg}\bigl(\mathrm{GEMConv}(\mathbf{h}^{(\ell-1)},
        r, \phi, c)\bigr),

    with :class:`~gdl_pyg.nn.conv.GEMConv` and the regular nonlinearity
    :class:`~gdl_pyg.nn.nonlinearity.RegularNonlinearity` (:obj:`num_samples`
    angles). Without :obj:`pooling` one stage runs on the mesh. With
    :obj:`pooling`, the stages run on the levels of a
    :class:`~gdl_pyg.transforms.MeshHierarchy` (:obj:`num_levels` coarse
    levels), joined by :class:`~gdl_pyg.nn.pool.ParallelTransportPool`; at
    the node level a U-Net decoder goes back with
    :class:`~gdl_pyg.nn.pool.ParallelTransportUnpool`, concatenating the
    encoder's features of the same level (skip connections) before one block
    per level. A last GEMConv maps to order 0 (gauge invariant channels),
    followed by ReLU, dropout and a linear head per vertex
    (:obj:`level="node"`) or the mean over the (coarsest) vertices of every
    mesh and a two-layer MLP (:obj:`level="graph"`).

    The logits are invariant under gauge changes whose angles are multiples
    of :math:`2\pi / \text{num\_samples}` (exactly, up to round-off; approximately
    for other angles, see :class:`RegularNonlinearity`), under rigid motions
    of the mesh (with the geometry recomputed), and node-level logits are
    permutation equivariant.

    Args:
        in_channels (int): order-0 input features per vertex (``data.x``
            ``[N, in_channels]``). Without ``data.x`` a constant feature 1 is
            used: set :obj:`in_channels` to 1.
        hidden_channels (int): channels of every block.
        out_channels (int): number of outputs (classes) per vertex or mesh.
        num_layers (int, optional): blocks per stage. (default: :obj:`2`)
        max_order (int, optional): the largest order :math:`M` of the hidden
            features. (default: :obj:`2`)
        level (str, optional): ``"node"`` (segmentation) or ``"graph"``
            (classification). (default: :obj:`"node"`)
        pooling (bool, optional): run on the levels of a
            :class:`~gdl_pyg.transforms.MeshHierarchy`. (default: :obj:`False`)
        num_levels (int, optional): the coarse levels used with
            :obj:`pooling` (the data needs at least as many).
            (default: :obj:`2`)
        num_rings (int, optional): radial basis size of the convolutions.
            (default: :obj:`2`)
        max_radius (float or sequence of float, optional): the radius the
            rings cover, per level (a float :math:`\rho` means :math:`\rho\,
            g^{l}` at level :math:`l`, :math:`g` = :obj:`radius_growth`);
            set it to a few edge lengths of the mesh. (default: :obj:`1.0`)
        radius_growth (float, optional): see :obj:`max_radius`; 2 matches a
            hierarchy with ratios 0.25 on a surface. (default: :obj:`2.0`)
        num_samples (int, optional): angles of the regular nonlinearity (odd,
            at least :math:`2M+1`). (default: :obj:`None`,
            :math:`8M + 1`)
        dropout (float, optional): dropout on the invariant features before
            the head. (default: :obj:`0.0`)

    Shapes:
        - **input:** a mesh ``Data`` / ``Batch`` with ``x``
          :math:`(|\mathcal{V}|, F_{in})` *(optional)*, ``edge_index``,
          ``edge_logmap``, ``edge_connection`` (see
          :func:`gdl_pyg.domains.mesh_to_data`), the attributes of
          :class:`~gdl_pyg.transforms.MeshHierarchy` with :obj:`pooling`, and
          ``batch`` :math:`(|\mathcal{V}|)` *(optional)*
        - **output:** logits :math:`(|\mathcal{V}|, F_{out})` (node level) or
          :math:`(B, F_{out})` (graph level)
    """
    #: The symmetry group of the model.
    group_name = "SO(2)^N"

    def __init__(self, in_channels: int, hidden_channels: int, out_channels: int,
                 num_layers: int = 2, max_order: int = 2,
                 level: Literal["node", "graph"] = "node", pooling: bool = False,
                 num_levels: int = 2, num_rings: int = 2,
                 max_radius: Union[float, Sequence[float]] = 1.0, radius_growth: float = 2.0,
                 num_samples: Optional[int] = None, dropout: float = 0.0):
        super().__init__()
        name = type(self).__name__
        for key, value in (("in_channels", in_channels), ("hidden_channels", hidden_channels),
                           ("out_channels", out_channels), ("num_layers", num_layers),
                           ("num_levels", num_levels), ("num_rings", num_rings)):
            _check_int(name, key, value)
        _check_int(name, "max_order", max_order, minimum=0)
        _check_choice(name, "level", level, LEVELS)
        _check_dropout(name, dropout)
        if not isinstance(pooling, bool):
            raise TypeError(f"'{name}' expected 'pooling' to be a bool (got {pooling!r})")
        num_stages = 1 + (num_levels if pooling else 0)
        if isinstance(max_radius, (int, float)) and not isinstance(max_radius, bool):
            if not isinstance(radius_growth, (int, float)) or radius_growth <= 0:
                raise ValueError(f"'{name}' expected a positive 'radius_growth' "
                                 f"(got {radius_growth!r})")
            radii = [float(max_radius) * float(radius_growth) ** s for s in range(num_stages)]
        else:
            radii = [float(r) for r in max_radius]
            if len(radii) != num_stages:
                raise ValueError(f"'{name}' expected one 'max_radius' per level ({num_stages}: "
                                 f"the mesh and {num_stages - 1} coarse levels) (got "
                                 f"{len(radii)}); or pass a single float")
        self.in_channels = in_channels
        self.hidden_channels = hidden_channels
        self.out_channels = out_channels
        #: The number of classes (read by the classification tasks).
        self.num_classes = out_channels
        self.num_layers = num_layers
        self.max_order = max_order
        self.level = level
        self.pooling = pooling
        self.num_levels = num_levels if pooling else 0
        self.num_rings = num_rings
        self.max_radius = radii
        self.dropout = dropout
        H, M = hidden_channels, max_order
        self.num_samples = RegularNonlinearity(M, num_samples).num_samples

        def block(c_in: int, in_order: int, stage: int) -> _Block:
            return _Block(c_in, H, in_order, M, num_rings, radii[stage], num_samples)

        self.encoder = torch.nn.ModuleList()
        for s in range(num_stages):
            self.encoder.append(torch.nn.ModuleList(
                [block(in_channels if s == 0 and i == 0 else H, 0 if s == 0 and i == 0 else M,
                       s) for i in range(num_layers)]))
        self.decoder = torch.nn.ModuleList()
        if level == "node":
            # decoder[k] runs on level num_stages - 2 - k after unpooling + skip
            for s in reversed(range(num_stages - 1)):
                self.decoder.append(block(2 * H, M, s))
        self.pool = ParallelTransportPool()
        self.unpool = ParallelTransportUnpool()
        out_stage = 0 if level == "node" else num_stages - 1
        self.out_conv = GEMConv(H, H, M, 0, num_rings=num_rings, max_radius=radii[out_stage])
        if level == "graph":
            self.head = torch.nn.Sequential(torch.nn.Linear(H, H), torch.nn.ReLU(),
                                            torch.nn.Linear(H, out_channels))
        else:
            self.head = torch.nn.Linear(H, out_channels)
        self.reset_parameters()

    def reset_parameters(self):
        r"""Resets all learnable parameters."""
        for stage in self.encoder:
            for blk in stage:
                blk.reset_parameters()
        for blk in self.decoder:
            blk.reset_parameters()
        self.out_conv.reset_parameters()
        for module in self.head.modules():
            if isinstance(module, torch.nn.Linear):
                module.reset_parameters()

    def _input(self, data: Data) -> Tensor:
        name = type(self).__name__
        if not isinstance(data, Data):
            raise TypeError(f"'{name}' expected a torch_geometric 'Data' or 'Batch' (got "
                            f"{type(data).__name__})")
        missing = [k for k in ("edge_index", "edge_logmap", "edge_connection")
                   if data.get(k) is None]
        if missing:
            raise ValueError(f"'{name}' needs the mesh geometry {missing}; apply "
                             f"'gdl_pyg.transforms.MeshGeometry' (e.g. as a pre_transform)")
        for level in range(1, self.num_levels + 1):
            if data.get(f"pool_cluster_{level}") is None:
                raise ValueError(
                    f"'{name}' with pooling=True and num_levels={self.num_levels} needs the "
                    f"hierarchy level {level} ('pool_cluster_{level}', 'edge_index_{level}', "
                    f"...); apply 'gdl_pyg.transforms.MeshHierarchy' with at least "
                    f"{self.num_levels} ratios (e.g. Compose([MeshGeometry(), "
                    f"MeshHierarchy()]) as the pre_transform)")
        x = _node_features(name, data, self.in_channels, data.edge_logmap,
                           what="order-0 node features")
        return x.to(data.edge_logmap.dtype).unsqueeze(-1)  # [N, C, 1]

    @staticmethod
    def _geometry(data: Data, level: int):
        return (data[_level_key("edge_index", level)], data[_level_key("edge_logmap", level)],
                data[_level_key("edge_connection", level)])

    def embed(self, data: Data) -> Tensor:
        r"""The gauge invariant features :math:`(|\mathcal{V}|, C)` of the
        vertices of the mesh (node level) or of the coarsest level (graph
        level), before dropout and the head."""
        h = self._input(data)
        skips: List[Tensor] = []
        for s, stage in enumerate(self.encoder):
            if s > 0:
                skips.append(h)
                h = self.pool(h, data[f"pool_cluster_{s}"], data[f"pool_transport_{s}"],
                              data[f"pool_index_{s}"].numel())
            geo = self._geometry(data, s)
            for blk in stage:
                h = blk(h, *geo)
        for k, blk in enumerate(self.decoder):
            s = len(self.encoder) - 2 - k  # the level unpooled to
            h = self.unpool(h, data[f"pool_cluster_{s + 1}"], data[f"pool_transport_{s + 1}"])
            h = blk(torch.cat([h, skips[s]], dim=1), *self._geometry(data, s))
        out_level = 0 if self.level == "node" else self.num_levels
        h = self.out_conv(h, *self._geometry(data, out_level))
        return F.relu(h.squeeze(-1))

    def forward(self, data: Data) -> Tensor:
        h = self.embed(data)
        if self.level == "graph":
            batch = data.get("batch") if self.num_levels == 0 else \
                data.get(f"batch_{self.num_levels}")
            num_graphs = 1 if data.get("batch") is None else int(data.num_graphs)
            if batch is None:
                batch = torch.zeros(h.size(0), dtype=torch.long, device=h.device)
            h = scatter(h, batch, dim=0, dim_size=num_graphs, reduce="mean")
        h = F.dropout(h, p=self.dropout, training=self.training)
        return self.head(h)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.in_channels}, {self.hidden_channels}, "
                f"{self.out_channels}, num_layers={self.num_layers}, "
                f"max_order={self.max_order}, level={self.level!r}, "
                f"pooling={self.pooling}, num_levels={self.num_levels})")
