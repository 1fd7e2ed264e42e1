import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from gdl_pyg import typing as gdl_typing
from gdl_pyg.ops.radius import radius, radius_graph
from gdl_pyg.testing import with_package

# Both exact backends must match the cKDTree reference and each other.
BACKENDS = ["torch", "scipy"]


def make_batch(sizes):
    return torch.repeat_interleave(torch.arange(len(sizes)),
                                   torch.tensor(sizes))


def ref_radius(x, y, r, batch_x, batch_y, exclude_self=False):
    r"""Set of (query, neighbour) pairs within ``r`` from scipy's cKDTree."""
    x, y = x.double().numpy(), y.double().numpy()
    bx, by = batch_x.numpy(), batch_y.numpy()
    out = set()
    for b in np.unique(by):
        ix, iy = np.nonzero(bx == b)[0], np.nonzero(by == b)[0]
        if len(ix) == 0:
            continue
        for q, nbr in zip(iy, cKDTree(x[ix]).query_ball_point(y[iy], r)):
            out.update((int(q), int(ix[j])) for j in nbr
                       if not (exclude_self and ix[j] == q))
    return out


def as_set(edge_index):
    return set(map(tuple, edge_index.t().tolist()))


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("loop", [False, True])
@pytest.mark.parametrize("flow", ["source_to_target", "target_to_source"])
@pytest.mark.parametrize("batched", [False, True])
@pytest.mark.parametrize("backend", BACKENDS)
def test_radius_graph_matches_ckdtree(dim, dtype, loop, flow, batched,
                                      backend):
    gen = torch.Generator().manual_seed(dim + 10 * loop + 100 * batched)
    sizes = [80, 2, 0, 110] if batched else [160]
    x = torch.rand(sum(sizes), dim, generator=gen, dtype=torch.float64)
    batch = make_batch(sizes) if batched else None
    r = 0.15 if dim == 2 else 0.3
    out = radius_graph(x.to(dtype), r, batch, loop=loop, flow=flow,
                       max_num_neighbors=None, backend=backend)
    # The backends agree edge for edge, in the same order, with or without
    # a limit on the number of neighbours.
    if backend != "torch":
        assert_same_as_torch(x.to(dtype), r, batch, loop, flow, out)
    b = make_batch(sizes)
    expected = ref_radius(x, x, r, b, b, exclude_self=not loop)
    center, nbr = (out[1], out[0]) if flow == "source_to_target" else \
        (out[0], out[1])
    assert as_set(torch.stack([center, nbr])) == expected
    assert out.size(1) == len(expected) > 0
    # A radius graph without truncation is symmetric.
    assert as_set(out) == as_set(out.flip(0))


def assert_same_as_torch(x, r, batch, loop, flow, out):
    r"""``out`` (the scipy backend, no limit) equals the torch backend's
    edges, and so do both backends with a limit of 5 neighbours."""
    assert torch.equal(out, radius_graph(x, r, batch, loop=loop, flow=flow,
                                         max_num_neighbors=None,
                                         backend="torch"))
    assert torch.equal(
        radius_graph(x, r, batch, loop=loop, flow=flow, max_num_neighbors=5,
                     backend="scipy"),
        radius_graph(x, r, batch, loop=loop, flow=flow, max_num_neighbors=5,
                     backend="torch"))


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("backend", BACKENDS)
def test_radius_bipartite_matches_ckdtree(dim, backend):
    gen = torch.Generator().manual_seed(11)
    sx, sy = [50, 0, 60], [20, 4, 9]
    x = torch.rand(sum(sx), dim, generator=gen, dtype=torch.float64)
    y = torch.rand(sum(sy), dim, generator=gen, dtype=torch.float64)
    bx, by = make_batch(sx), make_batch(sy)
    out = radius(x, y, 0.3, bx, by, max_num_neighbors=None, backend=backend)
    assert as_set(out) == ref_radius(x, y, 0.3, bx, by)
    assert torch.equal(out, radius(x, y, 0.3, bx, by, max_num_neighbors=None,
                                   backend="torch"))
    assert torch.equal(radius(x, y, 0.3, bx, by, 3, backend=backend),
                       radius(x, y, 0.3, bx, by, 3, backend="torch"))
    # Sorted by query, then by index into x.
    key = out[0] * x.size(0) + out[1]
    assert bool((key[1:] > key[:-1]).all())


