import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from gdl_pyg import typing as gdl_typing
from gdl_pyg.ops._utils import SCIPY_MAX_DIM, resolve_neighbor_backend
from gdl_pyg.ops.knn import knn, knn_graph, nearest
from gdl_pyg.testing import with_package

# Both exact backends must match the cKDTree reference and each other.
BACKENDS = ["torch", "scipy"]


def make_batch(sizes):
    return torch.repeat_interleave(torch.arange(len(sizes)),
                                   torch.tensor(sizes))


def ref_knn(x, y, k, batch_x, batch_y, exclude_self=False):
    r"""Set of (query, neighbour) pairs from scipy's cKDTree, per example."""
    x, y = x.double().numpy(), y.double().numpy()
    bx, by = batch_x.numpy(), batch_y.numpy()
    out = set()
    for b in np.unique(by):
        ix, iy = np.nonzero(bx == b)[0], np.nonzero(by == b)[0]
        if len(ix) == 0:
            continue
        kk = min(k + int(exclude_self), len(ix))
        _, nbr = cKDTree(x[ix]).query(y[iy], k=kk)
        nbr = nbr.reshape(len(iy), kk)
        for q, row in zip(iy, nbr):
            cand = [int(ix[j]) for j in row
                    if not (exclude_self and ix[j] == q)]
            out.update((int(q), c) for c in cand[:k])
    return out


def as_set(edge_index):
    return set(map(tuple, edge_index.t().tolist()))


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("loop", [False, True])
@pytest.mark.parametrize("flow", ["source_to_target", "target_to_source"])
@pytest.mark.parametrize("batched", [False, True])
@pytest.mark.parametrize("backend", BACKENDS)
def test_knn_graph_matches_ckdtree(dim, dtype, loop, flow, batched, backend):
    gen = torch.Generator().manual_seed(dim + 10 * loop + 100 * batched)
    sizes = [70, 3, 0, 120] if batched else [150]
    x = torch.rand(sum(sizes), dim, generator=gen, dtype=torch.float64)
    batch = make_batch(sizes) if batched else None
    k = 6
    out = knn_graph(x.to(dtype), k, batch, loop=loop, flow=flow,
                    backend=backend)
    # The backends agree edge for edge, in the same order.
    if backend != "torch":
        assert torch.equal(out, knn_graph(x.to(dtype), k, batch, loop=loop,
                                          flow=flow, backend="torch"))
    assert out.dtype == torch.long and out.size(0) == 2
    b = make_batch(sizes)
    # With loop=True the point itself is its own nearest neighbour.
    expected = ref_knn(x, x, k, b, b, exclude_self=not loop)
    center, nbr = (out[1], out[0]) if flow == "source_to_target" else \
        (out[0], out[1])
    assert as_set(torch.stack([center, nbr])) == expected
    assert out.size(1) == len(expected)  # No duplicate edges.
    # Every node has min(k, n_b - 1 + loop) neighbours.
    deg = torch.bincount(center, minlength=x.size(0))
    want = torch.tensor([min(k, n - 1 + int(loop)) for n in sizes
                         for _ in range(n)], dtype=torch.long)
    assert torch.equal(deg, want)


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("backend", BACKENDS)
def test_knn_bipartite_matches_ckdtree(dim, backend):
    gen = torch.Generator().manual_seed(1)
    sx, sy = [40, 2, 0, 55], [10, 5, 7, 0]
    x = torch.rand(sum(sx), dim, generator=gen, dtype=torch.float64)
    y = torch.rand(sum(sy), dim, generator=gen, dtype=torch.float64)
    bx, by = make_batch(sx), make_batch(sy)
    out = knn(x, y, 4, bx, by, backend=backend)
    assert as_set(out) == ref_knn(x, y, 4, bx, by)
    assert torch.equal(out, knn(x, y, 4, bx, by, backend="torch"))
    # Sorted by query, then by distance.
    assert bool((out[0][1:] >= out[0][:-1]).all())
    d = (y[out[0]] - x[out[1]]).norm(dim=-1)
    same = out[0][1:] == out[0][:-1]
    assert bool((d[1:][same] >= d[:-1][same]).all())
    # Queries of example 2 have no candidates; example 1 only has 2.
    assert torch.bincount(out[0], minlength=y.size(0)).tolist() == \
        [4] * 10 + [2] * 5 + [0] * 7


