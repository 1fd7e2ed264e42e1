r"""Models for point systems with coordinates: the E(n)-equivariant
:class:`EGNN` of the `"E(n) Equivariant Graph Neural Networks"
<https://arxiv.org/abs/2102.09844>`_ paper, and :class:`NBodyGNN`, the paper's
plain message-passing baseline that reads the coordinates as features.

Both read a ``Data`` / ``Batch`` with ``pos``, ``vel``, ``x``, ``edge_index``
and ``edge_attr`` (as served by
:class:`~gdl_pyg.lightning.nbody_data.NBodyDataModule`) and predict the
positions of the nodes, ``[N, n]`` (``level="node"``) or one row
``[B, nodes_per_graph * n]`` per graph (``level="graph"``, what
:class:`~gdl_pyg.lightning.task.GraphRegressionTask` expects).
"""
from typing import Literal, Optional

import torch
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.nn.resolver import activation_resolver

from gdl_pyg.nn.conv.egnn_conv import EGNNConv
from gdl_pyg.nn.conv.message_passing_conv import MessagePassingConv
from gdl_pyg.utils import _is_compiling

__all__ = ["EGNN", "NBodyGNN"]

LEVELS = ("node", "graph")


def _check_int(cls: str, name: str, value, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"'{cls}' expected '{name}' to be an integer >= {minimum} "
                         f"(got {value!r})")


def _check_choice(cls: str, name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"'{cls}' expected '{name}' in {choices} (got {value!r})")


def _get(cls: str, data: Data, key: str, need: bool = True) -> Optional[Tensor]:
    if not isinstance(data, Data):
        raise TypeError(f"'{cls}' expected a torch_geometric 'Data' or 'Batch' (got "
                        f"{type(data).__name__})")
    value = data.get(key)
    if need and not isinstance(value, Tensor):
        raise ValueError(f"'{cls}' needs the attribute '{key}' of the data (got "
                         f"{type(value).__name__})")
    return value


def _per_graph(cls: str, out: Tensor, data: Data) -> Tensor:
    r"""``[N, n] -> [B, (N / B) n]`` for a batch of graphs of equal size."""
    batch = data.get("batch")
    if batch is None:
        return out.reshape(1, -1)
    num_graphs = int(data.num_graphs) if hasattr(data, "num_graphs") else int(batch.max()) + 1
    if num_graphs and out.size(0) % num_graphs == 0 and _is_compiling():
        # equal sizes read the data: checked in eager mode only (like the index checks)
        return out.reshape(num_graphs, -1)
    counts = torch.bincount(batch, minlength=num_graphs)
    if num_graphs == 0 or bool((counts != counts[0]).any()):
        raise ValueError(f"'{cls}' with level='graph' needs graphs of equal size (got node "
                         f"counts {counts.tolist()[:8]}...); use level='node'")
    return out.reshape(num_graphs, -1)


def _mlp(i: int, h: int, o: int, act: torch.nn.Module) -> torch.nn.Sequential:
    return torch.nn.Sequential(torch.nn.Linear(i, h), act, torch.nn.Linear(h, o))


