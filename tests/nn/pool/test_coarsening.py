import pytest
import torch
from torch_geometric.data import Batch, Data

from gdl_pyg.groups import Permutations
from gdl_pyg.nn.pool.coarsening import GraclusPooling, coarsen, heavy_edge_matching
from gdl_pyg.testing import assert_equivariant


def random_graph(n=20, m=60, seed=0, dtype=torch.float64, weights="random"):
    gen = torch.Generator().manual_seed(seed)
    ei = torch.randint(0, n, (2, m), generator=gen)
    ei = torch.unique(torch.cat([ei, ei.flip(0)], 1), dim=1)  # undirected
    ei = ei[:, ei[0] != ei[1]]
    if weights == "random":  # symmetric weights
        w = torch.rand(n, n, generator=gen, dtype=dtype)
        w = (w + w.t())[ei[0], ei[1]]
    else:
        w = None
    return Data(x=torch.randn(n, 4, generator=gen, dtype=dtype), edge_index=ei,
                edge_weight=w)


def greedy_reference(edge_index, weight, num_nodes):
    r"""Sorted greedy heavy-edge matching in pure Python (distinct weights)."""
    edges = {}
    for (u, v), w in zip(edge_index.t().tolist(), weight.tolist()):
        if u != v:
            key = (min(u, v), max(u, v))
            edges[key] = max(edges.get(key, -1e300), w)
    mate = [-1] * num_nodes
    for (u, v), _ in sorted(edges.items(), key=lambda kv: -kv[1]):
        if mate[u] < 0 and mate[v] < 0:
            mate[u], mate[v] = v, u
    return mate


def assert_valid_matching(cluster, edge_index, num_nodes):
    assert cluster.numel() == num_nodes
    counts = torch.bincount(cluster)
    assert counts.max() <= 2 and counts.min() >= 1  # pairs and singletons
    assert torch.equal(torch.unique(cluster), torch.arange(counts.numel()))  # consecutive
    adj = set(map(tuple, edge_index.t().tolist()))
    for c in torch.nonzero(counts == 2).view(-1).tolist():
        u, v = torch.nonzero(cluster == c).view(-1).tolist()
        assert (u, v) in adj or (v, u) in adj  # matched nodes are neighbours
    # maximal: no edge joins two singletons
    single = counts[cluster] == 1
    assert not bool((single[edge_index[0]] & single[edge_index[1]]).any())


def test_matching_valid_and_equals_greedy():
    data = random_graph()
    cluster = heavy_edge_matching(data.edge_index, data.edge_weight, data.num_nodes)
    assert_valid_matching(cluster, data.edge_index, data.num_nodes)
    mate = greedy_reference(data.edge_index, data.edge_weight, data.num_nodes)
    for u, v in enumerate(mate):
        assert (cluster[u] == cluster[v]) if v >= 0 else (cluster == cluster[u]).sum() == 1


def test_matching_unweighted_deterministic_and_normalized():
    data = random_graph(weights=None)
    a = heavy_edge_matching(data.edge_index, num_nodes=data.num_nodes, seed=3)
    b = heavy_edge_matching(data.edge_index, num_nodes=data.num_nodes, seed=3)
    assert torch.equal(a, b)
    assert_valid_matching(a, data.edge_index, data.num_nodes)
    c = heavy_edge_matching(data.edge_index, torch.ones(data.num_edges), data.num_nodes,
                            normalized=True)
    assert_valid_matching(c, data.edge_index, data.num_nodes)
    assert torch.equal(heavy_edge_matching(torch.empty(2, 0, dtype=torch.long), num_nodes=3),
                       torch.arange(3))
    with pytest.raises(ValueError, match="shape \\[2, num_edges\\]"):
        heavy_edge_matching(torch.zeros(3, 4, dtype=torch.long))


