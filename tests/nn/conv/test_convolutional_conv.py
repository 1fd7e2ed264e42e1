import pytest
import torch
from torch_geometric.data import Batch, Data
from torch_geometric.nn import GCNConv
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.utils import to_torch_coo_tensor, to_torch_csr_tensor

from gdl_pyg.groups import Permutations
from gdl_pyg.nn.conv.convolutional_conv import (ConvolutionalConv, gcn_adjacency,
                                                 sparse_gcn_scale, static_gcn_norm)
from gdl_pyg.testing import assert_equivariant, with_package

#: the flow of the transposed edges (the backward of the sparse product)
REVERSED = {"source_to_target": "target_to_source",
            "target_to_source": "source_to_target"}


def random_graph(num_nodes=12, num_edges=40, channels=8, seed=0, dtype=torch.float64,
                 loops=False):
    gen = torch.Generator().manual_seed(seed)
    edge_index = torch.randint(0, num_nodes, (2, num_edges), generator=gen)
    edge_index = edge_index[:, edge_index[0] != edge_index[1]]
    if loops:  # a few existing self loops, which keep their weight
        edge_index = torch.cat([edge_index, torch.tensor([[1, 4, 7], [1, 4, 7]])], dim=1)
    edge_index = torch.unique(edge_index, dim=1)
    x = torch.randn(num_nodes, channels, generator=gen, dtype=dtype)
    edge_weight = torch.rand(edge_index.size(1), generator=gen, dtype=dtype) + 0.1
    return Data(x=x, edge_index=edge_index, edge_weight=edge_weight)


def batched():
    return Batch.from_data_list([random_graph(n, 3 * n, seed=n) for n in (5, 9, 7)])


def copy_from(conv, ref):
    with torch.no_grad():
        conv.psi.weight.copy_(ref.lin.weight)
        ref.bias.normal_()
        conv.bias.copy_(ref.bias)


def test_shapes_and_repr():
    data = random_graph(dtype=torch.float32)
    conv = ConvolutionalConv(8, 16)
    assert conv(data.x, data.edge_index).shape == (12, 16)
    assert str(conv) == "ConvolutionalConv(8, 16, normalize=True)"
    assert ConvolutionalConv.group_name == "Permutations"
    phi = torch.nn.Sequential(torch.nn.Linear(8 + 16, 4), torch.nn.ReLU())
    conv = ConvolutionalConv(8, 16, phi=phi, combine="cat")
    assert conv(data.x, data.edge_index, data.edge_weight).shape == (12, 4)


def test_bad_input():
    with pytest.raises(ValueError, match="'aggr' to be one of"):
        ConvolutionalConv(8, 16, aggr="max")
    with pytest.raises(TypeError, match="'phi' to be a torch.nn.Module"):
        ConvolutionalConv(8, 16, phi="relu")
    data = random_graph()
    with pytest.raises(ValueError, match="bipartite"):
        ConvolutionalConv(8, 16).double()((data.x, data.x), data.edge_index)


@pytest.mark.parametrize("normalize,improved,weighted,loops", [
    (True, False, False, False), (True, False, True, False), (True, True, True, True),
    (True, False, True, True), (False, False, True, False)])
def test_equals_gcnconv(normalize, improved, weighted, loops):
    data = random_graph(loops=loops)
    N = data.num_nodes
    w = data.edge_weight if weighted else None
    ref = GCNConv(8, 16, normalize=normalize, improved=improved,
                  add_self_loops=normalize).double()
    conv = ConvolutionalConv(8, 16, normalize=normalize, improved=improved,
                             add_self_loops=normalize).double()
    copy_from(conv, ref)
    expected = ref(data.x, data.edge_index, w)
    gather = conv(data.x, data.edge_index, w)  # edge_index path (a sparse product)
    assert (gather - expected).abs().max() < 1e-10
    # sparse-matmul path (message_and_aggregate), torch.sparse CSR and COO adj_t
    for to_sparse in (to_torch_csr_tensor, to_torch_coo_tensor):
        adj_t = to_sparse(data.edge_index.flip(0), w, size=(N, N)).to(torch.float64)
        out = conv(data.x, adj_t)
        assert (out - ref(data.x, adj_t)).abs().max() < 1e-10
        if not loops:  # PyG adds loops on top of existing ones for sparse input
            assert (out - gather).abs().max() < 1e-10