@pytest.mark.parametrize("backend", BACKENDS)
def test_max_num_neighbors_keeps_the_nearest(backend):
    gen = torch.Generator().manual_seed(12)
    x = torch.rand(300, 3, generator=gen, dtype=torch.float64)
    r, m = 0.4, 5
    out = radius_graph(x, r, max_num_neighbors=m, flow="target_to_source",
                       backend=backend)
    full = ref_radius(x, x, r, torch.zeros(300, dtype=torch.long),
                      torch.zeros(300, dtype=torch.long), exclude_self=True)
    _, nbr = cKDTree(x.numpy()).query(x.numpy(), k=m + 1)
    expected = set()
    for i in range(300):
        count = sum(1 for (q, _) in full if q == i)
        keep = [int(j) for j in nbr[i, 1:]][:min(m, count)]
        expected.update((i, j) for j in keep)
    assert as_set(out) == expected
    deg = torch.bincount(out[0], minlength=300)
    assert int(deg.max()) == m
    # Every kept neighbour lies within r.
    assert bool(((x[out[0]] - x[out[1]]).norm(dim=-1) < r).all())
    # Truncated edges are a subset of the untruncated ones.
    assert as_set(out) <= full
    # Without self-loops the limit counts other nodes only.
    looped = radius_graph(x, r, max_num_neighbors=m, loop=True,
                          flow="target_to_source", backend=backend)
    assert int(torch.bincount(looped[0]).max()) == m
    assert as_set(looped) - {(i, i) for i in range(300)} <= as_set(out)


@pytest.mark.parametrize("backend", BACKENDS)
def test_max_num_neighbors_ties_by_index(backend):
    # All points coincide: every distance is 0, the lowest indices win.
    x = torch.zeros(10, 2)
    out = radius(x, x[:3], 1.0, max_num_neighbors=4, backend=backend)
    assert out.tolist() == [[0] * 4 + [1] * 4 + [2] * 4, [0, 1, 2, 3] * 3]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("loop", [False, True])
def test_radius_graph_lattice_ties_agree_between_backends(dtype, loop):
    # A shuffled 3-D lattice with duplicates in a batch with empty and tiny
    # examples: distances tie in shells (1, sqrt 2, sqrt 3, 2, ...) and
    # equal r exactly (strict inequality), max_num_neighbors cuts through
    # shells, so the scipy backend must resolve the ties by index.
    gen = torch.Generator().manual_seed(23)
    g = torch.arange(5, dtype=dtype)
    lattice = torch.cartesian_prod(g, g, g)
    lattice = torch.cat([lattice, lattice[:9]])
    parts = [lattice[torch.randperm(lattice.size(0), generator=gen)],
             lattice[:0], lattice[:1], lattice[:50]]
    x = torch.cat(parts)
    batch = make_batch([p.size(0) for p in parts])
    for r in [1.0, 1.5, 2.3]:
        for m in [None, 4, 20]:
            out = radius_graph(x, r, batch, loop=loop, max_num_neighbors=m,
                               backend="scipy")
            assert torch.equal(out, radius_graph(x, r, batch, loop=loop,
                                                 max_num_neighbors=m,
                                                 backend="torch"))
    # Against the brute-force (distance, index) order on the first example.
    pts = parts[0].double().numpy()
    d = ((pts[:, None] - pts[None]) ** 2).sum(-1)  # Exact on integers.
    out = radius_graph(parts[0], 1.5, loop=loop, max_num_neighbors=7,
                       flow="target_to_source", backend="scipy")
    for i in range(pts.shape[0]):
        order = [j for j in np.lexsort((np.arange(pts.shape[0]), d[i]))
                 if d[i, j] < 1.5 ** 2 and (loop or j != i)][:7]
        assert out[1][out[0] == i].tolist() == sorted(order)


