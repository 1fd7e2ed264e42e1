import pytest
import torch
from torch_geometric.data import Batch, Data
from torch_geometric.nn import GATConv, GATv2Conv
from torch_geometric.utils import (add_self_loops, remove_self_loops, to_torch_coo_tensor,
                                   to_torch_csr_tensor)

from gdl_pyg.groups import Permutations
from gdl_pyg.nn.conv.attentional_conv import AttentionalConv, static_self_loops
from gdl_pyg.testing import assert_equivariant, with_package


def random_graph(num_nodes=12, num_edges=40, channels=8, edge_dim=3, seed=0,
                 dtype=torch.float64, loops=False):
    gen = torch.Generator().manual_seed(seed)
    edge_index = torch.randint(0, num_nodes, (2, num_edges), generator=gen)
    edge_index = edge_index[:, edge_index[0] != edge_index[1]]
    if loops:  # existing self loops, replaced by the layer's own
        edge_index = torch.cat([edge_index, torch.tensor([[2, 5, 9], [2, 5, 9]])], dim=1)
    edge_index = torch.unique(edge_index, dim=1)
    x = torch.randn(num_nodes, channels, generator=gen, dtype=dtype)
    edge_attr = torch.randn(edge_index.size(1), edge_dim, generator=gen, dtype=dtype)
    return Data(x=x, edge_index=edge_index, edge_attr=edge_attr)


def batched():
    return Batch.from_data_list([random_graph(n, 3 * n, seed=n) for n in (5, 9, 7)])


def copy_gat(conv, ref):
    with torch.no_grad():
        ref.bias.normal_()
        conv.bias.copy_(ref.bias)
        if ref.lin is not None:
            conv.psi.weight.copy_(ref.lin.weight)
        else:
            conv.psi.weight.copy_(ref.lin_src.weight)
            conv.lin_dst.weight.copy_(ref.lin_dst.weight)
        conv.att_src.copy_(ref.att_src)
        conv.att_dst.copy_(ref.att_dst)
        if ref.lin_edge is not None:
            conv.lin_edge.weight.copy_(ref.lin_edge.weight)
            conv.att_edge.copy_(ref.att_edge)


def test_shapes_and_repr():
    data = random_graph(dtype=torch.float32)
    conv = AttentionalConv(8, 5, heads=3)
    assert conv(data.x, data.edge_index).shape == (12, 15)
    assert str(conv) == "AttentionalConv(8, 5, heads=3)"
    assert str(AttentionalConv(8, 5, v2=True)) == "AttentionalConv(8, 5, heads=1, v2=True)"
    assert AttentionalConv.group_name == "Permutations"
    assert AttentionalConv(8, 5, heads=3, concat=False)(data.x, data.edge_index).shape == (12, 5)


def test_bad_input():
    with pytest.raises(ValueError, match="heads >= 1"):
        AttentionalConv(8, 5, heads=0)
    with pytest.raises(TypeError, match="'score' to be a torch.nn.Module"):
        AttentionalConv(8, 5, score=max)
    with pytest.raises(ValueError, match="'combine' to be one of"):
        AttentionalConv(8, 5, combine="sum")


@pytest.mark.parametrize("fill_value", [0.5, "mean", "add", "max", "min"])
def test_static_self_loops_equal_pyg(fill_value):
    data = random_graph(loops=True)
    ei, ea, mask = static_self_loops(data.edge_index, data.edge_attr, data.num_nodes,
                                     fill_value)
    keep = mask == 0
    ref_ei, ref_ea = remove_self_loops(data.edge_index, data.edge_attr)
    ref_ei, ref_ea = add_self_loops(ref_ei, ref_ea, fill_value=fill_value,
                                    num_nodes=data.num_nodes)
    assert torch.equal(ei[:, keep], ref_ei)
    assert (ea[keep] - ref_ea).abs().max() < 1e-12
    assert int((~keep).sum()) == 3


@pytest.mark.parametrize("heads,concat,edge_dim,loops,fill", [
    (1, True, None, False, 0.5), (3, True, 3, False, 0.5), (2, False, 3, True, "mean"),
    (2, True, 3, True, "max"), (1, True, None, True, "mean")])
