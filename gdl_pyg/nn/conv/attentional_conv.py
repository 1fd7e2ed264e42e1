r"""The attentional flavour of graph neural networks (Bronstein et al. 2021,
sec. 5.3): :math:`h_u = \phi(x_u, \sum_{v \in \mathcal{N}_u} a(x_u, x_v) \psi(x_v))`."""
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Parameter
from torch_geometric.nn.conv import MessagePassing
from torch_geometric.nn.dense.linear import Linear
from torch_geometric.nn.inits import glorot, reset, zeros
from torch_geometric.typing import Adj, OptPairTensor, OptTensor, Size, SparseTensor
from torch_geometric.utils import add_self_loops as add_self_loops_fn
from torch_geometric.utils import is_torch_sparse_tensor, remove_self_loops, scatter, softmax
from torch_geometric.utils.sparse import set_sparse_value

from gdl_pyg.nn.conv.message_passing_conv import (COMBINE_MODES, _pair, check_choice,
                                                  check_decomposed_layers,
                                                  check_edge_features, check_graph_input,
                                                  check_module, check_module_input, check_size,
                                                  combine_update, eager_cpu_product,
                                                  edge_aggregate, is_uncoalesced_coo)
from gdl_pyg.typing import WITH_TORCH_SPARSE, torch_sparse
from gdl_pyg.utils import check_channels

__all__ = ["AttentionalConv", "static_self_loops"]

_REDUCE_FILL = ("mean", "add", "sum", "max", "min")


def static_self_loops(edge_index: Tensor, edge_attr: OptTensor, num_nodes: int,
                      fill_value: Union[float, Tensor, str] = "mean"
                      ) -> Tuple[Tensor, OptTensor, Tensor]:
    r"""Appends one self loop per node, like :func:`~torch_geometric.utils.remove_self_loops`
    followed by :func:`~torch_geometric.utils.add_self_loops`, but without
    data-dependent shapes (so :func:`torch.compile` captures it in one graph):
    existing self loops are kept and a logit mask of :math:`-\infty` is
    returned for them, which removes them from any softmax.

    Returns:
        :obj:`(edge_index, edge_attr, logit_mask)` with :math:`E + N` edges;
        :obj:`logit_mask` :math:`(E + N)` is :math:`-\infty` on the old loops
        and 0 elsewhere. The loop features follow :obj:`fill_value` (a number,
        a tensor, or a reduction :obj:`"mean"`, :obj:`"add"`, :obj:`"sum"`,
        :obj:`"max"`, :obj:`"min"` of the incoming non-loop edge features).
    """
    row, col = edge_index[0], edge_index[1]
    is_loop = row == col
    loop = torch.arange(num_nodes, device=row.device)
    edge_index = torch.cat([edge_index, torch.stack([loop, loop])], dim=1)
    dtype = edge_attr.dtype if edge_attr is not None else torch.get_default_dtype()
    zeros_n = torch.zeros(num_nodes, dtype=dtype, device=row.device)
    logit_mask = torch.cat([torch.zeros_like(is_loop, dtype=dtype).masked_fill(
        is_loop, float("-inf")), zeros_n])
    if edge_attr is None:
        return edge_index, None, logit_mask
    keep = (~is_loop).to(edge_attr.dtype).view((-1, ) + (1, ) * (edge_attr.dim() - 1))
    if isinstance(fill_value, str):
        if fill_value not in _REDUCE_FILL:
            raise ValueError(f"Expected 'fill_value' to be a number, a tensor or one of "
                             f"{list(_REDUCE_FILL)} (got {fill_value!r})")
        count = scatter(keep, col, 0, dim_size=num_nodes, reduce="sum")
        if fill_value in ("mean", "add", "sum"):
            loop_attr = scatter(edge_attr * keep, col, 0, dim_size=num_nodes, reduce="sum")
            if fill_value == "mean":
                loop_attr = loop_attr / count.clamp_min(1)
        else:
            inf = float("inf") if fill_value == "min" else float("-inf")
            masked = torch.where(keep > 0, edge_attr, torch.full_like(edge_attr, inf))
            loop_attr = scatter(masked, col, 0, dim_size=num_nodes, reduce=fill_value)
            loop_attr = torch.where(count > 0, loop_attr, torch.zeros_like(loop_attr))
    else:
        loop_attr = edge_attr.new_empty((num_nodes, ) + edge_attr.shape[1:])
        loop_attr[:] = fill_value if not isinstance(fill_value, Tensor) else fill_value.to(
            edge_attr.dtype)
    return edge_index, torch.cat([edge_attr, loop_attr], dim=0), logit_mask