@pytest.mark.parametrize("backend", BACKENDS)
def test_radius_is_strict(backend):
    x = torch.tensor([[0.0], [1.0], [2.0]], dtype=torch.float64)
    out = radius_graph(x, 1.0, backend=backend)
    assert out.shape == (2, 0)
    assert radius_graph(x, 1.0 + 1e-9, backend=backend).size(1) == 4


@pytest.mark.parametrize("backend", BACKENDS)
def test_radius_block_size_does_not_change_result(backend):
    gen = torch.Generator().manual_seed(13)
    sizes = [40, 1, 70, 25]
    x = torch.rand(sum(sizes), 3, generator=gen)
    batch = make_batch(sizes)
    full = radius_graph(x, 0.35, batch, max_num_neighbors=6, backend=backend)
    for block_size in [1, 9, 80, 3000]:
        assert torch.equal(
            radius_graph(x, 0.35, batch, max_num_neighbors=6,
                         block_size=block_size, backend=backend), full)
    full = radius_graph(x, 0.35, batch, max_num_neighbors=None,
                        backend=backend)
    assert torch.equal(radius_graph(x, 0.35, batch, max_num_neighbors=None,
                                    block_size=7, backend=backend), full)


@pytest.mark.parametrize("backend", BACKENDS)
def test_radius_graph_relabelling_relabels_edges(backend):
    gen = torch.Generator().manual_seed(14)
    x = torch.rand(100, 3, generator=gen, dtype=torch.float64)
    perm = torch.randperm(100, generator=gen)
    out = radius_graph(x, 0.3, max_num_neighbors=None, backend=backend)
    out_perm = radius_graph(x[perm], 0.3, max_num_neighbors=None,
                            backend=backend)
    assert as_set(perm[out_perm]) == as_set(out)
    assert as_set(out_perm) != as_set(out)


@pytest.mark.parametrize("backend", BACKENDS)
def test_dense_ball_without_limit(backend):
    # More neighbours than the scipy backend's first candidate count (32):
    # the unlimited search must keep asking until it has them all.
    gen = torch.Generator().manual_seed(24)
    x = torch.rand(150, 2, generator=gen, dtype=torch.float64)
    out = radius_graph(x, 0.5, max_num_neighbors=None, backend=backend)
    b = torch.zeros(150, dtype=torch.long)
    assert as_set(out.flip(0)) == ref_radius(x, x, 0.5, b, b, True)
    assert int(torch.bincount(out[1]).max()) > 64


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_inputs(backend):
    e = torch.empty(0, 3)
    x = torch.rand(5, 3)
    assert radius_graph(e, 0.5, backend=backend).shape == (2, 0)
    assert radius(e, x, 0.5, backend=backend).shape == (2, 0)
    assert radius(x, e, 0.5, backend=backend).shape == (2, 0)
    assert radius_graph(x[:1], 0.5, loop=True, backend=backend).tolist() == \
        [[0], [0]]
    # Batches whose examples are empty on either side.
    bx, by = make_batch([0, 5, 0]), make_batch([2, 0, 3])
    out = radius(x, x, 10.0, bx, by, backend=backend)
    assert out.shape == (2, 0) and out.dtype == torch.long


