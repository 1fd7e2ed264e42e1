import pytest
import torch
from torch_geometric.data import Batch, Data

from gdl_pyg.groups import E3, Permutations
from gdl_pyg.nn.models import EGNN, NBodyGNN
from gdl_pyg.testing import assert_equivariant


def nbody_graph(n=5, seed=0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    i, j = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    keep = i != j
    edge_index = torch.stack([j[keep], i[keep]])
    q = torch.randint(0, 2, (n, 1), generator=gen).to(dtype) * 2 - 1
    vel = torch.randn(n, 3, generator=gen, dtype=dtype)
    return Data(x=vel.norm(dim=-1, keepdim=True), pos=torch.randn(n, 3, generator=gen,
                                                                  dtype=dtype),
                vel=vel, edge_index=edge_index,
                edge_attr=q[edge_index[0]] * q[edge_index[1]])


def batch(dtype=torch.float64):
    return Batch.from_data_list([nbody_graph(seed=s, dtype=dtype) for s in range(3)])


def test_shapes_and_repr():
    data = batch(torch.float32)
    model = EGNN(1, 16, num_layers=2)
    assert model(data).shape == (15, 3)
    assert str(model) == "EGNN(1, 16, num_layers=2, edge_dim=1, velocity=True, level='node')"
    assert model.convs[0].edge_dim == 2  # charge product + input squared distance
    graph = EGNN(1, 16, num_layers=2, level="graph")
    graph.load_state_dict(model.state_dict())
    assert torch.equal(graph(data), model(data).view(3, 15))
    disp = EGNN(1, 16, num_layers=2, task="displacements")
    disp.load_state_dict(model.state_dict())
    assert torch.allclose(disp(data), model(data) - data.pos)
    gnn = NBodyGNN(7, 16, num_layers=2)
    assert gnn(data).shape == (15, 3)
    assert gnn(Batch.from_data_list([nbody_graph(dtype=torch.float32),
                                     nbody_graph(seed=1, dtype=torch.float32)])).shape == (10, 3)
    assert str(gnn) == "NBodyGNN(7, 16, num_layers=2, edge_dim=1, residual=True, level='node')"
    assert NBodyGNN(7, 16, level="graph")(data).shape == (3, 15)
    # similar sizes (the comparison in the configs is fair)
    n_egnn = sum(p.numel() for p in EGNN(1, 64).parameters())
    n_gnn = sum(p.numel() for p in NBodyGNN(7, 64).parameters())
    assert 0.7 < n_egnn / n_gnn < 1.4


def test_bad_input():
    with pytest.raises(ValueError, match="'level' in"):
        EGNN(1, 16, level="edge")
    with pytest.raises(ValueError, match="'num_layers' to be an integer >= 1"):
        NBodyGNN(7, 16, num_layers=0)
    data = nbody_graph()
    del data.vel
    with pytest.raises(ValueError, match="EGNN' needs the attribute 'vel'"):
        EGNN(1, 16).double()(data)
    EGNN(1, 16, velocity=False).double()(data)  # no velocities needed
    with pytest.raises(ValueError, match="NBodyGNN' expected pos, vel and x of total width 8"):
        NBodyGNN(8, 16).double()(nbody_graph())
    uneven = Batch.from_data_list([nbody_graph(5), nbody_graph(4)])
    with pytest.raises(ValueError, match="graphs of equal size"):
        EGNN(1, 16, level="graph").double()(uneven)


@pytest.mark.parametrize("model", [EGNN(1, 16, num_layers=2, level="graph"),
                                   NBodyGNN(7, 16, level="graph")])
def test_graph_level_compiles_without_graph_breaks(model, compile_one_graph):
    # the equal-size check reads the data: eager only, like the index checks
    model, data = model.double(), batch()
    ref = model(data)
    assert (compile_one_graph(model, data) - ref).abs().max() < 1e-12


@pytest.mark.parametrize("kwargs", [dict(), dict(attention=True, coords_agg="sum"),
                                    dict(velocity=False, distance_attr=False)])
def test_egnn_equivariance(kwargs):
    model = EGNN(1, 16, num_layers=3, **kwargs)
    data = batch()
    assert_equivariant(model, data, E3(), fields={"vel": "vector"}, output_keys=["pos"])
    assert_equivariant(model, data, Permutations(), output_keys=["pos"])
    disp = EGNN(1, 16, num_layers=3, task="displacements", **kwargs)
    assert_equivariant(disp, data, E3(), fields={"vel": "vector"}, output_keys=["d"],
                       out_fields={"d": "vector"})


def test_gnn_is_permutation_but_not_e3_equivariant():
    model = NBodyGNN(7, 16, num_layers=2)
    data = batch()
    assert_equivariant(model, data, Permutations(), output_keys=["pos"])
    with pytest.raises(AssertionError, match="not equivariant to E\\(3\\)"):
        assert_equivariant(model, data, E3(), fields={"vel": "vector"}, output_keys=["pos"])


def test_egnn_learns_a_constant_velocity_step():
    # x(T) = x + 2 v is E(3)-equivariant and reachable through phi_v: a few
    # Adam steps bring the error far below that of predicting x(T) = x.
    torch.manual_seed(0)
    data = Batch.from_data_list([nbody_graph(seed=s, dtype=torch.float32) for s in range(16)])
    target = data.pos + 2 * data.vel
    model = EGNN(1, 16, num_layers=2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    base = float(((data.pos - target) ** 2).mean())
    for _ in range(150):
        opt.zero_grad()
        loss = ((model(data) - target) ** 2).mean()
        loss.backward()
        opt.step()
    assert loss.item() < 0.01 * base
