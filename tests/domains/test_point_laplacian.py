import numpy as np
import pytest
import scipy.sparse as sp
import torch
from scipy.sparse.linalg import eigsh

from gdl_pyg.domains import point_cloud_laplacian, tufted_triangles
from gdl_pyg.groups import random_rotation


def sphere_points(n=800, seed=0):
    rng = np.random.default_rng(seed)
    P = rng.normal(size=(n, 3))
    return torch.from_numpy(P / np.linalg.norm(P, axis=1, keepdims=True))


def as_scipy(index, weight, N):
    return sp.coo_matrix((weight.numpy(), index.numpy()), shape=(N, N)).tocsr()


def spectrum(L, mass, k=16):
    return np.sort(eigsh(L, k, M=sp.diags(mass), sigma=-1e-8)[0])


def test_structure_and_sphere_geometry():
    pos = sphere_points()
    N = pos.size(0)
    index, weight, mass = point_cloud_laplacian(pos, k=20)
    assert index.dtype == torch.long and index.shape[0] == 2
    assert weight.dtype == pos.dtype and mass.shape == (N,)
    # coalesced: sorted by row then column, no duplicates
    key = index[0] * N + index[1]
    assert bool((key[1:] > key[:-1]).all())
    L = as_scipy(index, weight, N)
    assert abs(L - L.T).max() < 1e-12
    assert np.abs(L.sum(1)).max() < 1e-10  # constants in the kernel
    assert (L.diagonal() > 0).all() and (mass > 0).all()
    # the area of the unit sphere, and M^-1 L z = 2 z (first spherical harmonics)
    assert abs(float(mass.sum()) - 4 * np.pi) / (4 * np.pi) < 0.05  # inscribed triangles
    z = pos[:, 2].numpy()
    # weak form (cotan Laplacians do not converge pointwise on irregular samples)
    rayleigh = (z @ (L @ z)) / (z @ (mass.numpy() * z))
    assert abs(rayleigh - 2.0) < 0.05
    ev = spectrum(L, mass.numpy())
    assert ev[0] > -1e-9  # positive semi-definite
    assert np.allclose(ev[1:4], 2.0, rtol=0.08) and np.allclose(ev[4:9], 6.0, rtol=0.08)


def test_matches_robust_laplacian():
    robust_laplacian = pytest.importorskip("robust_laplacian")
    pos = sphere_points(1000, seed=1)
    pos = pos * torch.tensor([1.0, 0.7, 1.3], dtype=torch.float64)  # an ellipsoid
    N = pos.size(0)
    index, weight, mass = point_cloud_laplacian(pos, k=30)
    L = as_scipy(index, weight, N)
    Lr, Mr = robust_laplacian.point_cloud_laplacian(pos.numpy(), n_neighbors=30)
    m, mr = mass.numpy(), Mr.diagonal()
    assert abs(m.sum() - mr.sum()) / mr.sum() < 0.02
    ev, evr = spectrum(L, m), spectrum(Lr, mr)
    rel_spec = (np.abs(ev[1:] - evr[1:]) / evr[1:]).max()
    P = pos.numpy()
    f = P[:, 0] * P[:, 2] + np.sin(P[:, 1])  # a smooth function
    energy, energy_ref = f @ (L @ f) / (f @ (m * f)), f @ (Lr @ f) / (f @ (mr * f))
    rel_energy = abs(energy - energy_ref) / energy_ref
    # the heat-smoothed function exp(-t M^-1 L) f, in the first 16 eigenpairs
    smooth = []
    for LL, mm in ((L, m), (Lr, mr)):
        lam, phi = eigsh(LL, 16, M=sp.diags(mm), sigma=-1e-8)
        smooth.append(phi @ (np.exp(-0.1 * lam) * (phi.T @ (mm * f))))
    rel_smooth = np.linalg.norm(smooth[0] - smooth[1]) / np.linalg.norm(smooth[1])
    print(f"vs robust_laplacian: spectra {rel_spec:.2e}, Dirichlet energy {rel_energy:.2e}, "
          f"heat-smoothed f {rel_smooth:.2e}")
    # no intrinsic Delaunay flips here: eigenvalues a few percent higher
    assert rel_spec < 0.1 and rel_energy < 0.1 and rel_smooth < 0.05


def test_rigid_motion_and_normal_input():
    pos = sphere_points(400, seed=2)
    N = pos.size(0)
    index, weight, mass = point_cloud_laplacian(pos, k=16)
    Q = random_rotation(torch.Generator().manual_seed(0))
    moved = pos @ Q.T + torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    i2, w2, m2 = point_cloud_laplacian(moved, k=16)
    assert torch.equal(index, i2)
    assert (weight - w2).abs().max() < 1e-9 and (mass - m2).abs().max() < 1e-9
    # exact normals instead of PCA ones give nearly the same operator
    i3, w3, m3 = point_cloud_laplacian(pos, k=16, normal=pos)
    L, L3 = as_scipy(index, weight, N), as_scipy(i3, w3, N)
    z = pos[:, 2].numpy()
    e, e3 = z @ (L @ z) / (z @ (mass.numpy() * z)), z @ (L3 @ z) / (z @ (m3.numpy() * z))
    assert abs(e - e3) / e < 0.02


def test_tufted_triangles():
    pos = sphere_points(300, seed=3)
    T = tufted_triangles(pos, k=12)
    assert T.shape[0] == 3 and T.dtype == torch.long
    # every point is the centre (first corner) of the triangles of its fan
    assert torch.equal(torch.unique(T[0]), torch.arange(300))
    # counter-clockwise around the outward normal (the sphere is convex)
    a, b, c = pos[T[0]], pos[T[1]], pos[T[2]]
    n = torch.cross(b - a, c - a, dim=-1)
    # PCA normals have an arbitrary sign: each fan is consistent with one side
    s = torch.sign((n * a).sum(-1))
    same = torch.zeros(300, dtype=torch.float64).index_add_(0, T[0], s).abs()
    cnt = torch.bincount(T[0], minlength=300).to(torch.float64)
    assert torch.equal(same, cnt)


def test_bad_input():
    pos = sphere_points(50)
    with pytest.raises(ValueError, match="'k' to be an integer >= 3"):
        point_cloud_laplacian(pos, k=2)
    bad = pos.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        point_cloud_laplacian(bad)
    with pytest.raises(ValueError, match=r"'normal' tensor with shape \[50, 3\]"):
        point_cloud_laplacian(pos, normal=pos[:10])
    with pytest.raises(ValueError, match="at least 4 points"):
        point_cloud_laplacian(pos[:3])
    with pytest.raises(ValueError, match="non-negative 'mollify'"):
        point_cloud_laplacian(pos, mollify=-1.0)


def test_scaled_float32_cloud_raises_instead_of_zero_mass():
    # issue 9: a mass of ~1e-53 is 0 in float32 and M^-1 L infinite
    pos = sphere_points(200).float()
    with pytest.raises(ValueError, match=r"'point_cloud_laplacian'.*overflows torch\.float32"
                                         r".*NormalizeScale"):
        point_cloud_laplacian(pos * 1e-25, k=10)
    index, weight, mass = point_cloud_laplacian(pos.double() * 1e-25, k=10)
    assert bool((mass > 0).all()) and bool(torch.isfinite(weight).all())
    _, _, mass1 = point_cloud_laplacian(pos.double(), k=10)
    assert torch.allclose(mass, mass1 * 1e-50, rtol=1e-9, atol=0)
