r"""k-nearest-neighbour search and graphs in pure torch, with the semantics of
:obj:`torch_cluster` / :obj:`torch_geometric.nn.knn` (which need pyg-lib or
torch-cluster)."""
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

__all__ = ["knn", "knn_graph", "nearest"]

_FLOWS = ("source_to_target", "target_to_source")


def _check_flow(flow: str, fn: str) -> None:
    if flow not in _FLOWS:
        raise ValueError(f"'{fn}' expected 'flow' to be one of {_FLOWS} "
                         f"(got {flow!r})")


def _check_pair(x: Tensor, y: Tensor, fn: str) -> None:
    if x.size(1) != y.size(1):
        raise ValueError(f"'{fn}' expected 'x' and 'y' with the same number "
                         f"of dimensions (got {x.size(1)} and {y.size(1)})")
    if x.device != y.device:
        raise ValueError(f"'{fn}' expected 'x' and 'y' on the same device "
                         f"(got {x.device} and {y.device})")
    if x.dtype != y.dtype:
        raise TypeError(f"'{fn}' expected 'x' and 'y' with the same dtype "
                        f"(got {x.dtype} and {y.dtype})")


def _empty_edges(device: torch.device) -> Tensor:
    return torch.empty(2, 0, dtype=torch.long, device=device)


@torch.no_grad()
def _knn_torch(x: Tensor, y: Tensor, k: int, batch_x: Optional[Tensor],
               batch_y: Optional[Tensor], batch_size: int, cosine: bool,
               exclude_self: bool, block_size: int) -> Tensor:
    r"""Blocked brute-force search. Returns ``[2, E]`` (row: index into ``y``,
    col: index into ``x``), sorted by row, then distance, then col."""
    ptr_x = batch_to_ptr(batch_x, x.size(0), batch_size)
    ptr_y = batch_to_ptr(batch_y, y.size(0), batch_size)
    rows, cols = [], []
    for ys, ye, xs, xe, single in plan_blocks(ptr_x, ptr_y, block_size):
        dist = pairwise_distance(y[ys:ye], x[xs:xe], cosine)
        if not single:  # Several examples share this block.
            other = batch_y[ys:ye].view(-1, 1) != batch_x[xs:xe].view(1, -1)
            dist.masked_fill_(other, float("inf"))
        if exclude_self:  # x is y: entry (i, i) lies at (i - ys, i - xs).
            i = torch.arange(max(ys, xs), min(ye, xe), device=x.device)
            dist[i - ys, i - xs] = float("inf")
        kk = min(k, xe - xs)
        vals, idx = smallest_k(dist, kk)
        mask = torch.isfinite(vals)
        row = torch.arange(ys, ye, device=x.device).view(-1, 1).expand(-1, kk)
        rows.append(row[mask])
        cols.append(idx[mask] + xs)
    if not rows:
        return _empty_edges(x.device)
    return torch.stack([torch.cat(rows), torch.cat(cols)], dim=0)


