import pytest
import torch
from torch_geometric.data import Batch, Data
from torch_geometric.utils import to_undirected

from gdl_pyg.groups import Permutations
from gdl_pyg.nn.conv.attentional_conv import AttentionalConv
from gdl_pyg.nn.conv.convolutional_conv import ConvolutionalConv
from gdl_pyg.nn.conv.deep_sets_conv import DeepSetsConv
from gdl_pyg.nn.conv.graph_transformer_conv import GraphTransformerConv
from gdl_pyg.nn.conv.message_passing_conv import MessagePassingConv
from gdl_pyg.nn.models.gnn import GNN, DeepSets, GraphTransformer
from gdl_pyg.testing import assert_equivariant
from gdl_pyg.transforms.positional_encoding import LaplacianPE, RandomWalkPE

FLAVOURS = {"convolutional": ConvolutionalConv, "attentional": AttentionalConv,
            "message_passing": MessagePassingConv}


def _graph(n, p, gen, channels=3):
    """A connected random graph: a path plus random chords."""
    path = torch.stack([torch.arange(n - 1), torch.arange(1, n)])
    u, v = torch.triu_indices(n, n, offset=2)
    keep = torch.rand(u.numel(), generator=gen) < p
    ei = to_undirected(torch.cat([path, torch.stack([u[keep], v[keep]])], 1), num_nodes=n)
    return Data(x=torch.randn(n, channels, generator=gen), edge_index=ei)


def _graphs_with_pe(pe):
    r"""The graphs of :func:`_batch` with the positional encoding ``pe``
    (``"none"``, ``"laplacian"`` or ``"random_walk"``) of dimension 4."""
    graphs = _batch().to_data_list()
    if pe == "laplacian":
        return [LaplacianPE(4, random_sign_flip=False)(g) for g in graphs]
    if pe == "random_walk":
        return [RandomWalkPE(4)(g) for g in graphs]
    return graphs


def _batch(channels=3):
    gen = torch.Generator().manual_seed(0)
    return Batch.from_data_list([_graph(n, 0.3, gen, channels) for n in (7, 5, 9)])


def _with_index(data):
    """Breaks the symmetry: features depend on the node order."""
    out = data.clone()
    out.x = data.x + torch.arange(data.num_nodes, dtype=data.x.dtype).view(-1, 1) / 10
    return out


@pytest.mark.parametrize("flavour", list(FLAVOURS))
@pytest.mark.parametrize("level", ["node", "graph"])
def test_gnn_shapes_repr_batching(flavour, level):
    torch.manual_seed(0)
    model = GNN(3, 8, 4, num_layers=2, flavour=flavour, level=level, heads=2).eval()
    assert all(type(c) is FLAVOURS[flavour] for c in model.convs) and len(model.convs) == 2
    assert model.num_classes == 4
    assert str(model) == (f"GNN(3, 8, 4, num_layers=2, flavour='{flavour}', "
                          f"level='{level}')")
    batch = _batch()
    out = model(batch)
    assert out.shape == ((21, 4) if level == "node" else (3, 4))
    # graphs of a batch do not interact
    for i, g in enumerate(batch.to_data_list()):
        single = model(g)
        expected = out[batch.batch == i] if level == "node" else out[i:i + 1]
        assert torch.allclose(single, expected, atol=1e-5)
    model.reset_parameters()


@pytest.mark.parametrize("flavour", list(FLAVOURS))
def test_gnn_equivariance(flavour):
    torch.manual_seed(0)
    batch = _batch()
    node = GNN(3, 8, 4, flavour=flavour, level="node")
    res = assert_equivariant(node, batch, Permutations(), forward=lambda m, d: m(d))
    assert res.error < 1e-12
    for readout in ("sum", "mean", "max", "attention"):
        graph = GNN(3, 8, 4, flavour=flavour, level="graph", readout=readout)
        res = assert_equivariant(graph, batch, Permutations(), forward=lambda m, d: m(d))
        assert res.error < 1e-12
    # the checker catches a model that sees the node order
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(node, batch, Permutations(), forward=lambda m, d: m(_with_index(d)))


