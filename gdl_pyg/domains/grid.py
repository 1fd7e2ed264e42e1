r"""Grids as graphs: images and volumes to :class:`~torch_geometric.data.Data` and back.

Layout of a grid ``Data`` (``d`` = 2 for images, 3 for volumes):

* ``x [N, C]``: the pixel values, nodes in row-major order per graph
  (``N = H * W``, or ``B * H * W`` when batched);
* ``pos [N, d]``: integer pixel coordinates ``(row, col)`` / ``(depth, row, col)``
  stored as floats;
* ``grid_shape [1, d]`` (``[B, d]`` after batching): the spatial size;
* ``edge_index [2, E]``: an edge ``j -> i`` for every pixel ``j`` in the
  :math:`(2r+1)^d` stencil around pixel ``i`` (self loops included), sorted by
  offset, then by target;
* ``edge_offset [E, d]`` (long): the stencil offset ``o`` of the edge,
  ``pos_j = pos_i + o`` (modulo the grid size on a periodic grid), the relative
  position that grid kernels are indexed by;
* ``batch [N]`` when several grids are stored in one ``Data``.
"""
import itertools
from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor
from torch_geometric.data import Data

__all__ = ["grid_to_data", "data_to_grid", "grid_graph", "grid_shape_of"]


def _check_image(image: Tensor, batched: bool) -> None:
    if not isinstance(image, Tensor):
        raise TypeError(f"'grid_to_data' expected a torch.Tensor (got {type(image).__name__})")
    lead = 2 if batched else 1
    if image.dim() - lead not in (2, 3):
        expected = "[B, C, H, W] or [B, C, D, H, W]" if batched else "[C, H, W] or [C, D, H, W]"
        raise ValueError(f"'grid_to_data' expected an image of shape {expected} "
                         f"(got shape {list(image.shape)})")
    if image.numel() == 0:
        raise ValueError(f"'grid_to_data' received an empty grid (shape {list(image.shape)})")
    if image.is_floating_point() and not bool(torch.isfinite(image).all()):
        raise ValueError("'grid_to_data' received an image with NaN or infinite values")


def grid_graph(shape: Sequence[int], radius: int = 1, periodic: bool = False,
               device: Optional[torch.device] = None) -> Tuple[Tensor, Tensor]:
    r"""The stencil graph of a grid of spatial ``shape``.

    Returns ``edge_index [2, E]`` (edges ``j -> i`` from each pixel ``j`` within
    Chebyshev distance ``radius`` of ``i``, self loops included) and
    ``edge_offset [E, d]`` (``pos_j - pos_i``), ordered by offset then target.
    On a ``periodic`` grid (a torus) every pixel has the full stencil.
    """
    shape = tuple(int(s) for s in shape)
    if radius < 0:
        raise ValueError(f"Expected a non-negative stencil radius (got {radius})")
    if any(s <= 0 for s in shape):
        raise ValueError(f"Expected a non-empty grid shape (got {list(shape)})")
    d = len(shape)
    coords = torch.stack(torch.meshgrid(*[torch.arange(s, device=device) for s in shape],
                                        indexing="ij"), dim=-1).reshape(-1, d)
    strides = torch.tensor([int(torch.tensor(shape[k + 1:]).prod()) for k in range(d)],
                           device=device)
    size = torch.tensor(shape, device=device)
    rows, cols, offs = [], [], []
    for off in itertools.product(range(-radius, radius + 1), repeat=d):
        o = torch.tensor(off, device=device)
        src = coords + o
        if periodic:
            src = src % size
            keep = torch.ones(coords.size(0), dtype=torch.bool, device=device)
        else:
            keep = ((src >= 0) & (src < size)).all(dim=-1)
        tgt = torch.nonzero(keep).view(-1)
        rows.append((src[keep] * strides).sum(-1))
        cols.append(tgt)
        offs.append(o.expand(tgt.numel(), d))
    edge_index = torch.stack([torch.cat(rows), torch.cat(cols)], dim=0)
    return edge_index, torch.cat(offs, dim=0)


