r"""A tensor field network / NequIP-style model on point clouds and molecules."""
from typing import Tuple, Union

import torch
from e3nn import o3
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.utils import scatter

from gdl_pyg.nn.conv.tensor_field_conv import TensorFieldConv
from gdl_pyg.nn.models.egnn import _per_graph

__all__ = ["TensorFieldNetwork"]

_OUTPUTS = ("scalar", "vector", "position")
_LEVELS = ("node", "graph")


class TensorFieldNetwork(torch.nn.Module):
    r"""An :math:`E(3)`-equivariant network of :class:`~gdl_pyg.nn.TensorFieldConv`
    interaction blocks, after the `"Tensor field networks"
    <https://arxiv.org/abs/1802.08219>`_ and `"E(3)-Equivariant Graph Neural
    Networks for Data-Efficient and Accurate Interatomic Potentials"
    <https://arxiv.org/abs/2101.03164>`_ (NequIP) papers.

    .. math::
        \mathbf{h}^{(0)}_i &= W_{\mathrm{emb}} \left[\mathbf{x}_i \,\|\,
            \mathbf{v}_i\right]

        \mathbf{h}^{(t+1)}_i &= \mathbf{h}^{(t)}_i +
            \mathrm{TFConv}^{(t)}\left(\mathbf{h}^{(t)}, \mathbf{p}\right)_i

        \mathbf{y}_i &= W_{\mathrm{out}} \mathbf{h}^{(T)}_i, \qquad
        \mathbf{y}_G = \sum_{i \in G} \mathbf{y}_i \ (\text{level="graph"})

    :math:`\mathbf{x}_i` are invariant node features (``data.x``), the
    optional :math:`\mathbf{v}_i` a vector (``data.vel``, irreps ``1o``), each
    block a gated :class:`~gdl_pyg.nn.TensorFieldConv` with a self-connection,
    and the readouts :math:`W` equivariant linear maps. The output is
    ``out_channels`` invariant scalars (``output="scalar"``), per node or
    summed per graph, or ``out_channels`` vectors (``1o``) per node
    (``output="vector"``, e.g. displacements for the n-body task:
    ``pos + model(data)``), or positions ``data.pos`` plus one predicted
    ``1o`` displacement per node (``output="position"``, the n-body task; with
    ``level="graph"`` the positions of each graph are laid out as one row
    ``[B, (|V| / B) 3]``, graphs of equal size, what
    :class:`~gdl_pyg.lightning.task.GraphRegressionTask` expects). For
    interatomic potentials, the energy of a graph
    is the sum of per-atom scalars and the forces :math:`-\partial E /
    \partial \mathbf{p}` (:meth:`energy_and_forces`).

    Args:
        in_channels (int): number of invariant node features ``data.x``.
        hidden_irreps (str or e3nn.o3.Irreps, optional): irreps of the hidden
            features, scalars first. (default: :obj:`"16x0e + 8x1o + 4x2e"`)
        out_channels (int, optional): number of outputs (scalars or vectors).
            (default: :obj:`1`)
        num_layers (int, optional): number of interaction blocks.
            (default: :obj:`3`)
        irreps_sh (str or int, optional): spherical harmonics of the edges
            (or their maximal degree). (default: :obj:`2`)
        max_radius (float, optional): the cutoff of the radial basis.
            (default: :obj:`5.0`)
        num_radial_basis (int, optional): size of the radial basis.
            (default: :obj:`8`)
        radial_hidden (int, optional): width of the radial MLPs.
            (default: :obj:`64`)
        radial_layers (int, optional): hidden layers of the radial MLPs.
            (default: :obj:`2`)
        radial_basis (str, optional): see :class:`TensorFieldConv`.
            (default: :obj:`"bessel"`)
        num_neighbors (float, optional): typical number of neighbours (message
            normalisation). (default: :obj:`1.0`)
        edge_dim (int, optional): number of invariant edge features
            ``data.edge_attr`` (e.g. charge products). (default: :obj:`0`)
        use_vel (bool, optional): read ``data.vel [N, 3]`` as an extra
            ``1o`` input feature. (default: :obj:`False`)
        output (str, optional): ``"scalar"``, ``"vector"`` or
            ``"position"`` (``pos`` plus a predicted displacement; needs
            ``out_channels=1``). (default: :obj:`"scalar"`)
        level (str, optional): ``"node"`` or ``"graph"`` (scalars: the sum
            over the nodes of each graph; positions: one row of the
            concatenated positions per graph; not for vectors).
            (default: :obj:`"node"`)
        residual (bool, optional): add each block's input to its output.
            (default: :obj:`True`)
        backend (str, optional): tensor-product backend of the layers, see
            :class:`TensorFieldConv`. (default: :obj:`"auto"`)

    Shapes:
        - **input:** a ``Data`` with ``x`` :math:`(|\mathcal{V}|, F_{in})`,
          ``pos`` :math:`(|\mathcal{V}|, 3)`, ``edge_index``
          :math:`(2, |\mathcal{E}|)`, optional ``vel``
          :math:`(|\mathcal{V}|, 3)`, ``edge_attr`` :math:`(|\mathcal{E}|, D)`
          and ``batch``
        - **output:** :math:`(|\mathcal{V}|, F_{out})` (scalars per node),
          :math:`(|\mathcal{G}|, F_{out})` (per graph) or
          :math:`(|\mathcal{V}|, 3 F_{out})` (vectors), :math:`(|\mathcal{V}|, 3)`
          or :math:`(|\mathcal{G}|, 3 |\mathcal{V}| / |\mathcal{G}|)` (positions)
    """
    group_name = "E(3)"

    def __init__(
        self,
        in_channels: int,
        hidden_irreps: Union[str, o3.Irreps] = "16x0e + 8x1o + 4x2e",
        out_channels: int = 1,
        num_layers: int = 3,
        irreps_sh: Union[str, o3.Irreps, int] = 2,
        max_radius: float = 5.0,
        num_radial_basis: int = 8,
        radial_hidden: int = 64,
        radial_layers: int = 2,
        radial_basis: str = "bessel",
        num_neighbors: float = 1.0,
        edge_dim: int = 0,
        use_vel: bool = False,
        output: str = "scalar",
        level: str = "node",
        residual: bool = True,
        backend: str = "auto",
    ):
        super().__init__()
        name = type(self).__name__
        for arg, value, low in (("in_channels", in_channels, 0),
                                ("out_channels", out_channels, 1),
                                ("num_layers", num_layers, 1)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"'{name}' expected an int '{arg}' >= {low} (got {value!r})")
        if in_channels == 0 and not use_vel:
            raise ValueError(f"'{name}' has no input: in_channels=0 and use_vel=False")
        if output not in _OUTPUTS:
            raise ValueError(f"'{name}' expected 'output' in {_OUTPUTS} (got {output!r})")
        if level not in _LEVELS:
            raise ValueError(f"'{name}' expected 'level' in {_LEVELS} (got {level!r})")
        if output == "vector" and level == "graph":
            raise ValueError(f"'{name}' pools only scalars per graph; use output='scalar' "
                             f"with level='graph', or level='node' for vectors")
        if output == "position" and out_channels != 1:
            raise ValueError(f"'{name}' with output='position' predicts one position per "
                             f"node; set out_channels=1 (got {out_channels})")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.num_layers = num_layers
        self.edge_dim = edge_dim
        self.use_vel = use_vel
        self.output = output
        self.level = level
        self.residual = residual

        parts = ([f"{in_channels}x0e"] if in_channels else []) + (["1x1o"] if use_vel else [])
        self.irreps_in = o3.Irreps(" + ".join(parts))
        self.irreps_hidden = o3.Irreps(hidden_irreps)
        self.irreps_out = o3.Irreps(f"{out_channels}x0e" if output == "scalar"
                                    else f"{out_channels}x1o")  # vector, position
        self.embedding = o3.Linear(self.irreps_in, self.irreps_hidden)
        self.convs = torch.nn.ModuleList([
            TensorFieldConv(self.irreps_hidden, self.irreps_hidden, irreps_sh=irreps_sh,
                            edge_dim=edge_dim, num_radial_basis=num_radial_basis,
                            max_radius=max_radius, radial_hidden=radial_hidden,
                            radial_layers=radial_layers, radial_basis=radial_basis,
                            num_neighbors=num_neighbors, gate=True, backend=backend)
            for _ in range(num_layers)
        ])
        self.readout = o3.Linear(self.irreps_hidden, self.irreps_out)
        self.reset_parameters()

    def reset_parameters(self):
        with torch.no_grad():
            self.embedding.weight.normal_()
            self.readout.weight.normal_()
        for conv in self.convs:
            conv.reset_parameters()

    def forward(self, data: Data) -> Tensor:
        name = type(self).__name__
        feats = []
        if self.in_channels:
            if data.x is None or data.x.dim() != 2 or data.x.size(-1) != self.in_channels:
                got = None if data.x is None else list(data.x.shape)
                raise ValueError(f"'{name}' expected 'data.x' of shape [num_nodes, "
                                 f"{self.in_channels}] (got {got})")
            feats.append(data.x)
        if self.use_vel:
            vel = getattr(data, "vel", None)
            if vel is None or vel.dim() != 2 or vel.size(-1) != 3:
                got = None if vel is None else list(vel.shape)
                raise ValueError(f"'{name}' was built with use_vel=True and expected "
                                 f"'data.vel' of shape [num_nodes, 3] (got {got})")
            feats.append(vel)
        x = torch.cat(feats, dim=-1) if len(feats) > 1 else feats[0]
        x = x.to(data.pos.dtype)
        edge_attr = data.edge_attr if self.edge_dim else None
        h = self.embedding(x)
        for conv in self.convs:
            out = conv(h, data.pos, data.edge_index, edge_attr)
            h = h + out if self.residual else out
        y = self.readout(h)
        if self.output == "position":
            y = data.pos + y
            # equal graph sizes are checked in eager mode only (as in EGNN)
            return _per_graph(type(self).__name__, y, data) if self.level == "graph" else y
        if self.level == "graph":
            batch = getattr(data, "batch", None)
            if batch is None:
                return y.sum(dim=0, keepdim=True)
            return scatter(y, batch, dim=0, dim_size=int(data.num_graphs), reduce="sum")
        return y

    def energy_and_forces(self, data: Data) -> Tuple[Tensor, Tensor]:
        r"""Returns the energy per graph ``[num_graphs]`` (the sum of per-node
        scalars) and the forces :math:`-\partial E / \partial \mathbf{p}`
        ``[num_nodes, 3]`` by autograd (differentiable while training)."""
        if self.output != "scalar" or self.level != "graph" or self.out_channels != 1:
            raise ValueError(f"'{type(self).__name__}.energy_and_forces' needs output='scalar',"
                             f" level='graph' and out_channels=1 (got output={self.output!r}, "
                             f"level={self.level!r}, out_channels={self.out_channels})")
        with torch.enable_grad():
            pos = data.pos if data.pos.requires_grad else data.pos.detach().requires_grad_()
            data = data.clone()
            data.pos = pos
            energy = self(data).squeeze(-1)
            forces, = torch.autograd.grad(energy.sum(), pos, create_graph=self.training)
        return energy, -forces

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.irreps_in} -> {self.irreps_out} | hidden="
                f"{self.irreps_hidden} | num_layers={self.num_layers}, output={self.output}, "
                f"level={self.level})")