def test_equals_gatconv(heads, concat, edge_dim, loops, fill):
    data = random_graph(loops=loops)
    N = data.num_nodes
    ref = GATConv(8, 5, heads=heads, concat=concat, edge_dim=edge_dim, negative_slope=0.1,
                  fill_value=fill).double()
    conv = AttentionalConv(8, 5, heads=heads, concat=concat, edge_dim=edge_dim,
                           negative_slope=0.1, fill_value=fill).double()
    copy_gat(conv, ref)
    e = data.edge_attr if edge_dim else None
    expected = ref(data.x, data.edge_index, e)
    assert (conv(data.x, data.edge_index, e) - expected).abs().max() < 1e-10
    if edge_dim is None:  # sparse adjacency, CSR and COO
        for to_sparse in (to_torch_csr_tensor, to_torch_coo_tensor):
            adj_t = to_sparse(data.edge_index.flip(0), size=(N, N))
            assert (conv(data.x, adj_t) - expected).abs().max() < 1e-10


def test_equals_gatconv_bipartite():
    gen = torch.Generator().manual_seed(3)
    x_src = torch.randn(10, 8, generator=gen, dtype=torch.float64)
    x_dst = torch.randn(6, 4, generator=gen, dtype=torch.float64)
    edge_index = torch.unique(torch.stack([torch.randint(0, 10, (30, ), generator=gen),
                                           torch.randint(0, 6, (30, ), generator=gen)]), dim=1)
    ref = GATConv((8, 4), 5, heads=2, add_self_loops=False).double()
    conv = AttentionalConv((8, 4), 5, heads=2, add_self_loops=False).double()
    copy_gat(conv, ref)
    expected = ref((x_src, x_dst), edge_index)
    assert (conv((x_src, x_dst), edge_index) - expected).abs().max() < 1e-10
    adj_t = to_torch_csr_tensor(edge_index.flip(0), size=(6, 10))
    assert (conv((x_src, x_dst), adj_t) - expected).abs().max() < 1e-10


def test_equals_gatv2conv():
    data = random_graph()
    ref = GATv2Conv(8, 5, heads=3, edge_dim=3).double()
    conv = AttentionalConv(8, 5, heads=3, edge_dim=3, v2=True).double()
    with torch.no_grad():
        ref.bias.normal_()
        conv.psi.load_state_dict(ref.lin_l.state_dict())
        conv.lin_dst.load_state_dict(ref.lin_r.state_dict())
        conv.lin_edge.load_state_dict(ref.lin_edge.state_dict())
        conv.att.copy_(ref.att)
        conv.bias.copy_(ref.bias)
    expected = ref(data.x, data.edge_index, data.edge_attr)
    assert (conv(data.x, data.edge_index, data.edge_attr) - expected).abs().max() < 1e-10


def test_custom_score_psi_phi():
    data = random_graph()
    H, C = 2, 4
    score = torch.nn.Sequential(torch.nn.Linear(8 + 8 + 3, 16), torch.nn.Tanh(),
                                torch.nn.Linear(16, H)).double()
    psi = torch.nn.Sequential(torch.nn.Linear(8, H * C), torch.nn.ReLU()).double()
    phi = torch.nn.Linear(8 + H * C, 6).double()
    conv = AttentionalConv(8, C, heads=H, psi=psi, score=score, phi=phi, combine="cat",
                           add_self_loops=False, bias=False)
    out = conv(data.x, data.edge_index, data.edge_attr)
    src, dst = data.edge_index
    logits = score(torch.cat([data.x[dst], data.x[src], data.edge_attr], -1))  # [E, H]
    agg = torch.zeros(data.num_nodes, H, C, dtype=torch.float64)
    h = psi(data.x).view(-1, H, C)
    for u in range(data.num_nodes):  # a per-node softmax, written out
        m = dst == u
        if m.any():
            a = torch.softmax(logits[m], dim=0)
            agg[u] = (a.unsqueeze(-1) * h[src[m]]).sum(0)
    expected = phi(torch.cat([data.x, agg.view(-1, H * C)], -1))
    assert (out - expected).abs().max() < 1e-10


@with_package("torch_sparse")
def test_sparse_tensor():
    from torch_sparse import SparseTensor
    data = random_graph()
    N = data.num_nodes
    conv = AttentionalConv(8, 5, heads=2).double()
    adj_t = SparseTensor.from_edge_index(data.edge_index, sparse_sizes=(N, N)).t()
    assert (conv(data.x, adj_t) - conv(data.x, data.edge_index)).abs().max() < 1e-10


@pytest.mark.parametrize("kwargs", [dict(heads=3, edge_dim=3), dict(heads=2, v2=True)])
def test_permutation_equivariance(kwargs):
    conv = AttentionalConv(8, 5, **kwargs)
    for data in (random_graph(loops=True), batched()):
        assert_equivariant(conv, data, Permutations())


