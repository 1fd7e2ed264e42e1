r"""Radius (ball) neighbour search and graphs in pure torch, with the
semantics of :obj:`torch_cluster` / :obj:`torch_geometric.nn.radius`."""
from typing import Optional

import torch
from torch import Tensor

from gdl_pyg import typing as gdl_typing
from gdl_pyg.ops._kdtree import kdtree_search
from gdl_pyg.ops._utils import (DEFAULT_BLOCK_SIZE, batch_to_ptr, check_batch,
                                check_points, check_positive_int,
                                drop_self_and_cap, infer_batch_size,
                                pairwise_distance, plan_blocks,
                                resolve_neighbor_backend, smallest_k, upcast)
from gdl_pyg.utils import _eager
from gdl_pyg.ops.knn import _check_flow, _check_pair, _empty_edges

__all__ = ["radius", "radius_graph"]


def _check_radius(r, fn: str) -> float:
    if isinstance(r, Tensor):
        if r.numel() != 1:
            raise ValueError(f"'{fn}' expected a scalar 'r' (got a tensor of "
                             f"shape {list(r.shape)})")
        r = r.item()
    if isinstance(r, bool) or not isinstance(r, (int, float)):
        raise TypeError(f"'{fn}' expected 'r' to be a float "
                        f"(got {type(r).__name__})")
    if not r > 0 or r == float("inf"):
        raise ValueError(f"'{fn}' expected a finite radius 'r' > 0 (got {r})")
    return float(r)


def _check_max_num_neighbors(m, fn: str) -> Optional[int]:
    if m is None:
        return None
    return check_positive_int(m, "max_num_neighbors", fn)


@torch.no_grad()
def _radius_torch(x: Tensor, y: Tensor, r: float, batch_x: Optional[Tensor],
                  batch_y: Optional[Tensor], batch_size: int,
                  max_num_neighbors: Optional[int], exclude_self: bool,
                  block_size: int) -> Tensor:
    r"""Blocked brute-force ball search. Returns ``[2, E]`` (row: index into
    ``y``, col: index into ``x``), sorted by row, then col."""
    ptr_x = batch_to_ptr(batch_x, x.size(0), batch_size)
    ptr_y = batch_to_ptr(batch_y, y.size(0), batch_size)
    out = []
    for ys, ye, xs, xe, single in plan_blocks(ptr_x, ptr_y, block_size):
        dist = pairwise_distance(y[ys:ye], x[xs:xe])
        within = dist < r
        if not single:
            within &= batch_y[ys:ye].view(-1, 1) == batch_x[xs:xe].view(1, -1)
        if exclude_self:
            i = torch.arange(max(ys, xs), min(ye, xe), device=x.device)
            within[i - ys, i - xs] = False
        pair = within.nonzero()  # Row-major: by row, then col.
        if max_num_neighbors is not None and max_num_neighbors < xe - xs:
            count = torch.bincount(pair[:, 0], minlength=ye - ys)
            over = (count > max_num_neighbors).nonzero().view(-1)
            if over.numel() > 0:  # Keep the nearest, ties by lower index.
                sub = dist[over].masked_fill_(~within[over], float("inf"))
                _, idx = smallest_k(sub, max_num_neighbors)
                keep = torch.zeros_like(sub, dtype=torch.bool)
                keep.scatter_(1, idx, True)
                within[over] = keep
                pair = within.nonzero()
        out.append(pair.t() + torch.tensor([[ys], [xs]], device=x.device))
    if not out:
        return _empty_edges(x.device)
    return torch.cat(out, dim=1)