class EGNN(torch.nn.Module):
    r"""The E(n)-equivariant graph neural network from the `"E(n)
    Equivariant Graph Neural Networks" <https://arxiv.org/abs/2102.09844>`_
    paper, as used for the n-body experiment (sec. 5.1): a linear embedding
    of the invariant node features, then :obj:`num_layers`
    :class:`~gdl_pyg.nn.conv.EGNNConv` layers that update features and
    coordinates together (with the velocity term of eq. 7 when
    :obj:`velocity=True`, every layer reading the input velocities),

    .. math::
        \mathbf{h}^{(0)} = \mathbf{W}\mathbf{x}, \qquad
        (\mathbf{h}^{(\ell)}, \mathbf{x}^{(\ell)}) =
        \mathrm{EGNNConv}^{(\ell)}(\mathbf{h}^{(\ell-1)}, \mathbf{x}^{(\ell-1)},
        \mathbf{a}, \mathbf{v}),

    and returns the final coordinates :math:`\mathbf{x}^{(L)}` (equivariant
    to rotations, reflections and translations of ``pos`` and ``vel`` and to
    permutations of the nodes). With :obj:`distance_attr=True` the squared
    input distances :math:`\|\mathbf{x}^{(0)}_i - \mathbf{x}^{(0)}_j\|^2`
    are appended to the edge attributes, as in the paper's n-body model.

    Args:
        in_channels (int): width of the invariant node features ``x``.
        hidden_channels (int): width of the features and messages.
        num_layers (int, optional): number of layers. (default: :obj:`4`)
        edge_dim (int, optional): width of the data's ``edge_attr``
            (:obj:`0`: none). (default: :obj:`1`, the charge products)
        velocity (bool, optional): use ``vel`` (eq. 7). (default: :obj:`True`)
        distance_attr (bool, optional): append the squared input distances
            to the edge attributes. (default: :obj:`True`)
        attention (bool, optional): see :class:`EGNNConv`. (default: :obj:`False`)
        normalize (bool, optional): see :class:`EGNNConv`. (default: :obj:`True`)
        coords_agg (str, optional): see :class:`EGNNConv`. (default: :obj:`"mean"`)
        tanh (bool, optional): see :class:`EGNNConv`. (default: :obj:`False`)
        act (str, optional): the nonlinearity. (default: :obj:`"silu"`)
        level (str, optional): ``"node"``: positions ``[N, n]``;
            ``"graph"``: one row ``[B, (N / B) n]`` per graph (graphs of equal
            size), for :class:`~gdl_pyg.lightning.task.GraphRegressionTask`.
            (default: :obj:`"node"`)
        task (str, optional): ``"positions"``: the predicted positions;
            ``"displacements"``: predicted minus input positions
            (translation invariant). (default: :obj:`"positions"`)

    Shapes:
        - **input:** a ``Data`` / ``Batch`` with ``x`` :math:`(|\mathcal{V}|,
          F_{in})`, ``pos`` and ``vel`` :math:`(|\mathcal{V}|, n)`,
          ``edge_index`` :math:`(2, |\mathcal{E}|)`, ``edge_attr``
          :math:`(|\mathcal{E}|, D)`, ``batch`` *(optional)*
        - **output:** :math:`(|\mathcal{V}|, n)` or :math:`(B, |\mathcal{V}|
          n / B)`
    """

    def __init__(self, in_channels: int, hidden_channels: int, num_layers: int = 4,
                 edge_dim: int = 1, velocity: bool = True, distance_attr: bool = True,
                 attention: bool = False, normalize: bool = True,
                 coords_agg: Literal["mean", "sum"] = "mean", tanh: bool = False,
                 act: str = "silu", level: Literal["node", "graph"] = "node",
                 task: Literal["positions", "displacements"] = "positions"):
        super().__init__()
        name = type(self).__name__
        _check_int(name, "in_channels", in_channels)
        _check_int(name, "hidden_channels", hidden_channels)
        _check_int(name, "num_layers", num_layers)
        _check_int(name, "edge_dim", edge_dim, minimum=0)
        _check_choice(name, "level", level, LEVELS)
        _check_choice(name, "task", task, ("positions", "displacements"))
        self.in_channels = in_channels
        self.hidden_channels = hidden_channels
        self.num_layers = num_layers
        self.edge_dim = edge_dim
        self.velocity = velocity
        self.distance_attr = distance_attr
        self.level = level
        self.task = task
        self.embedding = torch.nn.Linear(in_channels, hidden_channels)
        conv_edge_dim = edge_dim + (1 if distance_attr else 0)
        self.convs = torch.nn.ModuleList([
            EGNNConv(hidden_channels, hidden_channels, hidden_channels, edge_dim=conv_edge_dim,
                     act=act, attention=attention, normalize=normalize,
                     coords_agg=coords_agg, tanh=tanh, velocity=velocity)
            for _ in range(num_layers)])
        self.reset_parameters()

    def reset_parameters(self):
        r"""Resets all learnable parameters."""
        self.embedding.reset_parameters()
        for conv in self.convs:
            conv.reset_parameters()

    def forward(self, data: Data) -> Tensor:
        name = type(self).__name__
        x, pos = _get(name, data, "x"), _get(name, data, "pos")
        edge_index = _get(name, data, "edge_index")
        vel = _get(name, data, "vel") if self.velocity else None
        edge_attr = _get(name, data, "edge_attr") if self.edge_dim > 0 else None
        if self.distance_attr:
            diff = pos.index_select(0, edge_index[1]) - pos.index_select(0, edge_index[0])
            dist = (diff * diff).sum(dim=-1, keepdim=True)
            edge_attr = dist if edge_attr is None else torch.cat(
                [edge_attr.view(edge_index.size(1), -1).to(pos.dtype), dist], dim=-1)
        h, out = self.embedding(x), pos
        for conv in self.convs:
            h, out = conv(h, out, edge_index, edge_attr, vel)
        if self.task == "displacements":
            out = out - pos
        return _per_graph(name, out, data) if self.level == "graph" else out

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.in_channels}, {self.hidden_channels}, "
                f"num_layers={self.num_layers}, edge_dim={self.edge_dim}, "
                f"velocity={self.velocity}, level={self.level!r})")


