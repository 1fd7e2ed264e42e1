r"""The KD-tree backend of :mod:`gdl_pyg.ops` (``backend="scipy"``): exact
:math:`k`-nearest-neighbour and radius searches with
:class:`scipy.spatial.cKDTree` that return the edges of the pure-torch
backend, in the same order.

How the result is made exact and deterministic
-----------------------------------------------
A query asks the tree for the :math:`K` nearest candidates (within
:math:`r`, for radius searches) with :math:`K` one more than needed
(:math:`k`, or ``max_num_neighbors``, plus one, plus one for the excluded
self match), in float64. The candidates are re-sorted by (distance, index)
and the first ones are kept. Every point the tree did not return lies at
least as far as the farthest candidate :math:`d_K`, so the selection is
exact unless the last kept candidate is tied with :math:`d_K` (or all
:math:`K` candidates qualify in an unlimited radius search): such queries
are asked again with :math:`2K` candidates, until :math:`K` reaches the
number of points. Ties are therefore resolved by the lower index, as in the
torch backend, whatever order the tree returns them in.

Batches are searched in one tree: the example index, scaled by a gap larger
than twice the diameter of all points, is appended as an extra coordinate,
so points of other examples are farther than any point of the own example
and are filtered out; distances within an example are unchanged bit for bit
(the extra coordinate differs by exactly zero).

Guarantee: the edges equal those of the torch backend whenever the
float64 distances the tree computes order the candidates as the torch
backend's distances do, i.e., for float64 inputs up to ties closer than
rounding (exact ties, e.g., of points on an integer lattice, are resolved
identically), and for float32 inputs whenever no two candidate distances
(or a distance and :math:`r`) differ by less than float32 rounding.
"""
import math
from typing import List, Optional, Tuple

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import Tensor

__all__ = ["kdtree_search"]

#: Queries at which the tree search uses :func:`torch.get_num_threads`
#: workers (below, thread start-up costs more than it saves).
PARALLEL_MIN_QUERIES = 4096
#: Query sets at least this large are first put in spatial (tree) order,
#: which keeps the tree in cache and halves the query time of large sets.
REORDER_MIN_QUERIES = 4096
#: First number of candidates of a radius search without a limit.
UNLIMITED_START = 32


def _to_numpy64(x: Tensor) -> np.ndarray:
    return np.ascontiguousarray(
        x.detach().to(device="cpu", dtype=torch.float64).numpy())


def _append_example_coordinate(x: np.ndarray, y: np.ndarray, bx: np.ndarray,
                               by: np.ndarray) -> Tuple[np.ndarray,
                                                        np.ndarray]:
    r"""Appends ``batch * gap`` as a last coordinate, with ``gap`` larger
    than twice the diameter of all points of :obj:`x` and :obj:`y`."""
    pts = np.concatenate([x, y], axis=0)
    extent = pts.max(axis=0) - pts.min(axis=0)
    gap = 2.0 * float(np.sqrt((extent ** 2).sum())) + 1.0
    xa = np.concatenate([x, (bx * gap)[:, None]], axis=1)
    ya = np.concatenate([y, (by * gap)[:, None]], axis=1)
    return xa, ya


def _select(d: np.ndarray, i: np.ndarray, q: np.ndarray, n: int,
            m: Optional[int], r: float, exclude_self: bool,
            bx: Optional[np.ndarray], by: Optional[np.ndarray],
            by_index: bool) -> Tuple[np.ndarray, np.ndarray, np.ndarray,
                                     np.ndarray]:
    r"""Selects the neighbours of queries :obj:`q` from their :math:`K`
    candidates ``d, i [R, K]`` (sorted by distance, missing ones with index
    :obj:`n`). Returns ``(row, rank, col)`` of the kept edges and the
    positions in :obj:`q` of the queries that need more candidates."""
    num, K = d.shape
    found = i < n
    inside = found & (d < r)
    if bx is not None:  # Same example only.
        inside &= bx[np.minimum(i, n - 1)] == by[q][:, None]
    valid = inside & (i != q[:, None]) if exclude_self else inside
    # Canonical order: by distance, ties by index; invalid entries last.
    # The tree returns candidates sorted by distance, so moving the invalid
    # ones to the end (a stable sort of a boolean) keeps that order, and
    # only rows with tied distances need a full (distance, index) sort.
    if bool(valid.all()):
        dk, ik = d, i.copy()
    else:
        perm = np.argsort(~valid, axis=1, kind="stable")
        dk = np.take_along_axis(d, perm, axis=1)
        ik = np.take_along_axis(i, perm, axis=1)
        invalid = ~np.take_along_axis(valid, perm, axis=1)
        dk[invalid] = np.inf
        ik[invalid] = n
    tied = ((dk[:, 1:] == dk[:, :-1]) & (ik[:, 1:] < n)).any(axis=1)
    if bool(tied.any()):
        t = np.nonzero(tied)[0]
        perm = np.lexsort((ik[t], dk[t]), axis=1)
        dk[t] = np.take_along_axis(dk[t], perm, axis=1)
        ik[t] = np.take_along_axis(ik[t], perm, axis=1)
    count = valid.sum(axis=1)
    # Unreturned points lie at distance >= d[:, -1]; they cannot qualify if
    # the last candidate does not (outside r or of another example).
    complete = np.full(num, K == n) | ~inside[:, -1]
    if m is None:
        keep = count
        redo = ~complete
    else:
        keep = np.minimum(count, m)
        last = dk[np.arange(num), np.maximum(keep - 1, 0)]
        redo = ~complete & ((keep < m) | (last >= d[:, -1]))
    keep = np.where(redo, 0, keep)
    if by_index:  # Output order inside a query: by index.
        ik = np.where(np.arange(K)[None, :] < keep[:, None], ik, n)
        ik.sort(axis=1)
    mask = np.arange(K)[None, :] < keep[:, None]
    row = np.broadcast_to(q[:, None], (num, K))[mask]
    rank = np.broadcast_to(np.arange(K)[None, :], (num, K))[mask]
    return row, rank, ik[mask], np.nonzero(redo)[0]