def test_checker_fails_on_broken_layer():
    class Broken(AttentionalConv):  # attends to a fixed node index
        def forward(self, x, edge_index, edge_attr=None):
            out = super().forward(x, edge_index, edge_attr)
            return out + out[0]

    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(Broken(8, 5, heads=2), random_graph(), Permutations())


def test_compile_no_graph_breaks():
    data = random_graph(dtype=torch.float32, loops=True)
    conv = AttentionalConv(8, 5, heads=2, edge_dim=3)  # self loops added without masks
    torch._dynamo.reset()
    explain = torch._dynamo.explain(conv)(data.x, data.edge_index, data.edge_attr)
    assert explain.graph_break_count == 0, explain.break_reasons
    assert explain.graph_count == 1 and not explain.break_reasons


# --- issue 9: static graphs, return_attention_weights, residual, validation -------------

def copy_gatv2(conv, ref):
    with torch.no_grad():
        ref.bias.normal_()
        conv.psi.load_state_dict(ref.lin_l.state_dict())
        conv.lin_dst.load_state_dict(ref.lin_r.state_dict())
        if ref.lin_edge is not None:
            conv.lin_edge.load_state_dict(ref.lin_edge.state_dict())
        conv.att.copy_(ref.att)
        conv.bias.copy_(ref.bias)


def copy_res(conv, ref):
    with torch.no_grad():
        conv.res.weight.copy_(ref.res.weight)


@pytest.mark.parametrize("shape", [(1, 12, 8), (3, 12, 8)])
def test_static_graph_rejected_like_gatconv(shape):
    data = random_graph()
    x = torch.randn(shape, dtype=torch.float64)
    with pytest.raises(AssertionError, match="Static graphs not supported"):
        GATConv(8, 5).double()(x, data.edge_index)  # PyG rejects them too
    for conv in (AttentionalConv(8, 5), AttentionalConv(8, 5, v2=True)):
        with pytest.raises(ValueError, match="'AttentionalConv' does not support static "
                                             r"graphs .*got \[" + str(shape[0])):
            conv.double()(x, data.edge_index)
    conv = AttentionalConv((8, 8), 5, add_self_loops=False).double()
    with pytest.raises(ValueError, match="does not support static graphs"):
        conv((x, data.x), data.edge_index)
    with pytest.raises(ValueError, match="does not support static graphs"):
        conv((data.x, x), data.edge_index)


@pytest.mark.parametrize("shape", [(8, ), (2, 2, 12, 8), ()])
def test_other_ranks_rejected(shape):
    data = random_graph()
    with pytest.raises(ValueError, match="'AttentionalConv' expected 'x' to be 2-D"):
        AttentionalConv(8, 5).double()(torch.randn(shape, dtype=torch.float64),
                                       data.edge_index)


@pytest.mark.parametrize("v2,heads,edge_dim,loops,add_loops", [
    (False, 1, None, False, True), (False, 3, 3, True, True), (False, 2, None, True, False),
    (True, 2, None, True, True), (True, 3, 3, False, True)])
def test_return_attention_weights_equal_pyg(v2, heads, edge_dim, loops, add_loops):
    data = random_graph(loops=loops)
    Ref = GATv2Conv if v2 else GATConv
    ref = Ref(8, 5, heads=heads, edge_dim=edge_dim, add_self_loops=add_loops).double()
    conv = AttentionalConv(8, 5, heads=heads, edge_dim=edge_dim, add_self_loops=add_loops,
                           v2=v2).double()
    (copy_gatv2 if v2 else copy_gat)(conv, ref)
    e = data.edge_attr if edge_dim else None
    out_ref, (ei_ref, alpha_ref) = ref(data.x, data.edge_index, e,
                                       return_attention_weights=True)
    out, (ei, alpha) = conv(data.x, data.edge_index, e, return_attention_weights=True)
    assert torch.equal(ei, ei_ref)  # the same edges, self loops included, in PyG's order
    assert alpha.shape == alpha_ref.shape == (ei.size(1), heads)
    assert (alpha - alpha_ref).abs().max() < 1e-12
    assert (out - out_ref).abs().max() < 1e-10
    # without the flag (None or False, as in PyG's code) only the output comes back
    assert torch.equal(conv(data.x, data.edge_index, e), out)
    assert torch.equal(conv(data.x, data.edge_index, e, return_attention_weights=False), out)
    assert isinstance(ref(data.x, data.edge_index, e, return_attention_weights=False),
                      torch.Tensor)


