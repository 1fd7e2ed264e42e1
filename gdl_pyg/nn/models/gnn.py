r"""Ready models for graphs and sets (section 5 of the `"Geometric Deep
Learning" <https://arxiv.org/abs/2104.13478>`_ book): a GNN of any of the
three flavours, a graph Transformer with positional encodings, and Deep Sets.
Each is permutation equivariant at the node level and invariant at the graph
level (after the readout).
"""
from typing import Literal, Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.utils import scatter

from gdl_pyg.nn.conv.attentional_conv import AttentionalConv
from gdl_pyg.nn.conv.convolutional_conv import ConvolutionalConv
from gdl_pyg.nn.conv.deep_sets_conv import DeepSetsConv
from gdl_pyg.nn.conv.graph_transformer_conv import GraphTransformerConv
from gdl_pyg.nn.conv.message_passing_conv import MessagePassingConv
from gdl_pyg.nn.models._utils import (LEVELS, READOUTS, ReadoutHeadMixin,  # noqa: F401
                                      _check_choice, _check_data, _check_dropout, _check_int,
                                      _graph_info, _make_readout)
from gdl_pyg.nn.pool.readout import AttentionReadout

__all__ = ["GNN", "GraphTransformer", "DeepSets"]

FLAVOURS = ("convolutional", "attentional", "message_passing")
PES = ("none", "laplacian", "random_walk")
PE_ATTRS = {"laplacian": "laplacian_pe", "random_walk": "random_walk_pe"}


