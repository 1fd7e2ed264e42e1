import pytest
import torch
from torch_geometric.data import Batch, Data
from torch_geometric.utils import to_dense_batch

from gdl_pyg.groups import Permutations
from gdl_pyg.nn.conv.graph_transformer_conv import GraphTransformerConv, complete_edge_index
from gdl_pyg.testing import assert_equivariant

SIZES = (3, 6, 4)


def batched(channels=8, dtype=torch.float64, edges=False):
    data_list = []
    for n in SIZES:
        gen = torch.Generator().manual_seed(n)
        d = Data(x=torch.randn(n, channels, generator=gen, dtype=dtype))
        if edges:
            d.edge_index = torch.unique(torch.randint(0, n, (2, 3 * n), generator=gen), dim=1)
            d.edge_attr = torch.randn(d.edge_index.size(1), 2, generator=gen, dtype=dtype)
        data_list.append(d)
    return Batch.from_data_list(data_list)


def from_mha(heads=2, dim=8):
    mha = torch.nn.MultiheadAttention(dim, heads, batch_first=True).double().eval()
    conv = GraphTransformerConv(dim, dim, heads=heads).double().eval()
    with torch.no_grad():
        mha.in_proj_bias.normal_()
        mha.out_proj.bias.normal_()
        Wq, Wk, Wv = mha.in_proj_weight.chunk(3)
        bq, bk, bv = mha.in_proj_bias.chunk(3)
        for lin, W, b in ((conv.lin_query, Wq, bq), (conv.lin_key, Wk, bk),
                          (conv.lin_value, Wv, bv)):
            lin.weight.copy_(W)
            lin.bias.copy_(b)
        conv.lin_out.load_state_dict(mha.out_proj.state_dict())
    return mha, conv


def test_complete_edge_index():
    batch = torch.tensor([0, 0, 1, 1, 1])
    ei = complete_edge_index(batch)
    expected = {(s, t) for t in range(5) for s in range(5) if batch[s] == batch[t]}
    assert ei.size(1) == 4 + 9
    assert set(map(tuple, ei.t().tolist())) == expected
    ei = complete_edge_index(batch, loop=False)
    assert set(map(tuple, ei.t().tolist())) == {e for e in expected if e[0] != e[1]}
    assert complete_edge_index(num_nodes=3).size(1) == 9
    with pytest.raises(ValueError, match="sorted"):
        complete_edge_index(torch.tensor([1, 0]))


def test_shapes_and_repr():
    data = batched(dtype=torch.float32, edges=True)
    conv = GraphTransformerConv(8, 12, heads=3, edge_dim=2)
    assert conv(data.x, batch=data.batch).shape == (13, 12)
    assert conv(data.x, data.edge_index, data.edge_attr).shape == (13, 12)
    assert str(conv) == "GraphTransformerConv(8, 12, heads=3)"
    assert GraphTransformerConv.group_name == "Permutations"
    with pytest.raises(ValueError, match="divisible by heads"):
        GraphTransformerConv(8, 10, heads=3)
    with pytest.raises(ValueError, match="without 'edge_index'"):
        conv(data.x, edge_attr=data.edge_attr)
    with pytest.raises(ValueError, match="no 'edge_attr'"):
        conv(data.x, data.edge_index)


def test_equals_multihead_attention_with_padding():
    mha, conv = from_mha()
    data = batched()
    xd, mask = to_dense_batch(data.x, data.batch)
    expected = mha(xd, xd, xd, key_padding_mask=~mask, need_weights=False)[0][mask]
    dense = conv(data.x, batch=data.batch)  # padded dense path
    assert (dense - expected).abs().max() < 1e-10
    sparse = conv(data.x, complete_edge_index(data.batch))  # complete-graph edges
    assert (sparse - expected).abs().max() < 1e-10
    # static shapes for the dense path
    out = conv(data.x, batch=data.batch, batch_size=3, max_num_nodes=max(SIZES))
    assert (out - expected).abs().max() < 1e-10


def test_bipartite_cross_attention():
    mha, conv = from_mha()
    gen = torch.Generator().manual_seed(0)
    x_src = torch.randn(5, 8, generator=gen, dtype=torch.float64)
    x_dst = torch.randn(3, 8, generator=gen, dtype=torch.float64)
    edge_index = torch.stack([torch.arange(5).repeat(3), torch.arange(3).repeat_interleave(5)])
    expected = mha(x_dst[None], x_src[None], x_src[None], need_weights=False)[0][0]
    assert (conv((x_src, x_dst), edge_index) - expected).abs().max() < 1e-10


def test_edge_features():
    data = batched(edges=True)
    conv = GraphTransformerConv(8, 8, heads=2, edge_dim=2).double()
    out = conv(data.x, data.edge_index, data.edge_attr)
    H, d = 2, 4
    q = conv.lin_query(data.x).view(-1, H, d)
    k = conv.lin_key(data.x).view(-1, H, d)
    v = conv.lin_value(data.x).view(-1, H, d)
    e = conv.lin_edge(data.edge_attr).view(-1, H, d)
    src, dst = data.edge_index
    logits = (q[dst] * (k[src] + e)).sum(-1) / d**0.5
    agg = torch.zeros(data.num_nodes, H, d, dtype=torch.float64)
    for u in range(data.num_nodes):
        m = dst == u
        if m.any():
            a = torch.softmax(logits[m], 0)
            agg[u] = (a.unsqueeze(-1) * (v[src[m]] + e[m])).sum(0)
    assert (out - conv.lin_out(agg.view(-1, H * d))).abs().max() < 1e-10


def test_permutation_equivariance():
    conv = GraphTransformerConv(8, 8, heads=2, edge_dim=2)
    data = batched(edges=True)
    assert_equivariant(conv, data, Permutations(),
                       forward=lambda m, d: m(d.x, batch=d.batch))
    assert_equivariant(conv, data, Permutations())  # sparse, with edge features


def test_checker_fails_on_broken_layer():
    conv = GraphTransformerConv(8, 8, heads=2)
    data = batched()
    pos = torch.linspace(0, 1, data.num_nodes, dtype=torch.float64).unsqueeze(-1)

    def with_positions(m, d):  # an absolute positional encoding breaks the symmetry
        return m(d.x + pos, batch=d.batch)

    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(conv, data, Permutations(), forward=with_positions)


def test_compile_no_graph_breaks():
    data = batched(dtype=torch.float32, edges=True)
    conv = GraphTransformerConv(8, 8, heads=2, edge_dim=2)
    torch._dynamo.reset()
    explain = torch._dynamo.explain(conv)(data.x, data.edge_index, data.edge_attr)
    assert explain.graph_break_count == 0, explain.break_reasons
    assert explain.graph_count == 1 and not explain.break_reasons


def test_compile_dense_path_no_graph_breaks():
    data = batched(dtype=torch.float32)
    conv = GraphTransformerConv(8, 8, heads=2)
    torch._dynamo.reset()
    explain = torch._dynamo.explain(conv)(data.x, batch=data.batch, batch_size=3,
                                          max_num_nodes=max(SIZES))
    assert explain.graph_break_count == 0, explain.break_reasons
    assert explain.graph_count == 1 and not explain.break_reasons

