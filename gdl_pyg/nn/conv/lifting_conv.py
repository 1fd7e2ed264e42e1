import math
from typing import Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Parameter
from torch_geometric.nn import MessagePassing

from gdl_pyg.domains.lifted_grid import kernel_index_table, resolve_grid_group, wallpaper_name
from gdl_pyg.groups.grid import CyclicGroup
from gdl_pyg.utils import check_edge_index, check_features

__all__ = ["LiftingConv"]

GridShape = Union[Tensor, Sequence[int], None]


def _check_kernel_size(cls: str, kernel_size) -> int:
    if isinstance(kernel_size, (tuple, list)):
        if len(kernel_size) != 2 or kernel_size[0] != kernel_size[1]:
            raise ValueError(f"'{cls}' needs a square kernel, since rotations map its "
                             f"support onto itself (got kernel_size={kernel_size!r})")
        kernel_size = kernel_size[0]
    if not isinstance(kernel_size, int) or isinstance(kernel_size, bool) or \
            kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"'{cls}' expected an odd positive 'kernel_size' so that the "
                         f"kernel has a centre pixel (got {kernel_size!r})")
    return kernel_size


def _check_channels(cls: str, in_channels, out_channels) -> None:
    for name, value in (("in_channels", in_channels), ("out_channels", out_channels)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"'{cls}' expected a positive integer '{name}' (got {value!r})")


def _spatial_shape(cls: str, grid_shape: GridShape, num_pixels: int) -> Tuple[int, int, int]:
    r"""``(B, H, W)`` for the fast path, from a ``grid_shape`` tensor
    ``[B or 1, 2]`` or a pair of ints."""
    if isinstance(grid_shape, Tensor):
        gs = grid_shape.view(-1, grid_shape.size(-1))
        if gs.size(-1) != 2:
            raise ValueError(f"'{cls}' works on 2-D grids (got grid_shape {gs.tolist()})")
        H, W = (int(s) for s in gs[0].tolist())
    else:
        if len(grid_shape) != 2:
            raise ValueError(f"'{cls}' works on 2-D grids (got grid_shape {grid_shape!r})")
        H, W = int(grid_shape[0]), int(grid_shape[1])
    if H * W == 0 or num_pixels % (H * W):
        raise ValueError(f"'{cls}' received {num_pixels} pixels, not a whole number of "
                         f"{H}x{W} grids")
    return num_pixels // (H * W), H, W


def _check_edge_offset(cls: str, edge_offset, edge_index) -> None:
    r"""``edge_offset`` must be a ``[E, 2]`` tensor with one row per edge of a
    dense ``edge_index``."""
    if not isinstance(edge_offset, Tensor) or not isinstance(edge_index, Tensor) or \
            edge_index.layout != torch.strided:
        return  # the callers raise a TypeError naming both types
    E = edge_index.size(1)
    if edge_offset.dim() != 2 or edge_offset.size(0) != E or edge_offset.size(1) != 2:
        raise ValueError(f"'{cls}' expected planar 'edge_offset' of shape [num_edges, 2] = "
                         f"[{E}, 2], one row per column of 'edge_index' (got "
                         f"{list(edge_offset.shape)}); build both with 'grid_to_data' / "
                         f"'lift_grid'")


def _offset_index(edge_offset: Tensor, kernel_size: int) -> Tuple[Tensor, Tensor]:
    r"""The flat kernel index of each edge offset (clamped into the kernel)
    and whether the offset lies inside the kernel."""
    if edge_offset.dim() != 2 or edge_offset.size(-1) != 2:
        raise ValueError(f"Expected planar 'edge_offset' of shape [num_edges, 2] "
                         f"(got {list(edge_offset.shape)})")
    off = edge_offset.round().long() if edge_offset.is_floating_point() else edge_offset
    r = kernel_size // 2
    valid = (off.abs() <= r).all(dim=-1)
    off = off.clamp(-r, r) + r
    return off[:, 0] * kernel_size + off[:, 1], valid


