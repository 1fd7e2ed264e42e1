r"""Coarsening of pixel / voxel grids (and of lifted grids), the scale
separation step of the Geometric Deep Learning blueprint on grids."""
import functools
import math
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.utils import scatter

from gdl_pyg.domains.grid import grid_graph, grid_shape_of
from gdl_pyg.groups.base import attr_level, num_graphs_of
from gdl_pyg.nn._checks import check_index
from gdl_pyg.utils import check_edge_index

__all__ = ["GridPool"]

_REDUCE = {"max": "max", "mean": "mean", "avg": "mean"}


def _strides(shape: Sequence[int]) -> List[int]:
    return [math.prod(shape[k + 1:]) for k in range(len(shape))]


@functools.lru_cache(maxsize=8)
def _canonical_layout(shape: Tuple[int, ...], B: int, G: int,
                      device: torch.device) -> Tuple[Tensor, Tensor, Tensor]:
    r"""``pos`` (long), ``batch`` and ``group_elem`` of ``B`` grids of
    ``shape`` lifted to ``G`` group elements, in the canonical node order
    (graph, pixel in row-major order, group element). Cached: do not modify."""
    n = math.prod(shape)
    coords = torch.stack(torch.meshgrid(*[torch.arange(s, device=device) for s in shape],
                                        indexing="ij"), dim=-1).reshape(n, len(shape))
    pos = coords.repeat_interleave(G, dim=0).repeat(B, 1)
    batch = torch.arange(B, device=device).repeat_interleave(n * G)
    group_elem = torch.arange(G, device=device).repeat(B * n)
    return pos, batch, group_elem


@functools.lru_cache(maxsize=8)
def _stencil(shape: Tuple[int, ...], radius: int, periodic: bool, B: int, G: int,
             pairs: Optional[Tuple[int, ...]], device: torch.device) -> Tuple[Tensor, Tensor]:
    r"""``edge_index`` and ``edge_offset`` of ``B`` (lifted) grids: the
    :func:`~gdl_pyg.domains.grid_graph` stencil of every graph; on a lifted
    grid, for every ``pair = h * G + h'`` in increasing order, the edges
    :math:`(j, h') \to (i, h)` of all pixel edges :math:`j \to i` (the layout
    of :func:`gdl_pyg.domains.lifted_grid.lift_grid`). Cached: do not modify."""
    ei, off = grid_graph(shape, radius, periodic, device=device)
    shift = (torch.arange(B, device=device) * math.prod(shape)).repeat_interleave(ei.size(1))
    ei, off = ei.repeat(1, B) + shift.view(1, -1), off.repeat(B, 1)
    if G > 1:
        pairs_t = torch.tensor(pairs, dtype=torch.long, device=device).view(-1, 1)
        h, h_src = pairs_t // G, pairs_t % G
        ei = torch.stack([(ei[0].view(1, -1) * G + h_src).reshape(-1),
                          (ei[1].view(1, -1) * G + h).reshape(-1)])
        off = off.repeat(pairs_t.size(0), 1)
    return ei, off


