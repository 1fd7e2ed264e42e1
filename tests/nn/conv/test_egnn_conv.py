import pytest
import torch
from torch_geometric.data import Batch, Data

from gdl_pyg.groups import E3, SO2, Permutations
from gdl_pyg.nn.conv import EGNNConv
from gdl_pyg.testing import assert_equivariant

FIELDS = {"vel": "vector"}


def random_graph(num_nodes=10, num_edges=40, channels=6, edge_dim=2, dim=3, seed=0,
                 dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    edge_index = torch.randint(0, num_nodes, (2, num_edges), generator=gen)
    edge_index = edge_index[:, edge_index[0] != edge_index[1]]
    return Data(x=torch.randn(num_nodes, channels, generator=gen, dtype=dtype),
                pos=torch.randn(num_nodes, dim, generator=gen, dtype=dtype),
                vel=torch.randn(num_nodes, dim, generator=gen, dtype=dtype),
                edge_index=edge_index,
                edge_attr=torch.randn(edge_index.size(1), edge_dim, generator=gen,
                                      dtype=dtype))


def call(conv, data):
    vel = data.vel if conv.velocity else None
    ea = data.edge_attr if conv.edge_dim else None
    return conv(data.x, data.pos, data.edge_index, ea, vel)


def test_shapes_and_repr():
    data = random_graph(dtype=torch.float32)
    conv = EGNNConv(6, 8, hidden_channels=16, edge_dim=2)
    assert EGNNConv.group_name == "E(3)"
    h, pos = call(conv, data)
    assert h.shape == (10, 8) and pos.shape == (10, 3)
    assert not conv.residual  # widths differ
    assert str(conv) == "EGNNConv(6, 8, hidden_channels=16, edge_dim=2, coords_agg='mean')"
    conv = EGNNConv(6, 6, 16, attention=True, velocity=True, coords_agg="sum")
    assert str(conv) == ("EGNNConv(6, 6, hidden_channels=16, attention=True, velocity=True, "
                         "coords_agg='sum')")
    h, pos = call(conv, data)
    assert h.shape == (10, 6) and pos.shape == (10, 3)
    before = conv.edge_mlp[0].weight.clone()
    conv.reset_parameters()
    assert not torch.equal(before, conv.edge_mlp[0].weight)
    # the last coordinate layer starts tiny (xavier, gain 1e-3)
    assert conv.coord_mlp[-1].weight.abs().max() < 1e-3
    # no coordinate update: pos comes back unchanged
    conv = EGNNConv(6, 6, 16, update_coords=False)
    assert conv.coord_mlp is None
    h, pos = call(conv, data)
    assert pos is data.pos


def test_bad_input():
    data = random_graph()
    conv = EGNNConv(6, 6, 8, edge_dim=2).double()
    with pytest.raises(ValueError, match=r"EGNNConv.*'pos' of shape \[num_nodes, n\] = \[10"):
        conv(data.x, data.pos[:9], data.edge_index, data.edge_attr)
    with pytest.raises(ValueError, match=r"EGNNConv.*'pos'.*got \[10\]"):
        conv(data.x, data.pos[:, 0], data.edge_index, data.edge_attr)
    with pytest.raises(ValueError, match=r"EGNNConv.*'x' of shape \[num_nodes, 6\]"):
        conv(data.x[:, :4], data.pos, data.edge_index, data.edge_attr)
    pos = data.pos.clone()
    pos[3, 1] = float("nan")
    with pytest.raises(ValueError, match="EGNNConv.*non-finite.*'pos'"):
        conv(data.x, pos, data.edge_index, data.edge_attr)
    x = data.x.clone()
    x[0, 0] = float("inf")
    with pytest.raises(ValueError, match="EGNNConv.*non-finite.*'x'"):
        conv(x, data.pos, data.edge_index, data.edge_attr)
    bad = data.edge_index.clone()
    bad[0, 0] = 10
    with pytest.raises(ValueError, match=r"EGNNConv.*index 10 in .edge_index. but the graph "
                       r"has only 10 nodes"):
        conv(data.x, data.pos, bad, data.edge_attr)
    with pytest.raises(ValueError, match=r"EGNNConv.*\[2, num_edges\]"):
        conv(data.x, data.pos, data.edge_index.t(), data.edge_attr)
    with pytest.raises(ValueError, match=r"EGNNConv.*'edge_attr' of shape"):
        conv(data.x, data.pos, data.edge_index)
    with pytest.raises(ValueError, match="edge_dim=0 but got 'edge_attr'"):
        EGNNConv(6, 6, 8).double()(data.x, data.pos, data.edge_index, data.edge_attr)
    with pytest.raises(ValueError, match="velocity=True expected velocities 'vel'"):
        EGNNConv(6, 6, 8, velocity=True).double()(data.x, data.pos, data.edge_index)
    with pytest.raises(ValueError, match="velocity=False but got 'vel'"):
        EGNNConv(6, 6, 8).double()(data.x, data.pos, data.edge_index, None, data.vel)
    with pytest.raises(TypeError, match="EGNNConv.*'pos' to be a Tensor"):
        conv(data.x, data.pos.tolist(), data.edge_index, data.edge_attr)
    with pytest.raises(ValueError, match="'coords_agg' to be one of"):
        EGNNConv(6, 6, coords_agg="max")
    with pytest.raises(ValueError, match="set update_coords=True"):
        EGNNConv(6, 6, velocity=True, update_coords=False)
    with pytest.raises(ValueError, match="'in_channels' to be an integer >= 1"):
        EGNNConv(0, 6)


def test_empty_graphs_work():
    conv = EGNNConv(6, 6, 8, edge_dim=2).double()
    data = random_graph()
    no_edges = torch.zeros(2, 0, dtype=torch.long)
    h, pos = conv(data.x, data.pos, no_edges, torch.zeros(0, 2, dtype=torch.float64))
    # only the node MLP acts (zero aggregated message), coordinates stay put
    expected = data.x + conv.node_mlp(torch.cat([data.x, torch.zeros(10, 8,
                                                                     dtype=torch.float64)], -1))
    assert (h - expected).abs().max() < 1e-12
    assert torch.equal(pos, data.pos)
    h, pos = conv(data.x[:0], data.pos[:0], no_edges, torch.zeros(0, 2, dtype=torch.float64))
    assert h.shape == (0, 6) and pos.shape == (0, 3)


def test_self_loops_give_finite_gradients():
    data = random_graph()
    loops = torch.arange(10).repeat(2, 1)
    edge_index = torch.cat([data.edge_index, loops], dim=1)
    conv = EGNNConv(6, 6, 8).double()
    pos = data.pos.clone().requires_grad_()
    h, out = conv(data.x, pos, edge_index)
    (h.sum() + out.sum()).backward()
    assert torch.isfinite(pos.grad).all()


CONFIGS = [
    dict(edge_dim=2),
    dict(edge_dim=2, attention=True),
    dict(edge_dim=2, velocity=True),
    dict(velocity=True, attention=True, coords_agg="sum", tanh=True),
    dict(edge_dim=2, normalize=False, act="relu"),
    dict(update_coords=False),
]


@pytest.mark.parametrize("kwargs", CONFIGS, ids=lambda k: ",".join(k))
def test_e3_equivariance(kwargs):
    conv = EGNNConv(6, 6, 16, **kwargs)
    for data in (random_graph(), Batch.from_data_list([random_graph(n, 3 * n, seed=n)
                                                       for n in (4, 7, 5)])):
        res = assert_equivariant(conv, data, E3(), fields=FIELDS, forward=call,
                                 output_keys=["x", "pos"])
        assert res.num_elements == 4 and res.error < 1e-9
        assert_equivariant(conv, data, Permutations(), forward=call, output_keys=["x", "pos"])


def test_any_dimension():
    conv = EGNNConv(6, 6, 16, edge_dim=2, velocity=True)
    data = random_graph(dim=2)
    assert_equivariant(conv, data, SO2(), fields=FIELDS, forward=call, output_keys=["x", "pos"])


def test_checker_fails_on_broken_layers():
    class RawPosFeatures(EGNNConv):  # features see absolute coordinates
        def forward(self, x, pos, edge_index, edge_attr=None, vel=None):
            h, p = super().forward(x, pos, edge_index, edge_attr, vel)
            return h + pos.sum(dim=-1, keepdim=True), p

    class AbsoluteCoordinateStep(EGNNConv):  # coordinate step from raw positions
        def message(self, z_i, z_j, edge_attr):
            out = super().message(z_i, z_j, edge_attr)
            H, n = self.hidden_channels, z_i.size(-1) - self.hidden_channels
            return torch.cat([out[:, :H], out[:, H:H + n] + 0.1 * z_j[:, H:],
                              out[:, H + n:]], dim=-1)

    data = random_graph()
    for cls in (RawPosFeatures, AbsoluteCoordinateStep):
        conv = cls(6, 6, 16, edge_dim=2)
        with pytest.raises(AssertionError, match="not equivariant to E\\(3\\)"):
            assert_equivariant(conv, data, E3(), fields=FIELDS, forward=call,
                               output_keys=["x", "pos"])
    # un-normalised absolute positions break translations only: rotations pass
    from gdl_pyg.groups import O3
    assert_equivariant(AbsoluteCoordinateStep(6, 6, 16, edge_dim=2), data, O3(),
                       forward=call, output_keys=["x", "pos"])


def dense_reference(conv, x, pos, edge_attr=None, vel=None):
    r"""All pairs (i, j != i), no gather / scatter: [N, N, ...] tensors."""
    N, n = pos.shape
    h_i = x.unsqueeze(1).expand(N, N, -1)  # receiver i (row)
    h_j = x.unsqueeze(0).expand(N, N, -1)  # sender j (column)
    diff = pos.unsqueeze(1) - pos.unsqueeze(0)  # x_i - x_j
    radial = (diff ** 2).sum(-1, keepdim=True)
    parts = [h_i, h_j, radial] + ([edge_attr] if edge_attr is not None else [])
    m = conv.edge_mlp(torch.cat(parts, dim=-1))
    if conv.attention:
        m = m * torch.sigmoid(conv.att_mlp(m))
    mask = (1 - torch.eye(N, dtype=x.dtype)).unsqueeze(-1)
    h = conv.node_mlp(torch.cat([x, (m * mask).sum(1)], dim=-1))
    if conv.residual:
        h = h + x
    w = conv.coord_mlp(m)
    if conv.tanh:
        w = torch.tanh(w)
    if conv.normalize:
        diff = diff / (diff.norm(dim=-1, keepdim=True) + conv.eps)
    step = (diff * w * mask).sum(1)
    if conv.coords_agg == "mean":
        step = step / (N - 1)
    if conv.velocity:
        step = step + conv.vel_mlp(x) * vel
    return h, pos + step


@pytest.mark.parametrize("kwargs", CONFIGS[:5], ids=lambda k: ",".join(k))
def test_equals_dense_all_pairs_reference(kwargs):
    N = 7
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(N, 6, generator=gen, dtype=torch.float64)
    pos = torch.randn(N, 3, generator=gen, dtype=torch.float64)
    vel = torch.randn(N, 3, generator=gen, dtype=torch.float64)
    ea_dense = torch.randn(N, N, 2, generator=gen, dtype=torch.float64)
    i, j = torch.meshgrid(torch.arange(N), torch.arange(N), indexing="ij")
    keep = i != j
    edge_index = torch.stack([j[keep], i[keep]])  # sender j in row 0
    conv = EGNNConv(6, 6, 16, **kwargs).double()
    torch.nn.init.normal_(conv.coord_mlp[-1].weight)  # not tiny: test the coordinate path
    ea = ea_dense[keep] if conv.edge_dim else None
    h, p = conv(x, pos, edge_index, ea, vel if conv.velocity else None)
    h_ref, p_ref = dense_reference(conv, x, pos, ea_dense if conv.edge_dim else None,
                                   vel if conv.velocity else None)
    assert (h - h_ref).abs().max() < 1e-10
    assert (p - p_ref).abs().max() < 1e-10
    assert (p - pos).abs().max() > 1e-3  # the coordinates did move


def test_batching_equals_separate_calls():
    conv = EGNNConv(6, 6, 16, edge_dim=2, velocity=True, attention=True).double()
    graphs = [random_graph(n, 3 * n, seed=n) for n in (4, 9, 6)]
    batch = Batch.from_data_list(graphs)
    h, p = call(conv, batch)
    for k, g in enumerate(graphs):
        hk, pk = call(conv, g)
        sl = slice(int(batch.ptr[k]), int(batch.ptr[k + 1]))
        assert (h[sl] - hk).abs().max() < 1e-12 and (p[sl] - pk).abs().max() < 1e-12


def test_compile_no_graph_breaks():
    data = random_graph(dtype=torch.float32)
    conv = EGNNConv(6, 6, 16, edge_dim=2, velocity=True)
    torch._dynamo.reset()
    explain = torch._dynamo.explain(conv)(data.x, data.pos, data.edge_index, data.edge_attr,
                                          data.vel)
    assert explain.graph_break_count == 0
    assert explain.graph_count == 1 and not explain.break_reasons
