import pytest
import torch
import torch.nn.functional as F
from torch_geometric.data import Batch
from torch_geometric.nn import GMMConv
from torch_geometric.transforms import Compose

from gdl_pyg.domains import mesh_to_data
from gdl_pyg.groups import GaugeGroup, Permutations
from gdl_pyg.io import read_mesh
from gdl_pyg.nn.models import MoNet
from gdl_pyg.testing import assert_equivariant, equivariance_error
from gdl_pyg.transforms import MeshGeometry, PolarPseudoCoords

POSE = "datasets/deform/raw/pose_003.ply"
PSEUDO = PolarPseudoCoords(max_radius=0.1)


def pose(x_channels=None):
    data = read_mesh(POSE)
    data.pos = data.pos.double()  # geometry in float64
    data = Compose([MeshGeometry(), PSEUDO])(data)
    if x_channels:
        data.x = torch.randn(data.num_nodes, x_channels, dtype=torch.float64,
                             generator=torch.Generator().manual_seed(0))
    return data


def test_shapes_and_repr():
    torch.manual_seed(0)
    data = pose()
    model = MoNet(1, 16, 4)
    assert str(model) == "MoNet(1, 16, 4, num_layers=3, kernel_size=8, level='node')"
    assert model.num_classes == 4
    assert all(type(c) is GMMConv for c in model.convs)
    data.edge_attr = data.edge_attr.float()
    out = model(data)  # no 'x': a constant feature 1
    assert out.shape == (data.num_nodes, 4)
    graph = MoNet(1, 8, 3, num_layers=2, level="graph", readout="max")
    batch = Batch.from_data_list([data, data.clone()])
    assert graph(batch).shape == (2, 3)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    w = model.convs[0].g.detach().clone()
    model.reset_parameters()
    assert not torch.equal(w, model.convs[0].g)


def test_equals_hand_built_gmmconv_stack():
    torch.manual_seed(0)
    data = pose(x_channels=3)
    model = MoNet(3, 8, 5, num_layers=2, kernel_size=4).double().eval()
    convs = [GMMConv(3, 8, dim=2, kernel_size=4).double(),
             GMMConv(8, 8, dim=2, kernel_size=4).double()]
    head = torch.nn.Linear(8, 5).double()
    for conv, src in zip(convs, model.convs):
        conv.load_state_dict(src.state_dict())
    head.load_state_dict(model.head.state_dict())
    h = data.x
    for conv in convs:
        h = F.elu(conv(h, data.edge_index, data.edge_attr))
    assert (model(data) - head(h)).abs().max() < 1e-12


def test_symmetries():
    torch.manual_seed(0)
    data = pose(x_channels=2)
    model = MoNet(2, 8, 3, num_layers=2)
    # node permutations (pseudo-coordinates are edge attributes and travel along)
    assert_equivariant(model, data, Permutations(), num_samples=2)
    # rigid motions: intrinsic coordinates, geometry recomputed from scratch
    gen = torch.Generator().manual_seed(1)
    Q, _ = torch.linalg.qr(torch.randn(3, 3, generator=gen, dtype=torch.float64))
    moved = PSEUDO(mesh_to_data(data.pos @ Q.T + 1.0, data.face))
    moved.x = data.x
    m64 = model.double()
    assert (m64(moved) - m64(data)).abs().max() < 1e-8
    # but not gauge changes: the angular coordinate is measured from e_1
    redo = PolarPseudoCoords(max_radius=0.1, cat=False)
    err = equivariance_error(m64, data, GaugeGroup(), num_samples=2,
                             forward=lambda m, d: m(redo(d.clone())))
    assert err.error > 1e-3


def test_bad_input():
    data = pose()
    for kwargs, match in ((dict(num_layers=0), "'num_layers' to be an integer >= 1"),
                          (dict(level="edge"), "'level'"),
                          (dict(dropout=1.5), "dropout")):
        with pytest.raises(ValueError, match=match):
            MoNet(1, 8, 2, **kwargs)
    model = MoNet(1, 8, 2).double()
    with pytest.raises(ValueError, match="needs in_channels=1"):
        MoNet(3, 8, 2).double()(data)
    d = data.clone()
    del d.edge_attr
    with pytest.raises(ValueError, match="PolarPseudoCoords"):
        model(d)
    d = data.clone()
    d.edge_attr = d.edge_attr[:, :1]
    with pytest.raises(ValueError, match=r"\[num_edges, dim\]"):
        model(d)
    with pytest.raises(TypeError, match="'Data'"):
        model(data.edge_attr)


def test_learns_parts():
    torch.manual_seed(0)
    data = pose()
    data.edge_attr = data.edge_attr.float()
    model = MoNet(1, 16, 4, num_layers=3, kernel_size=4)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = F.cross_entropy(model(data), data.part.long())
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0]