class GNN(ReadoutHeadMixin, torch.nn.Module):
    r"""A graph neural network of one of the three flavours of the
    `"Geometric Deep Learning: Grids, Groups, Graphs, Geodesics, and Gauges"
    <https://arxiv.org/abs/2104.13478>`_ book (sec. 5.3): :obj:`num_layers`
    permutation-equivariant layers with ReLU nonlinearities,

    .. math::
        \mathbf{H}^{(\ell)} = \mathrm{ReLU}\left(f^{(\ell)}(\mathbf{H}^{(\ell-1)},
        \mathbf{A})\right),\qquad \mathbf{H}^{(0)} = \mathbf{X},

    followed by a linear head on every node (:obj:`level="node"`,
    :math:`\mathbf{Y} = \mathbf{H}^{(L)}\mathbf{W}`) or on a permutation
    invariant readout of every graph (:obj:`level="graph"`,
    :math:`\mathbf{y}_b = \mathrm{MLP}(\bigoplus_{u \in \mathcal{V}_b}
    \mathbf{h}^{(L)}_u)`). The layers :math:`f^{(\ell)}` are

    * ``"convolutional"``: :class:`~gdl_pyg.nn.conv.convolutional_conv.ConvolutionalConv`
      (fixed coefficients, GCN);
    * ``"attentional"``: :class:`~gdl_pyg.nn.conv.attentional_conv.AttentionalConv`
      (learned attention, GAT, :obj:`heads` heads concatenated);
    * ``"message_passing"``: :class:`~gdl_pyg.nn.conv.message_passing_conv.MessagePassingConv`
      with a two-layer MLP update (GIN, :math:`\epsilon` trainable).

    Args:
        in_channels (int): input node feature width.
        hidden_channels (int): width of every layer.
        out_channels (int): number of outputs (classes) per node or graph.
        num_layers (int, optional): number of graph layers. (default: :obj:`2`)
        flavour (str, optional): ``"convolutional"``, ``"attentional"`` or
            ``"message_passing"``. (default: :obj:`"convolutional"`)
        level (str, optional): ``"node"`` (one output row per node) or
            ``"graph"`` (one per graph). (default: :obj:`"node"`)
        readout (str, optional): graph readout, ``"sum"``, ``"mean"``,
            ``"max"`` or ``"attention"`` (see :mod:`gdl_pyg.nn.pool.readout`);
            ignored at the node level. (default: :obj:`"sum"`)
        dropout (float, optional): dropout before every layer and the head.
            (default: :obj:`0.0`)
        heads (int, optional): attention heads of the ``"attentional"``
            flavour (:obj:`hidden_channels` must be a multiple).
            (default: :obj:`1`)

    Shapes:
        - **input:** a ``Data`` / ``Batch`` with ``x`` :math:`(|\mathcal{V}|,
          F_{in})`, ``edge_index`` :math:`(2, |\mathcal{E}|)` and ``batch``
          :math:`(|\mathcal{V}|)` *(optional)*
        - **output:** logits :math:`(|\mathcal{V}|, F_{out})` (node level) or
          :math:`(B, F_{out})` (graph level)
    """

    def __init__(self, in_channels: int, hidden_channels: int, out_channels: int,
                 num_layers: int = 2,
                 flavour: Literal["convolutional", "attentional",
                                  "message_passing"] = "convolutional",
                 level: Literal["node", "graph"] = "node",
                 readout: Literal["sum", "mean", "max", "attention"] = "sum",
                 dropout: float = 0.0, heads: int = 1):
        super().__init__()
        name = type(self).__name__
        for key, value in (("in_channels", in_channels), ("hidden_channels", hidden_channels),
                           ("out_channels", out_channels), ("num_layers", num_layers),
                           ("heads", heads)):
            _check_int(name, key, value)
        _check_choice(name, "flavour", flavour, FLAVOURS)
        _check_choice(name, "level", level, LEVELS)
        _check_choice(name, "readout", readout, READOUTS)
        _check_dropout(name, dropout)
        if flavour == "attentional" and hidden_channels % heads:
            raise ValueError(f"'{name}' needs hidden_channels divisible by heads (got "
                             f"hidden_channels={hidden_channels}, heads={heads})")
        self.in_channels = in_channels
        self.hidden_channels = hidden_channels
        self.out_channels = out_channels
        #: The number of classes (read by the classification tasks).
        self.num_classes = out_channels
        self.num_layers = num_layers
        self.flavour = flavour
        self.level = level
        self.readout_kind = readout
        self.dropout = dropout
        self.heads = heads
        self.convs = torch.nn.ModuleList(
            [self._make_conv(in_channels if i == 0 else hidden_channels)
             for i in range(num_layers)])
        self._init_head(level, readout, hidden_channels, out_channels)
        self.reset_parameters()

    def _make_conv(self, c_in: int) -> torch.nn.Module:
        H = self.hidden_channels
        if self.flavour == "convolutional":
            return ConvolutionalConv(c_in, H)
        if self.flavour == "attentional":
            return AttentionalConv(c_in, H // self.heads, heads=self.heads)
        mlp = torch.nn.Sequential(torch.nn.Linear(c_in, H), torch.nn.ReLU(),
                                  torch.nn.Linear(H, H))
        return MessagePassingConv(phi=mlp, aggr="add", combine="add", train_eps=True)

    def reset_parameters(self):
        r"""Resets all learnable parameters."""
        for conv in self.convs:
            conv.reset_parameters()
        self._reset_head()

    def embed(self, data: Data) -> Tensor:
        r"""The node embeddings :math:`\mathbf{H}^{(L)}` :math:`(|\mathcal{V}|,
        F_{hid})`."""
        _check_data(type(self).__name__, data, self.in_channels)
        h, edge_index = data.x, data.edge_index
        for conv in self.convs:
            h = F.dropout(h, p=self.dropout, training=self.training)
            h = conv(h, edge_index).relu()
        return h

    def forward(self, data: Data) -> Tensor:
        return self._readout_head(self.embed(data), data)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.in_channels}, {self.hidden_channels}, "
                f"{self.out_channels}, num_layers={self.num_layers}, "
                f"flavour={self.flavour!r}, level={self.level!r})")