def test_gnn_bad_input():
    with pytest.raises(ValueError, match="flavour"):
        GNN(3, 8, 4, flavour="spectral")
    with pytest.raises(ValueError, match="level"):
        GNN(3, 8, 4, level="edge")
    with pytest.raises(ValueError, match="divisible by heads"):
        GNN(3, 8, 4, flavour="attentional", heads=3)
    with pytest.raises(ValueError, match="num_layers"):
        GNN(3, 8, 4, num_layers=0)
    model = GNN(3, 8, 4)
    with pytest.raises(ValueError, match=r"shape \[num_nodes, 3\]"):
        model(Data(x=torch.randn(4, 2), edge_index=torch.zeros(2, 0, dtype=torch.long)))
    with pytest.raises(TypeError, match="Data"):
        model(torch.randn(4, 3))


@pytest.mark.parametrize("pe", ["none", "laplacian", "random_walk"])
@pytest.mark.parametrize("attention", ["complete", "edges"])
def test_transformer_shapes_repr(pe, attention):
    torch.manual_seed(0)
    model = GraphTransformer(3, 8, 4, num_layers=2, heads=2, pe=pe, pe_dim=4,
                             attention=attention).eval()
    assert all(type(c) is GraphTransformerConv for c in model.convs)
    assert str(model) == f"GraphTransformer(3, 8, 4, num_layers=2, heads=2, pe='{pe}', " \
                         f"level='graph')"
    graphs = _graphs_with_pe(pe)
    batch = Batch.from_data_list(graphs)
    out = model(batch)
    assert out.shape == (3, 4)
    for i, g in enumerate(graphs):
        assert torch.allclose(model(g), out[i:i + 1], atol=1e-5)
    node = GraphTransformer(3, 8, 5, heads=2, pe=pe, pe_dim=4, level="node",
                            attention=attention)
    assert node(batch).shape == (21, 5)


def test_transformer_equivariance_and_positional_encodings():
    torch.manual_seed(0)
    batch = _batch()
    rw = GraphTransformer(3, 8, 4, heads=2, pe="random_walk", pe_dim=5, level="node")
    # the model is equivariant given encodings that move with the nodes (a
    # node-level attribute, permuted by the group)
    with_pe = RandomWalkPE(5, attr_name="rw")(batch.clone())
    rw_attr = GraphTransformer(3, 8, 4, heads=2, pe="random_walk", pe_dim=5, level="node",
                               pe_attr="rw")
    res = assert_equivariant(rw_attr, with_pe, Permutations(), forward=lambda m, d: m(d))
    assert res.error < 1e-12
    # random-walk encodings are an equivariant function of the graph, so the
    # pipeline "transform, then model" is equivariant too; PyG's AddRandomWalkPE
    # computes in float32 whatever the input dtype, hence the float32 tolerance
    for model in (rw, GraphTransformer(3, 8, 4, heads=2, pe="random_walk", pe_dim=5)):
        res = assert_equivariant(model, batch, Permutations(), tol=1e-6,
                                 forward=lambda m, d: m(RandomWalkPE(5)(d.clone())))
    # without encodings and with complete attention the edges are ignored
    blind = GraphTransformer(3, 8, 4, heads=2, pe="none")
    other = batch.clone()
    other.edge_index = other.edge_index[:, :4]
    assert torch.allclose(blind(batch), blind(other))
    # the same with an order-dependent input fails
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(rw, batch, Permutations(), tol=1e-6,
                           forward=lambda m, d: m(RandomWalkPE(5)(_with_index(d))))


def test_transformer_laplacian_pe_equivariant_only_without_sign_flips():
    torch.manual_seed(0)

    def simple_spectrum(data):  # the 5 lowest non-zero eigenvalues are simple
        A = torch.zeros(8, 8, dtype=torch.float64)
        A[data.edge_index[0], data.edge_index[1]] = 1
        d = A.sum(1).rsqrt()
        vals = torch.linalg.eigvalsh(torch.eye(8, dtype=torch.float64) - d[:, None] * A * d[None])
        return bool((vals[:6].diff() > 1e-3).all())

    # one connected graph (as LaplacianPE expects) whose eigenvectors are unique
    # up to sign; with a repeated eigenvalue the basis is arbitrary and the
    # encodings are not equivariant even with canonical signs
    gen = torch.Generator().manual_seed(1)
    data = _graph(8, 0.3, gen)
    while not simple_spectrum(data):
        data = _graph(8, 0.3, gen)
    model = GraphTransformer(3, 8, 4, heads=2, pe="laplacian", pe_dim=4, level="node")
    # canonical signs (eval mode of the transform): equivariant
    pe = LaplacianPE(4).eval()
    res = assert_equivariant(model, data, Permutations(), forward=lambda m, g: m(pe(g.clone())))
    assert res.error < 1e-9
    # random sign flips (training mode): a random function of the graph, not equivariant
    pe_train = LaplacianPE(4).train()
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(model, data, Permutations(),
                           forward=lambda m, g: m(pe_train(g.clone())))