class AttentionalConv(MessagePassing):
    r"""The attentional flavour of graph neural networks from the
    `"Geometric Deep Learning: Grids, Groups, Graphs, Geodesics, and Gauges"
    <https://arxiv.org/abs/2104.13478>`_ book (sec. 5.3): neighbours are
    weighted by a *learned*, feature-dependent score, normalised by a softmax
    over the neighbourhood (per head :math:`k`),

    .. math::
        \mathbf{h}_u = \phi\left(\mathbf{x}_u, \Big\Vert_{k=1}^{K}
        \sum_{v \in \mathcal{N}(u) \cup \{u\}} \alpha^k_{uv}\,
        \psi^k(\mathbf{x}_v)\right),\qquad
        \alpha^k_{uv} = \frac{\exp a^k(\mathbf{x}_u, \mathbf{x}_v,
        \mathbf{e}_{uv})}{\sum_{w \in \mathcal{N}(u) \cup \{u\}}
        \exp a^k(\mathbf{x}_u, \mathbf{x}_w, \mathbf{e}_{uw})}.

    The default score is GAT's :math:`a^k = \mathrm{LeakyReLU}(
    \mathbf{a}^{k\top}_s \psi^k(\mathbf{x}_v) + \mathbf{a}^{k\top}_t
    \psi^k(\mathbf{x}_u) + \mathbf{a}^{k\top}_e \mathbf{\Theta}^k_e
    \mathbf{e}_{uv})` (with the defaults the layer is
    :class:`~torch_geometric.nn.conv.GATConv`), or with :obj:`v2=True`
    GATv2's :math:`a^k = \mathbf{a}^{k\top}\mathrm{LeakyReLU}(\psi^k(\mathbf{x}_v)
    + \mathbf{\Theta}^k_t \mathbf{x}_u + \mathbf{\Theta}^k_e \mathbf{e}_{uv})`
    (:class:`~torch_geometric.nn.conv.GATv2Conv`). A user :obj:`score`
    module replaces it and is called on :math:`[\mathbf{x}_u \Vert
    \mathbf{x}_v \Vert \mathbf{e}_{uv}]` (raw features), returning one logit
    per head.

    Edge indices and sparse adjacency (:obj:`torch.sparse` COO/CSR or
    :class:`torch_sparse.SparseTensor`, transposed like PyG's :obj:`adj_t`)
    are both accepted; the scores depend on the features, so they are
    computed per edge. On the CPU the attention-weighted sum over an
    :obj:`edge_index` is then one sparse product per head over the CSR of the
    edges, with the attention as its values
    (:func:`~gdl_pyg.nn.conv.message_passing_conv.edge_aggregate`; eagerly
    from :obj:`PRODUCT_MIN_UNWEIGHTED_ELEMENTS` message elements on, compiled
    on several threads from :obj:`COMPILED_PRODUCT_MIN_ELEMENTS`): the
    output of PyG's gather and scatter bit for bit, without its
    :math:`|\mathcal{E}| \times H \times C` message tensor. A sparse adjacency
    takes PyG's gather-scatter path. For :obj:`edge_index` input, self loops are added by
    :func:`static_self_loops` (existing loops are masked out of the softmax
    instead of filtered out), so :func:`torch.compile` captures the layer in
    one graph; PyG's :func:`~torch_geometric.utils.remove_self_loops` used
    by :class:`~torch_geometric.nn.conv.GATConv` filters with boolean masks
    and costs graph breaks. An uncoalesced COO adjacency is coalesced
    first, as :class:`~torch_geometric.nn.conv.GATConv` does when it adds its
    self loops (duplicate entries are one edge); edge features with it raise a
    :class:`ValueError` (PyG rejects them too).

    :obj:`decomposed_layers > 1` (PyG's feature decomposition) computes the
    scores whole and the weighted sum of the messages in that many chunks of
    the channels, with the same result (PyG's
    :class:`~torch_geometric.nn.conv.GATConv` fails on it); it needs a
    feature-wise aggregation.

    As in PyG, :obj:`return_attention_weights=True` also returns the
    normalised scores and :obj:`residual=True` adds a linear skip connection;
    static graphs (:math:`(B, |\mathcal{V}|, F)` node features) are rejected
    with a :class:`ValueError`, as :class:`~torch_geometric.nn.conv.GATConv`
    rejects them.

    Args:
        in_channels (int or tuple): input width, or a pair (source, target)
            for bipartite graphs.
        out_channels (int): width per head of :math:`\psi`.
        heads (int, optional): number of heads :math:`K`. (default: :obj:`1`)
        concat (bool, optional): concatenates the heads, else averages them.
            (default: :obj:`True`)
        negative_slope (float, optional): LeakyReLU slope of the default
            score. (default: :obj:`0.2`)
        dropout (float, optional): dropout on the normalised scores.
            (default: :obj:`0.`)
        add_self_loops (bool, optional): adds self loops (edge features of
            self loops from :obj:`fill_value`). (default: :obj:`True`)
        edge_dim (int, optional): edge feature width of the default score.
            (default: :obj:`None`)
        fill_value (float or Tensor or str, optional): edge features of the
            added self loops, see :func:`torch_geometric.utils.add_self_loops`.
            (default: :obj:`"mean"`)
        bias (bool, optional): adds a learnable bias to the aggregation.
            (default: :obj:`True`)
        psi (torch.nn.Module, optional): node-wise map to
            :obj:`heads * out_channels`. (default: :obj:`None`, linear; with
            :obj:`v2=True` it has a bias, as in GATv2)
        score (torch.nn.Module, optional): the score :math:`a`, see above.
            (default: :obj:`None`)
        phi (torch.nn.Module, optional): the update :math:`\phi`, applied to
            the combination chosen by :obj:`combine`. (default: :obj:`None`)
        combine (str, optional): :obj:`"none"`, :obj:`"add"` or :obj:`"cat"`.
            (default: :obj:`"none"`)
        v2 (bool, optional): GATv2's score. (default: :obj:`False`)
        residual (bool, optional): adds a linear projection of the target
            features (no bias) to the output, as PyG's :obj:`residual=True`.
            (default: :obj:`False`)
        **kwargs (optional): additional arguments of
            :class:`torch_geometric.nn.conv.MessagePassing`.

    Shapes:
        - **input:**
          node features :math:`(|\mathcal{V}|, F_{in})` or
          :math:`((|\mathcal{V_s}|, F_{s}), (|\mathcal{V_t}|, F_{t}))` if bipartite,
          edge indices :math:`(2, |\mathcal{E}|)` or sparse adjacency,
          edge features :math:`(|\mathcal{E}|, D)` *(optional)*
        - **output:** node features :math:`(|\mathcal{V}_t|, K F_{out})` or
          :math:`(|\mathcal{V}_t|, F_{out})` if :obj:`concat=False`
    """
    #: The symmetry group of the layer.
    group_name = "Permutations"

    def __init__(
        self,
        in_channels: Union[int, Tuple[int, int]],
        out_channels: int,
        heads: int = 1,
        concat: bool = True,
        negative_slope: float = 0.2,
        dropout: float = 0.,
        add_self_loops: bool = True,
        edge_dim: Optional[int] = None,
        fill_value: Union[float, Tensor, str] = "mean",
        bias: bool = True,
        psi: Optional[torch.nn.Module] = None,
        score: Optional[torch.nn.Module] = None,
        phi: Optional[torch.nn.Module] = None,
        combine: str = "none",
        v2: bool = False,
        residual: bool = False,
        **kwargs,
    ):
        kwargs.setdefault("aggr", "add")
        super().__init__(node_dim=0, **kwargs)
        name = type(self).__name__
        if heads < 1:
            raise ValueError(f"'{name}' expected heads >= 1 (got {heads})")
        # the scores are computed undecomposed (edge_updater); the weighted sum of
        # the messages splits along the features
        check_decomposed_layers(name, self.decomposed_layers, self.aggr_module)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.heads = heads
        self.concat = concat
        self.negative_slope = negative_slope
        self.dropout = dropout
        self.add_self_loops = add_self_loops
        self.edge_dim = edge_dim
        self.fill_value = fill_value
        self.v2 = v2
        self.residual = residual
        self.combine = check_choice(name, "combine", combine, COMBINE_MODES)
        src, dst = (in_channels, in_channels) if isinstance(in_channels, int) else in_channels
        HC = heads * out_channels
        self._default_psi = psi is None
        if psi is None:
            psi = Linear(src, HC, bias=v2, weight_initializer="glorot")
        self.psi = check_module(name, "psi", psi)
        self.score = check_module(name, "score", score)
        self.phi = check_module(name, "phi", phi)

        # parameters of the default score
        self.lin_dst = self.lin_edge = None
        self.register_parameter("att_src", None)
        self.register_parameter("att_dst", None)
        self.register_parameter("att_edge", None)
        self.register_parameter("att", None)
        if score is None:
            if v2:
                self.lin_dst = Linear(dst, HC, bias=True, weight_initializer="glorot")
                self.att = Parameter(torch.empty(1, heads, out_channels))
            else:
                if not isinstance(in_channels, int):
                    self.lin_dst = Linear(dst, HC, bias=False, weight_initializer="glorot")
                self.att_src = Parameter(torch.empty(1, heads, out_channels))
                self.att_dst = Parameter(torch.empty(1, heads, out_channels))
            if edge_dim is not None:
                self.lin_edge = Linear(edge_dim, HC, bias=False, weight_initializer="glorot")
                if not v2:
                    self.att_edge = Parameter(torch.empty(1, heads, out_channels))
        total = HC if concat else out_channels
        if residual:
            self.res = Linear(dst, total, bias=False, weight_initializer="glorot")
        else:
            self.res = None
        if bias:
            self.bias = Parameter(torch.empty(total))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        super().reset_parameters()
        for module in (self.psi, self.score, self.phi, self.lin_dst, self.lin_edge, self.res):
            reset(module)  # PyG's inits.reset: also resets children (e.g. Sequential)
        glorot(self.att_src)
        glorot(self.att_dst)
        glorot(self.att_edge)
        glorot(self.att)
        zeros(self.bias)

    def forward(self, x: Union[Tensor, OptPairTensor], edge_index: Adj,
                edge_attr: OptTensor = None, size: Size = None,
                return_attention_weights: Optional[bool] = None):
        r"""Runs the forward pass of the module.

        Args:
            x (torch.Tensor or (torch.Tensor, torch.Tensor)): node features
                :math:`(|\mathcal{V}|, F)` or a pair (source, target). Like
                PyG's :class:`~torch_geometric.nn.conv.GATConv`, the
                static-graph layout :math:`(B, |\mathcal{V}|, F)` is not
                supported (a :class:`ValueError` says so).
            edge_index (torch.Tensor or SparseTensor): edge indices or a
                sparse adjacency :obj:`adj_t`.
            edge_attr (torch.Tensor, optional): edge features.
                (default: :obj:`None`)
            size ((int, int), optional): the shape of the adjacency.
                (default: :obj:`None`)
            return_attention_weights (bool, optional): if :obj:`True`, also
                returns the normalised scores as PyG does:
                :obj:`(out, (edge_index, alpha))` with the self loops the
                layer added (existing self loops removed, so the edges are
                those of PyG's :class:`~torch_geometric.nn.conv.GATConv`, in
                its order), :obj:`alpha` :math:`(|\mathcal{E}|, K)`; for a
                :obj:`torch.sparse` adjacency :obj:`(out, (adj, alpha))` with
                :obj:`alpha` as the values of :obj:`adj`; for a
                :class:`torch_sparse.SparseTensor`, :obj:`(out, adj)`.
                Filtering the masked self loops has a data-dependent shape,
                so only this mode breaks the :func:`torch.compile` graph.
                (default: :obj:`None`)
        """
        name = type(self).__name__
        H, C = self.heads, self.out_channels
        size = check_size(name, size)
        x_src, x_dst = _pair(x)
        bipartite = not isinstance(x, Tensor)
        for t in (x_src, x_dst):
            if isinstance(t, Tensor) and t.dim() == 3:
                raise ValueError(f"'{name}' does not support static graphs (node features of "
                                 f"shape [batch, num_nodes, channels], got "
                                 f"{list(t.shape)}), like PyG's 'GATConv': merge the "
                                 f"signals into one graph of batch * num_nodes nodes "
                                 f"(e.g. Batch.from_data_list) or use 'ConvolutionalConv'")
        check_graph_input(name, x_src, x_dst, edge_index, self.node_dim, size, dims=(2, ))
        if is_uncoalesced_coo(edge_index):
            # PyG's GATConv adds its self loops to the coalesced adjacency: duplicate
            # entries are one edge (without self loops, PyG fails on this input)
            if edge_attr is not None or edge_index._values().dim() > 1:
                raise ValueError(f"'{name}' cannot take edge features with an uncoalesced "
                                 f"torch.sparse COO adjacency (coalescing merges duplicate "
                                 f"entries; PyG's GATConv rejects this input too): pass "
                                 f"adj_t.coalesce() with edge features in its order, or an "
                                 f"edge_index with edge_attr")
            edge_index = edge_index.coalesce()
        check_edge_features(name, edge_index, edge_attr)
        src_name, dst_name = ("x[0]", "x[1]") if bipartite else ("x", "x")
        if self._default_psi:
            check_channels(x_src, self.psi.in_channels, name, src_name)
        else:
            check_module_input(name, "psi", self.psi, x_src.size(-1), "the source features")
        if x_dst is not None:
            if self.lin_dst is not None:
                check_channels(x_dst, self.lin_dst.in_channels, name, dst_name)
            elif bipartite and self._default_psi:  # psi maps the target features too
                check_channels(x_dst, self.psi.in_channels, name, dst_name)
            if self.res is not None:
                check_channels(x_dst, self.res.in_channels, name, dst_name)
        if self.lin_edge is not None and edge_attr is not None and edge_attr.dim() > 1:
            check_channels(edge_attr, self.lin_edge.in_channels, name, "edge_attr")

        res: OptTensor = None
        if self.res is not None and x_dst is not None:
            res = self.res(x_dst)
        h_src = self.psi(x_src).view(-1, H, C)
        if self.lin_dst is not None and not self.v2:
            h_dst = None if x_dst is None else self.lin_dst(x_dst).view(-1, H, C)
        elif x_dst is None:
            h_dst = None
        elif self.lin_dst is not None:  # v2: target transform
            h_dst = self.lin_dst(x_dst).view(-1, H, C)
        else:
            h_dst = h_src if isinstance(x, Tensor) else self.psi(x_dst).view(-1, H, C)

        logit_mask: OptTensor = None
        if self.add_self_loops:
            if WITH_TORCH_SPARSE and isinstance(edge_index, SparseTensor):
                if edge_attr is not None or (edge_index.has_value()
                                             and edge_index.storage.value().dim() > 1):
                    raise NotImplementedError(
                        f"'{name}' cannot add self loops with edge features "
                        f"to a 'SparseTensor'; add them beforehand (add_self_loops=False)")
                edge_index = torch_sparse.set_diag(edge_index)
            else:
                num_nodes = x_src.size(0)
                if x_dst is not None:
                    num_nodes = min(num_nodes, x_dst.size(0))
                if size is not None:
                    num_nodes = min(size)
                if is_torch_sparse_tensor(edge_index):
                    if edge_attr is None and edge_index.values().dim() > 1:
                        raise NotImplementedError(
                            f"'{name}' cannot add self loops to a sparse "
                            f"adjacency holding edge features; pass 'edge_attr' separately or "
                            f"add them beforehand (add_self_loops=False)")
                    edge_index, edge_attr = remove_self_loops(edge_index, edge_attr)
                    edge_index, edge_attr = add_self_loops_fn(edge_index, edge_attr,
                                                              fill_value=self.fill_value,
                                                              num_nodes=num_nodes)
                else:
                    edge_index, edge_attr, logit_mask = static_self_loops(
                        edge_index, edge_attr, num_nodes, self.fill_value)
        if WITH_TORCH_SPARSE and isinstance(edge_index, SparseTensor) and edge_attr is None:
            value = edge_index.storage.value()
            edge_attr = value if value is not None and value.dim() > 1 else None

        # node-level parts of the default GAT score
        a_src = a_dst = None
        if self.score is None and not self.v2:
            a_src = (h_src * self.att_src).sum(-1)
            a_dst = None if h_dst is None else (h_dst * self.att_dst).sum(-1)
        raw = (x_src, x_dst) if self.score is not None else (None, None)
        # only GATv2 reads the projections per edge: GAT's score needs the
        # node-level a_src/a_dst alone, and PyG's edge_updater would gather an
        # unused E x H x C tensor h_j for any tensor passed as h
        h = (h_src, h_dst) if self.score is None and self.v2 else (None, None)
        alpha = self.edge_updater(edge_index, h=h, a=(a_src, a_dst), raw=raw,
                                  edge_attr=edge_attr, logit_mask=logit_mask, size=size)
        # h_dst only sets the number of targets: 'message' reads h_j alone
        if self.decomposed_layers > 1 and not self._explain:
            # PyG's feature decomposition splits the 'h' of h_j along the
            # features, which it cannot do to a pair: the number of targets
            # goes into 'size' instead
            if h_dst is not None and (size is None or size[1] is None):
                size = (None if size is None else size[0], h_dst.size(0))
            out = self.propagate(edge_index, h=h_src, alpha=alpha, size=size)
        elif self._weighted_sum_as_product(edge_index, h_src, h_dst, alpha, size):
            # the attention-weighted sum over an edge_index: one sparse product per
            # head over the CSR of the edges (see edge_aggregate)
            num_dst = size[1] if size is not None and size[1] is not None else h_dst.size(0)
            out = edge_aggregate(edge_index, h_src, num_dst, self.flow, self.aggr, 0, alpha)
        else:
            out = self.propagate(edge_index, h=(h_src, h_dst), alpha=alpha, size=size)
        out = out.reshape(-1, H * C) if self.concat else out.mean(dim=1)
        if res is not None:
            out = out + res
        if self.bias is not None:
            out = out + self.bias
        out = combine_update(self.combine, x_dst, out)
        if self.phi is not None:
            check_module_input(name, "phi", self.phi, out.size(-1),
                               f"the combination '{self.combine}' of x and the aggregation")
            out = self.phi(out)
        if not return_attention_weights:
            return out
        if WITH_TORCH_SPARSE and isinstance(edge_index, SparseTensor):
            return out, edge_index.set_value(alpha, layout="coo")
        if is_torch_sparse_tensor(edge_index):
            return out, (set_sparse_value(edge_index, alpha), alpha)
        if logit_mask is not None:  # drop the replaced self loops (weight exactly 0)
            keep = logit_mask == 0
            edge_index, alpha = edge_index[:, keep], alpha[keep]
        return out, (edge_index, alpha)

    def _weighted_sum_as_product(self, edge_index: Adj, h_src: Tensor, h_dst: OptTensor,
                                 alpha: Tensor, size: Optional[Tuple[int, int]]) -> bool:
        r"""Whether :meth:`forward` sums the messages :math:`\alpha_{ij}^h
        \mathbf{h}_j^h` over a dense :obj:`edge_index` as sparse products
        (:func:`~gdl_pyg.nn.conv.message_passing_conv.edge_aggregate`, where
        :func:`~gdl_pyg.nn.conv.message_passing_conv.eager_cpu_product` says
        so) instead of PyG's gather into an :math:`E \times H \times C`
        tensor and scatter: the same sums bit for bit, the attention's
        gradient by a gather."""
        if type(self).message is not AttentionalConv.message:
            return False
        num_dst = size[1] if size is not None and size[1] is not None else \
            None if h_dst is None else h_dst.size(0)
        if num_dst is None or alpha.dtype != h_src.dtype or alpha.dim() != 2:
            return False
        return eager_cpu_product(self, edge_index, h_src,
                                 (None if size is None else size[0], num_dst))

    def _logits(self, h_i: OptTensor, h_j: OptTensor, a_i: OptTensor, a_j: OptTensor,
                raw_i: OptTensor, raw_j: OptTensor, edge_attr: OptTensor) -> Tensor:
        H, C = self.heads, self.out_channels
        if edge_attr is not None and edge_attr.dim() == 1:
            edge_attr = edge_attr.view(-1, 1)
        if self.score is not None:
            if raw_i is None:
                raise ValueError(f"'{type(self).__name__}' with a 'score' needs target node "
                                 f"features (got x=(x_src, None))")
            parts = [raw_i, raw_j] + ([edge_attr] if edge_attr is not None else [])
            return self.score(torch.cat(parts, dim=-1)).view(-1, H)
        e = None
        if edge_attr is not None and self.lin_edge is not None:
            e = self.lin_edge(edge_attr).view(-1, H, C)
        if self.v2:
            z = h_j if h_i is None else h_j + h_i
            if e is not None:
                z = z + e
            return (F.leaky_relu(z, self.negative_slope) * self.att).sum(-1)
        alpha = a_j if a_i is None else a_j + a_i
        if e is not None:
            alpha = alpha + (e * self.att_edge).sum(-1)
        return F.leaky_relu(alpha, self.negative_slope)

    def edge_update(self, h_i: OptTensor, h_j: OptTensor, a_i: OptTensor, a_j: OptTensor,
                    raw_i: OptTensor, raw_j: OptTensor, edge_attr: OptTensor,
                    logit_mask: OptTensor, index: Tensor, ptr: OptTensor,
                    dim_size: Optional[int]) -> Tensor:
        alpha = self._logits(h_i, h_j, a_i, a_j, raw_i, raw_j, edge_attr)
        if logit_mask is not None:  # -inf on replaced self loops
            alpha = alpha + logit_mask.to(alpha.dtype).unsqueeze(-1)
        alpha = softmax(alpha, index, ptr, dim_size)
        return F.dropout(alpha, p=self.dropout, training=self.training)

    def message(self, h_j: Tensor, alpha: Tensor) -> Tensor:
        return alpha.unsqueeze(-1) * h_j

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.in_channels}, {self.out_channels}, "
                f"heads={self.heads}{', v2=True' if self.v2 else ''})")
