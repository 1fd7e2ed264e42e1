r"""Parity of every op's torch backend with the :obj:`torch_cluster` backend
(``backend="cluster"``, and ``"auto"``, which dispatches to it when it is
installed), on seeded random inputs: batched and unbatched, empty examples,
duplicated points, :math:`k` larger than an example, ``loop`` and ``flow``
both ways, ``max_num_neighbors``, half / bfloat16 / integer positions.

Where :obj:`torch_cluster` leaves the order or the choice open (edge order;
ties; which neighbours :func:`radius` keeps when more than
``max_num_neighbors`` qualify) the tests compare what is specified: the edge
sets, or the sorted neighbour distances per query, and assert the documented
difference. :obj:`torch_cluster` 1.6.3's own :func:`knn_graph` /
:func:`radius_graph` without loops can return one neighbour too many on
duplicated points; our dispatch corrects that, which is tested too."""
import pytest
import torch

from gdl_pyg.ops import (fps, grid_cluster, knn, knn_graph, nearest, radius,
                         radius_graph, voxel_grid)
from gdl_pyg.testing import with_package

pytestmark = with_package("torch_cluster")

DTYPES = [torch.float32, torch.float64, torch.half, torch.bfloat16]
SIZES = {  # (sizes of x, sizes of y) per example
    "unbatched": ([70], [30]),
    "batched": ([40, 3, 25], [10, 12, 8]),
    "empty examples": ([0, 20, 0, 15, 6], [5, 0, 0, 9, 4]),
}


def make_batch(sizes):
    return torch.repeat_interleave(torch.arange(len(sizes)),
                                   torch.tensor(sizes))


