r"""A spherical CNN on icospheres, built from the blueprint's pieces:
:class:`~gdl_pyg.nn.conv.sphere_conv.SphereConv` (local rotation-equivariant
maps), a pointwise nonlinearity,
:class:`~gdl_pyg.nn.pool.sphere_pool.SpherePool` (coarsening to the next
coarser icosphere) and a rotation-invariant global pooling."""
from typing import List, Literal

import torch
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.utils import scatter

from gdl_pyg.nn.conv.sphere_conv import SphereConv, _graphs, _uniform_mass
from gdl_pyg.nn.pool.sphere_pool import SpherePool, icosphere_level

__all__ = ["SphericalCNN"]


def _check_int(cls: str, name: str, value, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"'{cls}' expected '{name}' to be an integer >= {minimum} "
                         f"(got {value!r})")


class SphericalCNN(torch.nn.Module):
    r"""A spherical convolutional network for the classification of signals
    on the sphere, the model of the "Groups" chapter of the `"Geometric Deep
    Learning: Grids, Groups, Graphs, Geodesics, and Gauges"
    <https://arxiv.org/abs/2104.13478>`_ book (sec. 5.2, after `"Spherical
    CNNs" <https://arxiv.org/abs/1801.10130>`_):

    .. math::
        f = \mathrm{MLP} \circ A \circ \sigma \circ C_L \circ P \circ \cdots
        \circ P \circ \sigma \circ C_1,

    with :math:`C_\ell` the rotation-equivariant
    :class:`~gdl_pyg.nn.conv.sphere_conv.SphereConv` layers (zonal filters,
    ``"harmonic"`` or ``"isotropic"``), :math:`\sigma` the SiLU, :math:`P`
    a :class:`~gdl_pyg.nn.pool.sphere_pool.SpherePool` to the next coarser
    icosphere after each of the first :obj:`num_coarsenings` blocks, and
    :math:`A` the global pooling over the sphere: the mass-weighted mean
    :math:`\frac{1}{4\pi}\sum_i m_i \mathbf{x}_i` (the integral of the
    signal) and/or the maximum, both invariant to rotations. The logits are
    exactly invariant to the 60 rotations of the icosahedron (which permute
    the vertices) and approximately to all rotations.

    Args:
        in_channels (int): channels of the input signal.
        hidden_channels (int): channels of every hidden layer.
        num_classes (int): number of outputs.
        num_layers (int, optional): number of convolutions. (default: :obj:`3`)
        kernel (str, optional): ``"harmonic"`` or ``"isotropic"`` (see
            :class:`~gdl_pyg.nn.conv.sphere_conv.SphereConv`).
            (default: :obj:`"harmonic"`)
        lmax (int, optional): band limit of the harmonic filters.
            (default: :obj:`8`)
        num_rings (int, optional): rings of the isotropic filters.
            (default: :obj:`2`)
        num_coarsenings (int, optional): how many of the first blocks end in a
            :class:`~gdl_pyg.nn.pool.sphere_pool.SpherePool` (at most
            ``num_layers - 1``, and the input icosphere's level).
            (default: :obj:`1`)
        coarsening (str, optional): ``"mean"`` or ``"max"`` neighbourhood
            reduction of the coarsening. (default: :obj:`"mean"`)
        pooling (str, optional): the global pooling, ``"mean"`` (the
            mass-weighted mean), ``"max"`` or ``"mean_max"`` (both,
            concatenated). (default: :obj:`"mean_max"`)
        dropout (float, optional): dropout before the last linear layer.
            (default: :obj:`0.0`)

    Shapes:
        - **input:** a ``Data`` / ``Batch`` of icospheres
          (:func:`~gdl_pyg.domains.icosphere`) with ``x`` :math:`(B \cdot N,
          F_{in})`, ``pos`` :math:`(B \cdot N, 3)`, ``edge_index``, ``mass``
          :math:`(B \cdot N)` (and ``batch``)
        - **output:** logits :math:`(B, \text{num\_classes})`
    """

    def __init__(self, in_channels: int, hidden_channels: int, num_classes: int,
                 num_layers: int = 3, kernel: Literal["harmonic", "isotropic"] = "harmonic",
                 lmax: int = 8, num_rings: int = 2, num_coarsenings: int = 1,
                 coarsening: Literal["mean", "max"] = "mean",
                 pooling: Literal["mean", "max", "mean_max"] = "mean_max",
                 dropout: float = 0.0):
        super().__init__()
        name = type(self).__name__
        for key, value in (("in_channels", in_channels), ("hidden_channels", hidden_channels),
                           ("num_classes", num_classes), ("num_layers", num_layers)):
            _check_int(name, key, value)
        _check_int(name, "num_coarsenings", num_coarsenings, minimum=0)
        if num_coarsenings > num_layers - 1:
            raise ValueError(f"'{name}' coarsens after a block that has a successor, so "
                             f"'num_coarsenings' must be at most num_layers - 1 = "
                             f"{num_layers - 1} (got {num_coarsenings})")
        if pooling not in ("mean", "max", "mean_max"):
            raise ValueError(f"'{name}' expected pooling 'mean', 'max' or 'mean_max' "
                             f"(got {pooling!r})")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"'{name}' expected 'dropout' in [0, 1) (got {dropout!r})")
        self.in_channels, self.hidden_channels = in_channels, hidden_channels
        self.num_classes, self.num_layers = num_classes, num_layers
        self.kernel, self.lmax, self.num_rings = kernel, lmax, num_rings
        self.num_coarsenings, self.pooling = num_coarsenings, pooling
        self.convs = torch.nn.ModuleList([
            SphereConv(in_channels if i == 0 else hidden_channels, hidden_channels,
                       kernel=kernel, num_rings=num_rings, lmax=lmax)
            for i in range(num_layers)])
        self.pools = torch.nn.ModuleList([SpherePool(coarsening)
                                          for _ in range(num_coarsenings)])
        width = hidden_channels * (2 if pooling == "mean_max" else 1)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(width, hidden_channels), torch.nn.SiLU(),
                                       torch.nn.Dropout(float(dropout)),
                                       torch.nn.Linear(hidden_channels, num_classes))
        self.reset_parameters()

    def reset_parameters(self):
        r"""Resets all learnable parameters of the module."""
        for conv in self.convs:
            conv.reset_parameters()
        for layer in self.mlp:
            if hasattr(layer, "reset_parameters"):
                layer.reset_parameters()

    def _readout(self, x: Tensor, mass: Tensor, batch: Tensor, B: int) -> Tensor:
        parts: List[Tensor] = []
        if self.pooling in ("mean", "mean_max"):
            num = scatter(mass.unsqueeze(-1) * x, batch, 0, dim_size=B, reduce="sum")
            den = scatter(mass, batch, 0, dim_size=B, reduce="sum")
            parts.append(num / den.unsqueeze(-1))
        if self.pooling in ("max", "mean_max"):
            parts.append(scatter(x, batch, 0, dim_size=B, reduce="max"))
        return torch.cat(parts, dim=-1)

    def forward(self, data: Data) -> Tensor:
        r"""Returns the logits ``[num_graphs, num_classes]`` of a (batched)
        ``Data`` of signals on icospheres."""
        name = type(self).__name__
        if not isinstance(data, Data):
            raise TypeError(f"'{name}' expected a 'Data' / 'Batch' of icospheres (got "
                            f"{type(data).__name__})")
        for key in ("x", "pos", "edge_index"):
            if not isinstance(data.get(key), Tensor):
                raise ValueError(f"'{name}' expected a 'Data' with '{key}' (signals on "
                                 f"'gdl_pyg.domains.icosphere', e.g. from "
                                 f"'SphericalDigitsDataModule')")
        x, pos, edge_index = data.x, data.pos, data.edge_index
        if x.dim() != 2 or x.size(-1) != self.in_channels:
            raise ValueError(f"'{name}' expected 'x' of shape [num_nodes, {self.in_channels}] "
                             f"(got {list(x.shape)})")
        batch = data.get("batch")
        num_graphs = getattr(data, "num_graphs", None) if batch is not None else None
        # a Batch knows its number of graphs: then nothing reads 'batch'
        batch, B = _graphs(batch, None if num_graphs is None else int(num_graphs), x)
        mass = data.get("mass")
        if mass is None:
            mass = _uniform_mass(batch, B, x)
        mass = mass.to(x.dtype)
        if self.num_coarsenings:
            s = icosphere_level(x.size(0) // max(B, 1))
            if s is None or s < self.num_coarsenings:
                raise ValueError(f"'{name}' coarsens {self.num_coarsenings} time(s), so every "
                                 f"graph must be an icosphere of level >= "
                                 f"{self.num_coarsenings} (got {x.size(0) // max(B, 1)} "
                                 f"vertices per graph)")
        # with coarsening, the graphs are equal icospheres (SpherePool checks it in
        # eager mode): compiled convolutions may take their batched products
        equal = bool(self.num_coarsenings) and torch.compiler.is_compiling()
        for i, conv in enumerate(self.convs):
            x = torch.nn.functional.silu(conv(x, pos, edge_index, mass, batch, B,
                                              equal_graphs=equal))
            if i < len(self.pools):
                x, pos, edge_index, mass, batch = self.pools[i](x, pos, edge_index, mass, batch,
                                                                B)
        return self.mlp(self._readout(x, mass, batch, B))

    def __repr__(self) -> str:
        extra = f"lmax={self.lmax}" if self.kernel == "harmonic" else \
            f"num_rings={self.num_rings}"
        return (f"{type(self).__name__}({self.in_channels}, {self.hidden_channels}, "
                f"{self.num_classes}, num_layers={self.num_layers}, kernel={self.kernel!r}, "
                f"{extra}, num_coarsenings={self.num_coarsenings}, pooling={self.pooling!r})")
