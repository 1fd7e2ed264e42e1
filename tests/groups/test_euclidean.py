import math

import pytest
import torch
from torch_geometric.data import Data

from gdl_pyg.groups import E3, O3, SO2, SO3, random_rotation
from gdl_pyg.groups.euclidean import wigner_D


def test_random_rotation_is_a_rotation():
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        Q = random_rotation(gen)
        assert torch.allclose(Q @ Q.T, torch.eye(3, dtype=torch.float64), atol=1e-12)
        assert abs(float(torch.det(Q)) - 1) < 1e-12


def test_o3_samples_both_components():
    gen = torch.Generator().manual_seed(1)
    dets = {round(float(torch.det(O3().sample(generator=gen)))) for _ in range(20)}
    assert dets == {-1, 1}


def test_e3_moves_points_but_not_vectors():
    gen = torch.Generator().manual_seed(2)
    Q, t = E3().sample(generator=gen)
    data = Data(pos=torch.randn(7, 3, dtype=torch.float64),
                v=torch.randn(7, 3, dtype=torch.float64))
    out = E3().act((Q, t), data, fields={"v": "vector"})
    assert torch.allclose(out.pos, data.pos @ Q.T + t)
    assert torch.allclose(out.v, data.v @ Q.T)
    # distances are invariant
    assert torch.allclose(torch.cdist(out.pos, out.pos), torch.cdist(data.pos, data.pos))


def test_irreps_fibres_follow_e3nn():
    from e3nn import o3
    irreps = o3.Irreps("2x0e + 1x1o + 1x2e")
    gen = torch.Generator().manual_seed(3)
    Q = O3().sample(generator=gen)
    x = torch.randn(5, irreps.dim, dtype=torch.float64, generator=gen)
    out = O3().act(Q, Data(x=x, num_nodes=5), fields={"x": "2x0e + 1x1o + 1x2e"})
    # same convention as e3nn (whose own D is only float32-accurate)
    assert torch.allclose(out.x, x @ irreps.D_from_matrix(Q).T, atol=1e-5)
    D = wigner_D(irreps, Q)
    assert torch.allclose(D @ D.T, torch.eye(irreps.dim, dtype=torch.float64), atol=1e-13)
    Q2 = O3().sample(generator=gen)
    assert torch.allclose(wigner_D(irreps, Q @ Q2), D @ wigner_D(irreps, Q2), atol=1e-13)
    # spherical harmonics of rotated points are the rotated spherical harmonics
    pos = torch.randn(5, 3, dtype=torch.float64, generator=gen)
    sh = o3.spherical_harmonics("1o + 2e", pos, normalize=True)
    out = SO3().act(Q * torch.det(Q), Data(pos=pos, sh=sh), fields={"sh": "1o + 2e"})
    assert torch.allclose(o3.spherical_harmonics("1o + 2e", out.pos, normalize=True), out.sh,
                          atol=1e-13)
    # parity: under -I, odd-l harmonics flip sign, as the 1o/2e irreps say
    neg = O3().act(-torch.eye(3, dtype=torch.float64), Data(pos=pos, sh=sh),
                   fields={"sh": "1o + 2e"})
    assert torch.allclose(o3.spherical_harmonics("1o + 2e", neg.pos, normalize=True), neg.sh,
                          atol=1e-13)
    with pytest.raises(ValueError, match="dimension"):
        SO3().act(Q, Data(x=x), fields={"x": "1x1o"})
    with pytest.raises(ValueError, match="representation"):
        SO3().act(Q, Data(x=x), fields={"x": "not an irrep"})


def test_so2_frequencies():
    R = SO2().sample(generator=torch.Generator().manual_seed(4))
    angle = math.atan2(float(R[1, 0]), float(R[0, 0]))
    x = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    out = SO2().act(R, Data(x=x, pos=torch.zeros(1, 2, dtype=torch.float64)), fields={"x": 3})
    assert torch.allclose(out.x, torch.tensor([[math.cos(3 * angle), math.sin(3 * angle)]],
                                              dtype=torch.float64))
    v = SO2().act(R, Data(x=x, pos=torch.zeros(1, 2, dtype=torch.float64)), fields={"x": "vector"})
    assert torch.allclose(v.x, x @ R.T)
    with pytest.raises(ValueError, match="2-d points|points"):
        SO2().act(R, Data(pos=torch.zeros(1, 3)))


def test_pseudovectors_ignore_inversions():
    gen = torch.Generator().manual_seed(5)
    a, b = torch.randn(2, 4, 3, dtype=torch.float64, generator=gen)
    data = Data(a=a, b=b, c=torch.cross(a, b, dim=-1), num_nodes=4)
    fields = {"a": "vector", "b": "vector", "c": "pseudovector"}
    for Q in [O3().sample(generator=gen) for _ in range(6)] + [-torch.eye(3, dtype=torch.float64)]:
        out = O3().act(Q, data, fields=fields)
        # the cross product of two vectors is a pseudovector
        assert torch.allclose(out.c, torch.cross(out.a, out.b, dim=-1), atol=1e-12)
        assert torch.allclose(out.c, torch.det(Q) * data.c @ Q.T, atol=1e-12)
    out = O3().act(-torch.eye(3, dtype=torch.float64), data, fields=fields)
    assert torch.equal(out.c, data.c) and torch.equal(out.a, -data.a)
