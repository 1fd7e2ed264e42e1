r"""A convolutional network on pixel grids, built from the blueprint's
pieces: :class:`~gdl_pyg.nn.conv.grid_conv.GridConv` (local translation
equivariant maps), ReLU, :class:`~gdl_pyg.nn.pool.grid_pool.GridPool`
(coarsening) and a global pooling (invariant readout)."""
from typing import Literal, Optional, Tuple

import torch
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.nn import global_add_pool, global_max_pool, global_mean_pool

from gdl_pyg.domains.grid import grid_shape_of
from gdl_pyg.nn.conv.grid_conv import GridConv
from gdl_pyg.nn.pool.grid_pool import GridPool

__all__ = ["GridCNN"]

_READOUT = {"max": global_max_pool, "mean": global_mean_pool, "sum": global_add_pool}


def _check_int(cls: str, name: str, value, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"'{cls}' expected '{name}' to be an integer >= {minimum} "
                         f"(got {value!r})")


def _grid_layout(cls: str, data: Data) -> Tuple[Tuple[int, ...], int, Optional[Tensor]]:
    r"""``(shape, num_graphs, batch)`` of a pixel grid ``Data``."""
    if not isinstance(data, Data):
        raise TypeError(f"'{cls}' expected a grid 'Data' / 'Batch' made by 'grid_to_data' "
                        f"(got {type(data).__name__})")
    if not isinstance(data.get("x"), Tensor) or "grid_shape" not in data:
        raise ValueError(f"'{cls}' expected a grid 'Data' with 'x' and 'grid_shape' "
                         f"(made by 'grid_to_data')")
    if "group_elem" in data:
        raise ValueError(f"'{cls}' expected a pixel grid, not a lifted grid (the input "
                         f"has 'group_elem')")
    shape = grid_shape_of(data)
    batch = data.batch if "batch" in data and data.batch is not None else None
    n = 1
    for s in shape:
        n *= s
    if data.x.dim() != 2 or data.x.size(0) % n:
        raise ValueError(f"'{cls}' expected 'x' of shape [num_graphs * {n}, C] for grids "
                         f"of shape {list(shape)} (got {list(data.x.shape)})")
    return shape, data.x.size(0) // n, batch


def _check_depth(cls: str, shape: Tuple[int, ...], num_pools: int) -> None:
    r"""Raises if ``num_pools`` halvings of a grid of ``shape`` leave nothing."""
    need = 2 ** num_pools
    if any(s < need for s in shape):
        raise ValueError(f"'{cls}' coarsens the grid {num_pools} time(s) by 2, so every side "
                         f"must be at least {need} (got grid shape {list(shape)}); use fewer "
                         f"layers or pad the images")