def points(n, dtype, seed, dim=3, duplicates=False):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, dim, generator=gen, dtype=torch.float64)
    if duplicates and n > 1:
        idx = torch.randint(0, n, (n // 3,), generator=gen)
        x[torch.randint(0, n, (n // 3,), generator=gen)] = x[idx]
    return x.to(dtype)


def as_set(edge_index):
    return set(map(tuple, edge_index.t().tolist()))


def neighbour_distances(edge_index, query, cand, query_row=0):
    r"""``{query: sorted float64 distances to its neighbours}``, the part of a
    k-NN result that ties cannot change."""
    q, c = edge_index[query_row], edge_index[1 - query_row]
    d = (query.double()[q] - cand.double()[c]).norm(dim=-1)
    out = {}
    for i, v in zip(q.tolist(), d.tolist()):
        out.setdefault(i, []).append(v)
    return {i: torch.tensor(sorted(v), dtype=torch.float64)
            for i, v in out.items()}


def assert_same_knn(a, b, query, cand, query_row=0):
    da = neighbour_distances(a, query, cand, query_row)
    db = neighbour_distances(b, query, cand, query_row)
    assert da.keys() == db.keys()
    for i in da:
        assert len(da[i]) == len(db[i]), i
        assert torch.allclose(da[i], db[i], rtol=0, atol=1e-12), i


@pytest.mark.parametrize("case", list(SIZES))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [1, 4, 50])
def test_knn(case, dtype, k):
    sx, sy = SIZES[case]
    x, y = points(sum(sx), dtype, 1), points(sum(sy), dtype, 2)
    bx, by = (None, None) if case == "unbatched" else \
        (make_batch(sx), make_batch(sy))
    ours = knn(x, y, k, bx, by, backend="torch")
    theirs = knn(x, y, k, bx, by, backend="cluster")
    assert theirs.dtype == ours.dtype == torch.long
    # Continuous random points: no ties, so the sets are equal.
    assert as_set(ours) == as_set(theirs)
    assert torch.equal(knn(x, y, k, bx, by), theirs)  # "auto" dispatches


@pytest.mark.parametrize("case", ["unbatched", "batched", "empty examples"])
@pytest.mark.parametrize("loop", [False, True])
@pytest.mark.parametrize("flow", ["source_to_target", "target_to_source"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.half])
def test_knn_graph(case, loop, flow, dtype):
    sx, _ = SIZES[case]
    x = points(sum(sx), dtype, 3)
    batch = None if case == "unbatched" else make_batch(sx)
    for k in [3, 30]:
        ours = knn_graph(x, k, batch, loop, flow, backend="torch")
        theirs = knn_graph(x, k, batch, loop, flow, backend="cluster")
        assert as_set(ours) == as_set(theirs)


@pytest.mark.parametrize("loop", [False, True])
def test_knn_graph_duplicates(loop):
    sizes = [30, 25]
    x, batch = points(55, torch.float64, 4, duplicates=True), \
        make_batch(sizes)
    k = 4
    ours = knn_graph(x, k, batch, loop, flow="target_to_source",
                     backend="torch")
    theirs = knn_graph(x, k, batch, loop, flow="target_to_source",
                       backend="cluster")
    # torch_cluster 1.6.3's own knn_graph searches k + 1 and drops the self
    # match, so a node whose duplicates displace it would get k + 1 edges;
    # our dispatch drops the self match first and keeps k.
    assert_same_knn(ours, theirs, x, x)
    assert torch.equal(torch.bincount(theirs[0]), torch.full((55,), k))


@pytest.mark.parametrize("graph", ["knn", "radius"])
def test_graphs_of_many_copies_keep_the_limit(graph):
    # 8 copies of each of 6 points: torch_cluster 1.6.3's own graph functions
    # return 5 edges for some nodes here (k + 1 searched, the self match not
    # among them); every backend of ours returns 4.
    base = points(6, torch.float64, 14)
    x = base.repeat_interleave(8, 0)
    batch = make_batch([24, 24])
    for b in [None, batch]:
        for backend in ["torch", "scipy", "cluster"]:
            if graph == "knn":
                e = knn_graph(x, 4, b, flow="target_to_source",
                              backend=backend)
            else:
                e = radius_graph(x, 1e-6, b, max_num_neighbors=4,
                                 flow="target_to_source", backend=backend)
            assert torch.bincount(e[0]).tolist() == [4] * 48, backend
            assert not bool((e[0] == e[1]).any())
            # Only copies of the same point (distance 0) are neighbours.
            assert torch.equal(e[0] // 8, e[1] // 8)


@pytest.mark.parametrize("case", list(SIZES))
@pytest.mark.parametrize("dtype", DTYPES)
def test_radius_without_overflow(case, dtype):
    sx, sy = SIZES[case]
    x, y = points(sum(sx), dtype, 5), points(sum(sy), dtype, 6)
    bx, by = (None, None) if case == "unbatched" else \
        (make_batch(sx), make_batch(sy))
    for m in [None, 100]:
        ours = radius(x, y, 0.4, bx, by, max_num_neighbors=m,
                      backend="torch")
        theirs = radius(x, y, 0.4, bx, by, max_num_neighbors=m,
                        backend="cluster")
        assert ours.size(1) > 0
        assert as_set(ours) == as_set(theirs)


@pytest.mark.parametrize("case", ["unbatched", "batched", "empty examples"])
@pytest.mark.parametrize("loop", [False, True])
@pytest.mark.parametrize("flow", ["source_to_target", "target_to_source"])
def test_radius_graph_without_overflow(case, loop, flow):
    sx, _ = SIZES[case]
    x = points(sum(sx), torch.float32, 7, duplicates=True)
    batch = None if case == "unbatched" else make_batch(sx)
    ours = radius_graph(x, 0.35, batch, loop, 100, flow, backend="torch")
    theirs = radius_graph(x, 0.35, batch, loop, 100, flow, backend="cluster")
    assert as_set(ours) == as_set(theirs)


def test_radius_overflow_is_the_documented_difference():
    x = points(120, torch.float64, 8)
    m = 5
    ours = radius_graph(x, 0.6, None, False, m, flow="target_to_source",
                        backend="torch")
    theirs = radius_graph(x, 0.6, None, False, m, flow="target_to_source",
                          backend="cluster")
    # Both keep min(count, m) neighbours within r, never the node itself
    # (torch_cluster 1.6.3's own radius_graph searches m + 1 and drops the
    # node after the limit, leaving m + 1 where it was not found; our
    # dispatch drops it first).
    full = radius_graph(x, 0.6, None, False, None, flow="target_to_source",
                        backend="torch")
    count = torch.bincount(full[0], minlength=120).clamp(max=m)
    for e in (ours, theirs):
        assert torch.equal(torch.bincount(e[0], minlength=120), count)
        assert as_set(e) <= as_set(full)
    # Ours keeps the m nearest (torch_cluster the first found).
    dist = torch.cdist(x, x).fill_diagonal_(float("inf"))
    nearest_m = dist.topk(m, dim=1, largest=False).values
    got = neighbour_distances(ours, x, x)
    for i, v in got.items():
        assert torch.allclose(v, nearest_m[i], rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_nearest(dtype):
    x, y = points(80, dtype, 9), points(20, dtype, 10)
    assert torch.equal(nearest(x, y, backend="torch"),
                       nearest(x, y, backend="cluster"))
    bx, by = make_batch([30, 0, 50]), make_batch([7, 0, 13])
    assert torch.equal(nearest(x, y, bx, by, backend="torch"),
                       nearest(x, y, bx, by, backend="cluster"))
    for backend in ["torch", "cluster"]:  # x has an example y lacks
        with pytest.raises(ValueError):
            nearest(x, y, make_batch([30, 50]), make_batch([20]),
                    backend=backend)


@pytest.mark.parametrize("dtype", DTYPES)
def test_fps(dtype):
    sizes = [37, 1, 0, 64, 10]
    x = points(sum(sizes), dtype, 11)
    batch = make_batch(sizes)
    ptr = [0, 37, 38, 38, 102, 112]
    for ratio in [0.1, 0.5, 1.0, torch.tensor([0.2, 1.0, 0.5, 0.3, 0.7])]:
        ours = fps(x, batch, ratio, random_start=False, backend="torch")
        theirs = fps(x, batch, ratio, random_start=False, backend="cluster")
        assert torch.equal(ours, theirs)
        assert torch.equal(fps(x, ptr=ptr, ratio=ratio, random_start=False,
                               backend="cluster"), ours)
        assert torch.equal(fps(x, ptr=torch.tensor(ptr), ratio=ratio,
                               random_start=False, backend="torch"), ours)
    # Random starts differ (C rand() against torch.rand), the counts do not.
    assert fps(x, batch, 0.3, backend="cluster").numel() == \
        fps(x, batch, 0.3, backend="torch").numel()


@pytest.mark.parametrize("dtype", DTYPES + [torch.int32, torch.int64])
def test_grid_cluster_and_voxel_grid(dtype):
    gen = torch.Generator().manual_seed(12)
    pos = torch.rand(200, 3, generator=gen, dtype=torch.float64) * 20 - 5
    pos = pos.round() if not dtype.is_floating_point else pos
    pos = pos.to(dtype)
    batch = make_batch([50, 0, 150])
    for size, start, end in [(1.5, None, None), ([2, 3, 4], -6, 16),
                             (5, None, 30)]:
        assert torch.equal(
            grid_cluster(pos, size, start, end, backend="torch"),
            grid_cluster(pos, size, start, end, backend="cluster"))
        assert torch.equal(
            voxel_grid(pos, size, batch, start, end, backend="torch"),
            voxel_grid(pos, size, batch, start, end, backend="cluster"))


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64, torch.half,
                                   torch.bfloat16])
def test_grid_cluster_matches_torch_cluster_on_raw_inputs(dtype):
    # torch_cluster itself, called with integer / half tensors for pos,
    # size, start and end (as its own tests do), returns our ids.
    import torch_cluster
    gen = torch.Generator().manual_seed(13)
    pos = torch.randint(-50, 50, (500, 3), generator=gen).to(dtype)
    for size, start, end in [([3, 3, 3], None, None),
                             ([5, 2, 7], [-60] * 3, [60] * 3)]:
        def t(v):
            return None if v is None else torch.tensor(v, dtype=dtype)

        theirs = torch_cluster.grid_cluster(pos, t(size), t(start), t(end))
        ours = grid_cluster(pos, t(size), t(start), t(end), backend="torch")
        assert theirs.dtype == ours.dtype == torch.long
        assert torch.equal(ours, theirs)
