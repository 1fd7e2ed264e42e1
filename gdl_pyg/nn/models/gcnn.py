r"""A group equivariant CNN (p4 / p4m) on pixel grids: lifting convolution,
group convolutions and coarsening on the lifted grid, pooling over the group,
and a global invariant readout."""
from typing import Literal, Optional, Tuple

import torch
from torch import Tensor
from torch_geometric.data import Data

from gdl_pyg.domains.lifted_grid import lift_grid, resolve_grid_group, wallpaper_name
from gdl_pyg.nn.conv.group_conv import GroupConv
from gdl_pyg.nn.conv.lifting_conv import LiftingConv
from gdl_pyg.nn.models.grid_cnn import _READOUT, _check_int, _grid_layout, _grid_logits
from gdl_pyg.nn.pool.grid_pool import GridPool
from gdl_pyg.nn.pool.group_pool import GroupPool, group_pool

__all__ = ["GCNN"]


class GCNN(torch.nn.Module):
    r"""The group equivariant convolutional network of the `"Group Equivariant
    Convolutional Networks" <https://arxiv.org/abs/1602.07576>`_ paper (Cohen
    and Welling, 2016), the model of the "Groups" chapter of the `"Geometric
    Deep Learning" <https://arxiv.org/abs/2104.13478>`_ book, for the groups
    p4 (translations and quarter turns, :math:`G = C_4`) and p4m (with
    reflections, :math:`G = D_4`):

    .. math::
        f = A \circ \Pi_G \circ \sigma \circ C^G_{L} \circ P \circ \cdots
        \circ P \circ \sigma \circ C^G_2 \circ P \circ \sigma \circ C^{\uparrow},

    with :math:`C^{\uparrow}` the :class:`~gdl_pyg.nn.conv.lifting_conv.LiftingConv`
    from pixels to the lifted grid :math:`\mathbb{Z}^2 \times G`,
    :math:`C^G_\ell` :class:`~gdl_pyg.nn.conv.group_conv.GroupConv` layers,
    :math:`\sigma` the ReLU, :math:`P` a
    :class:`~gdl_pyg.nn.pool.grid_pool.GridPool` by 2 of the lifted grid after
    every block but the last, :math:`\Pi_G` the
    :class:`~gdl_pyg.nn.pool.group_pool.GroupPool` over the group elements
    and :math:`A` a global pooling over the pixels and a linear classifier.

    Every map before :math:`\Pi_G` is equivariant to the rotations (and
    reflections) of :math:`G` about the grid centre when every grid side is
    divisible by :math:`2^{L-1}`; :math:`\Pi_G` and :math:`A` make the logits
    *invariant* to them, by construction.

    With the defaults (``hidden_channels=16``, p4, three 3x3 layers) it has
    18,794 parameters for one input channel and 10 classes, about as many as
    the default :class:`~gdl_pyg.nn.models.grid_cnn.GridCNN` (19,146), while
    every hidden layer holds :math:`16 \times |G| = 64` feature maps. (p4m
    doubles the group convolution weights: 37,226 parameters.)

    Two paths give the same logits: on grids in the canonical node order of
    :func:`~gdl_pyg.domains.grid_to_data` (checked, or forced by
    :obj:`dense=True`) the layers run on dense images; otherwise the grid is
    lifted with :func:`~gdl_pyg.domains.lifted_grid.lift_grid` and the layers
    pass messages along the lifted edges, so any node order is accepted.

    Args:
        in_channels (int, optional): channels of the input pixels.
            (default: :obj:`1`)
        num_classes (int, optional): number of outputs. (default: :obj:`10`)
        hidden_channels (int, optional): channels per group element of
            every hidden layer. (default: :obj:`16`)
        num_layers (int, optional): number of convolutions (the lifting one
            included); the grid is coarsened ``num_layers - 1`` times by 2.
            (default: :obj:`3`)
        kernel_size (int, optional): the odd kernel size. (default: :obj:`3`)
        group (str, optional): ``"p4"`` (:math:`C_4`) or ``"p4m"``
            (:math:`D_4`). (default: :obj:`"p4"`)
        pool (str, optional): ``"max"`` or ``"mean"`` coarsening.
            (default: :obj:`"max"`)
        group_reduce (str, optional): the pooling over the group, ``"max"`` or
            ``"mean"``. (default: :obj:`"max"`)
        readout (str, optional): the global pooling over pixels, ``"max"``,
            ``"mean"`` or ``"sum"``. (default: :obj:`"max"`)

    Shapes:
        - **input:** a grid ``Data`` / ``Batch`` with ``x`` :math:`(B \cdot H
          \cdot W, F_{in})`, ``grid_shape``, ``pos``, ``edge_index``,
          ``edge_offset`` (and ``batch``)
        - **output:** logits :math:`(B, \text{num\_classes})`
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, hidden_channels: int = 16,
                 num_layers: int = 3, kernel_size: int = 3,
                 group: Literal["p4", "p4m"] = "p4",
                 pool: Literal["max", "mean"] = "max",
                 group_reduce: Literal["max", "mean"] = "max",
                 readout: Literal["max", "mean", "sum"] = "max"):
        super().__init__()
        name = type(self).__name__
        for key, value in (("in_channels", in_channels), ("num_classes", num_classes),
                           ("hidden_channels", hidden_channels), ("num_layers", num_layers)):
            _check_int(name, key, value)
        _check_int(name, "kernel_size", kernel_size)
        if kernel_size % 2 == 0:
            raise ValueError(f"'{name}' expected an odd kernel_size (got {kernel_size})")
        if group not in ("p4", "p4m"):
            raise ValueError(f"'{name}' expected group 'p4' or 'p4m' (got {group!r})")
        if pool not in ("max", "mean"):
            raise ValueError(f"'{name}' expected pool 'max' or 'mean' (got {pool!r})")
        if group_reduce not in ("max", "mean"):
            raise ValueError(f"'{name}' expected group_reduce 'max' or 'mean' "
                             f"(got {group_reduce!r})")
        if readout not in _READOUT:
            raise ValueError(f"'{name}' expected readout 'max', 'mean' or 'sum' "
                             f"(got {readout!r})")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.hidden_channels = hidden_channels
        self.num_layers = num_layers
        self.kernel_size = kernel_size
        self.group = group
        self.pool = pool
        self.group_reduce = group_reduce
        self.readout = readout
        self.point_group = resolve_grid_group(group)

        self.lifting = LiftingConv(in_channels, hidden_channels, kernel_size, group=group)
        self.convs = torch.nn.ModuleList([
            GroupConv(hidden_channels, hidden_channels, kernel_size, group=group)
            for _ in range(num_layers - 1)
        ])
        self.pools = torch.nn.ModuleList([GridPool(2, reduce=pool)
                                          for _ in range(num_layers - 1)])
        self.group_pool = GroupPool(group_reduce)
        self.lin = torch.nn.Linear(hidden_channels, num_classes)
        self.reset_parameters()

    @property
    def order(self) -> int:
        r"""The number of group elements :math:`|G|` (4 for p4, 8 for p4m)."""
        return self.point_group.order

    def reset_parameters(self):
        r"""Resets all learnable parameters of the module."""
        self.lifting.reset_parameters()
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
                must be in canonical order), :obj:`False` message passing on
                the lifted grid; :obj:`None` picks the dense path when the
                layout allows it. (default: :obj:`None`)
        """
        shape, B, _ = _grid_layout(type(self).__name__, data)
        if len(shape) != 2:
            raise ValueError(f"'{type(self).__name__}' works on 2-D grids "
                             f"(got grid shape {list(shape)})")
        return _grid_logits(self, data, shape, B, dense)

    def _forward_dense(self, x: Tensor, shape: Tuple[int, ...], B: int) -> Tensor:
        G = self.order
        x = self.lifting(x, None, None, grid_shape=shape).relu()  # [B * H * W * G, C]
        for i, conv in enumerate(self.convs):
            x = self.pools[i].pool_dense(x, shape, B, G)
            shape = self.pools[i].output_shape(shape)
            x = conv(x, None, None, None, grid_shape=shape).relu()
        return group_pool(x, G, self.group_reduce)  # [B * H' * W', C]

    def _forward_graph(self, data: Data) -> Tuple[Tensor, Optional[Tensor]]:
        pixels = Data(x=data.x, pos=data.pos, edge_index=data.edge_index,
                      edge_offset=data.edge_offset, grid_shape=data.grid_shape)
        if "batch" in data and data.batch is not None:
            pixels.batch = data.batch
        lifted = lift_grid(pixels, self.point_group)
        lifted.x = self.lifting(data.x, data.edge_index, data.edge_offset).relu()
        for i, conv in enumerate(self.convs):
            lifted = self.pools[i](lifted, dense=False)
            lifted.x = conv(lifted.x, lifted.edge_index, lifted.edge_offset,
                            lifted.group_elem).relu()
        out = self.group_pool(lifted)
        return out.x, out.batch if "batch" in out else None

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.in_channels}, {self.num_classes}, "
                f"hidden_channels={self.hidden_channels}, num_layers={self.num_layers}, "
                f"kernel_size={self.kernel_size}, group={wallpaper_name(self.point_group)})")