@pytest.mark.parametrize("layout", [torch.sparse_csr, torch.sparse_coo])
def test_precomputed_gcn_adjacency(layout):
    data = random_graph(loops=True)
    conv = ConvolutionalConv(8, 16, improved=True).double()
    expected = conv(data.x, data.edge_index, data.edge_weight)
    adj_t = gcn_adjacency(data.edge_index, data.edge_weight, data.num_nodes, improved=True,
                          layout=layout)
    fast = ConvolutionalConv(8, 16, normalize=False, add_self_loops=False).double()
    fast.load_state_dict(conv.state_dict())
    assert (fast(data.x, adj_t) - expected).abs().max() < 1e-10
    adj_t = gcn_adjacency(data.edge_index, None, data.num_nodes, normalize=False,
                          dtype=torch.float64)
    plain = ConvolutionalConv(8, 16, normalize=False).double()
    plain.load_state_dict(conv.state_dict())
    assert (fast(data.x, adj_t) - plain(data.x, data.edge_index)).abs().max() < 1e-10
    with pytest.raises(ValueError, match="layout"):
        gcn_adjacency(data.edge_index, layout=torch.strided)


def test_self_loops_without_normalisation_and_mean():
    data = random_graph()
    N = data.num_nodes
    conv = ConvolutionalConv(8, 8, normalize=False, add_self_loops=True, aggr="mean",
                             bias=False).double()
    h = conv.psi(data.x)
    src, dst = data.edge_index
    expected = h.clone().index_add_(0, dst, data.edge_weight.view(-1, 1) * h[src])
    expected = expected / (1 + torch.bincount(dst, minlength=N)).unsqueeze(-1)
    assert (conv(data.x, data.edge_index, data.edge_weight) - expected).abs().max() < 1e-10
    adj_t = to_torch_csr_tensor(data.edge_index.flip(0), data.edge_weight, size=(N, N))
    assert (conv(data.x, adj_t) - expected).abs().max() < 1e-10


def test_bipartite_and_cached():
    gen = torch.Generator().manual_seed(1)
    x_src = torch.randn(10, 8, generator=gen, dtype=torch.float64)
    x_dst = torch.randn(6, 4, generator=gen, dtype=torch.float64)
    edge_index = torch.stack([torch.randint(0, 10, (30, ), generator=gen),
                              torch.randint(0, 6, (30, ), generator=gen)])
    edge_index = torch.unique(edge_index, dim=1)  # duplicates would merge in adj_t
    phi = torch.nn.Linear(4 + 16, 5).double()
    conv = ConvolutionalConv((8, 4), 16, phi=phi, combine="cat", normalize=False,
                             add_self_loops=False).double()
    out = conv((x_src, x_dst), edge_index)
    h = conv.psi(x_src)
    agg = torch.zeros(6, 16, dtype=torch.float64).index_add_(0, edge_index[1], h[edge_index[0]])
    assert (out - phi(torch.cat([x_dst, agg + conv.bias], -1))).abs().max() < 1e-10
    adj_t = to_torch_csr_tensor(edge_index.flip(0), size=(6, 10))
    assert (conv((x_src, x_dst), adj_t) - out).abs().max() < 1e-10

    data = random_graph()
    conv = ConvolutionalConv(8, 16, cached=True).double()
    first = conv(data.x, data.edge_index)
    assert conv._cached_edge_index is not None
    assert (conv(data.x, data.edge_index) - first).abs().max() == 0


@with_package("torch_sparse")
def test_sparse_tensor():
    from torch_sparse import SparseTensor
    data = random_graph()
    N = data.num_nodes
    ref = GCNConv(8, 16).double()
    conv = ConvolutionalConv(8, 16).double()
    copy_from(conv, ref)
    adj_t = SparseTensor.from_edge_index(data.edge_index, data.edge_weight,
                                         sparse_sizes=(N, N)).t()
    expected = ref(data.x, data.edge_index, data.edge_weight)
    assert (conv(data.x, adj_t) - expected).abs().max() < 1e-10


def test_permutation_equivariance():
    psi = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh())
    phi = torch.nn.Sequential(torch.nn.Linear(8 + 16, 4), torch.nn.ReLU())
    for conv in (ConvolutionalConv(8, 16), ConvolutionalConv(8, 16, psi=psi, phi=phi,
                                                             combine="cat")):
        for data in (random_graph(), batched()):
            assert_equivariant(conv, data, Permutations())


def test_checker_fails_on_broken_layer():
    class Broken(ConvolutionalConv):  # a positional (node-index dependent) term
        def forward(self, x, edge_index, edge_weight=None):
            out = super().forward(x, edge_index, edge_weight)
            return out + torch.linspace(0, 1, x.size(0), dtype=x.dtype).unsqueeze(-1)

    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(Broken(8, 16), random_graph(), Permutations())


