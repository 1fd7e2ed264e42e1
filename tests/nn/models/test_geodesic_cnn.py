import pytest
import torch
import torch.nn.functional as F
from torch_geometric.data import Batch

from gdl_pyg.domains import mesh_to_data
from gdl_pyg.groups import GaugeGroup, Permutations
from gdl_pyg.io import read_mesh
from gdl_pyg.nn.conv import GeodesicConv
from gdl_pyg.nn.models import GeodesicCNN
from gdl_pyg.testing import assert_equivariant

POSE = "datasets/deform/raw/pose_003.ply"


def pose(x_channels=None):
    mesh = read_mesh(POSE)
    data = mesh_to_data(mesh.pos.double(), mesh.face)
    data.part = mesh.part
    if x_channels:
        data.x = torch.randn(data.num_nodes, x_channels, dtype=torch.float64,
                             generator=torch.Generator().manual_seed(0))
    return data


def test_shapes_and_repr():
    torch.manual_seed(0)
    data = pose()
    model = GeodesicCNN(1, 8, 4, max_radius=0.12)
    assert str(model) == ("GeodesicCNN(1, 8, 4, num_layers=2, num_rho=3, num_theta=8, "
                          "level='node')")
    assert model.num_classes == 4 and all(isinstance(c, GeodesicConv) for c in model.convs)
    data32 = data.clone()
    data32.edge_logmap = data32.edge_logmap.float()
    out = model(data32)  # no 'x': a constant feature 1
    assert out.shape == (data.num_nodes, 4)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    graph = GeodesicCNN(1, 8, 3, num_layers=1, level="graph", max_radius=0.12)
    assert graph(Batch.from_data_list([data32, data32.clone()])).shape == (2, 3)
    w = model.convs[0].weight.detach().clone()
    model.reset_parameters()
    assert not torch.equal(w, model.convs[0].weight)


def test_invariances():
    torch.manual_seed(0)
    data = pose(x_channels=2)
    model = GeodesicCNN(2, 6, 3, max_radius=0.12).double()
    graph = GeodesicCNN(2, 6, 3, max_radius=0.12, level="graph").double()
    assert_equivariant(model, data, GaugeGroup(), num_samples=2)
    assert_equivariant(model, data, Permutations(), num_samples=1)
    # renumbering + rigid motion with the geometry recomputed from scratch
    gen = torch.Generator().manual_seed(2)
    N = data.num_nodes
    perm = torch.randperm(N, generator=gen)
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(N)
    Q, _ = torch.linalg.qr(torch.randn(3, 3, generator=gen, dtype=torch.float64))
    other = mesh_to_data(data.pos[perm] @ Q.T - 2.0, inv[data.face])
    other.x = data.x[perm]
    assert (model(other) - model(data)[perm]).abs().max() < 1e-8
    assert (graph(other) - graph(data)).abs().max() < 1e-8


def test_checker_fails_on_discrete_pooling():
    torch.manual_seed(0)
    data = pose(x_channels=2)
    model = GeodesicCNN(2, 6, 3, max_radius=0.12, rotation_pool="discrete")
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(model, data, GaugeGroup(), num_samples=1)


def test_bad_input():
    data = pose()
    for kwargs, match in ((dict(num_theta=0), "'num_theta' to be an integer >= 1"),
                          (dict(rotation_pool="mean"), "'rotation_pool'"),
                          (dict(level="edge"), "'level'")):
        with pytest.raises(ValueError, match=match):
            GeodesicCNN(1, 8, 2, **kwargs)
    with pytest.raises(ValueError, match="needs in_channels=1"):
        GeodesicCNN(3, 8, 2)(data)
    d = data.clone()
    del d.edge_logmap
    with pytest.raises(ValueError, match="MeshGeometry"):
        GeodesicCNN(1, 8, 2)(d)


def test_learns_parts():
    torch.manual_seed(0)
    data = pose()
    data.edge_logmap = data.edge_logmap.float()
    model = GeodesicCNN(1, 16, 4, max_radius=0.12)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    losses = []
    for _ in range(20):
        opt.zero_grad()
        loss = F.cross_entropy(model(data), data.part.long())
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0]
