import math

import numpy as np
import pytest
import scipy.linalg as sl
import torch
import trimesh
from torch_geometric.data import Batch, Data

from gdl_pyg.domains import mesh_to_data, points_to_data
from gdl_pyg.groups import GaugeGroup
from gdl_pyg.transforms import (HeatKernelSignature, LaplacianEigenbasis, PointCloudLaplacian,
                                SpatialGradient)


def bumpy_sphere(subdivisions=2, seed=0, amplitude=0.05):
    m = trimesh.creation.icosphere(subdivisions)
    V = np.asarray(m.vertices)
    rng = np.random.default_rng(seed)
    V = V * (1 + amplitude * rng.uniform(-1, 1, size=(len(V), 1)))
    return mesh_to_data(torch.from_numpy(V), torch.from_numpy(np.asarray(m.faces).T.copy()))


def dense(data):
    N = data.num_nodes
    L = torch.sparse_coo_tensor(data.laplacian_index, data.laplacian_weight, (N, N),
                                check_invariants=True)
    return L.to_dense().numpy(), data.mass.numpy()


def test_eigenbasis_properties_and_paths():
    data = bumpy_sphere(3)  # 642 vertices: the sparse shift-invert path
    t = LaplacianEigenbasis(k=20)
    assert str(t) == "LaplacianEigenbasis(k=20)" and str(LaplacianEigenbasis()) == \
        "LaplacianEigenbasis(k=128)"
    out = t(data.clone())
    assert out.evals.shape == (1, 20) and out.evecs.shape == (642, 20)
    assert out.evecs.dtype == data.pos.dtype
    L, m = dense(out)
    Phi, lam = out.evecs.numpy(), out.evals[0].numpy()
    assert np.abs(Phi.T @ (m[:, None] * Phi) - np.eye(20)).max() < 1e-9
    assert np.abs(L @ Phi - m[:, None] * Phi * lam).max() < 1e-9
    assert abs(lam[0]) < 1e-10 and (np.diff(lam) >= -1e-12).all()
    # the dense path agrees
    ref = LaplacianEigenbasis(k=20, dense_threshold=10**6)(data.clone())
    assert (ref.evals - out.evals).abs().max() < 1e-9
    # float32 positions give float32 eigenpairs
    d32 = data.clone()
    d32.pos = d32.pos.float()
    assert LaplacianEigenbasis(k=4)(d32).evecs.dtype == torch.float32


def test_eigenbasis_padding_and_batching():
    a, b = bumpy_sphere(1, seed=1), bumpy_sphere(2, seed=2)  # 42 and 162 vertices
    t = LaplacianEigenbasis(k=50)
    a, b = t(a), t(b)
    assert a.evecs.shape == (42, 50)
    assert torch.all(a.evecs[:, 42:] == 0) and torch.all(a.evals[0, 42:] == 0)
    batch = Batch.from_data_list([a, b])
    assert batch.evals.shape == (2, 50) and batch.evecs.shape == (204, 50)
    assert torch.equal(batch.evals[1], b.evals[0])
    assert batch.laplacian_index.max() == 203  # shifted like edge_index
    with pytest.raises(ValueError, match="single surface"):
        t(batch)


