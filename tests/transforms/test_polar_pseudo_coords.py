import math

import pytest
import torch
import trimesh
from torch_geometric.transforms import Compose

from gdl_pyg.domains import mesh_to_data
from gdl_pyg.groups import GaugeGroup
from gdl_pyg.io import read_mesh
from gdl_pyg.transforms import MeshGeometry, PolarPseudoCoords


def torus():
    mesh = trimesh.creation.torus(1.0, 0.35, major_sections=16, minor_sections=8)
    return torch.tensor(mesh.vertices, dtype=torch.float64), \
        torch.tensor(mesh.faces).T.contiguous()


def test_repr_and_values():
    assert str(PolarPseudoCoords()) == "PolarPseudoCoords()"
    assert str(PolarPseudoCoords(max_radius=0.5)) == "PolarPseudoCoords(max_radius=0.5)"
    assert str(PolarPseudoCoords(coords="cartesian")) == \
        "PolarPseudoCoords(coords='cartesian')"
    data = mesh_to_data(*torus())
    r, phi = data.edge_logmap.unbind(-1)
    u = PolarPseudoCoords()(data.clone()).edge_attr
    assert u.shape == (data.num_edges, 2) and u.dtype == torch.float64
    assert torch.allclose(u[:, 0], r / r.max())
    assert float(u[:, 0].max()) == 1.0 and bool((u >= 0).all() and (u[:, 1] < 1).all())
    assert torch.allclose(torch.exp(2j * math.pi * u[:, 1]), torch.exp(1j * phi))
    R = 0.8
    c = PolarPseudoCoords(max_radius=R, coords="cartesian")(data.clone()).edge_attr
    assert torch.allclose(c, 0.5 + r.unsqueeze(-1) / (2 * R)
                          * torch.stack([torch.cos(phi), torch.sin(phi)], -1))
    assert bool(((c >= 0) & (c <= 1)).all())
    # cat: appended to existing edge features
    d = data.clone()
    d.edge_attr = torch.ones(data.num_edges, dtype=torch.float64)
    out = PolarPseudoCoords()(d).edge_attr
    assert out.shape == (data.num_edges, 3) and bool((out[:, 0] == 1).all())
    d.edge_attr = torch.ones(data.num_edges, 3, dtype=torch.float64)
    assert PolarPseudoCoords(cat=False)(d).edge_attr.shape == (data.num_edges, 2)


def test_pipeline_on_shipped_mesh():
    data = read_mesh("datasets/deform/raw/pose_003.ply")
    data = Compose([MeshGeometry(), PolarPseudoCoords(max_radius=0.1)])(data)
    assert data.edge_attr.shape == (data.num_edges, 2)
    assert torch.allclose(data.edge_attr[:, 0], data.edge_logmap[:, 0] / 0.1)


@pytest.mark.parametrize("coords", ["polar", "cartesian"])
def test_rigid_motions_leave_them_unchanged(coords):
    pos, face = torus()
    t = PolarPseudoCoords(coords=coords)
    u = t(mesh_to_data(pos, face)).edge_attr
    gen = torch.Generator().manual_seed(0)
    Q, _ = torch.linalg.qr(torch.randn(3, 3, generator=gen, dtype=torch.float64))
    Q = Q @ torch.diag(torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64))  # reflection
    u2 = t(mesh_to_data(pos @ Q.T + torch.tensor([0.3, -2.0, 5.0], dtype=torch.float64),
                        face)).edge_attr
    d = (u2 - u).abs()
    if coords == "polar":  # the angle coordinate lives on a circle
        d[:, 1] = torch.minimum(d[:, 1], 1 - d[:, 1])
    assert d.max() < 1e-12


def test_gauge_changes_change_them():
    data = mesh_to_data(*torus())
    group = GaugeGroup()
    theta = group.sample(data, generator=torch.Generator().manual_seed(1))
    dst = data.edge_index[1]
    polar = PolarPseudoCoords()
    u, ug = polar(data.clone()).edge_attr, polar(group.act(theta, data)).edge_attr
    assert torch.allclose(ug[:, 0], u[:, 0])
    # the angle coordinate moves by -theta_i / 2 pi (mod 1), as GaugeGroup says
    assert torch.allclose(torch.exp(2j * math.pi * ug[:, 1]),
                          torch.exp(2j * math.pi * u[:, 1] - 1j * theta[dst]))
    assert (ug[:, 1] - u[:, 1]).abs().max() > 0.1
    cart = PolarPseudoCoords(coords="cartesian", max_radius=1.0)
    c, cg = cart(data.clone()).edge_attr - 0.5, cart(group.act(theta, data)).edge_attr - 0.5
    rot = torch.stack([torch.cos(-theta[dst]), torch.sin(-theta[dst])], -1)
    expected = torch.stack([rot[:, 0] * c[:, 0] - rot[:, 1] * c[:, 1],
                            rot[:, 1] * c[:, 0] + rot[:, 0] * c[:, 1]], -1)
    assert torch.allclose(cg, expected)


def test_bad_input():
    with pytest.raises(ValueError, match="MeshGeometry"):
        PolarPseudoCoords()(read_mesh("datasets/deform/raw/pose_003.ply"))
    with pytest.raises(ValueError, match="'coords' to be one of"):
        PolarPseudoCoords(coords="spherical")
    with pytest.raises(ValueError, match="positive finite 'max_radius'"):
        PolarPseudoCoords(max_radius=0)