class GraphTransformer(torch.nn.Module):
    r"""A graph Transformer: Transformer layers (`"Attention Is All You
    Need" <https://arxiv.org/abs/1706.03762>`_) on the complete graph of
    every graph of a batch, with the graph structure given by positional
    encodings of the nodes (sec. 5.3 of the `"Geometric Deep Learning"
    <https://arxiv.org/abs/2104.13478>`_ book; `"A Generalization of
    Transformer Networks to Graphs" <https://arxiv.org/abs/2012.09699>`_):

    .. math::
        \mathbf{h}^{(0)}_u &= \mathbf{W}_{x}\mathbf{x}_u + \mathbf{W}_{p}
        \mathbf{p}_u, \\
        \tilde{\mathbf{h}}_u &= \mathbf{h}^{(\ell-1)}_u + \mathrm{MHA}\big(
        \mathrm{LN}(\mathbf{h}^{(\ell-1)})\big)_u, \qquad
        \mathbf{h}^{(\ell)}_u = \tilde{\mathbf{h}}_u + \mathrm{MLP}\big(
        \mathrm{LN}(\tilde{\mathbf{h}}_u)\big),

    with multi-head attention :class:`~gdl_pyg.nn.conv.graph_transformer_conv.GraphTransformerConv`
    (pre-norm residual blocks). The encodings :math:`\mathbf{p}_u` are read
    from the data, where the transforms of :mod:`gdl_pyg.transforms.positional_encoding`
    put them: ``laplacian_pe`` (:class:`~gdl_pyg.transforms.positional_encoding.LaplacianPE`,
    Laplacian eigenvectors) or ``random_walk_pe``
    (:class:`~gdl_pyg.transforms.positional_encoding.RandomWalkPE`). Without
    encodings (:obj:`pe="none"`) and :obj:`attention="complete"` the model
    sees the nodes as a set and ignores the edges.

    The model is permutation equivariant given its inputs. Random-walk
    encodings are themselves equivariant functions of the graph, so the
    pipeline "transform, then model" is too; Laplacian eigenvectors are so
    only up to their sign (and basis, for repeated eigenvalues), which is why
    :class:`~gdl_pyg.transforms.positional_encoding.LaplacianPE` flips signs
    at random in training.

    Args:
        in_channels (int): input node feature width.
        hidden_channels (int): model width (a multiple of :obj:`heads`).
        out_channels (int): number of outputs (classes) per node or graph.
        num_layers (int, optional): number of Transformer blocks.
            (default: :obj:`2`)
        heads (int, optional): attention heads. (default: :obj:`4`)
        pe (str, optional): ``"none"``, ``"laplacian"`` or ``"random_walk"``.
            (default: :obj:`"laplacian"`)
        pe_dim (int, optional): the width of the encodings (:obj:`k` of
            :class:`LaplacianPE`, :obj:`walk_length` of :class:`RandomWalkPE`).
            (default: :obj:`8`)
        level (str, optional): ``"node"`` or ``"graph"``. (default: :obj:`"graph"`)
        readout (str, optional): graph readout, ``"sum"``, ``"mean"``,
            ``"max"`` or ``"attention"``. (default: :obj:`"mean"`)
        attention (str, optional): ``"complete"`` (every pair of nodes of a
            graph) or ``"edges"`` (along ``edge_index`` only).
            (default: :obj:`"complete"`)
        dropout (float, optional): dropout on the attention weights and in
            the blocks. (default: :obj:`0.0`)
        pe_attr (str, optional): the data attribute holding the encodings.
            (default: :obj:`None`, ``"laplacian_pe"`` or ``"random_walk_pe"``)

    Shapes:
        - **input:** a ``Data`` / ``Batch`` with ``x`` :math:`(|\mathcal{V}|,
          F_{in})`, the encodings :math:`(|\mathcal{V}|, \text{pe\_dim})`,
          ``batch`` :math:`(|\mathcal{V}|)` *(optional)*, ``edge_index``
          (with :obj:`attention="edges"`)
        - **output:** logits :math:`(|\mathcal{V}|, F_{out})` (node level) or
          :math:`(B, F_{out})` (graph level)
    """

    def __init__(self, in_channels: int, hidden_channels: int, out_channels: int,
                 num_layers: int = 2, heads: int = 4,
                 pe: Literal["none", "laplacian", "random_walk"] = "laplacian",
                 pe_dim: int = 8, level: Literal["node", "graph"] = "graph",
                 readout: Literal["sum", "mean", "max", "attention"] = "mean",
                 attention: Literal["complete", "edges"] = "complete",
                 dropout: float = 0.0, pe_attr: Optional[str] = None):
        super().__init__()
        name = type(self).__name__
        for key, value in (("in_channels", in_channels), ("hidden_channels", hidden_channels),
                           ("out_channels", out_channels), ("num_layers", num_layers),
                           ("heads", heads), ("pe_dim", pe_dim)):
            _check_int(name, key, value)
        _check_choice(name, "pe", pe, PES)
        _check_choice(name, "level", level, LEVELS)
        _check_choice(name, "readout", readout, READOUTS)
        _check_choice(name, "attention", attention, ("complete", "edges"))
        _check_dropout(name, dropout)
        if hidden_channels % heads:
            raise ValueError(f"'{name}' needs hidden_channels divisible by heads (got "
                             f"hidden_channels={hidden_channels}, heads={heads})")
        self.in_channels = in_channels
        self.hidden_channels = hidden_channels
        self.out_channels = out_channels
        #: The number of classes (read by the classification tasks).
        self.num_classes = out_channels
        self.num_layers = num_layers
        self.heads = heads
        self.pe = pe
        self.pe_dim = pe_dim
        self.level = level
        self.readout_kind = readout
        self.attention = attention
        self.dropout = dropout
        self.pe_attr = pe_attr if pe_attr is not None else PE_ATTRS.get(pe)
        H = hidden_channels
        self.lin_in = torch.nn.Linear(in_channels, H)
        self.lin_pe = torch.nn.Linear(pe_dim, H, bias=False) if pe != "none" else None
        self.norms1 = torch.nn.ModuleList([torch.nn.LayerNorm(H) for _ in range(num_layers)])
        self.convs = torch.nn.ModuleList([GraphTransformerConv(H, H, heads=heads,
                                                               dropout=dropout)
                                          for _ in range(num_layers)])
        self.norms2 = torch.nn.ModuleList([torch.nn.LayerNorm(H) for _ in range(num_layers)])
        self.mlps = torch.nn.ModuleList([
            torch.nn.Sequential(torch.nn.Linear(H, 2 * H), torch.nn.ReLU(),
                                torch.nn.Linear(2 * H, H)) for _ in range(num_layers)])
        self.norm_out = torch.nn.LayerNorm(H)
        self.readout = _make_readout(readout, H) if level == "graph" else None
        self.head = torch.nn.Linear(H, out_channels)
        self.reset_parameters()

    def reset_parameters(self):
        r"""Resets all learnable parameters."""
        for module in self.modules():
            if module is not self and isinstance(module, (torch.nn.Linear, torch.nn.LayerNorm,
                                                          GraphTransformerConv,
                                                          AttentionReadout)):
                module.reset_parameters()

    def embed(self, data: Data) -> Tensor:
        r"""The node embeddings after the last block :math:`(|\mathcal{V}|,
        F_{hid})`."""
        name = type(self).__name__
        _check_data(name, data, self.in_channels, need_edges=self.attention == "edges")
        h = self.lin_in(data.x)
        if self.lin_pe is not None:
            p = data.get(self.pe_attr)
            # the rows of x, not data.num_nodes (which dynamo cannot compare)
            if not isinstance(p, Tensor) or p.shape != (h.size(0), self.pe_dim):
                shape = list(p.shape) if isinstance(p, Tensor) else type(p).__name__
                raise ValueError(f"'{name}' with pe={self.pe!r} expected the node attribute "
                                 f"'{self.pe_attr}' of shape [{h.size(0)}, {self.pe_dim}] "
                                 f"(got {shape}); add it with the matching transform of "
                                 f"gdl_pyg.transforms.positional_encoding")
            h = h + self.lin_pe(p.to(h.dtype))
        batch, num_graphs = _graph_info(data)
        edge_index = data.edge_index if self.attention == "edges" else None
        max_nodes = None
        if edge_index is None and batch is not None:
            # the largest graph's size, read once for every layer rather than
            # by each layer's to_dense_batch (under torch.compile the model is
            # then 3 graphs instead of 4)
            sizes = scatter(torch.ones_like(batch), batch, 0, dim_size=num_graphs, reduce="sum")
            max_nodes = int(sizes.max())
        for norm1, conv, norm2, mlp in zip(self.norms1, self.convs, self.norms2, self.mlps):
            if edge_index is None:
                a = conv(norm1(h), batch=batch, batch_size=num_graphs, max_num_nodes=max_nodes)
            else:
                a = conv(norm1(h), edge_index)
            h = h + F.dropout(a, p=self.dropout, training=self.training)
            h = h + F.dropout(mlp(norm2(h)), p=self.dropout, training=self.training)
        return self.norm_out(h)

    def forward(self, data: Data) -> Tensor:
        h = self.embed(data)
        if self.readout is not None:
            batch, num_graphs = _graph_info(data)
            h = self.readout(h, batch, num_graphs)
        return self.head(h)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.in_channels}, {self.hidden_channels}, "
                f"{self.out_channels}, num_layers={self.num_layers}, heads={self.heads}, "
                f"pe={self.pe!r}, level={self.level!r})")