@pytest.mark.parametrize("call, err, match", [
    (lambda x, b: radius_graph(x, 0.0), ValueError, "'r' > 0"),
    (lambda x, b: radius_graph(x, -1.0), ValueError, "'r' > 0"),
    (lambda x, b: radius_graph(x, float("nan")), ValueError, "'r' > 0"),
    (lambda x, b: radius_graph(x, "1"), TypeError, "'r' to be a float"),
    (lambda x, b: radius_graph(x, 1.0, max_num_neighbors=0), ValueError,
     "max_num_neighbors"),
    (lambda x, b: radius_graph(x.view(2, 5, 3), 1.0), ValueError, "shape"),
    (lambda x, b: radius_graph(x, 1.0, b[1:]), ValueError, "shape"),
    (lambda x, b: radius_graph(x, 1.0, b.flip(0)), ValueError, "sorted"),
    (lambda x, b: radius_graph(x, 1.0, flow="x"), ValueError, "'flow'"),
    (lambda x, b: radius(x, x[:, :1], 1.0), ValueError, "same number"),
    (lambda x, b: radius(x, x, 1.0, None, b), ValueError, "or neither"),
    (lambda x, b: radius_graph(x, 1.0, backend="kd"), ValueError, "backend"),
    (lambda x, b: radius_graph(x.long(), 1.0), TypeError, "floating point"),
    (lambda x, b: radius_graph(x, 1.0, b.float()), TypeError, "integer"),
    (lambda x, b: radius_graph(x, 1.0, b - 1), ValueError, "non-negative"),
    (lambda x, b: radius_graph(x, torch.ones(2)), ValueError, "scalar 'r'"),
    (lambda x, b: radius_graph(x, 1.0, max_num_neighbors=2.0), TypeError,
     "max_num_neighbors"),
    (lambda x, b: radius(x, x.double(), 1.0), TypeError, "same dtype"),
    (lambda x, b: radius(x, x, 1.0, b, b[:5]), ValueError, "'batch_y'"),
])
def test_bad_input(call, err, match):
    x = torch.rand(10, 3)
    b = make_batch([3, 7])
    with pytest.raises(err, match=match):
        call(x, b)


def test_nan_coordinates():
    x = torch.rand(10, 3)
    x[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        radius_graph(x, 0.5)


@pytest.mark.skipif(gdl_typing.WITH_TORCH_CLUSTER,
                    reason="torch_cluster is installed")
def test_cluster_backend_requires_torch_cluster():
    with pytest.raises(ImportError, match="torch-cluster"):
        radius_graph(torch.rand(5, 3), 0.5, backend="cluster")


@with_package("torch_cluster")
def test_agrees_with_torch_cluster_without_overflow():
    gen = torch.Generator().manual_seed(15)
    x = torch.rand(200, 3, generator=gen)
    batch = make_batch([90, 110])
    a = radius_graph(x, 0.2, batch, max_num_neighbors=200, backend="torch")
    b = radius_graph(x, 0.2, batch, max_num_neighbors=200,
                     backend="cluster")
    assert as_set(a) == as_set(b)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="requires CUDA")
def test_radius_graph_cuda_matches_cpu():
    gen = torch.Generator().manual_seed(16)
    x = torch.rand(500, 3, generator=gen, dtype=torch.float64)
    batch = make_batch([200, 300])
    cpu = radius_graph(x, 0.2, batch, max_num_neighbors=8)
    gpu = radius_graph(x.cuda(), 0.2, batch.cuda(), max_num_neighbors=8)
    assert gpu.is_cuda and torch.equal(gpu.cpu(), cpu)
    # An explicit KD-tree search of CUDA input answers on CUDA.
    tree = radius_graph(x.cuda(), 0.2, batch.cuda(), max_num_neighbors=8,
                        backend="scipy")
    assert tree.is_cuda and torch.equal(tree.cpu(), cpu)


@pytest.mark.parametrize("dtype", [torch.half, torch.bfloat16])
@pytest.mark.parametrize("backend", BACKENDS)
def test_low_precision_inputs_are_searched_in_float32(dtype, backend):
    gen = torch.Generator().manual_seed(31)
    x = torch.rand(120, 3, generator=gen).to(dtype)
    y = torch.rand(40, 3, generator=gen).to(dtype)
    bx, by = make_batch([50, 70]), make_batch([15, 25])
    out = radius_graph(x, 0.3, bx, max_num_neighbors=6, backend=backend)
    assert out.dtype == torch.long and out.size(1) > 0
    assert torch.equal(out, radius_graph(x.float(), 0.3, bx,
                                         max_num_neighbors=6,
                                         backend=backend))
    assert torch.equal(radius(x, y, 0.3, bx, by, backend=backend),
                       radius(x.float(), y.float(), 0.3, bx, by,
                              backend=backend))
