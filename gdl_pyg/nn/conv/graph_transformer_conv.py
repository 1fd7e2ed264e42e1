r"""Multi-head scaled dot-product attention on the complete graph of each set
(a Transformer layer) or on a sparse graph (Bronstein et al. 2021, sec. 5.3)."""
import math
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.nn.conv import MessagePassing
from torch_geometric.typing import Adj, OptPairTensor, OptTensor, Size
from torch_geometric.utils import scatter, softmax, to_dense_batch

from gdl_pyg.nn.conv.message_passing_conv import _pair
from gdl_pyg.utils import check_channels, check_edge_index, check_features

__all__ = ["GraphTransformerConv", "complete_edge_index"]


def complete_edge_index(batch: OptTensor = None, num_nodes: Optional[int] = None,
                        loop: bool = True) -> Tensor:
    r"""The edges of the complete graph of every graph in a batch (no edges
    between graphs), ordered by target node then source node.

    Args:
        batch (torch.Tensor, optional): sorted graph assignment :math:`(N)`.
        num_nodes (int, optional): :math:`N` when :obj:`batch` is :obj:`None`.
        loop (bool, optional): includes self loops. (default: :obj:`True`)

    Returns:
        :obj:`edge_index` :math:`(2, \sum_b N_b^2)` (or
        :math:`\sum_b N_b(N_b - 1)` without loops).
    """
    if batch is None:
        if num_nodes is None:
            raise ValueError("'complete_edge_index' needs 'batch' or 'num_nodes' (got neither)")
        batch = torch.zeros(num_nodes, dtype=torch.long)
    if batch.numel() > 1 and bool((batch[1:] < batch[:-1]).any()):
        raise ValueError("'complete_edge_index' expects a sorted 'batch' vector")
    counts = torch.bincount(batch)
    ptr = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
    n = counts[batch]  # size of the graph of each target node
    dst = torch.repeat_interleave(torch.arange(batch.numel(), device=batch.device), n)
    # position of each edge inside its target's block
    start = torch.repeat_interleave(n.cumsum(0) - n, n)
    src = torch.arange(dst.numel(), device=batch.device) - start + ptr[batch[dst]]
    edge_index = torch.stack([src, dst])
    if not loop:
        edge_index = edge_index[:, src != dst]
    return edge_index