@pytest.mark.parametrize("backend", BACKENDS)
def test_knn_block_size_does_not_change_result(backend):
    gen = torch.Generator().manual_seed(2)
    sizes = [33, 1, 64, 17]
    x = torch.rand(sum(sizes), 3, generator=gen)
    batch = make_batch(sizes)
    full = knn_graph(x, 5, batch, backend=backend)
    for block_size in [1, 7, 64, 500, 2000]:
        assert torch.equal(knn_graph(x, 5, batch, block_size=block_size,
                                     backend=backend), full)
    y = torch.rand(40, 3, generator=gen)
    by = make_batch([10, 10, 10, 10])
    full = knn(x, y, 3, batch, by, backend=backend)
    for block_size in [1, 5, 100]:
        assert torch.equal(knn(x, y, 3, batch, by, block_size=block_size,
                               backend=backend), full)


def lexsort_knn(x, y, k, exclude_self=False):
    r"""Brute-force reference: the first ``k`` of (distance^2, index)."""
    xn, yn = x.double().numpy(), y.double().numpy()
    d = ((yn[:, None] - xn[None]) ** 2).sum(-1)  # Exact on small integers.
    out = []
    for i in range(yn.shape[0]):
        order = [j for j in np.lexsort((np.arange(xn.shape[0]), d[i]))
                 if not (exclude_self and j == i)]
        out.append(order[:k])
    return out


@pytest.mark.parametrize("backend", BACKENDS)
def test_knn_ties_are_broken_by_index(backend):
    # Integer lattice with duplicates: many equal distances.
    g = torch.arange(4, dtype=torch.float64)
    x = torch.cartesian_prod(g, g)
    x = torch.cat([x, x[:5]])  # Duplicated points.
    k = 5
    out = knn(x, x, k, backend=backend)
    for i, order in enumerate(lexsort_knn(x, x, k)):
        assert out[1][out[0] == i].tolist() == order
    # Chunked and unchunked agree on ties too.
    assert torch.equal(knn(x, x, k, block_size=3, backend=backend), out)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("loop", [False, True])
def test_knn_graph_lattice_ties_agree_between_backends(dtype, loop):
    # A shuffled 3-D lattice with duplicated points, in a batch with empty
    # and tiny examples: the scipy backend must re-query the tied rows and
    # give exactly the torch backend's edges (k cuts through distance shells
    # of sizes 6, 12, 8, ...; 0 for the duplicates).
    gen = torch.Generator().manual_seed(21)
    g = torch.arange(5, dtype=dtype)
    lattice = torch.cartesian_prod(g, g, g)
    lattice = torch.cat([lattice, lattice[:9]])
    parts = [lattice[torch.randperm(lattice.size(0), generator=gen)],
             lattice[:0], lattice[:2], lattice[:60]]
    x = torch.cat(parts)
    batch = make_batch([p.size(0) for p in parts])
    for k in [1, 5, 6, 7, 16, 19, 27]:
        out = knn_graph(x, k, batch, loop=loop, flow="target_to_source",
                        backend="scipy")
        assert torch.equal(out, knn_graph(x, k, batch, loop=loop,
                                          flow="target_to_source",
                                          backend="torch"))
    # Against the brute-force (distance, index) order on the first example.
    n = parts[0].size(0)
    out = knn_graph(parts[0], 7, loop=loop, flow="target_to_source",
                    backend="scipy")
    ref = lexsort_knn(parts[0], parts[0], 7, exclude_self=not loop)
    assert out[1].view(n, 7).tolist() == ref