def test_eigenbasis_bad_input():
    data = Data(pos=torch.randn(10, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="'MeshGeometry'.*'PointCloudLaplacian'"):
        LaplacianEigenbasis(k=4)(data)
    with pytest.raises(ValueError, match="'k' to be an integer >= 1"):
        LaplacianEigenbasis(k=0)
    data = bumpy_sphere(1)
    data.mass[3] = float("nan")
    with pytest.raises(ValueError, match="positive, finite 'mass'"):
        LaplacianEigenbasis(k=4)(data)


def test_heat_kernel_signature():
    data = LaplacianEigenbasis(k=162)(bumpy_sphere(2))  # the full basis
    hks = HeatKernelSignature(num_times=8)
    assert str(hks) == "HeatKernelSignature(num_times=8)"
    out = hks(data.clone())
    assert out.x.shape == (162, 8) and bool((out.x > 0).all())
    # equals the diagonal of the heat kernel exp(-t M^-1 L) M^-1
    L, m = dense(data)
    t = 0.05
    K = sl.expm(-t * L / m[:, None]) / m[None, :]
    out = HeatKernelSignature(times=[t])(data.clone())
    assert np.abs(out.x[:, 0].numpy() - np.diag(K)).max() / np.diag(K).max() < 1e-9
    # independent of eigenvector signs; concatenation keeps old features
    flipped = data.clone()
    flipped.evecs = flipped.evecs * torch.where(torch.rand(162) < 0.5, -1.0, 1.0).double()
    flipped.x = torch.ones(162, 2, dtype=torch.float64)
    res = HeatKernelSignature(times=[t], cat=True)(flipped)
    assert res.x.shape == (162, 3) and (res.x[:, 2] - out.x[:, 0]).abs().max() < 1e-12
    with pytest.raises(ValueError, match="'LaplacianEigenbasis'"):
        HeatKernelSignature()(bumpy_sphere(1))
    with pytest.raises(ValueError, match="positive, finite 'times'"):
        HeatKernelSignature(times=[-1.0])


def test_spatial_gradient_linear_and_gauge():
    # a flat, irregular triangulation: linear functions have exact gradients
    rng = np.random.default_rng(0)
    P2 = rng.uniform(size=(80, 2))
    from scipy.spatial import Delaunay
    face = torch.from_numpy(Delaunay(P2).simplices.T.copy())
    pos = torch.from_numpy(np.concatenate([P2, np.zeros((80, 1))], 1))
    data = SpatialGradient()(mesh_to_data(pos, face))
    assert str(SpatialGradient()) == "SpatialGradient()"
    assert data.grad_index.shape[0] == 2 and data.grad_weight.shape == (
        data.grad_index.size(1), 2)
    g3 = torch.tensor([0.7, -1.3, 0.0], dtype=torch.float64)
    f = pos @ g3
    row, col = data.grad_index
    grad = torch.zeros(80, 2, dtype=torch.float64).index_add_(
        0, row, data.grad_weight * f[col, None])
    expected = torch.einsum("c,ndc->nd", g3, data.frame)
    assert (grad - expected).abs().max() < 1e-8
    # rotating the frames by theta rotates the gradients by -theta
    theta = GaugeGroup().sample(data, torch.Generator().manual_seed(0))
    rotated = SpatialGradient()(GaugeGroup().act(theta, data))
    grad2 = torch.zeros(80, 2, dtype=torch.float64).index_add_(
        0, rotated.grad_index[0], rotated.grad_weight * f[rotated.grad_index[1], None])
    c, s = torch.cos(theta), torch.sin(theta)
    assert (grad2[:, 0] - (c * grad[:, 0] + s * grad[:, 1])).abs().max() < 1e-9
    assert (grad2[:, 1] - (-s * grad[:, 0] + c * grad[:, 1])).abs().max() < 1e-9
    with pytest.raises(ValueError, match="'frame'"):
        SpatialGradient()(Data(pos=pos, edge_index=data.edge_index))


def test_point_cloud_pipeline():
    rng = np.random.default_rng(1)
    P = rng.normal(size=(400, 3))
    P /= np.linalg.norm(P, axis=1, keepdims=True)
    data = points_to_data(torch.from_numpy(P), k=8)
    t = PointCloudLaplacian(k=20)
    assert str(t) == "PointCloudLaplacian(k=20)"
    data = SpatialGradient()(LaplacianEigenbasis(k=9)(t(data)))
    for key in ("laplacian_index", "laplacian_weight", "mass", "evals", "evecs",
                "grad_index", "grad_weight"):
        assert key in data
    # unit sphere: eigenvalues 0, 2 (x3), 6 (x5)
    lam = data.evals[0]
    assert abs(float(lam[0])) < 1e-9
    assert (lam[1:4] - 2).abs().max() < 0.15 and (lam[4:9] - 6).abs().max() < 0.5
    with pytest.raises(ValueError, match="'pos'"):
        t(Data(x=torch.ones(3, 1)))
    assert math.isfinite(float(data.mass.sum()))


def test_hks_default_times_ignore_round_off_zero_eigenvalue():
    # float32 geometry: the zero eigenvalue comes out as round-off (seen at 2.4e-6
    # with lambda_max ~ 100 on datasets/deform), which must not be taken for
    # lambda_2 (that made 12 of 16 default HKS columns constant)
    import os.path as osp

    from gdl_pyg.io import read_mesh
    from gdl_pyg.transforms import HeatKernelSignature, LaplacianEigenbasis, MeshGeometry
    root = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    data = LaplacianEigenbasis(32)(MeshGeometry()(
        read_mesh(osp.join(root, "datasets", "deform", "raw", "pose_003.ply"))))
    assert data.evals.dtype == torch.float32
    exact = data.clone()
    exact.evals[0, 0] = 0.0
    noisy = data.clone()
    noisy.evals[0, 0] = 1e-6 * float(data.evals.max())
    a, b = HeatKernelSignature()(exact).x, HeatKernelSignature()(noisy).x
    assert torch.allclose(a, b, rtol=2e-3, atol=1e-6)  # same times; exp(-lambda_0 t) ~ 1
    std = b.std(dim=0)
    assert int((std > 1e-3 * std.max()).sum()) >= 12


def test_eigenbasis_and_gradient_check_the_cast():
    # issue 9: eigenvalues grow as 1 / area; those of a surface at scale 1e-25 overflow
    # float32 (computed in float64 from float64 geometry, written in pos's dtype)
    m = bumpy_sphere(1)
    data = mesh_to_data(m.pos * 1e-25, m.face)
    data.pos = data.pos.float()
    with pytest.raises(ValueError, match=r"'LaplacianEigenbasis': 'evals' reaches .*"
                                         r"overflows torch\.float32"):
        LaplacianEigenbasis(k=8)(data)
    data.pos = data.pos.double()
    assert bool(torch.isfinite(LaplacianEigenbasis(k=8)(data).evals).all())


def test_spatial_gradient_validates_edge_index():
    from gdl_pyg.transforms.laplacian_eigen import spatial_gradient
    data = bumpy_sphere(1)
    with pytest.raises(ValueError, match=r"'spatial_gradient'.*transposed"):
        spatial_gradient(data.pos, data.frame, data.edge_index.t())
    ei = data.edge_index.clone()
    ei[1, 0] = data.num_nodes
    with pytest.raises(ValueError, match=r"'spatial_gradient'.*target \(second row\) index"):
        spatial_gradient(data.pos, data.frame, ei)