class DeepSets(torch.nn.Module):
    r"""Deep Sets from the `"Deep Sets" <https://arxiv.org/abs/1703.06114>`_
    paper (sec. 5.2 of the `"Geometric Deep Learning"
    <https://arxiv.org/abs/2104.13478>`_ book): :obj:`num_layers`
    permutation-equivariant :class:`~gdl_pyg.nn.conv.deep_sets_conv.DeepSetsConv`
    layers with ReLU, an invariant readout and an MLP,

    .. math::
        \mathbf{y}_b = \rho\Big(\bigoplus_{i \in S_b} \mathbf{h}^{(L)}_i\Big),
        \qquad \mathbf{h}^{(\ell)}_i = \mathrm{ReLU}\Big(\mathbf{\Theta}^{(\ell)}_1
        \mathbf{h}^{(\ell-1)}_i + \mathbf{\Theta}^{(\ell)}_2 \bigoplus_{j \in S_b}
        \mathbf{h}^{(\ell-1)}_j + \mathbf{b}^{(\ell)}\Big),

    where :math:`S_b` is a set of the batch (the nodes with ``batch == b``;
    no edges are needed) and :math:`\rho` a two-layer MLP.

    Args:
        in_channels (int): element feature width.
        hidden_channels (int): width of every layer.
        out_channels (int): number of outputs (classes) per set.
        num_layers (int, optional): number of equivariant layers (:obj:`0`
            gives the invariant model :math:`\rho(\sum_i \phi(\mathbf{x}_i))`
            with :math:`\phi` one linear layer and ReLU). (default: :obj:`2`)
        aggr (str, optional): the aggregation :math:`\bigoplus` of the layers
            and of the readout: ``"sum"``, ``"mean"`` or ``"max"``.
            (default: :obj:`"sum"`)
        dropout (float, optional): dropout before the MLP :math:`\rho`.
            (default: :obj:`0.0`)

    Shapes:
        - **input:** a ``Data`` / ``Batch`` with ``x`` :math:`(|\mathcal{V}|,
          F_{in})` and ``batch`` :math:`(|\mathcal{V}|)` *(optional)*
        - **output:** :math:`(B, F_{out})`
    """

    def __init__(self, in_channels: int, hidden_channels: int, out_channels: int,
                 num_layers: int = 2, aggr: Literal["sum", "mean", "max"] = "sum",
                 dropout: float = 0.0):
        super().__init__()
        name = type(self).__name__
        for key, value in (("in_channels", in_channels), ("hidden_channels", hidden_channels),
                           ("out_channels", out_channels)):
            _check_int(name, key, value)
        _check_int(name, "num_layers", num_layers, minimum=0)
        _check_choice(name, "aggr", aggr, ("sum", "mean", "max"))
        _check_dropout(name, dropout)
        self.in_channels = in_channels
        self.hidden_channels = hidden_channels
        self.out_channels = out_channels
        #: The number of classes (read by the classification tasks).
        self.num_classes = out_channels
        self.num_layers = num_layers
        self.aggr = aggr
        self.dropout = dropout
        H = hidden_channels
        self.convs = torch.nn.ModuleList([DeepSetsConv(in_channels if i == 0 else H, H,
                                                       aggr=aggr)
                                          for i in range(num_layers)])
        self.lin_phi = torch.nn.Linear(in_channels, H) if num_layers == 0 else None
        self.readout = _make_readout(aggr, H)
        self.rho = torch.nn.Sequential(torch.nn.Linear(H, H), torch.nn.ReLU(),
                                       torch.nn.Linear(H, out_channels))
        self.reset_parameters()

    def reset_parameters(self):
        r"""Resets all learnable parameters."""
        for conv in self.convs:
            conv.reset_parameters()
        if self.lin_phi is not None:
            self.lin_phi.reset_parameters()
        for module in self.rho.modules():
            if isinstance(module, torch.nn.Linear):
                module.reset_parameters()

    def forward(self, data: Data) -> Tensor:
        _check_data(type(self).__name__, data, self.in_channels, need_edges=False)
        batch, num_sets = _graph_info(data)
        h = data.x
        if self.lin_phi is not None:
            h = self.lin_phi(h).relu()
        for conv in self.convs:
            h = conv(h, batch, batch_size=num_sets).relu()
        h = self.readout(h, batch, num_sets)
        h = F.dropout(h, p=self.dropout, training=self.training)
        return self.rho(h)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.in_channels}, {self.hidden_channels}, "
                f"{self.out_channels}, num_layers={self.num_layers}, aggr={self.aggr!r})")