def test_compile_no_graph_breaks():
    data = random_graph(dtype=torch.float32)
    conv = ConvolutionalConv(8, 16)
    torch._dynamo.reset()
    explain = torch._dynamo.explain(conv)(data.x, data.edge_index, data.edge_weight)
    assert explain.graph_break_count == 0, explain.break_reasons
    assert explain.graph_count == 1 and not explain.break_reasons


def compile_graphs(conv, *args):
    r"""The output of ``torch.compile(conv)(*args)`` and the graphs dynamo
    captured on the way (as lists of node targets)."""
    graphs = []

    def backend(gm, example_inputs):
        graphs.append([str(n.target) for n in gm.graph.nodes])
        return gm

    torch._dynamo.reset()
    return torch.compile(conv, backend=backend)(*args), graphs


@pytest.mark.parametrize("num_threads", [1, 2])
@pytest.mark.parametrize("normalize", [True, False])
def test_compile_sparse_path(product_at_any_size, threads, normalize, num_threads):
    # dynamo takes no sparse tensors (it refuses to wrap them): the layer's own
    # frame runs eagerly, and the aggregation over the nonzeros is compiled from
    # the dense parts of the adjacency (normalize=True: no PyG gcn_norm, which
    # fails under torch.compile, in GCNConv as well)
    data = random_graph(dtype=torch.float32)
    N = data.num_nodes
    if normalize:
        adj_t = to_torch_csr_tensor(data.edge_index.flip(0), data.edge_weight, size=(N, N))
    else:
        adj_t = gcn_adjacency(data.edge_index, data.edge_weight, N)
    conv = ConvolutionalConv(8, 16, normalize=normalize, add_self_loops=normalize)
    threads(num_threads)
    out, graphs = compile_graphs(conv, data.x, adj_t)
    # inductor's gather and scatter on one thread, the sparse product on several
    op = "index_add_" if num_threads == 1 else "gdl_pyg.edge_sum.default"
    assert any(op in g for g in graphs), graphs
    ref = ConvolutionalConv(8, 16)  # GCN on edge_index, the weights of 'conv'
    ref.load_state_dict(conv.state_dict())
    expected = ref(data.x, data.edge_index, data.edge_weight)
    assert (out - expected).abs().max() < 1e-5
    # gradients too, against the eager sparse path
    x = data.x.clone().requires_grad_()
    torch.compile(conv)(x, adj_t).square().sum().backward()
    grad, x.grad = x.grad, None
    conv(x, adj_t).square().sum().backward()
    assert (grad - x.grad).abs().max() < 1e-4 * (1 + x.grad.abs().max())


@pytest.mark.parametrize("num_threads", [1, 2])
def test_compile_sparse_static_graph_equals_gcnconv(product_at_any_size, threads, num_threads):
    edge_index = torch.tensor([[0, 0, 0, 1, 2, 3], [1, 2, 3, 0, 0, 0]])
    adj_t = to_torch_csr_tensor(edge_index.flip(0), size=(4, 4))
    x = torch.randn(3, 4, 16)
    ref = GCNConv(16, 32)
    conv = ConvolutionalConv(16, 32)
    copy_from(conv, ref)
    threads(num_threads)
    out, graphs = compile_graphs(conv, x, adj_t)
    op = "index_add_" if num_threads == 1 else "gdl_pyg.edge_sum.default"
    assert any(op in g for g in graphs), graphs
    assert (out - ref(x, edge_index)).abs().max() < 1e-5


@pytest.mark.parametrize("improved", [False, True])
@pytest.mark.parametrize("loops", [False, True])
def test_sparse_gcn_scale_equals_gcn_norm(improved, loops):
    data = random_graph(loops=loops)
    N = data.num_nodes
    for add_loops in (True, False):
        adj_t = to_torch_csr_tensor(data.edge_index.flip(0), data.edge_weight, size=(N, N))
        scale, loop = sparse_gcn_scale(adj_t, improved, add_loops)
        dense = adj_t.to_dense()
        # PyG: a loop on top of an existing one, for torch.sparse input
        ref, _ = gcn_norm(adj_t, None, N, improved, add_loops)
        expected = ref.to_dense()
        ours = scale[:, None] * dense * scale[None, :]
        if add_loops:
            ours = ours + torch.diag(loop)
        else:
            assert loop is None
        assert (ours - expected).abs().max() < 1e-12