@pytest.mark.parametrize("v2", [False, True])
@pytest.mark.parametrize("to_sparse", [to_torch_csr_tensor, to_torch_coo_tensor])
def test_return_attention_weights_sparse_equal_pyg(v2, to_sparse):
    data = random_graph(loops=True)
    N = data.num_nodes
    ref = (GATv2Conv if v2 else GATConv)(8, 5, heads=2).double()
    conv = AttentionalConv(8, 5, heads=2, v2=v2).double()
    (copy_gatv2 if v2 else copy_gat)(conv, ref)
    adj_t = to_sparse(data.edge_index.flip(0), size=(N, N))
    out_ref, (adj_ref, alpha_ref) = ref(data.x, adj_t, return_attention_weights=True)
    out, (adj, alpha) = conv(data.x, adj_t, return_attention_weights=True)
    assert (out - out_ref).abs().max() < 1e-10
    assert adj.layout == adj_ref.layout and adj.shape == adj_ref.shape == (N, N, 2)
    assert (alpha - alpha_ref).abs().max() < 1e-12
    assert (adj.to_dense() - adj_ref.to_dense()).abs().max() < 1e-12
    # the same weights as for edge_index input, self loops included
    _, (ei, alpha_ei) = conv(data.x, data.edge_index, return_attention_weights=True)
    dense = torch.zeros(N, N, 2, dtype=torch.float64)
    dense[ei[1], ei[0]] = alpha_ei
    assert (adj.to_dense() - dense).abs().max() < 1e-12


@with_package("torch_sparse")
def test_return_attention_weights_sparse_tensor_equal_pyg():
    from torch_sparse import SparseTensor
    data = random_graph()
    N = data.num_nodes
    ref = GATConv(8, 5, heads=2).double()
    conv = AttentionalConv(8, 5, heads=2).double()
    copy_gat(conv, ref)
    adj_t = SparseTensor.from_edge_index(data.edge_index, sparse_sizes=(N, N)).t()
    out_ref, adj_ref = ref(data.x, adj_t, return_attention_weights=True)
    out, adj = conv(data.x, adj_t, return_attention_weights=True)
    assert isinstance(adj, SparseTensor) and adj.sizes() == adj_ref.sizes() == [N, N, 2]
    assert (out - out_ref).abs().max() < 1e-10
    assert torch.equal(adj.storage.row(), adj_ref.storage.row())
    assert torch.equal(adj.storage.col(), adj_ref.storage.col())
    assert (adj.storage.value() - adj_ref.storage.value()).abs().max() < 1e-12


@pytest.mark.parametrize("v2,concat,edge_dim", [
    (False, True, None), (False, False, 3), (True, True, 3), (True, False, None)])
def test_residual_equals_pyg(v2, concat, edge_dim):
    data = random_graph(loops=True)
    Ref = GATv2Conv if v2 else GATConv
    ref = Ref(8, 5, heads=3, concat=concat, edge_dim=edge_dim, residual=True).double()
    conv = AttentionalConv(8, 5, heads=3, concat=concat, edge_dim=edge_dim, v2=v2,
                           residual=True).double()
    (copy_gatv2 if v2 else copy_gat)(conv, ref)
    copy_res(conv, ref)
    assert conv.res.weight.shape == (15 if concat else 5, 8)
    e = data.edge_attr if edge_dim else None
    expected, (_, alpha_ref) = ref(data.x, data.edge_index, e, return_attention_weights=True)
    out, (_, alpha) = conv(data.x, data.edge_index, e, return_attention_weights=True)
    assert (out - expected).abs().max() < 1e-10
    assert (alpha - alpha_ref).abs().max() < 1e-12
    before = conv.res.weight.clone()
    conv.reset_parameters()
    assert not torch.equal(before, conv.res.weight)


def test_residual_bipartite_equals_pyg():
    gen = torch.Generator().manual_seed(3)
    x_src = torch.randn(10, 8, generator=gen, dtype=torch.float64)
    x_dst = torch.randn(6, 4, generator=gen, dtype=torch.float64)
    edge_index = torch.unique(torch.stack([torch.randint(0, 10, (30, ), generator=gen),
                                           torch.randint(0, 6, (30, ), generator=gen)]), dim=1)
    ref = GATConv((8, 4), 5, heads=2, residual=True).double()
    conv = AttentionalConv((8, 4), 5, heads=2, residual=True).double()
    copy_gat(conv, ref)
    copy_res(conv, ref)
    expected = ref((x_src, x_dst), edge_index)
    assert expected.shape == (6, 10)
    assert (conv((x_src, x_dst), edge_index) - expected).abs().max() < 1e-10
    # no target features: no residual, as in PyG
    expected = ref((x_src, None), edge_index, size=(10, 6))
    assert (conv((x_src, None), edge_index, size=(10, 6)) - expected).abs().max() < 1e-10


