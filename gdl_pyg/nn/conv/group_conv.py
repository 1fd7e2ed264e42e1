import math
from typing import Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Parameter
from torch_geometric.nn import MessagePassing

from gdl_pyg.domains.lifted_grid import (group_index_table, kernel_index_table,
                                         resolve_grid_group, wallpaper_name)
from gdl_pyg.groups.grid import CyclicGroup
from gdl_pyg.nn.conv.lifting_conv import (GridShape, _check_channels, _check_edge_offset,
                                          _check_kernel_size, _offset_index, _spatial_shape)
from gdl_pyg.utils import check_edge_index, check_features

__all__ = ["GroupConv"]


class GroupConv(MessagePassing):
    r"""The group convolution on the lifted grid :math:`\mathbb{Z}^2 \times G`
    (p4: :math:`G = C_4`, p4m: :math:`G = D_4`) from the `"Group Equivariant
    Convolutional Networks" <https://arxiv.org/abs/1602.07576>`_ paper (Cohen
    and Welling, 2016)

    .. math::
        \mathbf{x}^{\prime}_{i, h} = \sum_{(j, h') \in \mathcal{N}(i, h)}
        \mathbf{W}\big(h^{-1} (\mathbf{p}_j - \mathbf{p}_i),\, h^{-1} h'\big)\,
        \mathbf{x}_{j, h'} + \mathbf{b},

    a convolution over the group :math:`\mathbb{Z}^2 \rtimes G`: the kernel is
    indexed by the offset and the group element *relative* to the target
    :math:`(\mathbf{p}_i, h)`, so the layer commutes with
    :math:`(\mathbf{p}, h) \mapsto (g\mathbf{p}, gh)`.

    The kernel has the layout ``[out_channels, in_channels, |G|, k, k]``
    (the third index is :math:`h^{-1} h'`). With :obj:`grid_shape` (nodes in
    the canonical order of :func:`~gdl_pyg.domains.lifted_grid.lift_grid`:
    graph, pixel row-major, element; the full stencil graph), the layer runs
    one :func:`torch.nn.functional.conv2d` with the expanded
    ``[|G| * out_channels, |G| * in_channels, k, k]`` filter (the standard
    G-CNN implementation). The lifted rows ``(graph, pixel, element)`` with
    ``F_in`` columns *are* a channels-last image ``[B, |G| * F_in, H, W]``,
    so this path copies neither input nor output; otherwise it passes
    messages along the lifted edges (any node order, any stencil radius).
    Both give the same result.

    Args:
        in_channels (int): size of each input sample, per group element.
        out_channels (int): size of each output sample, per group element.
        kernel_size (int): the odd kernel size ``k``.
        group (str or CyclicGroup, optional): ``"p4"``, ``"p4m"`` or a
            :class:`~gdl_pyg.groups.CyclicGroup` /
            :class:`~gdl_pyg.groups.DihedralGroup` with ``N`` in 1, 2, 4.
            (default: :obj:`"p4"`)
        bias (bool, optional): if set to :obj:`False`, the layer will not learn
            an additive bias (one per output channel, shared by all group
            elements). (default: :obj:`True`)
        **kwargs (optional): additional arguments of
            :class:`torch_geometric.nn.conv.MessagePassing`.

    Shapes:
        - **input:**
          lifted features :math:`(|\mathcal{V}| \cdot |G|, F_{in})`,
          edge indices :math:`(2, |\mathcal{E}|)`,
          edge offsets :math:`(|\mathcal{E}|, 2)`,
          group elements :math:`(|\mathcal{V}| \cdot |G|)`,
          grid shape :math:`(B, 2)` or :math:`(2,)` *(optional)*
        - **output:** lifted features :math:`(|\mathcal{V}| \cdot |G|, F_{out})`
    """

    #: The symmetry the layer respects.
    group_name = "p4 / p4m (C4 / D4 acting on Z^2)"

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int,
                 group: Union[str, CyclicGroup] = "p4", bias: bool = True, **kwargs):
        kwargs.setdefault("aggr", "add")
        super().__init__(**kwargs)
        _check_channels(type(self).__name__, in_channels, out_channels)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = _check_kernel_size(type(self).__name__, kernel_size)
        self.group = resolve_grid_group(group)
        G, k = self.group.order, self.kernel_size
        self.weight = Parameter(torch.empty(out_channels, in_channels, G, k, k))
        if bias:
            self.bias = Parameter(torch.empty(out_channels))
        else:
            self.register_parameter("bias", None)
        # [|G|, k*k]: flat kernel index of h^{-1} v;  [|G|, |G|]: h^{-1} h'
        self.register_buffer("kernel_index", kernel_index_table(self.group, k),
                             persistent=False)
        self.register_buffer("group_index", group_index_table(self.group), persistent=False)
        self.reset_parameters()

    def reset_parameters(self):
        super().reset_parameters()
        # the initialisation of torch.nn.Conv2d, fan-in in_channels * |G| * k * k
        torch.nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.in_channels * self.order * self.kernel_size ** 2
            bound = 1 / math.sqrt(fan_in)
            torch.nn.init.uniform_(self.bias, -bound, bound)

    @property
    def order(self) -> int:
        r"""The number of group elements :math:`|G|`."""
        return self.group.order

    def expanded_weight(self) -> Tensor:
        r"""The filter of the equivalent ``Conv2d`` on the lifted image
        ``[B, in_channels * |G|, H, W]`` (channel ``c * |G| + h'``), shape
        ``[out_channels * |G|, in_channels * |G|, k, k]`` (row ``o * |G| + h``):
        entry :math:`[(o, h), (c, h')](v) = W_{o c}(h^{-1} v, h^{-1} h')`."""
        G, O, C, k = self.order, self.out_channels, self.in_channels, self.kernel_size
        w = self.weight.flatten(-2)  # [O, C, G, k*k]
        # w[:, :, group_index[h, h'], kernel_index[h, v]] for every (h, h', v)
        w = w[:, :, self.group_index.view(G, G, 1), self.kernel_index.view(G, 1, k * k)]
        # [O, C, G(h), G(h'), k*k] -> [O, G(h), C, G(h'), k, k]
        return w.permute(0, 2, 1, 3, 4).reshape(O * G, C * G, k, k)

    def _grid_weight(self) -> Tensor:
        r"""The fast path's filter: :meth:`expanded_weight` with the element
        outside, ``[|G| * out_channels, |G| * in_channels, k, k]`` (row
        ``h * out_channels + o``, column ``h' * in_channels + c``), built by
        one :func:`torch.index_select` and one permute."""
        G, O, C, k = self.order, self.out_channels, self.in_channels, self.kernel_size
        KK = k * k
        # flat (h^{-1} h', h^{-1} v) tap of every (h, h', v), from the two tables
        index = (self.group_index.view(G, G, 1) * KK + self.kernel_index.view(G, 1, KK))
        w = self.weight.reshape(O, C, G * KK).index_select(2, index.view(-1))
        # [O, C, G(h), G(h'), k*k] -> [G(h), O, G(h'), C, k*k]
        return w.view(O, C, G, G, KK).permute(2, 0, 3, 1, 4).reshape(G * O, G * C, k, k)

    def forward(self, x: Tensor, edge_index: Tensor, edge_offset: Tensor,
                group_elem: Tensor, grid_shape: GridShape = None) -> Tensor:
        if not isinstance(x, Tensor) or x.dim() != 2 or x.size(-1) != self.in_channels:
            got = list(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"'{type(self).__name__}' expected lifted features of shape "
                             f"[num_nodes * {self.order}, {self.in_channels}] "
                             f"(got {got})")
        check_features(x, type(self).__name__, "x", dims=(2,))
        if grid_shape is not None:  # the bias is added inside conv2d
            return self._forward_grid(x, grid_shape)
        else:
            name = type(self).__name__
            check_edge_index(edge_index, x.size(0), name)
            _check_edge_offset(name, edge_offset, edge_index)
            if not isinstance(group_elem, Tensor) or group_elem.shape != (x.size(0),) \
                    or group_elem.is_floating_point():
                got = list(group_elem.shape) if isinstance(group_elem, Tensor) else \
                    type(group_elem).__name__
                raise ValueError(f"'{name}' expected an integer 'group_elem' of shape "
                                 f"[{x.size(0)}], the group element of every row of 'x' "
                                 f"(got {got}); 'lift_grid' writes it")
            if not isinstance(edge_index, Tensor) or not isinstance(edge_offset, Tensor):
                raise TypeError(f"'{type(self).__name__}' expected 'edge_index' and "
                                f"'edge_offset' tensors (got {type(edge_index).__name__} and "
                                f"{type(edge_offset).__name__}); the kernel is indexed by "
                                f"the offset of each edge, so sparse adjacency matrices are "
                                f"not supported")
            out = self._forward_graph(x, edge_index, edge_offset, group_elem)
        if self.bias is not None:
            out = out + self.bias
        return out

    def _forward_grid(self, x: Tensor, grid_shape: GridShape) -> Tensor:
        G, O, C, k = self.order, self.out_channels, self.in_channels, self.kernel_size
        if x.size(0) % G:
            raise ValueError(f"'{type(self).__name__}' expected {G} rows per pixel "
                             f"(got {x.size(0)} rows)")
        B, H, W = _spatial_shape(type(self).__name__, grid_shape, x.size(0) // G)
        # rows (b, pixel, h') are the channels-last image [B, G * C, H, W]
        # (channel h' * C + c): a view, no copy
        img = x.reshape(B, H, W, G * C).permute(0, 3, 1, 2)
        # output channel h * O + o takes bias[o]: one fused add, not a pass over the output
        bias = self.bias.repeat(G) if self.bias is not None else None
        out = F.conv2d(img, self._grid_weight(), bias, padding=k // 2)  # [B, G * O, H, W]
        # channel h * O + o -> rows (b, pixel, h); a view when conv2d kept
        # the channels-last layout (it does on CPU and with cuDNN)
        return out.permute(0, 2, 3, 1).reshape(B * H * W * G, O)

    def _forward_graph(self, x: Tensor, edge_index: Tensor, edge_offset: Tensor,
                       group_elem: Tensor) -> Tensor:
        N, G, O, k = x.size(0), self.order, self.out_channels, self.kernel_size
        KK = k * k
        T = G * KK  # kernel taps (relative element, offset)
        # y[n * T + g * KK + v] = W(v, g) x_n for every node n and tap (g, v)
        w = self.weight.flatten(-2).permute(1, 2, 3, 0).reshape(self.in_channels, T * O)
        y = (x @ w).view(N * T, O)
        y = torch.cat([y, y.new_zeros(1, O)], dim=0)  # a zero row for offsets outside
        tap, valid = _offset_index(edge_offset, k)
        src, dst = edge_index[0], edge_index[1]
        h, hp = group_elem[dst], group_elem[src]
        rows = src * T + self.group_index[h, hp] * KK + self.kernel_index[h, tap]
        rows = torch.where(valid, rows, N * T)
        tap_index = torch.stack([rows, dst], dim=0)
        return self.propagate(tap_index, y=y, size=(N * T + 1, N))

    def message(self, y_j: Tensor) -> Tensor:
        return y_j

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.in_channels}, {self.out_channels}, "
                f"kernel_size={self.kernel_size}, group={wallpaper_name(self.group)})")