def test_sparse_gcn_scale_isolated_nodes_and_bad_input():
    # rows 0 and 1 hold weights 1 and 4, rows 2 and 3 none: without self loops
    # their degree is 0 and their scale 0
    adj_t = to_torch_csr_tensor(torch.tensor([[0, 1], [1, 2]]), torch.tensor([1., 4.]),
                                size=(4, 4))
    scale, loop = sparse_gcn_scale(adj_t, add_self_loops=False)
    assert loop is None
    assert torch.allclose(scale, torch.tensor([1., 0.5, 0., 0.]))
    scale, loop = sparse_gcn_scale(adj_t)
    assert torch.allclose(scale, torch.tensor([2., 5., 1., 1.]).rsqrt())
    assert torch.allclose(loop, scale * scale)
    with pytest.raises(TypeError, match="'sparse_gcn_scale' expected a torch.sparse tensor"):
        sparse_gcn_scale(torch.tensor([[0, 1], [1, 2]]))
    with pytest.raises(ValueError, match=r"square sparse adjacency \(got shape \[4, 5\]\)"):
        sparse_gcn_scale(to_torch_csr_tensor(torch.tensor([[0], [1]]), size=(4, 5)))


@with_package("torch_sparse")
@pytest.mark.parametrize("improved", [False, True])
def test_sparse_gcn_scale_sparse_tensor(improved):
    # a SparseTensor's existing self loops are replaced (PyG's fill_diag), not
    # added to; with and without values
    from torch_sparse import SparseTensor
    data = random_graph(loops=True)
    N = data.num_nodes
    for weight in (data.edge_weight, None):
        adj_t = SparseTensor.from_edge_index(data.edge_index, weight,
                                             sparse_sizes=(N, N)).t()
        scale, loop = sparse_gcn_scale(adj_t, improved, dtype=torch.float64)
        dense = adj_t.to_dense(dtype=torch.float64)
        expected = gcn_norm(adj_t, None, N, improved, True, dtype=torch.float64)
        ours = scale[:, None] * dense * scale[None, :] + torch.diag(loop)
        assert (ours - expected.to_dense()).abs().max() < 1e-12


@with_package("torch_sparse")
def test_compile_sparse_tensor():
    from torch_sparse import SparseTensor
    data = random_graph(dtype=torch.float32)
    N = data.num_nodes
    adj_t = SparseTensor.from_edge_index(data.edge_index, data.edge_weight,
                                         sparse_sizes=(N, N)).t()
    conv = ConvolutionalConv(8, 16)
    torch._dynamo.reset()
    out = torch.compile(conv)(data.x, adj_t)
    assert (out - conv(data.x, data.edge_index, data.edge_weight)).abs().max() < 1e-5


def test_sparse_normalize_cached_and_hooks():
    data = random_graph()
    N = data.num_nodes
    adj_t = to_torch_csr_tensor(data.edge_index.flip(0), data.edge_weight, size=(N, N))
    ref = GCNConv(8, 16, cached=True).double()
    conv = ConvolutionalConv(8, 16, cached=True).double()
    copy_from(conv, ref)
    expected = ref(data.x, adj_t)
    assert (conv(data.x, adj_t) - expected).abs().max() < 1e-10
    assert conv._cached_scale is not None
    # the cache is the first graph's (transductive), as in GCNConv
    other = to_torch_csr_tensor(data.edge_index.flip(0), size=(N, N)).double()
    assert (conv(data.x, other) - ref(data.x, other)).abs().max() < 1e-10
    conv.reset_parameters()
    assert conv._cached_scale is None
    # with a hook, PyG's propagate runs (and calls it)
    conv = ConvolutionalConv(8, 16).double()
    copy_from(conv, GCNConv(8, 16).double())
    plain = conv(data.x, adj_t)
    seen = []
    conv.register_propagate_forward_hook(lambda module, inputs, out: seen.append(out.shape))
    assert (conv(data.x, adj_t) - plain).abs().max() < 1e-12
    assert seen == [(N, 16)]


# --- issue 9: PyG's static-graph layout, input validation -------------------------------

STATIC_EDGES = torch.tensor([[0, 0, 0, 1, 2, 3], [1, 2, 3, 0, 0, 0]])  # PyG's test graph


@pytest.mark.parametrize("B,N", [(3, 4), (4, 4), (2, 7), (1, 5)])
@pytest.mark.parametrize("normalize,improved", [(True, False), (True, True), (False, False)])
def test_static_graph_equals_gcnconv(B, N, normalize, improved):
    gen = torch.Generator().manual_seed(B * 10 + N)
    x = torch.randn(B, N, 16, generator=gen, dtype=torch.float64)
    edge_index = STATIC_EDGES if N == 4 else random_graph(N, 3 * N, seed=N).edge_index
    w = torch.rand(edge_index.size(1), generator=gen, dtype=torch.float64) + 0.1
    ref = GCNConv(16, 32, normalize=normalize, improved=improved,
                  add_self_loops=normalize).double()
    conv = ConvolutionalConv(16, 32, normalize=normalize, improved=improved,
                             add_self_loops=normalize).double()
    copy_from(conv, ref)
    expected = ref(x, edge_index, w)
    assert expected.shape == (B, N, 32)
    out = conv(x, edge_index, w)
    assert out.shape == (B, N, 32)
    assert (out - expected).abs().max() < 1e-10
    for b in range(B):  # each signal on its own is the 2-D layer
        assert (out[b] - conv(x[b], edge_index, w)).abs().max() < 1e-10
    # sparse adjacency (PyG's spmm takes matrices only; ours views [B, N, F] as [N, B F])
    adj_t = to_torch_csr_tensor(edge_index.flip(0), w, size=(N, N))
    assert (conv(x, adj_t) - expected).abs().max() < 1e-10


