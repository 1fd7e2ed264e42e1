r"""The two routes of the KD-tree radius graph (all pairs through
``cKDTree.query_pairs``, and K candidates per query) and the fast self
exclusion of the k-NN graph return exactly the edges of the torch backend,
in the same order."""
import numpy as np
import pytest
import torch

import gdl_pyg.ops._kdtree as kdtree
from gdl_pyg.ops import knn_graph, radius_graph


def both_routes(monkeypatch, *args, **kwargs):
    calls = []
    original = kdtree._radius_pairs

    def spy(*a, **kw):
        calls.append(1)
        return original(*a, **kw)

    monkeypatch.setattr(kdtree, "_radius_pairs", spy)
    pairs = radius_graph(*args, backend="scipy", **kwargs)
    took_pairs = len(calls) == 1
    monkeypatch.setattr(kdtree, "PAIRS_MAX_MEAN_FACTOR", 0.0)
    candidates = radius_graph(*args, backend="scipy", **kwargs)
    monkeypatch.undo()
    assert len(calls) == int(took_pairs)  # The second call did not use it.
    return pairs, candidates, took_pairs


def make_batch(n, num_examples, seed):
    gen = torch.Generator().manual_seed(seed)
    return torch.sort(torch.randint(0, num_examples, (n,),
                                    generator=gen)).values


@pytest.mark.parametrize("dim", [1, 3, 5])
@pytest.mark.parametrize("max_num_neighbors", [None, 2, 8, 32])
@pytest.mark.parametrize("loop", [False, True])
@pytest.mark.parametrize("batched", [False, True])
def test_routes_equal_torch_backend(monkeypatch, dim, max_num_neighbors,
                                    loop, batched):
    gen = torch.Generator().manual_seed(dim)
    x = torch.rand(400, dim, dtype=torch.float64, generator=gen)
    r = {1: 0.02, 3: 0.2, 5: 0.45}[dim]
    batch = make_batch(400, 3, dim) if batched else None
    kwargs = dict(batch=batch, loop=loop, max_num_neighbors=max_num_neighbors)
    pairs, candidates, took_pairs = both_routes(monkeypatch, x, r, **kwargs)
    expected = radius_graph(x, r, backend="torch", **kwargs)
    assert pairs.size(1) > 0
    assert torch.equal(pairs, expected)
    assert torch.equal(candidates, expected)
    if max_num_neighbors is None or max_num_neighbors >= 8:
        assert took_pairs


@pytest.mark.parametrize("max_num_neighbors", [None, 3, 7, 20])
@pytest.mark.parametrize("loop", [False, True])
@pytest.mark.parametrize("r", [1.0, 1.5, 2.0])
def test_routes_resolve_lattice_ties_by_index(monkeypatch, max_num_neighbors,
                                              loop, r):
    # Integer lattice: distances tie exactly and some equal r (excluded);
    # crowded nodes must keep the nearest, ties by lower index.
    g = torch.arange(5.0)
    x = torch.stack(torch.meshgrid(g, g, g, indexing="ij"), -1).view(-1, 3)
    kwargs = dict(loop=loop, max_num_neighbors=max_num_neighbors)
    pairs, candidates, took_pairs = both_routes(monkeypatch, x, r, **kwargs)
    expected = radius_graph(x, r, backend="torch", **kwargs)
    if max_num_neighbors is None or max_num_neighbors >= 7:
        assert took_pairs  # At most 32 neighbours: few enough.
    assert torch.equal(pairs, expected)
    assert torch.equal(candidates, expected)


@pytest.mark.parametrize("loop", [False, True])
def test_routes_with_duplicated_points(monkeypatch, loop):
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(60, 3, generator=gen, dtype=torch.float64).repeat(3, 1)
    for m in [None, 2, 5]:
        pairs, candidates, _ = both_routes(monkeypatch, x, 0.3, loop=loop,
                                           max_num_neighbors=m)
        expected = radius_graph(x, 0.3, loop=loop, max_num_neighbors=m,
                                backend="torch")
        assert torch.equal(pairs, expected)
        assert torch.equal(candidates, expected)


