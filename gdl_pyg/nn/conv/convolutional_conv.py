r"""The convolutional flavour of graph neural networks (Bronstein et al. 2021,
sec. 5.3): :math:`h_u = \phi(x_u, \sum_{v \in \mathcal{N}_u} c_{uv} \psi(x_v))`."""
from typing import Optional, Tuple, Union

import torch
from torch import Tensor
from torch.nn import Parameter
from torch_geometric.nn.conv import MessagePassing
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.nn.dense.linear import Linear
from torch_geometric.nn.inits import reset, zeros
from torch_geometric.typing import Adj, OptPairTensor, OptTensor, Size, SparseTensor
from torch_geometric.utils import add_self_loops as add_self_loops_fn
from torch_geometric.utils import (is_torch_sparse_tensor, scatter, spmm, to_torch_coo_tensor,
                                   to_torch_csr_tensor)

from gdl_pyg.nn.conv.message_passing_conv import (COMBINE_MODES, _pair, check_choice,
                                                  check_graph_input, check_module,
                                                  check_module_input, check_size,
                                                  combine_update, csr_adjacency, csr_aggregate,
                                                  eager_cpu_product, edge_aggregate,
                                                  is_uncoalesced_coo, parts_row,
                                                  plain_propagate, sparse_parts,
                                                  sparse_sum_nodes, spmm_nodes)
from gdl_pyg.typing import WITH_TORCH_SPARSE, torch_sparse
from gdl_pyg.utils import check_channels, check_edge_index

__all__ = ["ConvolutionalConv", "static_gcn_norm", "sparse_gcn_scale", "gcn_adjacency"]


def _check_edge_weight(owner: str, edge_index: Tensor, edge_weight: OptTensor) -> None:
    if edge_weight is None:
        return
    if not isinstance(edge_weight, Tensor):
        raise TypeError(f"'{owner}' expected 'edge_weight' to be a torch.Tensor or None "
                        f"(got {type(edge_weight).__name__})")
    if edge_weight.dim() != 1 or edge_weight.size(0) != edge_index.size(1):
        raise ValueError(f"'{owner}' expected 'edge_weight' of shape [{edge_index.size(1)}] "
                         f"(one weight per edge of an edge_index of shape "
                         f"{list(edge_index.shape)}), got shape {list(edge_weight.shape)}")


def static_gcn_norm(edge_index: Tensor, edge_weight: OptTensor, num_nodes: int,
                    improved: bool = False, add_self_loops: bool = True,
                    flow: str = "source_to_target",
                    dtype: Optional[torch.dtype] = None) -> Tuple[Tensor, Tensor]:
    r"""The coefficients of :func:`torch_geometric.nn.conv.gcn_conv.gcn_norm`
    for an :obj:`edge_index` tensor, computed without data-dependent shapes so
    that :func:`torch.compile` captures them in one graph (PyG's version
    filters existing self loops with boolean masks, i.e. :obj:`nonzero`,
    which costs 6 graph breaks in torch 2.x).

    Instead of removing existing self loops, their weight is set to zero and
    moved onto the appended loop of their node (the "remaining self loops" of
    PyG: an existing loop keeps its weight, other nodes get
    :obj:`fill_value`); zero-weight edges change no sum, so the result is the
    same up to the order of floating-point additions. Returns
    :obj:`(edge_index, edge_weight)` with :math:`E + N` edges when
    :obj:`add_self_loops`.
    """
    check_edge_index(edge_index, num_nodes, "static_gcn_norm")
    _check_edge_weight("static_gcn_norm", edge_index, edge_weight)
    return _static_gcn_norm(edge_index, edge_weight, num_nodes, improved, add_self_loops,
                            flow, dtype)