def test_static_graph_phi_cat_and_cached():
    x = torch.randn(3, 4, 16, dtype=torch.float64)
    phi = torch.nn.Linear(16 + 32, 5).double()
    conv = ConvolutionalConv(16, 32, phi=phi, combine="cat", cached=True).double()
    out = conv(x, STATIC_EDGES)
    assert out.shape == (3, 4, 5)
    for b in range(3):
        assert (out[b] - conv(x[b], STATIC_EDGES)).abs().max() < 1e-10


@pytest.mark.parametrize("shape", [(16, ), (2, 3, 4, 16), ()])
def test_static_graph_other_ranks_rejected(shape):
    conv = ConvolutionalConv(16, 32)
    with pytest.raises(ValueError, match=r"'ConvolutionalConv' expected 'x' to be 2-D or 3-D"):
        conv(torch.randn(shape), STATIC_EDGES)


BAD_EDGE_INDEX = [
    (STATIC_EDGES.t().contiguous(), "looks transposed, pass edge_index.t()"),
    (torch.cat([STATIC_EDGES, STATIC_EDGES[:1]]), r"size 2 in the first dimension.*\[3, 6\]"),
    (STATIC_EDGES.float(), "integer type"),
    (STATIC_EDGES.flatten(), "two-dimensional"),
    (torch.tensor([[0, 4], [1, 0]]), "index 4 .* only 4 nodes"),
    (torch.tensor([[0, 1], [1, 4]]), "target .* index 4 .* only 4 nodes"),
    (torch.tensor([[0, -1], [1, 0]]), "negative index"),
]


@pytest.mark.parametrize("edge_index,match", BAD_EDGE_INDEX)
def test_bad_edge_index_rejected(edge_index, match):
    x = torch.randn(4, 16)
    for conv in (ConvolutionalConv(16, 32), ConvolutionalConv(16, 32, normalize=False)):
        with pytest.raises(ValueError, match=match):
            conv(x, edge_index)
    with pytest.raises(ValueError, match=match):
        conv(torch.randn(2, 4, 16), edge_index)  # static layout
    if "only 4" not in match:  # gcn_adjacency infers N when it is not given
        with pytest.raises(ValueError, match="'gcn_adjacency' " + ".*" + match):
            gcn_adjacency(edge_index)
    with pytest.raises(ValueError, match="'gcn_adjacency' " + ".*" + match):
        gcn_adjacency(edge_index, num_nodes=4)
    with pytest.raises(ValueError, match="'static_gcn_norm' " + ".*" + match):
        static_gcn_norm(edge_index, None, 4)


def test_bad_edge_index_type_and_edge_weight():
    x = torch.randn(4, 16)
    conv = ConvolutionalConv(16, 32)
    with pytest.raises(TypeError, match=r"'edge_index' to be a torch.Tensor .*\(got list\)"):
        conv(x, STATIC_EDGES.tolist())
    with pytest.raises(ValueError, match=r"'edge_weight' of shape \[6\].*got shape \[5\]"):
        conv(x, STATIC_EDGES, torch.ones(5))
    with pytest.raises(ValueError, match=r"'edge_weight' of shape \[6\].*got shape \[6, 1\]"):
        gcn_adjacency(STATIC_EDGES, torch.ones(6, 1))
    with pytest.raises(TypeError, match="'size' to be None or a pair"):
        plain = ConvolutionalConv(16, 32, normalize=False, add_self_loops=False)
        plain(x, STATIC_EDGES, size=4)
    # an empty graph needs no max() to size it
    assert gcn_adjacency(torch.empty(2, 0, dtype=torch.long)).shape == (0, 0)