def test_residual_permutation_equivariance():
    conv = AttentionalConv(8, 5, heads=2, edge_dim=3, residual=True)
    for data in (random_graph(loops=True), batched()):
        assert_equivariant(conv, data, Permutations())


BAD_EDGE_INDEX = [
    (lambda ei: ei.t().contiguous(), "looks transposed, pass edge_index.t()"),
    (lambda ei: torch.cat([ei, ei[:1]]), r"size 2 in the first dimension"),
    (lambda ei: ei.double(), "integer type"),
    (lambda ei: torch.cat([ei, torch.tensor([[0], [12]])], 1), "index 12 .* only 12 nodes"),
    (lambda ei: torch.cat([ei, torch.tensor([[-3], [1]])], 1), "negative index"),
]


@pytest.mark.parametrize("make,match", BAD_EDGE_INDEX)
def test_bad_edge_index_rejected(make, match):
    data = random_graph(num_edges=24)
    edge_index = make(data.edge_index)
    for conv in (AttentionalConv(8, 5), AttentionalConv(8, 5, add_self_loops=False, v2=True)):
        with pytest.raises(ValueError, match="'AttentionalConv' .*" + match):
            conv.double()(data.x, edge_index)


def test_channel_and_edge_feature_mismatch():
    data = random_graph()
    with pytest.raises(ValueError, match="'AttentionalConv' expected 'x' with 8 channels .*"
                                         "got 7"):
        AttentionalConv(8, 5).double()(data.x[:, :7], data.edge_index)
    with pytest.raises(ValueError, match="expected 'x\\[1\\]' with 4 channels .*got 8"):
        conv = AttentionalConv((8, 4), 5, add_self_loops=False).double()
        conv((data.x, data.x), data.edge_index)
    with pytest.raises(ValueError, match="expected 'edge_attr' with 3 channels .*got 2"):
        AttentionalConv(8, 5, edge_dim=3).double()(data.x, data.edge_index,
                                                   data.edge_attr[:, :2])
    with pytest.raises(ValueError, match=r"'edge_attr' with one row per edge.*got shape \[5, 3\]"):
        AttentionalConv(8, 5, edge_dim=3).double()(data.x, data.edge_index, data.edge_attr[:5])
    with pytest.raises(ValueError, match="feeds 'phi' with 5 channels .* expects 6"):
        AttentionalConv(8, 5, phi=torch.nn.Linear(6, 2)).double()(data.x, data.edge_index)
    # lazy in_channels=-1 still works, with a residual too
    conv = AttentionalConv(-1, 5, heads=2, residual=True).double()
    assert conv(data.x, data.edge_index).shape == (12, 10)


def test_compile_residual_no_graph_breaks():
    data = random_graph(dtype=torch.float32, loops=True)
    conv = AttentionalConv(8, 5, heads=2, v2=True, residual=True)
    torch._dynamo.reset()
    explain = torch._dynamo.explain(conv)(data.x, data.edge_index)
    assert explain.graph_break_count == 0, explain.break_reasons


class _GatherShapes(torch.utils._python_dispatch.TorchDispatchMode):
    # records the output shape of every index_select / gather run under it
    def __init__(self):
        super().__init__()
        self.shapes = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func.overloadpacket in (torch.ops.aten.index_select, torch.ops.aten.gather):
            self.shapes.append(tuple(out.shape))
        return out


