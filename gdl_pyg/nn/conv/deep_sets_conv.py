r"""The permutation-equivariant Deep Sets layer (Zaheer et al. 2017): a GNN on
the implicit complete graph of each set (Bronstein et al. 2021, sec. 5.2)."""
from typing import Optional

import torch
from torch import Tensor
from torch_geometric.nn.conv import MessagePassing
from torch_geometric.nn.dense.linear import Linear
from torch_geometric.typing import OptTensor

from gdl_pyg.nn.conv.message_passing_conv import check_choice
from gdl_pyg.nn._checks import check_index
from gdl_pyg.utils import check_channels, check_features

__all__ = ["DeepSetsConv"]


class DeepSetsConv(MessagePassing):
    r"""The permutation-equivariant set layer from the `"Deep Sets"
    <https://arxiv.org/abs/1703.06114>`_ paper, as read in the `"Geometric
    Deep Learning: Grids, Groups, Graphs, Geodesics, and Gauges"
    <https://arxiv.org/abs/2104.13478>`_ book (sec. 5.2: a set is a graph
    whose neighbourhoods are the whole set):

    .. math::
        \mathbf{h}_i = \mathbf{\Theta}_1 \mathbf{x}_i + \mathbf{\Theta}_2
        \bigoplus_{j \in S(i)} \mathbf{x}_j + \mathbf{b},

    where :math:`S(i)` is the set (graph of the batch) that contains
    :math:`i`, itself included, and :math:`\bigoplus` is a sum, mean or max.
    The complete graph is implicit: the set summaries are computed by one
    scatter over :obj:`batch` and gathered back, in :math:`O(N)` rather than
    :math:`O(N^2)`.

    Args:
        in_channels (int): input width.
        out_channels (int): output width.
        aggr (str, optional): :obj:`"sum"` (or :obj:`"add"`), :obj:`"mean"` or
            :obj:`"max"`. (default: :obj:`"sum"`)
        bias (bool, optional): adds :math:`\mathbf{b}`. (default: :obj:`True`)
        **kwargs (optional): additional arguments of
            :class:`torch_geometric.nn.conv.MessagePassing`.

    Shapes:
        - **input:**
          node features :math:`(|\mathcal{V}|, F_{in})`,
          batch vector :math:`(|\mathcal{V}|)` *(optional)*
        - **output:** node features :math:`(|\mathcal{V}|, F_{out})`
    """
    #: The symmetry group of the layer.
    group_name = "Permutations"

    def __init__(self, in_channels: int, out_channels: int, aggr: str = "sum",
                 bias: bool = True, **kwargs):
        check_choice(type(self).__name__, "aggr", aggr, ("sum", "add", "mean", "max"))
        super().__init__(aggr=aggr, **kwargs)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.lin_self = Linear(in_channels, out_channels, bias=bias)
        self.lin_set = Linear(in_channels, out_channels, bias=False)
        self.reset_parameters()

    def reset_parameters(self):
        super().reset_parameters()
        self.lin_self.reset_parameters()
        self.lin_set.reset_parameters()

    def forward(self, x: Tensor, batch: OptTensor = None,
                batch_size: Optional[int] = None) -> Tensor:
        r"""Runs the layer; pass :obj:`batch_size` to avoid a device
        synchronisation (and a graph break under :func:`torch.compile`)."""
        if not isinstance(x, Tensor) or x.dim() != 2:
            raise ValueError(f"'{type(self).__name__}' expected node features of shape "
                             f"[num_nodes, {self.in_channels}] (got "
                             f"{list(x.shape) if isinstance(x, Tensor) else type(x).__name__})")
        check_features(x, type(self).__name__, "x", dims=(2,))
        check_channels(x, self.in_channels, type(self).__name__)
        check_index(batch, x.size(0), type(self).__name__, "batch", batch_size)
        if batch is None:
            batch = x.new_zeros(x.size(0), dtype=torch.long)
            batch_size = 1
        elif batch_size is None:
            batch_size = int(batch.max()) + 1 if batch.numel() > 0 else 0
        summary = self.aggr_module(x, index=batch, dim_size=batch_size)  # [B, F_in]
        return self.lin_self(x) + self.lin_set(summary).index_select(0, batch)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.in_channels}, {self.out_channels}, "
                f"aggr={self.aggr})")