def test_channel_mismatch_names_layer_and_widths():
    x = torch.randn(4, 15)
    with pytest.raises(ValueError, match="'ConvolutionalConv' expected 'x' with 16 channels "
                                         ".*got 15.*in_channels=15"):
        ConvolutionalConv(16, 32)(x, STATIC_EDGES)
    with pytest.raises(ValueError, match="'ConvolutionalConv' expected 'x\\[0\\]' with 8"):
        ConvolutionalConv((8, 4), 16, normalize=False, add_self_loops=False)(
            (torch.randn(4, 9), torch.randn(4, 4)), STATIC_EDGES)
    with pytest.raises(ValueError, match="feeds 'psi' with 15 channels .* expects 16"):
        ConvolutionalConv(16, 32, psi=torch.nn.Sequential(torch.nn.Linear(16, 32)))(
            x, STATIC_EDGES)
    phi = torch.nn.Linear(20, 4)
    with pytest.raises(ValueError, match="feeds 'phi' with 47 channels .* expects 20"):
        ConvolutionalConv(15, 32, phi=phi, combine="cat")(x, STATIC_EDGES)
    # lazy in_channels=-1 still works (like GCNConv(-1, 32)), and is checked once known
    ref = GCNConv(-1, 32)
    conv = ConvolutionalConv(-1, 32)
    out = conv(x, STATIC_EDGES)
    ref(x, STATIC_EDGES)
    copy_from(conv, ref)
    assert (conv(x, STATIC_EDGES) - ref(x, STATIC_EDGES)).abs().max() < 1e-5
    assert out.shape == (4, 32)
    with pytest.raises(ValueError, match="expected 'x' with 15 channels .*got 16"):
        conv(torch.randn(4, 16), STATIC_EDGES)


def test_compile_static_graph_no_graph_breaks():
    conv = ConvolutionalConv(16, 32)
    torch._dynamo.reset()
    explain = torch._dynamo.explain(conv)(torch.randn(3, 4, 16), STATIC_EDGES)
    assert explain.graph_break_count == 0, explain.break_reasons


# --- issue 11: uncoalesced COO adjacency, decomposed_layers ---------------------------

def uncoalesced(edge_index, values, size, num_dup=5, seed=0):
    # a COO adj_t (row = target) holding every edge once, the first `num_dup`
    # edges a second time, in a shuffled order: not coalesced
    gen = torch.Generator().manual_seed(seed)
    index = torch.cat([edge_index.flip(0), edge_index.flip(0)[:, :num_dup]], dim=1)
    values = torch.cat([values, values[:num_dup]], dim=0)
    perm = torch.randperm(index.size(1), generator=gen)
    adj_t = torch.sparse_coo_tensor(index[:, perm], values[perm], size)
    assert not adj_t.is_coalesced()
    return adj_t, index[:, perm].flip(0), values[perm]


@pytest.mark.parametrize("normalize,add_loops,improved,aggr", [
    (True, True, False, "add"), (True, True, True, "add"), (False, True, False, "add"),
    (False, False, False, "add"), (True, True, False, "mean"), (False, True, False, "mean")])
def test_uncoalesced_coo_equals_gcnconv(normalize, add_loops, improved, aggr):
    # duplicate entries are summed (the coefficients are linear in the
    # weights), as in GCNConv on the same tensor; gradients equal too, also
    # those of the values (PyG's GCNConv cannot take differentiable values of
    # an uncoalesced tensor: compare with the same edges as edge_index)
    data = random_graph(loops=True)
    N = data.num_nodes
    kwargs = dict(normalize=normalize, add_self_loops=add_loops, improved=improved, aggr=aggr)
    conv = ConvolutionalConv(8, 16, **kwargs).double()
    adj_t, ei, w = uncoalesced(data.edge_index, data.edge_weight, (N, N))
    if normalize or not add_loops:
        ref = GCNConv(8, 16, **kwargs).double()
        copy_from(conv, ref)
    else:  # GCNConv adds no self loops without normalisation: the explicit sum
        ref = ConvolutionalConv(8, 16, **kwargs).double()
        ref.load_state_dict(conv.state_dict())
        adj_ref = adj_t.coalesce()
        ref_forward = ref.forward
        ref.forward = lambda x, adj: ref_forward(x, adj_ref)
    x = data.x.clone().requires_grad_()
    out = conv(x, adj_t)
    assert not adj_t.is_coalesced()  # not flagged in place (PyG's to_edge_index does)
    x_ref = data.x.clone().requires_grad_()
    expected = ref(x_ref, adj_t.clone())
    assert (out - expected).abs().max() < 1e-10
    g = torch.autograd.grad(out.square().sum(), [x] + list(conv.parameters()))
    r = torch.autograd.grad(expected.square().sum(), [x_ref] + list(ref.parameters()))
    assert all((a - b).abs().max() < 1e-10 for a, b in zip(g, r))
    if aggr == "mean" or not normalize and add_loops:
        # (a mean over the edges would count the duplicates; PyG's add_self_loops
        # on sparse input has no derivative for the values, coalesced or not)
        return
    # gradients of the values: those of the weights of the same edges
    values = w.clone().requires_grad_()
    out = conv(data.x, torch.sparse_coo_tensor(ei.flip(0), values, (N, N)))
    weights = w.clone().requires_grad_()
    # (sparse input adds its self loops on top of the existing ones: so does
    # GCNConv's edge_index path when no loop exists, hence the explicit loops)
    loops = torch.arange(N)
    fill = 2. if improved else 1.
    if add_loops:
        ei_ref = torch.cat([ei, torch.stack([loops, loops])], dim=1)
        w_ref = torch.cat([weights, torch.full((N, ), fill, dtype=torch.float64)])
    else:
        ei_ref, w_ref = ei, weights
    plain = GCNConv(8, 16, normalize=False, add_self_loops=False).double()
    with torch.no_grad():
        plain.lin.weight.copy_(conv.psi.weight)
        plain.bias.copy_(conv.bias)
    if normalize:
        from torch_geometric.nn.conv.gcn_conv import gcn_norm
        ei_ref, w_ref = gcn_norm(ei_ref, w_ref, N, add_self_loops=False)
    expected = plain(data.x, ei_ref, w_ref)
    assert (out - expected).abs().max() < 1e-10
    (gv, ), (gw, ) = (torch.autograd.grad(out.square().sum(), [values]),
                      torch.autograd.grad(expected.square().sum(), [weights]))
    assert (gv - gw).abs().max() < 1e-10