def _static_gcn_norm(edge_index: Tensor, edge_weight: OptTensor, num_nodes: int,
                     improved: bool, add_self_loops: bool, flow: str,
                     dtype: Optional[torch.dtype]) -> Tuple[Tensor, Tensor]:
    if edge_weight is None:
        edge_weight = torch.ones(edge_index.size(1), dtype=dtype, device=edge_index.device)
    row, col = edge_index[0], edge_index[1]
    if add_self_loops:
        fill = 2. if improved else 1.
        is_loop = row == col
        # weight of an existing self loop, written to slot `num_nodes` (a dummy) otherwise
        slot = torch.where(is_loop, row, torch.full_like(row, num_nodes))
        loop_weight = edge_weight.new_full((num_nodes + 1, ), fill)
        loop_weight = loop_weight.scatter_reduce(0, slot, edge_weight, reduce="amax",
                                                 include_self=False)[:num_nodes]
        edge_weight = torch.cat([edge_weight.masked_fill(is_loop, 0.), loop_weight])
        loop_index = torch.arange(num_nodes, device=row.device)
        row = torch.cat([row, loop_index])
        col = torch.cat([col, loop_index])
        edge_index = torch.stack([row, col])
    idx = col if flow == "source_to_target" else row
    deg = scatter(edge_weight, idx, 0, dim_size=num_nodes, reduce="sum")
    deg_inv_sqrt = deg.pow(-0.5)
    deg_inv_sqrt = deg_inv_sqrt.masked_fill(deg_inv_sqrt == float("inf"), 0.)
    return edge_index, deg_inv_sqrt[row] * edge_weight * deg_inv_sqrt[col]


def sparse_gcn_scale(adj_t: Adj, improved: bool = False, add_self_loops: bool = True,
                     dtype: Optional[torch.dtype] = None) -> Tuple[Tensor, OptTensor]:
    r"""The symmetric GCN normalisation of a square sparse :obj:`adj_t` (a
    :obj:`torch.sparse` COO/CSR/CSC tensor or a
    :class:`torch_sparse.SparseTensor`, row :math:`u` = target) as two node
    vectors, without building a new sparse tensor: with :math:`\hat{A} = A +
    f I` (:math:`f = 2` if :obj:`improved`, else 1; none without
    :obj:`add_self_loops`), :math:`\hat{d}_u = \sum_v \hat{A}_{uv}` and
    :math:`s_u = \hat{d}_u^{-1/2}` (0 where :math:`\hat{d}_u = 0`),

    .. math::
        \hat{D}^{-1/2} \hat{A} \hat{D}^{-1/2} \mathbf{H} =
        \mathbf{s} \odot A (\mathbf{s} \odot \mathbf{H}) +
        \boldsymbol{\ell} \odot \mathbf{H},\qquad
        \ell_u = f s_u^2 .

    Returns :obj:`(s, loop)` of shape :math:`(N)` each (:obj:`loop` is
    :obj:`None` without self loops), of the dtype of the values of
    :obj:`adj_t` (:obj:`dtype`, or the default dtype, for a
    :class:`SparseTensor` without values, whose weights are 1). These are the coefficients of PyG's
    :func:`~torch_geometric.nn.conv.gcn_conv.gcn_norm` for sparse input
    (which adds a self loop on top of an existing one for :obj:`torch.sparse`
    tensors and replaces an existing one for a :class:`SparseTensor`: then
    :math:`\hat{A} = A - \mathrm{diag}(A) + f I`), up to the order of the
    floating-point operations. Only a sparse matrix-vector product for the
    degrees and elementwise operations are involved: the matrix is not
    rebuilt (PyG's version adds the loops into a new one in every call, and
    fails under :func:`torch.compile`).
    """
    if not (is_torch_sparse_tensor(adj_t) or isinstance(adj_t, SparseTensor)):
        raise TypeError(f"'sparse_gcn_scale' expected a torch.sparse tensor or a "
                        f"SparseTensor (got {type(adj_t).__name__})")
    shape = list(adj_t.sizes() if isinstance(adj_t, SparseTensor) else adj_t.shape)
    if len(shape) != 2 or shape[0] != shape[1]:
        raise ValueError(f"'sparse_gcn_scale' expected a square sparse adjacency "
                         f"(got shape {shape})")
    num_nodes = adj_t.size(0)
    if isinstance(adj_t, SparseTensor):
        value = adj_t.storage.value()
        dtype = value.dtype if value is not None else dtype or torch.get_default_dtype()
        device = adj_t.device()
    else:
        dtype, device = adj_t.dtype, adj_t.device
    parts = sparse_parts(adj_t) if isinstance(adj_t, SparseTensor) else None
    if parts is not None and torch.compiler.is_compiling():
        # dynamo traces a SparseTensor (never a torch.sparse tensor) but not
        # torch_sparse's own kernels: the row sums from the stored tensors
        row, value = parts_row(parts), parts[4]
        value = torch.ones(row.numel(), dtype=dtype, device=device) if value is None \
            else value
        deg = torch.zeros(num_nodes, dtype=dtype, device=device).index_add_(0, row, value)
    else:
        ones = torch.ones(num_nodes, 1, dtype=dtype, device=device)
        deg = spmm(adj_t, ones).view(-1)
    fill = 2. if improved else 1.
    diag = None
    if add_self_loops:
        if isinstance(adj_t, SparseTensor):  # PyG's fill_diag replaces existing loops
            if parts is None:
                parts = (num_nodes, None, adj_t.storage.row(), adj_t.storage.col(),
                         adj_t.storage.value())
            row, col, value = parts_row(parts), parts[3], parts[4]
            value = torch.ones(row.numel(), dtype=dtype, device=device) if value is None \
                else value
            diag = scatter(value.masked_fill(row != col, 0.), row, 0, dim_size=num_nodes,
                           reduce="sum")
            deg = deg - diag
        deg = deg + fill
    # (rsqrt rather than pow: compiled, it may be recomputed for every nonzero)
    scale = deg.rsqrt()
    scale = scale.masked_fill(scale == float("inf"), 0.)
    if not add_self_loops:
        return scale, None
    loop = scale * scale * (fill if diag is None else fill - diag)
    return scale, loop