def test_dense_graph_with_a_limit_takes_the_candidate_route(monkeypatch):
    # Every point is a neighbour of every other: all pairs would be far more
    # than the 4 kept per node, so the candidates route is taken.
    x = torch.rand(300, 2, generator=torch.Generator().manual_seed(1))
    pairs, candidates, took_pairs = both_routes(monkeypatch, x, 10.0,
                                                max_num_neighbors=4)
    assert not took_pairs
    assert torch.equal(pairs, candidates)
    assert torch.equal(pairs, radius_graph(x, 10.0, max_num_neighbors=4,
                                           backend="torch"))


def test_batched_examples_farther_apart_than_the_radius():
    # A radius larger than the extent of the points: no edge may join two
    # examples.
    x = torch.rand(50, 3, generator=torch.Generator().manual_seed(2))
    batch = make_batch(50, 4, 2)
    out = radius_graph(x, 5.0, batch=batch, max_num_neighbors=None,
                       backend="scipy")
    assert torch.equal(batch[out[0]], batch[out[1]])
    assert out.size(1) == int((torch.bincount(batch) ** 2).sum()) - 50
    assert torch.equal(out, radius_graph(x, 5.0, batch=batch,
                                         max_num_neighbors=None,
                                         backend="torch"))


def test_knn_graph_self_not_first_candidate():
    # Duplicates at distance 0: the tree may list a twin before the query
    # itself, which the fast self exclusion must hand to the general path.
    x = torch.rand(40, 3, generator=torch.Generator().manual_seed(3),
                   dtype=torch.float64).repeat(4, 1)
    for k in [1, 3, 5]:
        assert torch.equal(knn_graph(x, k, backend="scipy"),
                           knn_graph(x, k, backend="torch"))


def test_broken_pairs_route_is_caught(monkeypatch):
    # The comparison above fails if the pairs route drops the order inside
    # a target (here: sources reversed).
    original = kdtree._radius_pairs

    def reversed_inside(*a, **kw):
        out = original(*a, **kw)
        perm = torch.from_numpy(out[0]).mul(out.shape[1]).sub(
            torch.arange(out.shape[1])).argsort().numpy()
        return out[:, perm]

    monkeypatch.setattr(kdtree, "_radius_pairs", reversed_inside)
    x = torch.rand(200, 3, generator=torch.Generator().manual_seed(4),
                   dtype=torch.float64)
    out = radius_graph(x, 0.2, backend="scipy")
    expected = radius_graph(x, 0.2, backend="torch")
    assert out.size(1) == expected.size(1)
    assert not torch.equal(out, expected)


def spy_on(monkeypatch, name):
    calls = []
    original = getattr(kdtree, name)

    def spy(*a, **kw):
        calls.append(1)
        return original(*a, **kw)

    monkeypatch.setattr(kdtree, name, spy)
    return calls


@pytest.mark.parametrize("lattice", [False, True])
@pytest.mark.parametrize("loop", [False, True])
@pytest.mark.parametrize("flow", ["source_to_target", "target_to_source"])
def test_knn_full_candidates_route_equals_torch_backend(monkeypatch, lattice, loop, flow):
    # Without batch every query gets all its candidates: the k-NN selection takes
    # the block route (_select_full), asking tied rows again on a lattice, and
    # the edges are those of the torch backend, in either flow.
    gen = torch.Generator().manual_seed(5)
    if lattice:
        g = torch.arange(7, dtype=torch.float64)
        x = torch.cartesian_prod(g, g, g)
        x = x[torch.randperm(x.size(0), generator=gen)]
    else:
        x = torch.rand(500, 3, generator=gen, dtype=torch.float64)
    calls = spy_on(monkeypatch, "_select_full")
    for k in [1, 6, 16]:
        out = knn_graph(x, k, loop=loop, flow=flow, backend="scipy")
        assert torch.equal(out, knn_graph(x, k, loop=loop, flow=flow, backend="torch"))
        assert out.is_contiguous()
    assert len(calls) >= 3


def test_broken_full_candidates_route_is_caught(monkeypatch):
    # The comparison above fails if the block route keeps the wrong candidates
    # (here: the farthest k instead of the nearest).
    def farthest(d, i, q, n, m, K_asked):
        return q, i[:, -m:], np.zeros(0, dtype=np.int64)

    monkeypatch.setattr(kdtree, "_select_full", farthest)
    x = torch.rand(300, 3, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    assert not torch.equal(knn_graph(x, 4, backend="scipy"), knn_graph(x, 4, backend="torch"))
