r"""Regular-grid (voxel) clustering in pure torch, with the semantics of
:func:`torch_cluster.grid_cluster` and
:func:`torch_geometric.nn.voxel_grid`."""
from typing import List, Optional, Union

import torch
from torch import Tensor

from gdl_pyg import typing as gdl_typing
from gdl_pyg.ops._utils import (check_batch, check_points, resolve_backend,
                                upcast)
from gdl_pyg.utils import _eager

__all__ = ["grid_cluster", "voxel_grid"]

Vector = Union[float, List[float], Tensor]


def _as_vector(value: Vector, dim: int, name: str, fn: str,
               like: Tensor) -> Tensor:
    r"""A scalar or a length-:obj:`dim` sequence as a ``[dim]`` tensor with
    the dtype and device of :obj:`like` (scalars are repeated)."""
    if isinstance(value, bool) or not isinstance(
            value, (int, float, list, tuple, Tensor)):
        raise TypeError(f"'{fn}' expected '{name}' to be a float, a list of "
                        f"floats or a tensor (got {type(value).__name__})")
    if isinstance(value, Tensor) and (value.is_complex()
                                      or value.dtype == torch.bool):
        raise TypeError(f"'{fn}' expected a real '{name}' tensor (got dtype "
                        f"{value.dtype})")
    try:
        out = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    except (TypeError, ValueError, RuntimeError) as e:
        raise TypeError(f"'{fn}' expected '{name}' to be a float, a list of "
                        f"floats or a tensor (got {value!r})") from e
    out = out.reshape(-1)
    if out.numel() == 1:
        out = out.repeat(dim)
    if out.numel() != dim:
        raise ValueError(f"'{fn}' expected '{name}' with 1 or {dim} entries "
                         f"(got {out.numel()})")
    if not bool(torch.isfinite(out).all()):
        raise ValueError(f"'{fn}' expected finite '{name}' (got "
                         f"{out.tolist()})")
    return out


@_eager
def grid_cluster(
    pos: Tensor,
    size: Vector,
    start: Optional[Vector] = None,
    end: Optional[Vector] = None,
    *,
    backend: str = "auto",
) -> Tensor:
    r"""Clusters points into the cells of a regular grid with cell size
    :obj:`size`, as :func:`torch_cluster.grid_cluster`:

    .. math::
        c_i = \sum_{d=1}^{D} \left\lfloor \frac{p_{i,d} - s_d}{h_d}
        \right\rfloor \prod_{e < d} \left( \left\lfloor
        \frac{t_e - s_e}{h_e} \right\rfloor + 1 \right),

    with :math:`s` = :obj:`start`, :math:`t` = :obj:`end`, :math:`h` =
    :obj:`size` (the first dimension varies fastest). Like
    :obj:`torch_cluster`, the quotients are truncated towards zero, so ids are
    only meaningful for points inside :math:`[s, t]`. Integer positions are
    accepted, as by :obj:`torch_cluster`, and computed in float64 (exact up
    to :math:`2^{53}`; :obj:`torch_cluster` divides integers in float32), so
    :obj:`size`, :obj:`start` and :obj:`end` may be fractional; half and
    bfloat16 positions are computed in float32 (by the :obj:`torch_cluster`
    backend too). A grid with :math:`2^{62}` cells or more, or
    :math:`t < s`, raises :class:`ValueError`.

    Args:
        pos (torch.Tensor): Node positions :math:`\mathbf{P} \in
            \mathbb{R}^{N \times D}`, floating point or integer.
        size (float or [float] or torch.Tensor): Cell size in each dimension.
        start (float or [float] or torch.Tensor, optional): Start of the grid
            in each dimension; the minimum of :obj:`pos` if :obj:`None`.
            (default: :obj:`None`)
        end (float or [float] or torch.Tensor, optional): End of the grid in
            each dimension; the maximum of :obj:`pos` if :obj:`None`.
            (default: :obj:`None`)
        backend (str, optional): :obj:`"auto"`, :obj:`"torch"` or
            :obj:`"cluster"`. (default: :obj:`"auto"`)

    Shapes:
        - **input:** :math:`(N, D)`
        - **output:** :math:`(N)`, cluster ids (not consecutive)
    """
    fn = "grid_cluster"
    pos = check_points(pos, "pos", fn, allow_integer=True)
    pos = upcast(pos)  # integers in float64, half / bfloat16 in float32
    dim = pos.size(1)
    size = _as_vector(size, dim, "size", fn, pos)
    if bool((size <= 0).any()):
        raise ValueError(f"'{fn}' expected 'size' > 0 (got {size.tolist()})")
    if start is not None:
        start = _as_vector(start, dim, "start", fn, pos)
    if end is not None:
        end = _as_vector(end, dim, "end", fn, pos)
    impl = resolve_backend(backend, fn)
    if pos.size(0) == 0:
        return torch.empty(0, dtype=torch.long, device=pos.device)
    lo = pos.min(dim=0).values if start is None else start
    hi = pos.max(dim=0).values if end is None else end
    if bool((hi < lo).any()):
        raise ValueError(f"'{fn}' expected 'end' >= 'start' in every "
                         f"dimension (got start={lo.tolist()}, "
                         f"end={hi.tolist()})")
    cells = ((hi.double() - lo.double()) / size.double()).floor() + 1
    if float(cells.prod()) >= 2.0**62:
        raise ValueError(f"'{fn}' got a grid of {float(cells.prod()):.3g} "
                         f"cells ({cells.tolist()} per dimension), more than "
                         f"a 64-bit cluster id can number; use a larger "
                         f"'size' or a smaller 'start'/'end' range")
    if impl == "cluster":
        return gdl_typing.torch_cluster.grid_cluster(pos, size, start, end)
    num_voxels = ((hi - lo) / size).long() + 1
    stride = torch.cat([num_voxels.new_ones(1), num_voxels.cumprod(0)[:-1]])
    cell = ((pos - lo.view(1, -1)) / size.view(1, -1)).long()
    return (cell * stride.view(1, -1)).sum(dim=1)