def gcn_adjacency(edge_index: Tensor, edge_weight: OptTensor = None,
                  num_nodes: Optional[int] = None, improved: bool = False,
                  add_self_loops: bool = True, normalize: bool = True,
                  layout: torch.layout = torch.sparse_csr,
                  dtype: Optional[torch.dtype] = None) -> Tensor:
    r"""The transposed sparse adjacency :obj:`adj_t` :math:`(N, N)` holding the
    coefficients :math:`c_{uv}` of :class:`ConvolutionalConv` (row :math:`u`
    = target), to be computed once per graph (e.g. in a transform) and passed
    to a layer built with :obj:`normalize=False, add_self_loops=False`; the
    layer then runs one sparse matrix product and no normalisation.

    Args:
        edge_index (torch.Tensor): edge indices :math:`(2, E)`, source first.
        edge_weight (torch.Tensor, optional): weights :math:`(E)`.
        num_nodes (int, optional): :math:`N`.
        improved, add_self_loops, normalize (bool, optional): as in
            :class:`ConvolutionalConv`.
        layout (torch.layout, optional): :obj:`torch.sparse_csr` or
            :obj:`torch.sparse_coo`. (default: :obj:`torch.sparse_csr`)
        dtype (torch.dtype, optional): the dtype of unit weights.
    """
    if layout not in (torch.sparse_csr, torch.sparse_coo):
        raise ValueError(f"'gcn_adjacency' expected layout torch.sparse_csr or "
                         f"torch.sparse_coo (got {layout})")
    check_edge_index(edge_index, num_nodes, "gcn_adjacency")
    _check_edge_weight("gcn_adjacency", edge_index, edge_weight)
    if num_nodes is None:
        N = int(edge_index.max()) + 1 if edge_index.numel() > 0 else 0
        check_edge_index(edge_index, N, "gcn_adjacency")  # negative indices
    else:
        N = num_nodes
    if edge_weight is None:
        edge_weight = torch.ones(edge_index.size(1), device=edge_index.device,
                                 dtype=dtype or torch.get_default_dtype())
    if normalize:
        edge_index, edge_weight = _static_gcn_norm(edge_index, edge_weight, N, improved,
                                                   add_self_loops, "source_to_target", None)
    elif add_self_loops:
        edge_index, edge_weight = add_self_loops_fn(edge_index, edge_weight,
                                                    fill_value=2. if improved else 1.,
                                                    num_nodes=N)
    fn = to_torch_csr_tensor if layout == torch.sparse_csr else to_torch_coo_tensor
    return fn(edge_index.flip(0), edge_weight, size=(N, N))