class GraphTransformerConv(MessagePassing):
    r"""The Transformer's multi-head scaled dot-product attention as a graph
    layer, from the `"Geometric Deep Learning: Grids, Groups, Graphs,
    Geodesics, and Gauges" <https://arxiv.org/abs/2104.13478>`_ book (sec. 5.3:
    Transformers are attentional GNNs on the complete graph) and `"Attention
    Is All You Need" <https://arxiv.org/abs/1706.03762>`_:

    .. math::
        \mathbf{h}_u = \mathbf{W}_o \Big\Vert_{k=1}^{K} \sum_{v \in \mathcal{N}(u)}
        \alpha^k_{uv} \left(\mathbf{W}^k_v \mathbf{x}_v + \mathbf{W}^k_e
        \mathbf{e}_{uv}\right),\qquad
        \alpha^k_{uv} = \operatorname{softmax}_v \left(
        \frac{(\mathbf{W}^k_q \mathbf{x}_u)^\top (\mathbf{W}^k_k \mathbf{x}_v
        + \mathbf{W}^k_e \mathbf{e}_{uv})}{\sqrt{d}}\right),

    with :math:`d = F_{out} / K` and biases on the query, key, value and
    output maps :math:`\mathbf{W}_q, \mathbf{W}_k, \mathbf{W}_v, \mathbf{W}_o`. Without
    :obj:`edge_index`, :math:`\mathcal{N}(u)` is the whole graph of :math:`u`
    (self included): the nodes of each graph of the batch are padded into a
    dense :math:`(B, N_{max}, F)` tensor (:func:`~torch_geometric.utils.to_dense_batch`)
    and attention is masked, so no pair of nodes of different graphs is formed.
    This equals :class:`torch.nn.MultiheadAttention` (self-attention with a
    :obj:`key_padding_mask`) with the same weights. With :obj:`edge_index`
    (e.g. from :func:`complete_edge_index`, or a sparse graph) attention is
    restricted to the edges and may use edge features.

    Args:
        in_channels (int or tuple): input width, or a pair (source, target)
            (sparse mode only).
        out_channels (int): output width, a multiple of :obj:`heads`.
        heads (int, optional): number of heads :math:`K`. (default: :obj:`1`)
        dropout (float, optional): dropout on the attention weights.
            (default: :obj:`0.`)
        bias (bool, optional): biases of the query/key/value/output maps.
            (default: :obj:`True`)
        edge_dim (int, optional): edge feature width (sparse mode).
            (default: :obj:`None`)
        **kwargs (optional): additional arguments of
            :class:`torch_geometric.nn.conv.MessagePassing`.

    Shapes:
        - **input:**
          node features :math:`(|\mathcal{V}|, F_{in})`,
          edge indices :math:`(2, |\mathcal{E}|)` *(optional)*,
          edge features :math:`(|\mathcal{E}|, D)` *(optional)*,
          batch vector :math:`(|\mathcal{V}|)` *(optional)*
        - **output:** node features :math:`(|\mathcal{V}|, F_{out})`
    """
    #: The symmetry group of the layer.
    group_name = "Permutations"

    def __init__(self, in_channels: Union[int, Tuple[int, int]], out_channels: int,
                 heads: int = 1, dropout: float = 0., bias: bool = True,
                 edge_dim: Optional[int] = None, **kwargs):
        kwargs.setdefault("aggr", "add")
        super().__init__(node_dim=0, **kwargs)
        if heads < 1 or out_channels % heads:
            raise ValueError(f"'{type(self).__name__}' needs out_channels divisible by heads "
                             f"(got out_channels={out_channels}, heads={heads})")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.heads = heads
        self.head_dim = out_channels // heads
        self.dropout = dropout
        self.edge_dim = edge_dim
        src, dst = (in_channels, in_channels) if isinstance(in_channels, int) else in_channels
        self.lin_query = torch.nn.Linear(dst, out_channels, bias=bias)
        self.lin_key = torch.nn.Linear(src, out_channels, bias=bias)
        self.lin_value = torch.nn.Linear(src, out_channels, bias=bias)
        self.lin_out = torch.nn.Linear(out_channels, out_channels, bias=bias)
        self.lin_edge = None
        if edge_dim is not None:
            self.lin_edge = torch.nn.Linear(edge_dim, out_channels, bias=False)
        self.reset_parameters()

    def reset_parameters(self):
        super().reset_parameters()
        for lin in (self.lin_query, self.lin_key, self.lin_value):
            torch.nn.init.xavier_uniform_(lin.weight)
            if lin.bias is not None:
                torch.nn.init.zeros_(lin.bias)
        self.lin_out.reset_parameters()
        if self.lin_out.bias is not None:
            torch.nn.init.zeros_(self.lin_out.bias)
        if self.lin_edge is not None:
            self.lin_edge.reset_parameters()

    def forward(self, x: Union[Tensor, OptPairTensor], edge_index: Optional[Adj] = None,
                edge_attr: OptTensor = None, batch: OptTensor = None,
                batch_size: Optional[int] = None, max_num_nodes: Optional[int] = None,
                size: Size = None) -> Tensor:
        r"""Runs the layer; :obj:`batch_size` and :obj:`max_num_nodes` (dense
        mode) avoid a device synchronisation and a data-dependent shape."""
        H, d = self.heads, self.head_dim
        name = type(self).__name__
        in_src, in_dst = (self.in_channels, self.in_channels) \
            if isinstance(self.in_channels, int) else self.in_channels
        if edge_index is None:
            if isinstance(x, Tensor):
                check_features(x, name, "x", dims=(2,))
                check_channels(x, in_src, name)
            if not isinstance(x, Tensor):
                raise TypeError(f"'{type(self).__name__}' without 'edge_index' attends within "
                                f"each graph and needs a Tensor 'x' (got {type(x).__name__}); "
                                f"pass an 'edge_index' for bipartite attention")
            if edge_attr is not None:
                raise ValueError(f"'{type(self).__name__}' got 'edge_attr' without "
                                 f"'edge_index'; edge features need sparse mode")
            return self._dense(x, batch, batch_size, max_num_nodes)
        x_src, x_dst = _pair(x)
        if x_dst is None:
            raise ValueError(f"'{type(self).__name__}' needs target features for the queries "
                             f"(got x=(x_src, None))")
        check_features(x_src, name, "x_src" if x_src is not x_dst else "x", dims=(2,))
        check_channels(x_src, in_src, name, "x_src" if x_src is not x_dst else "x")
        if x_dst is not x_src:
            check_features(x_dst, name, "x_dst", dims=(2,))
            check_channels(x_dst, in_dst, name, "x_dst")
        num_src, num_dst = x_src.size(0), x_dst.size(0)
        if size is not None:
            num_src = size[0] if size[0] is not None else num_src
            num_dst = size[1] if size[1] is not None else num_dst
        check_edge_index(edge_index, num_src, name, num_dst_nodes=num_dst)
        if self.lin_edge is not None and isinstance(edge_attr, Tensor) and \
                isinstance(edge_index, Tensor) and edge_index.layout == torch.strided:
            E = edge_index.size(1)
            D = self.edge_dim
            if edge_attr.shape != (E, D) and not (D == 1 and edge_attr.shape == (E,)):
                raise ValueError(f"'{name}' expected 'edge_attr' of shape [{E}, {D}], one "
                                 f"row per edge of 'edge_index' (got "
                                 f"{list(edge_attr.shape)})")
        q = self.lin_query(x_dst).view(-1, H, d)
        k = self.lin_key(x_src).view(-1, H, d)
        v = self.lin_value(x_src).view(-1, H, d)
        out = self.propagate(edge_index, q=(None, q), k=(k, None), v=(v, None),
                             edge_attr=edge_attr, size=size)
        return self.lin_out(out.reshape(-1, H * d))

    def _dense(self, x: Tensor, batch: OptTensor, batch_size: Optional[int],
               max_num_nodes: Optional[int]) -> Tensor:
        H, d = self.heads, self.head_dim
        xd, mask = to_dense_batch(x, batch, batch_size=batch_size,
                                  max_num_nodes=max_num_nodes)  # [B, M, F], [B, M]
        B, M = mask.shape
        q = self.lin_query(xd).view(B, M, H, d).transpose(1, 2)  # [B, H, M, d]
        k = self.lin_key(xd).view(B, M, H, d).transpose(1, 2)
        v = self.lin_value(xd).view(B, M, H, d).transpose(1, 2)
        attn_mask = mask.view(B, 1, 1, M)  # True: a real key
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.)
        out = self.lin_out(out.transpose(1, 2).reshape(B * M, H * d))
        # back to nodes with a gather (a boolean `out[mask]` has a data-dependent shape)
        if batch is None:
            return out
        ones = torch.ones_like(batch)
        start = torch.cumsum(scatter(ones, batch, 0, dim_size=B, reduce="sum"), 0)
        start = start - scatter(ones, batch, 0, dim_size=B, reduce="sum")
        slot = batch * M + torch.arange(batch.numel(), device=batch.device) - start[batch]
        return out.index_select(0, slot)

    def message(self, q_i: Tensor, k_j: Tensor, v_j: Tensor, edge_attr: OptTensor,
                index: Tensor, ptr: OptTensor, size_i: Optional[int]) -> Tensor:
        if self.lin_edge is not None:
            if edge_attr is None:
                raise ValueError(f"'{type(self).__name__}' was built with edge_dim="
                                 f"{self.edge_dim} but got no 'edge_attr'")
            if edge_attr.dim() == 1:
                edge_attr = edge_attr.view(-1, 1)
            e = self.lin_edge(edge_attr).view(-1, self.heads, self.head_dim)
            k_j = k_j + e
            v_j = v_j + e
        alpha = (q_i * k_j).sum(dim=-1) / math.sqrt(self.head_dim)
        alpha = softmax(alpha, index, ptr, size_i)
        alpha = F.dropout(alpha, p=self.dropout, training=self.training)
        return alpha.unsqueeze(-1) * v_j

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.in_channels}, {self.out_channels}, "
                f"heads={self.heads})")
