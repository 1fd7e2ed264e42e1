r"""MoNet (Monti et al. 2017) on meshes: PyG's
:class:`~torch_geometric.nn.conv.GMMConv`, unchanged, on the intrinsic
pseudo-coordinates of :class:`~gdl_pyg.transforms.PolarPseudoCoords`."""
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.nn import GMMConv

from gdl_pyg.nn.models._utils import (LEVELS, READOUTS, ReadoutHeadMixin, _check_choice,
                                      _check_dropout, _check_int, _node_features)

__all__ = ["MoNet"]


class MoNet(ReadoutHeadMixin, torch.nn.Module):
    r"""The mixture model network from the `"Geometric Deep Learning on
    Graphs and Manifolds Using Mixture Model CNNs"
    <https://arxiv.org/abs/1611.08402>`_ paper (MoNet): :obj:`num_layers`
    Gaussian mixture convolutions with ELU,

    .. math::
        \mathbf{h}^{(\ell)}_i = \mathrm{ELU}\Big(\mathbf{\Theta}_r
            \mathbf{h}^{(\ell-1)}_i + \frac{1}{|\mathcal{N}(i)|}
            \sum_{j \in \mathcal{N}(i)} \frac{1}{K} \sum_{k=1}^{K}
            w_k(\mathbf{u}_{ij})\, \mathbf{\Theta}_k \mathbf{h}^{(\ell-1)}_j
            + \mathbf{b}\Big),
        \qquad w_k(\mathbf{u}) = \exp\Big(-\tfrac{1}{2}
            (\mathbf{u} - \boldsymbol{\mu}_k)^{\top} \Sigma_k^{-1}
            (\mathbf{u} - \boldsymbol{\mu}_k)\Big),

    then a linear head per vertex (:obj:`level="node"`) or a readout and a
    two-layer MLP per mesh (:obj:`level="graph"`).

    **MoNet = PyG's** :class:`~torch_geometric.nn.conv.GMMConv` **on our
    pseudo-coordinates**: every layer is a plain
    :class:`~torch_geometric.nn.conv.GMMConv`, and the pseudo-coordinates
    :math:`\mathbf{u}_{ij}` are ``data.edge_attr``, written by
    :class:`~gdl_pyg.transforms.PolarPseudoCoords` from the geodesic polar
    coordinates of :class:`~gdl_pyg.transforms.MeshGeometry` (or any other
    :obj:`dim`-dimensional edge features, e.g. PyG's
    :class:`~torch_geometric.transforms.Cartesian`). The model is invariant
    under rigid motions of the mesh (the coordinates are intrinsic) and node
    permutations, but not under gauge changes: the angular coordinate is
    measured from a reference direction per vertex (see
    :class:`~gdl_pyg.transforms.PolarPseudoCoords`).

    Args:
        in_channels (int): input node feature width. Without ``data.x`` a
            constant feature 1 is used (then :obj:`in_channels` must be 1).
        hidden_channels (int): width of every layer.
        out_channels (int): number of outputs (classes) per node or graph.
        num_layers (int, optional): number of GMMConv layers. (default: :obj:`3`)
        kernel_size (int, optional): number of Gaussian kernels :math:`K`.
            (default: :obj:`8`)
        dim (int, optional): pseudo-coordinate dimension. (default: :obj:`2`)
        level (str, optional): ``"node"`` or ``"graph"``. (default: :obj:`"node"`)
        readout (str, optional): graph readout, ``"sum"``, ``"mean"``,
            ``"max"`` or ``"attention"``; ignored at the node level.
            (default: :obj:`"mean"`)
        dropout (float, optional): dropout before the head. (default: :obj:`0.0`)
        separate_gaussians (bool, optional): as in
            :class:`~torch_geometric.nn.conv.GMMConv`. (default: :obj:`False`)

    Shapes:
        - **input:** a ``Data`` / ``Batch`` with ``x`` :math:`(|\mathcal{V}|,
          F_{in})` *(optional)*, ``edge_index`` :math:`(2, |\mathcal{E}|)`,
          ``edge_attr`` :math:`(|\mathcal{E}|, \text{dim})`, ``batch``
          :math:`(|\mathcal{V}|)` *(optional)*
        - **output:** logits :math:`(|\mathcal{V}|, F_{out})` (node level) or
          :math:`(B, F_{out})` (graph level)
    """

    def __init__(self, in_channels: int, hidden_channels: int, out_channels: int,
                 num_layers: int = 3, kernel_size: int = 8, dim: int = 2,
                 level: Literal["node", "graph"] = "node",
                 readout: Literal["sum", "mean", "max", "attention"] = "mean",
                 dropout: float = 0.0, separate_gaussians: bool = False):
        super().__init__()
        name = type(self).__name__
        for key, value in (("in_channels", in_channels), ("hidden_channels", hidden_channels),
                           ("out_channels", out_channels), ("num_layers", num_layers),
                           ("kernel_size", kernel_size), ("dim", dim)):
            _check_int(name, key, value)
        _check_choice(name, "level", level, LEVELS)
        _check_choice(name, "readout", readout, READOUTS)
        _check_dropout(name, dropout)
        self.in_channels = in_channels
        self.hidden_channels = hidden_channels
        self.out_channels = out_channels
        #: The number of classes (read by the classification tasks).
        self.num_classes = out_channels
        self.num_layers = num_layers
        self.kernel_size = kernel_size
        self.dim = dim
        self.level = level
        self.readout_kind = readout
        self.dropout = dropout
        H = hidden_channels
        self.convs = torch.nn.ModuleList([
            GMMConv(in_channels if i == 0 else H, H, dim=dim, kernel_size=kernel_size,
                    separate_gaussians=separate_gaussians)
            for i in range(num_layers)])
        self._init_head(level, readout, H, out_channels, act=torch.nn.ELU)
        self.reset_parameters()

    def reset_parameters(self):
        r"""Resets all learnable parameters."""
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
        u = data.get("edge_attr")
        if u is None:
            raise ValueError(f"'{name}' needs pseudo-coordinates in 'edge_attr'; add them with "
                             f"the 'PolarPseudoCoords' transform "
                             f"(gdl_pyg.transforms.PolarPseudoCoords) after 'MeshGeometry'")
        u = u.view(-1, 1) if u.dim() == 1 else u
        if u.dim() != 2 or u.size(1) != self.dim or u.size(0) != data.edge_index.size(1):
            raise ValueError(f"'{name}' expected 'edge_attr' of shape [num_edges, dim] = "
                             f"[{data.edge_index.size(1)}, {self.dim}] (got {list(u.shape)})")
        x = _node_features(name, data, self.in_channels, u)
        return x, data.edge_index, u

    def embed(self, data: Data) -> Tensor:
        r"""The node embeddings after the last layer :math:`(|\mathcal{V}|,
        F_{hid})`."""
        h, edge_index, u = self._inputs(data)
        for conv in self.convs:
            h = F.elu(conv(h, edge_index, u))
        return h

    def forward(self, data: Data) -> Tensor:
        return self._readout_head(self.embed(data), data)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.in_channels}, {self.hidden_channels}, "
                f"{self.out_channels}, num_layers={self.num_layers}, "
                f"kernel_size={self.kernel_size}, level={self.level!r})")