class ConvolutionalConv(MessagePassing):
    r"""The convolutional flavour of graph neural networks from the
    `"Geometric Deep Learning: Grids, Groups, Graphs, Geodesics, and Gauges"
    <https://arxiv.org/abs/2104.13478>`_ book (sec. 5.3): neighbours are
    weighted by *fixed* coefficients :math:`c_{uv}` that depend on the graph
    structure only,

    .. math::
        \mathbf{h}_u = \phi\left(\mathbf{x}_u, \sum_{v \in \mathcal{N}(u)
        \cup \{u\}} c_{uv}\, \psi(\mathbf{x}_v)\right) ,\qquad
        c_{uv} = \frac{w_{uv}}{\sqrt{\hat{d}_u \hat{d}_v}},\quad
        \hat{d}_u = 1 + \sum_{v \in \mathcal{N}(u)} w_{uv},

    with edge weights :math:`w_{uv}` (default 1; an existing self loop keeps
    its weight, as in PyG's :func:`~torch_geometric.utils.add_remaining_self_loops`).
    With the defaults
    (:math:`\psi` linear, :math:`\phi` the identity plus a bias) this is
    :class:`~torch_geometric.nn.conv.GCNConv` (for sparse adjacency input,
    like :class:`~torch_geometric.nn.conv.GCNConv`, a self loop is added on
    top of an existing one); :obj:`normalize=False` uses
    :math:`c_{uv} = w_{uv}` (plus unit self loops if :obj:`add_self_loops`).

    Because the message :math:`c_{uv}\psi(\mathbf{x}_v)` is linear in the
    per-node :math:`\psi(\mathbf{x}_v)`, a sparse adjacency input (a
    :obj:`torch.sparse` COO/CSR tensor or a :class:`torch_sparse.SparseTensor`,
    transposed like PyG's :obj:`adj_t`) is aggregated by one sparse matrix
    product. So is :obj:`edge_index` input on the CPU, through the CSR of its
    (normalised) edges built in the call
    (:func:`~gdl_pyg.nn.conv.message_passing_conv.edge_aggregate`; kept with
    :obj:`cached=True`): the output of PyG's gather-scatter bit for bit,
    without its :math:`|\mathcal{E}| \times F` message tensor; compiled on
    one thread (where inductor's fused gather and scatter is faster), or with
    hooks, a learnt edge weight or on other devices, it takes PyG's
    gather-scatter path. A sparse
    adjacency is normalised without being rebuilt (PyG's
    :func:`~torch_geometric.nn.conv.gcn_conv.gcn_norm` adds the self loops to
    it in every call): :func:`sparse_gcn_scale` gives two node scalings and a
    self-loop term around the product with the adjacency as it is. To skip
    even that, compute the coefficients once with :func:`gcn_adjacency` and
    build the layer with :obj:`normalize=False, add_self_loops=False` (or set
    :obj:`cached=True` for a single static graph). An uncoalesced COO
    adjacency is coalesced first (duplicate entries summed, as
    :class:`~torch_geometric.nn.conv.GCNConv` sums them); a coalesced one is
    used as it is. :obj:`decomposed_layers > 1` works as in
    :class:`~torch_geometric.nn.conv.GCNConv` (:obj:`edge_index` input is
    propagated in chunks of the features, with the same result).

    Under :func:`torch.compile`, :obj:`edge_index` input compiles without
    graph breaks. Dynamo takes no sparse tensors: given a sparse
    :obj:`adj_t`, the layer's own frame runs eagerly and the sum aggregation
    is compiled from the dense parts of the adjacency (see
    :func:`~gdl_pyg.nn.conv.message_passing_conv.sparse_sum_nodes`; on
    several threads as the sparse product).

    Args:
        in_channels (int or tuple): input width, or a pair (source, target)
            for bipartite graphs.
        out_channels (int): output width of :math:`\psi` (and of the layer
            when :obj:`phi` is :obj:`None`).
        psi (torch.nn.Module, optional): the node-wise map :math:`\psi`, from
            source node features to :obj:`out_channels`. (default:
            :obj:`None`, a linear map without bias)
        phi (torch.nn.Module, optional): the update :math:`\phi`, applied to
            the combination of :math:`\mathbf{x}_u` and the aggregation chosen
            by :obj:`combine`. (default: :obj:`None`, the identity)
        combine (str, optional): :obj:`"none"`, :obj:`"add"` or :obj:`"cat"`,
            see :func:`~gdl_pyg.nn.conv.message_passing_conv.combine_update`.
            (default: :obj:`"none"`)
        normalize (bool, optional): symmetric normalisation of the coefficients.
            (default: :obj:`True`)
        add_self_loops (bool, optional): adds self loops (weight 1, or 2 with
            :obj:`improved`). (default: :obj:`True`)
        improved (bool, optional): self loops of weight 2. (default: :obj:`False`)
        cached (bool, optional): caches the normalised coefficients of the
            first call (transductive learning on one graph only).
            (default: :obj:`False`)
        bias (bool, optional): adds a learnable bias to the aggregation.
            (default: :obj:`True`)
        aggr (str, optional): :obj:`"add"` or :obj:`"mean"`. (default: :obj:`"add"`)
        **kwargs (optional): additional arguments of
            :class:`torch_geometric.nn.conv.MessagePassing`.

    Like :class:`~torch_geometric.nn.conv.GCNConv`, the layer accepts PyG's
    static-graph layout: node features :math:`(B, |\mathcal{V}|, F_{in})`
    (:math:`B` signals on one graph, :obj:`edge_index` over
    :math:`|\mathcal{V}|` nodes) give :math:`(B, |\mathcal{V}|, F_{out})`,
    also for sparse adjacency input (one sparse product on a
    :math:`(|\mathcal{V}|, B F_{in})` view; PyG's :obj:`spmm` rejects 3-D
    input). Other ranks, an :obj:`edge_index` that is not :math:`(2,
    |\mathcal{E}|)` integers within the node range, and node features of
    another width than :obj:`in_channels` raise a :class:`ValueError` (see
    :mod:`gdl_pyg.utils` for when the range check runs).

    Shapes:
        - **input:**
          node features :math:`(|\mathcal{V}|, F_{in})`,
          :math:`(B, |\mathcal{V}|, F_{in})` (static graph) or
          :math:`((|\mathcal{V_s}|, F_{s}), (|\mathcal{V_t}|, F_{t}))` if bipartite,
          edge indices :math:`(2, |\mathcal{E}|)` or sparse adjacency
          :math:`(|\mathcal{V_t}|, |\mathcal{V_s}|)`,
          edge weights :math:`(|\mathcal{E}|)` *(optional)*
        - **output:** node features :math:`(|\mathcal{V}_t|, F_{out})` or
          :math:`(B, |\mathcal{V}|, F_{out})` (static graph)
    """
    #: The symmetry group of the layer.
    group_name = "Permutations"

    def __init__(
        self,
        in_channels: Union[int, Tuple[int, int]],
        out_channels: int,
        psi: Optional[torch.nn.Module] = None,
        phi: Optional[torch.nn.Module] = None,
        combine: str = "none",
        normalize: bool = True,
        add_self_loops: bool = True,
        improved: bool = False,
        cached: bool = False,
        bias: bool = True,
        aggr: str = "add",
        **kwargs,
    ):
        name = type(self).__name__
        check_choice(name, "aggr", aggr, ("add", "sum", "mean"))
        super().__init__(aggr=aggr, **kwargs)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.combine = check_choice(name, "combine", combine, COMBINE_MODES)
        self.normalize = normalize
        self.add_self_loops = add_self_loops
        self.improved = improved
        self.cached = cached
        self._cached_edge_index: Optional[Tuple[Tensor, OptTensor]] = None
        self._cached_adj_t = None
        self._cached_scale: Optional[Tuple[Adj, Tensor, OptTensor]] = None
        self._cached_csr: OptTensor = None
        self._default_psi = psi is None
        if psi is None:
            src = in_channels if isinstance(in_channels, int) else in_channels[0]
            psi = Linear(src, out_channels, bias=False, weight_initializer="glorot")
        self.psi = check_module(name, "psi", psi)
        self.phi = check_module(name, "phi", phi)
        if bias:
            self.bias = Parameter(torch.empty(out_channels))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        super().reset_parameters()
        for module in (self.psi, self.phi):
            reset(module)  # PyG's inits.reset: also resets children (e.g. Sequential)
        zeros(self.bias)
        self._cached_edge_index = None
        self._cached_adj_t = None
        self._cached_scale = None
        self._cached_csr = None

    def _sparse_scale(self, adj_t: Adj, dtype: torch.dtype) -> Tuple[Adj, Tensor, OptTensor]:
        # the node scalings of `sparse_gcn_scale`; with `cached=True`, those of the
        # first call, and its adjacency (as GCNConv caches its normalised adj_t)
        if self.cached and self._cached_scale is not None:
            return self._cached_scale
        scale, loop = sparse_gcn_scale(adj_t, self.improved, self.add_self_loops, dtype)
        if self.cached:
            self._cached_scale = (adj_t, scale, loop)
        return adj_t, scale, loop

    def _coefficients(self, edge_index: Adj, edge_weight: OptTensor, num_nodes: int,
                      dtype: torch.dtype):
        if self.normalize:
            if self.cached:
                cache = self._cached_edge_index if isinstance(
                    edge_index, Tensor) and not is_torch_sparse_tensor(
                        edge_index) else self._cached_adj_t
                if cache is not None:
                    return cache
            if isinstance(edge_index, Tensor) and not is_torch_sparse_tensor(edge_index):
                edge_index, edge_weight = _static_gcn_norm(edge_index, edge_weight, num_nodes,
                                                           self.improved, self.add_self_loops,
                                                           self.flow, dtype)
            else:
                normed = gcn_norm(edge_index, edge_weight, num_nodes, self.improved,
                                  self.add_self_loops, self.flow, dtype)
                # PyG returns (adj, weight) for torch.sparse, a lone SparseTensor otherwise
                edge_index, edge_weight = normed if isinstance(normed, tuple) else (normed, None)
            if self.cached:
                if isinstance(edge_index, Tensor) and not is_torch_sparse_tensor(edge_index):
                    self._cached_edge_index = (edge_index, edge_weight)
                else:
                    self._cached_adj_t = (edge_index, edge_weight)
            return edge_index, edge_weight
        if self.add_self_loops:
            fill = 2. if self.improved else 1.
            if WITH_TORCH_SPARSE and isinstance(edge_index, SparseTensor):
                if not edge_index.has_value():
                    edge_index = edge_index.fill_value(1., dtype=dtype)
                edge_index = torch_sparse.fill_diag(edge_index, fill)
            else:
                edge_index, edge_weight = add_self_loops_fn(edge_index, edge_weight,
                                                            fill_value=fill,
                                                            num_nodes=num_nodes)
        return edge_index, edge_weight

    def _cached_csr_of(self, edge_index: Tensor, edge_weight: OptTensor, num_src: int,
                       num_dst: int, dtype: torch.dtype) -> Tensor:
        # with `cached=True` and normalisation (forward checks both), the CSR of
        # the first call, as its normalised edges (GCNConv caches the
        # normalisation only: without it, nothing is cached)
        if self._cached_csr is None:
            self._cached_csr = csr_adjacency(edge_index, num_src, num_dst, self.flow, dtype,
                                             edge_weight)
        return self._cached_csr

    def forward(self, x: Union[Tensor, OptPairTensor], edge_index: Adj,
                edge_weight: OptTensor = None, size: Size = None) -> Tensor:
        name = type(self).__name__
        size = check_size(name, size)
        x_src, x_dst = _pair(x)
        bipartite = not isinstance(x, Tensor)
        if bipartite and (self.normalize or self.add_self_loops):
            raise ValueError(f"'{name}' received a pair of node features "
                             f"(bipartite graph) but 'normalize' or 'add_self_loops' is set; "
                             f"these need a square adjacency: construct it with "
                             f"normalize=False, add_self_loops=False")
        # 2-D node features, or PyG's static-graph layout [B, N, F] (one graph, B signals)
        check_graph_input(name, x_src, x_dst, edge_index, self.node_dim, size, dims=(2, 3))
        if isinstance(edge_index, Tensor) and not is_torch_sparse_tensor(edge_index):
            _check_edge_weight(name, edge_index, edge_weight)
        if is_uncoalesced_coo(edge_index):
            # the coefficients are linear in the weights: duplicate entries summed
            # (as PyG's GCNConv does), once, instead of in every sparse product; and
            # PyG's gcn_norm/add_self_loops would flag the caller's tensor coalesced
            edge_index = edge_index.coalesce()
        if self._default_psi:
            check_channels(x_src, self.psi.in_channels, name, "x[0]" if bipartite else "x")
        else:
            check_module_input(name, "psi", self.psi, x_src.size(-1), "the source features")
        if is_torch_sparse_tensor(edge_index) and edge_index.dtype != x_src.dtype:
            edge_index = edge_index.to(x_src.dtype)  # e.g. a float32 pattern of ones
        h = self.psi(x_src)
        sparse = is_torch_sparse_tensor(edge_index) or (
            WITH_TORCH_SPARSE and isinstance(edge_index, SparseTensor))
        if sparse and self.aggr in ("add", "sum") and (self.normalize or not self.add_self_loops):
            # D^-1/2 (A + f I) D^-1/2 h = s * A (s * h) + loop * h: no new sparse
            # matrix and no gcn_norm (which rebuilds it, and does not trace under
            # torch.compile); sparse_sum_nodes says what torch.compile makes of it
            edge_index, scale, loop = self._sparse_scale(edge_index, x_src.dtype) \
                if self.normalize else (edge_index, None, None)
            if plain_propagate(self):
                out = sparse_sum_nodes(edge_index, h, self.node_dim, sparse_parts(edge_index),
                                       pre=scale, post=scale, loop=loop)
            elif scale is None:  # PyG's propagate, for its hooks
                out = self.propagate(edge_index, x=h, edge_weight=None, size=size)
            else:
                shape = [1] * h.dim()
                shape[self.node_dim] = -1
                scale = scale.view(shape)
                out = scale * self.propagate(edge_index, x=scale * h, edge_weight=None, size=size)
                if loop is not None:
                    out = out + loop.view(shape) * h
        else:
            edge_index, edge_weight = self._coefficients(edge_index, edge_weight,
                                                         x_src.size(self.node_dim),
                                                         x_src.dtype)
            if size is None and bipartite and x_dst is not None and \
                    isinstance(edge_index, Tensor) and not is_torch_sparse_tensor(edge_index):
                size = (x_src.size(self.node_dim), x_dst.size(self.node_dim))
            num_src, num_dst = size if size is not None else (None, None)
            if num_dst is None and not bipartite:
                num_dst = x_src.size(self.node_dim)
            if eager_cpu_product(self, edge_index, h, (num_src, num_dst), edge_weight):
                # the weighted sum as one sparse product over the CSR of the (normalised)
                # edges, instead of PyG's gather and scatter (see eager_cpu_product)
                if self.cached and self.normalize and not torch.compiler.is_compiling():
                    adj_t = self._cached_csr_of(edge_index, edge_weight, h.size(self.node_dim),
                                                num_dst, h.dtype)
                    out = csr_aggregate(adj_t, h, self.aggr, self.node_dim)
                else:
                    out = edge_aggregate(edge_index, h, num_dst, self.flow, self.aggr,
                                         self.node_dim, edge_weight)
            else:
                out = self.propagate(edge_index, x=h, edge_weight=edge_weight, size=size)
        if self.bias is not None:
            out = out + self.bias
        out = combine_update(self.combine, x_dst, out)
        if self.phi is None:
            return out
        check_module_input(name, "phi", self.phi, out.size(-1),
                           f"the combination '{self.combine}' of x and the aggregation")
        return self.phi(out)

    def message(self, x_j: Tensor, edge_weight: OptTensor) -> Tensor:
        return x_j if edge_weight is None else edge_weight.view(-1, 1) * x_j

    def message_and_aggregate(self, adj_t: Adj, x: Tensor) -> Tensor:
        # sparse adjacency: one sparse-dense matrix product (also for [B, N, F])
        return spmm_nodes(adj_t, x, self.aggr, self.node_dim)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.in_channels}, {self.out_channels}, "
                f"normalize={self.normalize})")