class NBodyGNN(torch.nn.Module):
    r"""The plain graph neural network baseline of the n-body experiment of
    the `"E(n) Equivariant Graph Neural Networks"
    <https://arxiv.org/abs/2102.09844>`_ paper: the coordinates are read as
    ordinary features, :math:`\mathbf{h}^{(0)}_i = \mathbf{W}[\mathbf{x}_i
    \Vert \mathbf{v}_i \Vert \mathbf{f}_i]` (positions, velocities, node
    features), then :obj:`num_layers` residual message-passing layers
    (:class:`~gdl_pyg.nn.conv.MessagePassingConv` with MLP messages of
    :math:`[\mathbf{h}_i \Vert \mathbf{h}_j \Vert \mathbf{a}_{ij}]`, sum
    aggregation and an MLP update of :math:`[\mathbf{h}_i \Vert
    \mathbf{m}_i]`) and an MLP decoder,

    .. math::
        \mathbf{h}^{(\ell)}_i = \mathbf{h}^{(\ell-1)}_i + \phi\Big(
        \mathbf{h}^{(\ell-1)}_i, \sum_{j} \psi(\mathbf{h}^{(\ell-1)}_i,
        \mathbf{h}^{(\ell-1)}_j, \mathbf{a}_{ij})\Big), \qquad
        \hat{\mathbf{x}}_i = \mathbf{x}_i + \mathrm{MLP}(\mathbf{h}^{(L)}_i).

    It is permutation equivariant but not E(n) equivariant. With
    :obj:`residual=False` the decoder predicts the positions themselves (the
    paper's GNN); the default predicts the displacement
    :math:`\hat{\mathbf{x}}_i - \mathbf{x}_i`, which is what that network
    has to learn anyway and trains faster.

    Args:
        in_channels (int): width of the input, ``pos``, ``vel`` and ``x``
            concatenated (:obj:`7` for the n-body data).
        hidden_channels (int): width of every layer.
        num_layers (int, optional): number of layers. (default: :obj:`4`)
        edge_dim (int, optional): width of ``edge_attr`` (:obj:`0`: none).
            (default: :obj:`1`)
        out_channels (int, optional): the coordinate dimension. (default: :obj:`3`)
        residual (bool, optional): predict ``pos`` plus a learned
            displacement. (default: :obj:`True`)
        act (str, optional): the nonlinearity. (default: :obj:`"silu"`)
        level (str, optional): ``"node"`` or ``"graph"``, as for :class:`EGNN`.
            (default: :obj:`"node"`)

    Shapes:
        - **input:** a ``Data`` / ``Batch`` with ``pos``, ``vel`` and ``x``
          (widths adding up to :obj:`in_channels`), ``edge_index``,
          ``edge_attr`` :math:`(|\mathcal{E}|, D)`, ``batch`` *(optional)*
        - **output:** :math:`(|\mathcal{V}|, n)` or :math:`(B, |\mathcal{V}|
          n / B)`
    """

    def __init__(self, in_channels: int, hidden_channels: int, num_layers: int = 4,
                 edge_dim: int = 1, out_channels: int = 3, residual: bool = True,
                 act: str = "silu", level: Literal["node", "graph"] = "node"):
        super().__init__()
        name = type(self).__name__
        _check_int(name, "in_channels", in_channels)
        _check_int(name, "hidden_channels", hidden_channels)
        _check_int(name, "num_layers", num_layers)
        _check_int(name, "edge_dim", edge_dim, minimum=0)
        _check_int(name, "out_channels", out_channels)
        _check_choice(name, "level", level, LEVELS)
        self.in_channels = in_channels
        self.hidden_channels = hidden_channels
        self.num_layers = num_layers
        self.edge_dim = edge_dim
        self.out_channels = out_channels
        self.residual = residual
        self.level = level
        H = hidden_channels
        a = activation_resolver(act)
        self.embedding = torch.nn.Linear(in_channels, H)
        self.convs = torch.nn.ModuleList([
            MessagePassingConv(psi=torch.nn.Sequential(torch.nn.Linear(2 * H + edge_dim, H), a,
                                                       torch.nn.Linear(H, H), a),
                               phi=_mlp(2 * H, H, H, a), aggr="add", combine="cat")
            for _ in range(num_layers)])
        self.decoder = _mlp(H, H, out_channels, a)
        self.reset_parameters()

    def reset_parameters(self):
        r"""Resets all learnable parameters."""
        self.embedding.reset_parameters()
        for conv in self.convs:
            conv.reset_parameters()
        for module in self.decoder.modules():
            if isinstance(module, torch.nn.Linear):
                module.reset_parameters()

    def forward(self, data: Data) -> Tensor:
        name = type(self).__name__
        pos, vel, x = _get(name, data, "pos"), _get(name, data, "vel"), _get(name, data, "x")
        edge_index = _get(name, data, "edge_index")
        feats = torch.cat([pos, vel, x.to(pos.dtype)], dim=-1)
        if feats.size(-1) != self.in_channels:
            raise ValueError(f"'{name}' expected pos, vel and x of total width "
                             f"{self.in_channels} (got {pos.size(-1)} + {vel.size(-1)} + "
                             f"{x.size(-1)})")
        edge_attr = None
        if self.edge_dim > 0:
            edge_attr = _get(name, data, "edge_attr").view(edge_index.size(1), -1)
        h = self.embedding(feats)
        for conv in self.convs:
            h = h + conv(h, edge_index, edge_attr)
        out = self.decoder(h)
        if self.residual:
            if out.size(-1) != pos.size(-1):
                raise ValueError(f"'{name}' with residual=True needs out_channels equal to "
                                 f"the coordinate dimension {pos.size(-1)} (got "
                                 f"{out.size(-1)})")
            out = pos + out
        return _per_graph(name, out, data) if self.level == "graph" else out

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.in_channels}, {self.hidden_channels}, "
                f"num_layers={self.num_layers}, edge_dim={self.edge_dim}, "
                f"residual={self.residual}, level={self.level!r})")