class GridPool(torch.nn.Module):
    r"""Max or average pooling of a grid ``Data`` over non-overlapping
    windows, the coarsening operator :math:`P` of the "Grids" chapter of the
    `"Geometric Deep Learning: Grids, Groups, Graphs, Geodesics, and Gauges"
    <https://arxiv.org/abs/2104.13478>`_ book:

    .. math::
        \mathbf{x}^{\prime}_{\mathbf{u}} = \bigoplus_{\mathbf{v} \in
        \Omega, \ \lfloor \mathbf{v} / k \rfloor = \mathbf{u}} \mathbf{x}_{\mathbf{v}},

    with :math:`\bigoplus` the maximum or the mean. It equals
    ``F.max_pool2d`` / ``F.avg_pool2d(x, kernel_size, stride=kernel_size,
    ceil_mode=ceil_mode)`` (``*_pool3d`` on volumes); in :obj:`ceil_mode`
    the partial windows at the far border are kept and averaged over the
    pixels they hold (which is what ``avg_pool2d`` does without padding).

    :meth:`forward` returns the coarse grid as a new ``Data`` in the layout of
    :func:`~gdl_pyg.domains.grid_to_data`: pooled ``x``, ``pos``,
    ``grid_shape``, ``batch`` (when the input has one) and the stencil graph
    ``edge_index`` / ``edge_offset`` of the coarse grid, built by
    :func:`~gdl_pyg.domains.grid_graph` with the input's stencil radius and
    periodicity. Graph-level attributes (e.g. ``y``) are carried over; other
    node- and edge-level attributes are dropped.

    A *lifted* grid (a ``Data`` with ``group_elem``, node ``i * |G| + h`` for
    pixel ``i`` and group element ``h``) is pooled per graph and group
    element; the result keeps the lifted layout and ``group_elem``, and its
    edges connect the same pairs of group elements the input's edges do, in
    the edge order of :func:`gdl_pyg.domains.lifted_grid.lift_grid`.

    The pooling runs on :func:`torch.nn.functional.max_pool2d` & co. when the
    nodes are in the canonical order of :func:`~gdl_pyg.domains.grid_to_data`
    (checked from ``pos``, ``batch`` and ``group_elem``), and by clustering
    the nodes and :func:`torch_geometric.utils.scatter` otherwise, so any node
    order gives the same (canonically ordered) result. The coarse structure
    (``pos``, ``batch``, ``group_elem``, ``edge_index``, ``edge_offset``) is
    cached per grid shape, batch size and device and shared between calls:
    do not modify it in place. Giving both :obj:`radius` and
    :obj:`periodic` also skips reading them off the input's edges.

    Max pooling commutes with the rotations and reflections of the grid
    (:class:`~gdl_pyg.groups.CyclicGroup` / :class:`~gdl_pyg.groups.DihedralGroup`)
    when every grid size is a multiple of the window, and with translations
    by multiples of the window.

    Args:
        kernel_size (int or tuple, optional): The window (and stride); an int
            applies to every grid dimension. (default: :obj:`2`)
        reduce (str, optional): ``"max"`` or ``"mean"`` (alias ``"avg"``).
            (default: :obj:`"max"`)
        ceil_mode (bool, optional): Keep the partial windows at the border
            (as in ``F.max_pool2d``); otherwise the pixels past the last full
            window are dropped. (default: :obj:`False`)
        periodic (bool, optional): Build a periodic coarse graph; :obj:`None`
            detects it from the input's stencil graph, periodic when every
            node has the full stencil (which the borders of a bounded grid
            lack). (default: :obj:`None`)
        radius (int, optional): Stencil radius of the coarse graph;
            :obj:`None` takes the largest ``|edge_offset|`` of the input (the
            coarse grid gets no edges if the input has none).
            (default: :obj:`None`)

    Shapes:
        - **input:** a grid ``Data`` with node features
          :math:`(|\mathcal{V}|, F)`, ``pos`` :math:`(|\mathcal{V}|, d)`,
          ``grid_shape`` :math:`(B, d)`
        - **output:** a grid ``Data`` with node features
          :math:`(|\mathcal{V}^{\prime}|, F)`, :math:`|\mathcal{V}^{\prime}|
          = B \cdot |G| \cdot \prod_k \lfloor s_k / k_k \rfloor` (or
          :math:`\lceil \cdot \rceil`)
    """

    def __init__(
        self,
        kernel_size: Union[int, Sequence[int]] = 2,
        reduce: str = "max",
        ceil_mode: bool = False,
        periodic: Optional[bool] = None,
        radius: Optional[int] = None,
    ):
        super().__init__()
        if isinstance(kernel_size, int) and not isinstance(kernel_size, bool):
            if kernel_size < 1:
                raise ValueError(f"'GridPool' expected a positive kernel_size "
                                 f"(got {kernel_size})")
        elif (isinstance(kernel_size, (tuple, list)) and len(kernel_size) in (2, 3)
              and all(isinstance(k, int) and not isinstance(k, bool) and k >= 1
                      for k in kernel_size)):
            kernel_size = tuple(kernel_size)
        else:
            raise ValueError(f"'GridPool' expected 'kernel_size' to be a positive int or a "
                             f"tuple of 2 or 3 positive ints (got {kernel_size!r})")
        if reduce not in _REDUCE:
            raise ValueError(f"'GridPool' expected reduce 'max' or 'mean' (got {reduce!r})")
        if radius is not None and (not isinstance(radius, int) or radius < 0):
            raise ValueError(f"'GridPool' expected a non-negative integer radius "
                             f"(got {radius!r})")
        self.kernel_size = kernel_size
        self.reduce = reduce
        self.ceil_mode = bool(ceil_mode)
        self.periodic = periodic
        self.radius = radius

    def reset_parameters(self):
        r"""Nothing to reset: the pooling has no parameters."""

    # ------------------------------------------------------------------ utils
    def _kernel(self, d: int) -> Tuple[int, ...]:
        if isinstance(self.kernel_size, int):
            return (self.kernel_size, ) * d
        if len(self.kernel_size) != d:
            raise ValueError(f"'GridPool' has a {len(self.kernel_size)}-D kernel "
                             f"{self.kernel_size} but got a {d}-D grid")
        return self.kernel_size

    def output_shape(self, shape: Sequence[int]) -> Tuple[int, ...]:
        r"""The coarse grid shape of a grid of spatial ``shape``."""
        kernel = self._kernel(len(shape))
        if self.ceil_mode:
            return tuple(-(-s // k) for s, k in zip(shape, kernel))
        out = tuple(s // k for s, k in zip(shape, kernel))
        if any(o == 0 for o in out):
            raise ValueError(f"'GridPool' cannot pool a grid of shape {list(shape)} with "
                             f"windows {list(kernel)} in floor mode (the output would be "
                             f"empty); use 'ceil_mode=True' or a smaller kernel")
        return out

    @staticmethod
    def _layout(data: Data) -> Tuple[Tuple[int, ...], int, int]:
        r"""``(shape, B, |G|)`` of a (lifted) grid ``Data``, with checks."""
        if not isinstance(data, Data):
            raise TypeError(f"'GridPool' expected a grid 'Data' (got {type(data).__name__})")
        shape = grid_shape_of(data)
        if len(shape) not in (2, 3):
            raise ValueError(f"'GridPool' works on 2-D and 3-D grids (got shape {list(shape)})")
        for key in ("x", "pos"):
            if not isinstance(data.get(key), Tensor):
                raise ValueError(f"'GridPool' expected a grid 'Data' with a tensor '{key}'")
        x = data.x
        if x.dim() != 2:
            raise ValueError(f"'GridPool' expected 'x' of shape [num_nodes, C] "
                             f"(got {list(x.shape)})")
        check_index(data.get("batch"), x.size(0), "GridPool", "batch")
        lifted = "group_elem" in data and data.group_elem is not None
        if lifted:
            check_index(data.group_elem, x.size(0), "GridPool", "group_elem")
        G = int(data.group_elem.max()) + 1 if lifted and data.group_elem.numel() else 1
        B = num_graphs_of(data)
        n = math.prod(shape)
        if x.size(0) != B * G * n or data.pos.size(0) != x.size(0):
            raise ValueError(f"'GridPool' expected {B} full grid(s) of shape {list(shape)} "
                             f"with {G} group element(s) per pixel ({B * G * n} nodes); got "
                             f"{x.size(0)} rows in 'x' and {data.pos.size(0)} in 'pos'")
        if data.pos.size(-1) != len(shape):
            raise ValueError(f"'GridPool' expected 'pos' with {len(shape)} coordinates "
                             f"(got {data.pos.size(-1)})")
        return shape, B, G

    @staticmethod
    def is_canonical(data: Data, shape: Sequence[int], B: int, G: int) -> bool:
        r"""Whether the nodes of ``data`` are in the layout of
        :func:`~gdl_pyg.domains.grid_to_data`: graph, pixel (row-major),
        group element."""
        pos, batch, group_elem = _canonical_layout(tuple(shape), B, G, data.pos.device)
        if not torch.equal(data.pos, pos.to(data.pos.dtype)):
            return False
        if "batch" in data and data.batch is not None and not torch.equal(data.batch, batch):
            return False
        if "group_elem" in data and data.group_elem is not None and \
                not torch.equal(data.group_elem, group_elem):
            return False
        return True

    # ---------------------------------------------------------------- pooling
    def pool_dense(self, x: Tensor, shape: Sequence[int], B: int, G: int = 1) -> Tensor:
        r"""Pools ``x [B * prod(shape) * G, C]`` in canonical layout with
        ``F.max_pool2d`` & co.; returns ``[B * prod(out_shape) * G, C]``."""
        d, C = len(shape), x.size(-1)
        kernel = self._kernel(d)
        # [B, *shape, G, C] -> [B * G, C, *shape]
        img = x.reshape(B, *shape, G, C).movedim(-2, 1).movedim(-1, 2).reshape(B * G, C, *shape)
        if _REDUCE[self.reduce] == "max":
            fn = F.max_pool2d if d == 2 else F.max_pool3d
        else:
            fn = F.avg_pool2d if d == 2 else F.avg_pool3d
        out = fn(img, kernel, stride=kernel, ceil_mode=self.ceil_mode)
        out_shape = tuple(out.shape[2:])
        out = out.view(B, G, C, *out_shape).movedim(2, -1).movedim(1, -2)
        return out.reshape(B * math.prod(out_shape) * G, C)

    def cluster(self, data: Data) -> Tuple[Tensor, int]:
        r"""The coarse node of every node of ``data`` (in the canonical order
        of the output) and the number of coarse nodes; nodes past the last
        window (floor mode) go to the extra cluster ``num_clusters``."""
        shape, B, G = self._layout(data)
        out_shape = self.output_shape(shape)
        kernel = self._kernel(len(shape))
        device = data.pos.device
        cell = data.pos.round().long() // torch.tensor(kernel, device=device)
        limit = torch.tensor(out_shape, device=device)
        keep = ((cell >= 0) & (cell < limit)).all(dim=-1)
        lin = (cell.clamp(min=0) * torch.tensor(_strides(out_shape), device=device)).sum(-1)
        nc = math.prod(out_shape)
        cid = lin
        if "batch" in data and data.batch is not None:
            cid = cid + data.batch * nc
        cid = cid * G
        if G > 1:
            cid = cid + data.group_elem
        num = B * nc * G
        return torch.where(keep, cid, torch.full_like(cid, num)), num

    def pool_scatter(self, data: Data) -> Tensor:
        r"""Pools ``data.x`` by :meth:`cluster` and
        :func:`torch_geometric.utils.scatter` (any node order)."""
        cid, num = self.cluster(data)
        out = scatter(data.x, cid, dim=0, dim_size=num + 1, reduce=_REDUCE[self.reduce])
        return out[:num]

    # -------------------------------------------------------------- structure
    def _structure(self, data: Data) -> Tuple[Optional[int], bool, Optional[Tuple[int, ...]]]:
        r"""``(radius, periodic, group pairs)`` of the coarse stencil graph:
        the constructor's values, else those of the input's edges (radius
        :obj:`None` when the input has no edges)."""
        lifted = "group_elem" in data and data.group_elem is not None
        if self.radius is not None and self.periodic is not None and not lifted:
            return self.radius, bool(self.periodic), None  # nothing to detect
        radius, periodic, pairs = None, False, None
        ei, off = data.get("edge_index"), data.get("edge_offset")
        if isinstance(ei, Tensor) and isinstance(off, Tensor):
            check_edge_index(ei, data.num_nodes, "GridPool")
            if off.dim() != 2 or off.size(0) != ei.size(1):
                raise ValueError(f"'GridPool' expected 'edge_offset' of shape [{ei.size(1)}, "
                                 f"d], one row per column of 'edge_index' (got "
                                 f"{list(off.shape)})")
            radius = int(off.abs().max()) if off.numel() else 0
            per_node = 1
            if lifted and ei.numel():
                h, G = data.group_elem, int(data.group_elem.max()) + 1
                pairs = tuple(torch.unique(h[ei[1]] * G + h[ei[0]]).tolist())
                per_node = len(pairs) / G
            # only a periodic stencil graph gives every node the full stencil
            full = data.num_nodes * (2 * radius + 1) ** off.size(-1) * per_node
            periodic = radius > 0 and ei.size(1) == full
        if self.radius is not None:
            radius = self.radius
        if self.periodic is not None:
            periodic = bool(self.periodic)
        return radius, periodic, pairs

    def coarse_data(self, x: Tensor, out_shape: Tuple[int, ...], B: int, G: int,
                    data: Data) -> Data:
        r"""The coarse grid ``Data`` holding the pooled ``x``."""
        device = x.device
        radius, periodic, pairs = self._structure(data)
        d = len(out_shape)
        pos, batch, group_elem = _canonical_layout(out_shape, B, G, device)
        out = Data(x=x, pos=pos.to(data.pos.dtype),
                   grid_shape=torch.tensor([out_shape], device=data.grid_shape.device)
                   .repeat(data.grid_shape.view(-1, d).size(0), 1))
        if radius is not None:
            if G > 1 and not pairs:  # no edges in the input: same-element stencils
                pairs = tuple(h * (G + 1) for h in range(G))
            out.edge_index, out.edge_offset = _stencil(out_shape, radius, periodic, B, G,
                                                       pairs if G > 1 else None, device)
        if "batch" in data and data.batch is not None:
            out.batch = batch
        if "group_elem" in data and data.group_elem is not None:
            out.group_elem = group_elem
        for key in data.keys():
            if key not in out and key not in ("ptr", "num_nodes") \
                    and attr_level(data, key) == "graph":
                out[key] = data[key]
        return out

    # ---------------------------------------------------------------- forward
    def forward(self, data: Data, dense: Optional[bool] = None) -> Data:
        r"""Pools a (lifted) grid ``Data``.

        Args:
            data (torch_geometric.data.Data): A grid made by
                :func:`~gdl_pyg.domains.grid_to_data` (or lifted), in any node
                order.
            dense (bool, optional): :obj:`True` forces the ``F.max_pool2d``
                path (raising if the layout is not canonical), :obj:`False`
                the scatter path; :obj:`None` picks the dense path when the
                layout allows it. (default: :obj:`None`)
        """
        shape, B, G = self._layout(data)
        out_shape = self.output_shape(shape)
        if dense is None or dense:
            canonical = self.is_canonical(data, shape, B, G)
            if dense and not canonical:
                raise ValueError("'GridPool' was asked for the dense path, but the nodes are "
                                 "not in the canonical grid layout of 'grid_to_data'")
            dense = canonical
        x = self.pool_dense(data.x, shape, B, G) if dense else self.pool_scatter(data)
        return self.coarse_data(x, out_shape, B, G, data)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(kernel_size={self.kernel_size}, "
                f"reduce={self.reduce}, ceil_mode={self.ceil_mode})")