@pytest.mark.parametrize("v2,per_edge", [(False, 1), (True, 3)])
@pytest.mark.parametrize("sparse", [False, True])
def test_projection_gathered_per_edge_only_where_read(v2, per_edge, sparse):
    # GAT's score reads node-level terms only: the E x H x C projection is
    # gathered once (for the messages), not again for the edge_updater;
    # GATv2's score reads both endpoints' projections per edge
    data = random_graph()
    conv = AttentionalConv(8, 5, heads=3, v2=v2).double()
    adj = to_torch_csr_tensor(data.edge_index.flip(0), size=(12, 12)) if sparse \
        else data.edge_index
    num_edges = data.edge_index.size(1) + 12  # with the self loops
    with _GatherShapes() as mode:
        out = conv(data.x, adj)
    assert mode.shapes.count((num_edges, 3, 5)) == per_edge
    ref = GATv2Conv(8, 5, heads=3) if v2 else GATConv(8, 5, heads=3)
    ref = ref.double()
    if v2:
        with torch.no_grad():
            conv.bias.normal_()
            ref.lin_l.load_state_dict(conv.psi.state_dict())
            ref.lin_r.load_state_dict(conv.lin_dst.state_dict())
            ref.att.copy_(conv.att)
            ref.bias.copy_(conv.bias)
    else:
        copy_gat(conv, ref)
    assert (conv(data.x, adj) - ref(data.x, data.edge_index)).abs().max() < 1e-10
    assert out.shape == (12, 15)


# --- issue 11: uncoalesced COO adjacency, decomposed_layers ---------------------------

def uncoalesced(edge_index, values, size, num_dup=5, seed=0):
    # a COO adj_t (row = target) holding every edge once, the first `num_dup`
    # edges a second time, in a shuffled order: not coalesced
    gen = torch.Generator().manual_seed(seed)
    index = torch.cat([edge_index.flip(0), edge_index.flip(0)[:, :num_dup]], dim=1)
    values = torch.cat([values, values[:num_dup]], dim=0)
    perm = torch.randperm(index.size(1), generator=gen)
    adj_t = torch.sparse_coo_tensor(index[:, perm], values[perm], size + values.shape[1:])
    assert not adj_t.is_coalesced()
    return adj_t


@pytest.mark.parametrize("v2", [False, True])
@pytest.mark.parametrize("add_loops", [True, False])
def test_uncoalesced_coo_equals_gatconv(v2, add_loops):
    # PyG's GATConv adds its self loops to the coalesced adjacency (duplicate
    # entries are one edge); without self loops PyG fails on this input, and
    # the layer reads it the same way
    data = random_graph(loops=True)
    N = data.num_nodes
    ref = (GATv2Conv if v2 else GATConv)(8, 5, heads=2, add_self_loops=add_loops).double()
    conv = AttentionalConv(8, 5, heads=2, add_self_loops=add_loops, v2=v2).double()
    (copy_gatv2 if v2 else copy_gat)(conv, ref)
    adj_t = uncoalesced(data.edge_index, torch.ones(data.num_edges, dtype=torch.float64),
                        (N, N))
    x = data.x.clone().requires_grad_()
    out = conv(x, adj_t)
    assert not adj_t.is_coalesced()  # not flagged in place (PyG's to_edge_index does)
    x_ref = data.x.clone().requires_grad_()
    expected = ref(x_ref, adj_t.clone() if add_loops else adj_t.coalesce())
    assert (out - expected).abs().max() < 1e-10
    if v2:
        pairs = [(conv.psi.weight, ref.lin_l.weight), (conv.lin_dst.weight, ref.lin_r.weight),
                 (conv.att, ref.att), (conv.bias, ref.bias)]
    else:
        pairs = [(conv.psi.weight, ref.lin.weight), (conv.att_src, ref.att_src),
                 (conv.att_dst, ref.att_dst), (conv.bias, ref.bias)]
    g = torch.autograd.grad(out.square().sum(), [x] + [p for p, _ in pairs])
    r = torch.autograd.grad(expected.square().sum(), [x_ref] + [q for _, q in pairs])
    assert all((a - b).abs().max() < 1e-10 for a, b in zip(g, r))
    # the duplicates are one edge: the output of the edges once
    assert (out - conv(data.x, data.edge_index)).abs().max() < 1e-10
    # edge features cannot be paired with its entries: a clear error
    with pytest.raises(ValueError, match=r"adj_t.coalesce\(\)"):
        conv(data.x, adj_t, torch.randn(adj_t._nnz(), 3, dtype=torch.float64))
    hybrid = uncoalesced(data.edge_index, data.edge_attr, (N, N))
    with pytest.raises(ValueError, match="edge features"):
        conv(data.x, hybrid)


@pytest.mark.parametrize("v2,concat,edge_dim", [
    (False, True, 3), (False, False, None), (True, True, None), (True, False, 3)])