class LiftingConv(MessagePassing):
    r"""The lifting convolution from a pixel grid to the group-lifted grid
    :math:`\mathbb{Z}^2 \times G` (p4: :math:`G = C_4`, p4m: :math:`G = D_4`)
    from the `"Group Equivariant Convolutional Networks"
    <https://arxiv.org/abs/1602.07576>`_ paper (Cohen and Welling, 2016)

    .. math::
        \mathbf{x}^{\prime}_{i, h} = \sum_{j \in \mathcal{N}(i)}
        \mathbf{W}\big(h^{-1} (\mathbf{p}_j - \mathbf{p}_i)\big)\, \mathbf{x}_j
        + \mathbf{b},

    for every pixel :math:`i` and group element :math:`h`: a convolution with
    the kernel :math:`\mathbf{W}` rotated (and reflected) by each :math:`h`.
    It is equivariant to roto-translations (and reflections) of the grid, which
    move :math:`(\mathbf{p}, h)` to :math:`(g\mathbf{p}, gh)`.

    The kernel has the layout of :obj:`torch.nn.Conv2d.weight`
    (``[out_channels, in_channels, k, k]``, offset :math:`(0, 0)` at the
    centre). With :obj:`grid_shape` (nodes in the canonical row-major order of
    :func:`~gdl_pyg.domains.grid_to_data` and the full stencil graph), the layer
    runs one :func:`torch.nn.functional.conv2d` with the ``|G|`` transformed
    kernels stacked, on the node features read as a channels-last image (no
    copy of input or output); otherwise it passes messages along the edges (any node
    order, any stencil radius: offsets outside the kernel contribute nothing).
    Both give the same result.

    Args:
        in_channels (int): size of each input sample.
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
          pixel features :math:`(|\mathcal{V}|, F_{in})`,
          edge indices :math:`(2, |\mathcal{E}|)`,
          edge offsets :math:`(|\mathcal{E}|, 2)`,
          grid shape :math:`(B, 2)` or :math:`(2,)` *(optional)*
        - **output:** lifted features :math:`(|\mathcal{V}| \cdot |G|, F_{out})`,
          row ``i * |G| + h`` for pixel ``i`` and element ``h`` (the layout of
          :func:`~gdl_pyg.domains.lifted_grid.lift_grid`)
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
        self.weight = Parameter(torch.empty(out_channels, in_channels, self.kernel_size,
                                            self.kernel_size))
        if bias:
            self.bias = Parameter(torch.empty(out_channels))
        else:
            self.register_parameter("bias", None)
        # [|G|, k*k]: flat kernel index of h^{-1} v
        self.register_buffer("kernel_index", kernel_index_table(self.group, self.kernel_size),
                             persistent=False)
        self.reset_parameters()

    def reset_parameters(self):
        super().reset_parameters()
        # the initialisation of torch.nn.Conv2d
        torch.nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.in_channels * self.kernel_size ** 2
            bound = 1 / math.sqrt(fan_in)
            torch.nn.init.uniform_(self.bias, -bound, bound)

    @property
    def order(self) -> int:
        r"""The number of group elements :math:`|G|`."""
        return self.group.order

    def transformed_weight(self) -> Tensor:
        r"""The kernel transformed by every group element,
        ``[out_channels, |G|, in_channels, k, k]``: ``[:, h]`` is
        :math:`W(h^{-1} \cdot)`."""
        k = self.kernel_size
        w = self.weight.flatten(-2)  # [O, C, k*k]
        w = w[:, :, self.kernel_index]  # [O, C, G, k*k]
        return w.permute(0, 2, 1, 3).reshape(self.out_channels, self.order,
                                             self.in_channels, k, k)

    def forward(self, x: Tensor, edge_index: Tensor, edge_offset: Tensor,
                grid_shape: GridShape = None) -> Tensor:
        if not isinstance(x, Tensor) or x.dim() != 2 or x.size(-1) != self.in_channels:
            got = list(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"'{type(self).__name__}' expected pixel features of shape "
                             f"[num_nodes, {self.in_channels}] (got {got})")
        check_features(x, type(self).__name__, "x", dims=(2,))
        if grid_shape is not None:  # the bias is added inside conv2d
            return self._forward_grid(x, grid_shape)
        else:
            check_edge_index(edge_index, x.size(0), type(self).__name__)
            _check_edge_offset(type(self).__name__, edge_offset, edge_index)
            if not isinstance(edge_index, Tensor) or not isinstance(edge_offset, Tensor):
                raise TypeError(f"'{type(self).__name__}' expected 'edge_index' and "
                                f"'edge_offset' tensors (got {type(edge_index).__name__} and "
                                f"{type(edge_offset).__name__}); the kernel is indexed by "
                                f"the offset of each edge, so sparse adjacency matrices are "
                                f"not supported")
            out = self._forward_graph(x, edge_index, edge_offset)
        if self.bias is not None:
            out = out + self.bias
        return out

    def _forward_grid(self, x: Tensor, grid_shape: GridShape) -> Tensor:
        B, H, W = _spatial_shape(type(self).__name__, grid_shape, x.size(0))
        G, O, k = self.order, self.out_channels, self.kernel_size
        # rows (b, pixel) are the channels-last image [B, C, H, W]: a view
        img = x.reshape(B, H, W, -1).permute(0, 3, 1, 2)
        # [G(h), O, C, k*k] -> filter row h * O + o
        weight = self.weight.reshape(O, self.in_channels, k * k)[:, :, self.kernel_index]
        weight = weight.permute(2, 0, 1, 3).reshape(G * O, self.in_channels, k, k)
        # output channel h * O + o takes bias[o]: one fused add, not a pass over the output
        bias = self.bias.repeat(G) if self.bias is not None else None
        out = F.conv2d(img, weight, bias, padding=k // 2)  # [B, G * O, H, W]
        # channel h * O + o -> rows (b, pixel, h), columns o; a view when
        # conv2d kept the channels-last layout (it does on CPU and with cuDNN)
        return out.permute(0, 2, 3, 1).reshape(B * H * W * G, O)

    def _forward_graph(self, x: Tensor, edge_index: Tensor, edge_offset: Tensor) -> Tensor:
        N, G, O, k = x.size(0), self.order, self.out_channels, self.kernel_size
        KK = k * k
        # y[j * KK + v] = W(v) x_j for every pixel j and kernel tap v
        w = self.weight.flatten(-2).permute(1, 2, 0).reshape(self.in_channels, KK * O)
        y = (x @ w).view(N * KK, O)
        y = torch.cat([y, y.new_zeros(1, O)], dim=0)  # a zero row for offsets outside
        tap, valid = _offset_index(edge_offset, k)
        src, dst = edge_index[0], edge_index[1]
        # message (j, tap h^{-1} v) -> (i, h) for every edge j -> i and element h
        rows = src.view(1, -1) * KK + self.kernel_index[:, tap]  # [G, E]
        rows = torch.where(valid.view(1, -1), rows, N * KK)
        cols = dst.view(1, -1) * G + torch.arange(G, device=dst.device).view(G, 1)
        lifted_index = torch.stack([rows.reshape(-1), cols.reshape(-1)], dim=0)
        return self.propagate(lifted_index, y=y, size=(N * KK + 1, N * G))

    def message(self, y_j: Tensor) -> Tensor:
        return y_j

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.in_channels}, {self.out_channels}, "
                f"kernel_size={self.kernel_size}, group={wallpaper_name(self.group)})")
