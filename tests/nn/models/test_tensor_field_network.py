import pytest
import torch
from torch_geometric.data import Batch, Data

from gdl_pyg.groups import E3, Permutations
from gdl_pyg.nn.models.tensor_field_network import TensorFieldNetwork
from gdl_pyg.testing import assert_equivariant, equivariance_error

SMALL = dict(hidden_irreps="6x0e + 3x1o + 2x2e", num_layers=2, max_radius=2.5,
             radial_hidden=16, num_radial_basis=6, num_neighbors=4.0)


def nbody_graph(num_nodes=5, seed=0, dtype=torch.float64):
    # the n-body layout: charges x [N, 1], pos, vel, fully connected,
    # edge_attr = charge products [E, 1]
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 2, (num_nodes, 1), generator=gen).to(dtype) * 2 - 1
    pos = torch.randn(num_nodes, 3, generator=gen, dtype=dtype)
    vel = torch.randn(num_nodes, 3, generator=gen, dtype=dtype)
    row, col = torch.meshgrid(torch.arange(num_nodes), torch.arange(num_nodes), indexing="ij")
    mask = row != col
    edge_index = torch.stack([row[mask], col[mask]])
    edge_attr = x[edge_index[0]] * x[edge_index[1]]
    return Data(x=x, pos=pos, vel=vel, edge_index=edge_index, edge_attr=edge_attr)


def molecule_batch(dtype=torch.float64):
    graphs = []
    for n, seed in ((6, 1), (4, 2), (7, 3)):
        gen = torch.Generator().manual_seed(seed)
        pos = torch.randn(n, 3, generator=gen, dtype=dtype)
        x = torch.nn.functional.one_hot(torch.randint(0, 3, (n,), generator=gen), 3).to(dtype)
        dist = torch.cdist(pos, pos)
        edge_index = ((dist < 2.5) & (dist > 0)).nonzero().t()
        graphs.append(Data(x=x, pos=pos, edge_index=edge_index))
    return Batch.from_data_list(graphs)


def test_shapes_and_repr():
    data = nbody_graph(dtype=torch.float32)
    model = TensorFieldNetwork(1, edge_dim=1, use_vel=True, output="vector", **SMALL)
    assert model(data).shape == (5, 3)
    assert str(model) == ("TensorFieldNetwork(1x0e+1x1o -> 1x1o | hidden=6x0e+3x1o+2x2e | "
                          "num_layers=2, output=vector, level=node)")
    batch = molecule_batch(torch.float32)
    model = TensorFieldNetwork(3, out_channels=2, level="graph", **SMALL)
    assert model(batch).shape == (3, 2)
    model = TensorFieldNetwork(3, out_channels=4, residual=False, **SMALL)
    assert model(batch).shape == (17, 4)


def test_bad_arguments_and_input():
    with pytest.raises(ValueError, match="pools only scalars"):
        TensorFieldNetwork(1, output="vector", level="graph")
    with pytest.raises(ValueError, match="'output' in"):
        TensorFieldNetwork(1, output="tensor")
    with pytest.raises(ValueError, match="no input"):
        TensorFieldNetwork(0)
    model = TensorFieldNetwork(1, use_vel=True, **SMALL)
    data = nbody_graph(dtype=torch.float32)
    del data.vel
    with pytest.raises(ValueError, match=r"'data.vel' of shape \[num_nodes, 3\] \(got None\)"):
        model(data)
    with pytest.raises(ValueError, match=r"'data.x' of shape \[num_nodes, 2\] \(got \[5, 1\]\)"):
        TensorFieldNetwork(2, **SMALL)(nbody_graph(dtype=torch.float32))
    with pytest.raises(ValueError, match="energy_and_forces' needs output='scalar'"):
        TensorFieldNetwork(1, **SMALL).energy_and_forces(nbody_graph())


def test_vector_output_equivariance():
    model = TensorFieldNetwork(1, edge_dim=1, use_vel=True, output="vector", **SMALL)
    data = nbody_graph()
    res = assert_equivariant(model, data, E3(), fields={"vel": "vector"},
                             out_fields={"out": "vector"}, num_samples=6)
    assert res.error < 1e-9
    assert_equivariant(model, data, Permutations())
    # predicted positions pos + displacement move as points
    assert_equivariant(model, data, E3(), fields={"vel": "vector"},
                       forward=lambda m, d: d.pos + m(d), out_fields={"out": "point"})
    # vel treated as invariant is wrong: the check must fail
    assert equivariance_error(model, data, E3(), fields={"vel": "trivial"},
                              out_fields={"out": "vector"}).error > 1e-4


def test_scalar_outputs_are_invariant():
    batch = molecule_batch()
    for level in ("node", "graph"):
        model = TensorFieldNetwork(3, out_channels=2, level=level, **SMALL)
        res = assert_equivariant(model, batch, E3(), num_samples=6)
        assert res.error < 1e-9
        assert model(molecule_batch(torch.float32)).abs().max() > 1e-3  # not constant zero
    assert_equivariant(TensorFieldNetwork(3, **SMALL), batch, Permutations())


def test_energy_and_forces():
    batch = molecule_batch()
    model = TensorFieldNetwork(3, level="graph", **SMALL).double()
    energy, forces = model.energy_and_forces(batch)
    assert energy.shape == (3,) and forces.shape == (17, 3)
    assert forces.abs().max() > 1e-4
    # forces = -dE/dpos: a central finite difference on one coordinate
    eps = 1e-6
    for node, dim in ((0, 1), (9, 2)):
        plus, minus = batch.clone(), batch.clone()
        plus.pos = batch.pos.clone()
        minus.pos = batch.pos.clone()
        plus.pos[node, dim] += eps
        minus.pos[node, dim] -= eps
        fd = -(model(plus).sum() - model(minus).sum()) / (2 * eps)
        assert abs(float(fd) - float(forces[node, dim])) < 1e-6
    # forces rotate as vectors and ignore translations
    res = assert_equivariant(model, batch, E3(), forward=lambda m, d: m.energy_and_forces(d)[1],
                             out_fields={"out": "vector"}, num_samples=3)
    assert res.error < 1e-9
    # training keeps the graph for a force loss
    model.train()
    _, forces = model.energy_and_forces(batch)
    forces.square().sum().backward()
    assert model.readout.weight.grad.abs().max() > 0


def test_position_output_per_graph_compiles_as_one_graph(compile_one_graph):
    # graphs of equal size are checked in eager mode only: compiled, nothing
    # reads 'batch'
    batch = Batch.from_data_list([nbody_graph(seed=s, dtype=torch.float32) for s in range(3)])
    model = TensorFieldNetwork(1, edge_dim=1, use_vel=True, output="position",
                               level="graph", **SMALL)
    eager = model(batch)
    assert eager.shape == (3, 15)
    assert (compile_one_graph(model, batch) - eager).abs().max() < 1e-5
    torch._dynamo.reset()
    unequal = Batch.from_data_list([nbody_graph(5), nbody_graph(4, seed=1)])
    with pytest.raises(ValueError, match="needs graphs of equal size"):
        model.double()(unequal)