def test_decomposed_layers_equal_undecomposed(v2, concat, edge_dim):
    # the scores are computed whole, the weighted sum of the messages in
    # chunks of the features: the same output, weights and gradients (PyG's
    # GATConv fails on decomposed_layers > 1)
    data = random_graph(loops=True)
    N = data.num_nodes
    kwargs = dict(heads=3, concat=concat, edge_dim=edge_dim, v2=v2)
    conv = AttentionalConv(8, 5, **kwargs).double()
    split = AttentionalConv(8, 5, decomposed_layers=2, **kwargs).double()
    split.load_state_dict(conv.state_dict())
    widths = []
    split.register_message_forward_pre_hook(
        lambda module, inputs: widths.append(inputs[0]["h_j"].shape[1:]))
    e = data.edge_attr if edge_dim else None
    x = data.x.clone().requires_grad_()
    expected, (ei, alpha) = conv(x, data.edge_index, e, return_attention_weights=True)
    out, (ei_split, alpha_split) = split(x, data.edge_index, e, return_attention_weights=True)
    assert widths == [(3, 3), (3, 2)]  # heads x chunk of the 5 channels
    assert (out - expected).abs().max() < 1e-12
    assert torch.equal(ei, ei_split) and (alpha - alpha_split).abs().max() < 1e-14
    g = torch.autograd.grad(out.square().sum(), [x] + list(split.parameters()))
    r = torch.autograd.grad(expected.square().sum(), [x] + list(conv.parameters()))
    assert all((a - b).abs().max() < 1e-12 for a, b in zip(g, r))
    if edge_dim is None:  # sparse input
        adj_t = to_torch_csr_tensor(data.edge_index.flip(0), size=(N, N))
        assert (split(data.x, adj_t) - conv(data.x, adj_t)).abs().max() < 1e-12


def test_decomposed_layers_bipartite_and_bad_aggregation():
    gen = torch.Generator().manual_seed(3)
    x_src = torch.randn(10, 8, generator=gen, dtype=torch.float64)
    x_dst = torch.randn(6, 4, generator=gen, dtype=torch.float64)
    edge_index = torch.unique(torch.stack([torch.randint(0, 10, (30, ), generator=gen),
                                           torch.randint(0, 6, (30, ), generator=gen)]), dim=1)
    conv = AttentionalConv((8, 4), 5, heads=2, add_self_loops=False).double()
    split = AttentionalConv((8, 4), 5, heads=2, add_self_loops=False,
                            decomposed_layers=3).double()
    split.load_state_dict(conv.state_dict())
    # the number of targets comes from x_dst (a target without edges included)
    keep = edge_index[1] < 5
    out = split((x_src, x_dst), edge_index[:, keep])
    assert out.shape == (6, 10)
    assert (out - conv((x_src, x_dst), edge_index[:, keep])).abs().max() < 1e-12
    adj_t = to_torch_coo_tensor(edge_index.flip(0), size=(6, 10))
    assert (split((x_src, x_dst), adj_t) - conv((x_src, x_dst), adj_t)).abs().max() < 1e-12
    with pytest.raises(ValueError, match="feature-wise aggregation"):
        AttentionalConv(8, 5, aggr=["sum", "max"], decomposed_layers=2)


@pytest.fixture
def products(monkeypatch):
    r"""A list that gets an entry (the weights' shape) per call of
    :func:`edge_aggregate` from :class:`AttentionalConv`."""
    import gdl_pyg.nn.conv.attentional_conv as attentional_conv
    calls, original = [], attentional_conv.edge_aggregate

    def spy(edge_index, x, num_dst, flow, aggr, node_dim, edge_weight):
        calls.append(tuple(edge_weight.shape))
        return original(edge_index, x, num_dst, flow, aggr, node_dim, edge_weight)

    monkeypatch.setattr(attentional_conv, "edge_aggregate", spy)
    return calls


@pytest.mark.parametrize("case", ["gat", "one_head", "mean_heads", "v2", "edge_dim", "sorted",
                                  "bipartite", "flow", "float32", "aggr_mean", "loops"])