@_eager
def knn(
    x: Tensor,
    y: Tensor,
    k: int,
    batch_x: Optional[Tensor] = None,
    batch_y: Optional[Tensor] = None,
    cosine: bool = False,
    num_workers: int = 1,
    batch_size: Optional[int] = None,
    *,
    backend: str = "auto",
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> Tensor:
    r"""Finds for each element in :obj:`y` the :obj:`k` nearest points in
    :obj:`x` (within the same example), as :func:`torch_cluster.knn` and
    :func:`torch_geometric.nn.knn`, e.g., for the :math:`k`-NN graphs of
    `"Dynamic Graph CNN for Learning on Point Clouds"
    <https://arxiv.org/abs/1801.07829>`_:

    .. math::
        \mathcal{N}(i) = \operatorname*{arg\,min}_{S \subseteq
        \{j \,:\, b^x_j = b^y_i\},\ |S| = \min(k, n^x_{b^y_i})}
        \sum_{j \in S} d(\mathbf{y}_i, \mathbf{x}_j),

    with :math:`d` the Euclidean distance, or :math:`1 - \cos` if
    :obj:`cosine=True`. The pure-torch backend computes exact distances block
    by block (at most :obj:`block_size` of them at once, so memory stays
    bounded; on the device of the input), which costs :math:`O(NM)` time. The
    scipy backend searches a KD-tree in float64 (about
    :math:`O(M \log N)` in low dimension) and returns the same edges in the
    same order: it asks for spare candidates and re-sorts them by (distance,
    index), asking again where the last kept one is tied with the farthest
    candidate, so exact ties (e.g., lattice points) are broken as by the torch
    backend. Ties are broken deterministically in favour of the lower index
    in :obj:`x`. On float32 input the torch backend ranks by float32
    distances and the scipy backend by float64 ones, so the two can differ
    where two distances round to the same float32 value. Half and bfloat16
    inputs are searched in float32 by every backend (:obj:`torch_cluster`
    included), so all return the same indices. :obj:`torch_cluster`'s CPU
    kernel has no cosine distance: :obj:`backend="auto"` then uses the torch
    backend, :obj:`backend="cluster"` raises :class:`ValueError`.

    Args:
        x (torch.Tensor): Node feature matrix
            :math:`\mathbf{X} \in \mathbb{R}^{N \times F}`.
        y (torch.Tensor): Query feature matrix
            :math:`\mathbf{Y} \in \mathbb{R}^{M \times F}`.
        k (int): The number of neighbours.
        batch_x (torch.Tensor, optional): Sorted batch vector
            :math:`\mathbf{b}^x \in {\{ 0, \ldots, B-1\}}^N`, which assigns
            each node to a specific example. (default: :obj:`None`)
        batch_y (torch.Tensor, optional): Sorted batch vector
            :math:`\mathbf{b}^y \in {\{ 0, \ldots, B-1\}}^M`.
            (default: :obj:`None`)
        cosine (bool, optional): If :obj:`True`, uses the cosine distance
            instead of the Euclidean distance. (default: :obj:`False`)
        num_workers (int, optional): Number of workers of
            :obj:`torch_cluster`'s CPU kernel (the torch and scipy backends
            use torch's intra-op threads, see :func:`torch.set_num_threads`).
            (default: :obj:`1`)
        batch_size (int, optional): The number of examples :math:`B`, inferred
            from the batch vectors if not given. (default: :obj:`None`)
        backend (str, optional): :obj:`"torch"` (blocked brute force),
            :obj:`"scipy"` (:class:`scipy.spatial.cKDTree`, Euclidean only),
            :obj:`"cluster"` (:obj:`torch_cluster`) or :obj:`"auto"`:
            :obj:`torch_cluster` when installed, else :obj:`"scipy"` for
            Euclidean searches of CPU tensors with at most 8 dimensions,
            else :obj:`"torch"`. (default: :obj:`"auto"`)
        block_size (int, optional): Maximal number of pairwise distances
            (torch backend) or candidates (scipy backend) held at once.
            (default: :obj:`2**26`)

    Returns:
        :class:`torch.LongTensor` ``assign_index`` of shape :math:`[2, E]`:
        ``assign_index[0]`` indexes :obj:`y`, ``assign_index[1]`` indexes
        :obj:`x`; sorted by query, then by distance. A query gets fewer than
        :obj:`k` neighbours when its example has fewer points in :obj:`x`.

    Shapes:
        - **inputs:** :math:`(N, F)`, :math:`(M, F)`, :math:`(N)`, :math:`(M)`
        - **output:** :math:`(2, E)` with :math:`E \leq kM`
    """
    fn = "knn"
    k = check_positive_int(k, "k", fn)
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
    impl = resolve_neighbor_backend(backend, fn, x, cosine)
    b = infer_batch_size(fn, batch_size, batch_x, batch_y)
    if impl == "cluster":
        # torch_cluster allocates k slots per query: k beyond the number of
        # points changes nothing but the memory.
        return gdl_typing.torch_cluster.knn(x, y, min(k, max(x.size(0), 1)),
                                            batch_x, batch_y, cosine,
                                            num_workers)
    if x.numel() == 0 or y.numel() == 0:
        return _empty_edges(x.device)
    if impl == "scipy":
        return kdtree_search(x, y, batch_x, batch_y, k=k,
                             block_size=block_size)
    return _knn_torch(x, y, k, batch_x, batch_y, b, cosine, False, block_size)


@_eager
def knn_graph(
    x: Tensor,
    k: int,
    batch: Optional[Tensor] = None,
    loop: bool = False,
    flow: str = "source_to_target",
    cosine: bool = False,
    num_workers: int = 1,
    batch_size: Optional[int] = None,
    *,
    backend: str = "auto",
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> Tensor:
    r"""Computes graph edges to the nearest :obj:`k` points, as
    :func:`torch_cluster.knn_graph` / :func:`torch_geometric.nn.knn_graph`:
    node :math:`i` receives edges from

    .. math::
        \mathcal{N}(i) = k\text{-}\operatorname{NN}\bigl(\mathbf{x}_i;\
        \{\mathbf{x}_j : b_j = b_i,\ j \neq i \text{ unless } \texttt{loop}\}
        \bigr).

    Without :obj:`loop`, node :math:`i` itself is excluded before the
    :math:`k` nearest are taken, so every node gets :math:`\min(k, n_b - 1)`
    neighbours even with duplicated points. :obj:`torch_cluster`'s own
    :func:`knn_graph` searches :math:`k+1` neighbours and drops the self
    match, which returns :math:`k+1` edges when a duplicate displaces the
    node itself; the :obj:`"cluster"` backend here drops the self match and
    then keeps :math:`k`, so all backends agree. Ties are broken in favour of
    the lower index.

    Args:
        x (torch.Tensor): Node feature matrix
            :math:`\mathbf{X} \in \mathbb{R}^{N \times F}`.
        k (int): The number of neighbours.
        batch (torch.Tensor, optional): Sorted batch vector
            :math:`\mathbf{b} \in {\{ 0, \ldots, B-1\}}^N`.
            (default: :obj:`None`)
        loop (bool, optional): If :obj:`True`, the graph contains self-loops
            (each node counts as its own nearest neighbour).
            (default: :obj:`False`)
        flow (str, optional): :obj:`"source_to_target"` (``edge_index[1]`` is
            the centre node) or :obj:`"target_to_source"`.
            (default: :obj:`"source_to_target"`)
        cosine (bool, optional): Use the cosine distance.
            (default: :obj:`False`)
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
        - **output:** :math:`(2, E)` with :math:`E \leq kN`
    """
    fn = "knn_graph"
    k = check_positive_int(k, "k", fn)
    _check_flow(flow, fn)
    x = check_points(x, "x", fn)
    x = upcast(x)  # half / bfloat16 are searched in float32
    batch = check_batch(batch, x.size(0), "batch", fn, x.device)
    block_size = check_positive_int(block_size, "block_size", fn)
    impl = resolve_neighbor_backend(backend, fn, x, cosine)
    b = infer_batch_size(fn, batch_size, batch)
    if impl == "cluster":
        if loop:
            return gdl_typing.torch_cluster.knn_graph(
                x, min(k, max(x.size(0), 1)), batch, loop, flow, cosine,
                num_workers)
        # One spare neighbour for the self match, dropped before keeping k.
        row, col = gdl_typing.torch_cluster.knn(
            x, x, min(k + 1, max(x.size(0), 1)), batch, batch, cosine,
            num_workers)
        row, col = drop_self_and_cap(row, col, k)
        if flow == "source_to_target":
            return torch.stack([col, row], dim=0)
        return torch.stack([row, col], dim=0)
    if x.numel() == 0:
        return _empty_edges(x.device)
    if impl == "scipy":
        return kdtree_search(x, None, batch, batch, k=k, exclude_self=not loop,
                             block_size=block_size, flip=flow == "source_to_target")
    row, col = _knn_torch(x, x, k, batch, batch, b, cosine, not loop, block_size)
    if flow == "source_to_target":
        return torch.stack([col, row], dim=0)
    return torch.stack([row, col], dim=0)


@_eager
def nearest(
    x: Tensor,
    y: Tensor,
    batch_x: Optional[Tensor] = None,
    batch_y: Optional[Tensor] = None,
    *,
    backend: str = "auto",
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> Tensor:
    r"""Clusters the points of :obj:`x` around the query points :obj:`y`: for
    each element of :obj:`x` the index of its nearest point in :obj:`y`
    (within the same example), as :func:`torch_cluster.nearest`:

    .. math::
        c_i = \operatorname*{arg\,min}_{j \,:\, b^y_j = b^x_i}
        \|\mathbf{x}_i - \mathbf{y}_j\|_2,

    ties broken in favour of the lower index. For example
    ``nearest([[0], [1], [10]], [[0], [10]])`` is ``[0, 0, 1]``. An example
    with points in :obj:`x` but none in :obj:`y` raises :class:`ValueError`;
    centres in examples without points in :obj:`x` are ignored (where
    :obj:`torch_cluster` raises, so they are dropped before dispatching to
    it). Half and bfloat16 points are searched in float32 by every backend.

    Args:
        x (torch.Tensor): Node feature matrix
            :math:`\mathbf{X} \in \mathbb{R}^{N \times F}`.
        y (torch.Tensor): Cluster centres
            :math:`\mathbf{Y} \in \mathbb{R}^{M \times F}`.
        batch_x (torch.Tensor, optional): Sorted batch vector of :obj:`x`.
            (default: :obj:`None`)
        batch_y (torch.Tensor, optional): Sorted batch vector of :obj:`y`.
            (default: :obj:`None`)
        backend (str, optional): :obj:`"auto"`, :obj:`"torch"`,
            :obj:`"scipy"` or :obj:`"cluster"` (see :func:`knn`).
            (default: :obj:`"auto"`)
        block_size (int, optional): Maximal number of pairwise distances
            (torch backend) or candidates (scipy backend) held at once.
            (default: :obj:`2**26`)

    Shapes:
        - **inputs:** :math:`(N, F)`, :math:`(M, F)`, :math:`(N)`, :math:`(M)`
        - **output:** :math:`(N)`, indices into :obj:`y`
    """
    fn = "nearest"
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
    if x.size(0) == 0:
        return torch.empty(0, dtype=torch.long, device=x.device)
    b = infer_batch_size(fn, None, batch_x, batch_y)
    count_x = torch.bincount(batch_x, minlength=b) if batch_x is not None \
        else torch.tensor([x.size(0)], device=x.device)
    count_y = torch.bincount(batch_y, minlength=b) if batch_y is not None \
        else torch.tensor([y.size(0)], device=x.device)
    missing = (count_x > 0) & (count_y == 0)
    if bool(missing.any()):
        num = int(count_x[missing].sum())
        raise ValueError(f"'{fn}' found examples with points in 'x' but none "
                         f"in 'y' ({num} points have no cluster centre, "
                         f"examples {missing.nonzero().view(-1).tolist()[:5]}"
                         f"); every example of 'batch_x' needs points in "
                         f"'batch_y'")
    if impl == "cluster":
        if batch_y is None:
            return gdl_typing.torch_cluster.nearest(x, y, batch_x, batch_y)
        # torch_cluster also rejects examples with points in y only: search
        # the centres of the examples x has, and map back.
        keep = (count_x > 0)[batch_y]
        index = keep.nonzero().view(-1)
        out = gdl_typing.torch_cluster.nearest(x, y[index], batch_x,
                                               batch_y[index])
        return index[out.to(x.device)]
    # the points of x are the queries, y holds the candidates
    if impl == "scipy":
        row, col = kdtree_search(y, x, batch_y, batch_x, k=1,
                                 block_size=block_size)
    else:
        row, col = _knn_torch(y, x, 1, batch_y, batch_x, b, False, False,
                              block_size)
    return col