def _grid_logits(model: torch.nn.Module, data: Data, shape: Tuple[int, ...], B: int,
                 dense: Optional[bool]) -> Tensor:
    r"""The shared tail of the grid models' ``forward``: checks the input
    channels and the pooling depth, runs ``model._forward_dense`` on grids
    in canonical order (or when ``dense`` says so) and
    ``model._forward_graph`` otherwise, then reads out and classifies."""
    name = type(model).__name__
    if data.x.size(-1) != model.in_channels:
        raise ValueError(f"'{name}' expected {model.in_channels} input "
                         f"channels (got {data.x.size(-1)})")
    _check_depth(name, shape, len(model.pools))
    if dense is None:
        dense = GridPool.is_canonical(data, shape, B, 1)
    if dense:
        x = model._forward_dense(data.x, shape, B)
        batch = torch.arange(B, device=x.device).repeat_interleave(x.size(0) // B)
    else:
        x, batch = model._forward_graph(data)
    return model.lin(_READOUT[model.readout](x, batch, size=B))


class GridCNN(torch.nn.Module):
    r"""A convolutional neural network on pixel grids, the model of the "Grids"
    chapter of the `"Geometric Deep Learning: Grids, Groups, Graphs,
    Geodesics, and Gauges" <https://arxiv.org/abs/2104.13478>`_ book:

    .. math::
        f = A \circ \sigma \circ C_{L} \circ P \circ \sigma \circ C_{L-1}
        \circ \cdots \circ P \circ \sigma \circ C_1,

    with :math:`C_\ell` the translation equivariant
    :class:`~gdl_pyg.nn.conv.grid_conv.GridConv` layers, :math:`\sigma` the
    ReLU, :math:`P` a :class:`~gdl_pyg.nn.pool.grid_pool.GridPool` by 2
    after every block but the last, and :math:`A` a global pooling over the
    pixels followed by a linear classifier. The global pooling is invariant
    to permutations of the pixels, but the convolutions are not equivariant
    to rotations: the model is *not* rotation invariant (compare with
    :class:`~gdl_pyg.nn.models.gcnn.GCNN`).

    With the defaults (``hidden_channels=32``, three 3x3 layers) it has
    19,146 parameters for one input channel and 10 classes, about as many as
    the default p4 :class:`~gdl_pyg.nn.models.gcnn.GCNN` (18,794).

    Two paths give the same logits: on grids in the canonical node order of
    :func:`~gdl_pyg.domains.grid_to_data` (checked, or forced by
    :obj:`dense=True`) the layers run on dense images
    (:func:`torch.nn.functional.conv2d`, ``max_pool2d``); otherwise they pass
    messages along ``edge_index`` / ``edge_offset`` and pool by clustering,
    so the model accepts any node order.

    Args:
        in_channels (int, optional): channels of the input pixels.
            (default: :obj:`1`)
        num_classes (int, optional): number of outputs. (default: :obj:`10`)
        hidden_channels (int, optional): channels of every hidden layer.
            (default: :obj:`32`)
        num_layers (int, optional): number of convolutions; grids are
            coarsened ``num_layers - 1`` times by 2, so each side must be at
            least :math:`2^{L-1}` (divisible by it for exact rotations).
            (default: :obj:`3`)
        kernel_size (int, optional): the odd kernel size. (default: :obj:`3`)
        pool (str, optional): ``"max"`` or ``"mean"`` coarsening.
            (default: :obj:`"max"`)
        readout (str, optional): the global pooling, ``"max"``, ``"mean"`` or
            ``"sum"``. (default: :obj:`"max"`)

    Shapes:
        - **input:** a grid ``Data`` / ``Batch`` with ``x`` :math:`(B \cdot H
          \cdot W, F_{in})`, ``grid_shape``, ``pos``, ``edge_index``,
          ``edge_offset`` (and ``batch``)
        - **output:** logits :math:`(B, \text{num\_classes})`
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, hidden_channels: int = 32,
                 num_layers: int = 3, kernel_size: int = 3,
                 pool: Literal["max", "mean"] = "max",
                 readout: Literal["max", "mean", "sum"] = "max"):
        super().__init__()
        name = type(self).__name__
        for key, value in (("in_channels", in_channels), ("num_classes", num_classes),
                           ("hidden_channels", hidden_channels), ("num_layers", num_layers)):
            _check_int(name, key, value)
        _check_int(name, "kernel_size", kernel_size)
        if kernel_size % 2 == 0:
            raise ValueError(f"'{name}' expected an odd kernel_size (got {kernel_size})")
        if pool not in ("max", "mean"):
            raise ValueError(f"'{name}' expected pool 'max' or 'mean' (got {pool!r})")
        if readout not in _READOUT:
            raise ValueError(f"'{name}' expected readout 'max', 'mean' or 'sum' "
                             f"(got {readout!r})")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.hidden_channels = hidden_channels
        self.num_layers = num_layers
        self.kernel_size = kernel_size
        self.pool = pool
        self.readout = readout

        self.convs = torch.nn.ModuleList([
            GridConv(in_channels if i == 0 else hidden_channels, hidden_channels, kernel_size)
            for i in range(num_layers)
        ])
        self.pools = torch.nn.ModuleList([GridPool(2, reduce=pool)
                                          for _ in range(num_layers - 1)])
        self.lin = torch.nn.Linear(hidden_channels, num_classes)
        self.reset_parameters()

    def reset_parameters(self):
        r"""Resets all learnable parameters of the module."""
        for conv in self.convs:
            conv.reset_parameters()
        self.lin.reset_parameters()

    def forward(self, data: Data, dense: Optional[bool] = None) -> Tensor:
        r"""Returns the logits ``[num_graphs, num_classes]`` of a (batched)
        grid ``Data``.

        Args:
            data (torch_geometric.data.Data): pixel grids of one size, made by
                :func:`~gdl_pyg.domains.grid_to_data`, in any node order.
            dense (bool, optional): :obj:`True` takes the dense path (nodes
                must be in canonical order), :obj:`False` message passing;
                :obj:`None` picks the dense path when the layout allows it.
                (default: :obj:`None`)
        """
        shape, B, _ = _grid_layout(type(self).__name__, data)
        return _grid_logits(self, data, shape, B, dense)

    def _forward_dense(self, x: Tensor, shape: Tuple[int, ...], B: int) -> Tensor:
        for i, conv in enumerate(self.convs):
            x = conv(x, None, None, grid_shape=shape).relu()
            if i < len(self.pools):
                x = self.pools[i].pool_dense(x, shape, B)
                shape = self.pools[i].output_shape(shape)
        return x

    def _forward_graph(self, data: Data) -> Tuple[Tensor, Optional[Tensor]]:
        grid = Data(x=data.x, pos=data.pos, edge_index=data.edge_index,
                    edge_offset=data.edge_offset, grid_shape=data.grid_shape)
        if "batch" in data and data.batch is not None:
            grid.batch = data.batch
        for i, conv in enumerate(self.convs):
            grid.x = conv(grid.x, grid.edge_index, grid.edge_offset).relu()
            if i < len(self.pools):
                grid = self.pools[i](grid, dense=False)
        return grid.x, grid.batch if "batch" in grid else None

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.in_channels}, {self.num_classes}, "
                f"hidden_channels={self.hidden_channels}, num_layers={self.num_layers}, "
                f"kernel_size={self.kernel_size})")