def test_coarsen_and_pooling_module():
    data = random_graph()
    cluster = heavy_edge_matching(data.edge_index, data.edge_weight, data.num_nodes)
    data.edge_attr = data.edge_weight
    out = coarsen(cluster, data, "mean")
    C = int(cluster.max()) + 1
    expected = torch.zeros(C, 4, dtype=torch.float64).index_add_(0, cluster, data.x)
    expected = expected / torch.bincount(cluster).unsqueeze(-1)
    assert (out.x - expected).abs().max() < 1e-10
    assert out.edge_index.max() < C and bool((out.edge_index[0] != out.edge_index[1]).all())
    pool = GraclusPooling(reduce="max")
    assert str(pool) == "GraclusPooling(reduce=max)"
    x, edge_index, edge_weight, batch, cl = pool(data.x, data.edge_index, data.edge_weight)
    assert x.shape == (C, 4) and batch is None and torch.equal(cl, cluster)
    with pytest.raises(ValueError, match="reduce"):
        GraclusPooling(reduce="sum")


@pytest.mark.parametrize("reduce", ["mean", "max"])
def test_compiled_model_with_graclus_pooling_equals_eager(reduce):
    # the matching and the pooling have data-dependent sizes: they run eagerly
    # inside a compiled model (a graph break each), with gradients
    graphs = [random_graph(seed=s) for s in range(2)]
    for g in graphs:
        g.edge_attr = g.edge_weight
    data = Batch.from_data_list(graphs)
    lin, pool = torch.nn.Linear(4, 4).double(), GraclusPooling(reduce=reduce)

    def model(x, edge_index, edge_weight, batch):
        x, edge_index, edge_weight, batch, _ = pool(torch.tanh(lin(x)), edge_index,
                                                    edge_weight, batch)
        return torch.zeros(2, 4, dtype=x.dtype).index_add_(0, batch, x)

    args = (data.x, data.edge_index, data.edge_weight, data.batch)
    ref = model(*args)
    grad_ref = torch.autograd.grad(ref.sum(), lin.weight)[0]
    torch._dynamo.reset()
    out = torch.compile(model, backend="aot_eager")(*args)
    grad = torch.autograd.grad(out.sum(), lin.weight)[0]
    assert torch.equal(out, ref) and torch.equal(grad, grad_ref)
    cluster = torch.compile(heavy_edge_matching, backend="aot_eager")(data.edge_index,
                                                                    data.edge_weight)
    assert torch.equal(cluster, heavy_edge_matching(data.edge_index, data.edge_weight))


class CoarsenThenReadout(torch.nn.Module):
    def __init__(self, levels=2):
        super().__init__()
        self.pool = GraclusPooling(reduce="max")
        self.lin = torch.nn.Linear(4, 4)
        self.levels = levels

    def forward(self, x, edge_index, edge_weight=None, batch=None):
        for _ in range(self.levels):
            x, edge_index, edge_weight, batch, _ = self.pool(torch.tanh(self.lin(x)),
                                                             edge_index, edge_weight, batch)
        n = 1 if batch is None else 3
        return torch.zeros(n, x.size(1), dtype=x.dtype).index_add_(
            0, torch.zeros_like(x[:, 0], dtype=torch.long) if batch is None else batch, x)


def test_coarsening_then_readout_is_invariant():
    model = CoarsenThenReadout()
    data = random_graph()
    assert_equivariant(model, data, Permutations())
    batch = Batch.from_data_list([random_graph(n, 3 * n, seed=n) for n in (9, 14, 11)])
    assert_equivariant(model, batch, Permutations())
    unweighted = random_graph(weights=None)  # all ties: broken by per-edge priorities
    del unweighted.edge_weight
    assert_equivariant(model, unweighted, Permutations())


def test_checker_fails_with_node_order_tie_breaking():
    class NodeOrderPooling(GraclusPooling):  # breaks ties by node id: not equivariant
        def forward(self, x, edge_index, edge_weight=None, batch=None):
            w = edge_index.min(0).values.to(x.dtype) + edge_index.max(0).values.to(x.dtype) / 100
            return super().forward(x, edge_index, w, batch)

    model = CoarsenThenReadout(levels=1)
    model.pool = NodeOrderPooling(reduce="max")
    data = random_graph(weights=None)
    del data.edge_weight
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(model, data, Permutations())