@_eager
def radius(
    x: Tensor,
    y: Tensor,
    r: float,
    batch_x: Optional[Tensor] = None,
    batch_y: Optional[Tensor] = None,
    max_num_neighbors: Optional[int] = 32,
    num_workers: int = 1,
    batch_size: Optional[int] = None,
    *,
    backend: str = "auto",
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> Tensor:
    r"""Finds for each element in :obj:`y` all points in :obj:`x` (of the same
    example) within distance :obj:`r`, as :func:`torch_cluster.radius` /
    :func:`torch_geometric.nn.radius`, e.g., for the ball queries of
    `"PointNet++: Deep Hierarchical Feature Learning on Point Sets in a Metric
    Space" <https://arxiv.org/abs/1706.02413>`_:

    .. math::
        \mathcal{N}(i) = \{ j \,:\, b^x_j = b^y_i,\
        \|\mathbf{y}_i - \mathbf{x}_j\|_2 < r \},

    a strict inequality as in :obj:`torch_cluster`. When more than
    :obj:`max_num_neighbors` points qualify, the torch and scipy backends
    keep the :obj:`max_num_neighbors` **nearest** ones (ties by lower index), a
    deterministic choice; :obj:`torch_cluster` keeps the first ones found (in
    KD-tree order on CPU, biased towards some quadrants, and in index order on
    GPU), so the two backends agree exactly only when no query overflows.
    The torch backend computes distances block by block (at most
    :obj:`block_size` at once) on the input's device, in :math:`O(NM)` time;
    the scipy backend (the default on CPU, see :func:`~gdl_pyg.ops.knn`)
    searches a KD-tree in float64 for the nearest
    :obj:`max_num_neighbors` + 1 candidates within :obj:`r` and returns the
    same edges in the same order (ties by index included; on float32 input
    up to distances within float32 rounding of each other or of :obj:`r`).
    Half and bfloat16 inputs are searched in float32 by every backend
    (:obj:`torch_cluster` included).

    Args:
        x (torch.Tensor): Node feature matrix
            :math:`\mathbf{X} \in \mathbb{R}^{N \times F}`.
        y (torch.Tensor): Query feature matrix
            :math:`\mathbf{Y} \in \mathbb{R}^{M \times F}`.
        r (float): The radius.
        batch_x (torch.Tensor, optional): Sorted batch vector of :obj:`x`.
            (default: :obj:`None`)
        batch_y (torch.Tensor, optional): Sorted batch vector of :obj:`y`.
            (default: :obj:`None`)
        max_num_neighbors (int, optional): The maximum number of neighbours
            returned for each element of :obj:`y`; :obj:`None` for no limit.
            (default: :obj:`32`)
        num_workers (int, optional): Passed to :obj:`torch_cluster`.
            (default: :obj:`1`)
        batch_size (int, optional): The number of examples :math:`B`.
            (default: :obj:`None`)
        backend (str, optional): :obj:`"auto"`, :obj:`"torch"`,
            :obj:`"scipy"` or :obj:`"cluster"` (see :func:`knn`).
            (default: :obj:`"auto"`)
        block_size (int, optional): Maximal number of pairwise distances
            (torch backend) or candidates (scipy backend) held at once.
            (default: :obj:`2**26`)

    Returns:
        :class:`torch.LongTensor` ``assign_index`` of shape :math:`[2, E]`
        (``[0]`` indexes :obj:`y`, ``[1]`` indexes :obj:`x`), sorted by query,
        then by index into :obj:`x`.

    Shapes:
        - **inputs:** :math:`(N, F)`, :math:`(M, F)`, :math:`(N)`, :math:`(M)`
        - **output:** :math:`(2, E)`
    """
    fn = "radius"
    r = _check_radius(r, fn)
    max_num_neighbors = _check_max_num_neighbors(max_num_neighbors, fn)
    x = check_points(x, "x", fn)
    y = check_points(y, "y", fn)
    _check_pair(x, y, fn)
    x, y = upcast(x), upcast(y)  # half / bfloat16 are searched in float32
    if (batch_x is None) != (batch_y is None):
        raise ValueError(f"'{fn}' expected both 'batch_x' and 'batch_y' or "
                         f"neither (got only one)")
    batch_x = check_batch(batch_x, x.size(0), "batch_x", fn, x.device)
    batch_y = check_batch(batch_y, y.size(0), "batch_y", fn, x.device)
    block_size = check_positive_int(block_size, "block_size", fn)
    impl = resolve_neighbor_backend(backend, fn, x)
    b = infer_batch_size(fn, batch_size, batch_x, batch_y)
    if impl == "cluster":
        # torch_cluster's CUDA kernel allocates max_num_neighbors slots per
        # query: more than the number of points changes nothing but memory.
        m = max(x.size(0), 1) if max_num_neighbors is None \
            else min(max_num_neighbors, max(x.size(0), 1))
        return gdl_typing.torch_cluster.radius(x, y, r, batch_x, batch_y, m,
                                               num_workers)
    if x.numel() == 0 or y.numel() == 0:
        return _empty_edges(x.device)
    if impl == "scipy":
        return kdtree_search(x, y, batch_x, batch_y, r=r,
                             max_num_neighbors=max_num_neighbors,
                             by_index=True, block_size=block_size)
    return _radius_torch(x, y, r, batch_x, batch_y, b, max_num_neighbors,
                         False, block_size)


@_eager
def radius_graph(
    x: Tensor,
    r: float,
    batch: Optional[Tensor] = None,
    loop: bool = False,
    max_num_neighbors: Optional[int] = 32,
    flow: str = "source_to_target",
    num_workers: int = 1,
    batch_size: Optional[int] = None,
    *,
    backend: str = "auto",
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> Tensor:
    r"""Computes graph edges to all points within distance :obj:`r`, as
    :func:`torch_cluster.radius_graph` /
    :func:`torch_geometric.nn.radius_graph`:

    .. math::
        \mathcal{N}(i) = \{ j \,:\, b_j = b_i,\
        \|\mathbf{x}_i - \mathbf{x}_j\|_2 < r,\
        j \neq i \text{ unless } \texttt{loop} \}.

    Without :obj:`loop`, node :math:`i` is excluded before
    :obj:`max_num_neighbors` is applied, by every backend
    (:obj:`torch_cluster` 1.6.3's own :func:`radius_graph` drops it after,
    which leaves :obj:`max_num_neighbors` + 1 neighbours where the node was
    not among those found; the :obj:`"cluster"` backend here searches one
    more, drops the node, then keeps :obj:`max_num_neighbors`). Overflowing
    nodes keep their :obj:`max_num_neighbors` nearest neighbours, ties by
    lower index (see :func:`radius` for how this differs from
    :obj:`torch_cluster`).

    Args:
        x (torch.Tensor): Node feature matrix
            :math:`\mathbf{X} \in \mathbb{R}^{N \times F}`.
        r (float): The radius.
        batch (torch.Tensor, optional): Sorted batch vector
            :math:`\mathbf{b} \in {\{ 0, \ldots, B-1\}}^N`.
            (default: :obj:`None`)
        loop (bool, optional): If :obj:`True`, the graph contains self-loops.
            (default: :obj:`False`)
        max_num_neighbors (int, optional): The maximum number of neighbours
            of each node; :obj:`None` for no limit. (default: :obj:`32`)
        flow (str, optional): :obj:`"source_to_target"` (``edge_index[1]`` is
            the centre node) or :obj:`"target_to_source"`.
            (default: :obj:`"source_to_target"`)
        num_workers (int, optional): Passed to :obj:`torch_cluster`.
            (default: :obj:`1`)
        batch_size (int, optional): The number of examples :math:`B`.
            (default: :obj:`None`)
        backend (str, optional): :obj:`"auto"`, :obj:`"torch"`,
            :obj:`"scipy"` or :obj:`"cluster"` (see :func:`knn`).
            (default: :obj:`"auto"`)
        block_size (int, optional): Maximal number of pairwise distances
            (torch backend) or candidates (scipy backend) held at once.
            (default: :obj:`2**26`)

    Shapes:
        - **input:** :math:`(N, F)`, :math:`(N)`
        - **output:** :math:`(2, E)`
    """
    fn = "radius_graph"
    r = _check_radius(r, fn)
    max_num_neighbors = _check_max_num_neighbors(max_num_neighbors, fn)
    _check_flow(flow, fn)
    x = check_points(x, "x", fn)
    x = upcast(x)  # half / bfloat16 are searched in float32
    batch = check_batch(batch, x.size(0), "batch", fn, x.device)
    block_size = check_positive_int(block_size, "block_size", fn)
    impl = resolve_neighbor_backend(backend, fn, x)
    b = infer_batch_size(fn, batch_size, batch)
    if impl == "cluster":
        # torch_cluster's CUDA kernel allocates max_num_neighbors slots per
        # query: more than the number of points changes nothing but memory.
        m = max(x.size(0), 1) if max_num_neighbors is None \
            else min(max_num_neighbors, max(x.size(0), 1))
        if loop:
            return gdl_typing.torch_cluster.radius_graph(x, r, batch, loop,
                                                         m, flow,
                                                         num_workers)
        # torch_cluster 1.6.3 searches m + 1 and drops the self match after
        # the limit (up to m + 1 edges): drop it first, then keep m.
        row, col = gdl_typing.torch_cluster.radius(
            x, x, r, batch, batch, min(m + 1, max(x.size(0), 1)),
            num_workers)
        row, col = drop_self_and_cap(row, col, m)
        if flow == "source_to_target":
            return torch.stack([col, row], dim=0)
        return torch.stack([row, col], dim=0)
    if x.numel() == 0:
        return _empty_edges(x.device)
    if impl == "scipy":
        return kdtree_search(x, None, batch, batch, r=r,
                             max_num_neighbors=max_num_neighbors,
                             exclude_self=not loop, by_index=True,
                             block_size=block_size, flip=flow == "source_to_target")
    row, col = _radius_torch(x, x, r, batch, batch, b, max_num_neighbors, not loop,
                             block_size)
    if flow == "source_to_target":
        return torch.stack([col, row], dim=0)
    return torch.stack([row, col], dim=0)