@pytest.mark.parametrize("backend", BACKENDS)
def test_knn_all_points_coincide(backend):
    # Every distance is zero: the lowest indices win (the scipy backend
    # doubles its candidates until it has seen every point).
    x = torch.zeros(40, 3)
    out = knn_graph(x, 4, flow="target_to_source", backend=backend)
    want = [[j for j in range(5) if j != i][:4] for i in range(40)]
    assert out[1].view(40, 4).tolist() == want


@pytest.mark.parametrize("backend", BACKENDS)
def test_knn_graph_relabelling_relabels_edges(backend):
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(90, 3, generator=gen, dtype=torch.float64)
    perm = torch.randperm(90, generator=gen)
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(90)
    out = knn_graph(x, 7, backend=backend)
    # Node i of the new cloud is perm[i].
    out_perm = knn_graph(x[perm], 7, backend=backend)
    assert as_set(perm[out_perm]) == as_set(out)
    assert as_set(inv[out]) == as_set(out_perm)
    # A wrong relabelling is detected.
    assert as_set(out_perm) != as_set(out)


def test_knn_cosine():
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(60, 5, generator=gen, dtype=torch.float64)
    y = torch.randn(8, 5, generator=gen, dtype=torch.float64)
    out = knn(x, y, 3, cosine=True)
    xn = x.numpy() / np.linalg.norm(x.numpy(), axis=1, keepdims=True)
    yn = y.numpy() / np.linalg.norm(y.numpy(), axis=1, keepdims=True)
    order = np.argsort(1.0 - yn @ xn.T, axis=1)[:, :3]
    assert out[1].view(8, 3).tolist() == order.tolist()
    # The KD-tree backend is Euclidean only; "auto" keeps cosine on torch.
    with pytest.raises(ValueError, match="Euclidean"):
        knn(x, y, 3, cosine=True, backend="scipy")
    assert resolve_neighbor_backend("auto", "knn", x, cosine=True) in \
        ("torch", "cluster")


@pytest.mark.parametrize("backend", BACKENDS)
def test_knn_high_dimensional_features(backend):
    gen = torch.Generator().manual_seed(5)
    x = 100.0 + torch.randn(200, 16, generator=gen, dtype=torch.float64)
    out = knn_graph(x, 4, flow="target_to_source", backend=backend)
    _, nbr = cKDTree(x.numpy()).query(x.numpy(), k=5)
    assert out[1].view(200, 4).tolist() == nbr[:, 1:].tolist()


@pytest.mark.skipif(gdl_typing.WITH_TORCH_CLUSTER,
                    reason="torch_cluster is installed")
def test_auto_backend_dispatch():
    x = torch.rand(10, 3)
    assert resolve_neighbor_backend("auto", "knn", x) == "scipy"
    wide = torch.rand(10, SCIPY_MAX_DIM + 1)
    assert resolve_neighbor_backend("auto", "knn", wide) == "torch"
    assert resolve_neighbor_backend("auto", "knn", x.to("meta")) == "torch"
    assert resolve_neighbor_backend("torch", "knn", x) == "torch"
    assert resolve_neighbor_backend("scipy", "knn", wide) == "scipy"
    # "auto" is the KD-tree here, with the torch backend's result.
    gen = torch.Generator().manual_seed(22)
    x = torch.rand(300, 3, generator=gen)
    assert torch.equal(knn_graph(x, 9), knn_graph(x, 9, backend="torch"))