def test_coalesced_coo_forward_does_not_sort():
    # a coalesced COO adj_t is neither coalesced nor sorted again in forward
    from torch.utils._python_dispatch import TorchDispatchMode

    class OpNames(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.names = set()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.names.add(func.overloadpacket.__name__)
            return func(*args, **(kwargs or {}))

    data = random_graph()
    N = data.num_nodes
    adj_t = to_torch_coo_tensor(data.edge_index.flip(0), data.edge_weight, size=(N, N))
    conv = ConvolutionalConv(8, 16).double()
    with OpNames() as mode:
        conv(data.x, adj_t)
    assert not {"coalesce", "_coalesce", "_coalesced_", "sort"} & mode.names


@pytest.mark.parametrize("normalize", [True, False])
def test_decomposed_layers_equal_undecomposed(normalize):
    # PyG's feature decomposition (GCNConv's): the same output and gradients
    data = random_graph()
    N = data.num_nodes
    conv = ConvolutionalConv(8, 16, normalize=normalize).double()
    split = ConvolutionalConv(8, 16, normalize=normalize, decomposed_layers=3).double()
    split.load_state_dict(conv.state_dict())
    widths = []
    split.register_message_forward_pre_hook(
        lambda module, inputs: widths.append(inputs[0]["x_j"].size(-1)))
    x = data.x.clone().requires_grad_()
    expected = conv(x, data.edge_index, data.edge_weight)
    out = split(x, data.edge_index, data.edge_weight)
    assert widths == [6, 6, 4]
    assert (out - expected).abs().max() < 1e-12
    g = torch.autograd.grad(out.sum(), [x] + list(split.parameters()))
    r = torch.autograd.grad(expected.sum(), [x] + list(conv.parameters()))
    assert all((a - b).abs().max() < 1e-12 for a, b in zip(g, r))
    x3 = torch.randn(2, N, 8, dtype=torch.float64)
    assert (split(x3, data.edge_index) - conv(x3, data.edge_index)).abs().max() < 1e-12
    adj_t = to_torch_csr_tensor(data.edge_index.flip(0), data.edge_weight, size=(N, N))
    assert (split(data.x, adj_t) - conv(data.x, adj_t)).abs().max() < 1e-12


# --- issue 11: the weighted sum over edge_index as one sparse product -----------------
@pytest.mark.parametrize("case", ["normalize", "improved_loops", "weighted", "plain", "mean",
                                  "bipartite", "static", "flow", "float32", "cached"])
def test_edge_index_sparse_product_equals_propagate(csr_builds, product_at_any_size,
                                                    output_and_grads, case, gather_path):
    # eager on the CPU the normalised (weighted) sum over edge_index is one sparse
    # product over the CSR of the edges: PyG's propagate's output bit for bit, its
    # gradients to rounding
    dtype = torch.float32 if case == "float32" else torch.float64
    data = random_graph(num_nodes=30, num_edges=150, dtype=dtype, loops=case == "improved_loops")
    x, ei, w = data.x, data.edge_index, None
    kwargs = dict(normalize=case not in ("plain", "mean", "bipartite"),
                  improved=case == "improved_loops", cached=case == "cached")
    if case in ("weighted", "improved_loops", "mean"):
        w = data.edge_weight
    if case == "mean":
        kwargs.update(aggr="mean", add_self_loops=True)
    elif case == "bipartite":
        ei = ei[:, ei[1] < 7]
        x = (x, torch.randn(7, 8, dtype=dtype))
        kwargs.update(add_self_loops=False)
    elif case == "static":
        x = torch.randn(3, 30, 8, dtype=dtype)
    elif case == "flow":
        kwargs.update(flow="target_to_source")
    conv = ConvolutionalConv(8, 16, **kwargs).to(dtype)
    torch.nn.init.normal_(conv.bias)

    def run():  # x_dst gets no gradient: combine="none"
        return output_and_grads(conv, x, ei, w)

    out, grads = run()
    flow = kwargs.get("flow", "source_to_target")
    if case == "cached":  # the CSR of the first call is reused (torch's backward)
        out, grads = run()
        assert csr_builds == [flow]
    else:  # one CSR forward, one of the transposed edges backward
        assert csr_builds == [flow, REVERSED[flow]]
    built = len(csr_builds)
    handle = gather_path(conv)
    ref, ref_grads = run()
    handle.remove()
    assert len(csr_builds) == built
    assert torch.equal(out, ref)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    for g, h in zip(grads, ref_grads):
        assert (g is None) == (h is None)
        assert g is None or (g - h).abs().max() <= tol * (1 + h.abs().max())


def test_edge_index_sparse_product_only_where_it_applies(csr_builds, product_at_any_size):
    data = random_graph(dtype=torch.float32)
    x, ei, w = data.x, data.edge_index, data.edge_weight
    conv = ConvolutionalConv(8, 16)
    conv(x, ei, w.clone().requires_grad_())  # a learnt edge weight: PyG's propagate
    conv(x, ei, w.double())  # weights of another dtype: PyG's type promotion
    ConvolutionalConv(8, 16, normalize=False, add_self_loops=False)(x, ei.int())
    ConvolutionalConv(8, 16, decomposed_layers=2)(x, ei)
    assert csr_builds == []
    # without normalisation the CSR is built in every call, even with cached=True
    # (GCNConv caches the normalisation only), so a new graph is seen
    plain = ConvolutionalConv(8, 16, normalize=False, cached=True)
    first = plain(x, ei)
    second = plain(x, ei[:, :10])
    assert len(csr_builds) == 2 and not torch.equal(first, second)


@pytest.mark.parametrize("num_threads", [1, 2])
def test_compiled_gcn_sparse_product_on_several_threads(product_at_any_size, threads,
                                                        num_threads):
    # compiled on several threads the normalised sum over edge_index is the custom
    # operator gdl_pyg::edge_sum, on one thread inductor's fused gather and scatter
    threads(num_threads)
    data = random_graph(num_nodes=30, num_edges=150)
    conv = ConvolutionalConv(8, 16).double()
    x = data.x.clone().requires_grad_()
    targets = []

    def backend(gm, example_inputs):
        targets.append([str(n.target) for n in gm.graph.nodes])
        return gm

    torch._dynamo.reset()
    out = torch.compile(conv, backend=backend)(x, data.edge_index, data.edge_weight)
    torch._dynamo.reset()
    assert len(targets) == 1
    assert ("gdl_pyg.edge_sum.default" in targets[0]) == (num_threads > 1)
    ref = conv(x, data.edge_index, data.edge_weight)
    assert torch.allclose(out, ref, rtol=1e-12, atol=1e-12)
    g, = torch.autograd.grad(out.pow(2).sum(), x)
    g_ref, = torch.autograd.grad(ref.pow(2).sum(), x)
    assert torch.allclose(g, g_ref, rtol=1e-12, atol=1e-12)


def test_compiled_sparse_path_small_graph_keeps_gather_on_several_threads(threads):
    # below PRODUCT_MIN_MESSAGE_ELEMENTS the compiled sum over a sparse adj_t stays
    # inductor's gather and scatter on several threads too (the product's fixed cost)
    data = random_graph(dtype=torch.float32)  # 40 nonzeros x 16 features
    N = data.num_nodes
    adj_t = to_torch_csr_tensor(data.edge_index.flip(0), data.edge_weight, size=(N, N))
    conv = ConvolutionalConv(8, 16)
    threads(2)
    out, graphs = compile_graphs(conv, data.x, adj_t)
    assert any("index_add_" in g for g in graphs), graphs
    assert not any("gdl_pyg.edge_sum.default" in g for g in graphs), graphs
    assert (out - conv(data.x, adj_t)).abs().max() < 1e-5
