r"""The convolution of a pixel / voxel grid, written as message passing."""
import math
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Parameter
from torch_geometric.nn import MessagePassing

from gdl_pyg.utils import check_edge_index, check_features

__all__ = ["GridConv"]

_PADDING_MODES = ("zeros", "circular")


def _same_padding(kernel_size: Sequence[int]) -> Tuple[Tuple[int, int], ...]:
    r"""PyTorch's ``padding="same"``: ``(k - 1) // 2`` before, the rest after."""
    return tuple(((k - 1) // 2, k - 1 - (k - 1) // 2) for k in kernel_size)


class GridConv(MessagePassing):
    r"""The convolution of a signal on a 2-D or 3-D grid, the translation
    equivariant layer of the "Grids" chapter of the `"Geometric Deep Learning:
    Grids, Groups, Graphs, Geodesics, and Gauges"
    <https://arxiv.org/abs/2104.13478>`_ book, as message passing on the
    stencil graph of :func:`gdl_pyg.domains.grid_to_data`:

    .. math::
        \mathbf{x}^{\prime}_i = \mathbf{b} + \sum_{j \in \mathcal{N}(i)}
        \mathbf{W}_{\mathbf{o}_{ji} + \mathbf{c}} \, \mathbf{x}_j,
        \qquad \mathbf{o}_{ji} = \mathrm{pos}_j - \mathrm{pos}_i,

    where :math:`\mathbf{W}_{\mathbf{t}} \in \mathbb{R}^{F_{out} \times F_{in}}`
    is the kernel tap ``weight[:, :, t_1, t_2]`` and
    :math:`\mathbf{c}_k = \lfloor (k_k - 1) / 2 \rfloor` centres the kernel as
    PyTorch's ``padding="same"`` does (also for even kernel sizes); edges
    whose offset falls outside the kernel send nothing. :obj:`weight` has
    exactly the layout of :obj:`torch.nn.Conv2d.weight`
    (:obj:`torch.nn.Conv3d.weight` in 3-D), and the layer equals
    ``Conv2d(in_channels, out_channels, kernel_size, padding="same",
    padding_mode=padding_mode)`` on a grid.

    Two paths compute the same result:

    * given :obj:`grid_shape`, the nodes are taken to be in the canonical
      layout of :func:`~gdl_pyg.domains.grid_to_data` (graph, then pixel in
      row-major order) and the layer calls :func:`torch.nn.functional.conv2d`
      / :func:`~torch.nn.functional.conv3d`: the fast path;
    * without it (:obj:`grid_shape=None`), the layer passes messages along
      :obj:`edge_index`, indexing the kernel by :obj:`edge_offset`: it works
      for any node order, and the graph decides the boundary. The features
      :math:`\mathbf{W}_{\mathbf{t}} \mathbf{x}_j` are computed once per node
      and kernel tap and gathered per edge, so no per-edge weight is built.

    The symmetry is the group of translations :math:`\mathbb{Z}^d`, exact on a
    periodic grid (``grid_to_data(..., periodic=True)`` with
    :obj:`padding_mode="circular"`), see :class:`gdl_pyg.groups.Translations`.

    Args:
        in_channels (int): Size of each input sample.
        out_channels (int): Size of each output sample.
        kernel_size (int or tuple): Size of the kernel; a tuple of 2 or 3
            ints sets the grid dimension, an int means a square (cubic, with
            :obj:`dim=3`) kernel. The general path needs a stencil of radius
            at least ``k // 2`` (``grid_to_data(..., radius=k // 2)``).
        bias (bool, optional): If set to :obj:`False`, the layer will not learn
            an additive bias. (default: :obj:`True`)
        padding_mode (str, optional): ``"zeros"`` or ``"circular"``, the
            boundary of the fast path; it must agree with the graph
            (``"circular"`` for a periodic grid) for both paths to agree.
            (default: :obj:`"zeros"`)
        dim (int, optional): The grid dimension, 2 or 3, when
            :obj:`kernel_size` is an int. (default: :obj:`None`, meaning 2 or
            the length of :obj:`kernel_size`)
        **kwargs (optional): Additional arguments of
            :class:`torch_geometric.nn.conv.MessagePassing` (``aggr`` must
            stay ``"add"`` and ``flow`` ``"source_to_target"``).

    Shapes:
        - **input:**
          node features :math:`(|\mathcal{V}|, F_{in})`,
          edge indices :math:`(2, |\mathcal{E}|)`,
          edge offsets :math:`(|\mathcal{E}|, d)` (long),
          grid shape :math:`(B, d)` or a tuple of :math:`d` ints *(optional)*
        - **output:** node features :math:`(|\mathcal{V}|, F_{out})`
    """
    #: The symmetry group the layer commutes with (see
    #: :class:`gdl_pyg.groups.Translations`).
    group_name: str = "Translations"

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Union[int, Sequence[int]],
        bias: bool = True,
        padding_mode: str = "zeros",
        dim: Optional[int] = None,
        **kwargs,
    ):
        for key, value in (("aggr", "add"), ("flow", "source_to_target")):
            if kwargs.setdefault(key, value) != value:
                raise ValueError(f"'GridConv' is a convolution: it needs {key}={value!r} "
                                 f"(got {kwargs[key]!r})")
        super().__init__(**kwargs)
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"'GridConv' expected a positive integer '{name}' "
                                 f"(got {value!r})")
        if dim is not None and dim not in (2, 3):
            raise ValueError(f"'GridConv' works on 2-D and 3-D grids (got dim={dim!r})")
        if isinstance(kernel_size, int) and not isinstance(kernel_size, bool):
            kernel_size = (kernel_size, ) * (dim or 2)
        if (not isinstance(kernel_size, (tuple, list))
                or not all(isinstance(k, int) and not isinstance(k, bool) for k in kernel_size)):
            raise TypeError(f"'GridConv' expected 'kernel_size' to be an int or a tuple of "
                            f"ints (got {kernel_size!r})")
        kernel_size = tuple(kernel_size)
        if len(kernel_size) not in (2, 3) or any(k < 1 for k in kernel_size):
            raise ValueError(f"'GridConv' expected a kernel of 2 or 3 positive sizes "
                             f"(got {kernel_size})")
        if dim is not None and dim != len(kernel_size):
            raise ValueError(f"'GridConv' got dim={dim} but a {len(kernel_size)}-D "
                             f"kernel_size {kernel_size}")
        if padding_mode not in _PADDING_MODES:
            raise ValueError(f"'GridConv' supports padding_mode 'zeros' or 'circular' "
                             f"(got {padding_mode!r}); the stencil graph cannot express "
                             f"reflected or replicated borders")

        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.dim = len(kernel_size)
        self.padding_mode = padding_mode
        self._padding = _same_padding(kernel_size)
        # row-major strides of the flattened kernel taps
        self._strides = tuple(math.prod(kernel_size[k + 1:]) for k in range(self.dim))

        self.weight = Parameter(torch.empty(out_channels, in_channels, *kernel_size))
        if bias:
            self.bias = Parameter(torch.empty(out_channels))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        r"""Resets all learnable parameters, as :class:`torch.nn.Conv2d` does."""
        super().reset_parameters()
        torch.nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.in_channels * math.prod(self.kernel_size)
            bound = 1 / math.sqrt(fan_in)
            torch.nn.init.uniform_(self.bias, -bound, bound)

    # ------------------------------------------------------------------ utils
    def kernel_index(self, edge_offset: Tensor) -> Tuple[Tensor, Tensor]:
        r"""The flat kernel tap ``[E]`` of each edge (clamped into the kernel)
        and whether the offset lies inside the kernel ``[E]`` (bool)."""
        tap = edge_offset.new_zeros(edge_offset.size(0))
        valid = torch.ones_like(tap, dtype=torch.bool)
        for k in range(self.dim):
            t = edge_offset[:, k] + self._padding[k][0]
            valid = valid & (t >= 0) & (t < self.kernel_size[k])
            tap = tap + t.clamp(0, self.kernel_size[k] - 1) * self._strides[k]
        return tap, valid

    def _check_x(self, x: Tensor) -> None:
        if not isinstance(x, Tensor):
            raise TypeError(f"'GridConv' expected 'x' to be a torch.Tensor "
                            f"(got {type(x).__name__})")
        if x.dim() != 2:
            raise ValueError(f"'GridConv' expected 'x' of shape [num_nodes, "
                             f"{self.in_channels}] (got {list(x.shape)})")
        if x.size(1) != self.in_channels:
            raise ValueError(f"'GridConv' expected x with {self.in_channels} channels "
                             f"(got {x.size(1)})")
        check_features(x, "GridConv", "x", dims=(2,))

    def _shape_of(self, grid_shape: Union[Tensor, Sequence[int]]) -> Tuple[int, ...]:
        if isinstance(grid_shape, Tensor):
            if grid_shape.dim() not in (1, 2) or grid_shape.size(-1) != self.dim:
                raise ValueError(f"'GridConv' expected 'grid_shape' of shape [B, {self.dim}] "
                                 f"(got {list(grid_shape.shape)})")
            gs = grid_shape.view(-1, self.dim)
            if gs.size(0) > 1 and not bool((gs == gs[:1]).all()):
                raise ValueError(f"'GridConv' expected grids of one size on the fast path "
                                 f"(got shapes {gs.tolist()}); pass 'grid_shape=None'")
            return tuple(int(s) for s in gs[0].tolist())
        if not isinstance(grid_shape, (tuple, list, torch.Size)):
            raise TypeError(f"'GridConv' expected 'grid_shape' to be a tensor [B, {self.dim}] "
                            f"or a tuple of {self.dim} ints (got {type(grid_shape).__name__})")
        shape = tuple(int(s) for s in grid_shape)
        if len(shape) != self.dim:
            raise ValueError(f"'GridConv' expected a grid_shape of {self.dim} sizes "
                             f"(got {list(shape)})")
        return shape

    # ---------------------------------------------------------------- forward
    def forward(
        self,
        x: Tensor,
        edge_index: Tensor,
        edge_offset: Tensor,
        grid_shape: Optional[Union[Tensor, Sequence[int]]] = None,
    ) -> Tensor:
        r"""Runs the layer.

        Args:
            x (torch.Tensor): Node features ``[N, in_channels]``.
            edge_index (torch.Tensor): Edges ``j -> i``, ``[2, E]`` (long).
            edge_offset (torch.Tensor): ``pos_j - pos_i`` per edge, ``[E, d]``
                (long).
            grid_shape (torch.Tensor or tuple, optional): The spatial shape
                (``data.grid_shape [B, d]`` or a tuple); if given, ``x`` must
                be in the canonical grid layout and the dense fast path is
                used, ignoring the edges; a tuple keeps :func:`torch.compile`
                free of graph breaks. (default: :obj:`None`)
        """
        self._check_x(x)
        if grid_shape is not None:
            return self.forward_dense(x, self._shape_of(grid_shape))

        check_edge_index(edge_index, x.size(0), "GridConv")
        if not isinstance(edge_index, Tensor) or edge_index.is_sparse \
                or edge_index.dtype != torch.long:
            kind = type(edge_index).__name__ if not isinstance(edge_index, Tensor) else \
                f"a {edge_index.layout} tensor of dtype {edge_index.dtype}"
            raise TypeError(f"'GridConv' expected 'edge_index' to be a dense torch.long "
                            f"tensor [2, num_edges] (got {kind}); grid kernels are indexed "
                            f"by 'edge_offset', which a sparse adjacency cannot carry")
        if edge_index.dim() != 2 or edge_index.size(0) != 2:
            raise ValueError(f"'GridConv' expected 'edge_index' of shape [2, num_edges] "
                             f"(got {list(edge_index.shape)})")
        if (not isinstance(edge_offset, Tensor) or edge_offset.dim() != 2
                or edge_offset.size(1) != self.dim or edge_offset.size(0) != edge_index.size(1)):
            got = list(edge_offset.shape) if isinstance(edge_offset, Tensor) else \
                type(edge_offset).__name__
            raise ValueError(f"'GridConv' expected 'edge_offset' of shape "
                             f"[{edge_index.size(1)}, {self.dim}] (got {got})")
        if edge_offset.is_floating_point():
            raise TypeError("'GridConv' expected an integer 'edge_offset' (pos_j - pos_i "
                            "in pixels, as made by 'grid_to_data')")

        N = x.size(0)
        K = math.prod(self.kernel_size)
        # h[n * K + t] = W_t x_n: one matmul for all nodes and kernel taps
        w = self.weight.flatten(2).permute(1, 2, 0).reshape(self.in_channels,
                                                            K * self.out_channels)
        h = (x @ w).view(N * K, self.out_channels)
        # edges outside the kernel read an extra zero row (no mask on messages)
        h = torch.cat([h, h.new_zeros(1, self.out_channels)], dim=0)
        tap, valid = self.kernel_index(edge_offset)
        src = torch.where(valid, edge_index[0] * K + tap, N * K)
        out = self.propagate(edge_index, h=h, src=src, size=(N, N))
        if self.bias is not None:
            out = out + self.bias
        return out

    def message(self, h: Tensor, src: Tensor) -> Tensor:
        return h.index_select(0, src)

    def forward_dense(self, x: Tensor, shape: Tuple[int, ...]) -> Tensor:
        r"""The fast path: ``x [B * prod(shape), C]`` in canonical layout,
        convolved with :func:`torch.nn.functional.conv2d` / ``conv3d``."""
        self._check_x(x)
        shape = tuple(int(s) for s in shape)
        n = math.prod(shape)
        if len(shape) != self.dim or n == 0 or x.size(0) % n != 0:
            raise ValueError(f"'GridConv' expected x with a multiple of prod(grid_shape) = {n} "
                             f"rows for grids of shape {list(shape)} (got {x.size(0)} rows)")
        B = x.size(0) // n
        # [B * n, C] -> [B, C, *shape] (channels-last strides, no copy)
        img = x.reshape(B, *shape, self.in_channels).movedim(-1, 1)
        conv = F.conv2d if self.dim == 2 else F.conv3d
        if self.padding_mode == "circular":
            for k, (before, after) in enumerate(self._padding):
                if before or after:
                    s = shape[k]
                    idx = torch.arange(-before, s + after, device=x.device) % s
                    img = img.index_select(k + 2, idx)
            out = conv(img, self.weight, self.bias)
        elif all(b == a for b, a in self._padding):
            out = conv(img, self.weight, self.bias, padding=tuple(b for b, _ in self._padding))
        else:  # even kernel: PyTorch's "same" pads one more pixel after
            pad = [p for b, a in reversed(self._padding) for p in (b, a)]
            out = conv(F.pad(img, pad), self.weight, self.bias)
        return out.movedim(1, -1).reshape(B * n, self.out_channels)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.in_channels}, {self.out_channels}, "
                f"kernel_size={self.kernel_size}, padding_mode={self.padding_mode}"
                f"{'' if self.bias is not None else ', bias=False'})")