@pytest.mark.parametrize("backend", BACKENDS)
def test_nearest(backend):
    # torch_cluster's semantics: for each row of x, its nearest row of y
    x = torch.tensor([[0.0], [1.0], [10.0]])
    y = torch.tensor([[0.0], [10.0]])
    assert nearest(x, y, backend=backend).tolist() == [0, 0, 1]
    # torch_cluster's documented example
    x = torch.tensor([[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]])
    y = torch.tensor([[-1.0, 0.0], [1.0, 0.0]])
    assert nearest(x, y, backend=backend).tolist() == [0, 0, 1, 1]
    gen = torch.Generator().manual_seed(6)
    x = torch.rand(50, 3, generator=gen, dtype=torch.float64)
    y = torch.rand(20, 3, generator=gen, dtype=torch.float64)
    bx, by = make_batch([30, 20]), make_batch([12, 8])
    out = nearest(x, y, bx, by, backend=backend)
    _, i0 = cKDTree(y[:12].numpy()).query(x[:30].numpy())
    _, i1 = cKDTree(y[12:].numpy()).query(x[30:].numpy())
    assert out.tolist() == i0.tolist() + (i1 + 12).tolist()
    # an example of batch_x without points in batch_y is an error
    with pytest.raises(ValueError, match="none in 'y'"):
        nearest(x, y[:12], bx, by[:12], backend=backend)
    with pytest.raises(ValueError, match="none in 'y'"):
        nearest(x, y[:0], backend=backend)
    # Ties (equidistant lattice points) go to the lower index.
    g = torch.arange(3.0)
    lattice = torch.cartesian_prod(g, g)
    mid = torch.tensor([[0.5, 0.5], [1.5, 1.0], [2.0, 2.0]])
    assert nearest(mid, lattice, backend=backend).tolist() == [0, 4, 8]


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_inputs(backend):
    e = torch.empty(0, 3)
    x = torch.rand(5, 3)
    assert knn_graph(e, 3, backend=backend).shape == (2, 0)
    assert knn(e, x, 3, backend=backend).shape == (2, 0)
    assert knn(x, e, 3, backend=backend).shape == (2, 0)
    # A single node, no loop.
    assert knn_graph(x[:1], 3, backend=backend).shape == (2, 0)
    assert knn_graph(x[:1], 3, loop=True, backend=backend).tolist() == \
        [[0], [0]]
    assert nearest(e, x, backend=backend).shape == (0,)
    # Batches whose examples are empty on either side.
    bx, by = make_batch([0, 5, 0]), make_batch([2, 0, 3])
    out = knn(x, x, 2, bx, by, backend=backend)
    assert out.shape == (2, 0) and out.dtype == torch.long


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_dimensional_input_is_a_column(backend):
    x = torch.tensor([0.0, 1.0, 3.0, 7.0])
    assert as_set(knn_graph(x, 1, flow="target_to_source",
                            backend=backend)) == \
        {(0, 1), (1, 0), (2, 1), (3, 2)}


@pytest.mark.parametrize("call, err, match", [
    (lambda x, b: knn_graph(x, 0), ValueError, "'k' > 0"),
    (lambda x, b: knn_graph(x, 2.5), TypeError, "'k' to be an int"),
    (lambda x, b: knn_graph(x.view(2, 5, 3), 2), ValueError, "shape"),
    (lambda x, b: knn_graph(x.long(), 2), TypeError, "floating point"),
    (lambda x, b: knn_graph(x, 2, b[:-1]), ValueError, "'batch' with shape"),
    (lambda x, b: knn_graph(x, 2, b.flip(0)), ValueError, "sorted"),
    (lambda x, b: knn_graph(x, 2, b.float()), TypeError, "integer"),
    (lambda x, b: knn_graph(x, 2, b - 1), ValueError, "non-negative"),
    (lambda x, b: knn_graph(x, 2, flow="up"), ValueError, "'flow'"),
    (lambda x, b: knn_graph(x, 2, backend="kdtree"), ValueError, "backend"),
    (lambda x, b: knn_graph(x, 2, cosine=True, backend="scipy"), ValueError,
     "Euclidean"),
    (lambda x, b: knn_graph(x, 2, b, batch_size=1), ValueError,
     "batch_size"),
    (lambda x, b: knn(x, x[:, :2], 2), ValueError, "same number"),
    (lambda x, b: knn(x, x, 2, b), ValueError, "or neither"),
    (lambda x, b: knn(x, x.double(), 2), TypeError, "same dtype"),
])
def test_bad_input(call, err, match):
    x = torch.rand(10, 3)
    b = make_batch([4, 6])
    with pytest.raises(err, match=match):
        call(x, b)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_coordinates(bad):
    x = torch.rand(10, 3)
    x[3, 1] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        knn_graph(x, 2)
    with pytest.raises(ValueError, match="NaN or infinite"):
        knn(torch.rand(4, 3), x, 2)


