import pytest
import torch
from torch_geometric.data import Data

from gdl_pyg.domains.mesh import mesh_to_data
from gdl_pyg.transforms import RandomRotation3D

trimesh = pytest.importorskip("trimesh")


def procrustes(a, b):
    r"""The rotation ``Q`` minimising ``|a Q^T - b|``."""
    U, _, Vt = torch.linalg.svd(b.T @ a)
    return U @ Vt


def test_repr():
    assert str(RandomRotation3D()) == "RandomRotation3D()"
    assert str(RandomRotation3D({"v": "vector"})) == "RandomRotation3D(fields={'v': 'vector'})"
    with pytest.raises(TypeError, match="mapping"):
        RandomRotation3D(["v"])


def test_rotates_mesh_geometry_consistently():
    m = trimesh.creation.torus(major_radius=1.0, minor_radius=0.3, major_sections=16,
                               minor_sections=10)
    pos, face = torch.tensor(m.vertices), torch.tensor(m.faces.T.copy())
    data = mesh_to_data(pos, face)
    data.v = torch.randn(pos.size(0), 3, dtype=torch.float64)
    data.f = torch.randn(pos.size(0), 4, dtype=torch.float64)  # irreps 1x0e + 1x1o
    torch.manual_seed(0)
    out = RandomRotation3D({"v": "vector", "f": "1x0e + 1x1o"})(data.clone())
    Q = procrustes(data.pos, out.pos)
    assert abs(float(torch.det(Q)) - 1) < 1e-10
    assert float((out.pos - data.pos @ Q.T).abs().max()) < 1e-10
    assert float(torch.linalg.matrix_norm(Q - torch.eye(3, dtype=Q.dtype))) > 1e-3
    for key in ("normal", "v"):
        assert float((out[key] - data[key] @ Q.T).abs().max()) < 1e-10
    assert float((out.frame - data.frame @ Q.T).abs().max()) < 1e-10
    assert float((out.face_normal - data.face_normal @ Q.T).abs().max()) < 1e-10
    assert torch.equal(out.f[:, 0], data.f[:, 0])
    assert torch.allclose(out.f[:, 1:].norm(dim=1), data.f[:, 1:].norm(dim=1))
    # intrinsic attributes are untouched, and equal a recomputation
    for key in ("edge_logmap", "edge_connection", "mass", "laplacian_weight"):
        assert torch.equal(out[key], data[key])
    again = mesh_to_data(out.pos, out.face)
    assert float((again.frame - out.frame).abs().max()) < 1e-10
    assert float((again.normal - out.normal).abs().max()) < 1e-10


def test_point_cloud_without_extra_attributes():
    data = Data(pos=torch.randn(10, 3))
    out = RandomRotation3D()(data)
    assert torch.allclose(out.pos.norm(dim=1), data.pos.norm(dim=1), atol=1e-5)
    assert set(out.keys()) == {"pos"}
