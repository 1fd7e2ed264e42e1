import pytest
import torch
from torch_geometric.data import Batch, Data
from torch_geometric.nn import EdgeConv, GINConv, GINEConv
from torch_geometric.utils import to_edge_index, to_torch_coo_tensor, to_torch_csr_tensor

from gdl_pyg.groups import Permutations
from gdl_pyg.nn.conv import message_passing_conv as mpc
from gdl_pyg.nn.conv.message_passing_conv import MessagePassingConv
from gdl_pyg.testing import assert_equivariant, with_package

#: the flow of the transposed edges (the backward of the sparse product)
REVERSED = {"source_to_target": "target_to_source",
            "target_to_source": "source_to_target"}


def random_graph(num_nodes=12, num_edges=40, channels=8, edge_dim=3, seed=0,
                 dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    edge_index = torch.randint(0, num_nodes, (2, num_edges), generator=gen)
    edge_index = edge_index[:, edge_index[0] != edge_index[1]]
    edge_index = torch.unique(edge_index, dim=1)  # no duplicate edges (sparse adj)
    x = torch.randn(num_nodes, channels, generator=gen, dtype=dtype)
    edge_attr = torch.randn(edge_index.size(1), edge_dim, generator=gen, dtype=dtype)
    return Data(x=x, edge_index=edge_index, edge_attr=edge_attr)


def batched(dtype=torch.float64):
    return Batch.from_data_list([random_graph(n, 3 * n, seed=n, dtype=dtype)
                                 for n in (5, 9, 7)])


def mlp(i, o):
    return torch.nn.Sequential(torch.nn.Linear(i, 16), torch.nn.ReLU(), torch.nn.Linear(16, o))


def test_shapes_and_repr():
    data = random_graph(dtype=torch.float32)
    conv = MessagePassingConv(phi=mlp(8, 32), edge_dim=3, in_channels=8)
    assert conv(data.x, data.edge_index, data.edge_attr).shape == (12, 32)
    assert str(conv).startswith("MessagePassingConv(psi=None, phi=Sequential(")
    assert MessagePassingConv.group_name == "Permutations"
    conv = MessagePassingConv(psi=mlp(16 + 3, 10), combine="cat", phi=mlp(18, 4))
    assert conv(data.x, data.edge_index, data.edge_attr).shape == (12, 4)
    conv = MessagePassingConv(psi=mlp(16, 8))  # no edge features
    assert conv(data.x, data.edge_index).shape == (12, 8)
    before = conv.psi[0].weight.clone()
    conv.reset_parameters()  # chains into the user modules
    assert not torch.equal(before, conv.psi[0].weight)


def test_bad_input():
    with pytest.raises(TypeError, match="'psi' to be a torch.nn.Module"):
        MessagePassingConv(psi=lambda x: x)
    with pytest.raises(ValueError, match="'combine' to be one of"):
        MessagePassingConv(combine="mul")
    with pytest.raises(ValueError, match="needs 'in_channels'"):
        MessagePassingConv(edge_dim=3)
    data = random_graph()
    with pytest.raises(ValueError, match="edge feature widths differ"):
        MessagePassingConv()(data.x, data.edge_index, data.edge_attr)
    with pytest.raises(TypeError, match="a pair"):
        MessagePassingConv()([data.x], data.edge_index)


def test_equals_gineconv_and_sparse_paths():
    data = random_graph()
    N = data.num_nodes
    nn = mlp(8, 32).double()
    ref = GINEConv(nn, eps=0.3, train_eps=True, edge_dim=3).double()
    conv = MessagePassingConv(phi=nn, eps=0.3, train_eps=True, edge_dim=3, in_channels=8)
    conv = conv.double()
    conv.lin_edge.load_state_dict(ref.lin.state_dict())
    expected = ref(data.x, data.edge_index, data.edge_attr)
    out = conv(data.x, data.edge_index, data.edge_attr)
    assert (out - expected).abs().max() < 1e-10
    # sparse adjacency (adj_t, with the edge features as hybrid values)
    adj_t = to_torch_coo_tensor(data.edge_index.flip(0), data.edge_attr, size=(N, N))
    assert (conv(data.x, adj_t) - expected).abs().max() < 1e-10
    # bipartite input
    x_dst = torch.randn(N, 8, dtype=torch.float64)
    assert (conv((data.x, x_dst), data.edge_index, data.edge_attr)
            - ref((data.x, x_dst), data.edge_index, data.edge_attr)).abs().max() < 1e-10


def test_equals_ginconv_spmm_vs_gather_scatter():
    data = random_graph()
    N = data.num_nodes
    nn = mlp(8, 8).double()
    ref = GINConv(nn)
    conv = MessagePassingConv(phi=nn)  # shares the weights of 'ref'
    expected = ref(data.x, data.edge_index)
    gather = conv(data.x, data.edge_index)
    assert (gather - expected).abs().max() < 1e-10
    for adj_t in (to_torch_csr_tensor(data.edge_index.flip(0), size=(N, N)),
                  to_torch_coo_tensor(data.edge_index.flip(0), size=(N, N)),
                  # weights are ignored: the message is x_j
                  to_torch_csr_tensor(data.edge_index.flip(0),
                                      torch.rand(data.num_edges, dtype=torch.float64),
                                      size=(N, N))):
        assert (conv(data.x, adj_t) - gather).abs().max() < 1e-10


def test_default_message_gathers_only_x_j(monkeypatch, product_at_any_size):
    # issue 11: the GIN(E) message reads x_j (and e_ij) only, so x_i is never
    # gathered per edge (PyG's GINConv gathers once); a 'psi' gathers both
    data = random_graph()
    N = data.num_nodes
    gathered = []
    original = MessagePassingConv._index_select

    def spy(self, src, index):
        gathered.append(tuple(src.shape))
        return original(self, src, index)

    monkeypatch.setattr(MessagePassingConv, "_index_select", spy)
    nn = mlp(8, 8).double()
    ref = GINConv(nn, eps=0.1)  # built first: its reset_parameters() re-draws 'nn'
    conv = MessagePassingConv(phi=nn, eps=0.1)  # shares the weights of 'ref'
    assert (conv(data.x, data.edge_index) - ref(data.x, data.edge_index)).abs().max() < 1e-10
    assert gathered == []  # eager on the CPU: one sparse product, no gather at all
    # PyG's propagate (taken here because a hook is registered) gathers x_j only
    handle = conv.register_propagate_forward_pre_hook(lambda module, inputs: None)
    assert (conv(data.x, data.edge_index) - ref(data.x, data.edge_index)).abs().max() < 1e-10
    handle.remove()
    assert gathered == [(N, 8)]
    gathered.clear()
    gine = MessagePassingConv(phi=nn, edge_dim=3, in_channels=8).double()
    gine(data.x, data.edge_index, data.edge_attr)
    assert gathered == []  # eagerly, the fused sum (relu_message_sum) instead of propagate
    # PyG's propagate (forced by a hook) gathers x_j only
    gine.register_propagate_forward_pre_hook(lambda module, inputs: None)
    gine(data.x, data.edge_index, data.edge_attr)
    assert gathered == [(N, 8)]
    gathered.clear()
    # bipartite: the number of targets still comes from x_dst (6 < 12 sources)
    x_dst = torch.randn(6, 8, dtype=torch.float64)
    keep = data.edge_index[1] < 6
    ei, ea = data.edge_index[:, keep], data.edge_attr[keep]
    state = [p.detach().clone() for p in nn.parameters()]
    ref = GINEConv(nn, edge_dim=3).double()
    with torch.no_grad():
        for p, value in zip(nn.parameters(), state):
            p.copy_(value)
    gine.lin_edge.load_state_dict(ref.lin.state_dict())
    out = gine((data.x, x_dst), ei, ea)
    assert out.shape == (6, 8) and gathered == [(N, 8)]
    assert (out - ref((data.x, x_dst), ei, ea)).abs().max() < 1e-10
    # a target with no incoming edge is still there, and an explicit size wins
    ei_low = ei[:, ei[1] < 3]
    assert gine((data.x, x_dst), ei_low, ea[ei[1] < 3]).shape == (6, 8)
    assert (gine((data.x, x_dst), ei, ea, (N, None))
            - ref((data.x, x_dst), ei, ea)).abs().max() < 1e-10
    gathered.clear()
    MessagePassingConv(psi=mlp(16, 8).double())(data.x, data.edge_index)
    assert gathered == [(N, 8), (N, 8)]  # x_j and x_i


def test_compile_gin_no_graph_breaks_and_equal():
    data = random_graph(dtype=torch.float32)
    conv = MessagePassingConv(phi=mlp(8, 8))
    torch._dynamo.reset()
    explain = torch._dynamo.explain(conv)(data.x, data.edge_index)
    assert explain.graph_break_count == 0 and explain.graph_count == 1


def test_equals_edgeconv():
    data = random_graph()
    N = data.num_nodes
    nn = mlp(16, 8).double()
    ref = EdgeConv(nn, aggr="max")
    conv = MessagePassingConv(psi=nn, message_input="diff", combine="none", aggr="max")
    expected = ref(data.x, data.edge_index)
    assert (conv(data.x, data.edge_index) - expected).abs().max() < 1e-10
    adj_t = to_torch_csr_tensor(data.edge_index.flip(0), size=(N, N))
    assert (conv(data.x, adj_t) - expected).abs().max() < 1e-10


def test_args_message_input():
    data = random_graph()

    class Psi(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(3, 8).double()

        def forward(self, x_i, x_j, e):
            return x_i * x_j + self.lin(e)

    conv = MessagePassingConv(psi=Psi(), message_input="args", aggr="mean", combine="none")
    out = conv(data.x, data.edge_index, data.edge_attr)
    src, dst = data.edge_index
    msg = data.x[dst] * data.x[src] + conv.psi.lin(data.edge_attr)
    expected = torch.zeros_like(data.x).index_add_(0, dst, msg)
    cnt = torch.bincount(dst, minlength=data.num_nodes).clamp_min(1).unsqueeze(-1)
    assert (out - expected / cnt).abs().max() < 1e-10


@with_package("torch_sparse")
def test_sparse_tensor():
    from torch_sparse import SparseTensor
    data = random_graph()
    N = data.num_nodes
    conv = MessagePassingConv(phi=mlp(8, 8).double(), edge_dim=3, in_channels=8).double()
    adj_t = SparseTensor.from_edge_index(data.edge_index, data.edge_attr,
                                         sparse_sizes=(N, N)).t()
    assert (conv(data.x, adj_t) - conv(data.x, data.edge_index, data.edge_attr)).abs().max() \
        < 1e-10


@pytest.mark.parametrize("kwargs", [
    dict(phi=mlp(8, 8), edge_dim=3, in_channels=8),
    dict(psi=mlp(16 + 3, 8), aggr="max", combine="cat", phi=mlp(16, 4)),
    dict(psi=mlp(16 + 3, 8), message_input="diff", aggr="mean"),
])
def test_permutation_equivariance(kwargs):
    conv = MessagePassingConv(**kwargs)
    for data in (random_graph(), batched()):
        assert_equivariant(conv, data, Permutations())


def test_checker_fails_on_broken_layer():
    class Broken(MessagePassingConv):
        def forward(self, x, edge_index, edge_attr=None):
            out = super().forward(x, edge_index, edge_attr)
            return out + torch.arange(x.size(0), dtype=x.dtype).unsqueeze(-1)

    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(Broken(phi=mlp(8, 8), edge_dim=3, in_channels=8), random_graph(),
                           Permutations())


def test_compile_no_graph_breaks():
    data = random_graph(dtype=torch.float32)
    conv = MessagePassingConv(phi=mlp(8, 8), edge_dim=3, in_channels=8)
    torch._dynamo.reset()
    explain = torch._dynamo.explain(conv)(data.x, data.edge_index, data.edge_attr)
    assert explain.graph_break_count == 0
    assert explain.graph_count == 1 and not explain.break_reasons


# --- issue 9: GINConv's positional size, static graphs, validation ----------------------

def test_gin_positional_size():
    data = random_graph()
    N = data.num_nodes
    nn = mlp(8, 8).double()
    ref = GINConv(nn, eps=0.2)
    conv = MessagePassingConv(phi=nn, eps=0.2)  # shares the weights of 'ref'
    expected = ref(data.x, data.edge_index, (N, N))  # GINConv.forward(x, edge_index, size)
    for size in ((N, N), [N, N], torch.Size([N, N])):
        assert (conv(data.x, data.edge_index, size) - expected).abs().max() < 1e-10
    assert (conv(data.x, data.edge_index, size=(N, N)) - expected).abs().max() < 1e-10
    # bipartite, sizes from the tuple: 10 sources, 6 targets
    gen = torch.Generator().manual_seed(2)
    x_src = torch.randn(10, 8, generator=gen, dtype=torch.float64)
    x_dst = torch.randn(6, 8, generator=gen, dtype=torch.float64)
    ei = torch.stack([torch.randint(0, 10, (30, ), generator=gen),
                      torch.randint(0, 6, (30, ), generator=gen)])
    expected = ref((x_src, x_dst), ei, (10, 6))
    assert expected.shape == (6, 8)
    assert (conv((x_src, x_dst), ei, (10, 6)) - expected).abs().max() < 1e-10
    expected = ref((x_src, None), ei, (10, 6))
    assert (conv((x_src, None), ei, (10, 6)) - expected).abs().max() < 1e-10
    # an edge_attr Tensor in that position still is edge features (GINEConv's order)
    gine = GINEConv(nn, edge_dim=3).double()
    conv = MessagePassingConv(phi=nn, edge_dim=3, in_channels=8).double()
    conv.lin_edge.load_state_dict(gine.lin.state_dict())
    expected = gine(data.x, data.edge_index, data.edge_attr, (N, N))
    assert (conv(data.x, data.edge_index, data.edge_attr, (N, N)) - expected).abs().max() \
        < 1e-10
    assert (conv(data.x, data.edge_index, data.edge_attr) - expected).abs().max() < 1e-10


def test_bad_size():
    data = random_graph()
    conv = MessagePassingConv()
    with pytest.raises(TypeError, match="as 'edge_attr' and also 'size="):
        conv(data.x, data.edge_index, (12, 12), (12, 12))
    for size in ((12, ), (12, 12, 1), (12.0, 12), 12, "12"):
        with pytest.raises(TypeError, match="'MessagePassingConv' expected 'size' to be None "
                                            "or a pair"):
            conv(data.x, data.edge_index, size=size)
    with pytest.raises(ValueError, match="index 11 .* only 5 nodes"):
        conv(data.x, data.edge_index, (5, 5))  # a size smaller than the graph


def test_static_graph_equals_gin_and_gine():
    # PyG's test_static_gin_conv / test_static_gine_conv, with copied weights
    x = torch.randn(3, 4, 16, dtype=torch.float64)
    edge_index = torch.tensor([[0, 0, 0, 1, 2, 3], [1, 2, 3, 0, 0, 0]])
    edge_attr = torch.randn(edge_index.size(1), 16, dtype=torch.float64)
    nn = mlp(16, 32).double()
    ref = GINConv(nn, train_eps=True)
    conv = MessagePassingConv(phi=nn, train_eps=True)
    expected = ref(x, edge_index)
    assert expected.shape == (3, 4, 32)
    assert (conv(x, edge_index) - expected).abs().max() < 1e-10
    adj_t = to_torch_csr_tensor(edge_index.flip(0), size=(4, 4))  # PyG's spmm rejects 3-D x
    assert (conv(x, adj_t) - expected).abs().max() < 1e-10
    ref = GINEConv(nn, train_eps=True)
    expected = ref(x, edge_index, edge_attr)
    assert expected.shape == (3, 4, 32)
    assert (conv(x, edge_index, edge_attr) - expected).abs().max() < 1e-10
    adj_t = to_torch_coo_tensor(edge_index.flip(0), edge_attr, size=(4, 4))
    assert (conv(x, adj_t) - expected).abs().max() < 1e-10
    # a user message on [x_i || x_j || e_ij]: each signal on its own
    conv = MessagePassingConv(psi=mlp(48, 8).double(), combine="cat", phi=mlp(24, 5).double())
    out = conv(x, edge_index, edge_attr)
    assert out.shape == (3, 4, 5)
    for b in range(3):
        assert (out[b] - conv(x[b], edge_index, edge_attr)).abs().max() < 1e-10


@pytest.mark.parametrize("shape", [(12, ), (2, 2, 12, 8), ()])
def test_other_ranks_rejected(shape):
    data = random_graph()
    with pytest.raises(ValueError, match="'MessagePassingConv' expected 'x' to be 2-D or 3-D"):
        MessagePassingConv()(torch.randn(shape, dtype=torch.float64), data.edge_index)


@pytest.mark.parametrize("make,match", [
    (lambda ei: ei.t().contiguous(), "looks transposed, pass edge_index.t()"),
    (lambda ei: torch.cat([ei, ei[:1]]), r"size 2 in the first dimension"),
    (lambda ei: ei.float(), "integer type"),
    (lambda ei: torch.cat([ei, torch.tensor([[12], [0]])], 1), "source .* index 12"),
    (lambda ei: torch.cat([ei, torch.tensor([[-1], [0]])], 1), "negative index"),
])
def test_bad_edge_index_rejected(make, match):
    data = random_graph(num_edges=24)
    for conv in (MessagePassingConv(phi=mlp(8, 8).double()),
                 MessagePassingConv(psi=mlp(16, 8).double(), message_input="diff")):
        with pytest.raises(ValueError, match="'MessagePassingConv' .*" + match):
            conv(data.x, make(data.edge_index))


def test_channel_mismatch_names_layer_and_widths():
    data = random_graph()
    with pytest.raises(ValueError, match="'MessagePassingConv' feeds 'phi' with 8 channels "
                                         ".* expects 7"):
        MessagePassingConv(phi=mlp(7, 8).double())(data.x, data.edge_index)
    with pytest.raises(ValueError, match="'MessagePassingConv' feeds 'psi' with 19 channels "
                                         r"\(x_i 8 \+ x_j 8 \+ edge_attr 3\) .* expects 16"):
        MessagePassingConv(psi=mlp(16, 8).double())(data.x, data.edge_index, data.edge_attr)
    with pytest.raises(ValueError, match="'MessagePassingConv' expected 'x' with 6 channels"):
        MessagePassingConv(edge_dim=3, in_channels=6).double()(data.x, data.edge_index,
                                                               data.edge_attr)
    with pytest.raises(ValueError, match="expected 'edge_attr' with 2 channels .*got 3"):
        MessagePassingConv(edge_dim=2, in_channels=8).double()(data.x, data.edge_index,
                                                               data.edge_attr)
    with pytest.raises(ValueError, match=r"'edge_attr' with one row per edge.*\[4, 3\]"):
        MessagePassingConv(psi=mlp(19, 8)).double()(data.x, data.edge_index,
                                                    data.edge_attr[:4])
    # lazy layers are not checked before they know their width, and still work
    conv = MessagePassingConv(phi=torch.nn.Sequential(torch.nn.LazyLinear(4))).double()
    assert conv(data.x, data.edge_index).shape == (12, 4)


# --- issue 11: the compiled GINE message, compiled sparse aggregation -------------------

def compiled_and_eager(conv, *args):
    r"""Outputs and input / parameter gradients of ``conv`` eagerly and
    compiled (float32)."""
    results = []
    torch._dynamo.reset()
    for fn in (conv, torch.compile(conv)):
        x = args[0]
        x = x.detach().requires_grad_() if isinstance(x, torch.Tensor) else \
            tuple(t.detach().requires_grad_() for t in x)
        conv.zero_grad()
        out = fn(x, *args[1:])
        out.square().sum().backward()
        grads = [x.grad] if isinstance(x, torch.Tensor) else [t.grad for t in x]
        grads += [p.grad.clone() for p in conv.parameters()]
        results.append((out.detach(), grads))
    return results


def assert_close_results(results, tol=1e-4):
    (out, grads), (cout, cgrads) = results
    assert (out - cout).abs().max() <= tol * (1 + out.abs().max())
    for g, cg in zip(grads, cgrads):
        assert (g - cg).abs().max() <= tol * (1 + g.abs().max())


@pytest.mark.parametrize("case", ["plain", "bipartite", "static", "flow", "no_lin_edge"])
def test_compiled_gine_equals_eager(case):
    data = random_graph(dtype=torch.float32)
    x, edge_index, edge_attr = data.x, data.edge_index, data.edge_attr
    kwargs = dict(phi=mlp(8, 8), edge_dim=3, in_channels=8)
    args = (x, edge_index, edge_attr)
    if case == "bipartite":  # 12 sources, 5 targets
        edge_index = edge_index[:, edge_index[1] < 5]
        args = ((x, x[:5] + 1), edge_index, edge_attr[:edge_index.size(1)])
    elif case == "static":  # [B, N, F]: three signals on one graph
        args = (torch.randn(3, 12, 8), edge_index, edge_attr)
    elif case == "flow":
        kwargs["flow"] = "target_to_source"
    elif case == "no_lin_edge":  # edge features of the node width, no edge Linear
        kwargs = dict(phi=mlp(8, 8))
        args = (x, edge_index, torch.randn(edge_index.size(1), 8))
    conv = MessagePassingConv(**kwargs)
    if case == "plain":  # (GINEConv resets the 'phi' it is given: build it first)
        ref = GINEConv(conv.phi, edge_dim=3)
        with torch.no_grad():
            ref.lin.weight.copy_(conv.lin_edge.weight)
            ref.lin.bias.copy_(conv.lin_edge.bias)
    results = compiled_and_eager(conv, *args)
    assert_close_results(results)
    if case == "plain":  # and both equal PyG's GINEConv
        assert (ref(x, edge_index, edge_attr) - results[1][0]).abs().max() < 1e-4


def test_compiled_gine_saves_no_edge_mask():
    # The ReLU pattern of the E x F messages is recomputed in the backward
    # instead of being saved: inductor's CPU code stores such a boolean mask
    # slower than the whole eager forward runs.
    data = random_graph(num_nodes=30, num_edges=200, dtype=torch.float32)
    E = data.edge_index.size(1)
    conv = MessagePassingConv(phi=mlp(8, 8), edge_dim=3, in_channels=8)
    compiled = torch.compile(conv)
    torch._dynamo.reset()
    saved = []

    def pack(t):
        saved.append((tuple(t.shape), t.dtype))
        return t

    x = data.x.clone().requires_grad_()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = compiled(x, data.edge_index, data.edge_attr)
    out.sum().backward()
    assert saved, "no saved tensors recorded"
    assert not [s for s in saved if s[1] == torch.bool], saved
    # the eager path (relu_message_sum) saves no E x F tensor either: it saves
    # its inputs and recomputes the messages block by block
    saved.clear()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        conv(x, data.edge_index, data.edge_attr)
    assert ((E, 3), torch.float32) in saved and ((30, 8), torch.float32) in saved
    assert not [s for s in saved if s[0][:1] == (E,) and s[0][1:] == (8,)], saved
    # while PyG's propagate (forced by a hook) saves the E x F ReLU output
    saved.clear()
    conv.register_propagate_forward_pre_hook(lambda module, inputs: None)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        conv(x, data.edge_index, data.edge_attr)
    assert ((E, 8), torch.float32) in saved


@pytest.mark.parametrize("num_threads", [1, 2])
def test_compiled_gin_on_csr_adj_t(product_at_any_size, threads, num_threads):
    # dynamo cannot take sparse tensors: the layer's frame runs eagerly and the
    # sum over the CSR pattern is compiled from its dense parts
    data = random_graph(dtype=torch.float32)
    N = data.num_nodes
    adj_t = to_torch_csr_tensor(data.edge_index.flip(0), data.edge_attr[:, 0], size=(N, N))
    conv = MessagePassingConv(phi=mlp(8, 8), eps=0.3)
    graphs = []

    def backend(gm, example_inputs):
        graphs.append([str(n.target) for n in gm.graph.nodes])
        return gm

    threads(num_threads)
    torch._dynamo.reset()
    out = torch.compile(conv, backend=backend)(data.x, adj_t)
    # inductor's gather and scatter on one thread, the sparse product on several
    op = "index_add_" if num_threads == 1 else "gdl_pyg.edge_sum.default"
    assert any(op in g for g in graphs), graphs
    assert (out - conv(data.x, adj_t)).abs().max() < 1e-5  # edge weights ignored
    assert (out - conv(data.x, data.edge_index)).abs().max() < 1e-5
    results = compiled_and_eager(conv, data.x, adj_t)
    assert_close_results(results)


class _OpNames(torch.utils._python_dispatch.TorchDispatchMode):
    # records the name of every aten op run under it
    def __init__(self):
        super().__init__()
        self.names = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("aggr", ["add", "max"])
def test_coo_pattern_not_coalesced_again(aggr):
    # the unit-weight pattern of a coalesced COO adj_t is flagged coalesced
    # instead of being sorted again on every call; the pattern of an
    # uncoalesced one with duplicate entries has one unit entry per pair
    from gdl_pyg.nn.conv.message_passing_conv import _ones_like_sparse
    data = random_graph()
    N = data.num_nodes
    adj_t = to_torch_coo_tensor(data.edge_index.flip(0),
                                torch.rand(data.num_edges, dtype=torch.float64) + 0.5,
                                size=(N, N))
    assert adj_t.is_coalesced()
    with _OpNames() as mode:
        ones = _ones_like_sparse(adj_t, torch.float64)
    assert not {"coalesce", "_coalesce", "sort"} & set(mode.names)
    assert ones.is_coalesced()
    assert torch.equal(ones.to_dense(), (adj_t.to_dense() != 0).double())

    conv = MessagePassingConv(aggr=aggr)
    expected = conv(data.x, data.edge_index)
    assert (conv(data.x, adj_t) - expected).abs().max() < 1e-10
    # duplicates of the first three entries, uncoalesced
    index = torch.cat([adj_t.indices(), adj_t.indices()[:, :3]], dim=1)
    dup = torch.sparse_coo_tensor(index, torch.rand(index.size(1), dtype=torch.float64) + 0.5,
                                  (N, N))
    assert not dup.is_coalesced()
    pattern = _ones_like_sparse(dup, torch.float64)
    assert pattern.is_coalesced() and torch.equal(pattern.to_dense(), ones.to_dense())


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
    return adj_t, index[:, perm].flip(0), values[perm]


def test_uncoalesced_coo_equals_ginconv_duplicates_summed():
    # PyG reads every stored entry as an edge: duplicates are parallel edges
    # whose messages are summed (GINConv's sparse product sums them too)
    data = random_graph()
    N = data.num_nodes
    adj_t, ei, _ = uncoalesced(data.edge_index, torch.ones(data.num_edges, dtype=torch.float64),
                               (N, N))
    nn = mlp(8, 8).double()
    ref = GINConv(nn, eps=0.1)
    conv = MessagePassingConv(phi=nn, eps=0.1)  # shares the weights of 'ref'
    x = data.x.clone().requires_grad_()
    out = conv(x, adj_t)
    assert not adj_t.is_coalesced()  # the caller's tensor is left as it was
    grads = torch.autograd.grad(out.square().sum(), [x] + list(nn.parameters()))
    x_ref = data.x.clone().requires_grad_()
    expected = ref(x_ref, adj_t.clone())
    ref_grads = torch.autograd.grad(expected.square().sum(), [x_ref] + list(nn.parameters()))
    assert (out - expected).abs().max() < 1e-10
    assert all((g - r).abs().max() < 1e-10 for g, r in zip(grads, ref_grads))
    # the duplicates count: not the output of the coalesced pattern
    once = conv(data.x, data.edge_index)
    assert (out - once).abs().max() > 1e-3
    # max/mean: PyG's edge semantics (GINConv on the same edges as edge_index;
    # its sparse product would weight the duplicates by their summed values)
    for aggr in ("mean", "max"):
        ref = GINConv(nn, aggr=aggr)
        conv = MessagePassingConv(phi=nn, aggr=aggr)
        assert (conv(data.x, adj_t) - ref(data.x, ei)).abs().max() < 1e-10
    # bipartite and static-graph input
    x_dst = torch.randn(6, 8, dtype=torch.float64)
    keep = data.edge_index[1] < 6
    bip, bip_ei, _ = uncoalesced(data.edge_index[:, keep], torch.ones(int(keep.sum()),
                                 dtype=torch.float64), (6, N), num_dup=3)
    ref = GINConv(nn)
    conv = MessagePassingConv(phi=nn)
    assert (conv((data.x, x_dst), bip) - ref((data.x, x_dst), bip.clone())).abs().max() < 1e-10
    x3 = torch.randn(3, N, 8, dtype=torch.float64)
    out3 = conv(x3, adj_t)
    assert all((out3[b] - ref(x3[b], ei)).abs().max() < 1e-10 for b in range(3))


def test_uncoalesced_coo_edge_features_equal_gineconv():
    # 2-d values as edge features, one per stored entry, in storage order:
    # PyG's generic propagate reads them so (its generated one fails here)
    from torch_geometric.nn import MessagePassing
    data = random_graph()
    N = data.num_nodes
    adj_t, ei, ea = uncoalesced(data.edge_index, data.edge_attr, (N, N))
    nn = mlp(8, 8).double()
    ref = GINEConv(nn, edge_dim=3).double()
    conv = MessagePassingConv(phi=nn, edge_dim=3, in_channels=8).double()
    conv.lin_edge.load_state_dict(ref.lin.state_dict())
    generic = GINEConv(nn, edge_dim=3).double()
    generic.lin.load_state_dict(ref.lin.state_dict())
    generic.propagate = MessagePassing.propagate.__get__(generic, MessagePassing)
    out = conv(data.x, adj_t)
    assert not adj_t.is_coalesced()
    assert (out - generic(data.x, adj_t.clone())).abs().max() < 1e-10
    assert (out - ref(data.x, ei, ea)).abs().max() < 1e-10
    # explicit edge features of the stored entries (weights ignored), with gradients
    weights, _, _ = uncoalesced(data.edge_index, torch.rand(data.num_edges,
                                dtype=torch.float64), (N, N))
    e = ea.clone().requires_grad_()
    out = conv(data.x, weights, e)
    e_ref = ea.clone().requires_grad_()
    expected = ref(data.x, ei, e_ref)
    assert (out - expected).abs().max() < 1e-10
    params = list(conv.lin_edge.parameters())
    g = torch.autograd.grad(out.square().sum(), [e] + params)
    r = torch.autograd.grad(expected.square().sum(), [e_ref] + list(ref.lin.parameters()))
    assert all((a - b).abs().max() < 1e-10 for a, b in zip(g, r))
    # a user psi on [x_i || x_j || e_ij]
    psi = mlp(19, 8).double()
    conv = MessagePassingConv(psi=psi, combine="none")
    assert (conv(data.x, adj_t) - conv(data.x, ei, ea)).abs().max() < 1e-10
    # differentiable values cannot be read per entry: a clear error naming the fix
    values = ea.clone().requires_grad_()
    adj_grad = torch.sparse_coo_tensor(ei.flip(0), values, (N, N, 3))
    with pytest.raises(ValueError, match=r"adj_t.coalesce\(\)"):
        conv(data.x, adj_grad)
    with pytest.raises(ValueError, match="adj_t.t()"):
        MessagePassingConv(flow="target_to_source")(data.x, adj_t)


def test_coalesced_coo_forward_does_not_sort():
    # the check for an uncoalesced COO adj_t reads a flag: a coalesced one is
    # neither coalesced nor sorted again in forward
    data = random_graph()
    N = data.num_nodes
    adj_t = to_torch_coo_tensor(data.edge_index.flip(0), size=(N, N))
    for conv in (MessagePassingConv(), MessagePassingConv(aggr="max")):
        with _OpNames() as mode:
            conv(data.x, adj_t)
        assert not {"coalesce", "_coalesce", "_coalesced_", "sort"} & set(mode.names)


@pytest.mark.parametrize("edge_features", [False, True])
@pytest.mark.parametrize("aggr", ["add", "mean", "max"])
def test_decomposed_layers_equal_undecomposed(edge_features, aggr):
    # PyG's feature decomposition: messages of F/k features at a time, the
    # same output and gradients (PyG's GINConv/GINEConv fail on it)
    data = random_graph()
    N = data.num_nodes
    nn = mlp(8, 8).double()
    kwargs = dict(phi=nn, aggr=aggr, eps=0.2)
    if edge_features:
        kwargs.update(edge_dim=3, in_channels=8)
    conv = MessagePassingConv(**kwargs).double()
    split = MessagePassingConv(decomposed_layers=3, **kwargs).double()
    split.load_state_dict(conv.state_dict())
    assert split.decomposed_layers == 3
    widths = []
    split.register_message_forward_pre_hook(
        lambda module, inputs: widths.append(inputs[0]["x_j"].size(-1)))
    e = data.edge_attr if edge_features else None
    x = data.x.clone().requires_grad_()
    expected = conv(x, data.edge_index, e)
    out = split(x, data.edge_index, e)
    assert widths == [3, 3, 2]  # torch.chunk of 8 features into 3
    assert (out - expected).abs().max() < 1e-12
    g = torch.autograd.grad(out.sum(), [x] + list(split.parameters()))
    r = torch.autograd.grad(expected.sum(), [x] + list(conv.parameters()))
    assert all((a - b).abs().max() < 1e-12 for a, b in zip(g, r))
    # bipartite, static graph, sparse input (fused, not decomposed, as in PyG)
    x_dst = torch.randn(6, 8, dtype=torch.float64)
    keep = data.edge_index[1] < 6
    ei = data.edge_index[:, keep]
    ea = e[keep] if edge_features else None
    assert (split((data.x, x_dst), ei, ea) - conv((data.x, x_dst), ei, ea)).abs().max() < 1e-12
    x3 = torch.randn(2, N, 8, dtype=torch.float64)
    assert (split(x3, data.edge_index, e) - conv(x3, data.edge_index, e)).abs().max() < 1e-12
    values = data.edge_attr if edge_features else None
    adj_t = to_torch_coo_tensor(data.edge_index.flip(0), values, size=(N, N))
    assert (split(data.x, adj_t) - conv(data.x, adj_t)).abs().max() < 1e-12
    # set afterwards, as PyG allows
    conv.decomposed_layers = 2
    assert (conv(data.x, data.edge_index, e) - expected).abs().max() < 1e-12


def test_decomposed_layers_equals_ginconv_and_bad_values():
    data = random_graph()
    nn = mlp(8, 8).double()
    ref = GINConv(nn)
    conv = MessagePassingConv(phi=nn, decomposed_layers=2)
    assert (conv(data.x, data.edge_index) - ref(data.x, data.edge_index)).abs().max() < 1e-10
    with pytest.raises(ValueError, match="only with the default message"):
        MessagePassingConv(psi=mlp(16, 8), decomposed_layers=2)
    with pytest.raises(ValueError, match="only with the default message"):
        MessagePassingConv(psi=mlp(16, 8)).decomposed_layers = 2
    with pytest.raises(ValueError, match="feature-wise aggregation"):
        MessagePassingConv(aggr=["sum", "max"], decomposed_layers=2)
    with pytest.raises(ValueError, match="positive int"):
        MessagePassingConv(decomposed_layers=0)
    # explanations run undecomposed, as in PyG
    conv = MessagePassingConv(phi=nn)
    conv.explain = True
    with pytest.raises(ValueError, match="while explaining"):
        conv.decomposed_layers = 2


# --- issue 11: the default message summed as one sparse product ----------------------
@pytest.mark.parametrize("aggr", ["add", "mean"])
@pytest.mark.parametrize("case", ["sorted", "unsorted", "duplicates", "bipartite", "static",
                                  "flow", "no_edges", "float32"])
def test_sum_as_sparse_product_equals_gather_and_ginconv(csr_builds, product_at_any_size,
                                                        output_and_grads, gather_path, aggr,
                                                        case):
    # eager on the CPU, the default message x_j is summed (averaged) over edge_index as
    # one sparse product: the same output bit for bit as PyG's gather and scatter (the
    # edges of a target are added in their order), and the same gradients to rounding
    dtype = torch.float32 if case == "float32" else torch.float64
    data = random_graph(num_nodes=30, num_edges=200, dtype=dtype, seed=3)
    x, ei = data.x, data.edge_index
    kwargs = {}
    if case == "sorted":
        ei = ei[:, torch.argsort(ei[1], stable=True)]
    elif case == "duplicates":  # parallel edges, each summed (as GINConv does)
        ei = torch.cat([ei, ei[:, :25]], dim=1)
    elif case == "bipartite":  # 30 sources, 7 targets
        ei = ei[:, ei[1] < 7]
        x = (x, torch.randn(7, 8, dtype=dtype))
    elif case == "static":  # [B, N, F]: three signals on one graph
        x = torch.randn(3, 30, 8, dtype=dtype)
    elif case == "flow":
        kwargs["flow"] = "target_to_source"
    elif case == "no_edges":
        ei = ei[:, :0]
    nn = mlp(8, 8).to(dtype)
    ref = GINConv(nn, eps=0.3, aggr=aggr)  # built first: its reset re-draws 'nn'
    conv = MessagePassingConv(phi=nn, eps=0.3, aggr=aggr, **kwargs)
    out, grads = output_and_grads(conv, x, ei, seed=1)
    # one CSR forward, one of the transposed edges backward
    flow = kwargs.get("flow", "source_to_target")
    assert csr_builds == [flow, REVERSED[flow]]
    handle = gather_path(conv)
    g_out, g_grads = output_and_grads(conv, x, ei, seed=1)
    handle.remove()
    assert len(csr_builds) == 2  # the hook turned the product off
    assert torch.equal(out, g_out)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    for g, h in zip(grads, g_grads):
        assert (g - h).abs().max() <= tol * (1 + h.abs().max())
    if case not in ("static", "flow"):  # GINConv has neither
        assert torch.equal(out, ref(x, ei))


def test_sum_as_sparse_product_only_where_it_applies(csr_builds, product_at_any_size):
    # the product is built only for the default message over a dense CPU edge_index
    # with a sum or mean, and float features; everything else takes PyG's propagate
    data = random_graph(dtype=torch.float32)
    x, ei, ea = data.x, data.edge_index, data.edge_attr
    MessagePassingConv(aggr="max")(x, ei)
    MessagePassingConv(psi=mlp(16, 8))(x, ei)
    MessagePassingConv(edge_dim=3, in_channels=8)(x, ei, ea)
    MessagePassingConv()(x, to_torch_coo_tensor(ei, size=(12, 12)))
    MessagePassingConv()(x, ei.int())
    MessagePassingConv()(x.bfloat16(), ei)  # half precision: PyG's scatter
    MessagePassingConv(decomposed_layers=2)(x, ei)
    MessagePassingConv()((x, None), ei)  # the number of targets comes from edge_index
    assert csr_builds == []
    MessagePassingConv()(x, ei)
    assert csr_builds == ["source_to_target"]


def test_sum_as_sparse_product_double_backward(product_at_any_size, gather_path):
    # second derivatives (forces of a potential trained on energies) go through it
    data = random_graph(num_nodes=20, num_edges=80)
    conv = MessagePassingConv(phi=torch.nn.Tanh(), eps=0.1)
    x = data.x.clone().requires_grad_()

    def hessian_term(conv):
        gx, = torch.autograd.grad(conv(x, data.edge_index).pow(2).sum(), x, create_graph=True)
        hx, = torch.autograd.grad(gx.pow(2).sum(), x)
        return hx

    product = hessian_term(conv)
    handle = gather_path(conv)
    gather = hessian_term(conv)
    handle.remove()
    assert (product - gather).abs().max() <= 1e-10 * (1 + gather.abs().max())


def test_broken_sparse_product_is_caught(monkeypatch, product_at_any_size, gather_path):
    # the comparison above fails if the CSR pattern loses the edge order (here:
    # the targets' rows of an unsorted edge_index taken without sorting)
    import gdl_pyg.nn.conv.message_passing_conv as mpc

    def unsorted(edge_index, num_src, num_dst, flow, dtype, edge_weight=None):
        src, dst = edge_index
        crow = torch.zeros(num_dst + 1, dtype=torch.long)
        crow[1:] = torch.bincount(dst, minlength=num_dst).cumsum(0)
        return torch.sparse_csr_tensor(crow, src, torch.ones(src.numel(), dtype=dtype),
                                       (num_dst, num_src), check_invariants=False)

    monkeypatch.setattr(mpc, "csr_adjacency", unsorted)
    data = random_graph(num_nodes=30, num_edges=200, seed=3)
    conv = MessagePassingConv()
    out = conv(data.x, data.edge_index)
    handle = gather_path(conv)
    assert not torch.allclose(out, conv(data.x, data.edge_index))
    handle.remove()


def test_sparse_product_only_from_a_size_on(csr_builds):
    # below PRODUCT_MIN_UNWEIGHTED_ELEMENTS (edges times features per node) the
    # CSR's fixed costs exceed the gather and scatter's: a small graph takes
    # PyG's path
    assert mpc.PRODUCT_MIN_UNWEIGHTED_ELEMENTS == 4096 * 128
    gen = torch.Generator().manual_seed(0)
    ei = torch.randint(0, 300, (2, 4096), generator=gen)
    conv = MessagePassingConv()
    conv(torch.randn(300, 127, generator=gen), ei)  # 4096 * 127 < 2 ** 19
    assert csr_builds == []
    out = conv(torch.randn(300, 128, generator=gen), ei)  # 4096 * 128 = 2 ** 19
    assert len(csr_builds) == 1
    conv(torch.randn(2, 300, 64, generator=gen), ei)  # static graph: 2 signals of 64
    assert len(csr_builds) == 2 and out.shape == (300, 128)


def test_weighted_product_from_a_smaller_size_on(csr_builds):
    # a weighted message (GCN coefficients) costs PyG's path a multiplication
    # per message element too: the product pays from PRODUCT_MIN_MESSAGE_ELEMENTS
    from gdl_pyg.nn.conv import ConvolutionalConv
    assert mpc.PRODUCT_MIN_MESSAGE_ELEMENTS == 1024 * 128
    gen = torch.Generator().manual_seed(0)
    ei = torch.randint(0, 100, (2, 1023), generator=gen)  # + 100 self loops = 1123
    conv = ConvolutionalConv(8, 116)  # 1123 * 116 = 130268 < 2 ** 17
    x = torch.randn(100, 8, generator=gen)
    conv(x, ei)
    assert csr_builds == []
    ConvolutionalConv(8, 117)(x, ei)  # 1123 * 117 = 131391
    assert len(csr_builds) == 1


def test_sparse_adj_t_product_from_a_number_of_entries_on(monkeypatch):
    # a torch CSR adj_t is summed over its nonzeros as edges (edge_aggregate)
    # from PRODUCT_MIN_SPARSE_ENTRIES on, below by torch's sparse.mm
    from torch_geometric.utils import to_torch_csr_tensor
    calls = []
    original = mpc.edge_aggregate
    monkeypatch.setattr(mpc, "edge_aggregate", lambda *a, **k: calls.append(1) or original(*a, **k))
    gen = torch.Generator().manual_seed(0)
    conv = MessagePassingConv()
    x = torch.randn(500, 4, generator=gen)
    outs = []
    for num in (mpc.PRODUCT_MIN_SPARSE_ENTRIES - 1, mpc.PRODUCT_MIN_SPARSE_ENTRIES):
        ei = torch.unique(torch.randint(0, 500, (2, 3 * num), generator=gen), dim=1)[:, :num]
        adj_t = to_torch_csr_tensor(ei.flip(0), size=(500, 500))
        outs.append((conv(x, adj_t), conv(x, ei)))
    assert len(calls) == 1  # the second adj_t only
    for sparse, dense in outs:
        assert torch.allclose(sparse, dense, atol=1e-5)


def test_index_argsort_equals_torch_stable_argsort():
    gen = torch.Generator().manual_seed(0)
    for n in (0, 1, mpc.INDEX_ARGSORT_MIN - 1, mpc.INDEX_ARGSORT_MIN, 5000, 40000, 600_000):
        for bound in (1, 7, 2 ** 16, 2 ** 16 + 1, 2 ** 20, 2 ** 32, 2 ** 32 + 5):
            index = torch.randint(0, bound, (n,), generator=gen)
            expected = torch.argsort(index, stable=True)
            pair = torch.stack([index, index], 1)  # a strided column
            views = [index, pair[:, 0]] + ([index.int()] if bound <= 2 ** 31 else [])
            for view in views:
                got = mpc.index_argsort(view, bound)
                assert got.dtype == torch.long and torch.equal(got, expected), (n, bound)


def test_index_argsort_on_meta_and_2d_falls_back_to_torch():
    index = torch.randint(0, 10, (3, 1000))
    assert torch.equal(mpc.index_argsort(index, 10), torch.argsort(index, stable=True))
    meta = torch.empty(1000, dtype=torch.long, device="meta")
    assert mpc.index_argsort(meta, 10).device.type == "meta"


def test_eager_edge_sum_skips_the_operator_dispatch():
    # eagerly the sum is an autograd.Function (the operator's dispatch costs
    # about 0.1 ms a call), with the operator's gradients, twice differentiable
    gen = torch.Generator().manual_seed(0)
    ei = torch.randint(0, 20, (2, 80), generator=gen)
    x = torch.randn(20, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    w = torch.rand(80, dtype=torch.float64, generator=gen, requires_grad=True)
    out = mpc.edge_aggregate(ei, x, 20, edge_weight=w.detach())
    assert type(out.grad_fn).__name__ == "_EdgeSumBackward"
    ref = torch.ops.gdl_pyg.edge_sum(ei, x, w.detach(), 20, 1, False)
    assert torch.equal(out, ref)
    for mean in (False, True):
        def f(x, w):
            return mpc._EdgeSum.apply(ei, x, w, 20, 1, mean)

        def g(x, w):
            return torch.ops.gdl_pyg.edge_sum(ei, x, w, 20, 1, mean)
        gx = torch.autograd.grad(f(x, w).sum(), (x, w))
        gy = torch.autograd.grad(g(x, w).sum(), (x, w))
        assert all(torch.equal(a, b) for a, b in zip(gx, gy))
        assert torch.autograd.gradcheck(f, (x, w))
        assert torch.autograd.gradgradcheck(f, (x, w))


def scatter_reference(edge_index, x, num_dst, flow, aggr, weight=None):
    r"""PyG's gather and scatter of w_ij x_j, as MessagePassing computes it."""
    from torch_geometric.utils import scatter
    j, i = (0, 1) if flow == "source_to_target" else (1, 0)
    msg = x.index_select(0, edge_index[j])
    if weight is not None:
        msg = weight.view(-1, 1) * msg
    return scatter(msg, edge_index[i], 0, dim_size=num_dst, reduce=aggr)


@pytest.mark.parametrize("aggr", ["sum", "mean"])
@pytest.mark.parametrize("flow", ["source_to_target", "target_to_source"])
@pytest.mark.parametrize("weighted", [False, True])
def test_edge_aggregate_equals_scatter_and_its_gradients(aggr, flow, weighted):
    # the sum (mean) over the edges equals PyG's scatter bit for bit, forward and
    # for the gradient of x (the transposed product adds in the scatter's order);
    # the weights' gradient (a gather) to rounding; first and second derivatives
    # pass gradcheck
    from gdl_pyg.nn.conv.message_passing_conv import edge_aggregate
    gen = torch.Generator().manual_seed(4)
    ei = torch.randint(0, 9, (2, 60), generator=gen)
    x = torch.randn(9, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    w = torch.rand(60, dtype=torch.float64, generator=gen).requires_grad_(weighted) \
        if weighted else None
    out = edge_aggregate(ei, x, 9, flow, aggr, edge_weight=w)
    ref = scatter_reference(ei, x, 9, flow, aggr, w)
    assert torch.equal(out, ref)
    g = torch.randn(out.shape, dtype=out.dtype, generator=gen)
    inputs = (x, w) if weighted else (x, )
    grads = torch.autograd.grad(out, inputs, g)
    ref_grads = torch.autograd.grad(ref, inputs, g)
    assert torch.equal(grads[0], ref_grads[0])
    if weighted:
        assert torch.allclose(grads[1], ref_grads[1], rtol=1e-12, atol=1e-12)

    def fn(*args):
        return edge_aggregate(ei, args[0], 9, flow, aggr,
                              edge_weight=args[1] if weighted else None)

    assert torch.autograd.gradcheck(fn, inputs)
    assert torch.autograd.gradgradcheck(fn, inputs)


def test_edge_sum_operator_registration():
    # torch's own checks of the custom operator: its schema, the fake (meta)
    # implementation torch.compile traces with, and the autograd registration
    gen = torch.Generator().manual_seed(5)
    ei = torch.randint(0, 7, (2, 30), generator=gen)
    x = torch.randn(7, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    w = torch.rand(30, dtype=torch.float64, generator=gen, requires_grad=True)
    op = torch.ops.gdl_pyg.edge_sum.default
    for args in [(ei, x, None, 7, 1, False), (ei, x, w, 7, 0, True), (ei, x, w, 9, 1, False)]:
        torch.library.opcheck(op, args)


def test_edge_aggregate_static_layout_and_bad_arguments():
    from gdl_pyg.nn.conv.message_passing_conv import edge_aggregate
    gen = torch.Generator().manual_seed(6)
    ei = torch.randint(0, 8, (2, 40), generator=gen)
    x = torch.randn(3, 8, 5, dtype=torch.float64, generator=gen)  # [B, N, F]
    out = edge_aggregate(ei, x, 8, node_dim=-2)
    assert out.shape == (3, 8, 5) and out.is_contiguous()
    for b in range(3):
        assert torch.equal(out[b], scatter_reference(ei, x[b], 8, "source_to_target", "sum"))
    with pytest.raises(ValueError, match="aggr 'add', 'sum' or 'mean'.*'max'"):
        edge_aggregate(ei, x[0], 8, aggr="max")
    with pytest.raises(ValueError, match="flow 'source_to_target' or.*'sideways'"):
        edge_aggregate(ei, x[0], 8, flow="sideways")


def compiled_graph_ops(module, *args):
    r"""The output of ``torch.compile(module)(*args)``, the number of graphs
    dynamo captured and the node targets of all of them."""
    targets, graphs = [], []

    def backend(gm, example_inputs):
        graphs.append(gm)
        targets.extend(str(n.target) for n in gm.graph.nodes)
        return gm

    torch._dynamo.reset()
    out = torch.compile(module, backend=backend)(*args)
    torch._dynamo.reset()
    return out, len(graphs), targets


@pytest.mark.parametrize("num_threads", [1, 2])
def test_compiled_gin_sparse_product_on_several_threads(product_at_any_size, threads,
                                                        num_threads):
    # compiled on several threads the sum is the custom operator (inductor's
    # scatter adds with atomics there), on one thread inductor's fused gather and
    # scatter; either way one graph, the eager output and gradients
    threads(num_threads)
    data = random_graph(num_nodes=30, num_edges=200, seed=3)
    conv = MessagePassingConv(phi=mlp(8, 8).double(), eps=0.2)
    x = data.x.clone().requires_grad_()
    out, num_graphs, targets = compiled_graph_ops(conv, x, data.edge_index)
    assert num_graphs == 1
    assert ("gdl_pyg.edge_sum.default" in targets) == (num_threads > 1)
    ref = conv(x, data.edge_index)
    assert torch.allclose(out, ref, rtol=1e-12, atol=1e-12)
    g, = torch.autograd.grad(out.pow(2).sum(), x)
    g_ref, = torch.autograd.grad(ref.pow(2).sum(), x)
    assert torch.allclose(g, g_ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("layout", ["csr", "coo"])
def test_csr_adj_t_sum_as_product_equals_ginconv(csr_builds, product_at_any_size, layout):
    # a torch CSR adj_t is summed as the product over its nonzeros (gdl_pyg::edge_sum,
    # whose backward beats sparse.mm's); a COO one by torch's sparse.mm: either way
    # GINConv's output and gradient of x on the same adj_t, bit for bit
    data = random_graph(num_nodes=30, num_edges=200, seed=3)
    to_sparse = to_torch_csr_tensor if layout == "csr" else to_torch_coo_tensor
    ones = torch.ones(data.edge_index.size(1), dtype=torch.float64)
    adj_t = to_sparse(data.edge_index.flip(0), ones, size=(30, 30))
    nn = mlp(8, 8).double()
    ref = GINConv(nn, eps=0.3)
    conv = MessagePassingConv(phi=nn, eps=0.3)
    x = data.x.clone().requires_grad_()
    out = conv(x, adj_t)
    g, = torch.autograd.grad(out.pow(2).sum(), x)
    assert csr_builds == (["source_to_target", "target_to_source"] if layout == "csr" else [])
    expected = ref(x, adj_t)
    g_ref, = torch.autograd.grad(expected.pow(2).sum(), x)
    assert torch.equal(out, expected) and torch.equal(g, g_ref)


# --- issue 11: the eager GINE sum in one buffer (relu_message_sum) ----------------------

def _gine_pair(**kwargs):
    r"""A GINEConv and a MessagePassingConv with the same weights (float64)."""
    nn = mlp(8, 8).double()
    ref = GINEConv(nn, edge_dim=3, **kwargs).double()  # re-draws 'nn': build it first
    conv = MessagePassingConv(phi=nn, edge_dim=3, in_channels=8, **kwargs).double()
    conv.lin_edge.load_state_dict(ref.lin.state_dict())
    return conv, ref


def _outputs_and_grads(layer, x, *args):
    layer.zero_grad()
    xs = [t.detach().requires_grad_() for t in (x if isinstance(x, tuple) else (x,))]
    out = layer(tuple(xs) if isinstance(x, tuple) else xs[0], *args)
    (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
    return [out] + [t.grad for t in xs] + [p.grad for p in layer.parameters()]


@pytest.mark.parametrize("blocks", ["one", "many"])
@pytest.mark.parametrize("case", ["plain", "bipartite", "flow", "coo", "csr", "mixed_sign"])
def test_eager_gine_sum_equals_gineconv(monkeypatch, case, blocks):
    # The fused eager sum gives GINEConv's output and input gradients bit for
    # bit (the same additions in the same order); the gradients of the edge
    # Linear are sums over blocks of edges: equal with one block, up to rounding
    # with many.
    if blocks == "many":  # 7 edges of 8 float64 channels per block
        monkeypatch.setattr(mpc, "RELU_MESSAGE_BLOCK_BYTES", 7 * 8 * 8)
    calls = []
    original = MessagePassingConv._fused_relu_message_sum

    def spy(self, *args):
        calls.append(1)
        return original(self, *args)

    monkeypatch.setattr(MessagePassingConv, "_fused_relu_message_sum", spy)
    data = random_graph(num_nodes=30, num_edges=200)
    x, ei, ea = data.x, data.edge_index, data.edge_attr
    kwargs = {"flow": "target_to_source"} if case == "flow" else {}
    conv, ref = _gine_pair(**kwargs)
    args = (x, ei, ea)
    if case == "bipartite":  # 30 sources, 7 targets
        keep = ei[1] < 7
        args = ((x, x[:7] * 2), ei[:, keep], ea[keep])
    elif case == "mixed_sign":  # many messages exactly at the ReLU's kink
        with torch.no_grad():
            conv.lin_edge.weight.zero_()
            conv.lin_edge.bias.zero_()
            ref.lin.weight.zero_()
            ref.lin.bias.zero_()
        args = (x.clamp(min=0), ei, ea)
    expected = _outputs_and_grads(ref, *args)
    if case in ("coo", "csr"):  # adj_t with the edge features as values
        to = to_torch_coo_tensor if case == "coo" else to_torch_csr_tensor
        adj_t = to(ei.flip(0), ea, size=(30, 30))
        # both sort the edges by target: compare with PyG on that order
        (row, col), ea_sorted = to_edge_index(to(ei.flip(0), ea, size=(30, 30)))
        expected = _outputs_and_grads(ref, x, torch.stack([col, row]), ea_sorted)
        # (the backward used to fail: PyG's to_edge_index flagged adj_t coalesced in
        # place, a new version of the edge features the edge Linear had saved)
        got = _outputs_and_grads(conv, x, adj_t)
    else:
        got = _outputs_and_grads(conv, *args)
    assert len(got) == len(expected) == 2 + (case == "bipartite") + 2 + 4
    for k, (g, e) in enumerate(zip(got, expected)):
        if blocks == "one" or k < len(got) - 6:  # output, x (and x_dst)
            assert torch.equal(g, e)
        else:  # eps is not trained; lin_edge weight and bias, then the MLP's
            assert (g - e).abs().max() <= 1e-12 * (1 + e.abs().max())
    assert calls == ([] if case in ("coo", "csr") else [1])


@pytest.mark.parametrize("lin", [False, True])
def test_eager_gine_sum_gradcheck_and_double_backward(monkeypatch, lin):
    # several blocks of edges, a [B, N, F] static-graph input and [N, F]
    monkeypatch.setattr(mpc, "RELU_MESSAGE_BLOCK_BYTES", 3 * 5 * 8)
    data = random_graph(num_nodes=9, num_edges=30)
    src, dst = data.edge_index
    E = src.numel()
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(5, 4, dtype=torch.float64, generator=gen, requires_grad=True) if lin \
        else None
    b = torch.randn(5, dtype=torch.float64, generator=gen, requires_grad=True) if lin else None
    e = torch.randn(E, 4 if lin else 5, dtype=torch.float64, generator=gen,
                    requires_grad=True)
    for shape in ((2, 9, 5), (9, 5)):
        x = torch.randn(*shape, dtype=torch.float64, generator=gen, requires_grad=True)
        inputs = (x, e) + ((w, b) if lin else ())

        def fn(x, e, w=None, b=None):
            return mpc.relu_message_sum(x, e, src, dst, 11, w, b)

        assert torch.autograd.gradcheck(fn, inputs)
        assert torch.autograd.gradgradcheck(fn, inputs)


def test_eager_gine_sum_is_cpu_only():
    # on another device PyG's gather and scatter stay (a block would cost a
    # kernel launch each on a GPU); 'meta' tensors stand in for a GPU here
    data = random_graph()
    conv, _ = _gine_pair()
    args = (data.edge_index, data.edge_attr, data.x, data.x, None)
    assert conv._eager_relu_message(*args)
    meta = (data.edge_index.to("meta"), data.edge_attr.to("meta"), data.x.to("meta"),
            data.x.to("meta"), None)
    assert not conv._eager_relu_message(*meta)


def test_eager_gine_sum_hooked_edge_linear_runs_propagate():
    # a hook on the edge Linear must run: the fused sum, which reads the
    # Linear's parameters, steps aside
    data = random_graph()
    conv, ref = _gine_pair()
    expected = conv(data.x, data.edge_index, data.edge_attr)
    seen = []
    conv.lin_edge.register_forward_hook(lambda module, args, out: seen.append(out.shape))
    assert torch.equal(conv(data.x, data.edge_index, data.edge_attr), expected)
    assert seen == [(data.num_edges, 8)]


def test_eager_gine_sum_static_graph_and_gradcheck():
    from gdl_pyg.nn.conv.message_passing_conv import relu_message_sum
    data = random_graph(num_nodes=9, num_edges=30)
    src, dst = data.edge_index
    E = src.numel()
    # [B, N, F] signals on one graph: the edge term's gradient sums over B
    x = torch.randn(2, 9, 5, dtype=torch.float64, requires_grad=True)
    e = torch.randn(E, 5, dtype=torch.float64, requires_grad=True)
    out = relu_message_sum(x, e, src, dst, 4 + int(dst.max()))
    ref = torch.zeros(2, 4 + int(dst.max()), 5, dtype=torch.float64).index_add(
        1, dst, (x[:, src] + e).relu())
    assert torch.equal(out, ref)
    assert torch.autograd.gradcheck(
        lambda x, e: relu_message_sum(x, e, src, dst, 11), (x, e))
    assert torch.autograd.gradcheck(
        lambda x, e: relu_message_sum(x, e, src, dst, 11), (x[0].detach().requires_grad_(), e))


def test_eager_gine_sum_falls_back_to_pyg():
    # where the fused sum does not apply, PyG's propagate runs: its result, its errors
    data = random_graph()
    conv, ref = _gine_pair()
    bad = data.edge_index.clone()
    bad[0, 0] = 99  # a source out of range
    with pytest.raises(IndexError, match="Found indices in 'edge_index' that are larger"):
        ref(data.x, bad, data.edge_attr)
    with pytest.raises(ValueError, match=r"source \(first row\) index 99 .* only 12 nodes"):
        conv(data.x, bad, data.edge_attr)  # checked before any sum
    # a float32 edge term with float64 features cannot be added in place: PyG's
    # propagate runs and promotes, as it does with a hook registered
    conv32 = MessagePassingConv(phi=mlp(8, 8).double(), edge_dim=3, in_channels=8)
    out = conv32(data.x, data.edge_index, data.edge_attr.float())
    conv32.register_propagate_forward_pre_hook(lambda module, inputs: None)
    assert out.dtype == torch.float64
    assert torch.equal(out, conv32(data.x, data.edge_index, data.edge_attr.float()))


# --- small graphs: the default message without propagate's machinery ----------------

def _propagate_calls(monkeypatch, conv):
    calls = []
    original = conv.propagate

    def spy(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)
    monkeypatch.setattr(conv, "propagate", spy)
    return calls


@pytest.mark.parametrize("flow", ["source_to_target", "target_to_source"])
@pytest.mark.parametrize("aggr,combine,phi", [("add", "add", True), ("mean", "cat", True),
                                              ("max", "none", False), ("sum", "add", False)])
def test_plain_sum_equals_propagate_bit_for_bit(monkeypatch, flow, aggr, combine, phi):
    data = batched()
    width = 16 if combine == "cat" else 8
    torch.manual_seed(0)
    conv = MessagePassingConv(phi=mlp(width, 4).double() if phi else None, aggr=aggr,
                              combine=combine, flow=flow, train_eps=True)
    x = data.x.clone().requires_grad_()
    calls = _propagate_calls(monkeypatch, conv)
    out = conv(x, data.edge_index)
    assert calls == []  # the small-graph path
    params = [x] + list(conv.parameters())
    grads = torch.autograd.grad(out.square().sum(), params, allow_unused=True)
    monkeypatch.setattr(MessagePassingConv, "_plain_sum", lambda *a: None)
    ref = conv(x, data.edge_index)
    assert calls == [1]  # the general path, through PyG's propagate
    ref_grads = torch.autograd.grad(ref.square().sum(), params, allow_unused=True)
    assert torch.equal(out, ref)
    assert grads[0] is not None
    assert all(a is b is None or torch.equal(a, b) for a, b in zip(grads, ref_grads))


def test_plain_sum_only_where_it_is_propagate(monkeypatch, gather_path):
    taken = []
    original = MessagePassingConv._plain_sum

    def spy(self, *args):
        out = original(self, *args)
        taken.append(out is not None)
        return out
    monkeypatch.setattr(MessagePassingConv, "_plain_sum", spy)
    data = random_graph()
    conv = MessagePassingConv(phi=mlp(8, 4).double())
    conv(data.x, data.edge_index)
    assert taken == [True]
    conv(data.x, data.edge_index.int())  # PyG's int32 handling
    conv((data.x, data.x), data.edge_index)
    conv(data.x.unsqueeze(0), data.edge_index)  # static graph, B signals
    handle = gather_path(conv)  # a hook on propagate runs
    conv(data.x, data.edge_index)
    handle.remove()
    MessagePassingConv(psi=mlp(16, 8).double())(data.x, data.edge_index)
    from torch_geometric.explain.algorithm.utils import clear_masks, set_masks
    mask = torch.nn.Parameter(torch.ones(data.edge_index.size(1), dtype=torch.float64))
    set_masks(conv, mask, data.edge_index)  # PyG's explanations go through propagate
    conv(data.x, data.edge_index)
    clear_masks(conv)
    assert taken == [True] + [False] * 6
    # edge features and an explicit size skip it without asking
    conv(data.x, data.edge_index, data.edge_attr.narrow(1, 0, 1).expand(-1, 8).contiguous())
    conv(data.x, data.edge_index, size=(12, 12))
    assert len(taken) == 7
    # from the product's threshold on, the sparse product
    gen = torch.Generator().manual_seed(0)
    big = torch.randint(0, 300, (2, 4096), generator=gen)
    products = []
    monkeypatch.setattr(mpc, "edge_aggregate", lambda *a, **k: products.append(1)
                        or torch.zeros(300, 128, dtype=torch.float64))
    MessagePassingConv()(torch.randn(300, 128, dtype=torch.float64, generator=gen), big)
    assert taken[-1] is False and products == [1]


def test_plain_sum_keeps_the_input_checks():
    data = random_graph()
    conv = MessagePassingConv(phi=mlp(7, 4).double())
    with pytest.raises(ValueError, match="'MessagePassingConv' feeds 'phi' with 8 channels "
                                         ".* expects 7"):
        conv(data.x, data.edge_index)
    bad = data.edge_index.clone()
    bad[1, 0] = 12
    with pytest.raises(ValueError, match="target .* index 12"):
        MessagePassingConv()(data.x, bad)
    with pytest.raises(ValueError, match="negative index"):
        MessagePassingConv()(data.x, -data.edge_index)
    for shape in ((), (80, )):  # the general path's messages, not an IndexError
        with pytest.raises(ValueError, match="two-dimensional"):
            MessagePassingConv()(data.x, torch.zeros(shape, dtype=torch.long))


@pytest.mark.parametrize("mean", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_edge_sum_under_torch_func_transforms(mean, weighted):
    # torch.func's grad / jacrev / jacfwd / hessian / vmap take the sum over
    # edges (a Function with setup_context, a jvp and a vmap rule)
    gen = torch.Generator().manual_seed(0)
    ei = torch.randint(0, 20, (2, 80), generator=gen)
    x = torch.randn(20, 3, dtype=torch.float64, generator=gen)
    w = torch.rand(80, dtype=torch.float64, generator=gen) if weighted else None
    aggr = "mean" if mean else "sum"

    def f(x):
        return mpc.edge_aggregate(ei, x, 20, aggr=aggr, edge_weight=w)

    expected = torch.autograd.functional.jacobian(f, x)
    assert torch.allclose(torch.func.jacrev(f)(x), expected)
    assert torch.allclose(torch.func.jacfwd(f)(x), expected)

    def energy(x):
        return f(x).square().sum()
    assert torch.allclose(torch.func.hessian(energy)(x),
                          torch.autograd.functional.hessian(energy, x))
    assert torch.allclose(torch.func.grad(energy)(x), torch.autograd.functional.jacobian(energy, x))
    xs = torch.randn(4, 20, 3, dtype=torch.float64, generator=gen)
    assert torch.allclose(torch.func.vmap(f)(xs), torch.stack([f(a) for a in xs]))
    if weighted:  # batched weights: one sum per sample
        ws = torch.rand(3, 80, dtype=torch.float64, generator=gen)

        def g(w):
            return mpc.edge_aggregate(ei, x, 20, aggr=aggr, edge_weight=w)
        assert torch.allclose(torch.func.vmap(g)(ws), torch.stack([g(a) for a in ws]))
        assert torch.allclose(torch.func.jacfwd(g)(w), torch.autograd.functional.jacobian(g, w))


def test_layer_jacobian_through_the_product(product_at_any_size):
    from gdl_pyg.nn.conv import ConvolutionalConv
    data = random_graph()
    conv = ConvolutionalConv(8, 4).double()
    params = dict(conv.named_parameters())

    def f(x):
        return torch.func.functional_call(conv, params, (x, data.edge_index))
    assert torch.allclose(torch.func.jacrev(f)(data.x),
                          torch.autograd.functional.jacobian(f, data.x))


@pytest.mark.parametrize("layout", ["csr", "csr_weighted", "sparse_tensor",
                                    "sparse_tensor_weighted"])
@pytest.mark.parametrize("aggr", ["add", "mean"])
def test_plain_sparse_sum_equals_propagate_bit_for_bit(monkeypatch, layout, aggr):
    if layout.startswith("sparse_tensor"):
        pytest.importorskip("torch_sparse")
        from torch_sparse import SparseTensor
    data = batched()
    N, ei = data.num_nodes, data.edge_index
    weight = torch.rand(ei.size(1), dtype=torch.float64) if layout.endswith("weighted") else None
    if layout.startswith("csr"):
        adj_t = to_torch_csr_tensor(ei.flip(0), weight, size=(N, N))
    else:
        adj_t = SparseTensor.from_edge_index(ei, weight, sparse_sizes=(N, N)).t()
    torch.manual_seed(0)
    conv = MessagePassingConv(phi=mlp(8, 4).double(), aggr=aggr, train_eps=True)
    x = data.x.clone().requires_grad_()
    calls = _propagate_calls(monkeypatch, conv)
    out = conv(x, adj_t)
    assert calls == []  # message_and_aggregate directly
    params = [x] + list(conv.parameters())
    grads = torch.autograd.grad(out.square().sum(), params)
    monkeypatch.setattr(MessagePassingConv, "_plain_sum", lambda *a: None)
    ref = conv(x, adj_t)
    assert calls == [1]
    ref_grads = torch.autograd.grad(ref.square().sum(), params)
    assert torch.equal(out, ref)
    assert all(torch.equal(a, b) for a, b in zip(grads, ref_grads))
    # the weights are ignored (the message is x_j): the edge_index result
    assert torch.allclose(out, conv(x, ei), atol=1e-12)


def test_plain_sparse_sum_leaves_edge_features_and_odd_shapes_to_the_general_path():
    data = random_graph()
    N, ei = data.num_nodes, data.edge_index
    conv = MessagePassingConv(edge_dim=3, in_channels=8).double()
    feats = to_torch_coo_tensor(ei.flip(0), data.edge_attr, size=(N, N)).to_sparse_csr()
    assert conv._plain_sum(data.x, feats) is None  # edge features: the GINE message
    out = conv(data.x, feats)
    assert torch.allclose(out, conv(data.x, ei, data.edge_attr), atol=1e-12)
    wide = to_torch_csr_tensor(ei.flip(0), size=(N, N + 1))
    assert MessagePassingConv()._plain_sum(data.x, wide) is None