@pytest.mark.skipif(gdl_typing.WITH_TORCH_CLUSTER,
                    reason="torch_cluster is installed")
def test_cluster_backend_requires_torch_cluster():
    with pytest.raises(ImportError, match="torch-cluster"):
        knn_graph(torch.rand(5, 3), 2, backend="cluster")


@with_package("torch_cluster")
def test_agrees_with_torch_cluster():
    gen = torch.Generator().manual_seed(7)
    x = torch.rand(200, 3, generator=gen)
    batch = make_batch([80, 120])
    for loop in [False, True]:
        a = knn_graph(x, 6, batch, loop, backend="torch")
        b = knn_graph(x, 6, batch, loop, backend="cluster")
        assert as_set(a) == as_set(b)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="requires CUDA")
def test_knn_graph_cuda_matches_cpu():
    gen = torch.Generator().manual_seed(8)
    x = torch.rand(500, 3, generator=gen, dtype=torch.float64)
    batch = make_batch([200, 300])
    cpu = knn_graph(x, 8, batch)
    gpu = knn_graph(x.cuda(), 8, batch.cuda())
    assert gpu.is_cuda and torch.equal(gpu.cpu(), cpu)
    # An explicit KD-tree search of CUDA input answers on CUDA.
    tree = knn_graph(x.cuda(), 8, batch.cuda(), backend="scipy")
    assert tree.is_cuda and torch.equal(tree.cpu(), cpu)


@pytest.mark.parametrize("dtype", [torch.half, torch.bfloat16])
@pytest.mark.parametrize("backend", BACKENDS)
def test_low_precision_inputs_are_searched_in_float32(dtype, backend):
    gen = torch.Generator().manual_seed(30)
    x = torch.rand(120, 3, generator=gen).to(dtype)
    y = torch.rand(40, 3, generator=gen).to(dtype)
    bx, by = make_batch([50, 70]), make_batch([15, 25])
    out = knn_graph(x, 5, bx, backend=backend)
    assert out.dtype == torch.long
    assert torch.equal(out, knn_graph(x.float(), 5, bx, backend=backend))
    assert torch.equal(knn(x, y, 4, bx, by, backend=backend),
                       knn(x.float(), y.float(), 4, bx, by, backend=backend))
    assert torch.equal(nearest(y, x, by, bx, backend=backend),
                       nearest(y.float(), x.float(), by, bx, backend=backend))
    if backend == "torch":
        assert torch.equal(knn(x, y, 4, cosine=True, backend=backend),
                           knn(x.float(), y.float(), 4, cosine=True,
                               backend=backend))


def test_cosine_is_not_sent_to_torch_clusters_cpu_kernel():
    x = torch.rand(10, 3)
    # torch_cluster's CPU kernel raises a RuntimeError on cosine=True.
    with pytest.raises(ValueError, match="cosine=True on CUDA only"):
        knn_graph(x, 2, cosine=True, backend="cluster")
    with pytest.raises(ValueError, match="cosine=True on CUDA only"):
        knn(x, x, 2, cosine=True, backend="cluster")
    assert resolve_neighbor_backend("auto", "knn", x, cosine=True) == "torch"
    assert torch.equal(knn_graph(x, 3, cosine=True),
                       knn_graph(x, 3, cosine=True, backend="torch"))
