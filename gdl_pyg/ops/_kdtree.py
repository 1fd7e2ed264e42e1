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

Radius graphs (self searches without a query set) take a faster route
when the graph is not much denser than its limit: all pairs within
:math:`r` come from one :meth:`~scipy.spatial.cKDTree.query_pairs` call
(each unordered pair once, no :math:`K`-candidate padding), the exact
float64 distance of each decides :math:`d < r`, and the sorted-by-target
result is assembled without a full sort: the pairs :math:`(a, b)`,
:math:`a < b`, are sorted once by :math:`(a, b)`, and one stable counting
pass by target over ``[(b, a)..., (i, i)..., (a, b)...]`` (the self loops
only with ``loop``) leaves every target's sources in increasing order
(those below the target first, then the target, then those above).
Targets with more than ``max_num_neighbors`` neighbours keep the nearest,
ties by index, as above.

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
from scipy.sparse import coo_matrix
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
#: A radius graph with a limit ``m`` takes the all-pairs route when a sample
#: of queries holds at most ``PAIRS_MAX_MEAN_FACTOR * (m + 1)`` neighbours on
#: average (denser graphs would hold far more pairs than they keep); ``0``
#: turns the route off (used by the tests to compare both).
PAIRS_MAX_MEAN_FACTOR = 4.0
#: Number of evenly spaced sample queries of that estimate.
PAIRS_SAMPLE = 256


def _to_numpy64(x: Tensor) -> np.ndarray:
    return np.ascontiguousarray(
        x.detach().to(device="cpu", dtype=torch.float64).numpy())


def _append_example_coordinate(x: np.ndarray, y: np.ndarray, bx: np.ndarray,
                               by: np.ndarray, r: float = 0.0
                               ) -> Tuple[np.ndarray, np.ndarray]:
    r"""Appends ``batch * gap`` as a last coordinate, with ``gap`` larger
    than twice the diameter of all points of :obj:`x` and :obj:`y` and than
    twice the (finite) radius :obj:`r`."""
    pts = np.concatenate([x, y], axis=0)
    extent = pts.max(axis=0) - pts.min(axis=0)
    gap = 2.0 * float(np.sqrt((extent ** 2).sum())) + 1.0
    if math.isfinite(r):
        gap = max(gap, 2.0 * r)
    xa = np.concatenate([x, (bx * gap)[:, None]], axis=1)
    ya = np.concatenate([y, (by * gap)[:, None]], axis=1)
    return xa, ya


