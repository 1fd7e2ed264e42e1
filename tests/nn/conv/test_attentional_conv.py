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
