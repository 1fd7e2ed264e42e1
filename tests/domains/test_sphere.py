import math

import pytest
import torch

from gdl_pyg.domains.sphere import (icosahedral_rotations, icosphere, project_grid,
                                    project_image, rotation_permutation, sphere_to_image)


@pytest.mark.parametrize("s", [0, 1, 2, 3])
def test_icosphere_counts_and_accuracy(s):
    d = icosphere(s)
    N, F = 10 * 4 ** s + 2, 20 * 4 ** s
    assert d.pos.shape == (N, 3) and d.face.shape == (3, F) and d.edge_index.shape == (2, 3 * F)
    assert d.pos.dtype == torch.float64
    assert (d.pos.norm(dim=1) - 1).abs().max() < 1e-15
    # Euler characteristic of the sphere, outward (counter-clockwise) faces
    assert N - d.edge_index.size(1) // 2 + F == 2
    p = d.pos
    n = torch.cross(p[d.face[1]] - p[d.face[0]], p[d.face[2]] - p[d.face[0]], dim=1)
    assert ((n * p[d.face].mean(0)).sum(1) > 0).all()
    assert abs(float(d.mass.sum()) - 4 * math.pi) < 1e-12 and (d.mass > 0).all()
    # the coarser icosphere is a prefix of the finer one
    if s > 0:
        assert torch.equal(icosphere(s - 1).pos, d.pos[:10 * 4 ** (s - 1) + 2])


def test_icosahedral_rotations_permute_vertices():
    R = icosahedral_rotations()
    assert R.shape == (60, 3, 3) and torch.equal(R[0], torch.eye(3, dtype=torch.float64))
    assert (R @ R.transpose(1, 2) - torch.eye(3, dtype=torch.float64)).abs().max() < 1e-14
    assert (torch.det(R) - 1).abs().max() < 1e-14
    assert torch.unique(torch.round(R.reshape(60, 9), decimals=8), dim=0).size(0) == 60
    d = icosphere(3)
    for r in R[::7]:
        perm = rotation_permutation(d.pos, r, tol=1e-13)
        assert torch.equal(torch.sort(perm).values, torch.arange(d.num_nodes))
        assert (d.pos @ r.T - d.pos[perm]).abs().max() < 1e-14
    generic = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64))[0]
    with pytest.raises(ValueError, match="does not map the vertices onto themselves"):
        rotation_permutation(d.pos, generic)


def test_project_image_and_back():
    d = icosphere(5)
    img = torch.zeros(1, 8, 8)
    img[0, 1:7, 3:5] = 1.0  # a vertical bar
    x = project_image(img, d.pos)
    assert x.shape == (d.num_nodes, 1)
    assert float(x[d.pos[:, 2] < 0].abs().max()) == 0.0  # nothing in the south
    back = sphere_to_image(x, d.pos, (8, 8))
    assert back.shape == (1, 8, 8)
    assert (back - img).abs().mean() < 0.15 and back[0, 1:7, 3:5].mean() > 0.6
    # rotating the signal equals sampling the upright projection at R^T p
    R = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64))[0]
    R = R * torch.sign(torch.det(R))
    xr = project_image(img, d.pos, rotation=R)
    assert torch.allclose(xr, project_image(img, d.pos @ R), atol=1e-6)
    with pytest.raises(ValueError, match=r"\[C, H, W\]"):
        project_image(torch.zeros(1, 1, 1, 8), d.pos)
    with pytest.raises(ValueError, match="fov"):
        project_image(img, d.pos, fov=180)


def test_project_grid_matches_analytic_signal():
    d = icosphere(4)
    H, W = 64, 128
    theta = (torch.arange(H, dtype=torch.float64) + 0.5) * math.pi / H
    phi = torch.arange(W, dtype=torch.float64) * 2 * math.pi / W + math.pi / W
    f = lambda t, p: torch.cos(t) + torch.sin(t) * torch.cos(p)  # noqa: E731  z + x
    grid = f(theta.view(-1, 1), phi.view(1, -1)).unsqueeze(0)
    x = project_grid(grid, d.pos)[:, 0]
    err = (x - (d.pos[:, 2] + d.pos[:, 0])).abs()
    # bilinear in (theta, phi): accurate away from the poles, first order at them
    assert err[d.pos[:, 2].abs() < 0.95].max() < 2e-3 and err.max() < 3e-2


def test_icosphere_bad_input():
    with pytest.raises(ValueError, match="subdivisions"):
        icosphere(-1)
    with pytest.raises(ValueError, match="subdivisions"):
        icosphere(2.0)