def grid_to_data(image: Tensor, batched: bool = False, radius: int = 1,
                 periodic: bool = False) -> Data:
    r"""Converts an image ``[C, H, W]`` or a volume ``[C, D, H, W]`` into a
    ``Data`` whose nodes are pixels (see the module docstring for the layout).

    Args:
        image (torch.Tensor): ``[C, H, W]`` / ``[C, D, H, W]``, or with a
            leading batch dimension when :obj:`batched` is :obj:`True`.
        batched (bool, optional): treat the first dimension as a batch; the
            result holds all grids with a ``batch`` vector. (default: :obj:`False`)
        radius (int, optional): the stencil radius of the edges; a kernel of
            size ``k`` needs ``radius >= k // 2``. (default: :obj:`1`)
        periodic (bool, optional): wrap edges around the borders (a torus,
            the domain on which cyclic translations are exact symmetries).
            (default: :obj:`False`)
    """
    _check_image(image, batched)
    if not batched:
        image = image.unsqueeze(0)
    B, C = image.shape[:2]
    shape = tuple(image.shape[2:])
    d = len(shape)
    n = int(torch.tensor(shape).prod())
    device = image.device
    x = image.reshape(B, C, n).transpose(1, 2).reshape(B * n, C)
    pos_dtype = image.dtype if image.is_floating_point() else torch.get_default_dtype()
    coords = torch.stack(torch.meshgrid(*[torch.arange(s, device=device) for s in shape],
                                        indexing="ij"), dim=-1).reshape(n, d)
    edge_index, edge_offset = grid_graph(shape, radius, periodic, device=device)
    E = edge_index.size(1)
    shift = (torch.arange(B, device=device) * n).repeat_interleave(E)
    data = Data(
        x=x,
        pos=coords.to(pos_dtype).repeat(B, 1),
        edge_index=edge_index.repeat(1, B) + shift.view(1, -1),
        edge_offset=edge_offset.repeat(B, 1),
        grid_shape=torch.tensor([shape], device=device),
    )
    if batched:
        data.batch = torch.arange(B, device=device).repeat_interleave(n)
        data.grid_shape = data.grid_shape.repeat(B, 1)
    return data


def grid_shape_of(data: Data) -> Tuple[int, ...]:
    r"""The common spatial shape ``(H, W)`` / ``(D, H, W)`` of the grids in
    ``data``; raises :class:`ValueError` if the grids differ in size."""
    if "grid_shape" not in data:
        raise ValueError("Expected a grid 'Data' with a 'grid_shape' attribute "
                         "(made by 'grid_to_data')")
    gs = data.grid_shape.view(-1, data.grid_shape.size(-1))
    if not bool((gs == gs[0]).all()):
        raise ValueError(f"Expected grids of one size (got shapes {gs.tolist()})")
    return tuple(int(s) for s in gs[0])


def data_to_grid(data: Data, key: str = "x") -> Tensor:
    r"""The exact inverse of :func:`grid_to_data`: places ``data[key]`` back
    on the grid by ``pos``, so it also inverts any relabelling of the nodes.

    Returns ``[C, H, W]`` (``[C, D, H, W]``), or ``[B, C, H, W]`` when ``data``
    has a ``batch`` vector (a batch of one included).
    """
    if key not in data or not isinstance(data[key], Tensor):
        raise ValueError(f"'data_to_grid' expected a tensor attribute '{key}'")
    shape = grid_shape_of(data)
    x = data[key]
    if x.dim() == 1:
        x = x.unsqueeze(-1)
    if x.dim() != 2:
        raise ValueError(f"'data_to_grid' expected '{key}' of shape [num_nodes, C] "
                         f"(got {list(x.shape)})")
    pos = data.pos.round().long()
    if pos.size(-1) != len(shape):
        raise ValueError(f"Expected 'pos' with {len(shape)} coordinates (got {pos.size(-1)})")
    batched = "batch" in data and data.batch is not None
    batch = data.batch if batched else torch.zeros(x.size(0), dtype=torch.long, device=x.device)
    B = int(batch.max()) + 1 if batch.numel() > 0 else 1
    n = int(torch.tensor(shape).prod())
    if x.size(0) != B * n:
        raise ValueError(f"Expected {B} full grid(s) of shape {list(shape)} ({B * n} nodes), "
                         f"got {x.size(0)} nodes")
    strides = torch.tensor([int(torch.tensor(shape[k + 1:]).prod()) for k in range(len(shape))],
                           device=x.device)
    lin = batch * n + (pos * strides).sum(-1)
    out = x.new_zeros(B * n, x.size(1))
    out[lin] = x
    out = out.view(B, n, -1).transpose(1, 2).reshape(B, -1, *shape)
    return out if batched else out[0]