def test_transformer_bad_input():
    with pytest.raises(ValueError, match="pe"):
        GraphTransformer(3, 8, 4, pe="sinusoidal")
    with pytest.raises(ValueError, match="divisible by heads"):
        GraphTransformer(3, 10, 4, heads=4)
    model = GraphTransformer(3, 8, 4, heads=2, pe="laplacian", pe_dim=4)
    with pytest.raises(ValueError, match="laplacian_pe"):
        model(_batch())
    assert GraphTransformer(3, 8, 4, heads=2, pe="random_walk").pe_attr == "random_walk_pe"
    assert GraphTransformer(3, 8, 4, heads=2, pe="random_walk", pe_attr="p").pe_attr == "p"


def _sets(channels=4):
    gen = torch.Generator().manual_seed(0)
    return Batch.from_data_list([Data(x=torch.randn(n, channels, generator=gen), num_nodes=n)
                                 for n in (3, 6, 1, 4)])


@pytest.mark.parametrize("aggr", ["sum", "mean", "max"])
@pytest.mark.parametrize("num_layers", [0, 2])
def test_deepsets(aggr, num_layers):
    torch.manual_seed(0)
    model = DeepSets(4, 8, 3, num_layers=num_layers, aggr=aggr).eval()
    assert all(type(c) is DeepSetsConv for c in model.convs) and len(model.convs) == num_layers
    assert str(model) == f"DeepSets(4, 8, 3, num_layers={num_layers}, aggr='{aggr}')"
    sets = _sets()
    out = model(sets)
    assert out.shape == (4, 3)
    for i, s in enumerate(sets.to_data_list()):
        assert torch.allclose(model(s), out[i:i + 1], atol=1e-5)
    res = assert_equivariant(model, sets, Permutations(), forward=lambda m, d: m(d))
    assert res.error < 1e-12
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(model, sets, Permutations(), forward=lambda m, d: m(_with_index(d)))
    model.reset_parameters()


def test_deepsets_bad_input():
    with pytest.raises(ValueError, match="aggr"):
        DeepSets(4, 8, 3, aggr="attention")
    with pytest.raises(ValueError, match=r"shape \[num_nodes, 4\]"):
        DeepSets(4, 8, 3)(Data(x=torch.randn(3, 5)))


@pytest.mark.parametrize("pe", ["none", "random_walk", "laplacian"])
def test_graph_transformer_with_edge_attention_compiles_without_graph_breaks(
        pe, compile_one_graph):
    graphs = _graphs_with_pe(pe)
    data = Batch.from_data_list(graphs)
    model = GraphTransformer(3, 8, 4, num_layers=2, heads=2, pe=pe, pe_dim=4,
                             attention="edges").eval()
    ref = model(data)
    assert (compile_one_graph(model, data) - ref).abs().max() < 1e-6


@pytest.mark.parametrize("num_layers", [1, 3])
def test_graph_transformer_complete_attention_reads_the_largest_graph_once(num_layers):
    # the largest graph's size is read once, in embed, for all layers (before,
    # each layer's to_dense_batch read it: 4 graphs and 3 breaks). The one
    # read splits embed, which dynamo counts as two breaks (its call in
    # forward, and the read)
    graphs = _graphs_with_pe("random_walk")
    data = Batch.from_data_list(graphs)
    torch.manual_seed(0)
    model = GraphTransformer(3, 8, 4, num_layers=num_layers, heads=2, pe="random_walk",
                             pe_dim=4, attention="complete").eval()
    ref = model(data)
    torch._dynamo.reset()
    explain = torch._dynamo.explain(model)(data)
    assert (explain.graph_count, explain.graph_break_count) == (3, 2), explain.break_reasons
    assert all("gnn.py" in r.user_stack[-1].filename for r in explain.break_reasons)
    out = torch.compile(model, backend="aot_eager")(data)
    assert (out - ref).abs().max() < 1e-6
    # the same logits as each graph alone
    for i, g in enumerate(graphs):
        assert torch.allclose(model(g), ref[i:i + 1], atol=1e-5)