def _select(d: np.ndarray, i: np.ndarray, q: np.ndarray, n: int,
            m: Optional[int], r: float, exclude_self: bool,
            bx: Optional[np.ndarray], by: Optional[np.ndarray],
            by_index: bool) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Selects the neighbours of queries :obj:`q` from their :math:`K`
    candidates ``d, i [R, K]`` (sorted by distance, missing ones with index
    :obj:`n`). Returns ``(row, col)`` of the kept edges (the edges of a query
    side by side, in output order; or, from :func:`_select_full`, the kept
    queries and a block of their neighbours) and the positions in :obj:`q` of
    the queries that need more candidates."""
    num, K_asked = d.shape
    if exclude_self and K_asked > 1 and bool((i[:, 0] == q).all()):
        # Usual case: each query is its own first candidate; dropping that
        # column spares the reordering of the valid candidates below.
        d, i, exclude_self = d[:, 1:], i[:, 1:], False
    K = d.shape[1]
    if (m is not None and K > m and not exclude_self and bx is None and r == math.inf
            and not by_index and bool((i[:, -1] < n).all())):
        return _select_full(d, i, q, n, m, K_asked)
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
    complete = np.full(num, K_asked == n) | ~inside[:, -1]
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
    return row, ik[mask], np.nonzero(redo)[0]


def _select_full(d: np.ndarray, i: np.ndarray, q: np.ndarray, n: int, m: int,
                 K_asked: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    r""":func:`_select` of a k-NN search (``m`` nearest, no radius, no
    batch, the self match already dropped) where every query received all
    its ``K > m`` candidates: all are valid, so the first ``m`` of the
    canonical (distance, index) order are kept, without the masks and the
    reordering of invalid candidates of the general case. Returns the kept
    queries ``[R']``, their neighbours as a block ``[R', m]`` (a view where
    possible) and the positions in :obj:`q` of the queries to ask again."""
    num, K = d.shape
    tied = d[:, 1:] == d[:, :-1]  # rare: one pass, then the few rows
    ik = i
    if bool(tied.any()):  # tied rows: by (distance, index); distances stay sorted
        t = np.unique(np.flatnonzero(tied) // (K - 1))
        ik = i.copy()
        ik[t] = np.take_along_axis(i[t], np.lexsort((i[t], d[t]), axis=1), axis=1)
    # unreturned points lie at distance >= d[:, -1]: a query whose last kept
    # candidate is tied with it is asked again with more candidates
    redo = np.zeros(num, bool) if K_asked == n else d[:, m - 1] >= d[:, -1]
    if bool(redo.any()):
        kept = np.nonzero(~redo)[0]
        q, ik = q[kept], ik[kept]
    return q, ik[:, :m], np.nonzero(redo)[0]


def _pairs_route(tree: cKDTree, pts: np.ndarray, r: float,
                 m: Optional[int], block_size: int) -> bool:
    r"""Whether a self radius search with limit :obj:`m` takes the all-pairs
    route: always without a limit (every edge is kept then), else when an
    evenly spaced sample of queries has few enough neighbours on average."""
    if PAIRS_MAX_MEAN_FACTOR <= 0:
        return False
    if m is None:
        return True
    n = pts.shape[0]
    sample = np.unique(np.linspace(0, n - 1, min(n, PAIRS_SAMPLE))
                       .astype(np.int64))
    count = tree.query_ball_point(pts[sample], r, return_length=True)
    mean = float(np.mean(count))
    return mean <= PAIRS_MAX_MEAN_FACTOR * (m + 1) and \
        mean * n <= 2 * block_size


def _radius_pairs(tree: cKDTree, xn: np.ndarray, r: float, bound: float,
                  m: Optional[int], loop: bool, bx: Optional[np.ndarray],
                  flip: bool = False) -> np.ndarray:
    r"""Self radius search through :meth:`cKDTree.query_pairs`. Returns
    ``[2, E]`` int64 (row: target, col: source; with :obj:`flip` the source
    first), sorted by target, then source."""
    n = xn.shape[0]
    pairs = tree.query_pairs(bound, output_type="ndarray")
    a = np.minimum(pairs[:, 0], pairs[:, 1])
    b = np.maximum(pairs[:, 0], pairs[:, 1])
    del pairs
    # Exact float64 distances (coordinates summed in order, as the tree
    # does): the tree was asked with an inflated bound, d < r decides.
    d2 = np.zeros(a.size)
    for c in range(xn.shape[1]):
        xc = np.ascontiguousarray(xn[:, c])
        diff = xc[a] - xc[b]
        d2 += diff * diff
    dist = np.sqrt(d2)
    keep = dist < r
    if bx is not None:
        keep &= bx[a] == bx[b]
    a, b, dist = a[keep], b[keep], dist[keep]
    # Sort the unordered pairs by (a, b) (keys are unique: any sort will do).
    key = torch.sort(torch.from_numpy(a * n + b))
    a_t = torch.div(key.values, n, rounding_mode="floor")
    b = (key.values - a_t * n).numpy()
    a = a_t.numpy()
    count = np.bincount(a, minlength=n) + np.bincount(b, minlength=n)
    if loop:
        count += 1
    overflow = m is not None and a.size > 0 and int(count.max()) > m
    selfs = np.arange(n, dtype=np.int64) if loop else \
        np.empty(0, dtype=np.int64)
    row = np.concatenate([b, selfs, a])
    col = np.concatenate([a, selfs, b])
    num = row.size
    if num == 0:
        return np.empty((2, 0), dtype=np.int64)
    if overflow:
        dist = dist[key.indices.numpy()]
        data = np.concatenate([dist, np.zeros(selfs.size), dist])
    else:
        data = np.ones(num, dtype=np.int8)
    # One stable counting pass by row (scipy's COO -> CSR conversion): the
    # sources below each target come in increasing order from the sorted
    # (a, b), then the target itself, then those above.
    csr = coo_matrix((data, (row, col)), shape=(n, n)).tocsr()
    del row, col, data
    out = np.empty((2, num), dtype=np.int64)
    tgt, src = (out[1], out[0]) if flip else (out[0], out[1])
    tgt[:] = np.repeat(np.arange(n, dtype=np.int64), count)
    src[:] = csr.indices
    if overflow:  # Keep the m nearest (ties by index) of crowded targets.
        entry = np.nonzero((count > m)[tgt])[0]
        r_e, c_e, d_e = tgt[entry], src[entry], csr.data[entry]
        perm = np.lexsort((c_e, d_e, r_e))
        num_e = count[count > m]
        start = np.repeat(np.cumsum(num_e) - num_e, num_e)
        rank = np.arange(entry.size) - start
        keep = np.ones(num, dtype=bool)
        keep[entry[perm[rank >= m]]] = False
        out = out[:, keep]
    return out


def _assemble(rows: List[np.ndarray], cols: List[np.ndarray], num_queries: int,
              flip: bool = False) -> np.ndarray:
    r"""The ``[2, E]`` edges (query, neighbour; with :obj:`flip` the
    neighbour first) in query order from the answers of :func:`_select`
    (each query answered once, its edges side by side in output order): flat
    ``(row, col)`` pairs, or blocks (the kept queries and ``[R, m]``
    neighbours) of :func:`_select_full`. Where every answer is a block of one
    width, whole rows of neighbours move at once."""
    i_row, i_col = (1, 0) if flip else (0, 1)
    m = cols[0].shape[1] if cols[0].ndim == 2 else 0
    if m > 0 and all(c.ndim == 2 and c.shape[1] == m for c in cols):
        out = np.empty((2, num_queries * m), dtype=np.int64)
        out[i_row] = np.repeat(np.arange(num_queries, dtype=np.int64), m)
        block = out[i_col].reshape(num_queries, m)
        for q, c in zip(rows, cols):
            block[q] = c
        return out
    row = np.concatenate([np.repeat(q, c.shape[1]) if c.ndim == 2 else q
                          for q, c in zip(rows, cols)])
    col = np.concatenate([c.reshape(-1) for c in cols])
    count = np.bincount(row, minlength=num_queries)
    ptr = np.zeros(num_queries, dtype=np.int64)
    np.cumsum(count[:-1], out=ptr[1:])
    out = np.empty((2, col.size), dtype=np.int64)
    out[i_row] = np.repeat(np.arange(num_queries, dtype=np.int64), count)
    # an edge's rank is its distance from the first edge of its query's block
    first = np.ones(row.size, bool)
    np.not_equal(row[1:], row[:-1], out=first[1:])
    start = np.flatnonzero(first)
    pos = np.arange(row.size) - np.repeat(start, count[row[start]])
    pos += ptr[row]
    out[i_col, pos] = col
    return out


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
    flip: bool = False,
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
        flip (bool, optional): Return col first (``source_to_target`` edges
            of a graph, without a copy to swap them).

    Returns:
        :class:`torch.LongTensor` :math:`[2, E]` on the device of :obj:`x`:
        row (index into :obj:`y`), col (index into :obj:`x`), sorted by row;
        with :obj:`flip`, ``[col, row]``.
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
            xn_plain = xn
            xn, yn = _append_example_coordinate(xn, yn, bx, by, r)
            if self_search:
                yn = xn
    tree = cKDTree(xn)
    # The tree tests d < bound on squared distances: inflate the bound so
    # that no point with a float64 distance below r is lost to rounding.
    bound = r * (1.0 + 1e-9) if math.isfinite(r) else np.inf
    m = k if k is not None else max_num_neighbors
    if self_search and k is None and by_index and math.isfinite(r) and \
            _pairs_route(tree, xn, bound, m, block_size):
        plain = xn if bx is None else xn_plain
        out = _radius_pairs(tree, plain, r, bound, m, not exclude_self, bx, flip)
        return torch.from_numpy(out).to(x.device)
    if self_search:
        order = tree.indices
    elif num_queries >= REORDER_MIN_QUERIES:
        order = cKDTree(yn, balanced_tree=False, compact_nodes=False).indices
    else:
        order = np.arange(num_queries)
    order = order.astype(np.int64, copy=False)
    if m is None:
        K = min(UNLIMITED_START, n)
    else:
        K = min(m + int(exclude_self) + 1, n)
    rows: List[np.ndarray] = []
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
            row, col, redo = _select(d, i, q, n, m, r, exclude_self, bx, by,
                                     by_index)
            rows.append(row)
            cols.append(col)
            again.append(q[redo])
        pending = np.concatenate(again)
        K = min(2 * K, n)
    return torch.from_numpy(_assemble(rows, cols, num_queries, flip)).to(x.device)