def test_attention_as_sparse_product_equals_gather(product_at_any_size, products,
                                                   output_and_grads, case, gather_path):
    # eager on the CPU the attention-weighted sum over edge_index is one sparse
    # product per head: PyG's gather and scatter's output bit for bit, the
    # gradients (of x, the attention's parameters, the edge features) to rounding
    dtype = torch.float32 if case == "float32" else torch.float64
    data = random_graph(num_nodes=30, num_edges=200, dtype=dtype, loops=case == "loops")
    x, ei, e = data.x, data.edge_index, None
    kwargs = dict(heads=1 if case == "one_head" else 3, concat=case != "mean_heads",
                  v2=case == "v2", negative_slope=0.1)
    if case == "edge_dim":
        kwargs["edge_dim"], e = 3, data.edge_attr
    elif case == "sorted":  # sorted by target, no loops added: no sort in the product
        ei = ei[:, torch.argsort(ei[1], stable=True)]
        kwargs["add_self_loops"] = False
    elif case == "bipartite":
        ei = ei[:, ei[1] < 7]
        x = (x, torch.randn(7, 8, dtype=dtype))
        kwargs["add_self_loops"] = False
    elif case == "flow":
        kwargs["flow"] = "target_to_source"
    elif case == "aggr_mean":
        kwargs["aggr"] = "mean"
    conv = AttentionalConv(8, 5, **kwargs).to(dtype)
    torch.nn.init.normal_(conv.bias)

    out, grads = output_and_grads(conv, x, ei, e)
    assert products == [(ei.size(1) + (30 if conv.add_self_loops else 0), conv.heads)]
    handle = gather_path(conv)
    ref, ref_grads = output_and_grads(conv, x, ei, e)
    handle.remove()
    assert len(products) == 1  # the hook turned the product off
    assert torch.equal(out, ref)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    for g, h in zip(grads, ref_grads):
        assert (g is None) == (h is None)
        assert g is None or (g - h).abs().max() <= tol * (1 + h.abs().max())
    if case == "gat":  # and PyG's GATConv
        pyg = GATConv(8, 5, heads=3, negative_slope=0.1).to(dtype)
        copy_gat(conv, pyg)
        assert (conv(x, ei) - pyg(x, ei)).abs().max() < 1e-10


def test_attention_as_sparse_product_only_where_it_applies(product_at_any_size, products):
    data = random_graph(dtype=torch.float32)
    x, ei = data.x, data.edge_index
    AttentionalConv(8, 5, heads=2, aggr="max")(x, ei)
    AttentionalConv(8, 5, heads=2)(x, to_torch_csr_tensor(ei.flip(0), size=(12, 12)))
    AttentionalConv(8, 4, heads=2, decomposed_layers=2)(x, ei)
    AttentionalConv(8, 5, heads=2, add_self_loops=False)((x, None), ei)  # targets unknown

    class Scaled(AttentionalConv):  # its own message: PyG's propagate calls it
        def message(self, h_j, alpha):
            return 2 * super().message(h_j, alpha)

    Scaled(8, 5, heads=2)(x, ei)
    assert products == []
    AttentionalConv(8, 5, heads=2)(x, ei)
    assert products == [(ei.size(1) + 12, 2)]


def test_attention_as_sparse_product_below_the_size_threshold(products):
    data = random_graph(dtype=torch.float32)  # 40 edges x 2 heads x 5: the gather
    AttentionalConv(8, 5, heads=2)(data.x, data.edge_index)
    assert products == []


def test_attention_as_sparse_product_double_backward(product_at_any_size, gather_path):
    data = random_graph(num_nodes=20, num_edges=80)
    conv = AttentionalConv(8, 4, heads=2, edge_dim=3).double()
    x = data.x.clone().requires_grad_()

    def hessian_term():
        out = torch.tanh(conv(x, data.edge_index, data.edge_attr))
        gx, = torch.autograd.grad(out.pow(2).sum(), x, create_graph=True)
        hx, = torch.autograd.grad(gx.pow(2).sum(), x)
        return hx

    product = hessian_term()
    handle = gather_path(conv)
    gather = hessian_term()
    handle.remove()
    assert (product - gather).abs().max() <= 1e-10 * (1 + gather.abs().max())


@pytest.mark.parametrize("num_threads", [1, 2])
def test_compiled_attention_product_on_several_threads(product_at_any_size, threads,
                                                       num_threads):
    # compiled on several threads the weighted sum is gdl_pyg::edge_sum, on one
    # inductor's fused gather and scatter; one graph either way, the eager output
    threads(num_threads)
    targets = []

    def backend(gm, example_inputs):
        targets.append([str(n.target) for n in gm.graph.nodes])
        return gm

    data = random_graph(num_nodes=30, num_edges=200)
    conv = AttentionalConv(8, 5, heads=3).double()
    torch._dynamo.reset()
    out = torch.compile(conv, backend=backend)(data.x, data.edge_index)
    torch._dynamo.reset()
    assert len(targets) == 1
    assert ("gdl_pyg.edge_sum.default" in targets[0]) == (num_threads > 1)
    assert torch.allclose(out, conv(data.x, data.edge_index), rtol=1e-12, atol=1e-12)