@torch.no_grad()
def kdtree_search(
    x: Tensor,
    y: Optional[Tensor],
    batch_x: Optional[Tensor],
    batch_y: Optional[Tensor],
    k: Optional[int] = None,
    r: float = math.inf,
    max_num_neighbors: Optional[int] = None,
    exclude_self: bool = False,
    by_index: bool = False,
    block_size: int = 2**26,
) -> Tensor:
    r"""Exact neighbour search of the queries :obj:`y` (or :obj:`x` itself
    if :obj:`y` is :obj:`None`) among :obj:`x` with a KD-tree.

    Either the :obj:`k` nearest points (:obj:`k` given) or the points at
    distance :math:`< r` (at most :obj:`max_num_neighbors` nearest, all if
    :obj:`None`), within the same example, excluding the query itself if
    :obj:`exclude_self` (self search only).

    Args:
        x (torch.Tensor): Points :math:`[N, D]` (validated, non-empty).
        y (torch.Tensor, optional): Queries :math:`[M, D]`; :obj:`None` for
            a self search.
        batch_x (torch.Tensor, optional): Sorted batch vector of :obj:`x`.
        batch_y (torch.Tensor, optional): Sorted batch vector of :obj:`y`.
        k (int, optional): Number of nearest neighbours (a k-NN search).
        r (float, optional): Radius (a radius search if finite).
        max_num_neighbors (int, optional): Limit of a radius search.
        exclude_self (bool, optional): Exclude the pair :math:`(i, i)`.
        by_index (bool, optional): Order the neighbours of a query by index
            (radius searches) instead of by (distance, index) (k-NN).
        block_size (int, optional): Bound on the candidates held at once.

    Returns:
        :class:`torch.LongTensor` :math:`[2, E]` on the device of :obj:`x`:
        row (index into :obj:`y`), col (index into :obj:`x`), sorted by row.
    """
    self_search = y is None
    xn = _to_numpy64(x)
    yn = xn if self_search else _to_numpy64(y)
    n, num_queries = xn.shape[0], yn.shape[0]
    bx = by = None
    if batch_x is not None:
        bx = batch_x.cpu().numpy()
        by = bx if self_search else batch_y.cpu().numpy()
        single = bx.size == 0 or by.size == 0 or \
            (bx.min() == bx.max() == by.min() == by.max())
        if single:
            bx = by = None
        else:
            xn, yn = _append_example_coordinate(xn, yn, bx, by)
            if self_search:
                yn = xn
    tree = cKDTree(xn)
    if self_search:
        order = tree.indices
    elif num_queries >= REORDER_MIN_QUERIES:
        order = cKDTree(yn, balanced_tree=False, compact_nodes=False).indices
    else:
        order = np.arange(num_queries)
    order = order.astype(np.int64, copy=False)
    # The tree tests d < bound on squared distances: inflate the bound so
    # that no point with a float64 distance below r is lost to rounding.
    bound = r * (1.0 + 1e-9) if math.isfinite(r) else np.inf
    m = k if k is not None else max_num_neighbors
    if m is None:
        K = min(UNLIMITED_START, n)
    else:
        K = min(m + int(exclude_self) + 1, n)
    rows: List[np.ndarray] = []
    ranks: List[np.ndarray] = []
    cols: List[np.ndarray] = []
    pending = order
    while pending.size > 0:
        again = []
        chunk = max(1, block_size // K)
        for s in range(0, pending.size, chunk):
            q = pending[s:s + chunk]
            workers = torch.get_num_threads() \
                if q.size >= PARALLEL_MIN_QUERIES else 1
            d, i = tree.query(yn[q], k=K, distance_upper_bound=bound,
                              workers=workers)
            d, i = d.reshape(q.size, K), i.reshape(q.size, K)
            row, rank, col, redo = _select(d, i, q, n, m, r, exclude_self,
                                           bx, by, by_index)
            rows.append(row)
            ranks.append(rank)
            cols.append(col)
            again.append(q[redo])
        pending = np.concatenate(again)
        K = min(2 * K, n)
    row = np.concatenate(rows)
    rank = np.concatenate(ranks)
    col = np.concatenate(cols)
    # Scatter the edges into query order (each query was answered once and
    # its edges carry their rank).
    count = np.bincount(row, minlength=num_queries)
    ptr = np.zeros(num_queries, dtype=np.int64)
    np.cumsum(count[:-1], out=ptr[1:])
    out = np.empty((2, col.size), dtype=np.int64)
    out[0] = np.repeat(np.arange(num_queries, dtype=np.int64), count)
    out[1, ptr[row] + rank] = col
    return torch.from_numpy(out).to(x.device)
