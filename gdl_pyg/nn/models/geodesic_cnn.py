r"""The Geodesic CNN of Masci et al. (2015): intrinsic convolutions in
geodesic polar coordinates with angular max pooling."""
from typing import Literal, Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Data

from gdl_pyg.nn.conv.geodesic_conv import GeodesicConv
from gdl_pyg.nn.models._utils import (LEVELS, READOUTS, ReadoutHeadMixin, _check_choice,
                                      _check_dropout, _check_int, _node_features)

__all__ = ["GeodesicCNN"]


class GeodesicCNN(ReadoutHeadMixin, torch.nn.Module):
    r"""The geodesic convolutional neural network from the `"Geodesic
    Convolutional Neural Networks on Riemannian Manifolds"
    <https://arxiv.org/abs/1501.06297>`_ paper: a linear layer per vertex,
    :obj:`num_layers` :class:`~gdl_pyg.nn.conv.GeodesicConv` layers with ReLU,

    .. math::
        \mathbf{h}^{(0)}_i = \mathrm{ReLU}(\mathbf{W}_{in} \mathbf{x}_i), \qquad
        \mathbf{h}^{(\ell)}_i = \mathrm{ReLU}\Big(\max_{\alpha}
            (a^{(\ell)} \star D[\mathbf{h}^{(\ell-1)}])_i(\alpha) + \mathbf{b}^{(\ell)}\Big),

    then a linear head per vertex (:obj:`level="node"`) or a readout and a
    two-layer MLP per mesh (:obj:`level="graph"`).

    Every layer pools over all rotations of its filters, so the logits are
    invariant under gauge changes (any angles, exactly up to round-off),
    hence under the change of reference direction a vertex renumbering
    causes, and under rigid motions of the mesh (the geometry is
    intrinsic); node-level logits are permutation equivariant.

    Args:
        in_channels (int): input node feature width. Without ``data.x`` a
            constant feature 1 is used (then :obj:`in_channels` must be 1).
        hidden_channels (int): width of every layer.
        out_channels (int): number of outputs (classes) per node or graph.
        num_layers (int, optional): number of geodesic convolutions.
            (default: :obj:`2`)
        num_rho (int, optional): radial bins. (default: :obj:`3`)
        num_theta (int, optional): angular bins / filter rotations.
            (default: :obj:`8`)
        max_radius (float, optional): radius of the outermost ring, in the
            units of ``edge_logmap``. (default: :obj:`1.0`)
        rotation_pool (str, optional): ``"continuous"`` or ``"discrete"``
            (see :class:`~gdl_pyg.nn.conv.GeodesicConv`).
            (default: :obj:`"continuous"`)
        level (str, optional): ``"node"`` or ``"graph"``. (default: :obj:`"node"`)
        readout (str, optional): graph readout, ``"sum"``, ``"mean"``,
            ``"max"`` or ``"attention"``; ignored at the node level.
            (default: :obj:`"mean"`)
        dropout (float, optional): dropout before every geodesic layer and
            the head. (default: :obj:`0.0`)

    Shapes:
        - **input:** a ``Data`` / ``Batch`` with ``x`` :math:`(|\mathcal{V}|,
          F_{in})` *(optional)*, ``edge_index`` :math:`(2, |\mathcal{E}|)`,
          ``edge_logmap`` :math:`(|\mathcal{E}|, 2)`, ``batch``
          :math:`(|\mathcal{V}|)` *(optional)*
        - **output:** logits :math:`(|\mathcal{V}|, F_{out})` (node level) or
          :math:`(B, F_{out})` (graph level)
    """

    def __init__(self, in_channels: int, hidden_channels: int, out_channels: int,
                 num_layers: int = 2, num_rho: int = 3, num_theta: int = 8,
                 max_radius: float = 1.0,
                 rotation_pool: Literal["continuous", "discrete"] = "continuous",
                 level: Literal["node", "graph"] = "node",
                 readout: Literal["sum", "mean", "max", "attention"] = "mean",
                 dropout: float = 0.0):
        super().__init__()
        name = type(self).__name__
        for key, value in (("in_channels", in_channels), ("hidden_channels", hidden_channels),
                           ("out_channels", out_channels), ("num_layers", num_layers),
                           ("num_rho", num_rho), ("num_theta", num_theta)):
            _check_int(name, key, value)
        _check_choice(name, "level", level, LEVELS)
        _check_choice(name, "readout", readout, READOUTS)
        _check_choice(name, "rotation_pool", rotation_pool, ("continuous", "discrete"))
        _check_dropout(name, dropout)
        self.in_channels = in_channels
        self.hidden_channels = hidden_channels
        self.out_channels = out_channels
        #: The number of classes (read by the classification tasks).
        self.num_classes = out_channels
        self.num_layers = num_layers
        self.num_rho = num_rho
        self.num_theta = num_theta
        self.max_radius = max_radius
        self.level = level
        self.readout_kind = readout
        self.dropout = dropout
        H = hidden_channels
        self.lin_in = torch.nn.Linear(in_channels, H)
        self.convs = torch.nn.ModuleList([
            GeodesicConv(H, H, num_rho=num_rho, num_theta=num_theta, max_radius=max_radius,
                         rotation_pool=rotation_pool)
            for _ in range(num_layers)])
        self._init_head(level, readout, H, out_channels, act=torch.nn.ReLU)
        self.reset_parameters()

    def reset_parameters(self):
        r"""Resets all learnable parameters."""
        self.lin_in.reset_parameters()
        for conv in self.convs:
            conv.reset_parameters()
        self._reset_head()

    def _inputs(self, data: Data):
        name = type(self).__name__
        if not isinstance(data, Data):
            raise TypeError(f"'{name}' expected a torch_geometric 'Data' or 'Batch' (got "
                            f"{type(data).__name__})")
        if data.get("edge_index") is None:
            raise ValueError(f"'{name}' needs 'edge_index' (got None)")
        lm: Optional[Tensor] = data.get("edge_logmap")
        if lm is None:
            raise ValueError(f"'{name}' needs 'edge_logmap'; add it with the 'MeshGeometry' "
                             f"transform (gdl_pyg.transforms.MeshGeometry)")
        x = _node_features(name, data, self.in_channels, lm)
        return x, data.edge_index, lm

    def embed(self, data: Data) -> Tensor:
        r"""The node embeddings after the last geodesic layer
        :math:`(|\mathcal{V}|, F_{hid})`."""
        x, edge_index, lm = self._inputs(data)
        h = self.lin_in(x).relu()
        for conv in self.convs:
            h = F.dropout(h, p=self.dropout, training=self.training)
            h = conv(h, edge_index, lm).relu()
        return h

    def forward(self, data: Data) -> Tensor:
        return self._readout_head(self.embed(data), data)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.in_channels}, {self.hidden_channels}, "
                f"{self.out_channels}, num_layers={self.num_layers}, num_rho={self.num_rho}, "
                f"num_theta={self.num_theta}, level={self.level!r})")