@_eager
def voxel_grid(
    pos: Tensor,
    size: Vector,
    batch: Optional[Tensor] = None,
    start: Optional[Vector] = None,
    end: Optional[Vector] = None,
    *,
    backend: str = "auto",
) -> Tensor:
    r"""Voxel grid pooling from, *e.g.*, the `"Dynamic Edge-Conditioned
    Filters in Convolutional Networks on Graphs"
    <https://arxiv.org/abs/1704.02901>`_ paper, which overlays a regular grid
    of user-defined size over a point cloud and clusters all points within
    the same voxel, as :func:`torch_geometric.nn.voxel_grid`: the batch index
    is appended as an extra coordinate with cell size :math:`1`, so voxels
    never mix examples, and :func:`grid_cluster` numbers the cells (integer
    and half positions as there),

    .. math::
        c_i = \operatorname{grid}\bigl([\mathbf{p}_i, b_i];\
        [\mathbf{h}, 1]\bigr).

    Args:
        pos (torch.Tensor): Node positions :math:`\mathbf{P} \in
            \mathbb{R}^{(N_1 + \ldots + N_B) \times D}`.
        size (float or [float] or torch.Tensor): Voxel size in each dimension.
        batch (torch.Tensor, optional): Sorted batch vector
            :math:`\mathbf{b} \in {\{ 0, \ldots, B-1\}}^N`.
            (default: :obj:`None`)
        start (float or [float] or torch.Tensor, optional): Start of the grid;
            the minimum of :obj:`pos` if :obj:`None`. (default: :obj:`None`)
        end (float or [float] or torch.Tensor, optional): End of the grid;
            the maximum of :obj:`pos` if :obj:`None`. (default: :obj:`None`)
        backend (str, optional): :obj:`"auto"`, :obj:`"torch"` or
            :obj:`"cluster"`. (default: :obj:`"auto"`)

    Shapes:
        - **input:** :math:`(N, D)`, :math:`(N)`
        - **output:** :math:`(N)`, cluster ids (not consecutive)
    """
    fn = "voxel_grid"
    pos = check_points(pos, "pos", fn, allow_integer=True)
    pos = upcast(pos)  # integers in float64, half / bfloat16 in float32
    dim = pos.size(1)
    batch = check_batch(batch, pos.size(0), "batch", fn, pos.device)
    if batch is None:
        batch = torch.zeros(pos.size(0), dtype=torch.long, device=pos.device)
    if pos.size(0) == 0:
        return torch.empty(0, dtype=torch.long, device=pos.device)
    pos = torch.cat([pos, batch.view(-1, 1).to(pos.dtype)], dim=-1)
    size = _as_vector(size, dim, "size", fn, pos)
    size = torch.cat([size, size.new_ones(1)])
    if start is not None:
        start = _as_vector(start, dim, "start", fn, pos)
        start = torch.cat([start, start.new_zeros(1)])
    if end is not None:
        end = _as_vector(end, dim, "end", fn, pos)
        end = torch.cat([end, batch.max().view(1).to(end.dtype)])
    return grid_cluster(pos, size, start, end, backend=backend)
